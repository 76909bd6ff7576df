//! Pure decisions: which hosts should point where, which zone holds each, and the smallest set
//! of Route53 changes that gets there without touching a record Bridgekeeper does not own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
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

fn endpoints(
    hosts: Vec<String>,
    targets: Vec<String>,
    source: String,
    cluster: &str,
    settings: Result<Option<(RecordKind, i64)>, Skip>,
) -> (Vec<Endpoint>, Vec<Skip>) {
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
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for h in hosts {
        match normalize(&h) {
            Some(host) => out.push(Endpoint {
                host,
                target: target.clone(),
                source: source.clone(),
                cluster: cluster.to_owned(),
                kind,
                ttl,
            }),
            None => skipped.push(Skip {
                source: source.clone(),
                reason: format!("{h:?} is not a valid DNS name"),
            }),
        }
    }
    (out, skipped)
}

pub fn from_ingress(
    cluster: &str,
    ing: &Ingress,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let meta = &ing.metadata;
    let source = format!(
        "{cluster}/ingress/{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    );
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
    let settings = overrides(meta.annotations.as_ref(), defaults, &source);
    endpoints(
        hosts.into_iter().collect(),
        targets,
        source,
        cluster,
        settings,
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
    let source = format!(
        "{cluster}/service/{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    );
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
    let settings = overrides(meta.annotations.as_ref(), defaults, &source);
    endpoints(hosts, targets, source, cluster, settings)
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
        let desired = desired_records(ep, input.load_balancers.get(&ep.target));
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
