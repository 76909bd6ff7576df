//! Pure decisions: which hosts should point where, which zone holds each, and the smallest set
//! of Route53 changes that gets there without touching a record Bridgekeeper does not own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

pub const OPT_ANNOTATION: &str = "bridgekeeper.io/dns";
pub const TYPE_ANNOTATION: &str = "bridgekeeper.io/record-type";
pub const TTL_ANNOTATION: &str = "bridgekeeper.io/ttl";
pub const HOSTNAME_ANNOTATION: &str = "bridgekeeper.io/hostname";
/// The ownership TXT record of `api.example.com` is `_bridgekeeper.api.example.com`: a TXT
/// record cannot share its name with a CNAME, so it lives one label down.
pub const OWNER_PREFIX: &str = "_bridgekeeper.";

/// Route53's limits on one ChangeResourceRecordSets call (an UPSERT counts twice).
pub const MAX_BATCH_VALUES: usize = 1_000;
pub const MAX_BATCH_CHARS: usize = 32_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Alias A (and AAAA for a dualstack load balancer) to an ELB.
    Alias,
    Cname,
}

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

/// Defaults for records; annotations override them per Ingress or Service.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub kind: RecordKind,
    pub ttl: i64,
}

/// One host that should point at one load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub target: String,
    /// `<cluster>/ingress/<namespace>/<name>` or `<cluster>/service/...`.
    pub source: String,
    pub cluster: String,
    pub kind: RecordKind,
    pub ttl: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub source: String,
    pub reason: String,
}

/// `API.Example.com.` → `api.example.com`; Route53's `\052` back to `*`. `None` if not a name.
pub fn normalize(name: &str) -> Option<String> {
    let n = name
        .trim()
        .trim_end_matches('.')
        .replace("\\052", "*")
        .to_ascii_lowercase();
    let ok =
        !n.is_empty() && n.len() <= 253 && n.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    ok.then_some(n)
}

fn overrides(
    annotations: Option<&BTreeMap<String, String>>,
    defaults: &Defaults,
    source: &str,
) -> Result<Option<(RecordKind, i64)>, Skip> {
    let get = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let skip = |reason: String| Skip {
        source: source.to_owned(),
        reason,
    };
    if get(OPT_ANNOTATION).as_deref() == Some("false") {
        return Ok(None);
    }
    let kind = match get(TYPE_ANNOTATION).as_deref() {
        None => defaults.kind,
        Some("alias") | Some("a") => RecordKind::Alias,
        Some("cname") => RecordKind::Cname,
        Some(other) => {
            return Err(skip(format!(
                "{TYPE_ANNOTATION}: {other:?} is not alias or cname"
            )));
        }
    };
    let ttl = match get(TTL_ANNOTATION) {
        None => defaults.ttl,
        Some(v) => match v.parse::<i64>() {
            Ok(t) if (0..=2_147_483_647).contains(&t) => t,
            _ => {
                return Err(skip(format!(
                    "{TTL_ANNOTATION}: {v:?} is not a number of seconds"
                )));
            }
        },
    };
    Ok(Some((kind, ttl)))
}

/// `resource` is `ingress` or `service`; the source reads `<cluster>/<resource>/<namespace>/<name>`.
fn endpoints(
    cluster: &str,
    resource: &str,
    meta: &ObjectMeta,
    hosts: Vec<String>,
    targets: Vec<String>,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let source = format!(
        "{cluster}/{resource}/{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    );
    let settings = overrides(meta.annotations.as_ref(), defaults, &source);
    let (kind, ttl) = match settings {
        Ok(Some(s)) => s,
        Ok(None) => return (vec![], vec![]),
        Err(skip) => return (vec![], vec![skip]),
    };
    if hosts.is_empty() {
        return (vec![], vec![]);
    }
    // A CNAME takes one target; the first in sorted order keeps the choice stable between runs.
    let Some(target) = targets.into_iter().filter_map(|t| normalize(&t)).min() else {
        let reason = "no load balancer hostname in its status yet".into();
        return (vec![], vec![Skip { source, reason }]);
    };
    let mut skipped = Vec::new();
    let mut valid = BTreeSet::new();
    for h in hosts {
        match normalize(&h) {
            Some(host) => {
                valid.insert(host);
            }
            None => skipped.push(Skip {
                source: source.clone(),
                reason: format!("{h:?} is not a valid DNS name"),
            }),
        }
    }
    let out = valid
        .into_iter()
        .map(|host| Endpoint {
            host,
            target: target.clone(),
            source: source.clone(),
            cluster: cluster.to_owned(),
            kind,
            ttl,
        })
        .collect();
    (out, skipped)
}

pub fn from_ingress(
    cluster: &str,
    ing: &Ingress,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let hosts: BTreeSet<String> = ing
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .filter_map(|r| r.host.clone())
        .collect();
    let targets = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.hostname)
        .collect();
    endpoints(
        cluster,
        "ingress",
        &ing.metadata,
        hosts.into_iter().collect(),
        targets,
        defaults,
    )
}

