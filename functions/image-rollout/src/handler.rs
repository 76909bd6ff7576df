//! Push event in, workloads rolled, report out. The only place that knows the event shape.

use bridgekeeper::Error;
use bridgekeeper::accounts::Origin;
use bridgekeeper::events::{
    ECR_IMAGE_ACTION, EcrActionType, EcrImageActionEvent, EcrResult, Envelope, is_schedule,
};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::Notifier;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::config::Config;
use crate::domain::{self, Push};
use crate::kube::Kube;
use crate::registry::Registry;
use crate::report::{ClusterReport, Response, notification, reconcile_notification};
use crate::rollout::{Rolling, roll_cluster};

/// The push, or why there is nothing to roll.
fn read_event(event: serde_json::Value) -> Result<Result<Push, String>, Error> {
    let envelope = Envelope::of(&event)?;
    let kind = envelope.kind();
    if kind != ECR_IMAGE_ACTION {
        return Err(envelope
            .not_handled("an ECR Image Action event, or a Scheduled Event for the reconcile"));
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
    if !d.action_type.is(EcrActionType::Push) {
        return Ok(Err(format!(
            "action-type {} is not a push",
            d.action_type.text()
        )));
    }
    if !d.result.is(EcrResult::Success) {
        return Ok(Err(format!(
            "the push did not succeed (result {})",
            d.result.text()
        )));
    }
    let digest = d.image_digest.clone().unwrap_or_default();
    if !domain::valid_digest(&digest) {
        return Err(Error::invalid_event(format!(
            "ECR push event with image-digest {digest:?}: expected sha256: and 64 hex characters"
        )));
    }
    // buildx platform manifests, provenance/SBOM attestations and cosign/Notation signatures are
    // pushed without a tag; pinning a workload to one breaks it (exec format error, no image).
    let Some(tag) = d.image_tag.clone().filter(|t| !t.is_empty()) else {
        return Ok(Err(
            "untagged push (a platform manifest, attestation or signature): only tagged pushes roll"
                .into(),
        ));
    };
    if let Some(why) = domain::not_an_image(
        d.manifest_media_type.as_deref(),
        d.artifact_media_type.as_deref(),
    ) {
        return Ok(Err(why));
    }
    Ok(Ok(Push {
        registry: Push::ecr_registry(account, region),
        repository: d.repository_name,
        tag,
        digest,
    }))
}

/// The entry: a push rolls the workloads that run its tag; a schedule runs the reconcile.
pub async fn handle<K: Kube, R: Registry, N: Notifier>(
    event: serde_json::Value,
    deadline: std::time::SystemTime,
    config: &Config,
    kube: &K,
    registry: &R,
    notifier: &N,
) -> Result<Response, Error> {
    let origin = config.admitted.check(Envelope::of(&event)?.account())?;
    let ctx = Rolling {
        config,
        kube,
        registry,
        until: crate::watch::watch_until(config, deadline),
        report_by: crate::watch::report_by(deadline),
    };
    // A schedule (or a manual run in its shape): the reconcile.
    if is_schedule(&event)? {
        return reconcile(&ctx, notifier, &origin).await;
    }
    let read = read_event(event)?;
    let mut response = Response {
        push: read.as_ref().ok().cloned(),
        dry_run: config.dry_run,
        ignored: read.err(),
        superseded_by: None,
        clusters: vec![],
        images: vec![],
        notification: None,
    };
    let Some(push) = response.push.clone() else {
        info!(reason = ?response.ignored, "event ignored");
        return Ok(response);
    };
    let targets = domain::targets(&config.rules, &push);
    if targets.is_empty() {
        response.ignored = Some(format!("no rule matches {}:{}", push.repository, push.tag));
        info!(reason = ?response.ignored, "nothing to roll");
        return Ok(response);
    }
    if let Err(superseded_by) = confirm(registry, &push).await? {
        let what = superseded_by
            .as_deref()
            .unwrap_or("nothing (the tag was deleted)");
        response.ignored = Some(format!(
            "superseded: {}:{} now points at {what}, not at this event's {}",
            push.repository,
            push.tag,
            push.short_digest()
        ));
        response.superseded_by = superseded_by;
        return Ok(response);
    }
    response.clusters = stream::iter(&targets)
        .map(|t| roll_cluster(t, &push, &ctx))
        .buffered(config.cluster_concurrency)
        .collect()
        .await;
    count(&response.clusters, config.dry_run);

    if let Some(n) = notification(&response, &push, &config.environment) {
        let n = origin.stamp(n);
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

/// The scheduled reconcile, and its report.
async fn reconcile<K: Kube, R: Registry, N: Notifier>(
    ctx: &Rolling<'_, K, R>,
    notifier: &N,
    origin: &Origin,
) -> Result<Response, Error> {
    let config = ctx.config;
    let (images, clusters) =
        crate::reconcile::reconcile(config, ctx.kube, ctx.registry, ctx.until, ctx.report_by).await;
    let mut response = Response {
        push: None,
        dry_run: config.dry_run,
        ignored: None,
        superseded_by: None,
        clusters,
        images,
        notification: None,
    };
    let n = reconcile_notification(&response.clusters, &config.environment, config.dry_run);
    if let Some(n) = n {
        response.notification = Some(notifier.notify(&origin.stamp(n)).await?);
    }
    Ok(response)
}

/// Roll only to what the tag is now: a late or out-of-order event must not move anything back.
/// `Ok(Err(now))`: the tag has moved on (to `now`, or was deleted).
async fn confirm<R: Registry>(
    registry: &R,
    push: &Push,
) -> Result<Result<(), Option<String>>, Error> {
    match registry.current_digest_of(push).await {
        Ok(Some(now)) if now == push.digest => Ok(Ok(())),
        Ok(now) => {
            let what = now.as_deref().unwrap_or("nothing (the tag was deleted)");
            info!(tag = %push.tag, event_digest = %push.digest, now = what, "push superseded");
            Metrics::new(crate::FUNCTION)
                .count("PushesSuperseded", 1)
                .flush();
            Ok(Err(now))
        }
        // The event is the sender's word: anyone who may put an event on the bus or invoke the
        // function can write one. Nothing rolls until ECR confirms the digest is the tag's.
        // Retryable whatever ECR said (throttling, AccessDenied, a timeout): Lambda's retries and
        // the reconcile catch up once it answers; a rollout on the event's word never happens.
        Err(e) => {
            warn!(error = %e, "ECR could not confirm the pushed digest; nothing rolled");
            Metrics::new(crate::FUNCTION)
                .count("RegistryUnreadable", 1)
                .flush();
            Err(Error::Transient(format!(
                "ECR could not confirm that {}:{} is {}, so nothing was rolled: {}",
                push.repository,
                push.tag,
                push.short_digest(),
                bridgekeeper::classify::chain(&e)
            )))
        }
    }
}

/// The push's outcome as metrics.
fn count(clusters: &[ClusterReport], dry_run: bool) {
    let mut metrics = Metrics::new(crate::FUNCTION);
    let count = |f: fn(&ClusterReport) -> usize| clusters.iter().map(f).sum::<usize>() as u64;
    metrics
        .count(
            "WorkloadsRolled",
            if dry_run {
                0
            } else {
                count(|c| c.rolled.len())
            },
        )
        .count("WorkloadsSkipped", count(|c| c.skipped.len()))
        .count("WorkloadsFailed", count(|c| c.failed.len()))
        .count("ClustersFailed", count(|c| usize::from(c.error.is_some())));
    metrics.flush();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bridgekeeper::Class;

    use bridgekeeper::notify::Severity;

    use crate::health::Progress;
    use crate::report::*;
    use std::sync::atomic::Ordering;

    use bridgekeeper::Classify;
    use bridgekeeper::config::Env;
    use bridgekeeper::notify::testing::Recorder;
    use serde_json::{Value, json};

    use super::*;
    use crate::fakes::*;
    use crate::registry::Registry;

    /// One delivery of an event file with the default rules and ECR as the events describe it.
    async fn deliver(kube: &FakeKube, n: &Recorder, file: &str) -> Response {
        handle(event(file), &config(&[]), kube, &FakeEcr::default(), n)
            .await
            .unwrap()
    }

    /// The handler with five minutes left in the invocation.
    async fn handle<K: Kube, R: Registry, N: Notifier>(
        event: Value,
        config: &Config,
        kube: &K,
        registry: &R,
        notifier: &N,
    ) -> Result<Response, Error> {
        let deadline = std::time::SystemTime::now() + Duration::from_secs(300);
        super::handle(event, deadline, config, kube, registry, notifier).await
    }

    const PUSH_LATEST: &str = include_str!("../../../events/image-rollout/push-latest.json");
    const PUSH_STABLE: &str = include_str!("../../../events/image-rollout/push-stable.json");
    const PUSH_FAILED: &str = include_str!("../../../events/image-rollout/push-failed.json");
    const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    /// Deployments per cluster as JSON; patches applied with the json-patch crate, as the API
    /// server would.
    fn config(extra: &[(&'static str, &'static str)]) -> Config {
        let base = [
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("CLUSTERS", "dev=dev-eks,prod=prod-eks"),
            (
                "ROLLOUT_RULES",
                r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev"]},
                    {"repository": "shop/*", "tag": "stable", "clusters": ["prod"]}]"#,
            ),
            ("WATCH", "false"),
            ("ACCOUNT_ID", "123456789012"),
            ("AWS_REGION", "eu-west-1"),
            ("ROLLOUT_MODE", "opt-out"),
        ];
        Config::from_env(&Env::from_pairs(base.iter().chain(extra).copied())).unwrap()
    }

    fn event(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn world() -> FakeKube {
        let kube = FakeKube::default();
        let latest = format!("{REGISTRY}/shop/api:latest");
        kube.add("dev", "shop", "api", &latest, json!({}));
        kube.add("dev", "shop", "worker", &latest, json!({}));
        kube.add("dev", "other", "api", &latest, json!({}));
        kube.add(
            "dev",
            "shop",
            "frozen",
            &latest,
            json!({"bridgekeeper.io/rollout": "false"}),
        );
        kube.add(
            "dev",
            "shop",
            "web",
            &format!("{REGISTRY}/shop/web:latest"),
            json!({}),
        );
        kube.add(
            "prod",
            "shop",
            "api",
            &format!("{REGISTRY}/shop/api:stable"),
            json!({}),
        );
        kube
    }

    #[tokio::test]
    async fn a_push_to_many_clusters_lists_them_at_once_bounded_by_cluster_concurrency() {
        for (setting, widest) in [(None, 8), (Some("3"), 3)] {
            let (names, clusters) = bridgekeeper::cluster::testing::eks_clusters(8);
            let rules = json!([{"repository": "shop/*", "tag": "latest", "clusters": names}]);
            let mut vars = vec![
                (
                    "ALERTS_TOPIC_ARN",
                    "arn:aws:sns:eu-west-1:123456789012:alerts",
                ),
                ("CLUSTERS", clusters.as_str()),
                ("WATCH", "false"),
                ("ROLLOUT_MODE", "opt-out"),
            ];
            let rules = rules.to_string();
            vars.push(("ROLLOUT_RULES", rules.as_str()));
            if let Some(n) = setting {
                vars.push(("CLUSTER_CONCURRENCY", n));
            }
            let config = Config::from_env(&Env::from_pairs(vars)).unwrap();
            let kube = FakeKube::default();
            for c in &names {
                kube.add(
                    c,
                    "shop",
                    "api",
                    &format!("{REGISTRY}/shop/api:latest"),
                    json!({}),
                );
            }
            let r = handle(
                event(PUSH_LATEST),
                &config,
                &kube,
                &FakeEcr::default(),
                &Recorder::default(),
            )
            .await
            .unwrap();
            assert_eq!(r.clusters.len(), 8);
            assert!(r.clusters.iter().all(|c| c.rolled.len() == 1));
            assert_eq!(
                kube.max_lists_in_flight.load(Ordering::SeqCst),
                widest,
                "CLUSTER_CONCURRENCY={setting:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_push_of_latest_pins_the_digest_in_the_dev_cluster_only() {
        let (kube, n) = (world(), Recorder::default());
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        assert_eq!(r.clusters.len(), 1);
        let dev = &r.clusters[0];
        let rolled: Vec<_> = dev
            .rolled
            .iter()
            .map(|x| format!("{}/{}", x.workload.namespace, x.workload.name))
            .collect();
        assert_eq!(rolled, ["other/api", "shop/api", "shop/worker"]);
        assert_eq!(dev.skipped.len(), 1);
        assert!(dev.skipped[0].reason.contains("opted out"));
        let pinned = format!(
            "{REGISTRY}/shop/api@sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd"
        );
        assert_eq!(kube.image("dev", "shop", "api"), pinned);
        assert_eq!(
            kube.image("dev", "shop", "frozen"),
            format!("{REGISTRY}/shop/api:latest")
        );
        assert_eq!(
            kube.image("prod", "shop", "api"),
            format!("{REGISTRY}/shop/api:stable")
        );
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].subject,
            "[dev] shop/api:latest (7f5b2640fe6f) rolled to 3 Deployments in dev"
        );
        assert_eq!(sent[0].attributes["cluster"], r#"["dev"]"#);
        assert!(sent[0].arrays.contains("cluster"));
    }

    #[tokio::test]
    async fn the_same_push_three_times_rolls_each_deployment_once() {
        let (kube, n) = (world(), Recorder::default());
        for _ in 0..3 {
            deliver(&kube, &n, PUSH_LATEST).await;
        }
        assert_eq!(kube.patches.load(Ordering::SeqCst), 3);
        assert_eq!(
            n.sent().len(),
            1,
            "later deliveries change nothing and say nothing"
        );
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        assert!(
            r.clusters[0]
                .skipped
                .iter()
                .filter(|s| s.reason.starts_with("already at"))
                .count()
                == 3
        );
    }

    #[tokio::test]
    async fn a_later_push_of_the_same_tag_moves_the_pin() {
        let (kube, n) = (world(), Recorder::default());
        deliver(&kube, &n, PUSH_LATEST).await;
        let newer = PUSH_LATEST.replace(LATEST, NEWER);
        let ecr = FakeEcr::moved("latest", Some(NEWER));
        let r = handle(event(&newer), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(r.clusters[0].rolled.len(), 3);
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{NEWER}")
        );
        // A stable push does not touch containers that follow latest, pinned or not.
        let r = deliver(&kube, &n, PUSH_STABLE).await;
        assert_eq!(r.clusters[0].cluster, "prod");
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{NEWER}")
        );
    }

    #[tokio::test]
    async fn a_failed_push_or_an_unmatched_tag_is_ignored_without_a_call() {
        let (kube, n) = (world(), Recorder::default());
        let r = deliver(&kube, &n, PUSH_FAILED).await;
        assert_eq!(
            r.ignored.as_deref(),
            Some("the push did not succeed (result FAILURE)")
        );
        let v1 = PUSH_LATEST.replace("\"image-tag\": \"latest\"", "\"image-tag\": \"v9\"");
        let r = handle(event(&v1), &config(&[]), &kube, &FakeEcr::default(), &n)
            .await
            .unwrap();
        assert_eq!(r.ignored.as_deref(), Some("no rule matches shop/api:v9"));
        assert_eq!(kube.calls.load(Ordering::SeqCst), 0);
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn foreign_or_malformed_events_are_rejected_before_any_call() {
        let (kube, n) = (world(), Recorder::default());
        for (e, says) in [
            (
                event(include_str!(
                    "../../../events/dns-sync/load-balancer-created.json"
                )),
                "is not handled: expected an ECR Image Action event",
            ),
            (
                json!({"source": "aws.ecr", "detail-type": "ECR Image Action", "account": "123456789012", "region": "r", "detail": {}}),
                "malformed ECR Image Action event",
            ),
            (json!(42), "expected an EventBridge event object"),
        ] {
            let err = handle(e, &config(&[]), &kube, &FakeEcr::default(), &n)
                .await
                .unwrap_err();
            assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
            assert!(err.to_string().contains(says), "{err}");
        }
        assert_eq!(kube.calls.load(Ordering::SeqCst), 0);
    }

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
    async fn an_unreachable_cluster_is_reported_the_others_roll_and_the_invocation_is_retried() {
        let mut kube = world();
        kube.add(
            "prod",
            "shop",
            "api2",
            &format!("{REGISTRY}/shop/api:latest"),
            json!({}),
        );
        kube.failing.insert("prod".into(), 503);
        let cfg = config(&[(
            "ROLLOUT_RULES",
            r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["prod", "dev"]}]"#,
        )]);
        let n = Recorder::default();
        let err = handle(event(PUSH_LATEST), &cfg, &kube, &FakeEcr::default(), &n)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "Retryable.Transient");
        assert_eq!(kube.patches.load(Ordering::SeqCst), 3, "dev still rolled");
        let sent = n.sent();
        assert_eq!(sent[0].severity, Severity::Error);
        assert!(
            sent[0]
                .body
                .contains("Cluster prod:\n  could not be reached"),
            "{}",
            sent[0].body
        );
    }

    #[tokio::test]
    async fn a_forbidden_cluster_is_reported_and_not_retried() {
        let mut kube = world();
        kube.failing.insert("dev".into(), 403);
        let n = Recorder::default();
        let r = deliver(&kube, &n, PUSH_LATEST).await;
        assert_eq!(
            r.clusters[0].error.as_deref(),
            Some("cluster dev: call failed: HTTP 403")
        );
        assert_eq!(n.sent()[0].severity, Severity::Error);
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

    const PUSH_UNTAGGED: &str = include_str!("../../../events/image-rollout/push-untagged.json");
    const PUSH_ATTESTATION: &str =
        include_str!("../../../events/image-rollout/push-attestation.json");

    #[tokio::test]
    async fn untagged_push_rolls_nothing() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        let r = handle(event(PUSH_UNTAGGED), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert!(
            r.ignored.as_deref().unwrap().starts_with("untagged push"),
            "{r:?}"
        );
        assert_eq!(r.push, None);
        assert_eq!(
            (
                kube.calls.load(Ordering::SeqCst),
                ecr.calls.load(Ordering::SeqCst)
            ),
            (0, 0)
        );
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn an_attestation_pushed_with_a_tag_rolls_nothing() {
        let (kube, n) = (world(), Recorder::default());
        let r = deliver(&kube, &n, PUSH_ATTESTATION).await;
        assert!(
            r.ignored
                .as_deref()
                .unwrap()
                .contains("application/vnd.in-toto+json"),
            "{r:?}"
        );
        assert_eq!(kube.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_malformed_digest_is_invalid_input_and_never_written() {
        let (kube, n) = (world(), Recorder::default());
        // AWS's own sample ECR push event has a 60-character digest.
        let sample = PUSH_LATEST.replace(LATEST, &LATEST[..67]);
        let err = handle(event(&sample), &config(&[]), &kube, &FakeEcr::default(), &n)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert!(err.to_string().contains("64 hex characters"), "{err}");
        assert_eq!(kube.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_stale_digest_rolls_nothing_when_ecr_says_the_tag_moved() {
        let (kube, n) = (world(), Recorder::default());
        let ecr = FakeEcr::moved("latest", Some(NEWER));
        let r = handle(event(PUSH_LATEST), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(r.superseded_by.as_deref(), Some(NEWER));
        assert!(
            r.ignored.as_deref().unwrap().starts_with("superseded"),
            "{r:?}"
        );
        assert_eq!(
            (
                kube.calls.load(Ordering::SeqCst),
                kube.patches.load(Ordering::SeqCst)
            ),
            (0, 0)
        );
        assert!(n.sent().is_empty());
        // A deleted tag: nothing to roll either.
        let gone = FakeEcr::moved("latest", None);
        let r = handle(event(PUSH_LATEST), &config(&[]), &kube, &gone, &n)
            .await
            .unwrap();
        assert!(
            r.ignored
                .as_deref()
                .unwrap()
                .contains("the tag was deleted"),
            "{r:?}"
        );
    }

    fn pushed(digest: &str, time: &str) -> Value {
        let mut e = event(&PUSH_LATEST.replace(LATEST, digest));
        e["time"] = json!(time);
        e
    }

    #[tokio::test]
    async fn three_pushes_delivered_out_of_order_end_on_the_newest() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let (d1, d2, d3) = (d('1'), d('2'), d('3'));
        let events = [
            pushed(&d3, "2026-11-21T12:03:00Z"),
            pushed(&d1, "2026-11-21T12:01:00Z"),
            pushed(&d2, "2026-11-21T12:02:00Z"),
        ];
        // ECR knows the tag's digest now: the late ones are superseded.
        let (kube, n) = (world(), Recorder::default());
        let ecr = FakeEcr::moved("latest", Some(&d3));
        for e in &events {
            handle(e.clone(), &config(&[]), &kube, &ecr, &n)
                .await
                .unwrap();
        }
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{d3}")
        );
        assert_eq!(
            kube.patches.load(Ordering::SeqCst),
            3,
            "one patch per Deployment"
        );
    }

    /// The review's forged push from an account of the organisation the stack does not serve:
    /// it used to make the function list every workload of every cluster.
    #[tokio::test]
    async fn a_push_from_an_unlisted_account_is_refused_before_any_call() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        let mut forged = event(PUSH_LATEST);
        forged["account"] = json!("999999999999");
        let err = handle(forged, &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap_err();
        assert_eq!(err.class(), Class::NonRetryable);
        assert!(err.to_string().contains("999999999999"), "{err}");
        assert_eq!(kube.patches.load(Ordering::SeqCst), 0);
        assert_eq!(kube.calls.load(Ordering::SeqCst), 0);
        assert_eq!(ecr.calls.load(Ordering::SeqCst), 0);
        assert!(n.sent().is_empty());
    }

    /// The review's forged push: an event naming a digest ECR cannot confirm (ECR unreadable,
    /// or the digest not the tag's) used to roll on the event's word, guarded by its `time`,
    /// which the sender writes. Nothing rolls now, and the event is an error the queue keeps.
    #[tokio::test]
    async fn a_push_ecr_cannot_confirm_rolls_nothing_whatever_its_time() {
        let forged = pushed(
            &format!("sha256:{}", "f".repeat(64)),
            "2099-01-01T00:00:00Z",
        );
        let (kube, n) = (world(), Recorder::default());
        let blind = FakeEcr {
            broken: true,
            ..FakeEcr::default()
        };
        let err = handle(forged.clone(), &config(&[]), &kube, &blind, &n)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ecr:DescribeImages"), "{err}");
        // Retryable even for AccessDenied: Lambda's retries and the reconcile catch up later.
        assert_eq!(err.class(), Class::Retryable);
        assert_eq!(kube.patches.load(Ordering::SeqCst), 0);
        assert!(n.sent().is_empty());
        let ecr = FakeEcr::moved("latest", Some(&format!("sha256:{}", "1".repeat(64))));
        let r = handle(forged, &config(&[]), &kube, &ecr, &n).await.unwrap();
        assert!(r.ignored.unwrap().contains("superseded"));
        assert_eq!(kube.patches.load(Ordering::SeqCst), 0);
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
        let err = super::handle(
            event(PUSH_LATEST),
            deadline,
            &cfg,
            &kube,
            &FakeEcr::default(),
            &n,
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

    const RECONCILE: &str = include_str!("../../../events/image-rollout/reconcile.json");

    /// The review's registry flood: 200 Deployments naming ECR registries in accounts and
    /// regions nobody allowed made the reconcile look each up, one after another, as the hub.
    #[tokio::test]
    async fn the_reconcile_follows_only_allowed_registries_and_at_most_its_cap() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        for i in 0..200 {
            kube.add(
                "dev",
                "tenant",
                &format!("bogus-{i}"),
                &format!(
                    "{:012}.dkr.ecr.xx-bogus-{i}.amazonaws.com/shop/api:latest",
                    100_000 + i
                ),
                json!({}),
            );
        }
        let r = handle(event(RECONCILE), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(
            ecr.calls.load(Ordering::SeqCst),
            3,
            "only the hub's registry is asked"
        );
        let refused = r
            .images
            .iter()
            .filter(|i| {
                i.error
                    .as_deref()
                    .is_some_and(|e| e.contains("ALLOWED_REGISTRIES"))
            })
            .count();
        assert_eq!(refused, 200);
        assert!(
            r.clusters
                .iter()
                .all(|c| c.rolled.iter().all(|x| x.workload.namespace != "tenant"))
        );

        let ecr = FakeEcr::default();
        let r = handle(
            event(RECONCILE),
            &config(&[("RECONCILE_MAX_TAGS", "2")]),
            &world(),
            &ecr,
            &n,
        )
        .await
        .unwrap();
        assert_eq!(ecr.calls.load(Ordering::SeqCst), 2, "{:?}", r.images);
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

    /// The review: the reconcile held every cluster's workloads at once. It now reads one
    /// cluster at a time: a listing to learn the tags it follows, and one to roll.
    #[tokio::test]
    async fn the_reconcile_holds_one_cluster_at_a_time() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        handle(event(RECONCILE), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(kube.max_lists_in_flight.load(Ordering::SeqCst), 1);
        let before = kube.calls.load(Ordering::SeqCst);
        handle(event(RECONCILE), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(
            kube.calls.load(Ordering::SeqCst) - before,
            4,
            "dev and prod, twice each; no patch"
        );
    }

    #[tokio::test]
    async fn the_reconcile_catches_up_missed_pushes_then_makes_zero_patches() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        let r = handle(event(RECONCILE), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        let rolled: Vec<String> = r
            .clusters
            .iter()
            .flat_map(|c| {
                c.rolled.iter().map(move |x| {
                    format!("{}:{}/{}", c.cluster, x.workload.namespace, x.workload.name)
                })
            })
            .collect();
        assert_eq!(
            rolled,
            [
                "dev:other/api",
                "dev:shop/api",
                "dev:shop/worker",
                "prod:shop/api"
            ]
        );
        assert_eq!(
            kube.image("prod", "shop", "api"),
            format!("{REGISTRY}/shop/api@{STABLE}")
        );
        // shop/web:latest is followed too, but ECR has no such tag: checked, nothing rolled.
        let tags: Vec<(&str, &str, bool)> = r
            .images
            .iter()
            .map(|i| (i.repository.as_str(), i.tag.as_str(), i.digest.is_some()))
            .collect();
        assert_eq!(
            tags,
            [
                ("shop/api", "latest", true),
                ("shop/api", "stable", true),
                ("shop/web", "latest", false)
            ]
        );
        assert_eq!(
            ecr.calls.load(Ordering::SeqCst),
            3,
            "each followed tag resolved once"
        );
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0]
                .subject
                .contains("image reconcile: 4 Deployments caught up"),
            "{}",
            sent[0].subject
        );

        let patches = kube.patches.load(Ordering::SeqCst);
        let again = handle(event(RECONCILE), &config(&[]), &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(
            kube.patches.load(Ordering::SeqCst),
            patches,
            "zero patches when current"
        );
        assert!(again.clusters.iter().all(|c| c.rolled.is_empty()));
        assert_eq!(n.sent().len(), 1, "nothing to say");
        // A pin made by a push is followed through its tracked tag: a newer digest catches up.
        let moved = FakeEcr::moved("latest", Some(NEWER));
        handle(event(RECONCILE), &config(&[]), &kube, &moved, &n)
            .await
            .unwrap();
        assert_eq!(
            kube.image("dev", "shop", "api"),
            format!("{REGISTRY}/shop/api@{NEWER}")
        );
    }

    fn stuck_pod(reason: &str, message: &str, digest: &str) -> Value {
        json!({
            "metadata": {"name": "api-7d9f-x1", "annotations": {"bridgekeeper.io/image-digest": digest}},
            "status": {"containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}
        })
    }

    fn one_deployment() -> FakeKube {
        let kube = FakeKube::default();
        kube.add(
            "dev",
            "shop",
            "api",
            &format!("{REGISTRY}/shop/api:latest"),
            json!({}),
        );
        kube
    }

    fn watching(extra: &[(&'static str, &'static str)]) -> Config {
        let mut vars = vec![
            ("WATCH", "true"),
            ("WATCH_TIMEOUT_SECONDS", "120"),
            ("WATCH_POLL_SECONDS", "5"),
        ];
        vars.extend_from_slice(extra);
        config(&vars)
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
        let r = super::handle(
            event(PUSH_LATEST),
            deadline,
            &cfg,
            &kube,
            &FakeEcr::default(),
            &n,
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
