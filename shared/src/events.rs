//! Typed EventBridge events. `aws_lambda_events` provides the envelope and the Auto Scaling event;
//! the details it does not model (ECR image action, RDS snapshot and export events, the
//! EventBridge shape of a CloudWatch alarm state change) are here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use aws_lambda_events::event::autoscaling::AutoScalingEvent;
pub use aws_lambda_events::event::cloudwatch_alarms::{CloudWatchAlarm, CloudWatchAlarmStateValue};
pub use aws_lambda_events::event::eventbridge::EventBridgeEvent;

pub type ScheduledEvent = EventBridgeEvent<Empty>;
pub type EcrImageActionEvent = EventBridgeEvent<EcrImageAction>;
pub type RdsEvent = EventBridgeEvent<RdsEventDetail>;
pub type AutoScalingInstanceEvent = EventBridgeEvent<AutoScalingInstanceDetail>;
pub type AlarmStateChangeEvent = EventBridgeEvent<AlarmStateChange>;

pub const SCHEDULED_EVENT: (&str, &str) = ("aws.events", "Scheduled Event");
/// EventBridge Scheduler sends a Lambda target its schedule's `Input` and no envelope of its own;
/// the stack's schedules write one in the Scheduled Event's shape with this source and the
/// execution's id as `id` (template.yaml, `ScheduleV2`; events/*/scheduler.json).
pub const SCHEDULER_SOURCE: &str = "aws.scheduler";
pub const ECR_IMAGE_ACTION: (&str, &str) = ("aws.ecr", "ECR Image Action");
pub const RDS_SNAPSHOT_EVENT: (&str, &str) = ("aws.rds", "RDS DB Snapshot Event");
pub const RDS_CLUSTER_SNAPSHOT_EVENT: (&str, &str) = ("aws.rds", "RDS DB Cluster Snapshot Event");
pub const ALARM_STATE_CHANGE: (&str, &str) = ("aws.cloudwatch", "CloudWatch Alarm State Change");
/// One time series of a multi-time-series (Metrics Insights `GROUP BY`) alarm changed state.
pub const ALARM_CONTRIBUTOR_STATE_CHANGE: (&str, &str) = (
    "aws.cloudwatch",
    "CloudWatch Alarm Contributor State Change",
);

/// A run a schedule started: a legacy EventBridge rule's Scheduled Event, or the Input of an
/// EventBridge Scheduler schedule (an upgraded stack may still get one of the former).
pub fn scheduled(kind: (&str, &str)) -> bool {
    let (s, d) = kind;
    d == SCHEDULED_EVENT.1 && (s == SCHEDULED_EVENT.0 || s == SCHEDULER_SOURCE)
}

/// A scheduled run (`scheduled`), or a manual run in the same shape (`source: bridgekeeper`),
/// read whole and typed: `Ok(false)` for any other event; a schedule whose fields have the wrong
/// types is an invalid event, not a trigger.
pub fn is_schedule(event: &serde_json::Value) -> Result<bool, crate::Error> {
    let envelope = Envelope::of(event)?;
    let (s, d) = envelope.kind();
    if !scheduled((s, d)) && (s, d) != ("bridgekeeper", SCHEDULED_EVENT.1) {
        return Ok(false);
    }
    ScheduledEvent::deserialize(event)
        .map(|_| true)
        .map_err(|e| crate::Error::invalid_event(format!("malformed Scheduled Event: {e}")))
}

/// The fields that say which event this is and where it happened, read before the typed parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    /// A member account's event forwarded to the hub's bus keeps its own account and region.
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

