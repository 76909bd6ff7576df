//! Pure: what the last runs read and applied, so a run whose clusters want what was applied asks
//! Route53 nothing. Route53 allows five requests per second per account, shared with every other
//! tool the account runs ("Quotas on API requests", Route 53 Developer Guide); listing every
//! record of every zone every few minutes spends most of that on reads that find nothing to do.
//!
//! A zone is read again when what is wanted of it changes (its digest), when its last read is
//! older than `DRIFT_INTERVAL_SECONDS` (someone may have changed it by hand), when its last run
//! left a problem open (a conflict, a held deletion, a refused host: those are re-checked every
//! run), and always on a manual run. The zone listing is kept for the same interval. A ledger
//! the store lost, or one written by another build or other settings, is as good as none.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::domain::Holds;
use crate::sources::Endpoint;
use crate::zones::Zone;

/// Its key in the stack's store.
pub const KEY: &str = "route53#ledger";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The build and settings the entries were made under.
    pub basis: String,
    /// The zones dns-sync may write, as last listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
    /// Zone id → what was applied there.
    #[serde(default)]
    pub applied: BTreeMap<String, Applied>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Epoch seconds.
    pub at: u64,
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Of what the zone was wanted to hold ([`zone_digest`]).
    pub digest: String,
    /// When its records were last read (epoch seconds).
    pub read_at: u64,
    /// Hosts this deployment owned there (for a percentage deletion limit).
    pub owned: usize,
}

/// A reading `at` is fresh at `now` for `interval`; a reading from the future (a clock step)
/// is not.
fn fresh(at: u64, now: u64, interval: Duration) -> bool {
    at <= now && now - at < interval.as_secs()
}

impl Ledger {
    /// What the store kept, if it was kept under this `basis`.
    pub fn parse(value: Option<&str>, basis: &str) -> Ledger {
        value
            .and_then(|v| serde_json::from_str::<Ledger>(v).ok())
            .filter(|l| l.basis == basis)
            .unwrap_or_else(|| Ledger {
                basis: basis.to_owned(),
                ..Ledger::default()
            })
    }

    /// The zones as last listed, if that listing is still fresh.
    pub fn zones(&self, now: u64, interval: Duration) -> Option<&[Zone]> {
        self.listing
            .as_ref()
            .filter(|l| fresh(l.at, now, interval))
            .map(|l| l.zones.as_slice())
    }

    /// The zone's last apply, if it was of `digest` and read recently enough to trust.
    pub fn unchanged(
        &self,
        zone: &str,
        digest: &str,
        now: u64,
        interval: Duration,
    ) -> Option<&Applied> {
        self.applied
            .get(zone)
            .filter(|a| a.digest == digest && fresh(a.read_at, now, interval))
    }

    /// Keeps only the zones still listed.
    pub fn retain_listed(&mut self, zones: &[Zone]) {
        self.applied
            .retain(|id, _| zones.iter().any(|z| &z.id == id));
    }
}

/// Everything in the settings that changes what a zone is planned to hold: a change of any of
/// them (or of the build) makes every zone read again.
pub fn basis(config: &Config) -> String {
    let settings = format!(
        "{} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?}",
        env!("CARGO_PKG_VERSION"),
        config.owner,
        config.adopt,
        config.policy,
        config.host_policy,
        config.max_deletions,
        config.defaults,
        config.evaluate_target_health,
        config.zones,
        config.zone_accounts,
        config.dry_run,
    );
    hex(&Sha256::digest(settings.as_bytes()))
}

