//! The Auto Scaling family: instance launches, terminations and lifecycle hooks, and their words.

use std::collections::HashMap;
use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alert::{GroupInfo, attributes, plural};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceAction {
    Launch,
    LaunchFailed,
    Terminate,
    TerminateFailed,
    LaunchHook,
    TerminateHook,
}

impl InstanceAction {
    pub fn from_detail_type(detail_type: &str) -> Option<Self> {
        Some(match detail_type {
            "EC2 Instance Launch Successful" => InstanceAction::Launch,
            "EC2 Instance Launch Unsuccessful" => InstanceAction::LaunchFailed,
            "EC2 Instance Terminate Successful" => InstanceAction::Terminate,
            "EC2 Instance Terminate Unsuccessful" => InstanceAction::TerminateFailed,
            "EC2 Instance-launch Lifecycle Action" => InstanceAction::LaunchHook,
            "EC2 Instance-terminate Lifecycle Action" => InstanceAction::TerminateHook,
            _ => return None,
        })
    }

    pub fn is_hook(self) -> bool {
        matches!(
            self,
            InstanceAction::LaunchHook | InstanceAction::TerminateHook
        )
    }

    fn failed(self) -> bool {
        matches!(
            self,
            InstanceAction::LaunchFailed | InstanceAction::TerminateFailed
        )
    }

    fn verb(self) -> &'static str {
        match self {
            InstanceAction::Launch => "launched",
            InstanceAction::LaunchFailed => "failed to launch",
            InstanceAction::Terminate => "terminated",
            InstanceAction::TerminateFailed => "failed to terminate",
            InstanceAction::LaunchHook => "held by a launch lifecycle hook",
            InstanceAction::TerminateHook => "held by a terminate lifecycle hook",
        }
    }
}

/// A move into or out of the group's warm pool (the events' `Origin` and `Destination`): the
/// instance is kept stopped or hibernated, not lost ("Instance reuse policy", EC2 Auto Scaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Warm {
    Into,
    OutOf,
}

impl Warm {
    pub fn of(origin: Option<&str>, destination: Option<&str>) -> Option<Warm> {
        match (origin, destination) {
            (_, Some("WarmPool")) => Some(Warm::Into),
            (Some("WarmPool"), _) => Some(Warm::OutOf),
            _ => None,
        }
    }
}

/// One Auto Scaling instance event, as far as an alert needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub action: InstanceAction,
    pub group: String,
    pub instance_id: Option<String>,
    pub zone: Option<String>,
    pub cause: Option<String>,
    pub status_message: Option<String>,
    /// Lifecycle actions: `hook-name (autoscaling:EC2_INSTANCE_LAUNCHING)`.
    pub hook: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub warm: Option<Warm>,
}

impl InstanceEvent {
    /// What happened to the instance: a return to the warm pool is not a termination.
    pub fn verb(&self) -> String {
        let a = self.action;
        match (a, self.warm) {
            (_, None) => a.verb().to_owned(),
            (InstanceAction::Launch, Some(Warm::Into)) => "launched into the warm pool".into(),
            (InstanceAction::Launch, Some(Warm::OutOf)) => "taken from the warm pool".into(),
            (InstanceAction::Terminate, Some(Warm::Into)) => "returned to the warm pool".into(),
            (_, Some(Warm::Into)) => format!("{} (into the warm pool)", a.verb()),
            (_, Some(Warm::OutOf)) => format!("{} (out of the warm pool)", a.verb()),
        }
    }
}

/// `... changing the desired capacity from 4 to 5.` → (4, 5), from an activity's cause.
pub fn desired_change(cause: &str) -> Option<(i64, i64)> {
    let rest = &cause[cause.find("desired capacity from ")? + "desired capacity from ".len()..];
    let (from, rest) = rest.split_once(" to ")?;
    let to: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((from.trim().parse().ok()?, to.parse().ok()?))
}

/// Where a group is, for people: `prod-eks/ng-1` when its EKS tags say so, else its name.
fn place(group: &str, info: Option<&GroupInfo>) -> String {
    match info.and_then(|i| Some((i.cluster.as_deref()?, i.nodegroup.as_deref()?))) {
        Some((cluster, ng)) => format!("{cluster}/{ng}"),
        None => group.to_owned(),
    }
}

