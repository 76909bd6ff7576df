//! The failure paths against moto's SQS and SNS: bad input is kept once and not retried, a
//! transient failure is left to Lambda's retries, an unpublishable report is kept with its body.

use anyhow::Result;
use bridgekeeper::failures::{Queued, settle};
use bridgekeeper::notify::{Notification, Notifier, Severity, SnsNotifier};
use bridgekeeper::{Class, Classify, Error};
use bridgekeeper_tests::{FailedQueue, TestEnv, unique};
use serde_json::json;

#[tokio::test]
async fn a_non_retryable_failure_is_kept_exactly_once_and_the_invocation_succeeds() -> Result<()> {
    let env = TestEnv::aws().await;
    let queue = FailedQueue::create(&env.sdk).await?;
    let sink = queue.sink();
    let event = json!({"source": "aws.ec2", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}});

    let out = settle::<(), _>(
        "image-rollout",
        Err(Error::invalid_event("source \"aws.ec2\" is not handled")),
        &event,
        &sink,
    )
    .await
    .expect("a refused event ends the invocation without an error, so Lambda does not retry it");
    assert_eq!(out["rejected"], true);

    let kept = queue.records().await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["function"], "image-rollout");
    assert_eq!(kept[0]["error_type"], "NonRetryable.InvalidEvent");
    assert_eq!(kept[0]["event"], event);
    assert!(
        kept[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("aws.ec2")
    );
    Ok(())
}

#[tokio::test]
async fn a_retryable_failure_is_returned_for_lambdas_retries_and_not_queued_yet() -> Result<()> {
    let env = TestEnv::aws().await;
    let queue = FailedQueue::create(&env.sdk).await?;
    let sink = queue.sink();

    let err = settle::<(), _>(
        "dns-sync",
        Err(Error::Transient("Route53 503".into())),
        &json!({}),
        &sink,
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), Class::Retryable);
    assert_eq!(err.diagnostic().error_type, "Retryable.Transient");
    // Lambda's OnFailure destination (the same queue) records it after the last retry.
    assert!(queue.records().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_report_sns_refuses_after_acting_is_kept_with_its_body() -> Result<()> {
    let env = TestEnv::aws().await;
    let queue = FailedQueue::create(&env.sdk).await?;
    let sink = queue.sink();
    let missing = format!(
        "arn:aws:sns:{}:123456789012:{}",
        env.region,
        unique("deleted")
    );
    let notifier = Queued {
        inner: SnsNotifier::new(
            aws_sdk_sns::Client::new(&env.sdk),
            missing,
            "image-rollout",
            "prod",
        ),
        sink: &sink,
        function: "image-rollout",
    };
    let report = Notification::new(
        "[prod] shop/api:stable rolled to 3 Deployments in prod",
        "Cluster prod:\n  rolled shop/api [app]",
        Severity::Info,
    );

    let id = notifier.notify(&report).await?;
    assert_eq!(id, "queued-in-failed-invocations");
    let kept = queue.records().await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["kind"], "undelivered-notification");
    assert_eq!(kept[0]["event"]["subject"], report.subject);
    assert_eq!(kept[0]["event"]["body"], report.body);
    assert!(
        kept[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("sns:Publish")
    );
    Ok(())
}