impl Envelope {
    /// Not an object at all is an invalid event, named as such.
    pub fn of(event: &serde_json::Value) -> Result<Envelope, crate::Error> {
        crate::runtime::readable(event)?;
        Envelope::deserialize(event).map_err(|e| {
            crate::Error::invalid_event(format!("expected an EventBridge event object: {e}"))
        })
    }

    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or_default()
    }

    pub fn detail_type(&self) -> &str {
        self.detail_type.as_deref().unwrap_or_default()
    }

    pub fn kind(&self) -> (&str, &str) {
        (self.source(), self.detail_type())
    }

    /// The refusal of an event this function does not handle, naming it and what was expected.
    pub fn not_handled(&self, expected: &str) -> crate::Error {
        let (source, detail_type) = self.kind();
        crate::Error::invalid_event(format!(
            "source {source:?}, detail-type {detail_type:?} is not handled: expected {expected}"
        ))
    }

    /// The account the event names (the sender's word: see [`crate::accounts::Admitted`]).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The account and region the event happened in.
    pub fn origin(&self) -> crate::accounts::Scope {
        crate::accounts::Scope {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

/// The `detail` of a scheduled event: `{}`. Read through a map, because serde would otherwise
/// accept any sequence (`[]`) for a struct without fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "serde_json::Map<String, serde_json::Value>")]
pub struct Empty {}

impl From<serde_json::Map<String, serde_json::Value>> for Empty {
    fn from(_: serde_json::Map<String, serde_json::Value>) -> Self {
        Empty {}
    }
}

/// Values AWS may extend: a known one, or the text as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Open<T> {
    Known(T),
    Other(String),
}

impl<T: PartialEq> Open<T> {
    pub fn is(&self, v: T) -> bool {
        matches!(self, Open::Known(k) if *k == v)
    }
}

impl<T: Serialize> Open<T> {
    /// The value as AWS wrote it: `PUSH`, `ALARM`, ...
    pub fn text(&self) -> String {
        match self {
            Open::Other(s) => s.clone(),
            Open::Known(k) => serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcrActionType {
    Push,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcrResult {
    Success,
    Failure,
}

/// `detail` of `ECR Image Action` (source `aws.ecr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EcrImageAction {
    pub action_type: Open<EcrActionType>,
    pub result: Open<EcrResult>,
    pub repository_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Absent for an untagged push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_media_type: Option<String>,
}

/// `detail` of an RDS event notification (`RDS DB Snapshot Event`, `RDS DB Cluster Snapshot
/// Event`, `RDS DB Instance Event`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RdsEventDetail {
    #[serde(default)]
    pub event_categories: Vec<String>,
    /// `SNAPSHOT`, `CLUSTER_SNAPSHOT`, `DB_INSTANCE`, ...
    pub source_type: String,
    pub source_arn: String,
    pub date: chrono::DateTime<chrono::Utc>,
    pub source_identifier: String,
    pub message: String,
    #[serde(rename = "EventID")]
    pub event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportOutcome {
    Failed,
    Cancelled,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Instance,
    Cluster,
}

impl RdsEventDetail {
    /// RDS-EVENT-0159/0160/0161: instance snapshot export failed/cancelled/completed;
    /// 0162/0163/0164: the same for Aurora cluster snapshots. Other events: `None`.
    pub fn export_outcome(&self) -> Option<(SnapshotKind, ExportOutcome)> {
        use ExportOutcome::*;
        use SnapshotKind::*;
        Some(match self.event_id.as_str() {
            "RDS-EVENT-0159" => (Instance, Failed),
            "RDS-EVENT-0160" => (Instance, Cancelled),
            "RDS-EVENT-0161" => (Instance, Completed),
            "RDS-EVENT-0162" => (Cluster, Failed),
            "RDS-EVENT-0163" => (Cluster, Cancelled),
            "RDS-EVENT-0164" => (Cluster, Completed),
            _ => return None,
        })
    }
}

/// `detail` of the Auto Scaling `EC2 Instance Launch/Terminate Successful/Unsuccessful` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutoScalingInstanceDetail {
    pub auto_scaling_group_name: String,
    #[serde(
        rename = "EC2InstanceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ec2_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `InProgress`, `Successful`, `Failed`, `Cancelled`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<AutoScalingActivityDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingActivityDetails {
    #[serde(
        rename = "Availability Zone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub availability_zone: Option<String>,
    #[serde(rename = "Subnet ID", default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(
        rename = "InvokingAlarms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub invoking_alarms: Option<Vec<serde_json::Value>>,
}

/// `detail` of `CloudWatch Alarm State Change`. Not `aws_lambda_events`' `CloudWatchAlarmData`:
/// CloudWatch writes its timestamps as `2026-11-21T17:04:40.989+0000`, which that type's
/// RFC 3339 `DateTime` rejects, so they are kept as text here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub state: AlarmState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<AlarmState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<AlarmConfiguration>,
    /// Present when an alarm mute rule mutes the alarm's actions (CloudWatch "Alarm events and
    /// EventBridge" samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_detail: Option<MuteDetail>,
    /// The alarm's tags, when tag propagation is on ("Alarm events and EventBridge": an
    /// `alarmTags` object, with `alarmTagsStatus`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alarm_tags: BTreeMap<String, String>,
    /// `CloudWatch Alarm Contributor State Change` (a multi-time-series alarm's series; "Alarm
    /// events and EventBridge", Multi Time Series Alarm) has the same detail with this, and no
    /// `previousState` or `reasonData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_contributor: Option<AlarmContributor>,
}

/// CloudWatch API `AlarmContributor`: an id of at most 1,024 characters, and up to 30 attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmContributor {
    pub id: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_by_arn: Option<String>,
    /// CloudWatch's `2026-01-01T10:00:00.000+0000`; see [`cloudwatch_time`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_window_end: Option<String>,
}

/// CloudWatch's alarm timestamps (`2026-11-21T17:04:40.989+0000`: no colon in the offset, which
/// RFC 3339 parsers refuse); RFC 3339 is accepted too.
pub fn cloudwatch_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmState {
    pub value: Open<CloudWatchAlarmStateValue>,
    #[serde(default)]
    pub reason: String,
    /// A JSON document in a string; see [`AlarmState::reason_data`].
    #[serde(
        rename = "reasonData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason_data_json: Option<String>,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_suppressed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_suppressed_reason: Option<String>,
}

/// The parts of `reasonData` a person wants to read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmReasonData {
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub statistic: Option<String>,
    #[serde(default)]
    pub period: Option<u64>,
    #[serde(default)]
    pub recent_datapoints: Vec<f64>,
    /// Anomaly-detection alarms: the band's edges at the evaluated datapoints.
    #[serde(default)]
    pub recent_lower_thresholds: Vec<f64>,
    #[serde(default)]
    pub recent_upper_thresholds: Vec<f64>,
}

