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
    use dns_sync::domain::*;
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
                evaluate_health: false,
            }),
            routing: None,
        });
        existing.push(RecordSet {
            name: owner_name(&ep.host),
            rtype: "TXT".into(),
            ttl: Some(300),
            values: vec![owner_value("bk", ep)],
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
            .filter_map(
                |d| match decide(d, &push, Mode::OptOut, Strategy::PinDigest, now) {
                    Decision::Roll(r) => Some(r.patch(d, &push)),
                    _ => None,
                },
            )
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
        export_only: vec![],
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
                    snapshot: newest_automated(&snapshots).cloned(),
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
    let ok = t < Duration::from_secs(1) && peak < 32 << 20;
    format!(
        "| {what} | {:.1} ms | {:.1} MB | {result} | {} |",
        t.as_secs_f64() * 1000.0,
        peak as f64 / (1 << 20) as f64,
        if ok { "pass" } else { "FAIL" }
    )
}

fn main() {
    println!("| planner at scale | time (best of 5) | peak heap | result | < 1 s and < 32 MB |");
    println!("|---|---|---|---|---|");
    println!("{}", dns_sync());
    println!("{}", image_rollout());
    println!("{}", snapshot_export());
}
