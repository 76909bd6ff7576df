//! Pure decisions: which zone holds each host, and the smallest set of Route53 changes that
//! gets there without touching a record Bridgekeeper does not own or sending one Route53 refuses.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::policy::{HostPolicy, Refused};

use crate::records::{
    DnsChange, LoadBalancer, OWNER_PREFIX, Owner, RecordSet, owner_name, owner_value, parse_owner,
    types,
};
use crate::sources::Endpoint;
use crate::targets::{Aliasing, desired_records};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Create, update and delete owned records.
    Sync,
    /// Create and update owned records; never delete.
    UpsertOnly,
    /// Only create records that do not exist.
    CreateOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Deleted,
}

/// One host's changes: its records and their ownership TXT, which Route53 applies together or
/// not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostChanges {
    pub host: String,
    pub outcome: Outcome,
    pub changes: Vec<DnsChange>,
}

/// One zone's plan: what happens to each host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZonePlan {
    pub unchanged: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// Owned records that differ or whose source is gone, but which this run must not change.
    pub held: Vec<Conflict>,
    pub hosts: Vec<HostChanges>,
}

impl ZonePlan {
    pub fn hosts_with(&self, outcome: Outcome) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| h.outcome == outcome)
            .map(|h| h.host.clone())
            .collect()
    }

    pub fn changes(&self) -> usize {
        self.hosts.iter().map(|h| h.changes.len()).sum()
    }

    /// Keeps every owned record whose deletion was planned; each becomes a held host.
    pub fn hold_deletions(&mut self, reason: &str) {
        let (deleted, kept) = std::mem::take(&mut self.hosts)
            .into_iter()
            .partition(|h| h.outcome == Outcome::Deleted);
        self.hosts = kept;
        self.held
            .extend(deleted.into_iter().map(|h: HostChanges| Conflict {
                host: h.host,
                reason: reason.to_owned(),
            }));
    }
}

const MANAGED_TYPES: [&str; 3] = ["A", "AAAA", "CNAME"];

/// What the ownership name `_bridgekeeper.<host>` holds.
enum Registry<'a> {
    Free,
    Ours(&'a RecordSet),
    /// Written by an earlier owner id of this deployment: taken over when the host is wanted.
    Adoptable(&'a RecordSet, String),
    OtherOwner(String),
    /// Anything Bridgekeeper did not write there.
    Foreign(String),
}

/// Sources skipped this run: nothing they may own is deleted.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    /// Full source (`<cluster>/<kind>/<ns>/<name>`) → why it was skipped.
    pub sources: BTreeMap<String, String>,
    /// Host → the skipped source that names it.
    pub hosts: BTreeMap<String, String>,
}

impl Holds {
    pub fn from_skips(skips: &[crate::sources::Skip]) -> Holds {
        let mut h = Holds::default();
        for s in skips {
            h.sources.insert(s.source.clone(), s.reason.clone());
            for host in &s.hosts {
                h.hosts.insert(host.clone(), s.source.clone());
            }
        }
        h
    }
}

pub struct PlanInput<'a> {
    /// The zone's name (its apex), lower case, without the final dot.
    pub zone: &'a str,
    pub endpoints: &'a [Endpoint],
    pub existing: &'a [RecordSet],
    pub load_balancers: &'a HashMap<String, LoadBalancer>,
    pub owner: &'a str,
    /// Earlier owner ids of this deployment (see `ADOPT_OWNER_IDS`).
    pub adopt: &'a [String],
    pub policy: Policy,
    /// Clusters whose sources were all read: only their vanished hosts may be deleted.
    pub complete_clusters: &'a BTreeSet<String>,
    pub holds: &'a Holds,
    pub ttl: i64,
    /// Which namespaces may claim which names (`HOST_POLICY`).
    pub host_policy: &'a HostPolicy,
    /// Why hosts that exist nowhere yet are not created this run (a member account's zones
    /// could not be listed: the host may belong there).
    pub hold_new: Option<&'a str>,
    /// `EVALUATE_TARGET_HEALTH`, and whether the zone is private.
    pub aliasing: Aliasing,
}

struct Existing<'a> {
    by_name: HashMap<&'a str, Vec<&'a RecordSet>>,
}

impl<'a> Existing<'a> {
    fn new(records: &'a [RecordSet]) -> Self {
        let mut by_name: HashMap<&str, Vec<&RecordSet>> = HashMap::new();
        for r in records {
            by_name.entry(r.name.as_str()).or_default().push(r);
        }
        Existing { by_name }
    }

    fn at(&self, name: &str) -> &[&'a RecordSet] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The source (`<cluster>/<kind>/<namespace>/<name>`) and its cluster that this
    /// deployment's ownership record of `host` names, if it names one.
    fn owning_source(&self, host: &str, owner: &str, adopt: &[String]) -> Option<(String, String)> {
        match self.registry(host, owner, adopt) {
            Registry::Ours(t) | Registry::Adoptable(t, _) => {
                let [value] = t.values.as_slice() else {
                    return None;
                };
                let o = parse_owner(value)?;
                Some((o.cluster.clone(), format!("{}/{}", o.cluster, o.source)))
            }
            _ => None,
        }
    }

    fn registry(&self, host: &str, owner: &str, adopt: &[String]) -> Registry<'a> {
        let name = owner_name(host);
        let records = self.at(&name);
        let Some(first) = records.first() else {
            return Registry::Free;
        };
        let foreign = |what: String| Registry::Foreign(format!("{name} holds {what}"));
        if records.len() > 1 || first.rtype != "TXT" || first.has_policy() {
            return foreign(format!(
                "{} records Bridgekeeper did not write",
                types(records)
            ));
        }
        let parsed: Vec<Option<Owner>> = first.values.iter().map(|v| parse_owner(v)).collect();
        match parsed.as_slice() {
            [Some(o)] if o.owner == owner => Registry::Ours(first),
            [Some(o)] if adopt.contains(&o.owner) => Registry::Adoptable(first, o.owner.clone()),
            [Some(o)] => Registry::OtherOwner(o.owner.clone()),
            _ => foreign("a TXT record Bridgekeeper did not write".into()),
        }
    }
}

fn conflict(plan: &mut ZonePlan, host: &str, reason: String) {
    plan.conflicts.push(Conflict {
        host: host.to_owned(),
        reason,
    });
}

/// The minimal changes for one zone, after Route53's rules are applied to what the zone already
/// holds, so a batch carries nothing Route53 is known to refuse.
pub fn plan_zone(input: &PlanInput) -> ZonePlan {
    let mut plan = ZonePlan::default();
    let existing = Existing::new(input.existing);

    let wanted = claims(input, &existing, &mut plan);
    for (&host, ep) in &wanted {
        match plan_host(input, &existing, host, ep) {
            HostPlan::Changes(changes) => plan.hosts.push(changes),
            HostPlan::Unchanged => plan.unchanged.push(host.to_owned()),
            HostPlan::Conflict(reason) => conflict(&mut plan, host, reason),
            HostPlan::Held(reason) => plan.held.push(Conflict {
                host: host.to_owned(),
                reason,
            }),
        }
    }

    if input.policy == Policy::Sync {
        plan_deletions(input, &existing, &wanted, &mut plan);
    }
    plan
}

