//! An SQS batch of EventBridge events in; grouped notifications and the batch item failures out.
//! The only place that knows the event shapes.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::events::{
    ALARM_STATE_CHANGE, AlarmStateChangeEvent, AutoScalingInstanceEvent, Envelope, EventBridgeEvent,
};
use bridgekeeper::failures::{FailureRecord, FailureSink};
use bridgekeeper::idempotency::{Claim, Store, event_id};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::{Notification, Notifier, Severity};
use bridgekeeper::{AwsError, Error};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::AutoScaling;
use crate::config::{Config, MessageFormat};
use crate::domain::{self, AlarmEvent, Fact, InstanceAction, InstanceEvent, NodegroupEvent};

/// Where alerts go: every alert to `all`, error-severity alerts also to `errors`.
pub struct Notifiers<N> {
    pub all: N,
    pub errors: Option<N>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub message_id: String,
    pub error: String,
    /// `false`: the record cannot be used (it goes to the DLQ after the queue's retries);
    /// `true`: its notification could not be sent this time.
    pub retryable: bool,
}

/// The Lambda's answer: `batchItemFailures` is what SQS acts on (those records come back, and
/// after the queue's maxReceiveCount go to its DLQ); the rest is the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
    pub events: usize,
    pub notifications: usize,
    pub coalesced: usize,
    /// Records whose EventBridge event was already reported (an earlier batch, or twice here).
    pub duplicates: usize,
    pub failures: Vec<RecordError>,
    /// Records that can never be used: kept in the failed-invocations queue by
    /// [`record_rejected`] instead of being received five times on their way to the DLQ.
    #[serde(skip)]
    pub rejected: Vec<(String, String)>,
}

/// [`handle_payload`], reporting each EventBridge event once: a record whose event id was handled
/// in an earlier batch, or appears twice in this one, is dropped before anything is sent. An id
/// is completed once its alert went out and released when its record goes back to SQS.
pub async fn handle_once<A: AutoScaling, N: Notifier, S: Store>(
    payload: serde_json::Value,
    lease_until: SystemTime,
    config: &Config,
    asg: &A,
    notifiers: &Notifiers<N>,
    store: &S,
) -> Result<Response, Error> {
    if payload.get("Records").is_none() {
        return handle_payload(payload, config, asg, notifiers).await;
    }
    let batch: SqsEvent = serde_json::from_value(payload)
        .map_err(|e| Error::invalid_event(format!("malformed SQS batch: {e}")))?;
    let total = batch.records.len();
    let mut seen = BTreeSet::new();
    let mut claimed: Vec<(String, String)> = Vec::new();
    let mut kept = SqsEvent::default();
    for record in batch.records {
        let id = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .as_ref()
            .and_then(event_id);
        let Some(id) = id else {
            kept.records.push(record);
            continue;
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        match store.begin(&id, lease_until).await {
            Ok(Claim::New) => {
                claimed.push((id, record.message_id.clone().unwrap_or_default()));
                kept.records.push(record);
            }
            Ok(Claim::Completed | Claim::InProgress) => {}
            Err(e) => {
                bridgekeeper::idempotency::skipped(&id, &e);
                kept.records.push(record);
            }
        }
    }
    let mut response = handle(kept, config, asg, notifiers).await?;
    response.duplicates = total - response.events;
    response.events = total;
    for (id, message_id) in claimed {
        let returned = response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == message_id);
        let done = if returned {
            store.release(&id).await
        } else {
            store.complete(&id).await
        };
        if let Err(e) = done {
            warn!(event_id = %id, error = %e, "idempotency record not updated");
        }
    }
    Ok(response)
}

/// Records each unusable record once in the failed-invocations queue; one the queue could not
/// take goes back to SQS as a batch item failure, so it is still kept (in the DLQ) in the end.
pub async fn record_rejected<S: FailureSink>(mut response: Response, sink: &S) -> Response {
    for (id, body) in std::mem::take(&mut response.rejected) {
        let why = response
            .failures
            .iter()
            .find(|f| f.message_id == id)
            .map(|f| f.error.clone())
            .unwrap_or_default();
        let event = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        let record = FailureRecord::rejected(crate::FUNCTION, &Error::invalid_event(why), &event);
        if let Err(e) = sink.record(&record).await {
            warn!(message_id = %id, error = %e, "failed-invocations queue unreachable; record returned to SQS");
            response.batch_item_failures.push(ItemFailure {
                item_identifier: id,
            });
        }
    }
    response
}