/// One alert about instance events of one kind in one group (`events` in arrival order, never
/// empty).
pub fn render(
    events: &[&InstanceEvent],
    groups: &HashMap<String, GroupInfo>,
    env: &str,
) -> Notification {
    let first = events[0];
    let info = groups.get(&first.group);
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e.instance_id.as_deref())
        .collect();
    let desired = {
        let changes: Vec<(i64, i64)> = events
            .iter()
            .filter_map(|e| desired_change(e.cause.as_deref()?))
            .collect();
        match (changes.first(), changes.last()) {
            (Some((from, _)), Some((_, to))) if from != to => Some(format!("desired {from}→{to}")),
            _ => None,
        }
    };
    let what = format!("{} {}", plural(events.len(), "node", "nodes"), first.verb());
    let where_ = place(&first.group, info);
    let subject = match &desired {
        Some(d) => format!("[{env}] {what} in {where_}, {d}"),
        None => format!("[{env}] {what} in {where_}"),
    };
    let mut body = format!("{what} in {}", first.group);
    if !ids.is_empty() {
        let _ = write!(body, " ({})", ids.join(", "));
    }
    if let Some(d) = &desired {
        let _ = write!(body, ", {d}");
    }
    body.push_str(".\n\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<11}{value}");
    };
    if let Some(i) = info {
        if let Some(cluster) = &i.cluster {
            line(
                "Cluster:",
                &format!(
                    "{cluster} (node group {})",
                    i.nodegroup.as_deref().unwrap_or("?")
                ),
            );
        }
        if let (Some(d), Some(min), Some(max)) = (i.desired, i.min, i.max) {
            line("Group now:", &format!("desired {d} (min {min}, max {max})"));
        }
    }
    for (n, e) in events.iter().enumerate() {
        let id = e.instance_id.as_deref().unwrap_or("(no instance)");
        let kind = info
            .and_then(|i| i.instance_types.get(id))
            .map(String::as_str);
        let detail = [Some(id), kind, e.zone.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("  ");
        line(if n == 0 { "Instances:" } else { "" }, &detail);
    }
    if let Some(hook) = &first.hook {
        line("Hook:", hook);
    }
    if first.action.failed() {
        let messages: Vec<&str> = events
            .iter()
            .filter_map(|e| e.status_message.as_deref())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(m) = messages.first() {
            line("Error:", m);
        }
    }
    if let Some(cause) = first.cause.as_deref().filter(|c| !c.is_empty()) {
        let distinct = events
            .iter()
            .filter_map(|e| e.cause.as_deref())
            .collect::<std::collections::HashSet<_>>()
            .len();
        match distinct {
            1 => line("Cause:", cause),
            n => line("Cause:", &format!("(first of {n}) {cause}")),
        }
    }
    let times: Vec<DateTime<Utc>> = events.iter().filter_map(|e| e.time).collect();
    if let (Some(a), Some(b)) = (times.iter().min(), times.iter().max()) {
        let when = if a == b {
            a.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        } else {
            format!(
                "{} – {}",
                a.format("%Y-%m-%d %H:%M:%S"),
                b.format("%H:%M:%S UTC")
            )
        };
        line("Time:", &when);
    }
    let severity = if first.action.failed() {
        Severity::Error
    } else {
        Severity::Info
    };
    attributes(
        Notification::new(subject, body.trim_end().to_owned(), severity),
        "autoscaling",
        Some(&first.group),
        info,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_change_is_read_from_the_activity_cause() {
        let cause = "At 2026-11-21T09:12:10Z a user request update of AutoScalingGroup constraints to min: 3, \
                     max: 10, desired: 5 changing the desired capacity from 4 to 5.  At ...";
        assert_eq!(desired_change(cause), Some((4, 5)));
        assert_eq!(desired_change("an instance was taken out of service"), None);
    }

    use bridgekeeper::notify::Severity;

    use crate::fakes::*;

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
             Time:      2026-11-21 09:12:47 UTC\n\n\
             From account 123456789012 (hub)."
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
    async fn lifecycle_actions_are_info_and_name_their_hook() {
        let n = one(sample!("lifecycle-launch.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node held by a launch lifecycle hook in prod-eks/ng-1"
        );
        assert!(
            n.body
                .contains("Hook:      warm-up (autoscaling:EC2_INSTANCE_LAUNCHING)"),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Info);
        let n = one(sample!("lifecycle-terminate.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node held by a terminate lifecycle hook in prod-eks/ng-1"
        );
        assert!(
            n.body.contains("i-0b2c3d4e5f6071829  m6i.large"),
            "{}",
            n.body
        );
    }

    fn terminated(id: &str, cause: &str, at: &str) -> InstanceEvent {
        InstanceEvent {
            warm: None,
            action: InstanceAction::Terminate,
            group: "workers".into(),
            instance_id: Some(id.into()),
            zone: None,
            cause: Some(cause.into()),
            status_message: None,
            hook: None,
            time: Some(at.parse().unwrap()),
        }
    }

    #[test]
    fn several_causes_and_times_read_as_the_first_of_n_and_a_range() {
        let a = terminated("i-1", "scale in from 3 to 2", "2026-11-21T09:00:00Z");
        let b = terminated("i-2", "health check failed", "2026-11-21T09:05:30Z");
        let n = render(&[&a, &b], &HashMap::new(), "dev");
        assert_eq!(n.subject, "[dev] 2 nodes terminated in workers");
        assert_eq!(
            n.body,
            "2 nodes terminated in workers (i-1, i-2).\n\n\
             Instances: i-1\n\
             \x20          i-2\n\
             Cause:     (first of 2) scale in from 3 to 2\n\
             Time:      2026-11-21 09:00:00 – 09:05:30 UTC"
        );
        assert_eq!(n.severity, Severity::Info);
        assert_eq!(n.attributes["group"], "workers");
        assert!(!n.attributes.contains_key("cluster"));
    }
}
