// kube and futures nest deeply in the handler future's type.
#![recursion_limit = "256"]

use bridgekeeper::wiring::Wiring;
use image_rollout::{Config, FUNCTION, handler, kube::KubeClusters, registry::Ecr};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let w = Wiring::init(FUNCTION).await?;
    let config = Config::from_env(&w.env)?;
    let clusters = KubeClusters::new(&config.clusters, &w.accounts);
    let registry = Ecr::new(&w.sdk);
    let notifier = w.queued(config.topics.sns(aws_sdk_sns::Client::new(&w.sdk)));
    let (config, clusters, registry, notifier, store) =
        (&config, &clusters, &registry, &notifier, &w.store);
    w.serve_once(|event, deadline, _| {
        handler::handle(event, deadline, config, clusters, registry, notifier, store)
    })
    .await
}
