//! The Route53 side of a run: the zones (listed, or as the ledger kept them), which of them need
//! reading, a plan per zone read, the deletion safety valve, the batches applied host by host
//! where Route53 refuses one, and the ledger brought up to date.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridgekeeper::idempotency::{Remember, skipped};
use bridgekeeper::{AwsError, Class, Error};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::aws::Dns;
use crate::config::Config;
use crate::domain::{self, Conflict, Holds, HostChanges, Outcome, PlanInput, Policy, ZonePlan};
use crate::ledger::{self, Applied, Ledger, Listing};
use crate::records::{DnsChange, LoadBalancer};
use crate::report::{AccountError, Response, ZoneReport};
use crate::sources::Endpoint;
use crate::targets::Aliasing;
use crate::zones::Zone;

/// Route53 allows five requests per second per account; more zones at once only means throttling.
const ZONE_CONCURRENCY: usize = 3;
/// Kept back from the deadline for the report and the notification.
const REPORT_RESERVE: Duration = Duration::from_secs(5);

/// What the clusters asked for, as the handler gathered it.
pub struct Wanted {
    pub endpoints: Vec<Endpoint>,
    /// Clusters read whole: only their hosts' absence may delete.
    pub complete: BTreeSet<String>,
    pub holds: Holds,
}

/// One run's view of time: now (epoch seconds, for the ledger), when Route53 calls must end,
/// and whether the ledger may spare reads (a manual run reads everything).
pub struct Clock {
    pub now: u64,
    pub until: Instant,
    pub trust_ledger: bool,
}

impl Clock {
    pub fn new(deadline: SystemTime, trust_ledger: bool) -> Clock {
        let at = SystemTime::now();
        let left = deadline.duration_since(at).unwrap_or_default();
        Clock {
            now: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            until: Instant::now() + left.saturating_sub(REPORT_RESERVE),
            trust_ledger,
        }
    }
}

/// Each Route53 (and ELB) call ends by the run's deadline: throttling the SDK is still absorbing then (its
/// adaptive retry waits rather than failing early) is a passing failure, reported with what was
/// done and retried by the next run, not a Lambda timeout that reports nothing.
async fn by<T>(
    until: Instant,
    operation: &'static str,
    call: impl Future<Output = Result<T, AwsError>>,
) -> Result<T, AwsError> {
    match tokio::time::timeout_at(until, call).await {
        Ok(r) => r,
        Err(elapsed) => Err(AwsError {
            operation,
            code: Some("RunDeadline".into()),
            message: Some(
                "Route53 had not answered (throttled, or slow) when the run's time ran out".into(),
            ),
            request_id: None,
            status: None,
            class: Class::Retryable,
            source: Box::new(elapsed),
        }),
    }
}

