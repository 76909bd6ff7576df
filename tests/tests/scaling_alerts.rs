//! scaling-alerts against moto: an Auto Scaling group tagged like an EKS node group and EC2
//! instances tagged like Karpenter's, batches of events through the handler, the messages read
//! back from SNS through SQS.

use anyhow::Result;
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::accounts::Accounts;
use bridgekeeper::config::Env;
use bridgekeeper::idempotency::DynamoStore;
use bridgekeeper::notify::SnsNotifier;
use bridgekeeper_tests::{
    FailedQueue, Inbox, MEMBER_ACCOUNT, TestEnv, acting_in, hub_accounts, idempotency_store,
    instance, node_group, repo_root, unique,
};
use scaling_alerts::Config;
use scaling_alerts::aws::{AutoScalingApi, Ec2Api, EksApi};
use scaling_alerts::batch::record_rejected;
use scaling_alerts::pipeline::{Ports, handle_batch};

fn sample(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("events/scaling-alerts").join(name)).unwrap()
}

/// The bodies as SQS records, each event moved to `region`: enrichment asks the region the
/// event happened in, and each test has its own moto region.
fn batch(region: &str, bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("msg-{i}"));
        m.body = Some(body.replace(
            "\"region\": \"eu-west-1\"",
            &format!("\"region\": \"{region}\""),
        ));
        event.records.push(m);
    }
    event
}

type MotoPorts = Ports<AutoScalingApi, Ec2Api, SnsNotifier, DynamoStore, EksApi>;

async fn ports(sdk: &SdkConfig, config: &Config) -> Result<MotoPorts> {
    Ok(Ports {
        asg: AutoScalingApi::new(Accounts::single(sdk)),
        ec2: Ec2Api::new(Accounts::single(sdk)),
        eks: EksApi::new(Accounts::single(sdk), sdk, config.follow_up_queue.clone()),
        notifiers: config.notifiers(aws_sdk_sns::Client::new(sdk)),
        store: idempotency_store(sdk, "scaling-alerts").await?,
    })
}

/// A member account's event, forwarded to the hub: its group exists only in the member account
/// (moto keeps accounts apart), so only the member role can enrich it.
#[tokio::test]
async fn a_member_accounts_event_is_enriched_with_that_accounts_group() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let member = acting_in(&env.sdk, MEMBER_ACCOUNT).await;
    let asg = unique("eks-staging-ng-1");
    node_group(&member, &asg, "staging-eks", "ng-1", 2).await?;
    let launch = sample("launch-successful.json")
        .replace("eks-prod-ng-1-a2c4e6g8", &asg)
        .replace("\"123456789012\"", &format!("\"{MEMBER_ACCOUNT}\""));
    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "staging"),
    ]))?;
    let accounts = hub_accounts(&env.sdk, "scaling-alerts");
    let ports = Ports {
        asg: AutoScalingApi::new(accounts.clone()),
        ec2: Ec2Api::new(accounts.clone()),
        eks: EksApi::new(accounts, &env.sdk, None),
        notifiers: config.notifiers(aws_sdk_sns::Client::new(&env.sdk)),
        store: idempotency_store(&env.sdk, "scaling-alerts").await?,
    };
    let response = handle_batch(batch(&env.region, &[launch]), &config, &ports).await?;
    assert_eq!(response.notifications, 1, "{response:?}");
    let messages = inbox.receive().await?;
    assert_eq!(messages.len(), 1);
    let body = &messages[0].body;
    assert!(
        body.contains("Cluster:   staging-eks (node group ng-1)"),
        "{body}"
    );
    assert!(
        body.contains("Group now: desired 2 (min 1, max 10)"),
        "{body}"
    );
    Ok(())
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
    let ports = ports(&env.sdk, &config).await?;
    let response = handle_batch(batch(&env.region, &bodies), &config, &ports).await?;
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