/// What the clusters want of one zone: its endpoints, the clusters read whole (a missing one
/// holds deletions), the skipped sources' holds and why new hosts wait, if they do.
pub fn zone_digest(
    zone: &Zone,
    wanted: &[Endpoint],
    complete: &std::collections::BTreeSet<String>,
    holds: &Holds,
    hold_new: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(serde_json::to_string(zone).unwrap_or_default().as_bytes());
    part(serde_json::to_string(wanted).unwrap_or_default().as_bytes());
    part(format!("{complete:?}").as_bytes());
    part(format!("{:?} {:?}", holds.sources, holds.hosts).as_bytes());
    part(hold_new.unwrap_or_default().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn zone(id: &str) -> Zone {
        Zone {
            id: id.into(),
            name: "example.com".into(),
            private: false,
            account: None,
        }
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::parse(None, "b1");
        l.listing = Some(Listing {
            at: 1_000,
            zones: vec![zone("Z1")],
        });
        l.applied.insert(
            "Z1".into(),
            Applied {
                digest: "d1".into(),
                read_at: 1_000,
                owned: 3,
            },
        );
        l
    }

    #[test]
    fn an_unchanged_zone_read_within_the_interval_is_not_read_again() {
        let l = ledger();
        assert_eq!(
            l.unchanged("Z1", "d1", 1_000 + 3_599, HOUR).unwrap().owned,
            3
        );
        assert!(
            l.unchanged("Z1", "d2", 1_001, HOUR).is_none(),
            "changed desire"
        );
        assert!(
            l.unchanged("Z1", "d1", 1_000 + 3_600, HOUR).is_none(),
            "interval over"
        );
        assert!(
            l.unchanged("Z1", "d1", 999, HOUR).is_none(),
            "clock stepped back"
        );
        assert!(
            l.unchanged("Z2", "d1", 1_001, HOUR).is_none(),
            "never applied"
        );
        assert!(
            l.unchanged("Z1", "d1", 1_000, Duration::ZERO).is_none(),
            "interval 0"
        );
    }

    #[test]
    fn the_zone_listing_is_kept_for_the_interval() {
        let l = ledger();
        assert_eq!(l.zones(1_500, HOUR).unwrap(), [zone("Z1")]);
        assert!(l.zones(4_600, HOUR).is_none());
    }

    #[test]
    fn a_ledger_of_another_basis_or_unreadable_is_none() {
        let kept = serde_json::to_string(&ledger()).unwrap();
        assert_eq!(Ledger::parse(Some(&kept), "b1"), ledger());
        let other = Ledger::parse(Some(&kept), "b2");
        assert!(other.applied.is_empty() && other.listing.is_none());
        assert_eq!(other.basis, "b2");
        assert!(Ledger::parse(Some("{not json"), "b1").applied.is_empty());
    }

    #[test]
    fn the_digest_changes_with_every_input_that_changes_a_plan() {
        let ep = |host: &str| Endpoint {
            host: host.into(),
            target: "lb-1.eu-west-1.elb.amazonaws.com".into(),
            source: "prod/ingress/shop/web".into(),
            cluster: "prod".into(),
            namespace: "shop".into(),
            created: None,
            kind: crate::sources::RecordKind::Alias,
            ttl: 300,
            dualstack: false,
            ipv6_only: false,
        };
        let complete: std::collections::BTreeSet<String> = ["prod".to_owned()].into();
        let holds = Holds::default();
        let base = zone_digest(&zone("Z1"), &[ep("a.example.com")], &complete, &holds, None);
        assert_eq!(
            base,
            zone_digest(&zone("Z1"), &[ep("a.example.com")], &complete, &holds, None)
        );
        let mut moved = ep("a.example.com");
        moved.target = "lb-2.eu-west-1.elb.amazonaws.com".into();
        let mut held = Holds::default();
        held.hosts
            .insert("b.example.com".into(), "prod/ingress/shop/b".into());
        for other in [
            zone_digest(&zone("Z2"), &[ep("a.example.com")], &complete, &holds, None),
            zone_digest(&zone("Z1"), &[moved], &complete, &holds, None),
            zone_digest(
                &zone("Z1"),
                &[ep("a.example.com")],
                &Default::default(),
                &holds,
                None,
            ),
            zone_digest(&zone("Z1"), &[ep("a.example.com")], &complete, &held, None),
            zone_digest(
                &zone("Z1"),
                &[ep("a.example.com")],
                &complete,
                &holds,
                Some("wait"),
            ),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn only_listed_zones_stay_in_the_ledger() {
        let mut l = ledger();
        l.retain_listed(&[zone("Z9")]);
        assert!(l.applied.is_empty());
    }
}
