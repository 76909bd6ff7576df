//! The shared SNS notifier against moto: publish, then read the message back through an SQS
//! queue subscribed to the topic (moto's data endpoint breaks once RDS objects exist).

use std::collections::HashMap;

use anyhow::{Context, Result};
use bridgekeeper::notify::{Notification, Notifier, Severity, SnsNotifier};
use bridgekeeper_tests::{TestEnv, unique};
use serde_json::Value;

/// A topic with an SQS queue subscribed to it (raw delivery off, so the SNS envelope with
/// Subject and MessageAttributes arrives as the queue message body).
pub async fn topic_with_queue(env: &TestEnv) -> Result<(String, aws_sdk_sqs::Client, String)> {
    let sns = aws_sdk_sns::Client::new(&env.sdk);
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let topic = sns.create_topic().name(unique("alerts")).send().await?.topic_arn.context("topic arn")?;
    let queue_url = sqs.create_queue().queue_name(unique("inbox")).send().await?.queue_url.context("queue url")?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .context("queue arn")?
        .clone();
    sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(queue_arn).send().await?;
    Ok((topic, sqs, queue_url))
}

async fn receive(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Vec<Value>> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await?;
    out.messages()
        .iter()
        .map(|m| Ok(serde_json::from_str(m.body().context("body")?)?))
        .collect()
}

#[tokio::test]
async fn publishes_subject_body_and_filterable_attributes() -> Result<()> {
    let env = TestEnv::aws().await;
    let (topic, sqs, queue_url) = topic_with_queue(&env).await?;
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&env.sdk), &topic, "snapshot-export", "prod");
    let subject = format!("[prod] Export failed: {}", "ö".repeat(120));
    let n = Notification::new(&subject, "shop-db: KMS key disabled\nsecond line", Severity::Error)
        .attribute("cluster", "prod-eks");

    let id = notifier.notify(&n).await?;
    assert!(!id.is_empty());

    let messages = receive(&sqs, &queue_url).await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["MessageId"], id);
    assert_eq!(m["Subject"].as_str().unwrap().chars().count(), 100);
    assert!(m["Subject"].as_str().unwrap().starts_with("[prod] Export failed: öö"));
    assert_eq!(m["Message"], "shop-db: KMS key disabled\nsecond line");
    let attrs: HashMap<&str, &str> = m["MessageAttributes"]
        .as_object()
        .context("attributes")?
        .iter()
        .map(|(k, v)| (k.as_str(), v["Value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        attrs,
        HashMap::from([
            ("severity", "error"),
            ("function", "snapshot-export"),
            ("environment", "prod"),
            ("cluster", "prod-eks"),
        ])
    );
    Ok(())
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_a_non_retryable_error_with_its_code() -> Result<()> {
    let env = TestEnv::aws().await;
    let missing = format!("arn:aws:sns:{}:123456789012:{}", env.region, unique("nope"));
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&env.sdk), missing, "dns-sync", "dev");
    let err = notifier
        .notify(&Notification::new("s", "b", Severity::Info))
        .await
        .expect_err("the topic does not exist");
    assert_eq!(err.code.as_deref(), Some("NotFound"));
    assert_eq!(err.class, bridgekeeper::Class::NonRetryable);
    assert!(err.to_string().starts_with("sns:Publish failed: NotFound"), "{err}");
    Ok(())
}