/// `detail` of an `AWS API Call via CloudTrail` event for EKS `UpdateNodegroupConfig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailCall {
    event_name: String,
    #[serde(default)]
    event_time: Option<DateTime<Utc>>,
    #[serde(default)]
    user_identity: Option<UserIdentity>,
    #[serde(default)]
    request_parameters: Option<NodegroupConfigRequest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserIdentity {
    #[serde(default)]
    arn: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodegroupConfigRequest {
    /// The cluster's name (the API's path parameter is called `name`).
    name: String,
    nodegroup_name: String,
    #[serde(default)]
    scaling_config: Option<ScalingConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScalingConfig {
    min_size: Option<i64>,
    max_size: Option<i64>,
    desired_size: Option<i64>,
}

fn parse(record: &SqsMessage) -> Result<Fact, String> {
    let body = record.body.as_deref().ok_or("the record has no body")?;
    let envelope: Envelope = serde_json::from_str(body)
        .map_err(|e| format!("the body is not an EventBridge event: {e}"))?;
    let (source, detail_type) = (
        envelope.source().to_owned(),
        envelope.detail_type().to_owned(),
    );
    let malformed = |e: serde_json::Error| format!("malformed {detail_type} event: {e}");
    if let (true, Some(action)) = (
        source == "aws.autoscaling",
        InstanceAction::from_detail_type(&detail_type),
    ) {
        let e: AutoScalingInstanceEvent = serde_json::from_str(body).map_err(malformed)?;
        let d = e.detail;
        return Ok(Fact::Instance(InstanceEvent {
            action,
            group: d.auto_scaling_group_name,
            instance_id: d.ec2_instance_id.filter(|i| !i.is_empty()),
            zone: d.details.and_then(|x| x.availability_zone),
            cause: d.cause,
            status_message: d.status_message,
            time: d.end_time.or(e.time),
        }));
    }
    if (source.as_str(), detail_type.as_str()) == ALARM_STATE_CHANGE {
        let e: AlarmStateChangeEvent = serde_json::from_str(body).map_err(malformed)?;
        let d = e.detail;
        let reason_data = d.state.reason_data().unwrap_or_default();
        let stat = d
            .configuration
            .as_ref()
            .and_then(|c| c.metrics.iter().find_map(|m| m.metric_stat.clone()));
        return Ok(Fact::Alarm(AlarmEvent {
            name: d.alarm_name,
            state: d.state.value.text(),
            previous: d.previous_state.as_ref().map(|p| p.value.text()),
            reason: d.state.reason.clone(),
            description: d.configuration.as_ref().and_then(|c| c.description.clone()),
            metric: stat.as_ref().map(|s| {
                format!(
                    "{} {} ({}, {} s)",
                    s.metric.namespace, s.metric.name, s.stat, s.period
                )
            }),
            dimensions: stat.map(|s| s.metric.dimensions).unwrap_or_default(),
            threshold: reason_data.threshold,
            latest: reason_data.recent_datapoints.last().copied(),
            time: e.time,
        }));
    }
    if source == "aws.eks" && detail_type == "AWS API Call via CloudTrail" {
        let e: EventBridgeEvent<CloudTrailCall> = serde_json::from_str(body).map_err(malformed)?;
        let call = e.detail;
        if call.event_name != "UpdateNodegroupConfig" {
            return Err(format!(
                "EKS API call {} is not a node group scaling change",
                call.event_name
            ));
        }
        let req = call
            .request_parameters
            .ok_or("UpdateNodegroupConfig without requestParameters")?;
        let scaling = req.scaling_config;
        return Ok(Fact::Nodegroup(NodegroupEvent {
            cluster: req.name,
            nodegroup: req.nodegroup_name,
            min: scaling.as_ref().and_then(|s| s.min_size),
            max: scaling.as_ref().and_then(|s| s.max_size),
            desired: scaling.as_ref().and_then(|s| s.desired_size),
            who: call.user_identity.and_then(|u| u.arn),
            time: call.event_time.or(e.time),
        }));
    }
    Err(format!(
        "source {source:?}, detail-type {detail_type:?} is not a scaling or alarm event"
    ))
}

fn formatted(n: Notification, format: MessageFormat) -> Notification {
    match format {
        MessageFormat::Text => n,
        MessageFormat::Chat => Notification {
            body: domain::chat_message(&n),
            ..n
        },
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records", default)]
    records: Option<serde::de::IgnoredAny>,
}

/// The Lambda's input: an SQS batch (the deployed path), or one EventBridge event invoked
/// directly (`cargo lambda invoke --data-file events/scaling-alerts/alarm-ok.json`), which is
/// handled as a batch of one and fails the invocation if it cannot be used.
pub async fn handle_payload<A: AutoScaling, N: Notifier>(
    payload: serde_json::Value,
    config: &Config,
    asg: &A,
    notifiers: &Notifiers<N>,
) -> Result<Response, Error> {
    bridgekeeper::runtime::readable(&payload)?;
    let probe: Probe = Probe::deserialize(&payload).map_err(|e| {
        Error::invalid_event(format!(
            "expected an SQS batch or an EventBridge event object: {e}"
        ))
    })?;
    if probe.records.is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)
            .map_err(|e| Error::invalid_event(format!("malformed SQS batch: {e}")))?;
        return handle(batch, config, asg, notifiers).await;
    }
    let mut record = SqsMessage::default();
    record.message_id = Some("direct-invoke".into());
    record.body = Some(payload.to_string());
    let mut batch = SqsEvent::default();
    batch.records.push(record);
    let response = handle(batch, config, asg, notifiers).await?;
    match response.failures.first() {
        Some(f) if f.retryable => Err(Error::Transient(f.error.clone())),
        Some(f) => Err(Error::invalid_event(f.error.clone())),
        None => Ok(response),
    }
}

pub async fn handle<A: AutoScaling, N: Notifier>(
    event: SqsEvent,
    config: &Config,
    asg: &A,
    notifiers: &Notifiers<N>,
) -> Result<Response, Error> {
    let mut response = Response {
        events: event.records.len(),
        ..Response::default()
    };
    let mut facts = Vec::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        match parse(record) {
            Ok(fact) => facts.push((id, fact)),
            Err(why) => {
                warn!(message_id = %id, reason = %why, "record rejected");
                response.failures.push(RecordError {
                    message_id: id.clone(),
                    error: why,
                    retryable: false,
                });
                response
                    .rejected
                    .push((id, record.body.clone().unwrap_or_default()));
            }
        }
    }

    let names: Vec<String> = facts
        .iter()
        .filter_map(|(_, f)| f.group().map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Enrichment is a nicety: without it the alert still goes out, just with less context.
    let groups = if names.is_empty() {
        HashMap::new()
    } else {
        asg.describe_groups(&names)
            .await
            .unwrap_or_else(|e: AwsError| {
                warn!(error = %e, "enrichment skipped");
                HashMap::new()
            })
    };

    let parsed = facts.len();
    let alerts = domain::coalesce(facts);
    response.coalesced = parsed - alerts.len();
    for alert in alerts {
        let n = domain::render(&alert, &groups, &config.environment);
        let mut targets = vec![&notifiers.all];
        if n.severity == Severity::Error {
            targets.extend(notifiers.errors.as_ref());
        }
        let message = formatted(n, config.format);
        let mut failed = None;
        for target in targets {
            if let Err(e) = target.notify(&message).await {
                failed = Some(e);
            }
        }
        match failed {
            None => response.notifications += 1,
            Some(e) => {
                warn!(error = %e, records = alert.records.len(), "notification failed; records returned to the queue");
                for id in alert.records {
                    response.failures.push(RecordError {
                        message_id: id.clone(),
                        error: e.to_string(),
                        retryable: e.class() == bridgekeeper::Class::Retryable,
                    });
                    response.batch_item_failures.push(ItemFailure {
                        item_identifier: id,
                    });
                }
            }
        }
    }

    let mut metrics = Metrics::new(crate::FUNCTION);
    metrics
        .count("Events", response.events as u64)
        .count("NotificationsSent", response.notifications as u64)
        .count("EventsCoalesced", response.coalesced as u64)
        .count("RecordsFailed", response.batch_item_failures.len() as u64);
    metrics.flush();
    info!(
        events = response.events,
        notifications = response.notifications,
        coalesced = response.coalesced,
        failed = response.batch_item_failures.len(),
        "batch done"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use bridgekeeper::config::Env;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::domain::GroupInfo;
    use bridgekeeper::failures::testing::Kept;
    use bridgekeeper::idempotency::testing::Memory;

    macro_rules! sample {
        ($name:literal) => {
            include_str!(concat!("../../../events/scaling-alerts/", $name))
        };
    }

    #[derive(Default)]
    struct FakeAsg {
        groups: HashMap<String, GroupInfo>,
        calls: Mutex<Vec<Vec<String>>>,
        fail: bool,
    }

    impl AutoScaling for FakeAsg {
        async fn describe_groups(
            &self,
            names: &[String],
        ) -> Result<HashMap<String, GroupInfo>, AwsError> {
            self.calls.lock().unwrap().push(names.to_vec());
            if self.fail {
                return Err(AwsError {
                    operation: "autoscaling:DescribeAutoScalingGroups",
                    code: Some("AccessDenied".into()),
                    message: None,
                    request_id: None,
                    status: Some(403),
                    class: bridgekeeper::Class::NonRetryable,
                    source: "denied".into(),
                });
            }
            Ok(names
                .iter()
                .filter_map(|n| Some((n.clone(), self.groups.get(n)?.clone())))
                .collect())
        }
    }

    fn prod_ng1() -> FakeAsg {
        let info = GroupInfo {
            cluster: Some("prod-eks".into()),
            nodegroup: Some("ng-1".into()),
            desired: Some(7),
            min: Some(3),
            max: Some(10),
            instance_types: HashMap::from([
                ("i-0a1b2c3d4e5f60718".into(), "m6i.large".into()),
                ("i-0b2c3d4e5f6071829".into(), "m6i.large".into()),
            ]),
        };
        FakeAsg {
            groups: HashMap::from([("eks-prod-ng-1-a2c4e6g8".into(), info)]),
            ..FakeAsg::default()
        }
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Config {
        let base = [
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("ENVIRONMENT", "prod"),
        ];
        Config::from_env(&Env::from_pairs(base.iter().chain(extra).copied())).unwrap()
    }

    fn notifiers() -> Notifiers<Recorder> {
        Notifiers {
            all: Recorder::default(),
            errors: None,
        }
    }

    fn batch(bodies: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        for (i, body) in bodies.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(body.to_string());
            event.records.push(m);
        }
        event
    }

    /// One sample event, alone in a batch, as a subscriber receives it.
    async fn one(body: &str) -> Notification {
        let n = notifiers();
        let r = handle(batch(&[body]), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let sent = n.all.sent();
        assert_eq!(sent.len(), 1);
        let m = sent.into_iter().next().unwrap();
        assert!(
            m.subject.chars().count() <= 100 && !m.subject.contains('\n'),
            "{}",
            m.subject
        );
        m
    }

    #[tokio::test]
    async fn launch_reads_well() {
        let n = one(sample!("launch-successful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node launched in prod-eks/ng-1, desired 4→5"
        );
        assert_eq!(
            n.body,
            "1 node launched in eks-prod-ng-1-a2c4e6g8 (i-0a1b2c3d4e5f60718), desired 4→5.\n\n\
             Cluster:   prod-eks (node group ng-1)\n\
             Group now: desired 7 (min 3, max 10)\n\
             Instances: i-0a1b2c3d4e5f60718  m6i.large  eu-west-1b\n\
             Cause:     At 2026-11-21T09:12:10Z a user request update of AutoScalingGroup constraints to min: 3, max: 10, desired: 5 changing the desired capacity from 4 to 5.  At 2026-11-21T09:12:12Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 4 to 5.\n\
             Time:      2026-11-21 09:12:47 UTC"
        );
        assert_eq!(n.severity, Severity::Info);
        assert_eq!(n.attributes["source"], "autoscaling");
        assert_eq!(n.attributes["cluster"], "prod-eks");
        assert_eq!(n.attributes["group"], "eks-prod-ng-1-a2c4e6g8");
    }

    #[tokio::test]
    async fn unsuccessful_launch_is_an_error_with_the_reason() {
        let n = one(sample!("launch-unsuccessful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node failed to launch in prod-eks/ng-1, desired 4→5"
        );
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body
                .contains("Error:     We currently do not have sufficient m6i.large capacity"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("Instances: (no instance)  eu-west-1b"),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn terminations_read_well() {
        let n = one(sample!("terminate-successful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node terminated in prod-eks/ng-1, desired 5→4"
        );
        assert_eq!(n.severity, Severity::Info);
        let n = one(sample!("terminate-unsuccessful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node failed to terminate in prod-eks/ng-1, desired 5→4"
        );
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body
                .contains("Error:     Instance i-0a1b2c3d4e5f60718 is protected from scale in"),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn alarm_says_metric_threshold_comparison_and_previous_state() {
        let n = one(sample!("alarm-state-change.json")).await;
        assert_eq!(
            n.subject,
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80)"
        );
        assert_eq!(
            n.body,
            "api-cpu-high is ALARM (was OK).\n\n\
             Metric:      AWS/EC2 CPUUtilization (Average, 300 s) AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8\n\
             Condition:   CPUUtilization > 80, latest 93.5\n\
             Reason:      Threshold Crossed: 1 out of the last 1 datapoints [93.5 (21/11/26 16:59:00)] was greater than the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition).\n\
             Description: API pods' nodes are running hot\n\
             Time:        2026-11-21 17:04:40 UTC"
        );
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(n.attributes["alarm"], "api-cpu-high");
        assert_eq!(n.attributes["cluster"], "prod-eks");
    }

    #[tokio::test]
    async fn ok_after_alarm_is_resolved() {
        let n = one(sample!("alarm-ok.json")).await;
        assert_eq!(n.subject, "[prod] OK: api-cpu-high (CPUUtilization > 80)");
        assert!(
            n.body.starts_with("api-cpu-high is OK (was ALARM)."),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Resolved);
    }

    #[tokio::test]
    async fn node_group_resize_says_who_and_what() {
        let n = one(sample!("nodegroup-config-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 resized: desired 8, min 3, max 12"
        );
        assert!(
            n.body
                .contains("By:   arn:aws:sts::123456789012:assumed-role/PlatformAdmin/jane"),
            "{}",
            n.body
        );
        assert_eq!(
            (
                n.attributes["source"].as_str(),
                n.attributes["cluster"].as_str()
            ),
            ("eks", "prod-eks")
        );
    }

    #[tokio::test]
    async fn long_multibyte_names_stay_valid_and_within_the_subject_limit() {
        let long =
            sample!("alarm-state-change.json").replace("api-cpu-high", &"überlast-ñ-🚀".repeat(12));
        let n = one(&long).await;
        assert_eq!(n.subject.chars().count(), 99);
        assert!(n.subject.ends_with('…'));
    }

    #[tokio::test]
    async fn ten_launches_in_one_group_become_one_notification_listing_all() {
        let bodies: Vec<String> = (0..10)
            .map(|i| {
                sample!("launch-successful.json")
                    .replace("i-0a1b2c3d4e5f60718", &format!("i-{i:017}"))
            })
            .collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let n = notifiers();
        let asg = prod_ng1();
        let r = handle(batch(&refs), &config(&[]), &asg, &n).await.unwrap();
        assert_eq!((r.events, r.notifications, r.coalesced), (10, 1, 9));
        let sent = n.all.sent();
        assert!(
            sent[0]
                .subject
                .starts_with("[prod] 10 nodes launched in prod-eks/ng-1"),
            "{}",
            sent[0].subject
        );
        for i in 0..10 {
            assert!(sent[0].body.contains(&format!("i-{i:017}")));
        }
        assert_eq!(
            asg.calls.lock().unwrap().len(),
            1,
            "one DescribeAutoScalingGroups per batch"
        );
    }

    #[tokio::test]
    async fn the_sample_batch_groups_by_kind_and_group_in_arrival_order() {
        let event: SqsEvent = serde_json::from_str(sample!("sqs-batch.json")).unwrap();
        let n = notifiers();
        let asg = prod_ng1();
        let r = handle(event, &config(&[]), &asg, &n).await.unwrap();
        let subjects: Vec<String> = n.all.sent().into_iter().map(|m| m.subject).collect();
        assert_eq!(
            subjects,
            [
                "[prod] 3 nodes launched in prod-eks/ng-1, desired 4→7",
                "[prod] ALARM: api-cpu-high (CPUUtilization > 80)",
                "[prod] OK: api-cpu-high (CPUUtilization > 80)",
                "[prod] Node group prod-eks/ng-1 resized: desired 8, min 3, max 12",
            ]
        );
        assert_eq!((r.events, r.notifications, r.coalesced), (6, 4, 2));
        assert_eq!(
            *asg.calls.lock().unwrap(),
            [vec!["eks-prod-ng-1-a2c4e6g8".to_owned()]]
        );
    }

    #[tokio::test]
    async fn mixed_groups_and_kinds_stay_separate() {
        let other = sample!("launch-successful.json")
            .replace("eks-prod-ng-1-a2c4e6g8", "eks-prod-ng-2-b3d5f7h9");
        let n = notifiers();
        let bodies = [
            sample!("launch-successful.json"),
            other.as_str(),
            sample!("terminate-successful.json"),
            sample!("launch-successful.json"),
        ];
        let r = handle(batch(&bodies), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        let subjects: Vec<String> = n.all.sent().into_iter().map(|m| m.subject).collect();
        assert_eq!(
            subjects,
            [
                "[prod] 2 nodes launched in prod-eks/ng-1, desired 4→5",
                "[prod] 1 node launched in eks-prod-ng-2-b3d5f7h9, desired 4→5",
                "[prod] 1 node terminated in prod-eks/ng-1, desired 5→4",
            ]
        );
        assert_eq!(r.coalesced, 1);
    }

    #[tokio::test]
    async fn unparseable_records_are_kept_once_not_redelivered_and_do_not_block_the_rest() {
        let n = notifiers();
        let bodies = [
            "not json at all",
            sample!("launch-successful.json"),
            r#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}}"#,
            r#"{"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {"no": "group"}}"#,
        ];
        let r = handle(batch(&bodies), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        assert!(r.failures.iter().all(|f| !f.retryable));
        assert!(
            r.failures[1].error.contains("\"aws.ec2\""),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[2]
                .error
                .contains("malformed EC2 Instance Launch Successful event"),
            "{:?}",
            r.failures
        );
        assert_eq!(n.all.sent().len(), 1);
        // Kept in the failed-invocations queue, so SQS need not bring them back five times.
        let kept = Kept::default();
        let r = record_rejected(r, &kept).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let records = kept.records.lock().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].event, "not json at all");
        assert_eq!(records[1].event["source"], "aws.ec2");
        assert!(
            records
                .iter()
                .all(|r| r.error_type == "NonRetryable.InvalidEvent")
        );
    }

    /// One delivery of a batch to the deployed entry point, with the given store.
    async fn deliver<N: Notifier>(
        payload: serde_json::Value,
        n: &Notifiers<N>,
        store: &Memory,
    ) -> Response {
        handle_once(
            payload,
            SystemTime::now(),
            &config(&[]),
            &prod_ng1(),
            n,
            store,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_same_event_in_one_batch_or_across_batches_is_reported_once() {
        let n = notifiers();
        let store = Memory::default();
        let alarm = sample!("alarm-state-change.json");
        let payload = serde_json::to_value(batch(&[alarm, alarm])).unwrap();
        let r = deliver(payload.clone(), &n, &store).await;
        assert_eq!((r.events, r.duplicates, r.notifications), (2, 1, 1));
        let again = deliver(payload, &n, &store).await;
        assert_eq!((again.duplicates, again.notifications), (2, 0));
        assert_eq!(n.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn an_alert_that_could_not_be_sent_is_sent_on_redelivery() {
        let store = Memory::default();
        let failing = Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
        };
        let payload = serde_json::to_value(batch(&[sample!("alarm-ok.json")])).unwrap();
        let r = deliver(payload.clone(), &failing, &store).await;
        assert_eq!(r.batch_item_failures.len(), 1);
        let n = notifiers();
        let r = deliver(payload, &n, &store).await;
        assert_eq!((r.duplicates, r.notifications), (0, 1));
    }

    #[tokio::test]
    async fn unparseable_records_go_back_to_sqs_when_the_queue_is_unreachable() {
        let n = notifiers();
        let r = handle(batch(&["not json at all"]), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        let broken = Kept {
            broken: true,
            ..Kept::default()
        };
        let r = record_rejected(r, &broken).await;
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["batchItemFailures"][0],
            serde_json::json!({"itemIdentifier": "m0"})
        );
    }

    #[tokio::test]
    async fn a_failed_publish_returns_exactly_its_records_for_retry() {
        let n = Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
        };
        let bodies = [
            sample!("launch-successful.json"),
            sample!("launch-successful.json"),
        ];
        let r = handle(batch(&bodies), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        assert_eq!(r.batch_item_failures.len(), 2);
        assert!(r.failures.iter().all(|f| f.retryable));
        assert_eq!(r.notifications, 0);
    }

    #[tokio::test]
    async fn errors_also_go_to_the_errors_topic_and_others_do_not() {
        let n = Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::default()),
        };
        let bodies = [
            sample!("launch-successful.json"),
            sample!("alarm-state-change.json"),
            sample!("alarm-ok.json"),
        ];
        handle(batch(&bodies), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        assert_eq!(n.all.sent().len(), 3);
        let errors: Vec<String> = n
            .errors
            .as_ref()
            .unwrap()
            .sent()
            .into_iter()
            .map(|m| m.subject)
            .collect();
        assert_eq!(errors, ["[prod] ALARM: api-cpu-high (CPUUtilization > 80)"]);
    }

    #[tokio::test]
    async fn enrichment_failure_still_sends_the_alert() {
        let asg = FakeAsg {
            fail: true,
            ..FakeAsg::default()
        };
        let n = notifiers();
        handle(
            batch(&[sample!("launch-successful.json")]),
            &config(&[]),
            &asg,
            &n,
        )
        .await
        .unwrap();
        assert_eq!(
            n.all.sent()[0].subject,
            "[prod] 1 node launched in eks-prod-ng-1-a2c4e6g8, desired 4→5"
        );
    }

    #[tokio::test]
    async fn chat_format_is_the_custom_notification_json() {
        let n = notifiers();
        let cfg = config(&[("MESSAGE_FORMAT", "chat")]);
        handle(
            batch(&[sample!("alarm-state-change.json")]),
            &cfg,
            &prod_ng1(),
            &n,
        )
        .await
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&n.all.sent()[0].body).unwrap();
        assert_eq!(body["version"], "1.0");
        assert_eq!(body["source"], "custom");
        assert_eq!(
            body["content"]["title"],
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80)"
        );
        assert!(
            body["content"]["description"]
                .as_str()
                .unwrap()
                .contains("latest 93.5")
        );
    }

    #[tokio::test]
    async fn a_direct_invoke_of_one_event_works_and_a_bad_one_fails_non_retryable() {
        use bridgekeeper::Classify;
        let n = notifiers();
        let event: serde_json::Value = serde_json::from_str(sample!("alarm-ok.json")).unwrap();
        let r = handle_payload(event, &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap();
        assert_eq!(r.notifications, 1);
        let foreign: serde_json::Value = serde_json::from_str(include_str!(
            "../../../events/image-rollout/push-latest.json"
        ))
        .unwrap();
        let err = handle_payload(foreign, &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        let err = handle_payload(serde_json::json!("text"), &config(&[]), &prod_ng1(), &n)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert_eq!(n.all.sent().len(), 1);
    }
}
