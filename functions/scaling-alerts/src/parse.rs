//! The event shapes: an SQS record's EventBridge event becomes a [`Fact`], or a reason it cannot.

use aws_lambda_events::event::sqs::SqsMessage;
use bridgekeeper::accounts::Scope;
use bridgekeeper::events::{
    ALARM_CONTRIBUTOR_STATE_CHANGE, ALARM_STATE_CHANGE, AlarmStateChangeEvent,
    AutoScalingInstanceEvent, Envelope, EventBridgeEvent,
};
use serde::{Deserialize, Serialize};

use crate::addons::{AddonEvent, AddonKind, AddonRef};
use crate::autoscaling::{InstanceAction, InstanceEvent, Warm};
use crate::domain::Fact;
use crate::followup::{FOLLOW_UP, FollowUp};
use crate::nodegroups::{Call, NodegroupEvent, Sizes};
use crate::nodes::{NodeEvent, NodeKind};
use crate::refresh::{RefreshDetail, RefreshEvent, Stage};

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
    /// The API's response; for the update calls, the `Update` it started.
    #[serde(default)]
    response_elements: Option<NodegroupResponse>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NodegroupResponse {
    #[serde(default)]
    update: Option<UpdateRef>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UpdateRef {
    id: String,
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
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    destination: Option<String>,
}

/// The states of `EC2 Instance State-change Notification` that take a node away.
pub const NODE_LOSING_STATES: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// `detail` of an `AWS Health Event` ("Reference: AWS Health events Amazon EventBridge schema",
/// AWS Health user guide).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthDetail {
    #[serde(default)]
    event_arn: Option<String>,
    service: String,
    event_type_code: String,
    event_type_category: String,
    /// `Fri, 27 Jan 2023 06:02:51 GMT` in AWS's samples; RFC 3339 is read too.
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    event_description: Vec<HealthDescription>,
    #[serde(default)]
    affected_entities: Vec<HealthEntity>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthDescription {
    #[serde(default)]
    language: Option<String>,
    latest_description: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthEntity {
    entity_value: String,
}

/// The record's events as [`Fact`]s (an AWS Health event names each instance it affects: one
/// fact each), and where they happened (its envelope's account and region: a member account's
/// forwarded events keep theirs).
pub fn parse(record: &SqsMessage) -> Result<(Scope, Vec<Fact>), String> {
    let body = record.body.as_deref().ok_or("the record has no body")?;
    let envelope: Envelope = serde_json::from_str(body)
        .map_err(|e| format!("the body is not an EventBridge event: {e}"))?;
    let facts = match (envelope.source(), envelope.detail_type()) {
        ("aws.health", "AWS Health Event") => health(body)?,
        _ => vec![read(body, &envelope)?],
    };
    Ok((envelope.origin(), facts))
}

/// A scheduled change to EC2 instances (retirement, reboot, stop, maintenance), one fact per
/// instance it names, so each is joined to its cluster and pool like any node event.
fn health(body: &str) -> Result<Vec<Fact>, String> {
    let e: EventBridgeEvent<HealthDetail> =
        serde_json::from_str(body).map_err(|e| format!("malformed AWS Health Event event: {e}"))?;
    let d = e.detail;
    if d.service != "EC2" || d.event_type_category != "scheduledChange" {
        return Err(format!(
            "AWS Health event {} ({}, {}) is not a scheduled change to EC2 instances",
            d.event_type_code, d.service, d.event_type_category
        ));
    }
    let start = d.start_time.as_deref().and_then(|t| {
        chrono::DateTime::parse_from_rfc2822(t)
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(t))
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    });
    let description = d
        .event_description
        .iter()
        .find(|x| x.language.as_deref().is_none_or(|l| l.starts_with("en")))
        .map(|x| x.latest_description.clone());
    let facts: Vec<Fact> = d
        .affected_entities
        .into_iter()
        .map(|x| x.entity_value)
        .filter(|v| v.starts_with("i-"))
        .map(|instance_id| {
            Fact::Node(NodeEvent {
                kind: NodeKind::Scheduled {
                    code: d.event_type_code.clone(),
                    start,
                    description: description.clone(),
                    event: d.event_arn.clone(),
                },
                instance_id,
                time: e.time,
                node: None,
                karpenter: None,
            })
        })
        .collect();
    if facts.is_empty() {
        return Err(format!(
            "AWS Health event {} names no EC2 instance",
            d.event_type_code
        ));
    }
    Ok(facts)
}

fn read(body: &str, envelope: &Envelope) -> Result<Fact, String> {
    let (source, detail_type) = (envelope.source(), envelope.detail_type());
    let malformed = &|e: serde_json::Error| format!("malformed {detail_type} event: {e}");
    let instance_action = InstanceAction::from_detail_type(detail_type);
    match (source, detail_type, instance_action) {
        ("aws.autoscaling", _, Some(action)) => instance(body, action, malformed),
        ("aws.autoscaling", detail_type, None)
            if Stage::from_detail_type(detail_type).is_some() =>
        {
            let e: EventBridgeEvent<RefreshDetail> =
                serde_json::from_str(body).map_err(malformed)?;
            let stage = Stage::from_detail_type(detail_type).unwrap_or(Stage::Started);
            Ok(Fact::Refresh(RefreshEvent::new(e.detail, stage, e.time)))
        }
        (source, detail_type, _) if (source, detail_type) == ALARM_STATE_CHANGE => {
            let e: AlarmStateChangeEvent = serde_json::from_str(body).map_err(malformed)?;
            Ok(Fact::Alarm(crate::alarm::read(e)))
        }
        (source, detail_type, _) if (source, detail_type) == FOLLOW_UP => {
            let e: EventBridgeEvent<FollowUp> = serde_json::from_str(body).map_err(malformed)?;
            e.detail.check()?;
            Ok(Fact::FollowUp(e.detail))
        }
        (source, detail_type, _) if (source, detail_type) == ALARM_CONTRIBUTOR_STATE_CHANGE => {
            let e: AlarmStateChangeEvent = serde_json::from_str(body).map_err(malformed)?;
            crate::contributors::read(e)
                .map(Fact::Contributor)
                .ok_or_else(|| format!("{detail_type} event names no alarmContributor"))
        }
        (
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning"
            | "EC2 Instance Rebalance Recommendation"
            | "EC2 Instance State-change Notification",
            _,
        ) => node(body, detail_type, malformed),
        ("aws.eks", "AWS API Call via CloudTrail", _) => nodegroup_call(body, malformed),
        ("aws.eks", detail_type, _) if AddonKind::from_detail_type(detail_type).is_some() => {
            let e: EventBridgeEvent<serde_json::Value> =
                serde_json::from_str(body).map_err(malformed)?;
            Ok(Fact::Addon(AddonEvent {
                kind: AddonKind::from_detail_type(detail_type).unwrap_or(AddonKind::Degraded),
                // Its resources first (EventBridge's field for the ARNs an event is about), then
                // anywhere: EKS documents no sample of these events.
                addon: e
                    .resources
                    .iter()
                    .flatten()
                    .find_map(|r| AddonRef::find(r))
                    .or_else(|| AddonRef::find(body)),
                time: e.time,
                now: None,
                unasked: None,
            }))
        }
        _ => Err(format!(
            "source {source:?}, detail-type {detail_type:?} is not a scaling, node or alarm event"
        )),
    }
}

type Malformed<'a> = &'a dyn Fn(serde_json::Error) -> String;

/// An Auto Scaling instance launch, termination or lifecycle action.
fn instance(body: &str, action: InstanceAction, malformed: Malformed) -> Result<Fact, String> {
    if action.is_hook() {
        let e: EventBridgeEvent<LifecycleAction> = serde_json::from_str(body).map_err(malformed)?;
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
            warm: Warm::of(d.origin.as_deref(), d.destination.as_deref()),
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
        warm: Warm::of(d.origin.as_deref(), d.destination.as_deref()),
    }))
}

