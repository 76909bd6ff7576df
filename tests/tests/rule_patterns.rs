//! Every EventBridge rule pattern of `template.yaml` and of the member template
//! (`deploy/member/template.yaml`, whose rules forward a member account's events to the hub), as
//! CloudFormation would create it (SAM
//! transform, conditions resolved: tests/template/patterns.py), put on moto's event bus with an
//! SQS queue as its target; every sample of `events/` put on the bus; what each queue received
//! is exactly what that rule must pass. moto routes PutEvents through real pattern matching
//! (`exists`, `prefix`); its TestEventPattern API is not implemented, so it is not used. (Real
//! EventBridge refuses PutEvents with an `aws.*` source; moto accepts it, which makes this test
//! possible.)

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bridgekeeper_tests::{TestEnv, repo_root, unique};
use serde_json::Value;

/// Parameters that deploy every rule, with no name filters, so each sample can match.
const PARAMS: &str = r#"{"ImageRolloutClusters": "dev=dev-eks", "DnsSyncClusters": "dev=dev-eks",
  "DnsSyncZoneIds": "Z0123456789ABCDEFGHIJ", "DnsSyncOnNewLoadBalancer": "true"}"#;

/// rule logical id -> the samples it must pass (every other sample must not reach it).
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "ImageRolloutFunctionImagePushed",
        &[
            "image-rollout/push-latest.json",
            "image-rollout/push-stable.json",
            "image-rollout/push-version.json",
            // Tagged, so the rule passes it (an anything-but alone would also drop pushes
            // without artifact-media-type); the function refuses it by its media type.
            "image-rollout/push-attestation.json",
            // Bad input on purpose (sam-local checks the function refuses it): the rule does
            // not look at the digest.
            "image-rollout/push-bad-digest.json",
        ],
    ),
    (
        "SnapshotExportFunctionExportFinished",
        &[
            "snapshot-export/export-completed.json",
            "snapshot-export/cluster-export-failed.json",
            "snapshot-export/snapshot-created.json",
            "snapshot-export/backup-snapshot-created.json",
        ],
    ),
    (
        "AutoScalingEventsRule",
        &[
            "scaling-alerts/launch-successful.json",
            "scaling-alerts/launch-unsuccessful.json",
            "scaling-alerts/terminate-successful.json",
            "scaling-alerts/terminate-unsuccessful.json",
            "scaling-alerts/lifecycle-launch.json",
            "scaling-alerts/lifecycle-terminate.json",
            "scaling-alerts/warm-pool-return.json",
            "scaling-alerts/instance-refresh-checkpoint.json",
            "scaling-alerts/instance-refresh-failed.json",
        ],
    ),
    (
        "AlarmEventsRule",
        &[
            "scaling-alerts/alarm-ok.json",
            "scaling-alerts/alarm-state-change.json",
            "scaling-alerts/alarm-muted.json",
            "scaling-alerts/alarm-math.json",
            "scaling-alerts/alarm-anomaly.json",
            "scaling-alerts/alarm-composite-suppressed.json",
            "scaling-alerts/alarm-tagged.json",
            "scaling-alerts/alarm-contributor.json",
        ],
    ),
    (
        "NodegroupEventsRule",
        &[
            "scaling-alerts/nodegroup-config-update.json",
            "scaling-alerts/nodegroup-config-failed.json",
            "scaling-alerts/nodegroup-config-denied.json",
            "scaling-alerts/nodegroup-labels-update.json",
            "scaling-alerts/nodegroup-create.json",
            "scaling-alerts/nodegroup-delete.json",
            "scaling-alerts/nodegroup-version-update.json",
        ],
    ),
    (
        "NodeInterruptionEventsRule",
        &[
            "scaling-alerts/spot-interruption.json",
            "scaling-alerts/rebalance-recommendation.json",
        ],
    ),
    (
        "NodeStateEventsRule",
        &["scaling-alerts/instance-stopped.json"],
    ),
    (
        "HealthEventsRule",
        &["scaling-alerts/health-scheduled-retirement.json"],
    ),
    (
        "AddonEventsRule",
        &["scaling-alerts/addon-health-degraded.json"],
    ),
    (
        "DnsSyncOnNewLoadBalancerRule",
        &["dns-sync/load-balancer-created.json"],
    ),
];

/// What the member template needs to create its forwarding rules.
const MEMBER_PARAMS: &str = r#"{"HubAccountId": "111111111111", "ExternalId": "bk-7f3a9c2e41d8",
  "HubScalingAlertsRoleArn": "arn:aws:iam::111111111111:role/hub-ScalingAlertsFunctionRole-X",
  "HubEventBusArn": "arn:aws:events:eu-west-1:111111111111:event-bus/default"}"#;