/// Zones, plans and applies; `true` when something failed for a passing reason (the run is
/// retried after its report).
pub async fn run<D: Dns, M: Remember>(
    wanted: Wanted,
    config: &Config,
    dns: &D,
    store: &M,
    clock: &Clock,
    response: &mut Response,
) -> Result<bool, Error> {
    let basis = ledger::basis(config);
    let mut ledger = if clock.trust_ledger {
        recall(store, &basis).await
    } else {
        Ledger::parse(None, &basis)
    };
    let kept = ledger.clone();
    let (zones, per_zone, hold_new, mut retry) =
        zones(config, dns, &mut ledger, clock, wanted.endpoints, response).await?;
    let plan_for: Vec<(&Zone, Vec<Endpoint>, String)> = wanted_zones(config, &zones, per_zone)
        .into_iter()
        .map(|(z, eps)| {
            let digest = ledger::zone_digest(
                z,
                &eps,
                &wanted.complete,
                &wanted.holds,
                hold_new.as_deref(),
            );
            (z, eps, digest)
        })
        .collect();
    let (unread, to_read): (Vec<_>, Vec<_>) = plan_for.into_iter().partition(|(z, _, d)| {
        ledger
            .unchanged(&z.id, d, clock.now, config.drift_interval)
            .is_some()
    });
    let owned_unread: usize = unread
        .iter()
        .filter_map(|(z, _, _)| ledger.applied.get(&z.id))
        .map(|a| a.owned)
        .sum();
    response.route53.zones_unchanged = unread.len();
    response.route53.zones_read = to_read.len();

    // The published table names every ELB hostname form; DescribeLoadBalancers only for a form
    // it does not know. Its failure stops the run: guessing would flip aliases to CNAMEs.
    let load_balancers = if to_read
        .iter()
        .flat_map(|(_, eps, _)| eps)
        .any(crate::targets::needs_lookup)
    {
        let call = dns.load_balancers();
        by(
            clock.until,
            "elasticloadbalancing:DescribeLoadBalancers",
            call,
        )
        .await
        .map_err(Error::from)?
    } else {
        HashMap::new()
    };
    if config.policy == Policy::Sync && wanted.complete.len() < config.clusters.len() {
        response.deletions_held = Some(
            "a cluster could not be read, so its hosts' absence proves nothing; its deletions are held"
                .into(),
        );
    }
    let ctx = PlanContext {
        config,
        load_balancers: &load_balancers,
        complete: &wanted.complete,
        holds: &wanted.holds,
        hold_new: hold_new.as_deref(),
        clock,
    };
    let planned = plan(&ctx, to_read, owned_unread, dns, response).await;
    let reports: Vec<(ZoneReport, Option<Applied>)> = futures::stream::iter(
        planned
            .into_iter()
            .map(|p| apply_zone(p, config, dns, clock)),
    )
    .buffered(ZONE_CONCURRENCY)
    .collect()
    .await;
    for (report, applied) in reports {
        match applied {
            Some(a) => ledger.applied.insert(report.zone_id.clone(), a),
            None => ledger.applied.remove(&report.zone_id),
        };
        retry |= report.retryable;
        response.zones.push(report);
    }
    ledger.retain_listed(&zones);
    // A steady run changes nothing in it: no write either.
    if !config.dry_run && ledger != kept {
        remember(store, &ledger).await;
    }
    Ok(retry)
}

async fn recall<M: Remember>(store: &M, basis: &str) -> Ledger {
    match store.recall(ledger::KEY).await {
        Ok(v) => Ledger::parse(v.as_deref(), basis),
        Err(e) => {
            skipped(ledger::KEY, &e);
            Ledger::parse(None, basis)
        }
    }
}

async fn remember<M: Remember>(store: &M, ledger: &Ledger) {
    let value = serde_json::to_string(ledger).unwrap_or_default();
    // Cut short it would not parse: better none, and every zone read next run.
    if value.len() > bridgekeeper::idempotency::MAX_REMEMBERED {
        warn!(
            bytes = value.len(),
            "the Route53 ledger is too large to keep; every zone is read each run"
        );
        return;
    }
    if let Err(e) = store.remember(ledger::KEY, &value).await {
        warn!(error = %e, "the Route53 ledger was not kept; the next run reads every zone");
    }
}

/// The zones it may write, what each is wanted to hold, and why new hosts wait (a member
/// account's zones could not be listed). `true` when that listing failure is worth a retry.
type ZonesWanted = (
    Vec<Zone>,
    HashMap<String, Vec<Endpoint>>,
    Option<String>,
    bool,
);

async fn zones<D: Dns>(
    config: &Config,
    dns: &D,
    ledger: &mut Ledger,
    clock: &Clock,
    endpoints: Vec<Endpoint>,
    response: &mut Response,
) -> Result<ZonesWanted, Error> {
    let (zones, retry) = match ledger.zones(clock.now, config.drift_interval) {
        Some(kept) => (kept.to_vec(), false),
        None => {
            let listing = by(clock.until, "route53:ListHostedZones", dns.zones())
                .await
                .map_err(Error::from)?;
            response.route53.zones_listed = true;
            let retry = listing
                .unreadable
                .iter()
                .any(|(_, e)| e.class() == Class::Retryable);
            response.account_errors = listing
                .unreadable
                .iter()
                .map(|(account, e)| AccountError {
                    account: account.clone(),
                    error: e.to_string(),
                })
                .collect();
            let zones: Vec<Zone> = listing
                .zones
                .into_iter()
                .filter(|z| config.zones.allows(z))
                .collect();
            // A listing with an account missing is not kept: the next run lists again.
            ledger.listing = response.account_errors.is_empty().then(|| Listing {
                at: clock.now,
                zones: zones.clone(),
            });
            (zones, retry)
        }
    };
    let hold_new = (!response.account_errors.is_empty()).then(|| {
        let accounts: Vec<&str> = response
            .account_errors
            .iter()
            .map(|a| a.account.as_str())
            .collect();
        format!(
            "new host not created: the zones of account {} could not be listed, and it may belong in one of them",
            accounts.join(", ")
        )
    });
    let mut per_zone: HashMap<String, Vec<Endpoint>> = HashMap::new();
    for ep in endpoints {
        let holders = crate::zones::zones_for(&ep.host, &zones);
        if holders.is_empty() {
            response.hosts_without_zone.push(ep.host.clone());
        }
        for z in holders {
            per_zone.entry(z.id.clone()).or_default().push(ep.clone());
        }
    }
    response.hosts_without_zone.dedup();
    Ok((zones, per_zone, hold_new, retry))
}

