//! Rolling a cluster's workloads to a push: which to patch, the guarded JSON patch, the
//! re-read and re-plan when the workload changed meanwhile, the bounded retry of a patch the
//! API server did not take, and the watch that follows. The push path and the reconcile share
//! it.

use std::time::Duration;

use bridgekeeper::Class;
use bridgekeeper::cluster::ClusterError;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::config::Config;
use crate::domain::{self, Decision, Push, Rollout, Strategy, Target};
use bridgekeeper::cluster::in_namespaces;

use crate::health::Progress;
use crate::kube::Kube;
use crate::registry::Registry;
use crate::report::{ClusterReport, Failed, Rolled, Skipped};
use crate::workload::Workload;

/// The target's workloads, in its rule's namespaces or all.
pub async fn list<K: Kube>(kube: &K, target: &Target) -> Result<Vec<Workload>, ClusterError> {
    let namespaces = target.namespaces.as_deref().unwrap_or_default();
    let (listed, done) = in_namespaces(namespaces, |ns| kube.list(&target.cluster, ns)).await;
    done.map(|()| listed)
}

pub async fn roll_cluster<K: Kube, R: Registry>(
    target: &Target,
    push: &Push,
    ctx: &Rolling<'_, K, R>,
) -> ClusterReport {
    let listed = match tokio::time::timeout_at(ctx.report_by, list(ctx.kube, target)).await {
        Ok(listed) => listed,
        Err(_) => {
            let mut report = ClusterReport::new(&target.cluster);
            report.retryable = true;
            report.error = Some(DEADLINE.into());
            return report;
        }
    };
    match listed {
        Ok(deployments) => roll_listed(target, push, ctx, deployments).await,
        Err(e) => {
            warn!(cluster = %target.cluster, error = %e, "cluster failed");
            let mut report = ClusterReport::new(&target.cluster);
            report.retryable = e.class() == Class::Retryable;
            report.error = Some(e.to_string());
            report
        }
    }
}

/// Rolls the workloads of one cluster, already listed, that run the pushed image.
pub async fn roll_listed<K: Kube, R: Registry>(
    target: &Target,
    push: &Push,
    ctx: &Rolling<'_, K, R>,
    deployments: Vec<Workload>,
) -> ClusterReport {
    let (config, kube) = (ctx.config, ctx.kube);
    let mut report = ClusterReport::new(&target.cluster);
    let now = chrono::Utc::now();
    let mut to_roll = Vec::new();
    for d in deployments {
        let (namespace, _) = d.key();
        let decision = match domain::decide(&d, push, config.mode, target.strategy, now) {
            Decision::Roll(r) => match domain::system_namespace(&namespace, target) {
                Some(why) => Decision::Skip(why),
                None => Decision::Roll(r),
            },
            other => other,
        };
        match decision {
            Decision::Unrelated => {}
            Decision::Skip(reason) => report.skipped.push(Skipped {
                workload: d.reference(),
                reason,
            }),
            Decision::Roll(rollout) => to_roll.push((d, rollout)),
        }
    }
    if config.dry_run {
        report.rolled = to_roll
            .into_iter()
            .map(|(d, r)| rolled(&d, &r, push, target.strategy, None))
            .collect();
        return report;
    }
    // Bounded fan-out: at most `max_concurrent` patches in flight; the watches come after, so
    // a slow rollout never holds a patch slot.
    let results: Vec<_> = stream::iter(to_roll)
        .map(|(d, rollout)| roll_one(ctx, target, push, d, rollout))
        .buffer_unordered(config.max_concurrent)
        .collect()
        .await;
    let mut patched = Vec::new();
    for r in results {
        match r {
            Outcome::Rolled(r, d) => patched.push((r, d)),
            Outcome::Skipped(s) => report.skipped.push(s),
            Outcome::Failed(f) => report.failed.push(f),
        }
    }
    report.rolled = stream::iter(patched)
        .map(|(mut r, d)| async move {
            (r.progress, r.rolled_back) =
                crate::watch::follow(kube, &target.cluster, push, config, *d, ctx.until).await;
            r
        })
        .buffer_unordered(crate::watch::WATCH_CONCURRENCY)
        .collect()
        .await;
    report
        .rolled
        .sort_by(|a, b| a.workload.place().cmp(&b.workload.place()));
    report
        .skipped
        .sort_by(|a, b| a.workload.place().cmp(&b.workload.place()));
    report
        .failed
        .sort_by(|a, b| a.workload.place().cmp(&b.workload.place()));
    report
}

fn rolled(
    d: &Workload,
    r: &Rollout,
    push: &Push,
    strategy: Strategy,
    progress: Option<Progress>,
) -> Rolled {
    Rolled {
        workload: d.reference(),
        image: push.pinned_image(),
        strategy,
        containers: r.containers().iter().map(|c| c.name.clone()).collect(),
        progress,
        rolled_back: None,
    }
}

enum Outcome {
    /// Patched; the workload as the API server returned it, to watch.
    Rolled(Rolled, Box<Workload>),
    Skipped(Skipped),
    Failed(Failed),
}