/// A Service of type LoadBalancer names its hosts in `bridgekeeper.io/hostname` (comma-separated).
pub fn from_service(
    cluster: &str,
    svc: &Service,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let meta = &svc.metadata;
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let Some(hosts) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTNAME_ANNOTATION))
        .filter(|_| is_lb)
    else {
        return (vec![], vec![]);
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let targets = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.hostname)
        .collect();
    endpoints(cluster, "service", meta, hosts, targets, defaults)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zone {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    /// Normalized: no trailing dot.
    pub name: String,
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneType {
    Public,
    Private,
    Any,
}

/// Which zones dns-sync may write to.
#[derive(Debug, Clone)]
pub struct ZoneFilter {
    pub domains: Vec<String>,
    pub zone_type: ZoneType,
    pub zone_ids: Vec<String>,
}

fn under(name: &str, domain: &str) -> bool {
    name == domain || name.ends_with(&format!(".{domain}"))
}

impl ZoneFilter {
    pub fn allows(&self, z: &Zone) -> bool {
        let type_ok = match self.zone_type {
            ZoneType::Public => !z.private,
            ZoneType::Private => z.private,
            ZoneType::Any => true,
        };
        let id_ok = self.zone_ids.is_empty() || self.zone_ids.contains(&z.id);
        let domain_ok = self.domains.is_empty()
            || self
                .domains
                .iter()
                .any(|d| under(&z.name, d) || under(d, &z.name));
        type_ok && id_ok && domain_ok
    }

    pub fn allows_host(&self, host: &str) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| under(host, d))
    }
}

/// The zone that holds `host`: the allowed zone with the longest matching name.
pub fn zone_for<'a>(host: &str, zones: &'a [Zone]) -> Option<&'a Zone> {
    zones
        .iter()
        .filter(|z| under(host, &z.name))
        .max_by_key(|z| z.name.len())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasTarget {
    pub zone_id: String,
    /// Normalized.
    pub dns_name: String,
    pub evaluate_health: bool,
}

/// A record set, as Route53 lists it or as dns-sync wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSet {
    /// Normalized.
    pub name: String,
    pub rtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasTarget>,
    /// Weighted, latency, ... records: never ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
}

impl RecordSet {
    fn same_as(&self, other: &RecordSet) -> bool {
        self.rtype == other.rtype
            && self.alias == other.alias
            && self.set_identifier == other.set_identifier
            && (self.alias.is_some() || (self.ttl == other.ttl && self.values == other.values))
    }

    /// (values, characters) toward the batch limits.
    fn weight(&self) -> (usize, usize) {
        match &self.alias {
            Some(a) => (1, a.dns_name.len()),
            None => (
                self.values.len().max(1),
                self.values.iter().map(String::len).sum(),
            ),
        }
    }
}

/// What a load balancer's DNS name resolves to in ELBv2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub canonical_zone_id: String,
    pub dualstack: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "record", rename_all = "UPPERCASE")]
pub enum DnsChange {
    Create(RecordSet),
    Upsert(RecordSet),
    Delete(RecordSet),
}

impl DnsChange {
    pub fn record(&self) -> &RecordSet {
        match self {
            DnsChange::Create(r) | DnsChange::Upsert(r) | DnsChange::Delete(r) => r,
        }
    }

