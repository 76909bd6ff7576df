//! `make scale`: the planners at the sizes of a large account, timed, with their peak heap.
//! Each must finish well inside one invocation at 128 MB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bridgekeeper::events::SnapshotKind;
use chrono::TimeZone;
use serde_json::json;

/// Counts live heap bytes and their high-water mark.
struct Tracking;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Best of `runs` timings, and the peak heap the work added over what its inputs already held.
fn measure<T>(runs: usize, mut work: impl FnMut() -> T) -> (Duration, usize, T) {
    let mut best = Duration::MAX;
    let mut peak = 0;
    let mut out = None;
    for _ in 0..runs {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = Instant::now();
        let r = work();
        best = best.min(started.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
        out = Some(r);
    }
    (best, peak, out.expect("at least one run"))
}

fn dns_sync() -> String {
    use dns_sync::batch::batches;
    use dns_sync::domain::*;
    use dns_sync::records::{AliasTarget, LoadBalancer, RecordSet, owner_name, owner_value};
    use dns_sync::sources::{Endpoint, RecordKind};
    use dns_sync::targets::Aliasing;
    let lb = "k8s-shop-api-1854330541.eu-west-1.elb.amazonaws.com";
    let endpoint = |i: usize| Endpoint {
        host: format!("h{i:05}.example.com"),
        target: lb.into(),
        source: format!("prod/ingress/ns{}/app{i}", i % 50),
        cluster: "prod".into(),
        namespace: format!("ns{}", i % 50),
        created: Some(1_700_000_000 + i as i64),
        kind: RecordKind::Alias,
        ttl: 300,
        dualstack: false,
        ipv6_only: false,
    };
    // A host policy of one entry per namespace, as a multi-tenant cluster has.
    let policy_entries: Vec<String> = (0..50).map(|n| format!("ns{n}=example.com")).collect();
    let host_policy = dns_sync::policy::HostPolicy::parse(&policy_entries).expect("a valid policy");
    let endpoints: Vec<Endpoint> = (0..5_000).map(endpoint).collect();
    // 10,000 existing records: half the hosts already right (A + TXT), and 5,000 records of others.
    let mut existing = Vec::new();
    for ep in endpoints.iter().take(2_500) {
        existing.push(RecordSet {
            name: ep.host.clone(),
            rtype: "A".into(),
            ttl: None,
            values: vec![],
            alias: Some(AliasTarget {
                zone_id: "Z32O12XQLNTSW2".into(),
                dns_name: lb.into(),
                // As dns-sync writes a load balancer alias by default (EVALUATE_TARGET_HEALTH).
                evaluate_health: true,
            }),
            routing: None,
        });
        existing.push(RecordSet {
            name: owner_name(&ep.host),
            rtype: "TXT".into(),
            ttl: Some(300),
            values: vec![owner_value("bk", &ep.cluster, &ep.source)],
            alias: None,
            routing: None,
        });
    }
    for i in 0..5_000 {
        existing.push(RecordSet {
            name: format!("legacy{i}.example.com"),
            rtype: "CNAME".into(),
            ttl: Some(60),
            values: vec!["old.example.net".into()],
            alias: None,
            routing: None,
        });
    }
    let lbs = HashMap::from([(
        lb.to_owned(),
        LoadBalancer {
            canonical_zone_id: "Z32O12XQLNTSW2".into(),
            dualstack: false,
            ipv6_only: false,
        },
    )]);
    let complete = BTreeSet::from(["prod".to_owned()]);
    let (t, peak, plan) = measure(5, || {
        plan_zone(&PlanInput {
            zone: "example.com",
            endpoints: &endpoints,
            existing: &existing,
            load_balancers: &lbs,
            owner: "bk",
            adopt: &[],
            policy: Policy::Sync,
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &host_policy,
            hold_new: None,
            aliasing: Aliasing::default(),
        })
    });
    assert_eq!(
        (
            plan.hosts_with(Outcome::Created).len(),
            plan.unchanged.len()
        ),
        (2_500, 2_500)
    );
    row(
        "dns-sync: plan 5,000 hosts against 10,000 records",
        t,
        peak,
        &format!("{} batches", batches(plan.hosts).len()),
    )
}

fn image_rollout() -> String {
    use image_rollout::domain::*;
    use image_rollout::image::Push;
    use image_rollout::workload::Workload;
    let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let deployments: Vec<Workload> = (0..2_000)
        .map(|i| {
            let repo = if i % 2 == 0 { "shop/api" } else { "shop/web" };
            Workload::from_json(json!({
                "kind": "Deployment",
                "metadata": {"name": format!("app{i}"), "namespace": format!("ns{}", i % 50)},
                "spec": {"selector": {}, "template": {"spec": {
                    "initContainers": [{"name": "migrate", "image": format!("{registry}/{repo}:latest")}],
                    "containers": [
                        {"name": "app", "image": format!("{registry}/{repo}:latest")},
                        {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}
                    ]}}}
            }))
            .expect("a deployment")
        })
        .collect();
    let push = Push {
        registry: registry.into(),
        repository: "shop/api".into(),
        tag: "latest".into(),
        digest: "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd".into(),
    };
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap();
    let (t, peak, rolls) = measure(5, || {
        deployments
            .iter()
            .filter_map(|d| {
                match decide_for(d, &push, (Mode::OptOut, Strategy::PinDigest, None), now) {
                    Decision::Roll(r) => Some(r.patch(d, &push)),
                    _ => None,
                }
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(rolls.len(), 1_000);
    row(
        "image-rollout: match 2,000 Deployments in 50 namespaces",
        t,
        peak,
        "1,000 patches planned",
    )
}

fn snapshot_export() -> String {
    use snapshot_export::domain::*;
    use snapshot_export::snapshots::{Snapshot, newest_exportable};
    let instances: Vec<SourceInfo> = (0..500)
        .map(|i| SourceInfo {
            id: format!("db{i:03}"),
            kind: if i % 5 == 0 {
                SnapshotKind::Cluster
            } else {
                SnapshotKind::Instance
            },
            engine: if i % 5 == 0 {
                "aurora-postgresql".into()
            } else {
                "postgres".into()
            },
            tags: BTreeMap::from([("bridgekeeper:export".to_owned(), "true".to_owned())]),
            cluster: None,
            engine_mode: None,
            arn: String::new(),
        })
        .collect();
    let (clusters, instances): (Vec<_>, Vec<_>) = instances
        .into_iter()
        .partition(|s| s.kind == SnapshotKind::Cluster);
    let selection = Selection::Tag {
        key: "bridgekeeper:export".into(),
        value: "true".into(),
    };
    let dest = Destination {
        bucket: "exports".into(),
        prefix: "rds-exports".into(),
        role_arn: "arn:aws:iam::123456789012:role/export".into(),
        kms_key_arn: "arn:aws:kms:eu-west-1:123456789012:key/k".into(),
        export_only: Default::default(),
    };
    let (t, peak, plan) = measure(5, || {
        let (sources, _) = select_sources(&selection, &instances, &clusters);
        let facts: Vec<SourceFacts> = sources
            .into_iter()
            .enumerate()
            .map(|(i, source)| {
                let id = format!("rds:{}-2026-11-21-02-10", source.id);
                let arn = format!("arn:aws:rds:eu-west-1:123456789012:snapshot:{id}");
                let snapshots: Vec<Snapshot> = (0..7)
                    .map(|d| Snapshot {
                        id: id.replace("21", &format!("{:02}", 15 + d)),
                        arn: arn.replace("21", &format!("{:02}", 15 + d)),
                        created: Some(
                            chrono::Utc
                                .with_ymd_and_hms(2026, 11, 15 + d, 2, (i % 60) as u32, 0)
                                .unwrap(),
                        ),
                        snapshot_type: "automated".into(),
                        status: "available".into(),
                    })
                    .collect();
                SourceFacts {
                    source,
                    snapshot: newest_exportable(&snapshots, false).cloned(),
                    tasks: vec![],
                }
            })
            .collect();
        plan(&facts, &LastExports::new(), &dest, 2, 5, 3)
    });
    assert_eq!((plan.start.len(), plan.deferred.len()), (3, 497));
    row(
        "snapshot-export: plan 500 sources (7 snapshots each)",
        t,
        peak,
        "3 started, 497 deferred",
    )
}

fn row(what: &str, t: Duration, peak: usize, result: &str) -> String {
    row_within(what, t, peak, result, Duration::from_secs(1), 32)
}

fn row_within(
    what: &str,
    t: Duration,
    peak: usize,
    result: &str,
    time: Duration,
    megabytes: usize,
) -> String {
    let ok = t < time && peak < megabytes << 20;
    format!(
        "| {what} | {:.1} ms | {:.1} MB | {result} | {} (< {} s, < {megabytes} MB) |",
        t.as_secs_f64() * 1000.0,
        peak as f64 / (1 << 20) as f64,
        if ok { "pass" } else { "FAIL" },
        time.as_secs()
    )
}

/// A Deployment as a real API server lists it: managed fields, kubectl's last-applied copy,
/// forty environment variables, probes, volumes and resources (about 50 KB of JSON, as
/// measured on a production cluster's listing).
fn fat_deployment(i: usize, registry: &str) -> serde_json::Value {
    let env: Vec<_> = (0..40)
        .map(|k| json!({"name": format!("SETTING_{k}"), "value": "x".repeat(60)}))
        .collect();
    let container = |name: &str, image: String| {
        json!({"name": name, "image": image, "env": env.clone(),
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            "volumeMounts": (0..8).map(|v| json!({"name": format!("vol{v}"), "mountPath": format!("/mnt/{v}")})).collect::<Vec<_>>()})
    };
    let spec = json!({"replicas": 3, "selector": {"matchLabels": {"app": format!("app{i}")}},
        "template": {"metadata": {"labels": {"app": format!("app{i}")}, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"containers": [container("app", format!("{registry}/shop/api:latest")), container("proxy", "envoyproxy/envoy:v1.31".into())],
                "volumes": (0..8).map(|v| json!({"name": format!("vol{v}"), "configMap": {"name": format!("cm{v}")}})).collect::<Vec<_>>()}}});
    let managed: Vec<_> = (0..6)
        .map(|m| json!({"manager": format!("controller-{m}"), "operation": "Update", "apiVersion": "apps/v1",
            "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": spec.clone()}}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("app{i}"), "namespace": format!("ns{}", i % 50), "generation": 4,
            "uid": "7f5b2640-fe6f-4f46-592d-fd3410c4a79d", "resourceVersion": "123456789",
            "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": format!("app{i}")},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": spec.to_string(), "bridgekeeper.io/rollout": "true"},
            "managedFields": managed},
        "spec": spec,
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}})
}

/// What a listing may take of a function's 128 MB: less the ~11 MB peak RSS `make bench`
/// measures for a small run (binary, runtime, clients) and a margin for the rest of the run.
const HEAP_BUDGET_MB: usize = 96;

/// The response bodies of listing `n` Deployments, a page as large as image-rollout asks for
/// (`kube::PAGE`), as an API server sends them.
fn deployment_pages(n: usize) -> Vec<String> {
    let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let size = image_rollout::kube::PAGE as usize;
    (0..n.div_ceil(size))
        .map(|page| {
            let items: Vec<_> = (page * size..((page + 1) * size).min(n))
                .map(|i| fat_deployment(i, registry))
                .collect();
            serde_json::to_string(&items).expect("json")
        })
        .collect()
}

/// Each page parsed as the client parses it, then its workloads kept whole (before) or slim
/// (now, as image-rollout's listing keeps them).
fn list_workloads(pages: &[String], slim: bool) -> Vec<image_rollout::workload::Workload> {
    use image_rollout::listing::Shadow;
    use k8s_openapi::api::apps::v1::Deployment;
    let mut kept = Vec::new();
    for body in pages {
        if slim {
            // As the adapter reads a page: into the shadow, skipping what is not read.
            let parsed: Vec<Shadow> = serde_json::from_str(body).expect("shadows");
            for s in parsed {
                kept.push(
                    s.into_workload(image_rollout::workload::Kind::Deployment)
                        .expect("a workload"),
                );
            }
        } else {
            let parsed: Vec<Deployment> = serde_json::from_str(body).expect("deployments");
            kept.extend(
                parsed
                    .into_iter()
                    .map(image_rollout::workload::Workload::from),
            );
        }
    }
    kept
}

/// Peak heap of `work` plus one response body (held while its page is parsed), and what the
/// result keeps.
fn listing_row(
    what: &str,
    result: &str,
    pages: &[String],
    runs: usize,
    budget: usize,
    work: impl FnMut() -> usize,
) -> (String, usize) {
    let page = pages.iter().map(String::len).max().unwrap_or(0);
    let base = LIVE.load(Ordering::Relaxed);
    let (t, peak, kept) = measure_kept(runs, work);
    let _ = base;
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    let ok = t < Duration::from_secs(10) && peak + page < budget << 20;
    (
        format!(
            "| {what} | {:.1} ms | {:.1} MB (kept {:.1} MB, one page {:.1} MB) | {result} | {} (< 10 s, < {budget} MB) |",
            t.as_secs_f64() * 1000.0,
            mb(peak + page),
            mb(kept),
            mb(page),
            if ok { "pass" } else { "FAIL" }
        ),
        kept,
    )
}

/// Like [`measure`], with the heap the result still holds.
fn measure_kept(runs: usize, mut work: impl FnMut() -> usize) -> (Duration, usize, usize) {
    let mut best = Duration::MAX;
    let (mut peak, mut kept) = (0, 0);
    for _ in 0..runs {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = Instant::now();
        kept = work();
        best = best.min(started.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
    }
    (best, peak, kept)
}

fn image_rollout_listing() -> Vec<String> {
    let pages = deployment_pages(5_000);
    let one = pages[0].len() / image_rollout::kube::PAGE as usize;
    let (before, _) = listing_row(
        &format!(
            "image-rollout before: list 1,000 Deployments ({} KB of JSON each) into the full types and keep them whole",
            one / 1024
        ),
        "1,000 workloads",
        &pages[..4],
        1,
        128,
        || {
            let base = LIVE.load(Ordering::Relaxed);
            let kept = list_workloads(&pages[..4], false);
            let held = LIVE.load(Ordering::Relaxed) - base;
            drop(kept);
            held
        },
    );
    let (now, _) = listing_row(
        "image-rollout: list 5,000 Deployments in one cluster, 250 a page, read into the listing's shadow",
        "5,000 workloads (all on ECR images: the worst case)",
        &pages,
        3,
        HEAP_BUDGET_MB,
        || {
            let base = LIVE.load(Ordering::Relaxed);
            let kept = list_workloads(&pages, true);
            assert_eq!(kept.len(), 5_000);
            let held = LIVE.load(Ordering::Relaxed) - base;
            drop(kept);
            held
        },
    );
    let (five, _) = listing_row(
        "image-rollout reconcile: 5 clusters of 5,000, listed one at a time (each dropped before the next)",
        "25,000 workloads",
        &pages,
        1,
        HEAP_BUDGET_MB,
        || {
            let mut most = 0;
            for _ in 0..5 {
                let base = LIVE.load(Ordering::Relaxed);
                let cluster = list_workloads(&pages, true);
                most = most.max(LIVE.load(Ordering::Relaxed) - base);
                drop(cluster);
            }
            most
        },
    );
    vec![before, now, five]
}

/// dns-sync's listing: 5,000 Services (one in ten a LoadBalancer naming a host) and 5,000
/// Ingresses, kept as the planner reads them.
fn dns_sync_listing() -> String {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;
    let managed: Vec<_> = (0..6)
        .map(|m| {
            json!({"manager": format!("m{m}"), "operation": "Update", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {"x".repeat(2_000): {}}}}})
        })
        .collect();
    let service_pages: Vec<String> = (0..10)
        .map(|page| {
            let svcs: Vec<_> = (page * 500..(page + 1) * 500)
                .map(|i| json!({"metadata": {"name": format!("s{i}"), "namespace": format!("ns{}", i % 50),
                    "annotations": if i % 10 == 0 { json!({"bridgekeeper.io/hostname": format!("s{i}.example.com"), "kubectl.kubernetes.io/last-applied-configuration": "y".repeat(4_000)}) } else { json!({"kubectl.kubernetes.io/last-applied-configuration": "y".repeat(4_000)}) },
                    "managedFields": managed.clone()},
                    "spec": {"type": if i % 10 == 0 { "LoadBalancer" } else { "ClusterIP" }, "ports": [{"port": 443, "targetPort": 8443}], "selector": {"app": "x"}},
                    "status": {"loadBalancer": {"ingress": [{"hostname": "k8s-a-1.elb.eu-west-1.amazonaws.com"}]}}}))
                .collect();
            serde_json::to_string(&svcs).expect("json")
        })
        .collect();
    let ingress_pages: Vec<String> = (0..10)
        .map(|page| {
            let ings: Vec<_> = (page * 500..(page + 1) * 500)
                .map(|i| json!({"metadata": {"name": format!("i{i}"), "namespace": format!("ns{}", i % 50),
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "y".repeat(4_000)}, "managedFields": managed.clone()},
                    "spec": {"rules": [{"host": format!("i{i}.example.com"), "http": {"paths": (0..10).map(|p| json!({"path": format!("/p{p}"), "pathType": "Prefix", "backend": {"service": {"name": "x", "port": {"number": 80}}}})).collect::<Vec<_>>()}}]},
                    "status": {"loadBalancer": {"ingress": [{"hostname": "k8s-a-1.elb.eu-west-1.amazonaws.com"}]}}}))
                .collect();
            serde_json::to_string(&ings).expect("json")
        })
        .collect();
    let all: Vec<String> = service_pages
        .iter()
        .chain(&ingress_pages)
        .cloned()
        .collect();
    let (row, _) = listing_row(
        "dns-sync: list 5,000 Services and 5,000 Ingresses, 500 a page, kept as planned from",
        "500 LoadBalancer Services, 5,000 Ingresses kept",
        &all,
        3,
        HEAP_BUDGET_MB,
        || {
            let base = LIVE.load(Ordering::Relaxed);
            let mut services = Vec::new();
            let mut ingresses = Vec::new();
            for body in &service_pages {
                let parsed: Vec<Service> = serde_json::from_str(body).expect("services");
                services.extend(
                    parsed
                        .into_iter()
                        .filter_map(dns_sync::sources::slim_service),
                );
            }
            for body in &ingress_pages {
                let parsed: Vec<Ingress> = serde_json::from_str(body).expect("ingresses");
                ingresses.extend(
                    parsed
                        .into_iter()
                        .filter_map(dns_sync::sources::slim_ingress),
                );
            }
            assert_eq!((services.len(), ingresses.len()), (500, 5_000));
            LIVE.load(Ordering::Relaxed) - base
        },
    );
    row
}