#[tokio::test]
async fn a_spot_interruption_of_a_karpenter_node_is_found_by_its_tags_and_other_instances_are_dropped()
-> Result<()> {
    let env = TestEnv::aws().await;
    let mail = Inbox::create(&env.sdk).await?;
    let chat = Inbox::create(&env.sdk).await?;
    let cluster = unique("prod-eks");
    let node = instance(
        &env.sdk,
        "m6i.large",
        true,
        &[
            ("karpenter.sh/nodepool", "default"),
            ("eks:eks-cluster-name", &cluster),
            (&format!("kubernetes.io/cluster/{cluster}"), "owned"),
        ],
    )
    .await?;
    let bastion = instance(&env.sdk, "t3.micro", false, &[("Name", "bastion")]).await?;
    let spot = sample("spot-interruption.json");
    let bodies = vec![
        spot.replace("i-0c1d2e3f4a5b6c7d8", &node),
        spot.replace("i-0c1d2e3f4a5b6c7d8", &bastion)
            .replace("a1b2c3d4-0001", "a1b2c3d4-0011"),
        // Gone from EC2 for good: a filter, unlike InstanceIds, does not fail the whole lookup.
        spot.replace("i-0c1d2e3f4a5b6c7d8", "i-0123456789abcdef0")
            .replace("a1b2c3d4-0001", "a1b2c3d4-0012"),
    ];
    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", mail.topic_arn.as_str()),
        ("CHAT_TOPIC_ARN", chat.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
    ]))?;
    let ports = ports(&env.sdk, &config).await?;
    let response = handle_batch(batch(&env.region, &bodies), &config, &ports).await?;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((response.notifications, response.dropped), (1, 2));

    let messages = mail.receive().await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(
        m.subject.as_deref(),
        Some(
            format!("[prod] Spot interruption: 1 node of Karpenter NodePool default in {cluster}")
                .as_str()
        )
    );
    assert!(
        m.body.contains(&format!(
            "Instances: {node}  m6i.large  spot  {}a",
            env.region
        )),
        "type, lifecycle and zone from DescribeInstances: {}",
        m.body
    );
    assert_eq!(m.attributes["severity"], "warning");
    assert_eq!(m.attributes["nodepool"], "default");
    assert_eq!(m.attributes["cluster"], cluster);
    let chatted = chat.receive().await?;
    assert_eq!(chatted.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&chatted[0].body)?;
    assert_eq!(
        json["content"]["title"],
        m.subject.clone().unwrap_or_default()
    );
    Ok(())
}

#[tokio::test]
async fn a_flapping_alarm_is_one_message_with_its_latest_state() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
    ]))?;
    let ports = ports(&env.sdk, &config).await?;
    let event: SqsEvent = serde_json::from_str(&sample("sqs-flapping-alarm.json"))?;
    let response = handle_batch(event, &config, &ports).await?;
    assert_eq!((response.notifications, response.coalesced), (1, 2));
    let messages = inbox.receive().await?;
    assert_eq!(
        messages[0].subject.as_deref(),
        Some("[prod] ALARM: api-cpu-high (CPUUtilization > 80), 3 changes")
    );
    assert_eq!(messages[0].attributes["severity"], "error");
    Ok(())
}

/// One Kubernetes Event in kmock, as kube-controller-manager, the scheduler or Karpenter writes
/// it.
async fn kube_event(
    ns: &str,
    name: &str,
    object: (&str, &str),
    reason: &str,
    message: &str,
) -> Result<()> {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, PostParams};
    let client = bridgekeeper::cluster::ClusterAccess::url(&bridgekeeper_tests::kmock().url, None)
        .client()
        .await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let e: Event = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": object.0, "name": object.1, "namespace": ns},
        "reason": reason, "message": message, "type": "Normal", "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
    }))?;
    Api::<Event>::namespaced(client, ns)
        .create(&PostParams::default(), &e)
        .await?;
    Ok(())
}

