use std::time::{Duration, SystemTime};

use access_entries::{FUNCTION, aws::Eks, domain::Allowed, handler, respond::Https};
use bridgekeeper::wiring::Wiring;

/// Kept back from the invocation's deadline to answer CloudFormation in (`RESPOND_TIMEOUT`, 4 s,
/// and a second to spare).
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let w = Wiring::init(FUNCTION).await?;
    let allowed = Allowed::from_env(&w.env);
    let eks = Eks::new(aws_sdk_eks::Client::new(&w.sdk));
    let https = Https::new()?;
    let (allowed, eks, https) = (&allowed, &eks, &https);
    // CloudFormation sends each request once and waits for the answer: no idempotency claim.
    w.serve(|payload, deadline, _| async move {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        handler::handle(
            payload,
            left.saturating_sub(ANSWER_MARGIN),
            allowed,
            eks,
            https,
        )
        .await
    })
    .await
}
