//! The event shapes: an SQS record's EventBridge event becomes a [`Fact`], or a reason it cannot.

use aws_lambda_events::event::sqs::SqsMessage;
use bridgekeeper::accounts::Scope;
use bridgekeeper::events::{
    ALARM_STATE_CHANGE, AlarmStateChangeEvent, AutoScalingInstanceEvent, Envelope, EventBridgeEvent,
};
use serde::{Deserialize, Serialize};

use crate::domain::{Fact, InstanceAction, InstanceEvent};
use crate::nodegroups::{Call, NodegroupEvent, Sizes};
use crate::nodes::{NodeEvent, NodeKind};

/// `detail` of an `AWS API Call via CloudTrail` event for the EKS node-group calls.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailCall {
    event_name: String,
    #[serde(default)]
    event_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    user_identity: Option<UserIdentity>,
    /// Null when the call was denied before EKS read it.
    #[serde(default)]
    request_parameters: Option<NodegroupRequest>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserIdentity {
    #[serde(default)]
    arn: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodegroupRequest {
    /// The cluster's name (the API's path parameter is called `name`).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nodegroup_name: Option<String>,
    #[serde(default)]
    scaling_config: Option<ScalingConfig>,
    #[serde(default, skip_serializing)]
    labels: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    taints: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    update_config: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    node_repair_config: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    release_version: Option<String>,
    #[serde(default)]
    instance_types: Vec<String>,
    #[serde(default)]
    capacity_type: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScalingConfig {
    min_size: Option<i64>,
    max_size: Option<i64>,
    desired_size: Option<i64>,
}

/// `detail` of the EC2 instance events (`instance-id`, and `state` or `instance-action`).
#[derive(Debug, Serialize, Deserialize)]
struct Ec2InstanceDetail {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(rename = "instance-action", default)]
    instance_action: Option<String>,
}

/// `detail` of `EC2 Instance-launch Lifecycle Action` / `EC2 Instance-terminate Lifecycle Action`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LifecycleAction {
    auto_scaling_group_name: String,
    #[serde(default)]
    lifecycle_hook_name: Option<String>,
    #[serde(rename = "EC2InstanceId", default)]
    ec2_instance_id: Option<String>,
    #[serde(default)]
    lifecycle_transition: Option<String>,
}

/// The states of `EC2 Instance State-change Notification` that take a node away.
pub const NODE_LOSING_STATES: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// The record's event as a [`Fact`], and where it happened (its envelope's account and region:
/// a member account's forwarded events keep theirs).
pub fn parse(record: &SqsMessage) -> Result<(Scope, Fact), String> {
    let body = record.body.as_deref().ok_or("the record has no body")?;
    let envelope: Envelope = serde_json::from_str(body)
        .map_err(|e| format!("the body is not an EventBridge event: {e}"))?;
    Ok((envelope.origin(), read(body, &envelope)?))
}