/// The cluster's own story, from its Events in kmock: an HPA rescale, two pods of one
/// Deployment the scheduler could not place, and a node Karpenter removes become one message
/// each; a second run repeats none of them.
#[tokio::test]
async fn hpa_pending_pods_and_karpenter_events_are_told_once_each() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let ns = unique("shop");
    let node = unique("ip-10-0-1-23");
    kube_event(
        &ns,
        "api.1",
        ("HorizontalPodAutoscaler", "api"),
        "SuccessfulRescale",
        "New size: 5; reason: cpu resource utilization (percentage of request) above target",
    )
    .await?;
    for pod in ["api-7d9f8b6c5d-x2x9z", "api-7d9f8b6c5d-k8s2p"] {
        kube_event(&ns, &format!("{pod}.1"), ("Pod", pod), "FailedScheduling",
            "0/12 nodes are available: 12 Insufficient cpu. preemption: 0/12 nodes are available: 12 No preemption victims found for incoming pod.").await?;
    }
    kube_event(
        &ns,
        &format!("{node}.1"),
        ("Node", &node),
        "DisruptionTerminating",
        "Disrupting Node: Underutilized/Delete",
    )
    .await?;
    let clusters = format!("dev={}", bridgekeeper_tests::kmock().url);
    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "dev"),
        ("CLUSTERS", clusters.as_str()),
        ("LOCAL_HTTP_CLUSTERS", "true"),
    ]))?;
    let ports = ports(&env.sdk, &config).await?;
    let kube = scaling_alerts::kube::KubeClusterEvents::new(
        &config.kube_clusters,
        &Accounts::single(&env.sdk),
    );
    let run = scaling_alerts::handler::clusters(&config, &ports, &kube).await?;
    assert!(run.clusters[0].error.is_none(), "{run:?}");
    let mut subjects: Vec<String> = inbox
        .receive()
        .await?
        .into_iter()
        .filter_map(|m| m.subject)
        .collect();
    subjects.sort();
    // kmock is shared: other tests' Events may be told too; this test's are exactly these.
    let mine: Vec<&String> = subjects
        .iter()
        .filter(|s| s.contains(&ns) || s.contains("Karpenter"))
        .collect();
    assert!(
        mine.iter().any(|s| s.as_str()
            == format!(
                "[dev] HPA {ns}/api scaled to 5 in dev: cpu resource utilization above target"
            )),
        "{subjects:?}"
    );
    assert!(
        mine.iter()
            .any(|s| s.as_str()
                == format!("[dev] 2 pods of {ns}/api pending in dev: insufficient cpu")),
        "{subjects:?}"
    );
    assert!(
        mine.iter()
            .any(|s| s.starts_with("[dev] Karpenter is removing") && s.contains("underutilized")),
        "{subjects:?}"
    );
    let again = scaling_alerts::handler::clusters(&config, &ports, &kube).await?;
    assert_eq!(again.clusters[0].notifications, 0, "{again:?}");
    assert!(inbox.receive().await?.is_empty());
    Ok(())
}

/// A node-group version update is told as it starts and followed: the function sends itself the
/// follow-up through its own queue (FOLLOW_UP_QUEUE_URL), delayed 15 minutes, in the shape it
/// reads back. (moto has no DescribeUpdate: what a follow-up asks EKS is tested with
/// aws-smithy-mocks in the crate.)
#[tokio::test]
async fn a_node_group_update_sends_its_delayed_follow_up_to_the_functions_queue() -> Result<()> {
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(unique("scaling-events"))
        .send()
        .await?
        .queue_url
        .unwrap();
    let config = Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
        ("FOLLOW_UP_QUEUE_URL", queue.as_str()),
    ]))?;
    let ports = ports(&env.sdk, &config).await?;
    let call = sample("nodegroup-version-update.json");
    for _ in 0..2 {
        let r = handle_batch(
            batch(&env.region, std::slice::from_ref(&call)),
            &config,
            &ports,
        )
        .await?;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attributes.get(&name).cloned().unwrap_or_default()
    };
    // Once, though the call came twice; and not receivable before its delay.
    assert_eq!(
        (
            count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        ),
        ("1".to_owned(), "0".to_owned()),
        "{attributes:?}"
    );
    let started = inbox.receive().await?;
    assert_eq!(
        started[0].subject.as_deref(),
        Some("[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 started")
    );
    Ok(())
}
