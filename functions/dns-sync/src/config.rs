use std::time::Duration;

use bridgekeeper::accounts::{Admitted, Scope};
use bridgekeeper::cluster_target::{ClusterTarget, targets_from_env};
use bridgekeeper::config::{ConfigError, Env, environment};
use bridgekeeper::notify::Destinations;

use crate::domain::{DeletionLimit, Policy};
use crate::policy::HostPolicy;
use crate::sources::{Defaults, RecordKind};
use crate::zones::{ZoneFilter, ZoneType};

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    /// The accounts whose events trigger a run (the hub's and `MEMBER_ACCOUNTS`).
    pub admitted: Admitted,
    /// The alerts topic, and the chat topic that gets the chat JSON of every notification.
    pub topics: Destinations,
    pub clusters: Vec<(String, ClusterTarget)>,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    /// Names this deployment in ownership records; two stacks writing one zone need two ids.
    pub owner: String,
    /// Owner ids this deployment used before: their records are taken over when still wanted.
    pub adopt: Vec<String>,
    pub zones: ZoneFilter,
    /// `ZONE_ACCOUNTS`: other accounts whose hosted zones are listed and written too (a shared
    /// DNS account, each stage's own), through the member role there.
    pub zone_accounts: Vec<String>,
    pub max_deletions: DeletionLimit,
    /// Clusters read at once.
    pub cluster_concurrency: usize,
    /// How long one cluster may take to list its sources.
    pub cluster_timeout: Duration,
    pub policy: Policy,
    /// `HOST_POLICY`: which namespaces may claim which names.
    pub host_policy: HostPolicy,
    pub defaults: Defaults,
    /// `EVALUATE_TARGET_HEALTH`: load balancer aliases follow the load balancer's health.
    pub evaluate_target_health: bool,
    /// `DRIFT_INTERVAL_SECONDS`: how long a zone read (and the zone listing) is trusted while
    /// the clusters want what was applied; 0 reads every zone every run.
    pub drift_interval: Duration,
    pub dry_run: bool,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let policy = env.choice(
            "POLICY",
            &[
                ("sync", Policy::Sync),
                ("upsert-only", Policy::UpsertOnly),
                ("create-only", Policy::CreateOnly),
            ],
            Policy::UpsertOnly,
        )?;
        let zone_type = env.choice(
            "ZONE_TYPE",
            &[
                ("public", ZoneType::Public),
                ("private", ZoneType::Private),
                ("any", ZoneType::Any),
            ],
            ZoneType::Public,
        )?;
        let kind = env.choice(
            "RECORD_TYPE",
            &[("alias", RecordKind::Alias), ("cname", RecordKind::Cname)],
            RecordKind::Alias,
        )?;
        let owner = env
            .optional("OWNER_ID")
            .unwrap_or_else(|| "bridgekeeper".to_owned());
        let adopt = env.list("ADOPT_OWNER_IDS");
        for (var, id) in std::iter::once(("OWNER_ID", &owner))
            .chain(adopt.iter().map(|a| ("ADOPT_OWNER_IDS", a)))
        {
            // The id travels inside a TXT value whose fields are `,`- and `=`-separated.
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ConfigError::new(
                    var,
                    format!("has {id:?}; use letters, digits, - _ and ."),
                ));
            }
        }
        let max_deletions = max_deletions(env)?;
        let cluster_concurrency = env.number_in("CLUSTER_CONCURRENCY", 8usize, 1..=64)?;
        let ttl = env.parse_or("DEFAULT_TTL", "a number of seconds", 300i64)?;
        let domains = env
            .list("DOMAIN_FILTER")
            .into_iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let zone_ids = env
            .list("ZONE_IDS")
            .into_iter()
            .map(|z| z.trim_start_matches("/hostedzone/").to_owned())
            .collect();
        Ok(Config {
            admitted: Admitted::from_env(env)?,
            environment: environment(env),
            topics: Destinations::from_env(env, crate::FUNCTION)?,
            clusters: targets_from_env(env, "CLUSTERS")?,
            namespaces: env.list("NAMESPACES"),
            owner,
            adopt,
            max_deletions,
            cluster_concurrency,
            cluster_timeout: env.seconds_in(
                "CLUSTER_TIMEOUT_SECONDS",
                Duration::from_secs(20),
                1..=900,
            )?,
            zones: ZoneFilter {
                domains,
                zone_type,
                zone_ids,
            },
            zone_accounts: bridgekeeper::accounts::member_accounts(env, "ZONE_ACCOUNTS")?
                .into_iter()
                .map(|(_, account)| account)
                .collect(),
            policy,
            host_policy: HostPolicy::parse(&env.list("HOST_POLICY"))
                .map_err(|e| ConfigError::new("HOST_POLICY", e))?,
            defaults: Defaults {
                kind,
                ttl,
                tls_hosts: env.flag("INGRESS_TLS_HOSTS", true)?,
            },
            evaluate_target_health: env.flag("EVALUATE_TARGET_HEALTH", true)?,
            drift_interval: env.seconds_in(
                "DRIFT_INTERVAL_SECONDS",
                Duration::from_secs(3600),
                0..=86_400,
            )?,
            dry_run: env.flag("DRY_RUN", false)?,
        })
    }

    /// Where the clusters' load balancers are: each EKS cluster's account and region.
    pub fn load_balancer_scopes(&self) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = self
            .clusters
            .iter()
            .filter_map(|(_, t)| match t {
                ClusterTarget::Eks { scope, .. } => Some(scope.clone()),
                ClusterTarget::Url { .. } => None,
            })
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// Records whose source is gone, or whose cluster was read but is empty, come out of one run
    /// at most this many; past it a person decides.
    pub fn default_max_deletions() -> DeletionLimit {
        DeletionLimit::Hosts(10)
    }
}

