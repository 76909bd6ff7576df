//! EKS node-group API calls recorded by CloudTrail: creations, deletions, version updates and
//! configuration changes, and the calls that failed or were denied.

use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Create,
    Delete,
    UpdateVersion,
    UpdateConfig,
}

impl Call {
    pub fn from_event_name(name: &str) -> Option<Self> {
        Some(match name {
            "CreateNodegroup" => Call::Create,
            "DeleteNodegroup" => Call::Delete,
            "UpdateNodegroupVersion" => Call::UpdateVersion,
            "UpdateNodegroupConfig" => Call::UpdateConfig,
            _ => return None,
        })
    }

    fn noun(self) -> &'static str {
        match self {
            Call::Create => "creation",
            Call::Delete => "deletion",
            Call::UpdateVersion => "version update",
            Call::UpdateConfig => "configuration change",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sizes {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub desired: Option<i64>,
}

impl Sizes {
    fn text(&self) -> Option<String> {
        let parts: Vec<String> = [
            ("desired", self.desired),
            ("min", self.min),
            ("max", self.max),
        ]
        .into_iter()
        .filter_map(|(label, v)| Some(format!("{label} {}", v?)))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodegroupEvent {
    pub call: Option<Call>,
    pub cluster: Option<String>,
    pub nodegroup: Option<String>,
    pub scaling: Option<Sizes>,
    /// What else an UpdateNodegroupConfig changed: `labels`, `taints`, `update config`, ...
    pub changed: Vec<&'static str>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub instance_types: Vec<String>,
    pub capacity: Option<String>,
    /// CloudTrail's `errorCode` and `errorMessage`: the call did not happen.
    pub error: Option<(String, Option<String>)>,
    pub who: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// The id of the update an update call started (its CloudTrail `responseElements`).
    pub update: Option<String>,
}

impl NodegroupEvent {
    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.cluster.as_deref().unwrap_or("?"),
            self.nodegroup.as_deref().unwrap_or("?")
        )
    }

    /// ` to release 1.33.5-20261110`, ` to Kubernetes 1.33`, ` to the latest AMI`.
    fn to(&self) -> String {
        match (&self.version, &self.release) {
            (_, Some(r)) => format!(" to release {r}"),
            (Some(v), None) => format!(" to Kubernetes {v}"),
            (None, None) => " to the latest AMI".to_owned(),
        }
    }

    /// What the call changes, as the follow-up of its update names it: `update to release …`,
    /// `resize to desired 8, min 3, max 12`, `configuration change`.
    pub fn what(&self) -> String {
        match self.call {
            Some(Call::UpdateVersion) => format!("update{}", self.to()),
            Some(Call::UpdateConfig) => match self.scaling.as_ref().and_then(Sizes::text) {
                Some(s) => format!("resize to {s}"),
                None => "configuration change".to_owned(),
            },
            Some(c) => c.noun().to_owned(),
            None => "change".to_owned(),
        }
    }

    /// `AccessDenied`, `AccessDeniedException`, `UnauthorizedOperation`, ...
    fn denied(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|(code, _)| code.contains("AccessDenied") || code.contains("Unauthorized"))
    }
}

pub fn render(n: &NodegroupEvent, env: &str) -> Notification {
    let call = n.call.unwrap_or(Call::UpdateConfig);
    let name = n.name();
    let sizes = n.scaling.as_ref().and_then(Sizes::text);
    let (subject, lead, severity) = if let Some((code, _)) = &n.error {
        let verdict = if n.denied() { "DENIED" } else { "FAILED" };
        (
            format!(
                "[{env}] {verdict}: node group {name} {}: {code}",
                call.noun()
            ),
            format!(
                "A {} of node group {} in EKS cluster {} was {}: nothing changed.",
                call.noun(),
                n.nodegroup.as_deref().unwrap_or("?"),
                n.cluster.as_deref().unwrap_or("?"),
                if n.denied() { "denied" } else { "refused" }
            ),
            Severity::Error,
        )
    } else {
        match call {
            Call::UpdateConfig => {
                let others = n.changed.join(", ");
                let what = match (&sizes, others.is_empty()) {
                    (Some(s), true) => format!("resized: {s}"),
                    (Some(s), false) => format!("resized: {s}; {others} changed"),
                    (None, false) => format!("updated: {others}"),
                    (None, true) => "configuration updated".to_owned(),
                };
                (
                    format!("[{env}] Node group {name} {what}"),
                    format!(
                        "The configuration of node group {} in EKS cluster {} was changed ({what}).",
                        n.nodegroup.as_deref().unwrap_or("?"),
                        n.cluster.as_deref().unwrap_or("?")
                    ),
                    Severity::Info,
                )
            }
            Call::Create => (
                format!("[{env}] Node group {name} creation started"),
                format!("EKS is creating node group {name}."),
                Severity::Info,
            ),
            Call::Delete => (
                format!("[{env}] Node group {name} deletion started"),
                format!("EKS is deleting node group {name}: its nodes are drained and terminated."),
                Severity::Warning,
            ),
            Call::UpdateVersion => {
                let to = n.to();
                (
                    format!("[{env}] Node group {name} update{to} started"),
                    format!("EKS is updating node group {name}{to}: its nodes are replaced."),
                    Severity::Info,
                )
            }
        }
    };
    let mut body = format!("{lead}\n\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<10}{value}");
    };
    if let Some((code, message)) = &n.error {
        let message = message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        line("Error:", &format!("{code}{message}"));
    }
    if let Some(s) = &sizes {
        line("Sizes:", s);
    }
    if !n.instance_types.is_empty() {
        let capacity = n
            .capacity
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        line(
            "Types:",
            &format!("{}{capacity}", n.instance_types.join(", ")),
        );
    }
    if let Some(who) = &n.who {
        line("By:", who);
    }
    if let Some(t) = n.time {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let mut note =
        Notification::new(subject, body.trim_end().to_owned(), severity).attribute("source", "eks");
    if let Some(c) = &n.cluster {
        note = note.attribute("cluster", c.clone());
    }
    if let Some(g) = &n.nodegroup {
        note = note.attribute("group", g.clone());
    }
    // The update's start and the end its follow-up tells are one chat thread.
    match (&n.error, &n.update) {
        (None, Some(update)) => note.thread(update_thread(update)),
        _ => note,
    }
}

/// The chat thread of a node-group update: its start, and the end its follow-up tells.
pub fn update_thread(update: &str) -> String {
    format!("nodegroup-update/{update}")
}

#[cfg(test)]
mod tests {

