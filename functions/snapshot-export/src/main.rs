// The fleet over accounts nests deeply in the handler future's type.
#![recursion_limit = "256"]

use bridgekeeper::failures::{Queued, SqsFailureSink, settle};
use bridgekeeper::idempotency::{DynamoStore, once};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use snapshot_export::{Config, FUNCTION, aws::RdsApi, fleet};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let env = bridgekeeper::config::Env::from_process();
    let config = Config::from_env(&env)?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let accounts = bridgekeeper::accounts::Accounts::from_env(&env, &sdk, FUNCTION)?;
    let failed = SqsFailureSink::from_env(&env, &sdk)?;
    let store = DynamoStore::from_env(&env, &sdk, FUNCTION)?;
    let rds = RdsApi::new(aws_sdk_rds::Client::new(&sdk));
    let members = fleet::MemberRds(accounts);
    let inner = config.notifier(aws_sdk_sns::Client::new(&sdk));
    let notifier = Queued {
        inner,
        sink: &failed,
        function: FUNCTION,
    };
    let (config, rds, members, notifier, failed, store) =
        (&config, &rds, &members, &notifier, &failed, &store);
    bridgekeeper::serve!(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = bridgekeeper::runtime::deadline(&event.context);
            let outcome = once(
                store,
                &event.payload,
                deadline,
                &event.context.request_id,
                || fleet::handle(event.payload.clone(), config, rds, members, notifier, store),
            )
            .await;
            settle(FUNCTION, outcome, &event.payload, failed).await
        },
    ))
    .await
}
