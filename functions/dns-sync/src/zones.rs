//! Pure: the hosted zones dns-sync may write to, and which of them holds a host.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    /// Normalized: no trailing dot.
    pub name: String,
    pub private: bool,
    /// The member account it was listed in (`ZONE_ACCOUNTS`); `None`: the function's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
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

/// The zones that hold `host`: every allowed zone with the longest matching name. Two zones of
/// one name are a split horizon (a public and a private `example.com`): `ZONE_TYPE=any` writes
/// the host to both, `public` or `private` (or `ZONE_IDS`) keeps one of them.
pub fn zones_for<'a>(host: &str, zones: &'a [Zone]) -> Vec<&'a Zone> {
    let matching: Vec<&Zone> = zones.iter().filter(|z| under(host, &z.name)).collect();
    let longest = matching.iter().map(|z| z.name.len()).max();
    matching
        .into_iter()
        .filter(|z| Some(z.name.len()) == longest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_is_the_longest_matching_suffix_within_the_filters() {
        let z = |id: &str, name: &str, private| Zone {
            id: id.into(),
            name: name.into(),
            private,
            account: None,
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
        let ids = |host: &str| -> Vec<String> {
            zones_for(host, &allowed)
                .iter()
                .map(|z| z.id.clone())
                .collect()
        };
        assert_eq!(ids("api.eu.example.com"), ["Z2"]);
        assert_eq!(ids("example.com"), ["Z1"]);
        assert!(ids("api.notexample.com").is_empty());
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
}
