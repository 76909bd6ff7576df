// kube nests deeply in the handler future's type.
#![recursion_limit = "256"]

use dns_sync::{Config, aws::AwsDns, handler, kube::KubeSources};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let config = Config::from_env(&bridgekeeper::config::Env::from_process())?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let sources = KubeSources::new(&config.clusters, &sdk);
    let dns = AwsDns::new(
        aws_sdk_route53::Client::new(&sdk),
        aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
    );
    let notifier = config.notifier(aws_sdk_sns::Client::new(&sdk));
    let state = handler::State::default();
    let (config, sources, dns, notifier, state) = (&config, &sources, &dns, &notifier, &state);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handler::handle(event.payload, config, sources, dns, notifier, state).await
        },
    ))
    .await
}