/// `MAX_DELETIONS`: a number of hosts (`10`) or a share of the owned hosts (`20%`).
fn max_deletions(env: &Env) -> Result<DeletionLimit, ConfigError> {
    let Some(v) = env.optional("MAX_DELETIONS") else {
        return Ok(Config::default_max_deletions());
    };
    let bad = || {
        ConfigError::new(
            "MAX_DELETIONS",
            format!("is {v:?}, expected a number of hosts (10) or a percentage (20%)"),
        )
    };
    match v.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p) if p <= 100 => Ok(DeletionLimit::Percent(p)),
            _ => Err(bad()),
        },
        None => v.parse().map(DeletionLimit::Hosts).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(extra: &[(&'static str, &'static str)]) -> Env {
        let base = [
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("CLUSTERS", "prod=prod-eks"),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn defaults_are_upsert_only_public_zones_alias_records() {
        let c = Config::from_env(&env_with(&[
            ("DOMAIN_FILTER", "Example.com."),
            ("ZONE_IDS", "/hostedzone/Z1"),
        ]))
        .unwrap();
        assert_eq!(c.policy, Policy::UpsertOnly);
        assert_eq!(c.zones.zone_type, ZoneType::Public);
        assert_eq!(c.zones.domains, ["example.com"]);
        assert_eq!(c.zones.zone_ids, ["Z1"]);
        assert_eq!(
            (c.defaults.kind, c.defaults.ttl, c.owner.as_str()),
            (RecordKind::Alias, 300, "bridgekeeper")
        );
        assert_eq!(c.max_deletions, DeletionLimit::Hosts(10));
        assert_eq!(
            (c.cluster_concurrency, c.cluster_timeout),
            (8, Duration::from_secs(20))
        );
    }

    #[test]
    fn the_deletion_limit_is_a_count_or_a_share() {
        for (v, want) in [
            ("0", DeletionLimit::Hosts(0)),
            ("25", DeletionLimit::Hosts(25)),
            ("20%", DeletionLimit::Percent(20)),
        ] {
            let c = Config::from_env(&env_with(&[("MAX_DELETIONS", v)])).unwrap();
            assert_eq!(c.max_deletions, want, "{v}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("POLICY", "mirror"),
            ("ZONE_TYPE", "internal"),
            ("RECORD_TYPE", "mx"),
            ("OWNER_ID", "has space"),
            ("DEFAULT_TTL", "5m"),
            ("CLUSTERS", "prod"),
            ("ADOPT_OWNER_IDS", "old,o=ld"),
            ("MAX_DELETIONS", "ten"),
            ("MAX_DELETIONS", "120%"),
            ("CLUSTER_CONCURRENCY", "0"),
            ("CLUSTER_TIMEOUT_SECONDS", "20s"),
            ("CLUSTER_TIMEOUT_SECONDS", "18446744073709551615"),
            ("HOST_POLICY", "shop=_bridgekeeper.example.com"),
        ] {
            assert_eq!(
                Config::from_env(&env_with(&[(var, value)]))
                    .unwrap_err()
                    .var,
                var,
                "{var}={value}"
            );
        }
    }
}
