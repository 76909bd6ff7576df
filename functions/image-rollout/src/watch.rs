//! Following a rollout to its end, inside the invocation's own deadline: the Deployment's status
//! and what its new pods say, then (with `ROLLBACK_ON_FAILURE`) the previous images re-pinned.
//! Watches run after the patches, never holding a patch slot.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;
use crate::health::{self, Progress};
use crate::image::Push;
use crate::kube::Kube;
use crate::workload::Workload;

/// Kept back from the Lambda deadline to send the report: a function that times out must never
/// leave a rollout unreported.
pub const REPORT_MARGIN: Duration = Duration::from_secs(20);
/// Watches in flight at once (each a GET and a pod LIST per poll).
pub const WATCH_CONCURRENCY: usize = 16;

/// The last moment work may start and still leave time to report: the invocation's deadline
/// less the report margin.
pub fn report_by(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(REPORT_MARGIN);
    Instant::now() + left
}

/// Until when rollouts are watched: `WATCH_TIMEOUT_SECONDS` from now, but never past the
/// invocation's deadline less the report margin. `None`: not watched (off, or no time).
pub fn watch_until(config: &Config, deadline: SystemTime) -> Option<Instant> {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(REPORT_MARGIN);
    let budget = config.watch_timeout.min(left);
    (config.watch && !budget.is_zero()).then(|| Instant::now() + budget)
}

/// How the rollout ended (`None` when not watched) and, if it failed and rollback is on, what
/// the rollback did.
pub async fn follow<K: Kube>(
    kube: &K,
    cluster: &str,
    push: &Push,
    config: &Config,
    mut d: Workload,
    until: Option<Instant>,
) -> (Option<Progress>, Option<String>) {
    let Some(until) = until else {
        return (None, None);
    };
    let (namespace, name) = d.key();
    let progress = loop {
        let p = health::progress(&d);
        let Progress::Progressing(what) = p else {
            break p;
        };
        if let Some(selector) = health::selector(&d) {
            match kube.pods(cluster, &namespace, &selector).await {
                Ok(pods) => {
                    if let Some(why) = health::pod_failure(&pods, &push.digest) {
                        break Progress::Failed(why);
                    }
                }
                Err(e) => {
                    warn!(cluster, namespace = %namespace, deployment = %name, error = %e, "pods not read")
                }
            }
        }
        if Instant::now() + config.poll_interval > until {
            break Progress::Failed(format!("not ready within the watch: {what}"));
        }
        tokio::time::sleep(config.poll_interval).await;
        match kube.get(cluster, d.kind, &namespace, &name).await {
            Ok(fresh) => d = fresh,
            Err(e) => break Progress::Progressing(format!("could not read it back: {e}")),
        }
    };
    let rolled_back = match &progress {
        Progress::Failed(why) if config.rollback_on_failure => {
            Some(roll_back(kube, cluster, push, &d, why).await)
        }
        _ => None,
    };
    (Some(progress), rolled_back)
}

