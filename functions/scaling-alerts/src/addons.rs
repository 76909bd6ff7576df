//! EKS add-on events (`EKS Addon Creation Failed`, `… Health Degraded`, …). The EventBridge
//! reference lists them but documents no sample of their `detail`, so nothing here reads it:
//! the detail-type says what happened, the add-on's ARN (a documented format, found wherever the
//! event carries it) says which add-on, and `eks:DescribeAddon` says how it stands now, in
//! EKS's documented words (status, version, health issues).

use std::fmt::Write;

use bridgekeeper::cluster_target::is_eks_name;
use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

/// What the detail-type says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddonKind {
    Created { ok: bool },
    Updated { ok: bool },
    Deleted { ok: bool },
    Degraded,
    Restored,
}

impl AddonKind {
    /// The nine `aws.eks` detail-types but Fargate's ("Amazon Elastic Kubernetes Service
    /// events", EventBridge events reference).
    pub fn from_detail_type(detail_type: &str) -> Option<AddonKind> {
        Some(match detail_type {
            "EKS Addon Creation Succeeded" => AddonKind::Created { ok: true },
            "EKS Addon Creation Failed" => AddonKind::Created { ok: false },
            "EKS Addon Update Succeeded" => AddonKind::Updated { ok: true },
            "EKS Addon Update Failed" => AddonKind::Updated { ok: false },
            "EKS Addon Deletion Succeeded" => AddonKind::Deleted { ok: true },
            "EKS Addon Deletion Failed" => AddonKind::Deleted { ok: false },
            "EKS Addon Health Degraded" => AddonKind::Degraded,
            "EKS Addon Health Restored" => AddonKind::Restored,
            _ => return None,
        })
    }

    fn failed(self) -> bool {
        matches!(
            self,
            AddonKind::Created { ok: false }
                | AddonKind::Updated { ok: false }
                | AddonKind::Deleted { ok: false }
        )
    }

    fn says(self) -> &'static str {
        match self {
            AddonKind::Created { ok: true } => "created",
            AddonKind::Created { ok: false } => "creation failed",
            AddonKind::Updated { ok: true } => "updated",
            AddonKind::Updated { ok: false } => "update failed",
            AddonKind::Deleted { ok: true } => "deleted",
            AddonKind::Deleted { ok: false } => "deletion failed",
            AddonKind::Degraded => "degraded",
            AddonKind::Restored => "healthy again",
        }
    }
}

/// `arn:<partition>:eks:<region>:<account>:addon/<cluster>/<add-on>/<uuid>` (the Service
/// Authorization Reference's add-on resource).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddonRef {
    pub cluster: String,
    pub addon: String,
}

impl AddonRef {
    /// The first add-on ARN in `text` whose cluster and add-on are EKS names.
    pub fn find(text: &str) -> Option<AddonRef> {
        text.match_indices(":addon/").find_map(|(at, m)| {
            let before = &text[..at];
            let arn_start = before.rfind("arn:")?;
            if !before[arn_start..].contains(":eks:") {
                return None;
            }
            let mut parts = text[at + m.len()..].split('/');
            // A whole path segment that is an EKS name, as the API's patterns allow.
            let name = |s: Option<&str>| s.filter(|s| is_eks_name(s)).map(str::to_owned);
            let cluster = name(parts.next())?;
            let addon = name(parts.next())?;
            Some(AddonRef { cluster, addon })
        })
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.cluster, self.addon)
    }
}