/// Who gets each host. A claim `HOST_POLICY` refuses is reported and dropped. The source its
/// ownership record names keeps the host while it still asks for it; an owner whose cluster or
/// source could not be read this run keeps it too (its silence proves nothing). Otherwise the
/// oldest claimant (`creationTimestamp`) wins, never the one whose name sorts first; claimants
/// equally old that disagree get nothing. A claim that loses changes nothing and is reported.
fn claims<'e>(
    input: &PlanInput<'e>,
    existing: &Existing,
    plan: &mut ZonePlan,
) -> BTreeMap<&'e str, &'e Endpoint> {
    let mut by_host: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for ep in input.endpoints {
        let apex = ep.host == input.zone;
        match input
            .host_policy
            .allows(&ep.cluster, &ep.namespace, &ep.host, apex)
        {
            Ok(()) => by_host.entry(&ep.host).or_default().push(ep),
            Err(Refused(why)) => conflict(plan, &ep.host, format!("{}: refused, {why}", ep.source)),
        }
    }
    let mut wanted = BTreeMap::new();
    for (host, mut claimants) in by_host {
        claimants.sort_by_key(|e| (e.created.unwrap_or(i64::MAX), &e.source));
        let owner = existing.owning_source(host, input.owner, input.adopt);
        let owner_held = owner.as_ref().and_then(|(cluster, source)| {
            if !input.complete_clusters.contains(cluster) {
                Some(format!("cluster {cluster} could not be read"))
            } else {
                input
                    .holds
                    .sources
                    .get(source)
                    .map(|why| format!("it was skipped ({why})"))
            }
        });
        let current = owner
            .as_ref()
            .and_then(|(_, source)| claimants.iter().find(|e| &e.source == source));
        let winner = match (current, &owner, owner_held) {
            (Some(ep), _, _) => *ep,
            (None, Some((_, source)), Some(why)) => {
                for ep in &claimants {
                    conflict(
                        plan,
                        host,
                        format!(
                            "{} asks for it, but it belongs to {source} and {why}; nothing changed",
                            ep.source
                        ),
                    );
                }
                continue;
            }
            _ => {
                let first = claimants[0];
                let tied: Vec<&Endpoint> = claimants
                    .iter()
                    .copied()
                    .filter(|e| e.created == first.created && e.target != first.target)
                    .collect();
                if !tied.is_empty() {
                    let names: Vec<&str> = std::iter::once(first)
                        .chain(tied)
                        .map(|e| e.source.as_str())
                        .collect();
                    conflict(
                        plan,
                        host,
                        format!(
                            "claimed by {}, created in the same second; none is used",
                            names.join(" and ")
                        ),
                    );
                    continue;
                }
                first
            }
        };
        for ep in claimants
            .iter()
            .filter(|e| e.source != winner.source && e.target != winner.target)
        {
            let why = if current.is_some() {
                "which owns it"
            } else {
                "the older claim"
            };
            conflict(
                plan,
                host,
                format!(
                    "{} asks for it, but it stays with {} ({why}); nothing changed for {}",
                    ep.source, winner.source, ep.source
                ),
            );
        }
        wanted.insert(host, winner);
    }
    wanted
}

/// What becomes of one wanted host.
enum HostPlan {
    /// Its records and ownership record change together.
    Changes(HostChanges),
    /// It is as the source wants it.
    Unchanged,
    /// Someone else's record, or one Route53 would refuse: left untouched and reported.
    Conflict(String),
    /// Ours, but this run's policy or state does not change it.
    Held(String),
}

/// One wanted host: its changes, nothing to do, or why it is left alone.
fn plan_host(input: &PlanInput, existing: &Existing, host: &str, ep: &Endpoint) -> HostPlan {
    let at_host = existing.at(host);
    let (current, others): (Vec<&RecordSet>, Vec<&RecordSet>) = at_host
        .iter()
        .partition(|r| MANAGED_TYPES.contains(&r.rtype.as_str()));
    let (txt_now, adopted) = match ownership(input, existing, host, &current) {
        Ok(owned) => owned,
        Err(why) => return HostPlan::Conflict(why),
    };
    let desired = match desired_records(
        input.load_balancers,
        input.aliasing,
        input.zone,
        host,
        ep,
        &others,
    ) {
        Ok(records) => records,
        Err(why) => return HostPlan::Conflict(why),
    };
    let txt = RecordSet {
        name: owner_name(host),
        rtype: "TXT".into(),
        ttl: Some(input.ttl),
        values: vec![owner_value(input.owner, &ep.cluster, &ep.source)],
        ..RecordSet::default()
    };
    let txt_change = match txt_now {
        None => Some(DnsChange::Create(txt)),
        Some(old) if !old.same_as(&txt) => Some(DnsChange::Upsert(txt)),
        Some(_) => None,
    };
    if current.is_empty() {
        if let (Some(why), None) = (input.hold_new, txt_now) {
            return HostPlan::Held(why.to_owned());
        }
        let changes = desired.into_iter().map(DnsChange::Create).chain(txt_change);
        return HostPlan::Changes(HostChanges {
            host: host.to_owned(),
            outcome: Outcome::Created,
            changes: changes.collect(),
        });
    }
    let changes = smallest_change(&current, desired, txt_change);
    if changes.is_empty() {
        return HostPlan::Unchanged;
    }
    // Only sync deletes: the role's policy allows DELETE for no other policy (IAM refuses the
    // whole batch, every host in it, if one change is a DELETE it does not allow).
    if input.policy != Policy::Sync
        && let Some(DnsChange::Delete(old)) =
            changes.iter().find(|c| matches!(c, DnsChange::Delete(_)))
    {
        return HostPlan::Held(format!(
            "its {} record must be deleted to become what the source asks for, and only the sync \
             policy deletes; left as it is",
            old.rtype
        ));
    }
    if input.policy == Policy::CreateOnly {
        return HostPlan::Held(
            "differs from the Ingress, but the create-only policy does not update".into(),
        );
    }
    if let Some(from) = adopted {
        tracing::info!(host, from = %from, "taking over a record of an earlier owner id");
    }
    HostPlan::Changes(HostChanges {
        host: host.to_owned(),
        outcome: Outcome::Updated,
        changes,
    })
}

/// Whether the host's records are ours to change: its ownership record as it is now (`None`:
/// free), and the earlier owner id it is adopted from; or why they are left untouched.
fn ownership<'a>(
    input: &PlanInput,
    existing: &'a Existing,
    host: &str,
    current: &[&RecordSet],
) -> Result<(Option<&'a RecordSet>, Option<String>), String> {
    // Weighted, latency, failover... records are read whole and never half-changed: a simple
    // record cannot join them (Route53 refuses mixing routing policies on one name and type).
    if current.iter().any(|r| r.has_policy()) {
        return Err(format!(
            "existing {} records with a routing policy (set identifier or traffic policy); left untouched",
            types(current)
        ));
    }
    match existing.registry(host, input.owner, input.adopt) {
        Registry::Foreign(what) => Err(format!("{what}; left untouched")),
        Registry::OtherOwner(o) => Err(format!(
            "ownership record names owner {o:?}; left untouched"
        )),
        Registry::Free if !current.is_empty() => Err(format!(
            "existing {} record with no ownership record; left untouched",
            types(current)
        )),
        Registry::Free => Ok((None, None)),
        Registry::Ours(t) => Ok((Some(t), None)),
        Registry::Adoptable(t, from) => Ok((Some(t), Some(from))),
    }
}