/// What a rollout works with: the adapters, and the two moments it must respect (watches end
/// at `until`; every call ends by `report_by`, so the run always reports).
pub struct Rolling<'a, K, R> {
    pub config: &'a Config,
    pub kube: &'a K,
    pub registry: &'a R,
    pub until: Option<tokio::time::Instant>,
    pub report_by: tokio::time::Instant,
}

/// What a cluster or workload that did not answer in time is reported as.
const DEADLINE: &str = "no answer before the invocation's deadline (less the time kept to report)";

/// How often a conflicting write is re-read and re-planned before giving up.
const CONFLICT_ATTEMPTS: usize = 3;
/// How often a patch that met throttling, a server error or a timeout is sent again.
const TRANSIENT_ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(500);

/// The API server changed under us: a 409 (resourceVersion) or a 422 from a failed JSON-patch
/// `test` op (what a real API server answers; kmock says 500). Re-read and re-plan.
fn is_conflict(e: &ClusterError) -> bool {
    matches!(e.status(), Some(409 | 422))
}

/// Worth the same patch again after a pause: throttled (429), a server error, or no answer.
fn is_transient(e: &ClusterError) -> bool {
    match e.status() {
        Some(s) => s == 429 || (500..600).contains(&s),
        None => e.class() == Class::Retryable,
    }
}

async fn roll_one<K: Kube, R: Registry>(
    ctx: &Rolling<'_, K, R>,
    target: &Target,
    push: &Push,
    mut d: Workload,
    mut rollout: Rollout,
) -> Outcome {
    let (config, kube, registry, report_by) = (ctx.config, ctx.kube, ctx.registry, ctx.report_by);
    let workload = d.reference();
    let (kind, namespace, name) = (
        workload.kind,
        workload.namespace.clone(),
        workload.name.clone(),
    );
    let failed = |error: String| {
        Outcome::Failed(Failed {
            workload: workload.clone(),
            error,
        })
    };
    let (mut conflicts, mut transients) = (1, 0);
    let patched = loop {
        let ops = rollout.patch(&d, push);
        let patch = kube.patch(&target.cluster, kind, &namespace, &name, &ops);
        // Whatever the API server does, the run ends in time to report what it did.
        let Ok(answer) = tokio::time::timeout_at(report_by, patch).await else {
            return failed(DEADLINE.into());
        };
        match answer {
            Ok(p) => break p,
            Err(e) if is_conflict(&e) && conflicts < CONFLICT_ATTEMPTS => {
                conflicts += 1;
                // Someone wrote the workload since it was read, perhaps another push of this tag:
                // the digest is confirmed again before anything is re-planned.
                match registry.current_digest_of(push).await {
                    Ok(Some(now)) if now == push.digest => {}
                    Ok(now) => {
                        let now = now.as_deref().unwrap_or("nothing (the tag was deleted)");
                        return Outcome::Skipped(Skipped {
                            workload,
                            reason: format!(
                                "changed while it was being rolled, and {}:{} now points at {now}: \
                                 superseded",
                                push.repository, push.tag
                            ),
                        });
                    }
                    Err(e) => {
                        return failed(format!(
                            "changed while it was being rolled, and ECR could not confirm the \
                             digest again: {e}"
                        ));
                    }
                }
                let get = kube.get(&target.cluster, kind, &namespace, &name);
                d = match tokio::time::timeout_at(report_by, get).await {
                    Ok(Ok(fresh)) => fresh,
                    Ok(Err(e)) => return failed(e.to_string()),
                    Err(_) => return failed(DEADLINE.into()),
                };
                match domain::decide(&d, push, config.mode, target.strategy, chrono::Utc::now()) {
                    Decision::Roll(r) => rollout = r,
                    Decision::Skip(reason) => {
                        return Outcome::Skipped(Skipped { workload, reason });
                    }
                    Decision::Unrelated => {
                        let reason = "no longer runs the image".to_owned();
                        return Outcome::Skipped(Skipped { workload, reason });
                    }
                }
            }
            // The one retry layer for Kubernetes calls (kube's own is off): a few attempts,
            // seconds apart, never past the report deadline; Retry-After is not obeyed.
            Err(e) if is_transient(&e) && transients < TRANSIENT_ATTEMPTS => {
                warn!(cluster = %target.cluster, namespace = %namespace, deployment = %name, error = %e, "patch not taken; trying again");
                let pause = tokio::time::Instant::now() + BACKOFF * 2u32.pow(transients);
                if pause >= report_by {
                    return failed(e.to_string());
                }
                tokio::time::sleep_until(pause).await;
                transients += 1;
            }
            Err(e) => return failed(e.to_string()),
        }
    };
    info!(cluster = %target.cluster, namespace = %namespace, deployment = %name, strategy = ?target.strategy, digest = %push.digest, "deployment rolled");
    Outcome::Rolled(
        rolled(&d, &rollout, push, target.strategy, None),
        Box::new(patched),
    )
}
