//! Trigger in; desired hosts from the clusters, a plan per zone, the batches applied; report out.
//! The only place that knows the event shapes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

use bridgekeeper::events::{Envelope, EventBridgeEvent, SCHEDULED_EVENT, ScheduledEvent};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::{Notification, Notifier, Severity};
use bridgekeeper::{Class, Error};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::Dns;
use crate::config::Config;
use crate::domain::{self, Conflict, DnsChange, Endpoint, PlanInput, RecordKind, Skip, Zone};
use crate::kube::Sources;

/// What the handler keeps between warm invocations: the conflicts last reported, so a conflict
/// that stays is not mailed every five minutes (a cold start may repeat it once).
#[derive(Debug, Default)]
pub struct State {
    reported_conflicts: Mutex<BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub zone_id: String,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: usize,
    pub conflicts: Vec<Conflict>,
    pub held: Vec<Conflict>,
    pub batches: usize,
    /// In a dry run: every change the run would make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DnsChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterError {
    pub cluster: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    pub dry_run: bool,
    pub zones: Vec<ZoneReport>,
    pub hosts_without_zone: Vec<String>,
    pub skipped: Vec<Skip>,
    pub cluster_errors: Vec<ClusterError>,
    /// Why sync deletions were held back, if they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions_held: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailCall {
    event_name: String,
}

/// A schedule, a manual run (`source: bridgekeeper`, same shape), or a new load balancer.
fn check_trigger(event: &serde_json::Value) -> Result<(), Error> {
    let envelope = Envelope::of(event)?;
    match envelope.kind() {
        // Read whole and typed: a trigger whose fields have the wrong types is not a trigger.
        (s, d) if d == SCHEDULED_EVENT.1 && (s == SCHEDULED_EVENT.0 || s == "bridgekeeper") => {
            ScheduledEvent::deserialize(event)
                .map(|_| ())
                .map_err(|e| Error::invalid_event(format!("malformed Scheduled Event: {e}")))
        }
        ("aws.elasticloadbalancing", "AWS API Call via CloudTrail") => {
            let call: EventBridgeEvent<CloudTrailCall> =
                EventBridgeEvent::<CloudTrailCall>::deserialize(event).map_err(|e| {
                    Error::invalid_event(format!("malformed CloudTrail event: {e}"))
                })?;
            match call.detail.event_name.as_str() {
                "CreateLoadBalancer" => Ok(()),
                other => Err(Error::invalid_event(format!(
                    "ELB API call {other} does not trigger a sync"
                ))),
            }
        }
        (s, d) => Err(Error::invalid_event(format!(
            "source {s:?}, detail-type {d:?} is not handled: expected a Scheduled Event (aws.events, or bridgekeeper \
             for a manual run) or a CloudTrail CreateLoadBalancer call"
        ))),
    }
}

/// Fails the run on a shared dependency's error, keeping its class.
fn fatal(e: bridgekeeper::AwsError) -> Error {
    e.into()
}