/// The zones a plan is made for: those with wanted hosts, and in `sync` every zone (its owned
/// records may all be stale).
fn wanted_zones<'z>(
    config: &Config,
    zones: &'z [Zone],
    mut per_zone: HashMap<String, Vec<Endpoint>>,
) -> Vec<(&'z Zone, Vec<Endpoint>)> {
    zones
        .iter()
        .map(|z| (z, per_zone.remove(&z.id).unwrap_or_default()))
        .filter(|(_, w)| !w.is_empty() || config.policy == Policy::Sync)
        .collect()
}

struct PlanContext<'a> {
    config: &'a Config,
    load_balancers: &'a HashMap<String, LoadBalancer>,
    complete: &'a BTreeSet<String>,
    holds: &'a Holds,
    hold_new: Option<&'a str>,
    clock: &'a Clock,
}

/// A zone read and planned, not yet applied.
struct Planned {
    zone: Zone,
    report: ZoneReport,
    plan: ZonePlan,
    /// Hosts this deployment owns in the zone (for a percentage deletion limit).
    owned: usize,
    /// Of what the zone is wanted to hold, for the ledger.
    digest: String,
}

/// Every zone's plan, after the deletion safety valve (counting the hosts owned in the zones
/// not read, as the ledger kept them).
async fn plan<D: Dns>(
    ctx: &PlanContext<'_>,
    to_read: Vec<(&Zone, Vec<Endpoint>, String)>,
    owned_unread: usize,
    dns: &D,
    response: &mut Response,
) -> Vec<Planned> {
    let config = ctx.config;
    let mut planned: Vec<Planned> = futures::stream::iter(
        to_read
            .into_iter()
            .map(|(zone, eps, digest)| plan_zone(zone, eps, digest, ctx, dns)),
    )
    .buffered(ZONE_CONCURRENCY)
    .collect()
    .await;
    if config.policy == Policy::Sync {
        let deleting: usize = planned
            .iter()
            .map(|p| p.plan.hosts_with(Outcome::Deleted).len())
            .sum();
        let owned = owned_unread + planned.iter().map(|p| p.owned).sum::<usize>();
        if let Some(reason) = config.max_deletions.exceeded(deleting, owned) {
            warn!(deleting, owned, "deletion safety valve tripped");
            for p in &mut planned {
                p.plan.hold_deletions(&reason);
            }
            response.deletions_held = Some(reason);
        }
    }
    planned
}

async fn plan_zone<D: Dns>(
    zone: &Zone,
    wanted: Vec<Endpoint>,
    digest: String,
    ctx: &PlanContext<'_>,
    dns: &D,
) -> Planned {
    let mut report = ZoneReport::new(zone);
    let records = by(
        ctx.clock.until,
        "route53:ListResourceRecordSets",
        dns.records(zone),
    );
    let existing = match records.await {
        Ok(r) => r,
        // Nothing is planned for a zone that could not be listed, so nothing in it is deleted;
        // the other zones go on, and a passing failure makes the run retry after its report.
        Err(e) => {
            report.retryable = e.class() == Class::Retryable;
            report.error = Some(e.to_string());
            return Planned {
                zone: zone.clone(),
                report,
                plan: ZonePlan::default(),
                owned: 0,
                digest,
            };
        }
    };
    let config = ctx.config;
    let plan = domain::plan_zone(&PlanInput {
        zone: &zone.name,
        endpoints: &wanted,
        existing: &existing,
        load_balancers: ctx.load_balancers,
        owner: &config.owner,
        adopt: &config.adopt,
        policy: config.policy,
        complete_clusters: ctx.complete,
        holds: ctx.holds,
        ttl: config.defaults.ttl,
        host_policy: &config.host_policy,
        hold_new: ctx.hold_new,
        aliasing: Aliasing {
            evaluate_health: config.evaluate_target_health,
            private_zone: zone.private,
        },
    });
    Planned {
        zone: zone.clone(),
        owned: domain::owned_hosts(&existing, &config.owner),
        report,
        plan,
        digest,
    }
}

