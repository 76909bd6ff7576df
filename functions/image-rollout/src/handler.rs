//! Push event in, Deployments rolled, report out. The only place that knows the event shape.

use std::fmt::Write;
use std::time::Duration;

use bridgekeeper::cluster::ClusterError;
use bridgekeeper::events::{ECR_IMAGE_ACTION, EcrActionType, EcrImageActionEvent, EcrResult};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::{Notification, Notifier, Severity};
use bridgekeeper::{Class, Error};
use futures::stream::{self, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::domain::{self, Decision, Progress, Push, Rollout, Strategy, Target};
use crate::kube::Kube;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rolled {
    pub namespace: String,
    pub name: String,
    pub strategy: Strategy,
    pub containers: Vec<String>,
    /// `None` in a dry run or when watching is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub namespace: String,
    pub name: String,
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
    fn new(cluster: &str) -> Self {
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
    pub push: Push,
    pub dry_run: bool,
    /// Why nothing was done, when nothing was to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    pub clusters: Vec<ClusterReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
}

/// The push, or why there is nothing to roll.
fn read_event(event: serde_json::Value) -> Result<(Push, Option<String>), Error> {
    let envelope: Envelope = serde_json::from_value(event.clone())
        .map_err(|e| Error::invalid_event(format!("expected an EventBridge event object: {e}")))?;
    let kind = (
        envelope.source.unwrap_or_default(),
        envelope.detail_type.unwrap_or_default(),
    );
    if (kind.0.as_str(), kind.1.as_str()) != ECR_IMAGE_ACTION {
        return Err(Error::invalid_event(format!(
            "source {:?}, detail-type {:?} is not handled: expected an ECR Image Action event",
            kind.0, kind.1
        )));
    }
    let e: EcrImageActionEvent = serde_json::from_value(event)
        .map_err(|e| Error::invalid_event(format!("malformed ECR Image Action event: {e}")))?;
    let (account, region) = match (e.account.as_deref(), e.region.as_deref()) {
        (Some(a), Some(r)) if !a.is_empty() && !r.is_empty() => (a, r),
        _ => {
            return Err(Error::invalid_event(
                "ECR Image Action event without account or region",
            ));
        }
    };
    let d = e.detail;
    let push = Push {
        registry: Push::ecr_registry(account, region),
        repository: d.repository_name.clone(),
        tag: d.image_tag.clone().filter(|t| !t.is_empty()),
        digest: d.image_digest.clone().unwrap_or_default(),
    };
    let ignored = if !d.action_type.is(EcrActionType::Push) {
        Some(format!(
            "action-type {} is not a push",
            d.action_type.text()
        ))
    } else if !d.result.is(EcrResult::Success) {
        Some(format!(
            "the push did not succeed (result {})",
            d.result.text()
        ))
    } else if push.digest.is_empty() {
        return Err(Error::invalid_event("ECR push event without image-digest"));
    } else {
        None
    };
    Ok((push, ignored))
}

pub async fn handle<K: Kube, N: Notifier>(
    event: serde_json::Value,
    config: &Config,
    kube: &K,
    notifier: &N,
) -> Result<Response, Error> {
    let (push, ignored) = read_event(event)?;
    let mut response = Response {
        push,
        dry_run: config.dry_run,
        ignored,
        clusters: vec![],
        notification: None,
    };
    if response.ignored.is_some() {
        info!(reason = ?response.ignored, "event ignored");
        return Ok(response);
    }
    let targets = domain::targets(&config.rules, &response.push);
    if targets.is_empty() {
        let tag = response.push.tag.as_deref().unwrap_or("latest");
        response.ignored = Some(format!(
            "no rule matches {}:{tag}",
            response.push.repository
        ));
        info!(reason = ?response.ignored, "nothing to roll");
        return Ok(response);
    }
    for target in &targets {
        response
            .clusters
            .push(roll_cluster(target, &response.push, config, kube).await);
    }

    let mut metrics = Metrics::new(crate::FUNCTION);
    let count =
        |f: fn(&ClusterReport) -> usize| response.clusters.iter().map(f).sum::<usize>() as u64;
    metrics
        .count(
            "DeploymentsRolled",
            if config.dry_run {
                0
            } else {
                count(|c| c.rolled.len())
            },
        )
        .count("DeploymentsSkipped", count(|c| c.skipped.len()))
        .count("DeploymentsFailed", count(|c| c.failed.len()))
        .count("ClustersFailed", count(|c| usize::from(c.error.is_some())));
    metrics.flush();

    if let Some(n) = notification(&response, &config.environment) {
        response.notification = Some(notifier.notify(&n).await?);
    }
    // An unreachable cluster is worth another try: the redelivery skips what is already rolled.
    if let Some(c) = response.clusters.iter().find(|c| c.retryable) {
        return Err(Error::Transient(format!(
            "cluster {}: {}",
            c.cluster,
            c.error.clone().unwrap_or_default()
        )));
    }
    Ok(response)
}

fn key(d: &Deployment) -> (String, String) {
    (
        d.metadata.namespace.clone().unwrap_or_default(),
        d.metadata.name.clone().unwrap_or_default(),
    )
}

async fn list<K: Kube>(kube: &K, target: &Target) -> Result<Vec<Deployment>, ClusterError> {
    match &target.namespaces {
        None => kube.list(&target.cluster, None).await,
        Some(namespaces) => {
            let mut all = Vec::new();
            for ns in namespaces {
                all.extend(kube.list(&target.cluster, Some(ns)).await?);
            }
            Ok(all)
        }
    }
}

async fn roll_cluster<K: Kube>(
    target: &Target,
    push: &Push,
    config: &Config,
    kube: &K,
) -> ClusterReport {
    let mut report = ClusterReport::new(&target.cluster);
    let deployments = match list(kube, target).await {
        Ok(d) => d,
        Err(e) => {
            warn!(cluster = %target.cluster, error = %e, "cluster failed");
            report.retryable = e.class() == Class::Retryable;
            report.error = Some(bridgekeeper::error::chain(&e));
            return report;
        }
    };
    let now = chrono::Utc::now();
    let mut to_roll = Vec::new();
    for d in deployments {
        let (namespace, name) = key(&d);
        match domain::decide(&d, push, config.mode, target.strategy, now) {
            Decision::Unrelated => {}
            Decision::Skip(reason) => report.skipped.push(Skipped {
                namespace,
                name,
                reason,
            }),
            Decision::Roll(rollout) => to_roll.push((d, rollout)),
        }
    }
    if config.dry_run {
        report.rolled = to_roll
            .into_iter()
            .map(|(d, r)| rolled(&d, &r, target.strategy, None))
            .collect();
        return report;
    }
    // Bounded fan-out: at most `max_concurrent` patches (and watches) in flight.
    let results: Vec<_> = stream::iter(to_roll)
        .map(|(d, rollout)| roll_one(kube, target, push, config, d, rollout))
        .buffer_unordered(config.max_concurrent)
        .collect()
        .await;
    for r in results {
        match r {
            Outcome::Rolled(r) => report.rolled.push(r),
            Outcome::Skipped(s) => report.skipped.push(s),
            Outcome::Failed(f) => report.failed.push(f),
        }
    }
    let order = |a: &String, b: &String, c: &String, d: &String| (a, b).cmp(&(c, d));
    report
        .rolled
        .sort_by(|a, b| order(&a.namespace, &a.name, &b.namespace, &b.name));
    report
        .skipped
        .sort_by(|a, b| order(&a.namespace, &a.name, &b.namespace, &b.name));
    report
        .failed
        .sort_by(|a, b| order(&a.namespace, &a.name, &b.namespace, &b.name));
    report
}

fn rolled(d: &Deployment, r: &Rollout, strategy: Strategy, progress: Option<Progress>) -> Rolled {
    let (namespace, name) = key(d);
    Rolled {
        namespace,
        name,
        strategy,
        containers: r.containers().iter().map(|c| c.name.clone()).collect(),
        progress,
    }
}

enum Outcome {
    Rolled(Rolled),
    Skipped(Skipped),
    Failed(Failed),
}

/// How often a conflicting write (409) is re-read and re-planned before giving up.
const CONFLICT_ATTEMPTS: usize = 3;

async fn roll_one<K: Kube>(
    kube: &K,
    target: &Target,
    push: &Push,
    config: &Config,
    mut d: Deployment,
    mut rollout: Rollout,
) -> Outcome {
    let (namespace, name) = key(&d);
    let failed = |error: String| {
        Outcome::Failed(Failed {
            namespace: namespace.clone(),
            name: name.clone(),
            error,
        })
    };
    let mut attempt = 1;
    let patched = loop {
        match kube
            .patch(&target.cluster, &namespace, &name, &rollout.patch(&d, push))
            .await
        {
            Ok(p) => break p,
            Err(e) if e.status() == Some(409) && attempt < CONFLICT_ATTEMPTS => {
                attempt += 1;
                d = match kube.get(&target.cluster, &namespace, &name).await {
                    Ok(fresh) => fresh,
                    Err(e) => return failed(bridgekeeper::error::chain(&e)),
                };
                match domain::decide(&d, push, config.mode, target.strategy, chrono::Utc::now()) {
                    Decision::Roll(r) => rollout = r,
                    Decision::Skip(reason) => {
                        return Outcome::Skipped(Skipped {
                            namespace,
                            name,
                            reason,
                        });
                    }
                    Decision::Unrelated => {
                        let reason = "no longer runs the image".to_owned();
                        return Outcome::Skipped(Skipped {
                            namespace,
                            name,
                            reason,
                        });
                    }
                }
            }
            Err(e) => return failed(bridgekeeper::error::chain(&e)),
        }
    };
    info!(cluster = %target.cluster, namespace = %namespace, deployment = %name, strategy = ?target.strategy, digest = %push.digest, "deployment rolled");
    let progress = if config.watch {
        Some(
            watch(
                kube,
                &target.cluster,
                patched,
                config.watch_timeout,
                config.poll_interval,
            )
            .await,
        )
    } else {
        None
    };
    Outcome::Rolled(rolled(&d, &rollout, target.strategy, progress))
}

/// Polls until the rollout finishes, fails, or the timeout passes.
async fn watch<K: Kube>(
    kube: &K,
    cluster: &str,
    mut d: Deployment,
    timeout: Duration,
    interval: Duration,
) -> Progress {
    let deadline = tokio::time::Instant::now() + timeout;
    let (namespace, name) = key(&d);
    loop {
        let p = domain::progress(&d);
        if !matches!(p, Progress::Progressing(_))
            || tokio::time::Instant::now() + interval > deadline
        {
            return p;
        }
        tokio::time::sleep(interval).await;
        match kube.get(cluster, &namespace, &name).await {
            Ok(fresh) => d = fresh,
            Err(e) => return Progress::Progressing(format!("could not read it back: {e}")),
        }
    }
}

/// One message per push that changed something or failed.
pub fn notification(r: &Response, environment: &str) -> Option<Notification> {
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
    let tag = r.push.tag.as_deref().unwrap_or("latest");
    let clusters: Vec<&str> = r
        .clusters
        .iter()
        .filter(|c| !c.rolled.is_empty() || c.error.is_some() || !c.failed.is_empty())
        .map(|c| c.cluster.as_str())
        .collect();
    let mut subject = format!(
        "[{environment}] {}:{tag} ({}) rolled to {rolled} Deployment{} in {}",
        r.push.repository,
        r.push.short_digest(),
        if rolled == 1 { "" } else { "s" },
        clusters.join(", ")
    );
    if failed + not_done > 0 {
        subject.push_str(&format!(", {} failed", failed + not_done));
    }
    let mut body = format!(
        "{}/{}:{tag} was pushed as {}.\n",
        r.push.registry, r.push.repository, r.push.digest
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
                "  rolled  {}/{} [{}]{state}",
                x.namespace,
                x.name,
                x.containers.join(", ")
            );
        }
        for x in &c.failed {
            let _ = writeln!(body, "  FAILED  {}/{}: {}", x.namespace, x.name, x.error);
        }
        for x in &c.skipped {
            let _ = writeln!(body, "  skipped {}/{}: {}", x.namespace, x.name, x.reason);
        }
    }
    let severity = if failed + not_done > 0 {
        Severity::Error
    } else {
        Severity::Info
    };
    Some(
        Notification::new(subject, body.trim_end().to_owned(), severity)
            .attribute("repository", r.push.repository.clone())
            .attribute("tag", tag.to_owned())
            .attribute("cluster", clusters.join(",")),
    )
}