pub async fn handle<S: Sources, D: Dns, N: Notifier>(
    event: serde_json::Value,
    config: &Config,
    sources: &S,
    dns: &D,
    notifier: &N,
    state: &State,
) -> Result<Response, Error> {
    check_trigger(&event)?;
    let mut response = Response {
        dry_run: config.dry_run,
        ..Response::default()
    };

    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut complete = BTreeSet::new();
    let namespaces: Vec<Option<&str>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    for (cluster, _) in &config.clusters {
        let mut found = Vec::new();
        let mut failed = None;
        for ns in &namespaces {
            let listed = match sources.ingresses(cluster, *ns).await {
                Ok(ings) => sources
                    .services(cluster, *ns)
                    .await
                    .map(|svcs| (ings, svcs)),
                Err(e) => Err(e),
            };
            match listed {
                Ok((ings, svcs)) => {
                    for ing in &ings {
                        let (eps, skips) = domain::from_ingress(cluster, ing, &config.defaults);
                        found.extend(eps);
                        response.skipped.extend(skips);
                    }
                    for svc in &svcs {
                        let (eps, skips) = domain::from_service(cluster, svc, &config.defaults);
                        found.extend(eps);
                        response.skipped.extend(skips);
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                complete.insert(cluster.clone());
                endpoints.extend(found);
            }
            Some(e) => {
                warn!(cluster, error = %e, "cluster failed");
                response.cluster_errors.push(ClusterError {
                    cluster: cluster.clone(),
                    error: e.to_string(),
                });
                // What could be read is still kept up to date; only deletions wait.
                endpoints.extend(found);
            }
        }
    }
    endpoints.sort_by(|a, b| (&a.host, &a.source).cmp(&(&b.host, &b.source)));
    let (endpoints, outside): (Vec<Endpoint>, Vec<Endpoint>) = endpoints
        .into_iter()
        .partition(|e| config.zones.allows_host(&e.host));
    response.skipped.extend(outside.into_iter().map(|e| Skip {
        reason: format!("{} is outside DOMAIN_FILTER", e.host),
        source: e.source,
    }));

    let zones: Vec<Zone> = dns
        .zones()
        .await
        .map_err(fatal)?
        .into_iter()
        .filter(|z| config.zones.allows(z))
        .collect();
    let mut per_zone: HashMap<String, Vec<Endpoint>> = HashMap::new();
    for ep in endpoints {
        match domain::zone_for(&ep.host, &zones) {
            Some(z) => per_zone.entry(z.id.clone()).or_default().push(ep),
            None => response.hosts_without_zone.push(ep.host),
        }
    }
    response.hosts_without_zone.dedup();

    // One DescribeLoadBalancers listing per run, and only when an alias record is wanted. Its
    // failure stops the run: guessing "not an ELB" would flip alias records to CNAMEs.
    let wants_alias = per_zone
        .values()
        .flatten()
        .any(|e| e.kind == RecordKind::Alias);
    let load_balancers = if wants_alias {
        dns.load_balancers().await.map_err(fatal)?
    } else {
        HashMap::new()
    };

    if config.policy == domain::Policy::Sync && complete.len() < config.clusters.len() {
        response.deletions_held =
            Some("a cluster could not be read, so its hosts' absence proves nothing".into());
    }
    for zone in &zones {
        let wanted = per_zone.remove(&zone.id).unwrap_or_default();
        if wanted.is_empty() && config.policy != domain::Policy::Sync {
            continue;
        }
        response
            .zones
            .push(sync_zone(zone, &wanted, &load_balancers, &complete, config, dns).await?);
    }
    response.zones.retain(|z| {
        z.error.is_some()
            || z.batches > 0
            || z.unchanged > 0
            || !z.conflicts.is_empty()
            || !z.held.is_empty()
    });

    let mut metrics = Metrics::new(crate::FUNCTION);
    let sum = |f: fn(&ZoneReport) -> usize| response.zones.iter().map(f).sum::<usize>() as u64;
    let applied = !config.dry_run;
    metrics
        .count(
            "RecordsCreated",
            if applied { sum(|z| z.created.len()) } else { 0 },
        )
        .count(
            "RecordsUpdated",
            if applied { sum(|z| z.updated.len()) } else { 0 },
        )
        .count(
            "RecordsDeleted",
            if applied { sum(|z| z.deleted.len()) } else { 0 },
        )
        .count("Conflicts", sum(|z| z.conflicts.len()))
        .count("HostsWithoutZone", response.hosts_without_zone.len() as u64)
        .count(
            "ChangeBatches",
            if applied { sum(|z| z.batches) } else { 0 },
        )
        .count("ClustersFailed", response.cluster_errors.len() as u64);
    metrics.flush();

    if let Some(n) = notification(&response, &config.environment, state) {
        response.notification = Some(notifier.notify(&n).await?);
    }
    info!(
        zones = response.zones.len(),
        changed = sum(|z| z.created.len() + z.updated.len() + z.deleted.len()),
        conflicts = sum(|z| z.conflicts.len()),
        dry_run = config.dry_run,
        "sync done"
    );
    Ok(response)
}

async fn sync_zone<D: Dns>(
    zone: &Zone,
    wanted: &[Endpoint],
    load_balancers: &HashMap<String, domain::LoadBalancer>,
    complete: &BTreeSet<String>,
    config: &Config,
    dns: &D,
) -> Result<ZoneReport, Error> {
    let mut report = ZoneReport {
        zone: zone.name.clone(),
        zone_id: zone.id.clone(),
        created: vec![],
        updated: vec![],
        deleted: vec![],
        unchanged: 0,
        conflicts: vec![],
        held: vec![],
        batches: 0,
        changes: vec![],
        error: None,
    };
    let existing = match dns.records(&zone.id).await {
        Ok(r) => r,
        Err(e) if e.class() == Class::Retryable => return Err(e.into()),
        Err(e) => {
            report.error = Some(e.to_string());
            return Ok(report);
        }
    };
    let plan = domain::plan_zone(&PlanInput {
        zone: &zone.name,
        endpoints: wanted,
        existing: &existing,
        load_balancers,
        owner: &config.owner,
        policy: config.policy,
        complete_clusters: complete,
        ttl: config.defaults.ttl,
    });
    report.created = plan.created;
    report.updated = plan.updated;
    report.deleted = plan.deleted;
    report.unchanged = plan.unchanged.len();
    report.conflicts = plan.conflicts;
    report.held = plan.held;
    report.batches = plan.batches.len();
    if config.dry_run {
        report.changes = plan.batches.into_iter().flatten().collect();
        return Ok(report);
    }
    for (i, batch) in plan.batches.iter().enumerate() {
        let comment = format!(
            "bridgekeeper dns-sync ({}), batch {} of {}",
            config.owner,
            i + 1,
            report.batches
        );
        if let Err(e) = dns.apply(&zone.id, batch, &comment).await {
            warn!(zone = %zone.name, error = %e, "batch failed");
            if e.class() == Class::Retryable {
                return Err(e.into());
            }
            report.error = Some(format!("batch {} of {}: {e}", i + 1, report.batches));
            break;
        }
    }
    Ok(report)
}

/// When records changed, or the set of conflicts is not the one last reported.
fn notification(r: &Response, environment: &str, state: &State) -> Option<Notification> {
    if r.dry_run {
        return None;
    }
    let conflicts: BTreeSet<String> = r
        .zones
        .iter()
        .flat_map(|z| {
            z.conflicts
                .iter()
                .map(|c| format!("{}: {}", c.host, c.reason))
        })
        .collect();
    let new_conflicts = {
        let mut last = state.reported_conflicts.lock().expect("state lock");
        let changed = *last != conflicts;
        *last = conflicts.clone();
        changed && !conflicts.is_empty()
    };
    let changed: usize = r
        .zones
        .iter()
        .map(|z| z.created.len() + z.updated.len() + z.deleted.len())
        .sum();
    let errors = r.zones.iter().filter(|z| z.error.is_some()).count() + r.cluster_errors.len();
    if changed == 0 && !new_conflicts && errors == 0 {
        return None;
    }
    let mut parts = Vec::new();
    for (n, what) in [
        (changed, "records changed"),
        (conflicts.len(), "conflicts"),
        (errors, "errors"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let zones: Vec<&str> = r
        .zones
        .iter()
        .filter(|z| z.batches > 0 || !z.conflicts.is_empty() || z.error.is_some())
        .map(|z| z.zone.as_str())
        .collect();
    let subject = format!(
        "[{environment}] DNS sync: {} in {}",
        parts.join(", "),
        zones.join(", ")
    );
    let mut body = String::new();
    for z in &r.zones {
        let _ = writeln!(body, "Zone {} ({}):", z.zone, z.zone_id);
        for (label, hosts) in [
            ("created", &z.created),
            ("updated", &z.updated),
            ("deleted", &z.deleted),
        ] {
            for h in hosts {
                let _ = writeln!(body, "  {label:<9}{h}");
            }
        }
        for c in &z.conflicts {
            let _ = writeln!(body, "  CONFLICT {}: {}", c.host, c.reason);
        }
        if let Some(e) = &z.error {
            let _ = writeln!(body, "  ERROR    {e}");
        }
        let _ = writeln!(body, "  ({} unchanged)\n", z.unchanged);
    }
    for c in &r.cluster_errors {
        let _ = writeln!(body, "Cluster {} could not be read: {}", c.cluster, c.error);
    }
    if !r.hosts_without_zone.is_empty() {
        let _ = writeln!(
            body,
            "Hosts with no hosted zone: {}",
            r.hosts_without_zone.join(", ")
        );
    }
    let severity = if errors > 0 || !conflicts.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut n = Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("zone", zones.join(","));
    // Nothing changed: a report of a lasting situation (conflicts, errors). Keyed by its content,
    // it goes out once per store TTL, not after every cold start or every five minutes.
    if changed == 0 {
        n.dedup_key = Some(format!("report#{:016x}", content_hash(&n.body)));
    }
    Some(n)
}

/// The report's content without what differs between runs of the same situation (request ids).
/// DefaultHasher's keys are fixed, so equal reports hash alike in every process of one build.
fn content_hash(body: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for line in body.lines() {
        let stable = match line.find(" [request id ") {
            Some(i) => &line[..i],
            None => line,
        };
        stable.hash(&mut h);
    }
    h.finish()
}
