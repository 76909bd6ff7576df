//! A node-group update followed to its end. CloudTrail records only the call that starts it
//! (`UpdateNodegroupVersion`, `UpdateNodegroupConfig`, whose response names the update), and EKS
//! sends no event when it ends. So scaling-alerts sends itself a follow-up through its own queue,
//! delayed by SQS's longest delay (15 minutes); each follow-up asks `eks:DescribeUpdate`, and
//! either sends the next one or tells how the update ended, in the start message's chat thread.

use std::fmt::Write;
use std::time::Duration;

use bridgekeeper::accounts::Scope;
use bridgekeeper::cluster_target::is_eks_name;
use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::nodegroups::NodegroupEvent;

/// The follow-up's envelope: not an AWS source, so no EventBridge rule of the stack routes one
/// to the queue; only the function's own `sqs:SendMessage` does.
pub const FOLLOW_UP: (&str, &str) = ("bridgekeeper", "Node Group Update Follow-up");
/// SQS `DelaySeconds` is at most 900.
pub const DELAY: Duration = Duration::from_secs(900);
/// Followed for at most a day (96 × 15 minutes): EKS's default update strategy replaces a node
/// group's nodes a few at a time, and a large group takes hours, but not a day.
pub const MAX_ROUNDS: u32 = 96;

/// What a follow-up carries from the call that started the update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    pub cluster: String,
    pub nodegroup: String,
    pub update_id: String,
    /// `update to release 1.33.5-20261110`, `resize: desired 8, min 3, max 12`.
    pub what: String,
    #[serde(default)]
    pub started: Option<DateTime<Utc>>,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub round: u32,
}

/// EKS's `Update.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Successful,
    Failed,
    Cancelled,
    Other(String),
}

impl Status {
    pub fn from_eks(s: &str) -> Status {
        match s {
            "InProgress" => Status::InProgress,
            "Successful" => Status::Successful,
            "Failed" => Status::Failed,
            "Cancelled" => Status::Cancelled,
            other => Status::Other(other.to_owned()),
        }
    }
}

/// What `DescribeUpdate` says; `None` from the adapter when EKS no longer knows the update (its
/// node group was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateState {
    pub status: Status,
    /// EKS's `ErrorDetail`s: code, message, and the resources it names (instances, groups).
    pub errors: Vec<(String, String, Vec<String>)>,
}

/// What a follow-up leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Still running: ask again in [`DELAY`].
    Again(FollowUp),
    /// Ended (or no longer followed): this is the message.
    Tell(Ended),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub follow: FollowUp,
    /// `None`: EKS no longer knows the update.
    pub state: Option<UpdateState>,
    pub at: DateTime<Utc>,
}

impl FollowUp {
    /// The first follow-up of a node-group call, when it started an update that can be followed
    /// (an update id in its response, and no error).
    pub fn of(n: &NodegroupEvent) -> Option<FollowUp> {
        if n.error.is_some() {
            return None;
        }
        let follow = FollowUp {
            cluster: n.cluster.clone()?,
            nodegroup: n.nodegroup.clone()?,
            update_id: n.update.clone()?,
            what: n.what(),
            started: n.time,
            by: n.who.clone(),
            round: 0,
        };
        follow.check().ok().map(|()| follow)
    }

    /// A follow-up comes from the queue, where only the function writes; still, it names what
    /// DescribeUpdate is asked about, so its names must be EKS names (the API's patterns).
    pub fn check(&self) -> Result<(), String> {
        let name = |what: &str, v: &str| match is_eks_name(v) {
            true => Ok(()),
            false => Err(format!("{what} {v:?} is not an EKS name")),
        };
        name("cluster", &self.cluster)?;
        name("node group", &self.nodegroup)?;
        let id_ok = self.update_id.len() == 36
            && self
                .update_id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-');
        if !id_ok {
            return Err(format!(
                "update id {:?} is not an EKS update id",
                self.update_id
            ));
        }
        if self.round > MAX_ROUNDS {
            return Err(format!("round {} is past {MAX_ROUNDS}", self.round));
        }
        Ok(())
    }