impl AlarmState {
    pub fn reason_data(&self) -> Option<AlarmReasonData> {
        serde_json::from_str(self.reason_data_json.as_deref()?).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub metrics: Vec<AlarmMetric>,
    /// Composite alarms: `ALARM(a) OR ALARM(b)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmMetric {
    pub id: String,
    /// A Metrics Insights query's period, given beside its `expression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<AlarmMetricStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmMetricStat {
    pub metric: AlarmMetricId,
    pub period: u64,
    pub stat: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmMetricId {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    /// Parses the sample, serializes it back and checks nothing was lost or changed.
    fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> T {
        let original: Value = serde_json::from_str(json).unwrap();
        let typed: T = serde_json::from_str(json).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(back, original, "round trip changed the event");
        typed
    }

    #[test]
    fn ecr_push_round_trips() {
        let e: EcrImageActionEvent =
            round_trip(include_str!("../../events/image-rollout/push-latest.json"));
        assert_eq!(
            (e.source.as_str(), e.detail_type.as_str()),
            ECR_IMAGE_ACTION
        );
        assert!(e.detail.action_type.is(EcrActionType::Push));
        assert!(e.detail.result.is(EcrResult::Success));
        assert_eq!(e.detail.repository_name, "shop/api");
        assert_eq!(e.detail.image_tag.as_deref(), Some("latest"));
    }

    #[test]
    fn ecr_untagged_push_has_no_tag() {
        let e: EcrImageActionEvent = round_trip(include_str!(
            "../../events/image-rollout/push-untagged.json"
        ));
        assert_eq!(e.detail.image_tag, None);
        assert!(e.detail.image_digest.unwrap().starts_with("sha256:"));
    }

    #[test]
    fn unknown_ecr_action_is_kept_not_rejected() {
        let json = r#"{"action-type":"REPLICATE","result":"SUCCESS","repository-name":"r"}"#;
        let d: EcrImageAction = serde_json::from_str(json).unwrap();
        assert_eq!(d.action_type, Open::Other("REPLICATE".into()));
    }

    #[test]
    fn rds_instance_export_completed_round_trips() {
        let e: RdsEvent = round_trip(include_str!(
            "../../events/snapshot-export/export-completed.json"
        ));
        assert_eq!(
            (e.source.as_str(), e.detail_type.as_str()),
            RDS_SNAPSHOT_EVENT
        );
        assert_eq!(
            e.detail.export_outcome(),
            Some((SnapshotKind::Instance, ExportOutcome::Completed))
        );
        assert_eq!(e.detail.tags.unwrap()["team"], "shop");
    }

    #[test]
    fn rds_cluster_export_failed_round_trips() {
        let e: RdsEvent = round_trip(include_str!(
            "../../events/snapshot-export/cluster-export-failed.json"
        ));
        assert_eq!(
            (e.source.as_str(), e.detail_type.as_str()),
            RDS_CLUSTER_SNAPSHOT_EVENT
        );
        assert_eq!(
            e.detail.export_outcome(),
            Some((SnapshotKind::Cluster, ExportOutcome::Failed))
        );
    }

    #[test]
    fn rds_snapshot_created_is_not_an_export_event() {
        let e: RdsEvent = round_trip(include_str!(
            "../../events/snapshot-export/snapshot-created.json"
        ));
        assert_eq!(e.detail.export_outcome(), None);
    }

    #[test]
    fn every_export_event_id_is_classified() {
        let ids = ["0159", "0160", "0161", "0162", "0163", "0164"];
        let detail = |id: &str| RdsEventDetail {
            event_categories: vec![],
            source_type: "SNAPSHOT".into(),
            source_arn: "arn".into(),
            date: chrono::Utc::now(),
            source_identifier: "s".into(),
            message: "m".into(),
            event_id: format!("RDS-EVENT-{id}"),
            tags: None,
        };
        let outcomes: Vec<_> = ids
            .iter()
            .map(|id| detail(id).export_outcome().unwrap())
            .collect();
        assert_eq!(
            outcomes
                .iter()
                .filter(|(k, _)| *k == SnapshotKind::Cluster)
                .count(),
            3
        );
        assert_eq!(
            outcomes[2],
            (SnapshotKind::Instance, ExportOutcome::Completed)
        );
        assert_eq!(
            outcomes[4],
            (SnapshotKind::Cluster, ExportOutcome::Cancelled)
        );
    }

    #[test]
    fn a_scheduler_input_is_a_scheduled_run_with_its_execution_id() {
        for f in [
            include_str!("../../events/snapshot-export/scheduler.json"),
            include_str!("../../events/dns-sync/scheduler.json"),
            include_str!("../../events/image-rollout/scheduler.json"),
        ] {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            assert!(is_schedule(&v).unwrap(), "{f}");
            let e: ScheduledEvent = round_trip(f);
            assert!(scheduled((e.source.as_str(), e.detail_type.as_str())));
            assert_eq!(e.source, SCHEDULER_SOURCE);
            assert!(!e.id.as_deref().unwrap_or_default().is_empty());
        }
        let other = serde_json::json!({"source": "aws.scheduler", "detail-type": "Something Else", "detail": {}});
        assert!(!is_schedule(&other).unwrap());
    }

    #[test]
    fn scheduled_event_round_trips() {
        let e: ScheduledEvent =
            round_trip(include_str!("../../events/snapshot-export/schedule.json"));
        assert_eq!((e.source.as_str(), e.detail_type.as_str()), SCHEDULED_EVENT);
    }

    #[test]
    fn autoscaling_launch_round_trips() {
        let json = include_str!("../../events/scaling-alerts/launch-successful.json");
        let e: AutoScalingInstanceEvent = round_trip(json);
        assert_eq!(e.detail.auto_scaling_group_name, "eks-prod-ng-1-a2c4e6g8");
        assert_eq!(
            e.detail.ec2_instance_id.as_deref(),
            Some("i-0a1b2c3d4e5f60718")
        );
        assert_eq!(
            e.detail.details.unwrap().availability_zone.as_deref(),
            Some("eu-west-1b")
        );
        // The re-exported untyped form reads the same payload.
        let untyped: AutoScalingEvent = serde_json::from_str(json).unwrap();
        assert_eq!(
            untyped.detail_type.as_deref(),
            Some("EC2 Instance Launch Successful")
        );
    }

    #[test]
    fn alarm_state_change_round_trips_with_cloudwatch_timestamps() {
        let e: AlarmStateChangeEvent = round_trip(include_str!(
            "../../events/scaling-alerts/alarm-state-change.json"
        ));
        assert_eq!(
            (e.source.as_str(), e.detail_type.as_str()),
            ALARM_STATE_CHANGE
        );
        assert!(e.detail.state.value.is(CloudWatchAlarmStateValue::Alarm));
        assert!(
            e.detail
                .previous_state
                .as_ref()
                .unwrap()
                .value
                .is(CloudWatchAlarmStateValue::Ok)
        );
        let reason = e.detail.state.reason_data().unwrap();
        assert_eq!(reason.threshold, Some(80.0));
        assert_eq!(reason.recent_datapoints, [93.5]);
        let metric = &e.detail.configuration.unwrap().metrics[0];
        assert_eq!(
            metric.metric_stat.as_ref().unwrap().metric.name,
            "CPUUtilization"
        );
    }
}