/// Applies a zone's batches. A batch Route53 refuses (InvalidChangeBatch) is halved until the
/// refused host stands alone: one bad host costs one host, and the rest go through in this run.
/// The ledger entry it returns is kept only for a zone left with nothing open: a conflict, a
/// held deletion, a refused host or an error is looked at again next run.
async fn apply_zone<D: Dns>(
    planned: Planned,
    config: &Config,
    dns: &D,
    clock: &Clock,
) -> (ZoneReport, Option<Applied>) {
    let Planned {
        zone,
        mut report,
        plan,
        owned,
        digest,
    } = planned;
    report.unchanged = plan.unchanged.len();
    report.conflicts = plan.conflicts;
    report.held = plan.held;
    if config.dry_run {
        let batches = crate::batch::batches(plan.hosts);
        report.batches = batches.len();
        for h in batches.into_iter().flatten() {
            report.changes.extend(h.changes.iter().cloned());
            report.applied(h);
        }
        return (report, None);
    }
    let mut queue: VecDeque<Vec<HostChanges>> = crate::batch::batches(plan.hosts).into();
    while let Some(mut batch) = queue.pop_front() {
        let changes: Vec<DnsChange> = batch
            .iter()
            .flat_map(|h| h.changes.iter().cloned())
            .collect();
        let comment = format!(
            "bridgekeeper dns-sync ({}): {} hosts",
            config.owner,
            batch.len()
        );
        report.batches += 1;
        let call = dns.apply(&zone, &changes, &comment);
        match by(clock.until, "route53:ChangeResourceRecordSets", call).await {
            Ok(_) => batch.into_iter().for_each(|h| report.applied(h)),
            // What was applied stays reported; the run retries after its report.
            Err(e) if e.class() == Class::Retryable => {
                warn!(zone = %report.zone, error = %e, "batch not taken; the run will be retried");
                report.retryable = true;
                report.error = Some(e.to_string());
                break;
            }
            Err(e) if e.code.as_deref() == Some("InvalidChangeBatch") && batch.len() > 1 => {
                let rest = batch.split_off(batch.len() / 2);
                queue.push_front(rest);
                queue.push_front(batch);
            }
            Err(e) if e.code.as_deref() == Some("InvalidChangeBatch") => {
                let host = batch.remove(0).host;
                warn!(zone = %report.zone, host, error = %e, "route53 refused the host");
                report.rejected.push(Conflict {
                    host,
                    reason: e
                        .message
                        .clone()
                        .unwrap_or_else(|| "InvalidChangeBatch".into()),
                });
            }
            // Access denied, no such zone...: every other batch of the zone would fail alike.
            Err(e) => {
                warn!(zone = %report.zone, error = %e, "batch failed");
                report.error = Some(e.to_string());
                break;
            }
        }
    }
    let settled = report.error.is_none()
        && report.conflicts.is_empty()
        && report.held.is_empty()
        && report.rejected.is_empty();
    let applied = settled.then(|| Applied {
        digest,
        read_at: clock.now,
        owned: (owned + report.created.len()).saturating_sub(report.deleted.len()),
    });
    if applied.is_some() && report.changed() > 0 {
        info!(zone = %report.zone, changed = report.changed(), "zone settled");
    }
    (report, applied)
}

/// Route53 asked only what a run needs: counted per call, as its quota counts them.
#[cfg(test)]
mod tests {
    use bridgekeeper::config::Env;
    use bridgekeeper::idempotency::testing::Memory;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::fakes::{Clusters, Counted, ingress, schedule};
    use crate::handler::handle;
    use crate::report::State;

    const LB: &str = "k8s-shop-web-0123456789.eu-west-1.elb.amazonaws.com";