/// An account with 5,000 past export tasks: the last export of each source and the tasks of
/// each snapshot, from one listing.
fn export_history() -> String {
    use snapshot_export::domain::*;
    let tasks: Vec<ExportTask> = (0..5_000)
        .map(|i| ExportTask {
            id: format!(
                "bk-db{:03}-2026-{:02}-{:02}-02-10-0badf00d",
                i % 500,
                1 + i / 500 % 12,
                1 + i % 28
            ),
            source_arn: format!(
                "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:db{:03}-2026-11-{:02}-02-10",
                i % 500,
                1 + i % 28
            ),
            status: TaskStatus::Complete,
            s3_bucket: Some("exports".into()),
            s3_prefix: Some(format!("rds-exports/db{:03}", i % 500)),
            failure_cause: None,
            warning: None,
            started: None,
            ended: None,
            size_gb: Some(100),
        })
        .collect();
    let (t, peak, n) = measure(5, || {
        let last = last_exports(&tasks);
        let by = tasks_by_source(tasks.clone());
        last.len() + by.len()
    });
    assert!(n > 0);
    row(
        "snapshot-export: 5,000 past export tasks → last export per source, tasks per snapshot",
        t,
        peak,
        "one listing",
    )
}

/// Counts calls, as the adapters would make them (their per-call limits), and messages.
#[derive(Default)]
struct Storm {
    asg_calls: AtomicUsize,
    ec2_calls: AtomicUsize,
    sent: std::sync::Mutex<Vec<String>>,
}

