use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use snapshot_export::{Config, aws::RdsApi, handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let config = Config::from_env(&bridgekeeper::config::Env::from_process())?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let rds = RdsApi::new(aws_sdk_rds::Client::new(&sdk));
    let notifier = config.notifier(aws_sdk_sns::Client::new(&sdk));
    let (config, rds, notifier) = (&config, &rds, &notifier);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handler::handle(event.payload, config, rds, notifier).await
        },
    ))
    .await
}