    fn weight(&self) -> (usize, usize) {
        let (v, c) = self.record().weight();
        match self {
            DnsChange::Upsert(_) => (2 * v, 2 * c),
            _ => (v, c),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub host: String,
    pub reason: String,
}

/// One zone's plan: what happens to each host, and the changes in Route53-sized batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZonePlan {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// Owned records that differ but the policy forbids changing.
    pub held: Vec<Conflict>,
    #[serde(skip)]
    pub batches: Vec<Vec<DnsChange>>,
}

impl ZonePlan {
    pub fn changes(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
}

pub fn owner_name(host: &str) -> String {
    format!("{OWNER_PREFIX}{host}")
}

/// `"heritage=bridgekeeper,owner=<owner>,cluster=<c>,source=<s>"` (TXT values are quoted).
pub fn owner_value(owner: &str, ep: &Endpoint) -> String {
    let source = ep
        .source
        .strip_prefix(&format!("{}/", ep.cluster))
        .unwrap_or(&ep.source);
    format!(
        "\"heritage=bridgekeeper,owner={owner},cluster={},source={source}\"",
        ep.cluster
    )
}

/// The owner and cluster a TXT value names, if it is one of ours.
pub fn parse_owner(value: &str) -> Option<(String, String)> {
    let fields: HashMap<&str, &str> = value
        .trim_matches('"')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    (fields.get("heritage") == Some(&"bridgekeeper")).then(|| {
        (
            fields.get("owner").unwrap_or(&"").to_string(),
            fields.get("cluster").unwrap_or(&"").to_string(),
        )
    })
}

const MANAGED_TYPES: [&str; 3] = ["A", "AAAA", "CNAME"];

/// What an alias to `target` needs: ELBv2's answer when the account could read it (it knows
/// whether the load balancer is dualstack), else the published table for the hostname's form
/// (Classic Load Balancers, other accounts' load balancers).
fn load_balancer(target: &str, from_api: &HashMap<String, LoadBalancer>) -> Option<LoadBalancer> {
    from_api.get(target).cloned().or_else(|| {
        crate::elb::canonical(target).map(|c| LoadBalancer {
            canonical_zone_id: c.zone_id.to_owned(),
            dualstack: c.dualstack,
        })
    })
}

fn desired_records(ep: &Endpoint, lb: Option<&LoadBalancer>) -> Vec<RecordSet> {
    match (ep.kind, lb) {
        (RecordKind::Alias, Some(lb)) => {
            let alias = |rtype: &str| RecordSet {
                name: ep.host.clone(),
                rtype: rtype.into(),
                ttl: None,
                values: vec![],
                alias: Some(AliasTarget {
                    zone_id: lb.canonical_zone_id.clone(),
                    dns_name: ep.target.clone(),
                    evaluate_health: false,
                }),
                set_identifier: None,
            };
            let mut out = vec![alias("A")];
            if lb.dualstack {
                out.push(alias("AAAA"));
            }
            out
        }
        // Not an ELB this account knows (or CNAME asked for): a CNAME works for any hostname.
        _ => vec![RecordSet {
            name: ep.host.clone(),
            rtype: "CNAME".into(),
            ttl: Some(ep.ttl),
            values: vec![ep.target.clone()],
            alias: None,
            set_identifier: None,
        }],
    }
}

pub struct PlanInput<'a> {
    /// The zone's name (its apex), lower case, without the final dot.
    pub zone: &'a str,
    pub endpoints: &'a [Endpoint],
    pub existing: &'a [RecordSet],
    pub load_balancers: &'a HashMap<String, LoadBalancer>,
    pub owner: &'a str,
    pub policy: Policy,
    /// Clusters whose sources were all read: only their vanished hosts may be deleted.
    pub complete_clusters: &'a BTreeSet<String>,
    pub ttl: i64,
}

/// The minimal changes for one zone. Each host's changes (records and their ownership TXT) stay
/// together in one batch, so Route53 applies them or none.
pub fn plan_zone(input: &PlanInput) -> ZonePlan {
    let mut plan = ZonePlan::default();
    let mut by_name: HashMap<&str, Vec<&RecordSet>> = HashMap::new();
    for r in input.existing {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    let owner_of = |host: &str| -> Option<(String, String, &RecordSet)> {
        let txt = by_name
            .get(owner_name(host).as_str())?
            .iter()
            .find(|r| r.rtype == "TXT")?;
        txt.values
            .iter()
            .find_map(|v| parse_owner(v))
            .map(|(o, c)| (o, c, *txt))
    };
    let mut groups: Vec<Vec<DnsChange>> = Vec::new();

    // Two sources claiming one host: the first (in source order) wins, the rest are conflicts.
    let mut wanted: BTreeMap<&str, &Endpoint> = BTreeMap::new();
    for ep in input.endpoints {
        match wanted.get(ep.host.as_str()) {
            Some(first) if first.target != ep.target => plan.conflicts.push(Conflict {
                host: ep.host.clone(),
                reason: format!(
                    "claimed by {} and {}; {} is used",
                    first.source, ep.source, first.source
                ),
            }),
            Some(_) => {}
            None => {
                wanted.insert(&ep.host, ep);
            }
        }
    }

    for (host, ep) in &wanted {
        let host = *host;
        let current: Vec<&RecordSet> = by_name
            .get(host)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|r| MANAGED_TYPES.contains(&r.rtype.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let ownership = owner_of(host);
        let ours = ownership.as_ref().is_some_and(|(o, _, _)| o == input.owner);
        if (!current.is_empty() && !ours) || current.iter().any(|r| r.set_identifier.is_some()) {
            let types: BTreeSet<&str> = current.iter().map(|r| r.rtype.as_str()).collect();
            let whose = match &ownership {
                Some((o, _, _)) => format!("owned by {o:?}"),
                None => "with no ownership record".into(),
            };
            plan.conflicts.push(Conflict {
                host: host.to_owned(),
                reason: format!(
                    "existing {} record {whose}; left untouched",
                    types.into_iter().collect::<Vec<_>>().join("/")
                ),
            });
            continue;
        }
        if let Some((o, _, _)) = &ownership
            && o != input.owner
        {
            plan.conflicts.push(Conflict {
                host: host.to_owned(),
                reason: format!("ownership record names owner {o:?}; left untouched"),
            });
            continue;
        }
        let lb = load_balancer(&ep.target, input.load_balancers);
        // RFC 1034: a CNAME cannot share its name with other records, and the apex always has SOA
        // and NS; Route53 rejects the whole batch. The apex gets an alias or nothing.
        if host.trim_end_matches('.') == input.zone
            && (ep.kind == RecordKind::Cname || lb.is_none())
        {
            plan.conflicts.push(Conflict {
                host: host.to_owned(),
                reason: format!(
                    "the zone apex can only be an alias (A/AAAA), never a CNAME, and {} is not a \
                     load balancer it can alias; nothing submitted",
                    ep.target
                ),
            });
            continue;
        }
        let desired = desired_records(ep, lb.as_ref());
        let txt = RecordSet {
            name: owner_name(host),
            rtype: "TXT".into(),
            ttl: Some(input.ttl),
            values: vec![owner_value(input.owner, ep)],
            alias: None,
            set_identifier: None,
        };
        let mut changes = Vec::new();
        if current.is_empty() {
            changes.extend(desired.into_iter().map(DnsChange::Create));
            match &ownership {
                None => changes.push(DnsChange::Create(txt)),
                Some((_, _, old)) if !old.same_as(&txt) => changes.push(DnsChange::Upsert(txt)),
                Some(_) => {}
            }
            plan.created.push(host.to_owned());
            groups.push(changes);
            continue;
        }
        // Owned and present: the smallest change from what is there to what should be.
        for d in &desired {
            match current.iter().find(|c| c.rtype == d.rtype) {
                Some(c) if c.same_as(d) => {}
                Some(_) => changes.push(DnsChange::Upsert(d.clone())),
                None => changes.push(DnsChange::Create(d.clone())),
            }
        }
        // A type change (CNAME ↔ alias A) or a dropped AAAA: delete what should no longer be,
        // first, in the same batch (a CNAME cannot coexist with an A of the same name).
        let stale: Vec<DnsChange> = current
            .iter()
            .filter(|c| !desired.iter().any(|d| d.rtype == c.rtype))
            .map(|c| DnsChange::Delete((*c).clone()))
            .collect();
        if let Some((_, _, old)) = &ownership
            && !old.same_as(&txt)
        {
            changes.push(DnsChange::Upsert(txt));
        }
        if changes.is_empty() && stale.is_empty() {
            plan.unchanged.push(host.to_owned());
            continue;
        }
        if input.policy == Policy::CreateOnly {
            plan.held.push(Conflict {
                host: host.to_owned(),
                reason: "differs from the Ingress, but the create-only policy does not update"
                    .into(),
            });
            continue;
        }
        plan.updated.push(host.to_owned());
        groups.push(stale.into_iter().chain(changes).collect());
    }

    if input.policy == Policy::Sync {
        for txt in input
            .existing
            .iter()
            .filter(|r| r.rtype == "TXT" && r.name.starts_with(OWNER_PREFIX))
        {
            let host = &txt.name[OWNER_PREFIX.len()..];
            let Some((owner, cluster)) = txt.values.iter().find_map(|v| parse_owner(v)) else {
                continue;
            };
            if owner != input.owner
                || wanted.contains_key(host)
                || !input.complete_clusters.contains(&cluster)
            {
                continue;
            }
            let mut changes: Vec<DnsChange> = by_name
                .get(host)
                .map(|v| {
                    v.iter()
                        .filter(|r| MANAGED_TYPES.contains(&r.rtype.as_str()))
                        .map(|r| DnsChange::Delete((*r).clone()))
                        .collect()
                })
                .unwrap_or_default();
            changes.push(DnsChange::Delete(txt.clone()));
            plan.deleted.push(host.to_owned());
            groups.push(changes);
        }
    }
    plan.batches = batches(groups);
    plan
}

/// Packs each host's group of changes into as few batches as Route53's limits allow, never
/// splitting a group.
pub fn batches(groups: Vec<Vec<DnsChange>>) -> Vec<Vec<DnsChange>> {
    let mut out: Vec<Vec<DnsChange>> = Vec::new();
    let (mut values, mut chars) = (0, 0);
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        let (v, c) = group
            .iter()
            .map(DnsChange::weight)
            .fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1));
        let fits = values + v <= MAX_BATCH_VALUES && chars + c <= MAX_BATCH_CHARS;
        match out.last_mut() {
            Some(batch) if fits => batch.extend(group),
            _ => {
                out.push(group);
                (values, chars) = (0, 0);
            }
        }
        values += v;
        chars += c;
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LB: &str = "k8s-shop-api-1854330541.eu-west-1.elb.amazonaws.com";
    const LB2: &str = "k8s-shop-api-2222222222.eu-west-1.elb.amazonaws.com";

    fn ep(host: &str, target: &str, kind: RecordKind) -> Endpoint {
        Endpoint {
            host: host.into(),
            target: target.into(),
            source: "prod/ingress/shop/api".into(),
            cluster: "prod".into(),
            kind,
            ttl: 300,
        }
    }

    fn lbs() -> HashMap<String, LoadBalancer> {
        let lb = |d| LoadBalancer {
            canonical_zone_id: "Z32O12XQLNTSW2".into(),
            dualstack: d,
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
            set_identifier: None,
        }
    }

    fn plain(host: &str, rtype: &str, value: &str) -> RecordSet {
        RecordSet {
            name: host.into(),
            rtype: rtype.into(),
            ttl: Some(300),
            values: vec![value.into()],
            alias: None,
            set_identifier: None,
        }
    }

    fn ours(host: &str) -> RecordSet {
        plain(
            &owner_name(host),
            "TXT",
            &owner_value("bk", &ep(host, LB, RecordKind::Alias)),
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
            complete_clusters: &complete,
            ttl: 300,
        })
    }

