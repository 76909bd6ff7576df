//! Pure: the record sets as Route53 lists them and dns-sync writes them, the ownership TXT
//! that marks a name as Bridgekeeper's, and the packing of changes into Route53-sized batches.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

/// The ownership TXT record of `api.example.com` is `_bridgekeeper.api.example.com`: a TXT
/// record cannot share its name with a CNAME, so it lives one label down.
pub const OWNER_PREFIX: &str = "_bridgekeeper.";

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

/// Route53's limits on one ChangeResourceRecordSets call (an UPSERT counts twice).
pub const MAX_BATCH_VALUES: usize = 1_000;
pub const MAX_BATCH_CHARS: usize = 32_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasTarget {
    pub zone_id: String,
    /// Normalized.
    pub dns_name: String,
    pub evaluate_health: bool,
}

/// Everything that makes a record set one of several of the same name and type, or ties it to a
/// health check or traffic policy. Read whole so a DELETE names the record exactly (Route53
/// refuses a DELETE whose values differ in any field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Routing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// (continent, country, subdivision)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<(Option<String>, Option<String>, Option<String>)>,
    /// (AWS region, local zone group, latitude, longitude, bias)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_proximity: Option<GeoProximity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_value_answer: Option<bool>,
    /// (collection id, location name)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    /// Records a traffic policy created: only the policy may change them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy_instance_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GeoProximity {
    pub aws_region: Option<String>,
    pub local_zone_group: Option<String>,
    pub coordinates: Option<(String, String)>,
    pub bias: Option<i32>,
}

impl Routing {
    /// Weighted, latency, failover, geolocation, geoproximity, multivalue, IP-based, or made by
    /// a traffic policy: a record dns-sync never writes.
    pub fn is_policy(&self) -> bool {
        self.set_identifier.is_some() || self.traffic_policy_instance_id.is_some()
    }
}

/// A record set, as Route53 lists it or as dns-sync wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

impl RecordSet {
    pub(crate) fn same_as(&self, other: &RecordSet) -> bool {
        self.rtype == other.rtype
            && self.alias == other.alias
            && self.routing == other.routing
            && (self.alias.is_some() || (self.ttl == other.ttl && self.values == other.values))
    }

    pub(crate) fn has_policy(&self) -> bool {
        self.routing.as_ref().is_some_and(Routing::is_policy)
    }

    /// (values, characters) toward the batch limits.
    pub(crate) fn weight(&self) -> (usize, usize) {
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
    /// `dualstack-without-public-ipv4`: IPv6 only.
    pub ipv6_only: bool,
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

    pub(crate) fn weight(&self) -> (usize, usize) {
        let (v, c) = self.record().weight();
        match self {
            DnsChange::Upsert(_) => (2 * v, 2 * c),
            _ => (v, c),
        }
    }
}

pub fn owner_name(host: &str) -> String {
    format!("{OWNER_PREFIX}{host}")
}

/// Route53 (and RFC 1035) cap each character-string of a TXT value at 255 characters; a longer
/// value is written as several quoted strings, which readers concatenate.
pub const MAX_TXT_STRING: usize = 255;

/// `"heritage=bridgekeeper,owner=<owner>,cluster=<c>,source=<s>"`, in strings of at most 255.
pub fn owner_value(owner: &str, cluster: &str, source: &str) -> String {
    let source = source
        .strip_prefix(&format!("{cluster}/"))
        .unwrap_or(source);
    let text = format!("heritage=bridgekeeper,owner={owner},cluster={cluster},source={source}");
    // The text is ASCII (owner ids, cluster aliases and Kubernetes names), so bytes are characters.
    text.as_bytes()
        .chunks(MAX_TXT_STRING)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who an ownership TXT value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub owner: String,
    pub cluster: String,
    /// `<kind>/<namespace>/<name>`, without the cluster.
    pub source: String,
}

/// The owner a TXT value names, if it is one of ours (its strings joined, as a resolver would).
pub fn parse_owner(value: &str) -> Option<Owner> {
    let joined: String = value
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let text = if value.contains('"') {
        joined.as_str()
    } else {
        value
    };
    let fields: HashMap<&str, &str> = text
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let get = |k: &str| fields.get(k).copied().unwrap_or("").to_owned();
    (fields.get("heritage") == Some(&"bridgekeeper")).then(|| Owner {
        owner: get("owner"),
        cluster: get("cluster"),
        source: get("source"),
    })
}

/// The distinct types of `records`, as `A/AAAA`.
pub fn types(records: &[&RecordSet]) -> String {
    let t: BTreeSet<&str> = records.iter().map(|r| r.rtype.as_str()).collect();
    t.into_iter().collect::<Vec<_>>().join("/")
}
