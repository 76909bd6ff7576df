//! The scheduled reconcile. ECR documents its events as best effort: a push whose event never
//! came leaves workloads on an old image. Every `ImageRolloutReconcileSchedule` (15 minutes) the
//! workloads the rules cover are read, each ECR tag they follow is resolved once, and those still
//! on another digest are rolled by the same code as a push. Everything current: zero patches.
//! Workloads following versions (`bump`) also catch up to the newest version their rule admits:
//! each such repository's tags are listed once (`catchup.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use bridgekeeper::metrics::Metrics;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::catchup::{self, CatchUp, Repository, Tags};
use crate::config::Config;
use crate::domain::{self, Followed, Target};
use crate::image::Push;
use crate::kube::Kube;
use crate::registry::Registry;
use crate::report::{ClusterReport, ImageCheck};
use crate::rollout::{Rolling, list, roll_listed};
use crate::workload::{Workload, WorkloadRef};

pub async fn reconcile<K: Kube, R: Registry>(
    config: &Config,
    kube: &K,
    registry: &R,
    until: Option<tokio::time::Instant>,
    report_by: tokio::time::Instant,
) -> (Vec<ImageCheck>, Vec<ClusterReport>) {
    // Two passes, one cluster at a time: first the tags each cluster follows (its workloads
    // dropped once read), then, with the tags resolved, each cluster listed again and rolled.
    // Only one cluster's workloads are ever held (5,000 at most ~46 MB: make scale).
    let followed_per: Vec<(Target, Result<Vec<Followed>, String>)> = stream::iter(
        domain::all_targets(&config.rules)
            .into_iter()
            .map(|t| async move {
                let r = list_in_time(kube, &t, report_by)
                    .await
                    .map(|w| domain::followed_tags(&config.rules, &t.cluster, &w));
                (t, r)
            }),
    )
    .buffered(1)
    .collect()
    .await;
    let (mut checks, current) = resolve(config, registry, &followed_per, report_by).await;
    let (listed, unlisted) = list_versions(config, registry, &followed_per, report_by).await;
    checks.extend(unlisted);
    let catch_up: Vec<CatchUp> = followed_per
        .iter()
        .map(|(t, f)| match f {
            Ok(f) => catchup::missed(&config.rules, &t.cluster, f, &listed),
            Err(_) => CatchUp::default(),
        })
        .collect();
    let ctx = Rolling {
        config,
        kube,
        registry,
        until,
        report_by,
    };
    let (ctx, current) = (&ctx, &current);
    let reports: Vec<ClusterReport> = stream::iter(
        followed_per
            .into_iter()
            .zip(catch_up)
            .map(|((target, followed), missed)| {
                roll_cluster(ctx, target, followed, missed, current)
            }),
    )
    .buffered(1)
    .collect()
    .await;

    let rolled: usize = reports.iter().map(|r| r.rolled.len()).sum();
    Metrics::new(crate::FUNCTION)
        .count(
            "ReconcileRolled",
            if config.dry_run { 0 } else { rolled as u64 },
        )
        .count("ReconcileTagsChecked", checks.len() as u64)
        .count(
            "ReconcileTagsUnread",
            checks.iter().filter(|c| c.error.is_some()).count() as u64,
        )
        .flush();
    info!(tags = checks.len(), rolled, "reconcile done");
    (checks, reports)
}