    fn actions(p: &ZonePlan) -> Vec<String> {
        p.batches
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
            complete_clusters: &complete,
            ttl: 300,
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
        assert_eq!(p.batches.len(), 1);
        let records: Vec<&RecordSet> = p.batches[0].iter().map(DnsChange::record).collect();
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
            let a = p.batches[0]
                .iter()
                .map(DnsChange::record)
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
        // Asked for a CNAME at the apex: refused too, even for a load balancer.
        let p = plan_in("domain.com", &[ep("domain.com", LB, RecordKind::Cname)]);
        assert_eq!(p.conflicts.len(), 1);
        assert!(p.batches.is_empty());
    }

    #[test]
    fn a_new_host_gets_an_alias_record_and_its_ownership_txt_together() {
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &[],
            Policy::UpsertOnly,
        );
        assert_eq!(p.created, ["api.example.com"]);
        assert_eq!(p.batches.len(), 1);
        assert_eq!(
            actions(&p),
            [
                "CREATE A api.example.com",
                "CREATE TXT _bridgekeeper.api.example.com"
            ]
        );
        let txt = p.batches[0][1].record();
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
        assert_eq!(p.batches[0][0].record().ttl, Some(300));
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
        assert!(p.batches.is_empty());
    }

    #[test]
    fn a_moved_load_balancer_upserts_the_owned_record() {
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let p = plan(
            &[ep("api.example.com", LB2, RecordKind::Alias)],
            &existing,
            Policy::UpsertOnly,
        );
        assert_eq!(p.updated, ["api.example.com"]);
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
            Policy::UpsertOnly,
        );
        assert_eq!(p.batches.len(), 1);
        assert_eq!(
            actions(&p),
            ["DELETE CNAME api.example.com", "CREATE A api.example.com"]
        );
        let existing = [alias("api.example.com", "A", LB), ours("api.example.com")];
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Cname)],
            &existing,
            Policy::UpsertOnly,
        );
        assert_eq!(
            actions(&p),
            ["DELETE A api.example.com", "CREATE CNAME api.example.com"]
        );
    }

    #[test]
    fn a_foreign_record_is_never_touched_and_is_reported() {
        let p = plan(
            &[ep("www.example.com", LB, RecordKind::Alias)],
            &[plain("www.example.com", "CNAME", "old.example.net")],
            Policy::Sync,
        );
        assert!(p.batches.is_empty());
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
        assert!(p.batches.is_empty());
        assert!(p.conflicts[0].reason.contains("owned by \"other-stack\""));
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias)],
            &[theirs],
            Policy::Sync,
        );
        assert!(
            p.batches.is_empty(),
            "another owner's TXT alone still marks the name as taken"
        );
        let weighted = RecordSet {
            set_identifier: Some("blue".into()),
            ..alias("w.example.com", "A", LB)
        };
        let p = plan(
            &[ep("w.example.com", LB, RecordKind::Alias)],
            &[weighted, ours("w.example.com")],
            Policy::Sync,
        );
        assert_eq!(p.conflicts.len(), 1);
    }

    #[test]
    fn two_sources_for_one_host_are_a_conflict_and_the_first_wins() {
        let mut other = ep("api.example.com", LB2, RecordKind::Alias);
        other.source = "prod/ingress/shop/api-v2".into();
        let p = plan(
            &[ep("api.example.com", LB, RecordKind::Alias), other],
            &[],
            Policy::Sync,
        );
        assert_eq!(p.created, ["api.example.com"]);
        assert_eq!(
            p.batches[0][0].record().alias.as_ref().unwrap().dns_name,
            LB
        );
        assert!(p.conflicts[0].reason.contains("prod/ingress/shop/api-v2"));
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
            (sync.updated.len(), sync.deleted.as_slice()),
            (1, ["gone.example.com".to_owned()].as_slice())
        );
        assert!(actions(&sync).contains(&"DELETE TXT _bridgekeeper.gone.example.com".to_owned()));
        assert!(!actions(&sync).iter().any(|a| a.contains("foreign")));
        let upsert = plan(&want, &existing, Policy::UpsertOnly);
        assert_eq!((upsert.updated.len(), upsert.deleted.len()), (1, 0));
        let create = plan(&want, &existing, Policy::CreateOnly);
        assert_eq!((create.updated.len(), create.held.len()), (0, 1));
        assert!(create.batches.is_empty());
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
            policy: Policy::Sync,
            complete_clusters: &BTreeSet::new(),
            ttl: 300,
        });
        assert!(p.deleted.is_empty() && p.batches.is_empty());
    }

    #[test]
    fn batches_split_at_the_value_limit_without_splitting_a_host() {
        // Two one-character values per host: 1,000 values is 500 hosts a batch.
        let groups: Vec<Vec<DnsChange>> = (0..700)
            .map(|i| {
                vec![
                    DnsChange::Create(plain(&format!("h{i}"), "CNAME", "t")),
                    DnsChange::Create(plain(&format!("_bridgekeeper.h{i}"), "TXT", "o")),
                ]
            })
            .collect();
        let b = batches(groups);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1_000, 400]);
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
        let total: usize = p.batches.iter().flatten().map(|c| c.weight().1).sum();
        assert_eq!(
            p.batches.len(),
            total.div_ceil(MAX_BATCH_CHARS),
            "as few batches as the character limit allows"
        );
        for batch in &p.batches {
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
        let created: Vec<Vec<DnsChange>> = (0..100)
            .map(|i| vec![DnsChange::Create(plain(&format!("h{i}"), "CNAME", &long))])
            .collect();
        let per = long.len();
        assert_eq!(
            batches(created).len(),
            (100 * per).div_ceil(MAX_BATCH_CHARS)
        );
        let upserts: Vec<Vec<DnsChange>> = (0..100)
            .map(|i| vec![DnsChange::Upsert(plain(&format!("h{i}"), "CNAME", &long))])
            .collect();
        assert_eq!(
            batches(upserts).len(),
            (100 * 2 * per).div_ceil(MAX_BATCH_CHARS)
        );
    }

    #[test]
    fn the_zone_is_the_longest_matching_suffix_within_the_filters() {
        let z = |id: &str, name: &str, private| Zone {
            id: id.into(),
            name: name.into(),
            private,
        };
        let zones = [
            z("Z1", "example.com", false),
            z("Z2", "eu.example.com", false),
            z("Z3", "example.com", true),
        ];
        let filter = ZoneFilter {
            domains: vec!["example.com".into()],
            zone_type: ZoneType::Public,
            zone_ids: vec![],
        };
        let allowed: Vec<Zone> = zones.iter().filter(|x| filter.allows(x)).cloned().collect();
        assert_eq!(zone_for("api.eu.example.com", &allowed).unwrap().id, "Z2");
        assert_eq!(zone_for("example.com", &allowed).unwrap().id, "Z1");
        assert_eq!(zone_for("api.notexample.com", &allowed), None);
        assert!(!filter.allows_host("api.other.org"));
        let private = ZoneFilter {
            zone_type: ZoneType::Private,
            ..filter.clone()
        };
        assert!(private.allows(&zones[2]) && !private.allows(&zones[0]));
        let by_id = ZoneFilter {
            zone_ids: vec!["Z2".into()],
            ..filter
        };
        assert!(by_id.allows(&zones[1]) && !by_id.allows(&zones[0]));
    }

    #[test]
    fn ingress_annotations_choose_type_ttl_or_opt_out() {
        let ing = |annotations: serde_json::Value| -> Ingress {
            serde_json::from_value(json!({
                "metadata": {"name": "api", "namespace": "shop", "annotations": annotations},
                "spec": {"rules": [{"host": "API.Example.com"}, {"host": "example.com"}, {"host": "api.example.com"}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
            }))
            .unwrap()
        };
        let defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
        };
        let (eps, skips) = from_ingress("prod", &ing(json!({})), &defaults);
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["api.example.com", "example.com"]);
        assert!(skips.is_empty());
        assert_eq!(eps[0].source, "prod/ingress/shop/api");
        let (eps, _) = from_ingress(
            "prod",
            &ing(json!({TYPE_ANNOTATION: "cname", TTL_ANNOTATION: "60"})),
            &defaults,
        );
        assert_eq!((eps[0].kind, eps[0].ttl), (RecordKind::Cname, 60));
        assert!(
            from_ingress("prod", &ing(json!({OPT_ANNOTATION: "false"})), &defaults)
                .0
                .is_empty()
        );
        let (eps, skips) = from_ingress("prod", &ing(json!({TTL_ANNOTATION: "soon"})), &defaults);
        assert!(eps.is_empty() && skips[0].reason.contains("bridgekeeper.io/ttl"));
    }

    #[test]
    fn a_load_balancer_service_with_a_hostname_annotation_is_a_source() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "mqtt", "namespace": "iot", "annotations": {HOSTNAME_ANNOTATION: "mqtt.example.com, broker.example.com"}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
        }))
        .unwrap();
        let (eps, _) = from_service(
            "prod",
            &svc,
            &Defaults {
                kind: RecordKind::Alias,
                ttl: 300,
            },
        );
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].source, "prod/service/iot/mqtt");
        let pending: Ingress = serde_json::from_value(
            json!({"metadata": {"name": "new"}, "spec": {"rules": [{"host": "new.example.com"}]}}),
        )
        .unwrap();
        let (eps, skips) = from_ingress(
            "prod",
            &pending,
            &Defaults {
                kind: RecordKind::Alias,
                ttl: 300,
            },
        );
        assert!(eps.is_empty());
        assert!(skips[0].reason.contains("no load balancer hostname"));
    }
}
