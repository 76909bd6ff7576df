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
use crate::domain::{self, Decision, Rollout, Strategy, Target};
use crate::image::Push;
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
        let how = (config.mode, target.strategy, target.bump.as_ref());
        let decision = match domain::decide_for(&d, push, how, now) {
            Decision::Roll(r) => match (
                domain::system_namespace(&namespace, target),
                crate::gitops::held(&d, target.gitops),
            ) {
                (Some(why), _) => Decision::Skip(why),
                (None, Some(owner)) => Decision::Hold(owner),
                (None, None) => Decision::Roll(r),
            },
            other => other,
        };
        match decision {
            Decision::Unrelated => {}
            Decision::Skip(reason) => report.skipped.push(Skipped::skip(d.reference(), reason)),
            Decision::Hold(reason) => report.skipped.push(Skipped::hold(d.reference(), reason)),
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
                        return Outcome::Skipped(Skipped::skip(
                            workload,
                            format!(
                                "changed while it was being rolled, and {}:{} now points at {now}: \
                                 superseded",
                                push.repository, push.tag
                            ),
                        ));
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
                let how = (config.mode, target.strategy, target.bump.as_ref());
                match domain::decide_for(&d, push, how, chrono::Utc::now()) {
                    Decision::Roll(r) => rollout = r,
                    Decision::Skip(reason) => {
                        return Outcome::Skipped(Skipped::skip(workload, reason));
                    }
                    Decision::Hold(reason) => {
                        return Outcome::Skipped(Skipped::hold(workload, reason));
                    }
                    Decision::Unrelated => {
                        return Outcome::Skipped(Skipped::skip(
                            workload,
                            "no longer runs the image",
                        ));
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use bridgekeeper::notify::testing::Recorder;
    use bridgekeeper::{Class, Classify};
    use serde_json::json;

    use crate::fakes::*;

    #[tokio::test]
    async fn dry_run_reports_the_plan_and_patches_nothing() {
        let (kube, n) = (world(), Recorder::default());
        let r = handle(
            event(PUSH_LATEST),
            &config(&[("DRY_RUN", "true")]),
            &kube,
            &FakeEcr::default(),
            &n,
        )
        .await
        .unwrap();
        assert_eq!(r.clusters[0].rolled.len(), 3);
        assert_eq!(kube.patches.load(Ordering::SeqCst), 0);
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn patches_fan_out_no_wider_than_configured() {
        let kube = FakeKube::default();
        for i in 0..20 {
            kube.add(
                "dev",
                "shop",
                &format!("d{i:02}"),
                &format!("{REGISTRY}/shop/api:latest"),
                json!({}),
            );
        }
        let n = Recorder::default();
        let r = handle(
            event(PUSH_LATEST),
            &config(&[("MAX_CONCURRENT_PATCHES", "3")]),
            &kube,
            &FakeEcr::default(),
            &n,
        )
        .await
        .unwrap();
        assert_eq!(r.clusters[0].rolled.len(), 20);
        let widest = kube.max_in_flight.load(Ordering::SeqCst);
        assert!((2..=3).contains(&widest), "{widest} patches at once");
    }

    /// The review's lost update: push A verified and listed, push B of the same tag rolled
    /// meanwhile, and A's patch (which tested only the container's name) moved production back
    /// to the older digest. The patch now tests the image it replaces; the 422 makes A ask ECR
    /// again, and A is superseded.
    #[tokio::test]
    async fn a_push_overtaken_while_rolling_never_moves_a_workload_back() {
        let kube = FakeKube::default();
        let latest = format!("{REGISTRY}/shop/api:latest");
        kube.add("dev", "shop", "api", &latest, json!({}));
        let b_image = format!("{REGISTRY}/shop/api@{NEWER}");
        *kube.raced_by.lock().unwrap() =
            Some(("dev".into(), "shop".into(), "api".into(), b_image.clone()));
        let ecr = FakeEcr::default();
        // A's digest when A is verified; B's once B has been pushed.
        ecr.answers
            .lock()
            .unwrap()
            .extend([Some(LATEST.to_owned()), Some(NEWER.to_owned())]);
        let n = Recorder::default();
        let r = handle(event(PUSH_LATEST), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(kube.image("dev", "shop", "api"), b_image);
        assert!(r.clusters[0].rolled.is_empty(), "{r:?}");
        assert!(
            r.clusters[0].skipped[0].reason.contains("superseded"),
            "{:?}",
            r.clusters[0].skipped
        );
    }

    /// The review's hanging cluster: nothing bounded the list or the patch, so the function
    /// slept until Lambda stopped it, with some workloads patched and no report. Now the other
    /// cluster rolls, the hanging one is reported, and the run returns before its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_cluster_that_never_answers_is_reported_and_the_run_ends_in_time() {
        let mut kube = world();
        kube.hanging = Some("prod");
        let cfg = config(&[(
            "ROLLOUT_RULES",
            r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev", "prod"]}]"#,
        )]);
        let n = Recorder::default();
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let started = tokio::time::Instant::now();
        let err = crate::handler::handle(
            event(PUSH_LATEST),
            deadline,
            &cfg,
            &kube,
            &FakeEcr::default(),
            &n,
            &bridgekeeper::idempotency::testing::Memory::default(),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(
            err.class(),
            Class::Retryable,
            "the hanging cluster is tried again"
        );
        let sent = n.sent();
        assert_eq!(
            sent.len(),
            1,
            "what was rolled is reported before the retry"
        );
        assert!(
            sent[0]
                .body
                .contains("no answer before the invocation's deadline"),
            "{}",
            sent[0].body
        );
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{LATEST}")
        );
    }

    #[tokio::test]
    async fn a_409_or_a_422_on_the_guard_is_re_read_re_planned_and_applied() {
        // 422 is what a real API server answers when a JSON-patch test op fails (kmock says 500).
        for status in [409, 422] {
            let kube = world();
            kube.patch_errors.lock().unwrap().push_back(status);
            let n = Recorder::default();
            let r = deliver(&kube, &n, PUSH_LATEST).await;
            assert_eq!(r.clusters[0].rolled.len(), 3, "{status}");
            assert!(r.clusters[0].failed.is_empty(), "{status}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_and_server_errors_are_retried_with_backoff_then_reported() {
        let kube = world();
        kube.patch_errors.lock().unwrap().extend([429, 503]);
        let n = Recorder::default();
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        assert_eq!(r.clusters[0].rolled.len(), 3, "{r:?}");
        // One Deployment whose patches keep failing: reported failed, after its retries.
        let kube = FakeKube::default();
        kube.add(
            "dev",
            "shop",
            "api",
            &format!("{REGISTRY}/shop/api:latest"),
            json!({}),
        );
        kube.patch_errors.lock().unwrap().extend([500; 4]);
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        assert_eq!(r.clusters[0].failed.len(), 1);
        assert!(r.clusters[0].failed[0].error.contains("500"), "{r:?}");
        assert!(
            kube.patch_errors.lock().unwrap().is_empty(),
            "1 try + 3 retries"
        );
    }

    /// The shipped defaults let any push of a tag a kube-system workload runs roll it.
    #[tokio::test]
    async fn a_system_namespace_is_rolled_only_when_a_rule_lists_it() {
        let kube = world();
        let latest = format!("{REGISTRY}/shop/api:latest");
        kube.add("dev", "kube-system", "agent", &latest, json!({}));
        let n = Recorder::default();
        let r = handle(
            event(PUSH_LATEST),
            &config(&[]),
            &kube,
            &FakeEcr::default(),
            &n,
        )
        .await
        .unwrap();
        let skipped = r.clusters[0]
            .skipped
            .iter()
            .find(|s| s.workload.namespace == "kube-system")
            .unwrap();
        assert!(skipped.reason.contains("system namespace"), "{skipped:?}");
        assert_eq!(kube.image("dev", "kube-system", "agent"), latest);
        let listed = config(&[(
            "ROLLOUT_RULES",
            r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev"], "namespaces": ["kube-system"]}]"#,
        )]);
        let r = handle(event(PUSH_LATEST), &listed, &kube, &FakeEcr::default(), &n)
            .await
            .unwrap();
        assert_eq!(r.clusters[0].rolled.len(), 1);
        assert_eq!(r.clusters[0].rolled[0].workload.namespace, "kube-system");
    }

    #[tokio::test]
    async fn statefulsets_daemonsets_and_cronjobs_roll_like_deployments() {
        let kube = FakeKube::default();
        let latest = format!("{REGISTRY}/shop/api:latest");
        let pod = |init: bool| {
            let c = json!([{"name": "app", "image": latest}]);
            if init {
                json!({"initContainers": [{"name": "migrate", "image": latest}], "containers": [{"name": "app", "image": "busybox"}]})
            } else {
                json!({"containers": c})
            }
        };
        kube.add_object("dev", json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "generation": 1},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {"spec": pod(false)}}}));
        kube.add_object("dev", json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "shop", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": pod(true)}}}));
        kube.add_object("dev", json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "report", "namespace": "shop", "generation": 1},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod(false)}}}}}));
        let n = Recorder::default();
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        let rolled: Vec<String> = r.clusters[0]
            .rolled
            .iter()
            .map(|x| format!("{} {} {:?}", x.workload.kind, x.workload.name, x.containers))
            .collect();
        assert_eq!(
            rolled,
            [
                "DaemonSet agent [\"migrate\"]",
                "StatefulSet db [\"app\"]",
                "CronJob report [\"app\"]"
            ]
        );
        let pinned = format!("{REGISTRY}/shop/api@{LATEST}");
        assert_eq!(kube.image("dev", "shop", "db"), pinned);
        assert_eq!(kube.image("dev", "shop", "report"), pinned);
        let agent =
            kube.objects.lock().unwrap()[&("dev".into(), "shop".into(), "agent".into())].clone();
        assert_eq!(
            agent["spec"]["template"]["spec"]["initContainers"][0]["image"],
            pinned.as_str()
        );
        assert_eq!(
            agent["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox"
        );
        assert!(
            n.sent()[0].subject.contains("rolled to 3 workloads"),
            "{}",
            n.sent()[0].subject
        );
        assert!(
            n.sent()[0]
                .body
                .contains("rolled  StatefulSet shop/db [app]"),
            "{}",
            n.sent()[0].body
        );
        // Delivered again: nothing moves.
        let patches = kube.patches.load(Ordering::SeqCst);
        deliver(&kube, &n, PUSH_LATEST).await;
        assert_eq!(kube.patches.load(Ordering::SeqCst), patches);
    }
}