    fn config(extra: &[(&'static str, &'static str)]) -> Config {
        let mut vars = vec![
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("CLUSTERS", "prod=prod-eks"),
            ("POLICY", "sync"),
            ("HOST_POLICY", "*=example.com"),
        ];
        vars.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    /// One Ingress per zone, `hosts` hosts each.
    fn clusters(zones: usize, hosts: usize) -> Clusters {
        Clusters {
            ingresses: (0..zones)
                .map(|z| {
                    let names: Vec<String> = (0..hosts)
                        .map(|h| format!("h{h}.z{z}.example.com"))
                        .collect();
                    ("prod", ingress(&format!("web{z}"), &names, LB))
                })
                .collect(),
            ..Default::default()
        }
    }

    async fn run_with(
        event: serde_json::Value,
        cfg: &Config,
        sources: &Clusters,
        dns: &Counted,
        memory: &Memory,
    ) -> Result<Response, Error> {
        let deadline = SystemTime::now() + Duration::from_secs(120);
        let n = Recorder::default();
        handle(event, deadline, cfg, sources, dns, &n, &State::new(memory)).await
    }

    async fn run(cfg: &Config, sources: &Clusters, dns: &Counted, memory: &Memory) -> Response {
        run_with(schedule(), cfg, sources, dns, memory)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_run_that_wants_what_was_applied_asks_route53_nothing() {
        let (cfg, sources, dns, memory) = (
            config(&[]),
            clusters(3, 4),
            Counted::zones(3),
            Memory::default(),
        );
        let first = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (1, 3, 3), "{first:?}");
        let steady = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (1, 3, 3), "no listing, no read, no batch");
        assert_eq!(
            steady.route53,
            crate::report::Reads {
                zones_listed: false,
                zones_read: 0,
                zones_unchanged: 3
            }
        );
        assert!(steady.zones.is_empty());
    }

    /// Counts the ledger's writes.
    #[derive(Default)]
    struct Writes(Memory, std::sync::atomic::AtomicUsize);

    impl Remember for Writes {
        async fn recall(&self, key: &str) -> Result<Option<String>, AwsError> {
            self.0.recall(key).await
        }
        async fn remember(&self, key: &str, value: &str) -> Result<(), AwsError> {
            if key == ledger::KEY {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.0.remember(key, value).await
        }
    }

    #[tokio::test]
    async fn a_steady_run_does_not_write_the_ledger_again() {
        let (cfg, sources, dns, store) = (
            config(&[]),
            clusters(2, 2),
            Counted::zones(2),
            Writes::default(),
        );
        let n = Recorder::default();
        for _ in 0..3 {
            let deadline = SystemTime::now() + Duration::from_secs(120);
            handle(
                schedule(),
                deadline,
                &cfg,
                &sources,
                &dns,
                &n,
                &State::new(&store),
            )
            .await
            .unwrap();
        }
        assert_eq!(store.1.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn one_changed_host_reads_its_zone_and_writes_one_batch() {
        let (cfg, dns, memory) = (config(&[]), Counted::zones(3), Memory::default());
        run(&cfg, &clusters(3, 4), &dns, &memory).await;
        let mut moved = clusters(3, 4);
        moved.ingresses[1].1 = ingress(
            "web1",
            &["h0.z1.example.com".into(), "new.z1.example.com".into()],
            LB,
        );
        let before = dns.calls();
        let r = run(&cfg, &moved, &dns, &memory).await;
        let after = dns.calls();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1, after.2 - before.2),
            (0, 1, 1)
        );
        assert_eq!(r.zones[0].zone, "z1.example.com");
        assert_eq!(r.zones[0].created, ["new.z1.example.com"]);
        assert_eq!(r.zones[0].deleted.len(), 3, "{r:?}");
    }

    #[tokio::test]
    async fn past_the_drift_interval_every_zone_is_read_and_drift_repaired() {
        let cfg = config(&[("DRIFT_INTERVAL_SECONDS", "0")]);
        let (sources, dns, memory) = (clusters(2, 2), Counted::zones(2), Memory::default());
        run(&cfg, &sources, &dns, &memory).await;
        // Someone deletes one of our records by hand.
        dns.records
            .lock()
            .unwrap()
            .get_mut("Z0")
            .unwrap()
            .retain(|r| !(r.name == "h0.z0.example.com" && r.rtype == "A"));
        let r = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (2, 4, 3));
        assert_eq!(r.zones[0].created, ["h0.z0.example.com"], "{r:?}");
    }