    /// The chat thread of the update: its start and its end.
    pub fn thread(&self) -> String {
        crate::nodegroups::update_thread(&self.update_id)
    }

    /// The SQS body: an EventBridge-shaped event of the account and region the update is in, so
    /// it is admitted and enriched like the call that started it.
    pub fn body(&self, scope: &Scope, now: DateTime<Utc>) -> String {
        serde_json::json!({
            "version": "0",
            "id": format!("{}-{}", self.update_id, self.round),
            "detail-type": FOLLOW_UP.1,
            "source": FOLLOW_UP.0,
            "account": scope.account,
            "region": scope.region,
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "resources": [],
            "detail": self,
        })
        .to_string()
    }

    /// Pure: what the update's state means for this follow-up.
    pub fn next(&self, state: Option<UpdateState>, now: DateTime<Utc>) -> Next {
        match &state {
            Some(UpdateState {
                status: Status::InProgress,
                ..
            }) if self.round < MAX_ROUNDS => Next::Again(FollowUp {
                round: self.round + 1,
                ..self.clone()
            }),
            _ => Next::Tell(Ended {
                follow: self.clone(),
                state,
                at: now,
            }),
        }
    }
}

/// `42 min`, `3 h 5 min`.
fn took(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> Option<String> {
    let minutes = (to - from?).num_minutes();
    (minutes >= 0).then(|| match minutes {
        m if m < 60 => format!("{m} min"),
        m => format!("{} h {} min", m / 60, m % 60),
    })
}

pub fn render(e: &Ended, env: &str) -> Notification {
    let f = &e.follow;
    let name = format!("{}/{}", f.cluster, f.nodegroup);
    let took = took(f.started, e.at);
    let (subject, lead, severity) = match e.state.as_ref().map(|s| &s.status) {
        Some(Status::Successful) => (
            format!("[{env}] Node group {name} {} succeeded", f.what),
            format!(
                "The {} of node group {name} succeeded{}.",
                f.what,
                took.as_deref()
                    .map(|t| format!(" after {t}"))
                    .unwrap_or_default()
            ),
            Severity::Resolved,
        ),
        Some(Status::Failed) => {
            let code = e
                .state
                .as_ref()
                .and_then(|s| s.errors.first())
                .map(|(code, _, _)| format!(": {code}"))
                .unwrap_or_default();
            (
                format!("[{env}] FAILED: node group {name} {}{code}", f.what),
                format!(
                    "The {} of node group {name} failed, because EKS says:",
                    f.what
                ),
                Severity::Error,
            )
        }
        Some(Status::Cancelled) => (
            format!("[{env}] Node group {name} {} cancelled", f.what),
            format!("The {} of node group {name} was cancelled.", f.what),
            Severity::Warning,
        ),
        Some(Status::InProgress) => (
            format!("[{env}] Node group {name} {} still running", f.what),
            format!(
                "The {} of node group {name} is still running after {}: Bridgekeeper stops following it.",
                f.what,
                took.as_deref().unwrap_or("a day")
            ),
            Severity::Warning,
        ),
        Some(Status::Other(s)) => (
            format!("[{env}] Node group {name} {}: {s}", f.what),
            format!("EKS says the {} of node group {name} is {s}.", f.what),
            Severity::Warning,
        ),
        None => (
            format!("[{env}] Node group {name} {}: update gone", f.what),
            format!(
                "EKS no longer knows update {} of node group {name}: the node group may have been deleted.",
                f.update_id
            ),
            Severity::Warning,
        ),
    };
    let mut body = format!("{lead}\n\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<10}{value}");
    };
    for (code, message, resources) in e.state.iter().flat_map(|s| &s.errors) {
        line("Error:", &format!("{code}: {message}"));
        if !resources.is_empty() {
            line("", &format!("on {}", resources.join(", ")));
        }
    }
    if let Some(t) = &took {
        line("Took:", t);
    }
    if let Some(who) = &f.by {
        line("Started:", &format!("by {who}"));
    }
    line("Update:", &f.update_id);
    Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("source", "eks")
        .attribute("cluster", f.cluster.clone())
        .attribute("group", f.nodegroup.clone())
        .thread(f.thread())
        .event_type(match e.state.as_ref().map(|s| &s.status) {
            Some(Status::Successful) => "NodegroupUpdateSucceeded",
            Some(Status::Failed) => "NodegroupUpdateFailed",
            _ => "NodegroupUpdateEnded",
        })
        .next_step(format!(
            "aws eks describe-update --name {} --nodegroup-name {} --update-id {}",
            f.cluster, f.nodegroup, f.update_id
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fakes::version_update as follow;

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().unwrap()
    }

    #[test]
    fn an_update_in_progress_is_asked_about_again_until_a_day_has_passed() {
        let running = Some(UpdateState {
            status: Status::InProgress,
            errors: vec![],
        });
        let Next::Again(second) = follow().next(running.clone(), at("2026-11-22T05:25:00Z")) else {
            panic!("a running update is followed");
        };
        assert_eq!(second.round, 1);
        let last = FollowUp {
            round: MAX_ROUNDS,
            ..follow()
        };
        let Next::Tell(e) = last.next(running, at("2026-11-23T05:10:00Z")) else {
            panic!("followed at most a day");
        };
        let n = render(&e, "prod");
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 still running"
        );
        assert_eq!(n.severity, Severity::Warning);
    }

    #[test]
    fn a_failed_update_says_why_in_eks_words() {
        let failed = Some(UpdateState {
            status: Status::Failed,
            errors: vec![(
                "PodEvictionFailure".into(),
                "Reached max retries while trying to evict pods from nodes in node group ng-1"
                    .into(),
                vec!["i-0a1b2c3d4e5f60718".into()],
            )],
        });
        let Next::Tell(e) = follow().next(failed, at("2026-11-22T06:02:00Z")) else {
            panic!("a failed update is told");
        };
        let n = render(&e, "prod");
        assert_eq!(
            n.subject,
            "[prod] FAILED: node group prod-eks/ng-1 update to release 1.33.5-20261110: PodEvictionFailure"
        );
        assert_eq!(
            n.body,
            "The update to release 1.33.5-20261110 of node group prod-eks/ng-1 failed, because EKS says:\n\n\
             Error:    PodEvictionFailure: Reached max retries while trying to evict pods from nodes in node group ng-1\n\
             \x20         on i-0a1b2c3d4e5f60718\n\
             Took:     52 min\n\
             Started:  by arn:aws:sts::123456789012:assumed-role/PlatformAdmin/jane\n\
             Update:   1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff"
        );
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(
            n.chat.thread.as_deref(),
            Some("nodegroup-update/1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff")
        );
    }

    #[test]
    fn a_successful_update_is_resolved_and_says_how_long_it_took() {
        let done = Some(UpdateState {
            status: Status::Successful,
            errors: vec![],
        });
        let Next::Tell(e) = follow().next(done, at("2026-11-22T08:15:00Z")) else {
            panic!("an ended update is told");
        };
        let n = render(&e, "prod");
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 succeeded"
        );
        assert!(n.body.starts_with("The update to release 1.33.5-20261110 of node group prod-eks/ng-1 succeeded after 3 h 5 min."), "{}", n.body);
        assert_eq!(n.severity, Severity::Resolved);
    }

    #[test]
    fn a_follow_up_naming_what_eks_would_refuse_is_refused() {
        for bad in [
            FollowUp {
                cluster: "prod eks; rm".into(),
                ..follow()
            },
            FollowUp {
                nodegroup: String::new(),
                ..follow()
            },
            FollowUp {
                update_id: "../../x".into(),
                ..follow()
            },
            FollowUp {
                round: MAX_ROUNDS + 1,
                ..follow()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert_eq!(follow().check(), Ok(()));
    }
}
