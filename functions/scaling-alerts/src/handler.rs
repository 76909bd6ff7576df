//! An SQS batch of EventBridge events in; grouped notifications and the batch item failures out.
//! The only place that knows the event shapes.

use std::collections::{BTreeSet, HashMap};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::events::{
    ALARM_STATE_CHANGE, AlarmStateChangeEvent, AutoScalingInstanceEvent, EventBridgeEvent,
};
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
    pub failures: Vec<RecordError>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
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
    let source = envelope.source.unwrap_or_default();
    let detail_type = envelope.detail_type.unwrap_or_default();
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
        let state =
            |v: &bridgekeeper::events::Open<bridgekeeper::events::CloudWatchAlarmStateValue>| {
                serde_json::to_value(v)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
        return Ok(Fact::Alarm(AlarmEvent {
            name: d.alarm_name,
            state: state(&d.state.value),
            previous: d.previous_state.as_ref().map(|p| state(&p.value)),
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
    let probe: Probe = serde_json::from_value(payload.clone()).map_err(|e| {
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
                response.batch_item_failures.push(ItemFailure {
                    item_identifier: id,
                });
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