fn read(body: &str, envelope: &Envelope) -> Result<Fact, String> {
    let (source, detail_type) = (envelope.source(), envelope.detail_type());
    let malformed = |e: serde_json::Error| format!("malformed {detail_type} event: {e}");
    let instance_action = InstanceAction::from_detail_type(detail_type);
    match (source, detail_type, instance_action) {
        ("aws.autoscaling", _, Some(action)) => {
            if action.is_hook() {
                let e: EventBridgeEvent<LifecycleAction> =
                    serde_json::from_str(body).map_err(malformed)?;
                let d = e.detail;
                return Ok(Fact::Instance(InstanceEvent {
                    action,
                    group: d.auto_scaling_group_name,
                    instance_id: d.ec2_instance_id.filter(|i| !i.is_empty()),
                    zone: None,
                    cause: None,
                    status_message: None,
                    hook: d.lifecycle_hook_name.map(|h| match d.lifecycle_transition {
                        Some(t) => format!("{h} ({t})"),
                        None => h,
                    }),
                    time: e.time,
                }));
            }
            let e: AutoScalingInstanceEvent = serde_json::from_str(body).map_err(malformed)?;
            let d = e.detail;
            Ok(Fact::Instance(InstanceEvent {
                action,
                group: d.auto_scaling_group_name,
                instance_id: d.ec2_instance_id.filter(|i| !i.is_empty()),
                zone: d.details.and_then(|x| x.availability_zone),
                cause: d.cause,
                status_message: d.status_message,
                hook: None,
                time: d.end_time.or(e.time),
            }))
        }
        (source, detail_type, _) if (source, detail_type) == ALARM_STATE_CHANGE => {
            let e: AlarmStateChangeEvent = serde_json::from_str(body).map_err(malformed)?;
            Ok(Fact::Alarm(crate::alarm::read(e)))
        }
        (
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning"
            | "EC2 Instance Rebalance Recommendation"
            | "EC2 Instance State-change Notification",
            _,
        ) => {
            let e: EventBridgeEvent<Ec2InstanceDetail> =
                serde_json::from_str(body).map_err(malformed)?;
            let d = e.detail;
            let kind = match detail_type {
                "EC2 Spot Instance Interruption Warning" => NodeKind::SpotInterruption {
                    action: d.instance_action.unwrap_or_else(|| "terminate".into()),
                },
                "EC2 Instance Rebalance Recommendation" => NodeKind::Rebalance,
                _ => match d.state {
                    Some(s) if NODE_LOSING_STATES.contains(&s.as_str()) => NodeKind::State(s),
                    other => {
                        return Err(format!(
                            "instance state {other:?} does not take a node away (expected one of {NODE_LOSING_STATES:?})"
                        ));
                    }
                },
            };
            Ok(Fact::Node(NodeEvent {
                kind,
                instance_id: d.instance_id,
                time: e.time,
                node: None,
            }))
        }
        ("aws.eks", "AWS API Call via CloudTrail", _) => {
            let e: EventBridgeEvent<CloudTrailCall> =
                serde_json::from_str(body).map_err(malformed)?;
            let call = e.detail;
            let Some(kind) = Call::from_event_name(&call.event_name) else {
                return Err(format!(
                    "EKS API call {} is not a node group change",
                    call.event_name
                ));
            };
            let mut req = call.request_parameters.unwrap_or_default();
            if req.name.is_none() {
                // A denied call has no requestParameters; its message names the node group ARN.
                if let Some((cluster, nodegroup)) =
                    call.error_message.as_deref().and_then(nodegroup_in_arn)
                {
                    req.name = Some(cluster);
                    req.nodegroup_name = Some(nodegroup);
                }
            }
            let changed = [
                ("labels", req.labels.is_some()),
                ("taints", req.taints.is_some()),
                ("update config", req.update_config.is_some()),
                ("node repair config", req.node_repair_config.is_some()),
            ]
            .into_iter()
            .filter_map(|(what, set)| set.then_some(what))
            .collect();
            Ok(Fact::Nodegroup(NodegroupEvent {
                call: Some(kind),
                cluster: req.name,
                nodegroup: req.nodegroup_name,
                scaling: req.scaling_config.map(|s| Sizes {
                    min: s.min_size,
                    max: s.max_size,
                    desired: s.desired_size,
                }),
                changed,
                version: req.version,
                release: req.release_version,
                instance_types: req.instance_types,
                capacity: req.capacity_type,
                error: call.error_code.map(|c| (c, call.error_message)),
                who: call.user_identity.and_then(|u| u.arn),
                time: call.event_time.or(e.time),
            }))
        }
        _ => Err(format!(
            "source {source:?}, detail-type {detail_type:?} is not a scaling, node or alarm event"
        )),
    }
}

/// `...:nodegroup/<cluster>/<nodegroup>/<uuid>` anywhere in `text`.
fn nodegroup_in_arn(text: &str) -> Option<(String, String)> {
    let rest = &text[text.find(":nodegroup/")? + ":nodegroup/".len()..];
    let mut parts = rest.split('/');
    let cluster = parts.next().filter(|c| !c.is_empty())?;
    let nodegroup: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    (!nodegroup.is_empty()).then(|| (cluster.to_owned(), nodegroup))
}