/// Each followed tag resolved once, however many clusters and workloads follow it: only in
/// allowed registries, at most `RECONCILE_MAX_TAGS`, concurrently (bounded), each cut off where
/// the invocation must report. What ECR answered for each, and the digests it could confirm.
async fn resolve<R: Registry>(
    config: &Config,
    registry: &R,
    followed_per: &[(Target, Result<Vec<Followed>, String>)],
    report_by: tokio::time::Instant,
) -> (Vec<ImageCheck>, HashMap<Followed, String>) {
    let mut followed: Vec<Followed> = followed_per
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|f| f.iter().cloned())
        .collect();
    followed.sort();
    followed.dedup();
    let (followed, mut checks) = allowed(followed, config);
    let (followed, waiting) = capped(followed, config.reconcile_max_tags, now_minute());
    if waiting > 0 {
        warn!(
            waiting,
            cap = config.reconcile_max_tags,
            "more followed tags than RECONCILE_MAX_TAGS; the rest wait for a later run"
        );
    }
    let resolved: Vec<(Followed, Result<Option<String>, String>)> =
        stream::iter(followed.into_iter().map(|key| async move {
            let (account, region) = Push::ecr_parts(&key.0).unwrap_or_default();
            let lookup = registry.current_digest(account, region, &key.1, &key.2);
            let answer = by_deadline(report_by, lookup, "not resolved").await;
            (key, answer)
        }))
        .buffer_unordered(config.max_concurrent)
        .collect()
        .await;
    let mut current: HashMap<Followed, String> = HashMap::new();
    for (key, answer) in resolved {
        let (registry_host, repository, tag) = key.clone();
        let (digest, error) = match answer {
            Ok(Some(d)) if crate::image::valid_digest(&d) => (Some(d), None),
            Ok(Some(d)) => (None, Some(format!("ECR answered digest {d:?}"))),
            Ok(None) => (None, None),
            Err(e) => {
                warn!(repository = %repository, tag = %tag, error = %e, "tag not resolved");
                (None, Some(e))
            }
        };
        if let Some(d) = &digest {
            current.insert(key, d.clone());
        }
        checks.push(ImageCheck {
            registry: registry_host,
            repository,
            tag,
            digest,
            error,
        });
    }
    checks.sort_by(|a, b| {
        (&a.registry, &a.repository, &a.tag).cmp(&(&b.registry, &b.repository, &b.tag))
    });
    (checks, current)
}

/// The tags of each repository a workload follows versions of, listed once each: in allowed
/// registries, concurrently (bounded), cut off where the invocation must report. A repository
/// that could not be listed is a check with its error.
async fn list_versions<R: Registry>(
    config: &Config,
    registry: &R,
    followed_per: &[(Target, Result<Vec<Followed>, String>)],
    report_by: tokio::time::Instant,
) -> (BTreeMap<Repository, Tags>, Vec<ImageCheck>) {
    let repositories = catchup::repositories(
        &config.rules,
        followed_per
            .iter()
            .filter_map(|(t, f)| f.as_ref().ok().map(|f| (t.cluster.as_str(), f.as_slice()))),
    );
    let repositories: Vec<Repository> = repositories
        .into_iter()
        .filter(|(host, _)| {
            config
                .allowed_registries
                .as_ref()
                .is_none_or(|a| a.contains(host))
        })
        .collect();
    // As many repositories a run as tags (a tenant can follow versions of any number of them):
    // the same turn, so every one is listed within a few runs.
    let (repositories, waiting) = capped(repositories, config.reconcile_max_tags, now_minute());
    if waiting > 0 {
        warn!(
            waiting,
            "more version-following repositories than RECONCILE_MAX_TAGS; the rest wait for a later run"
        );
    }
    let answers: Vec<(Repository, Result<Tags, String>)> =
        stream::iter(repositories.into_iter().map(|key| async move {
            let (account, region) = Push::ecr_parts(&key.0).unwrap_or_default();
            let listing = registry.tagged_images(account, region, &key.1);
            let answer = by_deadline(report_by, listing, "not listed").await;
            (key, answer)
        }))
        .buffer_unordered(config.max_concurrent)
        .collect()
        .await;
    let mut listed = BTreeMap::new();
    let mut unlisted = Vec::new();
    for ((registry, repository), answer) in answers {
        match answer {
            Ok(tags) => {
                listed.insert((registry, repository), tags);
            }
            Err(e) => {
                warn!(repository = %repository, error = %e, "versions not listed");
                unlisted.push(ImageCheck {
                    registry,
                    repository,
                    tag: String::new(),
                    digest: None,
                    error: Some(format!("versions not listed: {e}")),
                });
            }
        }
    }
    (listed, unlisted)
}

