//! The shared SNS notifier against moto: publish, then read the message back through an SQS
//! queue subscribed to the topic.

use std::collections::BTreeMap;

use anyhow::Result;
use bridgekeeper::notify::{Notification, Notifier, Severity, SnsNotifier};
use bridgekeeper_tests::{Inbox, TestEnv, unique};

#[tokio::test]
async fn publishes_subject_body_and_filterable_attributes() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let notifier = SnsNotifier::new(
        aws_sdk_sns::Client::new(&env.sdk),
        &inbox.topic_arn,
        "snapshot-export",
        "prod",
    );
    let subject = format!("[prod] Export failed: {}", "ö".repeat(120));
    let n = Notification::new(
        &subject,
        "shop-db: KMS key disabled\nsecond line",
        Severity::Error,
    )
    .attribute("cluster", "prod-eks");

    let id = notifier.notify(&n).await?;

    let messages = inbox.receive().await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.id, id);
    let got_subject = m.subject.as_deref().unwrap();
    assert_eq!(got_subject.chars().count(), 99);
    assert!(got_subject.starts_with("[prod] Export failed: öö"));
    assert_eq!(m.body, "shop-db: KMS key disabled\nsecond line");
    let expected = [
        ("cluster", "prod-eks"),
        ("environment", "prod"),
        ("function", "snapshot-export"),
        ("severity", "error"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(m.attributes, expected);
    Ok(())
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_a_non_retryable_error_with_its_code() -> Result<()> {
    let env = TestEnv::aws().await;
    let missing = format!("arn:aws:sns:{}:123456789012:{}", env.region, unique("nope"));
    let notifier = SnsNotifier::new(
        aws_sdk_sns::Client::new(&env.sdk),
        missing,
        "dns-sync",
        "dev",
    );
    let err = notifier
        .notify(&Notification::new("s", "b", Severity::Info))
        .await
        .expect_err("the topic does not exist");
    assert_eq!(err.code.as_deref(), Some("NotFound"));
    assert_eq!(err.class, bridgekeeper::Class::NonRetryable);
    assert!(
        err.to_string().starts_with("sns:Publish failed: NotFound"),
        "{err}"
    );
    Ok(())
}

/// A push rolled to several clusters is one message; its `cluster` attribute is a String.Array,
/// so a team's subscription filtered on one cluster still gets it (a "dev,prod" String would not
/// match `["prod"]`).
#[tokio::test]
async fn a_filter_on_one_cluster_matches_a_message_for_several() -> Result<()> {
    let env = TestEnv::aws().await;
    let prod_only = Inbox::filtered(&env.sdk, Some(r#"{"cluster": ["prod"]}"#)).await?;
    let notifier = SnsNotifier::new(
        aws_sdk_sns::Client::new(&env.sdk),
        prod_only.topic_arn.as_str(),
        "image-rollout",
        "prod",
    );
    let both = Notification::new("rolled in dev, prod", "body", Severity::Info)
        .array_attribute("cluster", ["dev", "prod"]);
    let dev = Notification::new("rolled in dev", "body", Severity::Info)
        .array_attribute("cluster", ["dev"]);
    notifier.notify(&both).await?;
    notifier.notify(&dev).await?;
    let got = prod_only.receive().await?;
    let subjects: Vec<_> = got.iter().filter_map(|m| m.subject.as_deref()).collect();
    assert_eq!(subjects, ["rolled in dev, prod"]);
    Ok(())
}
