//! Pure decisions: which events become one alert, and which renderer words it.

use std::collections::HashMap;

use bridgekeeper::notify::Notification;

use crate::addons::{AddonEvent, AddonRef};
use crate::alarm::AlarmEvent;
use crate::alert::GroupInfo;
use crate::autoscaling::{InstanceAction, InstanceEvent};
use crate::contributors::ContributorEvent;
use crate::followup::{Ended, FollowUp};
use crate::nodegroups::NodegroupEvent;
use crate::nodes::{NodeEvent, Pool};
use crate::refresh::RefreshEvent;

#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Instance(InstanceEvent),
    Alarm(AlarmEvent),
    Contributor(ContributorEvent),
    Nodegroup(NodegroupEvent),
    Node(NodeEvent),
    Refresh(RefreshEvent),
    /// An EKS add-on's change or health.
    Addon(AddonEvent),
    /// A node-group update to ask EKS about (the function's own follow-up).
    FollowUp(FollowUp),
    /// A followed update that ended, or is no longer followed.
    UpdateEnded(Ended),
}

impl Fact {
    /// The Auto Scaling group this fact is about, to look up in one DescribeAutoScalingGroups.
    pub fn group(&self) -> Option<&str> {
        match self {
            Fact::Instance(e) => Some(&e.group),
            Fact::Refresh(e) => Some(&e.group),
            Fact::Alarm(a) => a.dimensions.get("AutoScalingGroupName").map(String::as_str),
            Fact::Contributor(c) => c.group(),
            Fact::Nodegroup(_)
            | Fact::Node(_)
            | Fact::FollowUp(_)
            | Fact::UpdateEnded(_)
            | Fact::Addon(_) => None,
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

    /// A multi-time-series alarm's contributor changes, in arrival order.
    pub fn contributors(&self) -> Vec<&ContributorEvent> {
        self.facts
            .iter()
            .filter_map(|f| match f {
                Fact::Contributor(c) => Some(c),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Instances(InstanceAction, Option<crate::autoscaling::Warm>, String),
    Refresh(String),
    Alarm(String),
    Contributors(String),
    Addon(AddonRef),
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
            Fact::Instance(e) => Key::Instances(e.action, e.warm, e.group.clone()),
            Fact::Refresh(e) => Key::Refresh(e.refresh.clone()),
            Fact::Alarm(a) => Key::Alarm(a.name.clone()),
            Fact::Contributor(c) => Key::Contributors(c.alarm.clone()),
            Fact::Node(n) => {
                let (kind, cluster, pool) = n.key();
                Key::Nodes(kind, cluster, pool)
            }
            Fact::Addon(AddonEvent { addon: Some(a), .. }) => Key::Addon(a.clone()),
            Fact::Nodegroup(_) | Fact::FollowUp(_) | Fact::UpdateEnded(_) | Fact::Addon(_) => {
                Key::Nodegroup(i)
            }
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

/// The text of one alert, with its severity and attributes.
pub fn render(
    alert: &Alert,
    groups: &HashMap<String, GroupInfo>,
    environment: &str,
) -> Notification {
    match &alert.facts[0] {
        Fact::Instance(_) => {
            let events: Vec<&InstanceEvent> = alert
                .facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Instance(e) => Some(e),
                    _ => None,
                })
                .collect();
            crate::autoscaling::render(&events, groups, environment)
        }
        Fact::Alarm(_) => crate::alarm::render(&alert.alarms(), groups, environment),
        Fact::Contributor(_) => {
            crate::contributors::render(&alert.contributors(), groups, environment)
        }
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
        Fact::UpdateEnded(e) => crate::followup::render(e, environment),
        Fact::Addon(_) => {
            // One add-on's events in a batch: the latest tells it (EKS's state is the same).
            let latest = alert
                .facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Addon(e) => Some(e),
                    _ => None,
                })
                .max_by_key(|e| e.time)
                .expect("an add-on alert has an add-on event");
            crate::addons::render(latest, environment)
        }
        // The pipeline answers follow-ups before rendering; one left is a bug, told as such.
        Fact::FollowUp(f) => crate::followup::render(
            &Ended {
                follow: f.clone(),
                state: None,
                at: f.started.unwrap_or_default(),
            },
            environment,
        ),
        Fact::Refresh(_) => {
            let events: Vec<&RefreshEvent> = alert
                .facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Refresh(e) => Some(e),
                    _ => None,
                })
                .collect();
            crate::refresh::render(&events, groups, environment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaling::{InstanceAction, InstanceEvent};

    fn launch(group: &str, id: &str) -> (String, Fact) {
        let e = InstanceEvent {
            warm: None,
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
}