/// One cluster's second pass: listed again; the versions it missed rolled first, then each tag
/// it follows rolled to the digest ECR confirmed, one tag after another.
async fn roll_cluster<K: Kube, R: Registry>(
    ctx: &Rolling<'_, K, R>,
    target: Target,
    followed: Result<Vec<Followed>, String>,
    missed: CatchUp,
    current: &HashMap<Followed, String>,
) -> ClusterReport {
    let mut report = ClusterReport::new(&target.cluster);
    let followed = match followed {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    // None of the tags it follows could be resolved: nothing to roll, no second listing.
    if missed.pushes.is_empty() && !followed.iter().any(|k| current.contains_key(k)) {
        return report;
    }
    let deployments = match list_in_time(ctx.kube, &target, ctx.report_by).await {
        Ok(w) => w,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let mut pushes: Vec<Push> = followed
        .into_iter()
        .filter(|key| !missed.superseded.contains(key))
        .filter_map(|key| {
            let digest = current.get(&key)?.clone();
            let (registry, repository, tag) = key;
            Some(Push {
                registry,
                repository,
                tag,
                digest,
            })
        })
        .collect();
    pushes.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    // Versions first, highest first: the listing is from before any move, so a workload a push
    // of a repository moved is not offered that repository's later (lower) pushes.
    let mut moved: HashSet<(String, WorkloadRef)> = HashSet::new();
    for push in missed.pushes.iter().chain(&pushes) {
        for t in domain::targets(&ctx.config.rules, push)
            .into_iter()
            .filter(|t| t.cluster == target.cluster)
        {
            let mine: Vec<Workload> = deployments
                .iter()
                .filter(|d| {
                    let ns = d.metadata.namespace.as_deref().unwrap_or_default();
                    t.namespaces
                        .as_ref()
                        .is_none_or(|n| n.iter().any(|x| x == ns))
                })
                .filter(|d| !moved.contains(&(push.repository.clone(), d.reference())))
                .cloned()
                .collect();
            let r = roll_listed(&t, push, ctx, mine).await;
            moved.extend(
                r.rolled
                    .iter()
                    .map(|x| (push.repository.clone(), x.workload.clone())),
            );
            report.rolled.extend(r.rolled);
            report.failed.extend(r.failed);
            // "already at" for every current workload is the normal case, not news.
            report.skipped.extend(
                r.skipped
                    .into_iter()
                    .filter(|s| !s.reason.starts_with("already")),
            );
        }
    }
    report
}

/// A cluster's workloads, or why they could not be listed before the report deadline.
async fn list_in_time<K: Kube>(
    kube: &K,
    target: &Target,
    report_by: tokio::time::Instant,
) -> Result<Vec<Workload>, String> {
    by_deadline(report_by, list(kube, target), "no answer").await
}

/// `work`'s answer, or `<what> before the invocation's deadline` once the run must report.
async fn by_deadline<T, E: std::fmt::Display>(
    report_by: tokio::time::Instant,
    work: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> Result<T, String> {
    match tokio::time::timeout_at(report_by, work).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{what} before the invocation's deadline")),
    }
}

/// The followed tags in allowed registries, and one check per refused registry saying why its
/// tags are not followed.
fn allowed(followed: Vec<Followed>, config: &Config) -> (Vec<Followed>, Vec<ImageCheck>) {
    let Some(allowed) = &config.allowed_registries else {
        return (followed, vec![]);
    };
    let (ok, refused): (Vec<Followed>, Vec<Followed>) = followed
        .into_iter()
        .partition(|(registry, _, _)| allowed.contains(registry));
    let mut refused_registries: Vec<String> = refused.into_iter().map(|(r, _, _)| r).collect();
    refused_registries.dedup();
    if !refused_registries.is_empty() {
        warn!(
            registries = refused_registries.len(),
            "workloads name registries outside ALLOWED_REGISTRIES; their tags are not followed"
        );
    }
    let checks = refused_registries
        .into_iter()
        .map(|registry| ImageCheck {
            error: Some(format!(
                "{registry} is not in ALLOWED_REGISTRIES; tags there are not followed"
            )),
            registry,
            repository: String::new(),
            tag: String::new(),
            digest: None,
        })
        .collect();
    (ok, checks)
}

/// At most `cap` of the sorted tags, starting at a place that moves every minute, so that no
/// tag (however many a tenant adds that sort first) waits more than a few runs. Also returns
/// how many wait.
fn capped<T: Clone>(items: Vec<T>, cap: usize, turn: u64) -> (Vec<T>, usize) {
    let n = items.len();
    if n <= cap {
        return (items, 0);
    }
    let start = usize::try_from(turn % n as u64).unwrap_or(0);
    let taken = items.into_iter().cycle().skip(start).take(cap).collect();
    (taken, n - cap)
}

/// Minutes since the epoch: the turn `capped` starts at, moving every minute.
fn now_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bridgekeeper::notify::testing::Recorder;

    use serde_json::json;

    use crate::fakes::*;

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

    /// A version push whose event never came: the reconcile lists the repository's tags once,
    /// moves the workload on 1.4.2 up to the newest its range admits (not 2.0.0, not the
    /// pre-release), and the next reconcile makes zero patches.
    #[tokio::test]
    async fn the_reconcile_moves_a_workload_up_to_the_newest_version_its_range_admits() {
        let (kube, n) = (world(), Recorder::default());
        kube.add(
            "dev",
            "shop",
            "versioned",
            &format!("{REGISTRY}/shop/api:1.4.2"),
            json!({}),
        );
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ecr = FakeEcr {
            versions: [
                ("1.4.1", 'a'),
                ("1.4.2", 'b'),
                ("1.4.3", 'c'),
                ("1.5.0-rc.1", 'd'),
                ("2.0.0", 'e'),
            ]
            .into_iter()
            .map(|(t, c)| (t.to_owned(), digest(c)))
            .collect(),
            ..FakeEcr::default()
        };
        let rules = r#"[{"repository": "shop/api", "semver": "^1.4", "bump": true, "clusters": ["dev"], "namespaces": ["shop"]}]"#;
        let config = config(&[("ROLLOUT_RULES", rules)]);
        let r = handle(event(RECONCILE), &config, &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(
            kube.image("dev", "shop", "versioned"),
            format!("{REGISTRY}/shop/api@{}", digest('c')),
            "{r:?}"
        );
        let rolled: Vec<&str> = r
            .clusters
            .iter()
            .flat_map(|c| c.rolled.iter().map(|x| x.workload.name.as_str()))
            .collect();
        assert_eq!(rolled, ["versioned"], "moved once, to 1.4.3 only");
        assert_eq!(ecr.listings.load(Ordering::SeqCst), 1, "listed once");

        let patches = kube.patches.load(Ordering::SeqCst);
        let again = handle(event(RECONCILE), &config, &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(kube.patches.load(Ordering::SeqCst), patches, "{again:?}");
    }

    /// A repository ECR would not list is said in the checks; the rest of the run goes on.
    #[tokio::test]
    async fn a_repository_that_cannot_be_listed_is_a_check_with_its_error() {
        let (kube, n) = (world(), Recorder::default());
        kube.add(
            "dev",
            "shop",
            "versioned",
            &format!("{REGISTRY}/shop/api:1.4.2"),
            json!({}),
        );
        let ecr = FakeEcr {
            broken: true,
            ..FakeEcr::default()
        };
        let rules =
            r#"[{"repository": "shop/api", "semver": "^1.4", "bump": true, "clusters": ["dev"]}]"#;
        let r = handle(
            event(RECONCILE),
            &config(&[("ROLLOUT_RULES", rules)]),
            &kube,
            &ecr,
            &n,
        )
        .await
        .unwrap();
        assert!(
            r.images.iter().any(|i| i.error.as_deref().is_some_and(|e| e
                .starts_with("versions not listed")
                && e.contains("AccessDenied"))),
            "{:?}",
            r.images
        );
        assert_eq!(
            kube.image("dev", "shop", "versioned"),
            format!("{REGISTRY}/shop/api:1.4.2")
        );
    }

    /// A tenant can follow versions of any number of repositories: at most RECONCILE_MAX_TAGS
    /// of them are listed in one run, the others in the next ones.
    #[tokio::test]
    async fn at_most_reconcile_max_tags_repositories_are_listed_in_one_run() {
        let (kube, n, ecr) = (world(), Recorder::default(), FakeEcr::default());
        for (name, repo) in [("a", "shop/api"), ("b", "shop/web"), ("c", "shop/jobs")] {
            kube.add(
                "dev",
                "shop",
                name,
                &format!("{REGISTRY}/{repo}:1.4.2"),
                json!({}),
            );
        }
        let rules =
            r#"[{"repository": "shop/*", "semver": "^1.4", "bump": true, "clusters": ["dev"]}]"#;
        let config = config(&[("ROLLOUT_RULES", rules), ("RECONCILE_MAX_TAGS", "2")]);
        handle(event(RECONCILE), &config, &kube, &ecr, &n)
            .await
            .unwrap();
        assert_eq!(ecr.listings.load(Ordering::SeqCst), 2);
    }
}