async fn roll_back<K: Kube>(
    kube: &K,
    cluster: &str,
    push: &Push,
    w: &Workload,
    why: &str,
) -> String {
    let (namespace, name) = w.key();
    let (namespace, name) = (namespace.as_str(), name.as_str());
    let fresh = match kube.get(cluster, w.kind, namespace, name).await {
        Ok(d) => d,
        Err(e) => return format!("rollback failed: could not read it: {e}"),
    };
    let Some((ops, restored)) = health::rollback_patch(&fresh, push) else {
        return "no rollback: no earlier image recorded (a restart, or edited since)".into();
    };
    match kube.patch(cluster, w.kind, namespace, name, &ops).await {
        Ok(_) => {
            info!(
                cluster,
                namespace,
                deployment = name,
                reason = why,
                "rolled back"
            );
            format!("rolled back: {}", restored.join(", "))
        }
        Err(e) => format!("rollback failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use bridgekeeper::notify::Severity;
    use bridgekeeper::notify::testing::Recorder;

    use serde_json::json;

    use crate::fakes::*;
    use crate::health::Progress;

    #[tokio::test(start_paused = true)]
    async fn watching_reports_success_a_stuck_rollout_and_one_not_ready_in_time() {
        let cfg = config(&[
            ("WATCH", "true"),
            ("WATCH_TIMEOUT_SECONDS", "30"),
            ("WATCH_POLL_SECONDS", "5"),
        ]);
        for (status, expect) in [
            (
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                "succeeded",
            ),
            (
                json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]}),
                "failed",
            ),
            // Never ready within the watch: a failure, with what it was waiting for.
            (json!({"observedGeneration": 1}), "failed"),
        ] {
            let mut kube = FakeKube::default();
            kube.add(
                "dev",
                "shop",
                "api",
                &format!("{REGISTRY}/shop/api:latest"),
                json!({}),
            );
            kube.status = Some(status);
            let n = Recorder::default();
            let started = tokio::time::Instant::now();
            let r = handle(event(PUSH_LATEST), &cfg, &kube, &FakeEcr::default(), &n)
                .await
                .unwrap();
            let progress =
                serde_json::to_value(r.clusters[0].rolled[0].progress.clone().unwrap()).unwrap();
            assert_eq!(progress["state"], expect);
            assert!(
                started.elapsed() <= std::time::Duration::from_secs(30),
                "watch stays inside its timeout"
            );
            if expect == "failed" {
                assert_eq!(n.sent()[0].severity, Severity::Error);
                assert!(
                    n.sent()[0].subject.ends_with(", 1 failed"),
                    "{}",
                    n.sent()[0].subject
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_pod_in_image_pull_back_off_is_a_failed_rollout_named_with_its_reason() {
        let mut kube = one_deployment();
        kube.status = Some(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}));
        kube.pods = vec![stuck_pod(
            "ImagePullBackOff",
            "Back-off pulling image",
            LATEST,
        )];
        let n = Recorder::default();
        let started = tokio::time::Instant::now();
        let r = handle(
            event(PUSH_LATEST),
            &watching(&[]),
            &kube,
            &FakeEcr::default(),
            &n,
        )
        .await
        .unwrap();
        assert_eq!(
            r.clusters[0].rolled[0].progress,
            Some(Progress::Failed(
                "pod api-7d9f-x1 container app: ImagePullBackOff: Back-off pulling image".into()
            ))
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "known at the first look, not at the timeout"
        );
        let sent = n.sent();
        assert_eq!(sent[0].severity, Severity::Error);
        assert!(
            sent[0].body.contains("ImagePullBackOff"),
            "{}",
            sent[0].body
        );
        // Without rollback (the default) the failed pin stays.
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{LATEST}")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rollback_re_pins_the_previous_image_and_reports_both() {
        let mut kube = one_deployment();
        kube.status = Some(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}));
        kube.pods = vec![stuck_pod(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container",
            LATEST,
        )];
        let (n, ecr) = (Recorder::default(), FakeEcr::default());
        let cfg = watching(&[("ROLLBACK_ON_FAILURE", "true")]);
        let r = handle(event(PUSH_LATEST), &cfg, &kube, &ecr, &n)
            .await
            .unwrap();
        let rolled = &r.clusters[0].rolled[0];
        assert!(
            matches!(&rolled.progress, Some(Progress::Failed(why)) if why.contains("CrashLoopBackOff"))
        );
        assert_eq!(
            rolled.rolled_back.clone().unwrap(),
            format!("rolled back: app back to {REGISTRY}/shop/api:latest")
        );
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api:latest")
        );
        let body = &n.sent()[0].body;
        assert!(
            body.contains("CrashLoopBackOff") && body.contains("ROLLBACK shop/api: rolled back"),
            "{body}"
        );
        // A redelivery, or the reconcile, does not roll the failed digest again.
        let patches = kube.patches.load(Ordering::SeqCst);
        let again = handle(event(PUSH_LATEST), &cfg, &kube, &ecr, &n)
            .await
            .unwrap();
        assert!(
            again.clusters[0].skipped[0]
                .reason
                .starts_with("rolled back from"),
            "{again:?}"
        );
        handle(event(RECONCILE), &cfg, &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(kube.patches.load(Ordering::SeqCst), patches);
    }

    #[tokio::test(start_paused = true)]
    async fn two_clusters_with_stuck_rollouts_are_watched_together_and_reported_inside_the_deadline()
     {
        let mut kube = FakeKube::default();
        for cluster in ["dev", "prod"] {
            kube.add(
                cluster,
                "shop",
                "api",
                &format!("{REGISTRY}/shop/api:latest"),
                json!({}),
            );
        }
        kube.status = Some(json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1}));
        let cfg = config(&[
            ("WATCH", "true"),
            ("WATCH_TIMEOUT_SECONDS", "600"),
            ("WATCH_POLL_SECONDS", "5"),
            (
                "ROLLOUT_RULES",
                r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev", "prod"]}]"#,
            ),
        ]);
        let n = Recorder::default();
        // A minute left in the invocation: the watches end 20 s before it, whatever the timeout.
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let started = tokio::time::Instant::now();
        let r = crate::handler::handle(
            event(PUSH_LATEST),
            deadline,
            &cfg,
            &kube,
            &FakeEcr::default(),
            &n,
            &bridgekeeper::idempotency::testing::Memory::default(),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(
            took <= Duration::from_secs(40),
            "{took:?}: watched one after the other?"
        );
        assert!(took >= Duration::from_secs(30), "{took:?}");
        for c in &r.clusters {
            assert!(
                matches!(&c.rolled[0].progress, Some(Progress::Failed(why)) if why.starts_with("not ready within the watch")),
                "{c:?}"
            );
        }
        assert_eq!(n.sent().len(), 1, "reported before the deadline");
    }
}
