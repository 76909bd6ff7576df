//! scaling-alerts against moto: an Auto Scaling group tagged like an EKS node group, a batch of
//! events through the handler, the messages read back from SNS through SQS.

use anyhow::Result;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::config::Env;
use bridgekeeper_tests::{FailedQueue, Inbox, TestEnv, node_group, repo_root, unique};
use scaling_alerts::Config;
use scaling_alerts::aws::AutoScalingApi;
use scaling_alerts::handler::{handle, record_rejected};

fn sample(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("events/scaling-alerts").join(name)).unwrap()
}

fn batch(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("msg-{i}"));
        m.body = Some(body.clone());
        event.records.push(m);
    }
    event
}

#[tokio::test]
async fn a_batch_becomes_enriched_grouped_messages_and_a_bad_record_is_kept_once() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let asg = unique("eks-prod-ng-1");
    let ids = node_group(&env.sdk, &asg, "prod-eks", "ng-1", 3).await?;
    assert_eq!(ids.len(), 3);

    let launch = sample("launch-successful.json").replace("eks-prod-ng-1-a2c4e6g8", &asg);
    let mut bodies: Vec<String> = ids
        .iter()
        .map(|id| launch.replace("i-0a1b2c3d4e5f60718", id))
        .collect();
    bodies.push("{\"this is\": \"not an event\"}".into());
    bodies.push(sample("alarm-state-change.json").replace("eks-prod-ng-1-a2c4e6g8", &asg));

    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
    ]))?;
    let notifiers = config.notifiers(aws_sdk_sns::Client::new(&env.sdk));
    let api = AutoScalingApi::new(aws_sdk_autoscaling::Client::new(&env.sdk));
    let response = handle(batch(&bodies), &config, &api, &notifiers).await?;
    let queue = FailedQueue::create(&env.sdk).await?;
    let sink = queue.sink();
    let response = record_rejected(response, &sink).await;

    // The bad record is kept once in the failed-invocations queue, not handed back to SQS.
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((response.notifications, response.coalesced), (2, 2));
    let kept = queue.records().await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let record = &kept[0];
    assert_eq!(record["function"], "scaling-alerts");
    assert_eq!(record["error_type"], "NonRetryable.InvalidEvent");
    assert_eq!(record["event"]["this is"], "not an event");

    let messages = inbox.receive().await?;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let launched = &messages[0];
    assert_eq!(
        launched.subject.as_deref(),
        Some("[prod] 3 nodes launched in prod-eks/ng-1, desired 4→5")
    );
    for id in &ids {
        assert!(
            launched.body.contains(&format!("{id}  m6i.large")),
            "instance type from the group: {}",
            launched.body
        );
    }
    assert!(
        launched
            .body
            .contains("Group now: desired 3 (min 1, max 10)"),
        "{}",
        launched.body
    );
    assert_eq!(launched.attributes["cluster"], "prod-eks");
    assert_eq!(launched.attributes["group"], asg);
    assert_eq!(launched.attributes["severity"], "info");
    assert_eq!(launched.attributes["function"], "scaling-alerts");

    let alarm = &messages[1];
    assert_eq!(
        alarm.subject.as_deref(),
        Some("[prod] ALARM: api-cpu-high (CPUUtilization > 80)")
    );
    assert_eq!(alarm.attributes["severity"], "error");
    assert_eq!(alarm.attributes["cluster"], "prod-eks");
    Ok(())
}
