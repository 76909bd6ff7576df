//! What a run did, and the words for it: the outcome types a push or a reconcile returns, and
//! every notification image-rollout sends.

use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use serde::Serialize;

use crate::domain::Strategy;
use crate::health::Progress;
use crate::image::Push;
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
    /// Left alone for a person to act on (a GitOps controller owns it, or its image was set
    /// back after Bridgekeeper pinned it): the push's report goes out for it even when nothing
    /// was rolled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Held, and named in an earlier message (`held.rs`): not named again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub told_before: bool,
}

impl Skipped {
    /// Not rolled, for `reason`: nothing for a person to do.
    pub fn skip(workload: WorkloadRef, reason: impl Into<String>) -> Self {
        Skipped {
            workload,
            reason: reason.into(),
            held: false,
            told_before: false,
        }
    }

    /// Left for a person: `reason` says who owns it and what to do instead.
    pub fn hold(workload: WorkloadRef, reason: impl Into<String>) -> Self {
        Skipped {
            held: true,
            ..Skipped::skip(workload, reason)
        }
    }
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
    let held = r
        .clusters
        .iter()
        .flat_map(|c| &c.skipped)
        .filter(|x| x.held && !x.told_before)
        .count();
    if rolled == 0 && failed == 0 && held == 0 {
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
    if rolled == 0 && failed == 0 {
        subject = format!(
            "[{environment}] {}:{tag} ({}) not rolled: {held} left for a person",
            push.repository,
            push.short_digest()
        );
    } else if held > 0 {
        let _ = write!(subject, ", {held} left for a person");
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
        for x in c.skipped.iter().filter(|x| !x.told_before) {
            let _ = writeln!(body, "  skipped {}: {}", x.workload.label(), x.reason);
        }
        let told = c.skipped.iter().filter(|x| x.told_before).count();
        if told > 0 {
            let _ = writeln!(
                body,
                "  {told} more left for a person, named in an earlier message"
            );
        }
    }
    let severity = if failed + not_done > 0 {
        Severity::Error
    } else {
        Severity::Info
    };
    let mut n = Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("repository", push.repository.clone())
        .attribute("tag", tag.to_owned())
        .array_attribute("cluster", clusters)
        // A tag's pushes are one story in chat: each rollout lands in the tag's thread.
        .thread(format!("image/{}:{tag}", push.repository))
        .event_type("ImageRollout")
        .keyword(push.repository.clone())
        .keyword(tag.to_owned())
        .related(format!(
            "{}/{}@{}",
            push.registry, push.repository, push.digest
        ));
    let rolled = r
        .clusters
        .iter()
        .flat_map(|c| c.rolled.iter().map(move |x| (c, x)));
    for (c, x) in rolled.take(2) {
        n = n.next_step(format!(
            "kubectl --context {} -n {} rollout status {} {}",
            c.cluster,
            x.workload.namespace,
            x.workload.kind.as_str().to_lowercase(),
            x.workload.name
        ));
    }
    Some(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> Push {
        Push {
            registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
            repository: "shop/api".into(),
            tag: "latest".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        }
    }

    fn workload(kind: Kind, namespace: &str, name: &str) -> WorkloadRef {
        WorkloadRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn rolled(kind: Kind, name: &str, progress: Option<Progress>) -> Rolled {
        Rolled {
            workload: workload(kind, "shop", name),
            image: push().pinned_image(),
            strategy: Strategy::PinDigest,
            containers: vec!["app".into()],
            progress,
            rolled_back: None,
        }
    }

    fn response(clusters: Vec<ClusterReport>) -> Response {
        Response {
            push: Some(push()),
            dry_run: false,
            ignored: None,
            superseded_by: None,
            clusters,
            images: vec![],
            notification: None,
        }
    }

    #[test]
    fn a_deployment_reads_as_its_place_and_other_kinds_name_their_kind() {
        assert_eq!(
            workload(Kind::Deployment, "shop", "api").label(),
            "shop/api"
        );
        assert_eq!(
            workload(Kind::StatefulSet, "shop", "db").label(),
            "StatefulSet shop/db"
        );
        assert_eq!(counted([Kind::CronJob].into_iter()), "1 CronJob");
        assert_eq!(
            counted([Kind::Deployment, Kind::Deployment].into_iter()),
            "2 Deployments"
        );
        assert_eq!(
            counted([Kind::Deployment, Kind::DaemonSet].into_iter()),
            "2 workloads"
        );
    }

    #[test]
    fn a_push_that_rolled_one_and_failed_one_says_both_and_is_an_error() {
        let mut dev = ClusterReport::new("dev");
        dev.rolled
            .push(rolled(Kind::Deployment, "api", Some(Progress::Succeeded)));
        dev.failed.push(Failed {
            workload: workload(Kind::StatefulSet, "shop", "db"),
            error: "forbidden".into(),
        });
        dev.skipped.push(Skipped::skip(
            workload(Kind::Deployment, "shop", "frozen"),
            "opted out",
        ));
        let mut prod = ClusterReport::new("prod");
        prod.error = Some("no answer within 10 s".into());
        let n = notification(&response(vec![dev, prod]), &push(), "dev").unwrap();
        assert_eq!(
            n.subject,
            "[dev] shop/api:latest (abababababab) rolled to 1 Deployment in dev, prod, 2 failed"
        );
        assert_eq!(
            n.body,
            format!(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:latest was pushed as sha256:{}.\n\n\
                 Cluster dev:\n  \
                 rolled  shop/api [app] — rolled out\n  \
                 FAILED  StatefulSet shop/db: forbidden\n  \
                 skipped shop/frozen: opted out\n\n\
                 Cluster prod:\n  \
                 could not be reached: no answer within 10 s",
                "ab".repeat(32)
            )
        );
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(n.attributes["repository"], "shop/api");
        // Chat: the tag's thread, and what to watch next.
        assert_eq!(n.chat.thread.as_deref(), Some("image/shop/api:latest"));
        assert_eq!(
            n.chat.next_steps,
            ["kubectl --context dev -n shop rollout status deployment api"]
        );
    }

    #[test]
    fn a_push_that_rolled_nothing_but_left_a_workload_for_a_person_says_so() {
        let mut dev = ClusterReport::new("dev");
        dev.skipped.push(Skipped::hold(
            workload(Kind::Deployment, "shop", "api"),
            "managed by Argo CD application shop-prod: ...",
        ));
        let n = notification(&response(vec![dev]), &push(), "dev").unwrap();
        assert!(
            n.subject.contains("not rolled: 1 left for a person"),
            "{}",
            n.subject
        );
        assert!(
            n.body.contains("managed by Argo CD application shop-prod"),
            "{}",
            n.body
        );
    }

    #[test]
    fn a_dry_run_or_a_push_that_changed_nothing_sends_nothing() {
        let mut dev = ClusterReport::new("dev");
        dev.skipped.push(Skipped::skip(
            workload(Kind::Deployment, "shop", "frozen"),
            "opted out",
        ));
        assert!(notification(&response(vec![dev.clone()]), &push(), "dev").is_none());
        dev.rolled.push(rolled(Kind::Deployment, "api", None));
        let mut dry = response(vec![dev]);
        dry.dry_run = true;
        assert!(notification(&dry, &push(), "dev").is_none());
    }

    #[test]
    fn a_rollout_that_did_not_become_ready_counts_as_failed() {
        let mut dev = ClusterReport::new("dev");
        let stuck = Progress::Failed("ImagePullBackOff".into());
        dev.rolled
            .push(rolled(Kind::Deployment, "api", Some(stuck)));
        let n = notification(&response(vec![dev]), &push(), "dev").unwrap();
        assert!(n.subject.ends_with("in dev, 1 failed"), "{}", n.subject);
        assert_eq!(n.severity, Severity::Error);
    }

    #[test]
    fn the_reconcile_speaks_only_when_it_caught_up_or_failed() {
        let mut dev = ClusterReport::new("dev");
        assert!(reconcile_notification(std::slice::from_ref(&dev), "dev", false).is_none());
        dev.rolled.push(rolled(Kind::Deployment, "api", None));
        assert!(reconcile_notification(std::slice::from_ref(&dev), "dev", true).is_none());
        let n = reconcile_notification(&[dev], "dev", false).unwrap();
        assert_eq!(
            n.subject,
            "[dev] image reconcile: 1 Deployment caught up in dev"
        );
        assert_eq!(
            n.body,
            format!(
                "These workloads were not on their tag's current image (a push event was missed or failed):\n  \
                 dev: rolled shop/api to {}",
                push().pinned_image()
            )
        );
        assert_eq!(n.severity, Severity::Warning);
    }
}
