use std::time::{Duration, SystemTime, UNIX_EPOCH};

use access_entries::{aws::Eks, handler, respond::Https};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

/// Kept back from the invocation's deadline to answer CloudFormation in.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let sdk = bridgekeeper::aws::sdk_config().await;
    let eks = Eks::new(aws_sdk_eks::Client::new(&sdk));
    let https = Https::new()?;
    let (eks, https) = (&eks, &https);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let left = Duration::from_millis(event.context.deadline).saturating_sub(now);
            handler::handle(
                event.payload,
                left.saturating_sub(ANSWER_MARGIN),
                eks,
                https,
            )
            .await
        },
    ))
    .await
}