impl scaling_alerts::aws::AutoScaling for &Storm {
    async fn describe_groups(
        &self,
        _: &bridgekeeper::accounts::Scope,
        names: &[String],
    ) -> Result<HashMap<String, scaling_alerts::alert::GroupInfo>, bridgekeeper::Error> {
        self.asg_calls.fetch_add(
            names.len().div_ceil(scaling_alerts::aws::NAMES_PER_CALL),
            Ordering::Relaxed,
        );
        Ok(HashMap::new())
    }
}

/// The storm starts no node-group update: nothing to follow.
impl scaling_alerts::aws::Eks for &Storm {
    fn following(&self) -> bool {
        false
    }

    async fn describe_update(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::followup::FollowUp,
    ) -> Result<Option<scaling_alerts::followup::UpdateState>, bridgekeeper::Error> {
        Ok(None)
    }

    async fn describe_addon(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::addons::AddonRef,
    ) -> Result<Option<scaling_alerts::addons::AddonState>, bridgekeeper::Error> {
        Ok(None)
    }
    async fn later(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::followup::FollowUp,
    ) -> Result<(), bridgekeeper::Error> {
        Ok(())
    }
}

impl scaling_alerts::aws::Instances for &Storm {
    async fn describe_instances(
        &self,
        _: &bridgekeeper::accounts::Scope,
        ids: &[String],
    ) -> Result<HashMap<String, scaling_alerts::nodes::NodeInfo>, bridgekeeper::Error> {
        self.ec2_calls.fetch_add(
            ids.len().div_ceil(scaling_alerts::aws::IDS_PER_CALL),
            Ordering::Relaxed,
        );
        let node = scaling_alerts::nodes::NodeInfo::from_tags(
            &[
                ("karpenter.sh/nodepool", "default"),
                ("eks:eks-cluster-name", "prod-eks"),
            ],
            Some("m6i.large".into()),
            Some("eu-west-1a".into()),
            Some("spot".into()),
        );
        Ok(ids.iter().map(|i| (i.clone(), node.clone())).collect())
    }
}