/// Owned and present: the smallest change from what is there to what should be. A type change
/// (CNAME ↔ alias A) or a dropped AAAA deletes first, in the same batch (a CNAME cannot coexist
/// with an A of the same name).
fn smallest_change(
    current: &[&RecordSet],
    desired: Vec<RecordSet>,
    txt_change: Option<DnsChange>,
) -> Vec<DnsChange> {
    let mut changes: Vec<DnsChange> = current
        .iter()
        .filter(|c| !desired.iter().any(|d| d.rtype == c.rtype))
        .map(|c| DnsChange::Delete((*c).clone()))
        .collect();
    for d in desired {
        match current.iter().find(|c| c.rtype == d.rtype) {
            Some(c) if c.same_as(&d) => {}
            Some(_) => changes.push(DnsChange::Upsert(d)),
            None => changes.push(DnsChange::Create(d)),
        }
    }
    changes.extend(txt_change);
    changes
}

/// `sync`: owned hosts whose source is gone. Held when the source's cluster could not be read or
/// the source was skipped (it still exists; its absence from the plan proves nothing).
fn plan_deletions(
    input: &PlanInput,
    existing: &Existing,
    wanted: &BTreeMap<&str, &Endpoint>,
    plan: &mut ZonePlan,
) {
    for txt in input
        .existing
        .iter()
        .filter(|r| r.rtype == "TXT" && r.name.starts_with(OWNER_PREFIX))
    {
        let host = &txt.name[OWNER_PREFIX.len()..];
        let [value] = txt.values.as_slice() else {
            continue;
        };
        let Some(o) = parse_owner(value) else {
            continue;
        };
        if o.owner != input.owner || wanted.contains_key(host) || txt.has_policy() {
            continue;
        }
        let source = format!("{}/{}", o.cluster, o.source);
        let hold = if !input.complete_clusters.contains(&o.cluster) {
            Some(format!(
                "source gone, but cluster {} could not be read; deletion held",
                o.cluster
            ))
        } else if let Some(why) = input.holds.sources.get(&source) {
            Some(format!(
                "its source {source} was skipped ({why}); deletion held"
            ))
        } else {
            input
                .holds
                .hosts
                .get(host)
                .map(|s| format!("skipped source {s} names this host; deletion held"))
        };
        if let Some(reason) = hold {
            plan.held.push(Conflict {
                host: host.to_owned(),
                reason,
            });
            continue;
        }
        // Only the records dns-sync writes: a routing-policy record someone added stays.
        let changes = existing
            .at(host)
            .iter()
            .filter(|r| MANAGED_TYPES.contains(&r.rtype.as_str()) && !r.has_policy())
            .map(|r| DnsChange::Delete((*r).clone()))
            .chain([DnsChange::Delete(txt.clone())])
            .collect();
        plan.hosts.push(HostChanges {
            host: host.to_owned(),
            outcome: Outcome::Deleted,
            changes,
        });
    }
}

/// How many owned records one run may delete before it deletes none and asks a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionLimit {
    Hosts(usize),
    /// Of the hosts this deployment owns in the zones read.
    Percent(u8),
}

impl DeletionLimit {
    /// `Some(reason)` when `deleting` of `owned` hosts is over the limit.
    pub fn exceeded(self, deleting: usize, owned: usize) -> Option<String> {
        let (over, limit) = match self {
            DeletionLimit::Hosts(n) => (deleting > n, n.to_string()),
            DeletionLimit::Percent(p) => (
                deleting * 100 > owned * usize::from(p),
                format!("{p}% of {owned} owned"),
            ),
        };
        over.then(|| {
            format!(
                "this run would delete {deleting} hosts, over MAX_DELETIONS ({limit}); none deleted. \
                 If the deletions are right, raise MAX_DELETIONS for one run or delete the records by hand"
            )
        })
    }
}

