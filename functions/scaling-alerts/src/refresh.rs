//! Auto Scaling instance refreshes (a node group's AMI or launch template rolled through its
//! nodes): started, checkpoint reached, succeeded, failed, cancelled, and rollbacks, as the
//! "Instance refresh example events and patterns" page of the EC2 Auto Scaling user guide shows
//! them. One refresh's events in a batch become one message that reads its latest stage.

use std::collections::HashMap;
use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{GroupInfo, attributes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Started,
    /// `CheckpointPercentage` replaced; it waits `CheckpointDelay` seconds.
    Checkpoint {
        percentage: Option<String>,
        delay: Option<String>,
    },
    Succeeded,
    Failed,
    Cancelled,
    RollbackStarted,
    RollbackSucceeded,
    RollbackFailed,
}

const PREFIX: &str = "EC2 Auto Scaling Instance Refresh ";

impl Stage {
    /// The stage a detail-type names; `None` for other events.
    pub fn from_detail_type(detail_type: &str) -> Option<Stage> {
        Some(match detail_type.strip_prefix(PREFIX)? {
            "Started" => Stage::Started,
            "Checkpoint Reached" => Stage::Checkpoint {
                percentage: None,
                delay: None,
            },
            "Succeeded" => Stage::Succeeded,
            "Failed" => Stage::Failed,
            "Cancelled" => Stage::Cancelled,
            "Rollback Started" => Stage::RollbackStarted,
            "Rollback Succeeded" => Stage::RollbackSucceeded,
            "Rollback Failed" => Stage::RollbackFailed,
            _ => return None,
        })
    }

    fn words(&self) -> String {
        match self {
            Stage::Started => "started".into(),
            Stage::Checkpoint { percentage, delay } => format!(
                "reached its checkpoint: {}% replaced{}",
                percentage.as_deref().unwrap_or("?"),
                delay
                    .as_deref()
                    .map(|d| format!(", waiting {d} s"))
                    .unwrap_or_default()
            ),
            Stage::Succeeded => "succeeded".into(),
            Stage::Failed => "failed".into(),
            Stage::Cancelled => "was cancelled".into(),
            Stage::RollbackStarted => "is rolling back".into(),
            Stage::RollbackSucceeded => "was rolled back".into(),
            Stage::RollbackFailed => "failed to roll back".into(),
        }
    }

    /// The stage in a subject line (at most SNS's 99 characters, a group name included).
    fn headline(&self) -> String {
        match self {
            Stage::Checkpoint { percentage, .. } => format!(
                "at its {}% checkpoint",
                percentage.as_deref().unwrap_or("?")
            ),
            other => other.words(),
        }
    }

    fn severity(&self) -> Severity {
        match self {
            Stage::Failed | Stage::RollbackFailed => Severity::Error,
            Stage::Cancelled | Stage::RollbackStarted | Stage::RollbackSucceeded => {
                Severity::Warning
            }
            Stage::Succeeded => Severity::Resolved,
            Stage::Started | Stage::Checkpoint { .. } => Severity::Info,
        }
    }
}

/// `detail` of the instance refresh events.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RefreshDetail {
    pub instance_refresh_id: String,
    pub auto_scaling_group_name: String,
    #[serde(default)]
    pub checkpoint_percentage: Option<String>,
    #[serde(default)]
    pub checkpoint_delay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEvent {
    pub group: String,
    pub refresh: String,
    pub stage: Stage,
    pub time: Option<DateTime<Utc>>,
}

impl RefreshEvent {
    pub fn new(d: RefreshDetail, stage: Stage, time: Option<DateTime<Utc>>) -> Self {
        let stage = match stage {
            Stage::Checkpoint { .. } => Stage::Checkpoint {
                percentage: d.checkpoint_percentage,
                delay: d.checkpoint_delay,
            },
            other => other,
        };
        RefreshEvent {
            group: d.auto_scaling_group_name,
            refresh: d.instance_refresh_id,
            stage,
            time,
        }
    }
}