impl bridgekeeper::notify::Notifier for &Storm {
    async fn notify(
        &self,
        n: &bridgekeeper::notify::Notification,
    ) -> Result<String, bridgekeeper::AwsError> {
        let mut sent = self.sent.lock().expect("lock");
        sent.push(n.subject.clone());
        Ok(format!("m-{}", sent.len()))
    }
}

/// Nothing remembered: every batch is new, as in a storm.
struct Forgetful;

impl bridgekeeper::idempotency::Remember for Forgetful {
    async fn recall(&self, _: &str) -> Result<Option<String>, bridgekeeper::AwsError> {
        Ok(None)
    }
    async fn remember(&self, _: &str, _: &str) -> Result<(), bridgekeeper::AwsError> {
        Ok(())
    }
}

/// A node-group storm as the queue delivers it: 1,000 launches and 1,000 terminations in two
/// node groups, and 200 Spot interruption warnings, within one batching window — two batches of
/// 1,000 (BatchSize) and one of 200.
fn scaling_storm() -> String {
    let launch = include_str!("../../../events/scaling-alerts/launch-successful.json");
    let terminate = include_str!("../../../events/scaling-alerts/terminate-successful.json");
    let spot = include_str!("../../../events/scaling-alerts/spot-interruption.json");
    let record = |i: usize, body: String| {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(format!("m-{i}"));
        m.body = Some(body);
        m
    };
    let mut bodies = Vec::new();
    for i in 0..2_000 {
        let (sample, group) = if i % 2 == 0 {
            (launch, i % 4)
        } else {
            (terminate, i % 4)
        };
        let mut e: serde_json::Value = serde_json::from_str(sample).expect("a sample");
        e["id"] = json!(format!("storm-{i}"));
        e["detail"]["AutoScalingGroupName"] = json!(format!("eks-prod-ng-{}-a2c4e6g8", group / 2));
        e["detail"]["EC2InstanceId"] = json!(format!("i-{i:017x}"));
        bodies.push(e.to_string());
    }
    for i in 0..200 {
        let mut e: serde_json::Value = serde_json::from_str(spot).expect("a sample");
        e["id"] = json!(format!("spot-{i}"));
        e["detail"]["instance-id"] = json!(format!("i-{:017x}", 10_000 + i));
        bodies.push(e.to_string());
    }
    let records: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| record(i, b))
        .collect();
    let config = scaling_alerts::Config::from_env(&bridgekeeper::config::Env::from_pairs([
        (
            "ALERTS_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
        ),
        ("ENVIRONMENT", "prod"),
        ("ACCOUNT_ID", "123456789012"),
    ]))
    .expect("a config");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (t, peak, storm) = measure(3, || {
        let storm = Storm::default();
        for batch in records.chunks(1_000) {
            let ports = scaling_alerts::pipeline::Ports {
                asg: &storm,
                ec2: &storm,
                eks: &storm,
                notifiers: scaling_alerts::delivery::Notifiers {
                    all: &storm,
                    errors: None,
                    chat: None,
                },
                store: Forgetful,
            };
            let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
            event.records = batch.to_vec();
            let r = runtime
                .block_on(scaling_alerts::pipeline::handle_batch(
                    event, &config, &ports,
                ))
                .expect("the batch");
            assert!(r.batch_item_failures.is_empty());
        }
        storm
    });
    let sent = storm.sent.lock().expect("lock").len();
    let handful = if sent <= 12 {
        ""
    } else {
        " — OVER A HANDFUL"
    };
    row_within(
        "scaling-alerts storm: 1,000 launches + 1,000 terminations (two node groups) + 200 Spot warnings, in batches of 1,000",
        t,
        peak,
        &format!(
            "{sent} messages{handful}, {} DescribeAutoScalingGroups, {} DescribeInstances",
            storm.asg_calls.load(Ordering::Relaxed),
            storm.ec2_calls.load(Ordering::Relaxed)
        ),
        Duration::from_secs(5),
        96,
    )
}

fn main() {
    println!("| at scale | time (best) | peak heap | result | within its budget |");
    println!("|---|---|---|---|---|");
    println!("{}", scaling_storm());
    println!("{}", dns_sync());
    println!("{}", image_rollout());
    println!("{}", snapshot_export());
    println!("{}", export_history());
    println!("{}", dns_sync_listing());
    for r in image_rollout_listing() {
        println!("{r}");
    }
}