/// Each forwarding rule must pass at least what its hub rule passes (else a member's event never
/// reaches the hub): here exactly that, as neither has name filters in these parameter sets.
const FORWARDED: &[(&str, &str)] = &[
    ("ForwardImagePushes", "ImageRolloutFunctionImagePushed"),
    (
        "ForwardSnapshotEvents",
        "SnapshotExportFunctionExportFinished",
    ),
    ("ForwardAutoScalingEvents", "AutoScalingEventsRule"),
    ("ForwardAlarmEvents", "AlarmEventsRule"),
    ("ForwardNodegroupEvents", "NodegroupEventsRule"),
    (
        "ForwardNodeInterruptionEvents",
        "NodeInterruptionEventsRule",
    ),
    ("ForwardNodeStateEvents", "NodeStateEventsRule"),
    ("ForwardHealthEvents", "HealthEventsRule"),
    ("ForwardAddonEvents", "AddonEventsRule"),
    ("ForwardNewLoadBalancers", "DnsSyncOnNewLoadBalancerRule"),
];

fn rule_patterns(template: &str, params: &str) -> Result<BTreeMap<String, Value>> {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run `make setup` (make test does it)",
            python.display()
        );
    }
    let out = Command::new(python)
        .arg(root.join("tests/template/patterns.py"))
        .arg(root.join(template))
        .arg(params)
        .output()?;
    if !out.status.success() {
        bail!(
            "patterns.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every sample that is an EventBridge event (not an SQS batch or a CloudFormation request).
fn samples() -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(repo_root().join("events"))? {
        let dir = dir?.path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir)? {
            let path = file?.path();
            let event: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            if event.get("source").is_some() && event.get("detail-type").is_some() {
                let name = format!(
                    "{}/{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    path.file_name().unwrap().to_string_lossy()
                );
                out.push((name, event));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[tokio::test]
async fn every_rule_passes_exactly_the_samples_it_must() -> Result<()> {
    let expected: BTreeMap<&str, BTreeSet<&str>> = EXPECTED
        .iter()
        .map(|(r, s)| (*r, s.iter().copied().collect()))
        .collect();
    check_rules("template.yaml", PARAMS, expected).await
}

#[tokio::test]
async fn every_forwarding_rule_passes_what_its_hub_rule_needs() -> Result<()> {
    let hub: BTreeMap<&str, &[&str]> = EXPECTED.iter().copied().collect();
    let expected: BTreeMap<&str, BTreeSet<&str>> = FORWARDED
        .iter()
        .map(|(forward, rule)| (*forward, hub[rule].iter().copied().collect()))
        .collect();
    check_rules("deploy/member/template.yaml", MEMBER_PARAMS, expected).await
}

/// The template's rules on a bus of their own, each with a queue; every sample put on the bus;
/// each queue must have received exactly the samples `expected` names for its rule.
async fn check_rules(
    template: &str,
    params: &str,
    expected: BTreeMap<&str, BTreeSet<&str>>,
) -> Result<()> {
    let env = TestEnv::aws().await;
    let events = aws_sdk_eventbridge::Client::new(&env.sdk);
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let bus = unique("bridgekeeper-bus");
    events.create_event_bus().name(&bus).send().await?;

    let patterns = rule_patterns(template, params)?;
    let found: BTreeSet<&str> = patterns.keys().map(String::as_str).collect();
    assert_eq!(
        found,
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "a rule was added or removed: say in EXPECTED which samples it must pass"
    );

    let mut queues = BTreeMap::new();
    for (rule, pattern) in &patterns {
        let url = sqs
            .create_queue()
            .queue_name(unique(rule))
            .send()
            .await?
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name(rule)
            .event_bus_name(&bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .with_context(|| format!("{rule}: {pattern}"))?;
        events
            .put_targets()
            .rule(rule)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()?,
            )
            .send()
            .await?;
        queues.insert(rule.clone(), url);
    }

    let samples = samples()?;
    assert!(samples.len() >= 15, "samples: {}", samples.len());
    for (name, event) in &samples {
        // The sample's name rides along as a resource, so each queue says which samples it got.
        let mut resources: Vec<String> = event["resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        resources.push(format!("sample:{name}"));
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&bus)
            .source(event["source"].as_str().unwrap())
            .detail_type(event["detail-type"].as_str().unwrap())
            .detail(event["detail"].to_string())
            .set_resources(Some(resources))
            .build();
        let out = events.put_events().entries(entry).send().await?;
        assert_eq!(out.failed_entry_count, 0, "{name}: {out:?}");
    }

    let mut wrong = Vec::new();
    for (rule, url) in &queues {
        let mut got = BTreeSet::new();
        loop {
            let batch = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await?
                .messages
                .unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let body: Value = serde_json::from_str(m.body().unwrap())?;
                for r in body["resources"].as_array().into_iter().flatten() {
                    if let Some(s) = r.as_str().and_then(|s| s.strip_prefix("sample:")) {
                        got.insert(s.to_owned());
                    }
                }
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await?;
            }
        }
        let want: BTreeSet<String> = expected[rule.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if got != want {
            wrong.push(format!(
                "{rule}: passed {:?} but must pass {:?}",
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
