use std::time::Duration;

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
    // The lease: an invocation that dies holds its event no longer than the function's timeout.
    let store = DynamoStore::from_env(&env, &sdk, FUNCTION, Duration::from_secs(120))?;
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
            let outcome = once(store, &event.payload, || {
                handler::handle(event.payload.clone(), config, rds, notifier)
            })
            .await;
            settle(FUNCTION, outcome, &event.payload, failed).await
        },
    ))
    .await
}