    #[tokio::test]
    async fn a_manual_run_reads_every_zone() {
        let (cfg, sources, dns, memory) = (
            config(&[]),
            clusters(2, 2),
            Counted::zones(2),
            Memory::default(),
        );
        run(&cfg, &sources, &dns, &memory).await;
        let mut manual = schedule();
        manual["source"] = "bridgekeeper".into();
        let r = run_with(manual, &cfg, &sources, &dns, &memory)
            .await
            .unwrap();
        assert_eq!(dns.calls(), (2, 4, 2));
        assert_eq!(r.route53.zones_read, 2);
    }

    #[tokio::test]
    async fn without_the_store_every_run_reads() {
        let memory = Memory {
            broken: true,
            ..Memory::default()
        };
        let (cfg, sources, dns) = (config(&[]), clusters(2, 2), Counted::zones(2));
        run(&cfg, &sources, &dns, &memory).await;
        let r = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (2, 4, 2), "read again, nothing to write");
        assert_eq!(r.zones.iter().map(|z| z.unchanged).sum::<usize>(), 4);
    }

    #[tokio::test]
    async fn new_settings_read_every_zone_again() {
        let (sources, dns, memory) = (clusters(2, 2), Counted::zones(2), Memory::default());
        run(&config(&[]), &sources, &dns, &memory).await;
        run(&config(&[("DEFAULT_TTL", "60")]), &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (2, 4, 4), "TTL changed on every record");
    }

    #[tokio::test]
    async fn a_zone_left_with_a_conflict_is_read_every_run() {
        let (cfg, dns, memory) = (config(&[]), Counted::zones(2), Memory::default());
        // A record of the same name nobody owns: a conflict, looked at again each run.
        dns.records.lock().unwrap().insert(
            "Z1".into(),
            vec![crate::records::RecordSet {
                name: "h0.z1.example.com".into(),
                rtype: "CNAME".into(),
                ttl: Some(300),
                values: vec!["elsewhere.example.net".into()],
                ..Default::default()
            }],
        );
        let sources = clusters(2, 1);
        let first = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(
            first.zones.iter().map(|z| z.conflicts.len()).sum::<usize>(),
            1
        );
        let r = run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(
            (r.route53.zones_read, r.route53.zones_unchanged),
            (1, 1),
            "{r:?}"
        );
        assert_eq!(r.zones[0].conflicts.len(), 1);
    }

    #[tokio::test]
    async fn a_dry_run_keeps_no_ledger() {
        let (cfg, sources, dns, memory) = (
            config(&[("DRY_RUN", "true")]),
            clusters(1, 1),
            Counted::zones(1),
            Memory::default(),
        );
        run(&cfg, &sources, &dns, &memory).await;
        run(&cfg, &sources, &dns, &memory).await;
        assert_eq!(dns.calls(), (2, 2, 0));
        assert!(memory.values.lock().unwrap().get(ledger::KEY).is_none());
    }

    /// Route53 still throttling when the run's time is up (the SDK's adaptive retry waits it
    /// out rather than giving up early): the zone is reported, the other zones applied, and the
    /// run ends retryably before Lambda's timeout, not at it.
    #[tokio::test]
    async fn a_throttle_that_outlasts_the_run_is_reported_and_retried_before_the_deadline() {
        let (cfg, sources, memory) = (config(&[]), clusters(2, 1), Memory::default());
        let mut dns = Counted::zones(2);
        dns.stalled.insert("Z1".into());
        // Two seconds for Route53 once the report's reserve is kept back.
        let deadline = SystemTime::now() + REPORT_RESERVE + Duration::from_secs(2);
        let n = Recorder::default();
        let state = State::new(&memory);
        let err = handle(schedule(), deadline, &cfg, &sources, &dns, &n, &state)
            .await
            .unwrap_err();
        assert_eq!(bridgekeeper::Classify::class(&err), Class::Retryable);
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].body.contains("time ran out"), "{}", sent[0].body);
        assert!(
            sent[0].body.contains("h0.z0.example.com"),
            "{}",
            sent[0].body
        );
        let kept: Ledger =
            serde_json::from_str(&memory.values.lock().unwrap()[ledger::KEY]).unwrap();
        assert!(kept.applied.contains_key("Z0") && !kept.applied.contains_key("Z1"));
    }
}