/// What `DescribeAddon` says now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddonState {
    /// `ACTIVE`, `DEGRADED`, `CREATE_FAILED`, `UPDATE_FAILED`, …
    pub status: String,
    pub version: Option<String>,
    /// `AddonIssue`s: code, message, and the resources they name.
    pub issues: Vec<(String, String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonEvent {
    pub kind: AddonKind,
    /// `None`: the event named no add-on in a form Bridgekeeper can read.
    pub addon: Option<AddonRef>,
    pub time: Option<DateTime<Utc>>,
    /// Filled in by the pipeline: `None` when not asked, or EKS no longer knows the add-on.
    pub now: Option<AddonState>,
    /// EKS could not be asked (the message says so; it still goes out).
    pub unasked: Option<String>,
}

pub fn render(e: &AddonEvent, env: &str) -> Notification {
    let name = e
        .addon
        .as_ref()
        .map(AddonRef::name)
        .unwrap_or_else(|| "(not named)".into());
    let now = e.now.as_ref();
    let still_degraded = now.is_some_and(|s| !s.issues.is_empty() || s.status == "DEGRADED");
    let issue_code = now
        .and_then(|s| s.issues.first())
        .map(|(code, _, _)| format!(": {code}"))
        .unwrap_or_default();
    let (subject, severity) = match e.kind {
        k if k.failed() => (
            format!("[{env}] FAILED: add-on {name} {}{issue_code}", k.says()),
            Severity::Error,
        ),
        AddonKind::Degraded if now.is_some() && !still_degraded => (
            format!("[{env}] Add-on {name} was degraded; healthy now"),
            Severity::Info,
        ),
        AddonKind::Degraded => (
            format!("[{env}] Add-on {name} degraded{issue_code}"),
            Severity::Warning,
        ),
        AddonKind::Restored if still_degraded => (
            format!("[{env}] Add-on {name} restored, but degraded again{issue_code}"),
            Severity::Warning,
        ),
        AddonKind::Restored => (
            format!("[{env}] Add-on {name} healthy again"),
            Severity::Resolved,
        ),
        k => (
            format!("[{env}] Add-on {name} {}", k.says()),
            Severity::Info,
        ),
    };
    let mut body = match &e.addon {
        Some(a) => format!(
            "EKS says add-on {} of cluster {} is {}.\n\n",
            a.addon,
            a.cluster,
            e.kind.says()
        ),
        None => format!(
            "EKS says an add-on is {}, but the event names none Bridgekeeper can read.\n\n",
            e.kind.says()
        ),
    };
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<9}{value}");
    };
    match (now, &e.unasked) {
        (Some(s), _) => {
            let version = s
                .version
                .as_deref()
                .map(|v| format!(", {v}"))
                .unwrap_or_default();
            line("Now:", &format!("{}{version}", s.status));
            for (code, message, resources) in &s.issues {
                line("Issue:", &format!("{code}: {message}"));
                if !resources.is_empty() {
                    line("", &format!("on {}", resources.join(", ")));
                }
            }
        }
        (None, Some(why)) => line(
            "Now:",
            &format!("not known: EKS could not be asked ({why})"),
        ),
        (None, None) if e.addon.is_some() && e.kind != (AddonKind::Deleted { ok: true }) => {
            line("Now:", "EKS no longer knows the add-on")
        }
        (None, None) => {}
    }
    if let Some(t) = e.time {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let mut n = Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("source", "eks")
        .event_type(match e.kind {
            AddonKind::Degraded => "AddonHealthDegraded",
            AddonKind::Restored => "AddonHealthRestored",
            k if k.failed() => "AddonChangeFailed",
            _ => "AddonChanged",
        });
    if let Some(a) = &e.addon {
        // An add-on's degradation and its recovery are one story.
        n = n
            .attribute("cluster", a.cluster.clone())
            .attribute("addon", a.addon.clone())
            .thread(format!("addon/{}/{}", a.cluster, a.addon))
            .next_step(format!(
                "aws eks describe-addon --cluster-name {} --addon-name {}",
                a.cluster, a.addon
            ));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_addon_arn_is_found_wherever_the_event_carries_it() {
        let arn = "arn:aws:eks:eu-west-1:123456789012:addon/prod-eks/vpc-cni/0ec71efc-98dd-3203-60b0-4b939b2a5e5f";
        assert_eq!(
            AddonRef::find(&format!(r#"{{"resources": ["{arn}"]}}"#)),
            Some(AddonRef {
                cluster: "prod-eks".into(),
                addon: "vpc-cni".into()
            })
        );
        // Not EKS's, or names EKS would refuse.
        assert_eq!(AddonRef::find("arn:aws:other:x:1:addon/a/b/c"), None);
        assert_eq!(
            AddonRef::find("arn:aws:eks:eu-west-1:1:addon/prod eks/b/c"),
            None
        );
        assert_eq!(AddonRef::find("no arn at all"), None);
    }

    fn event(kind: AddonKind, now: Option<AddonState>) -> AddonEvent {
        AddonEvent {
            kind,
            addon: Some(AddonRef {
                cluster: "prod-eks".into(),
                addon: "vpc-cni".into(),
            }),
            time: "2026-11-22T03:10:00Z".parse().ok(),
            now,
            unasked: None,
        }
    }

    fn degraded() -> AddonState {
        AddonState {
            status: "DEGRADED".into(),
            version: Some("v1.19.0-eksbuild.1".into()),
            issues: vec![(
                "InsufficientNumberOfReplicas".into(),
                "The add-on is unhealthy because it doesn't have the desired number of replicas."
                    .into(),
                vec!["kube-system/aws-node".into()],
            )],
        }
    }

    #[test]
    fn a_degraded_addon_says_what_eks_reports_now() {
        let n = render(&event(AddonKind::Degraded, Some(degraded())), "prod");
        assert_eq!(
            n.subject,
            "[prod] Add-on prod-eks/vpc-cni degraded: InsufficientNumberOfReplicas"
        );
        assert_eq!(
            n.body,
            "EKS says add-on vpc-cni of cluster prod-eks is degraded.\n\n\
             Now:     DEGRADED, v1.19.0-eksbuild.1\n\
             Issue:   InsufficientNumberOfReplicas: The add-on is unhealthy because it doesn't have the desired number of replicas.\n\
             \x20        on kube-system/aws-node\n\
             Time:    2026-11-22 03:10:00 UTC"
        );
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.chat.thread.as_deref(), Some("addon/prod-eks/vpc-cni"));
    }

    /// EventBridge delivers late: a degradation that EKS says is over is told as over.
    #[test]
    fn a_late_degradation_of_a_healthy_addon_is_not_a_warning() {
        let healthy = AddonState {
            status: "ACTIVE".into(),
            version: Some("v1.19.0-eksbuild.1".into()),
            issues: vec![],
        };
        let n = render(&event(AddonKind::Degraded, Some(healthy.clone())), "prod");
        assert_eq!(
            n.subject,
            "[prod] Add-on prod-eks/vpc-cni was degraded; healthy now"
        );
        assert_eq!(n.severity, Severity::Info);
        let n = render(&event(AddonKind::Restored, Some(healthy)), "prod");
        assert_eq!(n.severity, Severity::Resolved);
        let n = render(&event(AddonKind::Restored, Some(degraded())), "prod");
        assert_eq!(n.severity, Severity::Warning);
    }

    #[test]
    fn a_failed_update_is_an_error_naming_the_issue() {
        let failed = AddonState {
            status: "UPDATE_FAILED".into(),
            version: Some("v1.18.6-eksbuild.1".into()),
            issues: vec![(
                "ConfigurationConflict".into(),
                "Conflicts found when trying to apply. Will not continue due to resolve conflicts mode.".into(),
                vec![],
            )],
        };
        let n = render(
            &event(AddonKind::Updated { ok: false }, Some(failed)),
            "prod",
        );
        assert_eq!(
            n.subject,
            "[prod] FAILED: add-on prod-eks/vpc-cni update failed: ConfigurationConflict"
        );
        assert_eq!(n.severity, Severity::Error);
    }

    #[test]
    fn an_event_naming_no_addon_is_still_told_with_what_it_says() {
        let e = AddonEvent {
            addon: None,
            ..event(AddonKind::Degraded, None)
        };
        let n = render(&e, "prod");
        assert_eq!(n.subject, "[prod] Add-on (not named) degraded");
        assert!(
            n.body
                .starts_with("EKS says an add-on is degraded, but the event names none"),
            "{}",
            n.body
        );
    }

    use crate::fakes::*;
    use crate::pipeline::handle_batch;

    #[tokio::test]
    async fn a_degraded_addon_event_is_one_message_from_describe_addon() {
        let mut p = ports();
        p.eks.addons.insert("prod-eks/vpc-cni".into(), degraded());
        let sample = sample!("addon-health-degraded.json");
        // Twice in a batch (EventBridge delivers at least once, here under two ids): one message.
        let again = sample.replace("f6a7b8c9-0001", "f6a7b8c9-0002");
        let r = handle_batch(batch(&[sample, &again]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.coalesced), (1, 1), "{r:?}");
        let n = &p.notifiers.all.sent()[0];
        assert_eq!(
            n.subject,
            "[prod] Add-on prod-eks/vpc-cni degraded: InsufficientNumberOfReplicas"
        );
        assert_eq!(
            (
                n.attributes["cluster"].as_str(),
                n.attributes["addon"].as_str()
            ),
            ("prod-eks", "vpc-cni")
        );
        assert_eq!(
            *p.eks.addons_described.lock().unwrap(),
            ["prod-eks/vpc-cni"]
        );
    }

    #[tokio::test]
    async fn when_eks_cannot_be_asked_the_addon_message_still_goes_out_saying_so() {
        let mut p = ports();
        p.eks.down = true;
        let n = {
            let r = handle_batch(
                batch(&[sample!("addon-health-degraded.json")]),
                &config(&[]),
                &p,
            )
            .await
            .unwrap();
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
            p.notifiers.all.sent().remove(0)
        };
        assert_eq!(n.subject, "[prod] Add-on prod-eks/vpc-cni degraded");
        assert!(
            n.body
                .contains("Now:     not known: EKS could not be asked"),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Warning);
    }
}
