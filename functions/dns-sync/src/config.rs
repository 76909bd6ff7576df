use bridgekeeper::cluster::{ClusterTarget, targets_from_env};
use bridgekeeper::config::{Arn, ConfigError, Env, environment};
use bridgekeeper::notify::SnsNotifier;

use crate::domain::{Defaults, Policy, RecordKind, ZoneFilter, ZoneType};

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    pub topic_arn: Arn,
    pub clusters: Vec<(String, ClusterTarget)>,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    /// Names this deployment in ownership records; two stacks writing one zone need two ids.
    pub owner: String,
    pub zones: ZoneFilter,
    pub policy: Policy,
    pub defaults: Defaults,
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
        if !owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::new(
                "OWNER_ID",
                format!("is {owner:?}; use letters, digits, - _ and ."),
            ));
        }
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
            environment: environment(env),
            topic_arn: env.arn("ALERTS_TOPIC_ARN")?,
            clusters: targets_from_env(env, "CLUSTERS")?,
            namespaces: env.list("NAMESPACES"),
            owner,
            zones: ZoneFilter {
                domains,
                zone_type,
                zone_ids,
            },
            policy,
            defaults: Defaults { kind, ttl },
            dry_run: env.flag("DRY_RUN", false)?,
        })
    }

    pub fn notifier(&self, sns: aws_sdk_sns::Client) -> SnsNotifier {
        SnsNotifier::new(
            sns,
            self.topic_arn.as_str(),
            crate::FUNCTION,
            &self.environment,
        )
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
