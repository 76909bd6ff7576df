//! What a host's records should be: an alias to its load balancer (A, and AAAA when it is
//! dualstack) or a CNAME to its target, by Route53's rules for where each may stand.

use std::collections::HashMap;

use crate::records::{AliasTarget, LoadBalancer, RecordSet, types};
use crate::sources::{Endpoint, RecordKind};

/// What an alias to `target` needs: the published table for the hostname's form (any account,
/// Classic Load Balancers too), else ELBv2's answer when the account could read it.
pub fn load_balancer(
    ep: &Endpoint,
    from_api: &HashMap<String, LoadBalancer>,
) -> Option<LoadBalancer> {
    let api_dualstack = from_api.get(&ep.target).is_some_and(|lb| lb.dualstack);
    match crate::elb::canonical(&ep.target) {
        Some(c) => Some(LoadBalancer {
            canonical_zone_id: c.zone_id.to_owned(),
            dualstack: c.dualstack || ep.dualstack || api_dualstack,
        }),
        None => from_api.get(&ep.target).map(|lb| LoadBalancer {
            canonical_zone_id: lb.canonical_zone_id.clone(),
            dualstack: lb.dualstack || ep.dualstack,
        }),
    }
}

/// Whether planning `ep` needs the DescribeLoadBalancers listing: an alias is wanted and the
/// hostname's form is not in the table.
pub fn needs_lookup(ep: &Endpoint) -> bool {
    ep.kind == RecordKind::Alias && crate::elb::canonical(&ep.target).is_none()
}

fn alias_records(ep: &Endpoint, lb: &LoadBalancer) -> Vec<RecordSet> {
    let alias = |rtype: &str| RecordSet {
        name: ep.host.clone(),
        rtype: rtype.into(),
        alias: Some(AliasTarget {
            zone_id: lb.canonical_zone_id.clone(),
            dns_name: ep.target.clone(),
            evaluate_health: false,
        }),
        ..RecordSet::default()
    };
    let mut out = vec![alias("A")];
    if lb.dualstack {
        out.push(alias("AAAA"));
    }
    out
}

/// The records the source asks for: an alias to its load balancer, or a CNAME to its target
/// where a CNAME may stand; or why neither can be written.
pub fn desired_records(
    load_balancers: &HashMap<String, LoadBalancer>,
    zone: &str,
    host: &str,
    ep: &Endpoint,
    others: &[&RecordSet],
) -> Result<Vec<RecordSet>, String> {
    let lb = load_balancer(ep, load_balancers);
    let apex = host == zone;
    // RFC 1034 §3.6.2, Route53's "CNAME ... can't be created at the zone apex / conflicts with
    // other records": a CNAME shares its name with nothing, and the apex always has SOA and NS.
    let no_cname = apex || !others.is_empty();
    match (&lb, ep.kind) {
        (Some(lb), RecordKind::Alias) => Ok(alias_records(ep, lb)),
        (Some(lb), RecordKind::Cname) if no_cname => Ok(alias_records(ep, lb)),
        (None, _) if no_cname => {
            let why = if apex {
                "the zone apex can only be an alias (A/AAAA), never a CNAME".to_owned()
            } else {
                format!(
                    "a CNAME cannot share its name with the existing {} record",
                    types(others)
                )
            };
            Err(format!(
                "{why}, and {} is not a load balancer it can alias; nothing submitted",
                ep.target
            ))
        }
        _ => Ok(vec![RecordSet {
            name: host.to_owned(),
            rtype: "CNAME".into(),
            ttl: Some(ep.ttl),
            values: vec![ep.target.clone()],
            ..RecordSet::default()
        }]),
    }
}