/// An EC2 Spot interruption warning, rebalance recommendation or state change.
fn node(body: &str, detail_type: &str, malformed: Malformed) -> Result<Fact, String> {
    let e: EventBridgeEvent<Ec2InstanceDetail> = serde_json::from_str(body).map_err(malformed)?;
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
        karpenter: None,
    }))
}

/// An EKS node-group call, as CloudTrail recorded it (allowed, failed or denied).
fn nodegroup_call(body: &str, malformed: Malformed) -> Result<Fact, String> {
    let e: EventBridgeEvent<CloudTrailCall> = serde_json::from_str(body).map_err(malformed)?;
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
        if let Some((cluster, nodegroup)) = call.error_message.as_deref().and_then(nodegroup_in_arn)
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
        update: call.response_elements.and_then(|r| r.update).map(|u| u.id),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.body = Some(body.to_owned());
        m
    }

    fn fact(body: &str) -> Fact {
        parse(&record(body)).unwrap().1.remove(0)
    }

    fn sample(name: &str) -> String {
        let path = format!(
            "{}/../../events/scaling-alerts/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn a_launch_keeps_its_group_instance_zone_cause_and_end_time() {
        let Fact::Instance(e) = fact(&sample("launch-successful.json")) else {
            panic!("not an instance event");
        };
        assert_eq!(e.action, InstanceAction::Launch);
        assert_eq!(e.group, "eks-prod-ng-1-a2c4e6g8");
        assert_eq!(e.instance_id.as_deref(), Some("i-0a1b2c3d4e5f60718"));
        assert_eq!(e.zone.as_deref(), Some("eu-west-1b"));
        assert!(e.cause.unwrap().contains("desired capacity from 4 to 5"));
        assert_eq!(
            e.time.unwrap().to_rfc3339(),
            "2026-11-21T09:12:47.208+00:00"
        );
    }

    #[test]
    fn a_lifecycle_action_names_its_hook_and_transition() {
        let Fact::Instance(e) = fact(&sample("lifecycle-launch.json")) else {
            panic!("not an instance event");
        };
        assert_eq!(e.action, InstanceAction::LaunchHook);
        assert_eq!(
            e.hook.as_deref(),
            Some("warm-up (autoscaling:EC2_INSTANCE_LAUNCHING)")
        );
    }

    #[test]
    fn the_envelope_gives_the_account_and_region() {
        let (scope, _) = parse(&record(&sample("alarm-ok.json"))).unwrap();
        assert_eq!(scope, Scope::account("123456789012").in_region("eu-west-1"));
    }

    #[test]
    fn ec2_events_become_node_events_of_their_kind() {
        let kind = |name: &str| match fact(&sample(name)) {
            Fact::Node(n) => n.kind,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(
            kind("spot-interruption.json"),
            NodeKind::SpotInterruption {
                action: "terminate".into()
            }
        );
        assert_eq!(kind("rebalance-recommendation.json"), NodeKind::Rebalance);
        assert_eq!(
            kind("instance-stopped.json"),
            NodeKind::State("stopped".into())
        );
    }

    #[test]
    fn a_scheduled_retirement_is_a_node_event_per_instance_it_names() {
        let (_, facts) = parse(&record(&sample("health-scheduled-retirement.json"))).unwrap();
        let kinds: Vec<(String, String)> = facts
            .iter()
            .map(|f| match f {
                Fact::Node(n) => match &n.kind {
                    NodeKind::Scheduled { code, start, .. } => (
                        n.instance_id.clone(),
                        format!("{code} {}", start.unwrap().to_rfc3339()),
                    ),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "i-0c1d2e3f4a5b6c7d8".to_owned(),
                    "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED 2026-12-09T09:00:00+00:00".to_owned()
                ),
                (
                    "i-0d2e3f4a5b6c7d8e9".to_owned(),
                    "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED 2026-12-09T09:00:00+00:00".to_owned()
                )
            ]
        );
        let open_issue =
            sample("health-scheduled-retirement.json").replace("scheduledChange", "issue");
        assert!(
            parse(&record(&open_issue))
                .unwrap_err()
                .contains("is not a scheduled change")
        );
    }

    #[test]
    fn instance_refresh_events_are_read_with_their_stage() {
        let Fact::Refresh(r) = fact(&sample("instance-refresh-checkpoint.json")) else {
            panic!("not a refresh");
        };
        assert_eq!(r.group, "eks-prod-ng-1-a2c4e6g8");
        assert_eq!(
            r.stage,
            Stage::Checkpoint {
                percentage: Some("50".into()),
                delay: Some("300".into())
            }
        );
    }

    #[test]
    fn a_return_to_the_warm_pool_is_read_as_one() {
        let Fact::Instance(e) = fact(&sample("warm-pool-return.json")) else {
            panic!("not an instance event");
        };
        assert_eq!(e.warm, Some(Warm::Into));
        assert!(e.verb().contains("warm pool"), "{}", e.verb());
    }

    #[test]
    fn a_denied_node_group_call_is_named_from_the_arn_in_its_message() {
        let Fact::Nodegroup(n) = fact(&sample("nodegroup-config-denied.json")) else {
            panic!("not a node group event");
        };
        assert_eq!(n.cluster.as_deref(), Some("prod-eks"));
        assert_eq!(n.nodegroup.as_deref(), Some("ng-1"));
        assert_eq!(n.error.unwrap().0, "AccessDenied");
    }

    #[test]
    fn a_labels_update_lists_what_it_changed() {
        let Fact::Nodegroup(n) = fact(&sample("nodegroup-labels-update.json")) else {
            panic!("not a node group event");
        };
        assert!(n.changed.contains(&"labels"), "{:?}", n.changed);
        assert!(n.scaling.is_none());
    }

    #[test]
    fn foreign_malformed_and_unwanted_events_are_refused_with_the_reason() {
        let refused = |body: &str| parse(&record(body)).unwrap_err();
        assert!(refused("not json").starts_with("the body is not an EventBridge event"));
        assert!(
            refused(r#"{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}"#)
                .contains("is not a scaling, node or alarm event")
        );
        assert!(
            refused(r#"{"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {}}"#)
                .starts_with("malformed EC2 Instance Launch Successful event")
        );
        assert!(
            refused(r#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-1", "state": "pending"}}"#)
                .contains("does not take a node away")
        );
        assert!(
            refused(r#"{"source": "aws.eks", "detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "ListNodegroups"}}"#)
                .contains("is not a node group change")
        );
        assert_eq!(
            parse(&SqsMessage::default()).unwrap_err(),
            "the record has no body"
        );
    }

    #[test]
    fn a_node_group_arn_is_found_anywhere_in_a_message() {
        assert_eq!(
            nodegroup_in_arn(
                "on resource: arn:aws:eks:eu-west-1:1:nodegroup/prod-eks/ng-1/5ac5 now"
            ),
            Some(("prod-eks".into(), "ng-1".into()))
        );
        assert_eq!(
            nodegroup_in_arn("arn:aws:eks:eu-west-1:1:nodegroup//ng-1"),
            None
        );
        assert_eq!(nodegroup_in_arn("no arn here"), None);
    }
}
