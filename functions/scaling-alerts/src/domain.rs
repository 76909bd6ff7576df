//! Pure decisions: which events become one alert, and what the alert says.

use std::collections::HashMap;
use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alarm::AlarmEvent;
use crate::alert::{GroupInfo, attributes, plural};
use crate::nodegroups::NodegroupEvent;
use crate::nodes::{NodeEvent, Pool};

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Instance(InstanceEvent),
    Alarm(AlarmEvent),
    Nodegroup(NodegroupEvent),
    Node(NodeEvent),
}

impl Fact {
    /// The Auto Scaling group this fact is about, to look up in one DescribeAutoScalingGroups.
    pub fn group(&self) -> Option<&str> {
        match self {
            Fact::Instance(e) => Some(&e.group),
            Fact::Alarm(a) => a.dimensions.get("AutoScalingGroupName").map(String::as_str),
            Fact::Nodegroup(_) | Fact::Node(_) => None,
        }
    }
}

/// Facts that become one notification, and the records they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub facts: Vec<Fact>,
    pub records: Vec<String>,
}

impl Alert {
    /// An alarm alert's changes, in arrival order.
    pub fn alarms(&self) -> Vec<&AlarmEvent> {
        self.facts
            .iter()
            .filter_map(|f| match f {
                Fact::Alarm(a) => Some(a),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Instances(InstanceAction, String),
    Alarm(String),
    Nodes(String, Option<String>, Option<Pool>),
    Nodegroup(usize),
}

/// Same kind of instance event in the same group → one alert; all of an alarm's changes → one
/// alert (it reads the latest); the same EC2 event about nodes of one pool → one alert; every
/// node-group call stays separate. Alerts come in the order of their first event, and each
/// alert's events in arrival order.
pub fn coalesce(facts: Vec<(String, Fact)>) -> Vec<Alert> {
    let mut order: Vec<Key> = Vec::new();
    let mut alerts: HashMap<Key, Alert> = HashMap::new();
    for (i, (record, fact)) in facts.into_iter().enumerate() {
        let key = match &fact {
            Fact::Instance(e) => Key::Instances(e.action, e.group.clone()),
            Fact::Alarm(a) => Key::Alarm(a.name.clone()),
            Fact::Node(n) => {
                let (kind, cluster, pool) = n.key();
                Key::Nodes(kind, cluster, pool)
            }
            Fact::Nodegroup(_) => Key::Nodegroup(i),
        };
        let alert = alerts.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Alert {
                facts: Vec::new(),
                records: Vec::new(),
            }
        });
        alert.facts.push(fact);
        alert.records.push(record);
    }
    order
        .into_iter()
        .filter_map(|k| alerts.remove(&k))
        .collect()
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

/// The text of one alert, with its severity and attributes.
pub fn render(
    alert: &Alert,
    groups: &HashMap<String, GroupInfo>,
    environment: &str,
) -> Notification {
    match &alert.facts[0] {
        Fact::Instance(first) => render_instances(alert, first, groups, environment),
        Fact::Alarm(_) => crate::alarm::render(&alert.alarms(), groups, environment),
        Fact::Node(_) => {
            let events: Vec<&NodeEvent> = alert
                .facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Node(n) => Some(n),
                    _ => None,
                })
                .collect();
            crate::nodes::render(&events, environment)
        }
        Fact::Nodegroup(n) => crate::nodegroups::render(n, environment),
    }
}

fn render_instances(
    alert: &Alert,
    first: &InstanceEvent,
    groups: &HashMap<String, GroupInfo>,
    env: &str,
) -> Notification {
    let events: Vec<&InstanceEvent> = alert
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Instance(e) => Some(e),
            _ => None,
        })
        .collect();
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
    let what = format!(
        "{} {}",
        plural(events.len(), "node", "nodes"),
        first.action.verb()
    );
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
    use crate::alert::fmt_number;

    fn launch(group: &str, id: &str) -> (String, Fact) {
        let e = InstanceEvent {
            action: InstanceAction::Launch,
            group: group.into(),
            instance_id: Some(id.into()),
            zone: None,
            cause: None,
            status_message: None,
            hook: None,
            time: None,
        };
        (format!("rec-{id}"), Fact::Instance(e))
    }

    #[test]
    fn coalescing_keeps_first_appearance_order_and_records() {
        let alerts = coalesce(vec![launch("a", "1"), launch("b", "2"), launch("a", "3")]);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].records, ["rec-1", "rec-3"]);
        assert_eq!(alerts[1].records, ["rec-2"]);
    }

    #[test]
    fn desired_change_is_read_from_the_activity_cause() {
        let cause = "At 2026-11-21T09:12:10Z a user request update of AutoScalingGroup constraints to min: 3, \
                     max: 10, desired: 5 changing the desired capacity from 4 to 5.  At ...";
        assert_eq!(desired_change(cause), Some((4, 5)));
        assert_eq!(desired_change("an instance was taken out of service"), None);
    }

    #[test]
    fn numbers_read_without_noise() {
        assert_eq!(fmt_number(80.0), "80");
        assert_eq!(fmt_number(93.456), "93.46");
        assert_eq!(fmt_number(0.5), "0.5");
    }
}
