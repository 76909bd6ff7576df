//! Push event in, workloads rolled, report out. The only place that knows the event shape.

use bridgekeeper::Error;
use bridgekeeper::accounts::Origin;
use bridgekeeper::events::{
    ECR_IMAGE_ACTION, EcrActionType, EcrImageActionEvent, EcrResult, Envelope, is_schedule,
};
use bridgekeeper::idempotency::Remember;
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::Notifier;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::config::Config;
use crate::domain;
use crate::image::Push;
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
    if !crate::image::valid_digest(&digest) {
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
    if let Some(why) = crate::image::not_an_image(
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
pub async fn handle<K: Kube, R: Registry, N: Notifier, M: Remember>(
    event: serde_json::Value,
    deadline: std::time::SystemTime,
    config: &Config,
    kube: &K,
    registry: &R,
    notifier: &N,
    memory: &M,
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
    if !config.dry_run {
        crate::held::mark_told(&mut response.clusters, &push, memory).await;
    }

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
    use std::sync::atomic::Ordering;

    use bridgekeeper::notify::Severity;
    use bridgekeeper::notify::testing::Recorder;
    use bridgekeeper::{Class, Classify};
    use serde_json::json;

    use crate::fakes::*;

    use super::*;
    use crate::fakes::handle;
    use bridgekeeper::config::Env;

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
}
