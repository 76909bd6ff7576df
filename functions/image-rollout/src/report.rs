//! What a run did, and the words for it: the outcome types a push or a reconcile returns, and
//! every notification image-rollout sends.

use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use serde::Serialize;

use crate::domain::{Push, Strategy};
use crate::health::Progress;
use crate::workload::{Kind, WorkloadRef};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rolled {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    /// The image it was rolled to (pinned), or restarted for.
    pub image: String,
    pub strategy: Strategy,
    pub containers: Vec<String>,
    /// `None` in a dry run or when watching is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// What `ROLLBACK_ON_FAILURE` did after a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterReport {
    pub cluster: String,
    pub rolled: Vec<Rolled>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
    /// The cluster could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub retryable: bool,
}

impl ClusterReport {
    pub fn new(cluster: &str) -> Self {
        ClusterReport {
            cluster: cluster.to_owned(),
            rolled: vec![],
            skipped: vec![],
            failed: vec![],
            error: None,
            retryable: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// `None` when the event was not a push of a runnable, tagged image.
    pub push: Option<Push>,
    pub dry_run: bool,
    /// Why nothing was done, when nothing was to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The tag has moved on since this push: the digest ECR has for it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    pub clusters: Vec<ClusterReport>,
    /// The scheduled reconcile: every followed tag and the digest ECR has for it now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

/// One followed tag, as ECR answered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCheck {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    /// What the tag points at now; `None` when it no longer exists or could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// "3 Deployments" when they all are, "3 workloads" when the kinds mix.
pub fn counted(kinds: impl Iterator<Item = Kind>) -> String {
    let kinds: Vec<Kind> = kinds.collect();
    let n = kinds.len();
    let noun = match kinds.first() {
        Some(k) if kinds.iter().all(|x| x == k) => k.as_str().to_owned(),
        _ => "workload".to_owned(),
    };
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// One message per push that changed something or failed.
pub fn notification(r: &Response, push: &Push, environment: &str) -> Option<Notification> {
    if r.dry_run {
        return None;
    }
    let rolled: usize = r.clusters.iter().map(|c| c.rolled.len()).sum();
    let failed: usize = r
        .clusters
        .iter()
        .map(|c| c.failed.len() + usize::from(c.error.is_some()))
        .sum();
    let not_done = r
        .clusters
        .iter()
        .flat_map(|c| &c.rolled)
        .filter(|x| matches!(x.progress, Some(Progress::Failed(_))))
        .count();
    if rolled == 0 && failed == 0 {
        return None;
    }
    let tag = push.tag.as_str();
    let clusters: Vec<&str> = r
        .clusters
        .iter()
        .filter(|c| !c.rolled.is_empty() || c.error.is_some() || !c.failed.is_empty())
        .map(|c| c.cluster.as_str())
        .collect();
    let mut subject = format!(
        "[{environment}] {}:{tag} ({}) rolled to {} in {}",
        push.repository,
        push.short_digest(),
        counted(
            r.clusters
                .iter()
                .flat_map(|c| &c.rolled)
                .map(|x| x.workload.kind)
        ),
        clusters.join(", ")
    );
    if failed + not_done > 0 {
        subject.push_str(&format!(", {} failed", failed + not_done));
    }
    let mut body = format!(
        "{}/{}:{tag} was pushed as {}.\n",
        push.registry, push.repository, push.digest
    );
    for c in &r.clusters {
        let _ = writeln!(body, "\nCluster {}:", c.cluster);
        if let Some(e) = &c.error {
            let _ = writeln!(body, "  could not be reached: {e}");
        }
        for x in &c.rolled {
            let state = x
                .progress
                .as_ref()
                .map(|p| format!(" — {p}"))
                .unwrap_or_default();
            let _ = writeln!(
                body,
                "  rolled  {} [{}]{state}",
                x.workload.label(),
                x.containers.join(", ")
            );
        }
        for x in c.rolled.iter().filter(|x| x.rolled_back.is_some()) {
            let what = x.rolled_back.as_deref().unwrap_or_default();
            let _ = writeln!(body, "  ROLLBACK {}: {what}", x.workload.label());
        }
        for x in &c.failed {
            let _ = writeln!(body, "  FAILED  {}: {}", x.workload.label(), x.error);
        }
        for x in &c.skipped {
            let _ = writeln!(body, "  skipped {}: {}", x.workload.label(), x.reason);
        }
    }
    let severity = if failed + not_done > 0 {
        Severity::Error
    } else {
        Severity::Info
    };
    Some(
        Notification::new(subject, body.trim_end().to_owned(), severity)
            .attribute("repository", push.repository.clone())
            .attribute("tag", tag.to_owned())
            .array_attribute("cluster", clusters),
    )
}

/// A message only when the reconcile caught something up or failed to.
pub fn reconcile_notification(
    clusters: &[ClusterReport],
    environment: &str,
    dry_run: bool,
) -> Option<Notification> {
    let rolled: usize = clusters.iter().map(|c| c.rolled.len()).sum();
    let failed: usize = clusters.iter().map(|c| c.failed.len()).sum();
    if dry_run || rolled + failed == 0 {
        return None;
    }
    let names: Vec<&str> = clusters
        .iter()
        .filter(|c| !c.rolled.is_empty() || !c.failed.is_empty())
        .map(|c| c.cluster.as_str())
        .collect();
    let mut subject = format!(
        "[{environment}] image reconcile: {} caught up in {}",
        counted(
            clusters
                .iter()
                .flat_map(|c| &c.rolled)
                .map(|x| x.workload.kind)
        ),
        names.join(", ")
    );
    if failed > 0 {
        let _ = write!(subject, ", {failed} failed");
    }
    let mut body = String::from(
        "These workloads were not on their tag's current image (a push event was missed or failed):\n",
    );
    for c in clusters {
        for x in &c.rolled {
            let what = x.workload.label();
            let _ = writeln!(body, "  {}: rolled {what} to {}", c.cluster, x.image);
        }
        for x in &c.failed {
            let what = x.workload.label();
            let _ = writeln!(body, "  {}: FAILED {what}: {}", c.cluster, x.error);
        }
    }
    let severity = if failed > 0 {
        Severity::Error
    } else {
        Severity::Warning
    };
    Some(
        Notification::new(subject, body.trim_end().to_owned(), severity)
            .array_attribute("cluster", names),
    )
}