/// One refresh's events (arrival order, never empty): the latest by time reads as the news, the
/// others as its history.
pub fn render(
    events: &[&RefreshEvent],
    groups: &HashMap<String, GroupInfo>,
    env: &str,
) -> Notification {
    let latest = events
        .iter()
        .enumerate()
        .max_by_key(|(i, e)| (e.time, *i))
        .map(|(_, e)| *e)
        .unwrap_or(events[0]);
    let info = groups.get(&latest.group);
    let place = match info.and_then(|i| Some((i.cluster.as_deref()?, i.nodegroup.as_deref()?))) {
        Some((cluster, ng)) => format!("{cluster}/{ng}"),
        None => latest.group.clone(),
    };
    let subject = format!(
        "[{env}] Instance refresh of {place} {}",
        latest.stage.headline()
    );
    let mut body = format!(
        "The instance refresh {} of Auto Scaling group {} {}.\n\n",
        latest.refresh,
        latest.group,
        latest.stage.words()
    );
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<11}{value}");
    };
    if let Some(cluster) = info.and_then(|i| i.cluster.as_deref()) {
        line("Cluster:", cluster);
    }
    let mut earlier: Vec<&&RefreshEvent> = events.iter().filter(|e| **e != latest).collect();
    earlier.sort_by_key(|e| e.time);
    for (i, e) in earlier.iter().enumerate() {
        let when = e
            .time
            .map(|t| t.format("%H:%M:%S UTC ").to_string())
            .unwrap_or_default();
        line(
            if i == 0 { "Before:" } else { "" },
            &format!("{when}{}", e.stage.words()),
        );
    }
    if let Some(t) = latest.time {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let n = Notification::new(subject, body.trim_end().to_owned(), latest.stage.severity())
        .thread(format!("instance-refresh/{}", latest.refresh))
        .event_type("InstanceRefresh")
        .keyword("instance-refresh")
        .related(latest.refresh.clone())
        .next_step(format!(
            "aws autoscaling describe-instance-refreshes --auto-scaling-group-name {} --instance-refresh-ids {}",
            latest.group, latest.refresh
        ));
    attributes(n, "autoscaling", Some(&latest.group), info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stage: Stage, at: i64) -> RefreshEvent {
        RefreshEvent {
            group: "eks-prod-ng-1-a2c4e6g8".into(),
            refresh: "c613620e-07e2-4ed2-a9e2-ef8258911ade".into(),
            stage,
            time: DateTime::from_timestamp(at, 0),
        }
    }

    #[test]
    fn every_documented_detail_type_has_a_stage_and_others_have_none() {
        for t in [
            "Started",
            "Checkpoint Reached",
            "Succeeded",
            "Failed",
            "Cancelled",
            "Rollback Started",
            "Rollback Succeeded",
            "Rollback Failed",
        ] {
            assert!(
                Stage::from_detail_type(&format!("{PREFIX}{t}")).is_some(),
                "{t}"
            );
        }
        assert_eq!(
            Stage::from_detail_type("EC2 Instance Launch Successful"),
            None
        );
        assert_eq!(Stage::from_detail_type(&format!("{PREFIX}Paused")), None);
    }

    #[test]
    fn a_refresh_that_started_and_failed_in_one_batch_reads_as_failed_with_its_start() {
        let (started, failed) = (event(Stage::Started, 1_000), event(Stage::Failed, 2_000));
        // Out of order, as EventBridge may deliver them.
        let n = render(&[&failed, &started], &HashMap::new(), "prod");
        assert_eq!(
            n.subject,
            "[prod] Instance refresh of eks-prod-ng-1-a2c4e6g8 failed"
        );
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body.contains("Before:    00:16:40 UTC started"),
            "{}",
            n.body
        );
        assert_eq!(
            n.chat.thread.as_deref(),
            Some("instance-refresh/c613620e-07e2-4ed2-a9e2-ef8258911ade")
        );
        assert!(n.chat.next_steps[0].contains("describe-instance-refreshes"));
    }
}