    use bridgekeeper::notify::Severity;

    use crate::fakes::*;

    #[tokio::test]
    async fn node_group_resize_says_who_and_what() {
        let n = one(sample!("nodegroup-config-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 resized: desired 8, min 3, max 12"
        );
        assert!(
            n.body
                .contains("By:       arn:aws:sts::123456789012:assumed-role/PlatformAdmin/jane"),
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
    async fn a_failed_or_denied_node_group_call_is_an_error_not_a_resize() {
        let n = one(sample!("nodegroup-config-failed.json")).await;
        assert_eq!(
            n.subject,
            "[prod] FAILED: node group prod-eks/ng-1 configuration change: InvalidParameterException"
        );
        assert!(
            n.body.contains(
                "Error:    InvalidParameterException: Minimum capacity 3 can't be greater than maximum capacity 2"
            ),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Error);
        let n = one(sample!("nodegroup-config-denied.json")).await;
        assert_eq!(
            n.subject,
            "[prod] DENIED: node group prod-eks/ng-1 configuration change: AccessDenied"
        );
        assert!(
            n.body
                .contains("assumed-role/Developer/sam is not authorized")
        );
        assert_eq!(n.severity, Severity::Error);
    }

    /// The review's fence breakout, through a CloudTrail error message (the caller writes part
    /// of it: names, ARNs).
    #[tokio::test]
    async fn a_cloudtrail_error_message_never_leaves_the_chat_code_block() {
        let hostile = "denied ```\n[verify](https://evil.example) @here <!channel>";
        let body = sample!("nodegroup-config-denied.json").replace(
            "User: arn:aws:sts::123456789012:assumed-role/Developer/sam is not authorized",
            &hostile.replace('\n', "\\n"),
        );
        let n = one(&body).await;
        assert!(
            n.body.contains("```"),
            "the hostile text is quoted: {}",
            n.body
        );
        assert_eq!(bridgekeeper::notify::testing::chat_not_inert(&n), None);
    }

    #[tokio::test]
    async fn a_labels_and_taints_update_is_not_called_a_resize() {
        let n = one(sample!("nodegroup-labels-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 updated: labels, taints"
        );
        assert!(!n.body.contains("resized"), "{}", n.body);
    }

    #[tokio::test]
    async fn node_group_creation_deletion_and_version_updates_read_well() {
        let n = one(sample!("nodegroup-create.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-spot creation started"
        );
        assert!(n.body.contains("Types:    m6i.large, m6a.large (SPOT)"));
        assert!(n.body.contains("Sizes:    desired 2, min 0, max 10"));
        let n = one(sample!("nodegroup-delete.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-old deletion started"
        );
        assert_eq!(n.severity, Severity::Warning);
        let n = one(sample!("nodegroup-version-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 started"
        );
    }
}