/// Hosts this deployment owns in a zone (for a percentage limit).
pub fn owned_hosts(existing: &[RecordSet], owner: &str) -> usize {
    existing
        .iter()
        .filter(|r| r.rtype == "TXT" && r.name.starts_with(OWNER_PREFIX))
        .filter(|r| {
            r.values
                .iter()
                .filter_map(|v| parse_owner(v))
                .any(|o| o.owner == owner)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The aliases of these tests' zones as they were written before EVALUATE_TARGET_HEALTH:
    /// the planning rules are what these tests check, not the health setting.
    fn unhealthy_free() -> Aliasing {
        Aliasing {
            evaluate_health: false,
            private_zone: false,
        }
    }
    use crate::batch::batches;
    use crate::records::AliasTarget;
    use crate::records::MAX_BATCH_CHARS;
    use crate::records::{MAX_TXT_STRING, Routing};
    use crate::sources::{RecordKind, Skip};
    use crate::targets::needs_lookup;
    use crate::zones::{Zone, ZoneFilter, ZoneType, zones_for};

    /// The ownership TXT value `ep` gets.
    fn owner_txt(owner: &str, ep: &Endpoint) -> String {
        owner_value(owner, &ep.cluster, &ep.source)
    }

    const LB: &str = "k8s-shop-api-1854330541.eu-west-1.elb.amazonaws.com";
    const LB2: &str = "k8s-shop-api-2222222222.eu-west-1.elb.amazonaws.com";

    fn ep(host: &str, target: &str, kind: RecordKind) -> Endpoint {
        Endpoint {
            host: host.into(),
            target: target.into(),
            source: "prod/ingress/shop/api".into(),
            cluster: "prod".into(),
            namespace: "shop".into(),
            created: Some(1_700_000_000),
            kind,
            ttl: 300,
            dualstack: false,
            ipv6_only: false,
        }
    }

    /// Any namespace may claim anything in the test zones, their apexes and wildcards too.
    fn open() -> HostPolicy {
        let entries: Vec<String> = ["example.com", "domain.com"]
            .iter()
            .flat_map(|z| [format!("*=*.{z}"), format!("*=@{z}")])
            .collect();
        HostPolicy::parse(&entries).unwrap()
    }

    fn lbs() -> HashMap<String, LoadBalancer> {
        let lb = |d| LoadBalancer {
            canonical_zone_id: "Z32O12XQLNTSW2".into(),
            dualstack: d,
            ipv6_only: false,
        };
        HashMap::from([(LB.to_owned(), lb(false)), (LB2.to_owned(), lb(true))])
    }

    fn alias(host: &str, rtype: &str, target: &str) -> RecordSet {
        RecordSet {
            name: host.into(),
            rtype: rtype.into(),
            ttl: None,
            values: vec![],
            alias: Some(AliasTarget {
                zone_id: "Z32O12XQLNTSW2".into(),
                dns_name: target.into(),
                evaluate_health: false,
            }),
            routing: None,
        }
    }

    fn plain(host: &str, rtype: &str, value: &str) -> RecordSet {
        RecordSet {
            name: host.into(),
            rtype: rtype.into(),
            ttl: Some(300),
            values: vec![value.into()],
            alias: None,
            routing: None,
        }
    }

    fn ours(host: &str) -> RecordSet {
        plain(
            &owner_name(host),
            "TXT",
            &owner_txt("bk", &ep(host, LB, RecordKind::Alias)),
        )
    }

    fn plan(endpoints: &[Endpoint], existing: &[RecordSet], policy: Policy) -> ZonePlan {
        let lbs = lbs();
        let complete = BTreeSet::from(["prod".to_owned()]);
        plan_zone(&PlanInput {
            zone: "example.com",
            endpoints,
            existing,
            load_balancers: &lbs,
            owner: "bk",
            policy,
            adopt: &[],
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        })
    }

    fn created(changes: Vec<DnsChange>) -> HostChanges {
        HostChanges {
            host: changes[0].record().name.clone(),
            outcome: Outcome::Created,
            changes,
        }
    }

    /// The plan's changes as Route53 batches, each a flat list.
    fn batched(p: &ZonePlan) -> Vec<Vec<DnsChange>> {
        batches(p.hosts.clone())
            .into_iter()
            .map(|b| b.into_iter().flat_map(|h| h.changes).collect())
            .collect()
    }

    fn actions(p: &ZonePlan) -> Vec<String> {
        batched(p)
            .iter()
            .flatten()
            .map(|c| {
                let (a, r) = match c {
                    DnsChange::Create(r) => ("CREATE", r),
                    DnsChange::Upsert(r) => ("UPSERT", r),
                    DnsChange::Delete(r) => ("DELETE", r),
                };
                format!("{a} {} {}", r.rtype, r.name)
            })
            .collect()
    }

    fn plan_in(zone: &str, endpoints: &[Endpoint]) -> ZonePlan {
        let (none, complete) = (HashMap::new(), BTreeSet::from(["prod".to_owned()]));
        plan_zone(&PlanInput {
            zone,
            endpoints,
            existing: &[],
            load_balancers: &none,
            owner: "bk",
            policy: Policy::Sync,
            adopt: &[],
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        })
    }

    /// The seed's scenario: a Classic Load Balancer (ELBv2 cannot see it) for the apex and a
    /// subdomain. It used to become two CNAMEs, one at the apex, so Route53 refused the batch.
    #[test]
    fn a_classic_load_balancer_gives_apex_and_subdomain_alias_records_in_one_batch() {
        let classic = "default-1854330541.ap-northeast-1.elb.amazonaws.com";
        let p = plan_in(
            "domain.com",
            &[
                ep("domain.com", classic, RecordKind::Alias),
                ep("api.domain.com", classic, RecordKind::Alias),
            ],
        );
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        assert_eq!(batched(&p).len(), 1);
        let batch = &batched(&p)[0];
        let records: Vec<&RecordSet> = batch.iter().map(DnsChange::record).collect();
        let aliases: Vec<(&str, &str)> = records
            .iter()
            .filter(|r| r.rtype == "A")
            .map(|r| (r.name.as_str(), r.alias.as_ref().unwrap().zone_id.as_str()))
            .collect();
        assert_eq!(
            aliases,
            [
                ("api.domain.com", "Z14GRHDCWA56QT"),
                ("domain.com", "Z14GRHDCWA56QT")
            ]
        );
        assert!(records.iter().all(|r| r.rtype != "CNAME"), "{records:?}");
    }

    #[test]
    fn an_nlb_in_another_region_and_account_is_aliased_from_the_table() {
        for (lb, zone) in [
            ("k8s-a-1.elb.us-east-1.amazonaws.com", "Z26RNL4JYFTOTI"),
            ("k8s-a-1.elb.eu-central-1.amazonaws.com", "Z3F0SRJ5LGBH90"),
            ("k8s-a-1.elb.ap-southeast-2.amazonaws.com", "ZCT6FZBF4DROD"),
            ("k8s-web-1.us-west-2.elb.amazonaws.com", "Z1H1FL5HABSF5"),
        ] {
            let p = plan_in(
                "example.com",
                &[ep("api.example.com", lb, RecordKind::Alias)],
            );
            let a = batched(&p)[0]
                .iter()
                .map(|c| c.record().clone())
                .find(|r| r.rtype == "A")
                .unwrap();
            assert_eq!(a.alias.as_ref().unwrap().zone_id, zone, "{lb}");
        }
    }

    #[test]
    fn the_apex_never_gets_a_cname_and_the_rest_of_the_zone_still_goes_through() {
        let p = plan_in(
            "domain.com",
            &[
                ep(
                    "domain.com",
                    "ingress.other-cloud.example.net",
                    RecordKind::Alias,
                ),
                ep(
                    "www.domain.com",
                    "ingress.other-cloud.example.net",
                    RecordKind::Alias,
                ),
                ep("shop.domain.com", LB, RecordKind::Cname),
            ],
        );
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].host, "domain.com");
        assert!(
            p.conflicts[0].reason.contains("apex"),
            "{}",
            p.conflicts[0].reason
        );
        let names: Vec<String> = actions(&p);
        assert!(
            !names.iter().any(|a| a.ends_with(" domain.com")),
            "{names:?}"
        );
        assert!(
            names.contains(&"CREATE CNAME www.domain.com".to_owned()),
            "{names:?}"
        );
        // A CNAME asked for at the apex, to a load balancer: it gets the alias instead.
        let p = plan_in("domain.com", &[ep("domain.com", LB, RecordKind::Cname)]);
        assert!(p.conflicts.is_empty());
        assert_eq!(
            actions(&p),
            ["CREATE A domain.com", "CREATE TXT _bridgekeeper.domain.com"]
        );
    }

    #[test]
    fn a_new_host_gets_an_alias_record_and_its_ownership_txt_together() {
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &[],
            Policy::UpsertOnly,
        );
        assert_eq!(p.hosts_with(Outcome::Created), ["api.example.com"]);
        assert_eq!(batched(&p).len(), 1);
        assert_eq!(
            actions(&p),
            [
                "CREATE A api.example.com",
                "CREATE TXT _bridgekeeper.api.example.com"
            ]
        );
        let batch = &batched(&p)[0];
        let txt = batch[1].record();
        assert_eq!(
            txt.values,
            ["\"heritage=bridgekeeper,owner=bk,cluster=prod,source=ingress/shop/api\""]
        );
    }

    #[test]
    fn a_dualstack_load_balancer_also_gets_aaaa_and_a_non_elb_target_a_cname() {
        let p = plan(
            &[ep("v6.example.com", LB2, RecordKind::Alias)],
            &[],
            Policy::UpsertOnly,
        );
        assert_eq!(
            actions(&p)[..2],
            ["CREATE A v6.example.com", "CREATE AAAA v6.example.com"]
        );
        let p = plan(
            &[ep(
                "ext.example.com",
                "edge.cdn.example.net",
                RecordKind::Alias,
            )],
            &[],
            Policy::UpsertOnly,
        );
        assert_eq!(actions(&p)[0], "CREATE CNAME ext.example.com");
        assert_eq!(batched(&p)[0][0].record().ttl, Some(300));
    }

    #[test]
    fn nothing_to_change_makes_no_batch() {
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &existing,
            Policy::Sync,
        );
        assert_eq!(p.unchanged, ["api.example.com"]);
        assert!(batched(&p).is_empty());
    }

    #[test]
    fn a_moved_load_balancer_upserts_the_owned_record() {
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let p = plan(
            &[ep("api.example.com", LB2, RecordKind::Alias)],
            &existing,
            Policy::UpsertOnly,
        );
        assert_eq!(p.hosts_with(Outcome::Updated), ["api.example.com"]);
        assert_eq!(
            actions(&p),
            ["UPSERT A api.example.com", "CREATE AAAA api.example.com"]
        );
    }

    #[test]
    fn a_type_change_deletes_the_old_and_creates_the_new_in_one_batch() {
        let existing = [
            plain("api.example.com", "CNAME", LB),
            ours("api.example.com"),
        ];
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &existing,
            Policy::Sync,
        );
        assert_eq!(batched(&p).len(), 1);
        assert_eq!(
            actions(&p),
            ["DELETE CNAME api.example.com", "CREATE A api.example.com"]
        );
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Cname)],
            &existing,
            Policy::Sync,
        );
        assert_eq!(
            actions(&p),
            ["DELETE A api.example.com", "CREATE CNAME api.example.com"]
        );
    }

    #[test]
    fn a_type_change_under_upsert_only_is_held_not_deleted() {
        let existing = [
            plain("api.example.com", "CNAME", LB),
            ours("api.example.com"),
        ];
        for policy in [Policy::UpsertOnly, Policy::CreateOnly] {
            let p = plan(
                &[ep("api.example.com", LB, RecordKind::Alias)],
                &existing,
                policy,
            );
            assert!(batched(&p).is_empty(), "{policy:?}: {:?}", actions(&p));
            let text = format!("{p:?}");
            assert!(text.contains("only the sync policy deletes"), "{text}");
        }
    }

    #[test]
    fn a_foreign_record_is_never_touched_and_is_reported() {
        let p = plan(
            &[ep("www.example.com", LB, RecordKind::Alias)],
            &[plain("www.example.com", "CNAME", "old.example.net")],
            Policy::Sync,
        );
        assert!(batched(&p).is_empty());
        assert_eq!(p.conflicts[0].host, "www.example.com");
        assert!(
            p.conflicts[0]
                .reason
                .contains("existing CNAME record with no ownership record"),
            "{:?}",
            p.conflicts
        );
        let theirs = plain(
            &owner_name("api.example.com"),
            "TXT",
            "\"heritage=bridgekeeper,owner=other-stack,cluster=x,source=y\"",
        );
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &[alias("api.example.com", "A", LB2), theirs.clone()],
            Policy::Sync,
        );
        assert!(batched(&p).is_empty());
        assert!(p.conflicts[0].reason.contains("owner \"other-stack\""));
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &[theirs],
            Policy::Sync,
        );
        assert!(
            batched(&p).is_empty(),
            "another owner's TXT alone still marks the name as taken"
        );
        let weighted = RecordSet {
            routing: Some(Routing {
                set_identifier: Some("blue".into()),
                weight: Some(10),
                ..Routing::default()
            }),
            ..alias("w.example.com", "A", LB)
        };
        let p = plan(
            &[ep("w.example.com", LB, RecordKind::Alias)],
            &[weighted, ours("w.example.com")],
            Policy::Sync,
        );
        assert_eq!(p.conflicts.len(), 1);
    }

    /// A claimant from `namespace`/`name` for `host` at `target`, created at `created`.
    fn claim(host: &str, target: &str, namespace: &str, name: &str, created: i64) -> Endpoint {
        Endpoint {
            source: format!("prod/ingress/{namespace}/{name}"),
            namespace: namespace.into(),
            created: Some(created),
            ..ep(host, target, RecordKind::Alias)
        }
    }

    /// The review's hijack: a tenant's Ingress in a namespace that sorts first (and even one
    /// older than the owner's, e.g. an old Ingress edited to add the host) names a host another
    /// team's Ingress owns. It used to win by sort order, be reported and applied.
    #[test]
    fn a_host_stays_with_its_owner_while_the_owner_still_wants_it() {
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let victim = claim("api.example.com", LB, "shop", "api", 1_700_000_000);
        let attacker = claim("api.example.com", LB2, "aaa", "evil", 1_600_000_000);
        for policy in [Policy::Sync, Policy::UpsertOnly] {
            let p = plan(&[attacker.clone(), victim.clone()], &existing, policy);
            assert!(batched(&p).is_empty(), "{policy:?}: {:?}", actions(&p));
            assert_eq!(p.unchanged, ["api.example.com"]);
            assert_eq!(p.conflicts.len(), 1);
            assert!(
                p.conflicts[0]
                    .reason
                    .contains("prod/ingress/aaa/evil asks for it")
                    && p.conflicts[0]
                        .reason
                        .contains("stays with prod/ingress/shop/api"),
                "{:?}",
                p.conflicts
            );
        }
    }

    #[test]
    fn among_new_claimants_the_oldest_wins_whatever_its_name() {
        let older = claim("api.example.com", LB, "shop", "api", 1_700_000_000);
        let newer = claim("api.example.com", LB2, "aaa", "evil", 1_700_000_060);
        let p = plan(&[newer, older], &[], Policy::Sync);
        assert_eq!(p.hosts_with(Outcome::Created), ["api.example.com"]);
        assert_eq!(
            batched(&p)[0][0].record().alias.as_ref().unwrap().dns_name,
            LB
        );
        assert!(actions(&p).contains(&"CREATE TXT _bridgekeeper.api.example.com".to_owned()));
        let txt = batched(&p)[0]
            .iter()
            .map(|c| c.record().clone())
            .find(|r| r.rtype == "TXT")
            .unwrap();
        assert!(txt.values[0].contains("source=ingress/shop/api"), "{txt:?}");
        assert!(p.conflicts[0].reason.contains("prod/ingress/aaa/evil"));
    }

    #[test]
    fn claimants_equally_old_that_disagree_get_nothing() {
        let a = claim("api.example.com", LB, "shop", "api", 1_700_000_000);
        let b = claim("api.example.com", LB2, "aaa", "evil", 1_700_000_000);
        let p = plan(&[a.clone(), b], &[], Policy::Sync);
        assert!(batched(&p).is_empty());
        assert!(p.conflicts[0].reason.contains("same second"));
        // Two sources of one load balancer (an ALB ingress group) are one claim, not a conflict.
        let same = claim("api.example.com", LB, "shop", "api-paths", 1_700_000_000);
        let p = plan(&[a, same], &[], Policy::Sync);
        assert_eq!(p.hosts_with(Outcome::Created), ["api.example.com"]);
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    }

    #[test]
    fn a_host_whose_owner_is_gone_goes_to_the_next_claimant() {
        let mut gone = ours("api.example.com");
        gone.values = vec![owner_txt(
            "bk",
            &claim("api.example.com", LB, "shop", "old", 1),
        )];
        let existing = [alias("api.example.com", "A", LB), gone];
        let next = claim("api.example.com", LB2, "shop", "api", 1_700_000_000);
        let p = plan(&[next], &existing, Policy::Sync);
        assert_eq!(p.hosts_with(Outcome::Updated), ["api.example.com"]);
        assert!(actions(&p).contains(&"UPSERT TXT _bridgekeeper.api.example.com".to_owned()));
    }

    #[test]
    fn an_owner_that_could_not_be_read_keeps_its_host() {
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let attacker = claim("api.example.com", LB2, "aaa", "evil", 1);
        let mut mine = attacker.clone();
        mine.cluster = "dev".into();
        mine.source = "dev/ingress/aaa/evil".into();
        let lbs = lbs();
        // The owner's cluster (prod) could not be read; the claimant's (dev) could.
        let complete = BTreeSet::from(["dev".to_owned()]);
        let p = plan_zone(&PlanInput {
            zone: "example.com",
            endpoints: &[mine],
            existing: &existing,
            load_balancers: &lbs,
            owner: "bk",
            adopt: &[],
            policy: Policy::Sync,
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        });
        assert!(batched(&p).is_empty(), "{:?}", actions(&p));
        assert!(p.conflicts[0].reason.contains("could not be read"));
    }

    /// The review's apex and wildcard claims: with no policy, a namespace gets neither; with one,
    /// each namespace gets only its suffixes. A refused claim changes nothing and is reported.
    #[test]
    fn the_apex_wildcards_and_other_teams_names_are_claimed_only_where_the_policy_allows() {
        let lbs = lbs();
        let complete = BTreeSet::from(["prod".to_owned()]);
        let run = |endpoints: &[Endpoint], policy: &HostPolicy| {
            plan_zone(&PlanInput {
                zone: "example.com",
                endpoints,
                existing: &[],
                load_balancers: &lbs,
                owner: "bk",
                adopt: &[],
                policy: Policy::Sync,
                complete_clusters: &complete,
                holds: &Holds::default(),
                ttl: 300,
                host_policy: policy,
                hold_new: None,
                aliasing: unhealthy_free(),
            })
        };
        let apex = claim("example.com", LB2, "shop", "evil", 1);
        let wild = claim("*.example.com", LB2, "shop", "evil", 1);
        let p = run(&[apex.clone(), wild.clone()], &HostPolicy::default());
        assert!(batched(&p).is_empty(), "{:?}", actions(&p));
        assert_eq!(p.conflicts.len(), 2);
        assert!(p.conflicts.iter().all(|c| c.reason.contains("refused")));

        let policy = HostPolicy::parse(&[
            "shop=shop.example.com".to_owned(),
            "payments=pay.example.com".to_owned(),
            "prod/platform=@example.com".to_owned(),
        ])
        .unwrap();
        let theirs = claim("pay.example.com", LB2, "shop", "evil", 1);
        let own = claim("api.shop.example.com", LB, "shop", "api", 1);
        let p = run(&[apex.clone(), wild, theirs, own], &policy);
        assert_eq!(p.hosts_with(Outcome::Created), ["api.shop.example.com"]);
        assert_eq!(p.conflicts.len(), 3, "{:?}", p.conflicts);
        let platform = Endpoint {
            namespace: "platform".into(),
            source: "prod/ingress/platform/www".into(),
            ..apex
        };
        let p = run(&[platform], &policy);
        assert_eq!(p.hosts_with(Outcome::Created), ["example.com"]);
    }

    #[test]
    fn policies_decide_about_updates_and_deletions() {
        let existing = [
            alias("api.example.com", "A", LB),
            ours("api.example.com"),
            alias("gone.example.com", "A", LB),
            ours("gone.example.com"),
            alias("foreign.example.com", "A", LB),
        ];
        let want = [ep("api.example.com", LB2, RecordKind::Alias)];
        let sync = plan(&want, &existing, Policy::Sync);
        assert_eq!(
            (
                sync.hosts_with(Outcome::Updated).len(),
                sync.hosts_with(Outcome::Deleted).as_slice()
            ),
            (1, ["gone.example.com".to_owned()].as_slice())
        );
        assert!(actions(&sync).contains(&"DELETE TXT _bridgekeeper.gone.example.com".to_owned()));
        assert!(!actions(&sync).iter().any(|a| a.contains("foreign")));
        let upsert = plan(&want, &existing, Policy::UpsertOnly);
        assert_eq!(
            (
                upsert.hosts_with(Outcome::Updated).len(),
                upsert.hosts_with(Outcome::Deleted).len()
            ),
            (1, 0)
        );
        let create = plan(&want, &existing, Policy::CreateOnly);
        assert_eq!(
            (create.hosts_with(Outcome::Updated).len(), create.held.len()),
            (0, 1)
        );
        assert!(batched(&create).is_empty());
    }

    #[test]
    fn sync_never_deletes_hosts_of_a_cluster_that_could_not_be_read() {
        let lbs = lbs();
        let existing = [alias("gone.example.com", "A", LB), ours("gone.example.com")];
        let p = plan_zone(&PlanInput {
            zone: "example.com",
            endpoints: &[],
            existing: &existing,
            load_balancers: &lbs,
            owner: "bk",
            adopt: &[],
            policy: Policy::Sync,
            complete_clusters: &BTreeSet::new(),
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        });
        assert!(p.hosts_with(Outcome::Deleted).is_empty() && batched(&p).is_empty());
    }

    #[test]
    fn batches_split_at_the_value_limit_without_splitting_a_host() {
        // Two one-character values per host: 1,000 values is 500 hosts a batch.
        let groups: Vec<HostChanges> = (0..700)
            .map(|i| {
                created(vec![
                    DnsChange::Create(plain(&format!("h{i}"), "CNAME", "t")),
                    DnsChange::Create(plain(&format!("_bridgekeeper.h{i}"), "TXT", "o")),
                ])
            })
            .collect();
        let b = batches(groups);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [500, 200]);
    }

    #[test]
    fn every_record_travels_with_its_ownership_txt() {
        let want: Vec<Endpoint> = (0..2_500)
            .map(|i| {
                ep(
                    &format!("h{i}.example.com"),
                    "t.example.net",
                    RecordKind::Cname,
                )
            })
            .collect();
        let p = plan(&want, &[], Policy::Sync);
        let total: usize = batched(&p).iter().flatten().map(|c| c.weight().1).sum();
        assert_eq!(
            batched(&p).len(),
            total.div_ceil(MAX_BATCH_CHARS),
            "as few batches as the character limit allows"
        );
        for batch in &batched(&p) {
            let names: BTreeSet<&str> = batch
                .iter()
                .map(|c| c.record().name.trim_start_matches(OWNER_PREFIX))
                .collect();
            assert_eq!(
                names.len() * 2,
                batch.len(),
                "every record travels with its TXT"
            );
        }
    }

    #[test]
    fn batches_split_at_the_character_limit_with_upserts_counted_twice() {
        let long = format!("{}.example.net", "x".repeat(200));
        let creates: Vec<HostChanges> = (0..100)
            .map(|i| {
                created(vec![DnsChange::Create(plain(
                    &format!("h{i}"),
                    "CNAME",
                    &long,
                ))])
            })
            .collect();
        let per = long.len();
        assert_eq!(
            batches(creates).len(),
            (100 * per).div_ceil(MAX_BATCH_CHARS)
        );
        let upserts: Vec<HostChanges> = (0..100)
            .map(|i| {
                created(vec![DnsChange::Upsert(plain(
                    &format!("h{i}"),
                    "CNAME",
                    &long,
                ))])
            })
            .collect();
        assert_eq!(
            batches(upserts).len(),
            (100 * 2 * per).div_ceil(MAX_BATCH_CHARS)
        );
    }

    #[test]
    fn a_cname_never_shares_its_name_an_alias_or_a_conflict_instead() {
        let txt = plain("api.example.com", "TXT", "\"google-site-verification=abc\"");
        let mx = plain("api.example.com", "MX", "10 mail.example.net");
        // To a load balancer: the alias A can share the name, so it is used.
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Cname)],
            std::slice::from_ref(&txt),
            Policy::Sync,
        );
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        assert_eq!(
            actions(&p),
            [
                "CREATE A api.example.com",
                "CREATE TXT _bridgekeeper.api.example.com"
            ]
        );
        // To anything else: nothing is submitted, and the reason names what is there.
        let p = plan(
            &[ep(
                "api.example.com",
                "web.other.example.net",
                RecordKind::Alias,
            )],
            &[txt, mx],
            Policy::Sync,
        );
        assert!(batched(&p).is_empty());
        assert!(
            p.conflicts[0].reason.contains("MX/TXT"),
            "{:?}",
            p.conflicts
        );
    }

    #[test]
    fn a_foreign_record_at_the_registry_name_is_a_conflict_not_a_create() {
        for theirs in [
            plain("_bridgekeeper.api.example.com", "TXT", "\"v=spf1 -all\""),
            plain("_bridgekeeper.api.example.com", "CNAME", "x.example.net"),
        ] {
            let p = plan(
                &[ep("api.example.com", LB, RecordKind::Alias)],
                std::slice::from_ref(&theirs),
                Policy::Sync,
            );
            assert!(batched(&p).is_empty(), "{theirs:?}");
            assert!(
                p.conflicts[0].reason.contains("did not write"),
                "{:?}",
                p.conflicts
            );
        }
    }

    #[test]
    fn ownership_values_keep_each_txt_string_within_255_characters() {
        let mut e = ep("api.example.com", LB, RecordKind::Alias);
        e.source = format!("prod/ingress/{}/{}", "n".repeat(63), "a".repeat(253));
        let value = owner_txt("bk", &e);
        let strings: Vec<&str> = value.split('"').skip(1).step_by(2).collect();
        assert!(strings.len() > 1, "{value}");
        assert!(strings.iter().all(|s| s.len() <= MAX_TXT_STRING), "{value}");
        let o = parse_owner(&value).unwrap();
        assert_eq!(
            (o.owner.as_str(), o.cluster.as_str(), o.source.len()),
            ("bk", "prod", e.source.len() - "prod/".len())
        );
        // Owned by that value: recognised as ours on the next run.
        let existing = [
            alias("api.example.com", "A", LB),
            plain(&owner_name("api.example.com"), "TXT", &value),
        ];
        assert!(batched(&plan(&[e], &existing, Policy::Sync)).is_empty());
    }

    #[test]
    fn records_with_a_routing_policy_are_left_whole() {
        let weighted = |id: &str, target: &str| RecordSet {
            routing: Some(Routing {
                set_identifier: Some(id.into()),
                weight: Some(50),
                health_check_id: Some("hc-1".into()),
                ..Routing::default()
            }),
            ..alias("api.example.com", "A", target)
        };
        // Someone's blue/green pair at a host an Ingress asks for: untouched, reported.
        let pair = [weighted("blue", LB), weighted("green", LB2)];
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &pair,
            Policy::Sync,
        );
        assert!(batched(&p).is_empty());
        assert!(p.conflicts[0].reason.contains("routing policy"));
        // A host of ours whose source is gone: only what dns-sync wrote is deleted.
        let mut existing = pair.to_vec();
        existing.push(ours("api.example.com"));
        let p = plan(&[], &existing, Policy::Sync);
        assert_eq!(actions(&p), ["DELETE TXT _bridgekeeper.api.example.com"]);
    }

    #[test]
    fn a_skipped_source_holds_the_deletion_of_every_host_it_may_own() {
        let lbs = lbs();
        let complete = BTreeSet::from(["prod".to_owned()]);
        let existing = [
            alias("api.example.com", "A", LB),
            ours("api.example.com"),
            alias("old.example.com", "A", LB),
            ours("old.example.com"),
        ];
        let policy = open();
        let input = |holds| PlanInput {
            zone: "example.com",
            endpoints: &[],
            existing: &existing,
            load_balancers: &lbs,
            owner: "bk",
            adopt: &[],
            policy: Policy::Sync,
            complete_clusters: &complete,
            holds,
            ttl: 300,
            host_policy: &policy,
            hold_new: None,
            aliasing: unhealthy_free(),
        };
        // Its annotation broke: the source still exists, its records stay.
        let by_source = Holds::from_skips(&[Skip {
            source: "prod/ingress/shop/api".into(),
            reason: "bridgekeeper.io/ttl: \"soon\" is not a number of seconds".into(),
            hosts: vec![],
        }]);
        let p = plan_zone(&input(&by_source));
        assert!(p.hosts.is_empty(), "{:?}", p.hosts);
        assert_eq!(p.held.len(), 2);
        assert!(p.held[0].reason.contains("was skipped"));
        // A new source waiting for its load balancer names a host another source owned.
        let by_host = Holds::from_skips(&[Skip {
            source: "prod/ingress/shop/api-v2".into(),
            reason: "no load balancer hostname in its status yet".into(),
            hosts: vec!["old.example.com".into()],
        }]);
        let mut existing_other = existing.to_vec();
        existing_other[1] = plain(
            &owner_name("api.example.com"),
            "TXT",
            "\"heritage=bridgekeeper,owner=bk,cluster=prod,source=ingress/shop/gone\"",
        );
        let p = plan_zone(&PlanInput {
            existing: &existing_other,
            ..input(&by_host)
        });
        assert_eq!(p.hosts_with(Outcome::Deleted), ["api.example.com"]);
        assert_eq!(p.held[0].host, "old.example.com");
    }

    #[test]
    fn the_safety_valve_trips_over_the_limit_and_holds_every_deletion() {
        let mut existing = Vec::new();
        for i in 0..12 {
            let host = format!("h{i}.example.com");
            existing.push(alias(&host, "A", LB));
            existing.push(ours(&host));
        }
        let mut p = plan(&[], &existing, Policy::Sync);
        assert_eq!(p.hosts_with(Outcome::Deleted).len(), 12);
        assert_eq!(owned_hosts(&existing, "bk"), 12);
        assert_eq!(DeletionLimit::Hosts(12).exceeded(12, 12), None);
        let reason = DeletionLimit::Hosts(10).exceeded(12, 12).unwrap();
        assert!(reason.contains("MAX_DELETIONS"), "{reason}");
        assert!(DeletionLimit::Percent(50).exceeded(7, 12).is_some());
        assert!(DeletionLimit::Percent(50).exceeded(6, 12).is_none());
        p.hold_deletions(&reason);
        assert!(p.hosts.is_empty() && batched(&p).is_empty());
        assert_eq!(p.held.len(), 12);
    }

    #[test]
    fn an_earlier_owner_id_is_taken_over_for_wanted_hosts_and_never_deleted() {
        let lbs = lbs();
        let complete = BTreeSet::from(["prod".to_owned()]);
        let old = |host: &str| {
            plain(
                &owner_name(host),
                "TXT",
                &owner_txt("stack", &ep(host, LB, RecordKind::Alias)),
            )
        };
        let existing = [
            alias("api.example.com", "A", LB),
            old("api.example.com"),
            alias("gone.example.com", "A", LB),
            old("gone.example.com"),
        ];
        let p = plan_zone(&PlanInput {
            zone: "example.com",
            endpoints: &[ep("api.example.com", LB, RecordKind::Alias)],
            existing: &existing,
            load_balancers: &lbs,
            owner: "stack-eu-west-1",
            adopt: &["stack".to_owned()],
            policy: Policy::Sync,
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        });
        assert_eq!(actions(&p), ["UPSERT TXT _bridgekeeper.api.example.com"]);
        assert!(p.conflicts.is_empty() && p.hosts_with(Outcome::Deleted).is_empty());
    }

    #[test]
    fn a_dualstack_annotation_adds_aaaa_without_asking_elbv2() {
        let mut e = ep(
            "v6.example.com",
            "k8s-a-1.elb.us-east-1.amazonaws.com",
            RecordKind::Alias,
        );
        assert!(!needs_lookup(&e));
        e.dualstack = true;
        let p = plan_in("example.com", &[e]);
        assert_eq!(
            actions(&p)[..2],
            ["CREATE A v6.example.com", "CREATE AAAA v6.example.com"]
        );
        assert!(needs_lookup(&ep(
            "x.example.com",
            "lb.example.net",
            RecordKind::Alias
        )));
        assert!(!needs_lookup(&ep(
            "x.example.com",
            "lb.example.net",
            RecordKind::Cname
        )));
    }

    #[test]
    fn same_name_public_and_private_zones_both_hold_the_host() {
        let z = |id: &str, private| Zone {
            id: id.into(),
            name: "example.com".into(),
            private,
            account: None,
        };
        let zones = [z("ZPUB", false), z("ZPRIV", true)];
        let ids: Vec<&str> = zones_for("api.example.com", &zones)
            .iter()
            .map(|z| z.id.as_str())
            .collect();
        assert_eq!(ids, ["ZPUB", "ZPRIV"]);
        let public = ZoneFilter {
            domains: vec![],
            zone_type: ZoneType::Public,
            zone_ids: vec![],
        };
        let allowed: Vec<Zone> = zones.iter().filter(|x| public.allows(x)).cloned().collect();
        assert_eq!(zones_for("api.example.com", &allowed).len(), 1);
    }

    /// The planner with this zone's aliasing: the targets' own zones, no DescribeLoadBalancers.
    fn plan_with(aliasing: Aliasing, existing: &[RecordSet], endpoints: &[Endpoint]) -> ZonePlan {
        let (none, complete) = (HashMap::new(), BTreeSet::from(["prod".to_owned()]));
        plan_zone(&PlanInput {
            zone: "example.com",
            endpoints,
            existing,
            load_balancers: &none,
            owner: "bk",
            policy: Policy::Sync,
            adopt: &[],
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing,
        })
    }

    fn written(p: &ZonePlan, rtype: &str) -> Vec<AliasTarget> {
        p.hosts
            .iter()
            .flat_map(|h| &h.changes)
            .filter_map(|c| match c {
                DnsChange::Create(r) | DnsChange::Upsert(r) if r.rtype == rtype => r.alias.clone(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn load_balancer_aliases_evaluate_target_health_unless_the_setting_says_not() {
        let nlb = "k8s-shop-nlb-0123456789.elb.ca-west-1.amazonaws.com";
        let eps = [ep("api.example.com", nlb, RecordKind::Alias)];
        let p = plan_with(Aliasing::default(), &[], &eps);
        let a = &written(&p, "A")[0];
        assert_eq!(
            (a.zone_id.as_str(), a.evaluate_health),
            ("Z02754302KBB00W2LKWZ9", true)
        );
        let off = Aliasing {
            evaluate_health: false,
            ..Aliasing::default()
        };
        assert!(!written(&plan_with(off, &[], &eps), "A")[0].evaluate_health);
        // A record written before the setting existed is brought to it, in place.
        let before = alias("api.example.com", "A", nlb);
        let mut before = before;
        before.alias.as_mut().unwrap().zone_id = "Z02754302KBB00W2LKWZ9".into();
        let p = plan_with(
            Aliasing::default(),
            &[before, ours("api.example.com")],
            &eps,
        );
        assert_eq!(actions(&p), ["UPSERT A api.example.com"]);
    }

    #[test]
    fn cloudfront_is_aliased_without_health_and_never_in_a_private_zone() {
        let cf = "d111111abcdef8.cloudfront.net";
        let eps = [
            ep("example.com", cf, RecordKind::Alias),
            ep("www.example.com", cf, RecordKind::Alias),
        ];
        let p = plan_with(Aliasing::default(), &[], &eps);
        let aliases = written(&p, "A");
        assert_eq!(aliases.len(), 2);
        assert!(
            aliases
                .iter()
                .all(|a| a.zone_id == "Z2FDTNDATAQYW2" && !a.evaluate_health),
            "{aliases:?}"
        );
        // Route53 refuses CloudFront aliases in private zones: a CNAME below the apex, and
        // nothing (a conflict) at the apex, where a CNAME cannot stand.
        let private = Aliasing {
            private_zone: true,
            ..Aliasing::default()
        };
        let p = plan_with(private, &[], &eps);
        assert_eq!(
            actions(&p),
            [
                "CREATE CNAME www.example.com",
                "CREATE TXT _bridgekeeper.www.example.com"
            ]
        );
        assert_eq!(p.conflicts[0].host, "example.com");
        assert!(
            p.conflicts[0]
                .reason
                .contains("not a target it can alias here")
        );
    }

    #[test]
    fn global_accelerators_and_vpc_endpoints_are_aliased_by_their_hostnames() {
        let eps = [
            ep(
                "ga.example.com",
                "a1234567890abcdef.awsglobalaccelerator.com",
                RecordKind::Alias,
            ),
            ep(
                "example.com",
                "vpce-0123456789abcdef0-abcdefgh.vpce-svc-0123456789abcdef0.eu-west-1.vpce.amazonaws.com",
                RecordKind::Alias,
            ),
        ];
        let p = plan_with(Aliasing::default(), &[], &eps);
        let mut zones: Vec<(String, bool)> = written(&p, "A")
            .into_iter()
            .map(|a| (a.zone_id, a.evaluate_health))
            .collect();
        zones.sort();
        assert_eq!(
            zones,
            [
                ("Z2BJ6XQ5FK7U4H".into(), false),
                ("Z38GZ743OKFT7T".into(), false)
            ]
        );
    }

    /// HTTPS and SVCB (RFC 9460) records, and types the planner has never heard of, live beside
    /// an alias A/AAAA: read without error, never changed, and no reason to hold ours back.
    #[test]
    fn https_svcb_and_unknown_records_beside_ours_are_left_alone() {
        let host = "api.example.com";
        let eps = [ep(host, LB, RecordKind::Alias)];
        let others = [
            plain(host, "HTTPS", "1 . alpn=h2,h3"),
            plain(host, "SVCB", "1 svc.example.com."),
            plain(host, "RESINFO", "qnamemin"),
        ];
        let p = plan_with(unhealthy_free(), &others, &eps);
        assert_eq!(
            actions(&p),
            [
                "CREATE A api.example.com",
                "CREATE TXT _bridgekeeper.api.example.com"
            ]
        );
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        // Ours present too: nothing to do, the others untouched.
        let mut existing = others.to_vec();
        existing.extend([alias(host, "A", LB), ours(host)]);
        let p = plan_with(unhealthy_free(), &existing, &eps);
        assert!(actions(&p).is_empty(), "{:?}", actions(&p));
        assert_eq!(p.unchanged, [host]);
    }

    /// ELB's "dualstack without public IPv4 ... to support IPv6 addresses only": an A alias
    /// would send IPv4 clients where no public IPv4 address answers.
    #[test]
    fn a_load_balancer_without_public_ipv4_gets_aaaa_and_no_a() {
        let host = "v6.example.com";
        let mut e = ep(host, LB, RecordKind::Alias);
        e.dualstack = true;
        e.ipv6_only = true;
        let p = plan_with(unhealthy_free(), &[], std::slice::from_ref(&e));
        assert_eq!(
            actions(&p),
            [
                "CREATE AAAA v6.example.com",
                "CREATE TXT _bridgekeeper.v6.example.com"
            ]
        );
        // A load balancer that was dualstack before: its A goes (sync), or is held (upsert-only).
        let existing = [alias(host, "A", LB), alias(host, "AAAA", LB), ours(host)];
        let p = plan_with(unhealthy_free(), &existing, std::slice::from_ref(&e));
        assert_eq!(actions(&p), ["DELETE A v6.example.com"]);
        let (none, complete) = (HashMap::new(), BTreeSet::from(["prod".to_owned()]));
        let held = plan_zone(&PlanInput {
            zone: "example.com",
            endpoints: std::slice::from_ref(&e),
            existing: &existing,
            load_balancers: &none,
            owner: "bk",
            policy: Policy::UpsertOnly,
            adopt: &[],
            complete_clusters: &complete,
            holds: &Holds::default(),
            ttl: 300,
            host_policy: &open(),
            hold_new: None,
            aliasing: unhealthy_free(),
        });
        assert!(actions(&held).is_empty());
        assert!(
            held.held[0].reason.contains("its A record must be deleted"),
            "{:?}",
            held.held
        );
    }
}
