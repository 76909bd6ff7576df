//! What a host's records should be: an alias to its target (A, and AAAA when it is dualstack)
//! — a load balancer, a CloudFront distribution, a Global Accelerator, a VPC endpoint — or a
//! CNAME to it, by Route53's rules for where each may stand.

use std::collections::HashMap;

use crate::alias_zones::{Kind, canonical};
use crate::records::{AliasTarget, LoadBalancer, RecordSet, types};
use crate::sources::{Endpoint, RecordKind};

/// How aliases are written in one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aliasing {
    /// `EVALUATE_TARGET_HEALTH`: a load balancer alias answers only while the load balancer has
    /// healthy targets (as external-dns does by default).
    pub evaluate_health: bool,
    pub private_zone: bool,
}

impl Default for Aliasing {
    fn default() -> Self {
        Aliasing {
            evaluate_health: true,
            private_zone: false,
        }
    }
}

/// An alias's target as Route53 needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub zone_id: String,
    pub dualstack: bool,
    /// No public IPv4 address: AAAA only, never an A pointing where IPv4 clients cannot go.
    pub ipv6_only: bool,
    pub evaluate_health: bool,
}

/// What an alias to `ep`'s target needs: the published zone for the hostname's form (any
/// account, Classic Load Balancers too), else ELBv2's answer when the account could read it;
/// `None` when the target cannot be aliased here.
pub fn alias_for(
    ep: &Endpoint,
    from_api: &HashMap<String, LoadBalancer>,
    aliasing: Aliasing,
) -> Option<Alias> {
    let api = from_api.get(&ep.target);
    let api_dualstack = api.is_some_and(|lb| lb.dualstack);
    let ipv6_only = ep.ipv6_only || api.is_some_and(|lb| lb.ipv6_only);
    match canonical(&ep.target) {
        // Route53's AliasTarget: "Resource record sets can't be created for CloudFront
        // distributions in a private hosted zone."
        Some(c) if c.kind == Kind::CloudFront && aliasing.private_zone => None,
        Some(c) => Some(Alias {
            zone_id: c.zone_id.to_owned(),
            dualstack: c.dualstack || ep.dualstack || api_dualstack,
            ipv6_only,
            // Route53's AliasTarget: "You can't set EvaluateTargetHealth to true when the alias
            // target is a CloudFront distribution"; the setting is for load balancers only.
            evaluate_health: c.kind.is_load_balancer() && aliasing.evaluate_health,
        }),
        None => from_api.get(&ep.target).map(|lb| Alias {
            zone_id: lb.canonical_zone_id.clone(),
            dualstack: lb.dualstack || ep.dualstack,
            ipv6_only,
            evaluate_health: aliasing.evaluate_health,
        }),
    }
}

/// Whether planning `ep` needs the DescribeLoadBalancers listing: an alias is wanted and the
/// hostname's form is not a known one.
pub fn needs_lookup(ep: &Endpoint) -> bool {
    ep.kind == RecordKind::Alias && canonical(&ep.target).is_none()
}

fn alias_records(ep: &Endpoint, to: &Alias) -> Vec<RecordSet> {
    let alias = |rtype: &str| RecordSet {
        name: ep.host.clone(),
        rtype: rtype.into(),
        alias: Some(AliasTarget {
            zone_id: to.zone_id.clone(),
            dns_name: ep.target.clone(),
            evaluate_health: to.evaluate_health,
        }),
        ..RecordSet::default()
    };
    let mut out = Vec::new();
    if !to.ipv6_only {
        out.push(alias("A"));
    }
    if to.dualstack || to.ipv6_only {
        out.push(alias("AAAA"));
    }
    out
}

/// The records the source asks for: an alias to its target, or a CNAME to it where a CNAME may
/// stand; or why neither can be written.
pub fn desired_records(
    load_balancers: &HashMap<String, LoadBalancer>,
    aliasing: Aliasing,
    zone: &str,
    host: &str,
    ep: &Endpoint,
    others: &[&RecordSet],
) -> Result<Vec<RecordSet>, String> {
    let lb = alias_for(ep, load_balancers, aliasing);
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
                "{why}, and {} is not a target it can alias here; nothing submitted",
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
