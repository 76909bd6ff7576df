use bridgekeeper::failures::{Queued, SqsFailureSink, settle};
use bridgekeeper::idempotency::{DynamoStore, once};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use snapshot_export::{Config, FUNCTION, aws::RdsApi, handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let env = bridgekeeper::config::Env::from_process();
    let config = Config::from_env(&env)?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let failed = SqsFailureSink::from_env(&env, &sdk)?;
    let store = DynamoStore::from_env(&env, &sdk, FUNCTION)?;
    let rds = RdsApi::new(aws_sdk_rds::Client::new(&sdk));
    let inner = config.notifier(aws_sdk_sns::Client::new(&sdk));
    let notifier = Queued {
        inner,
        sink: &failed,
        function: FUNCTION,
    };
    let (config, rds, notifier, failed, store) = (&config, &rds, &notifier, &failed, &store);
    bridgekeeper::serve!(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = bridgekeeper::runtime::deadline(&event.context);
            let outcome = once(store, &event.payload, deadline, || {
                handler::handle(event.payload.clone(), config, rds, notifier, store)
            })
            .await;
            settle(FUNCTION, outcome, &event.payload, failed).await
        },
    ))
    .await
}
