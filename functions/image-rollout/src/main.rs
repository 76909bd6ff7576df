// kube and futures nest deeply in the handler future's type.
#![recursion_limit = "256"]

use image_rollout::{Config, handler, kube::KubeClusters};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let config = Config::from_env(&bridgekeeper::config::Env::from_process())?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let clusters = KubeClusters::new(&config.clusters, &sdk);
    let notifier = config.notifier(aws_sdk_sns::Client::new(&sdk));
    let (config, clusters, notifier) = (&config, &clusters, &notifier);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handler::handle(event.payload, config, clusters, notifier).await
        },
    ))
    .await
}
