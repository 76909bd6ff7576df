use std::time::{Duration, SystemTime};

use access_entries::{FUNCTION, aws::Eks, handler, respond::Https};
use bridgekeeper::failures::{SqsFailureSink, settle};
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// Kept back from the invocation's deadline to answer CloudFormation in (`RESPOND_TIMEOUT`, 4 s,
/// and a second to spare).
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let sdk = bridgekeeper::aws::sdk_config().await;
    let env = bridgekeeper::config::Env::from_process();
    let failed = SqsFailureSink::from_env(&env, &sdk)?;
    let allowed = access_entries::domain::Allowed::from_env(&env);
    let eks = Eks::new(aws_sdk_eks::Client::new(&sdk));
    let https = Https::new()?;
    let (eks, https, failed, allowed) = (&eks, &https, &failed, &allowed);
    bridgekeeper::serve!(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let left = bridgekeeper::runtime::deadline(&event.context)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let budget = left.saturating_sub(ANSWER_MARGIN);
            let outcome = handler::handle(event.payload.clone(), budget, allowed, eks, https).await;
            settle(FUNCTION, outcome, &event.payload, failed).await
        },
    ))
    .await
}
