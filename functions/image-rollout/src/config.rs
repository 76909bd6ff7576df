use std::time::Duration;

use bridgekeeper::accounts::Admitted;
use bridgekeeper::cluster_target::ClusterTarget;
use bridgekeeper::config::{ConfigError, Env, environment};
use bridgekeeper::notify::Destinations;

use crate::domain::{Mode, Rule, RuleSpec};

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    /// The accounts whose pushes it acts on (the hub's and `MEMBER_ACCOUNTS`).
    pub admitted: Admitted,
    /// The alerts topic, and the chat topic that gets the chat JSON of every notification.
    pub topics: Destinations,
    /// Alias → where the cluster is, in the order given.
    pub clusters: Vec<(String, ClusterTarget)>,
    pub rules: Vec<Rule>,
    pub mode: Mode,
    pub max_concurrent: usize,
    /// `CLUSTER_CONCURRENCY`: clusters listed, patched and watched at once.
    pub cluster_concurrency: usize,
    pub watch: bool,
    pub watch_timeout: Duration,
    pub poll_interval: Duration,
    /// After a failed rollout, re-pin the images it replaced.
    pub rollback_on_failure: bool,
    /// `ALLOWED_REGISTRIES`: the ECR registries the reconcile follows tags in (a workload names
    /// its image, so a tenant would otherwise choose which accounts and regions the role asks).
    /// `None`: any (a local run, where the hub's account is not known).
    pub allowed_registries: Option<Vec<String>>,
    /// `RECONCILE_MAX_TAGS`: tags resolved per reconcile; the rest wait for a later run.
    pub reconcile_max_tags: usize,
    pub dry_run: bool,
}

/// A bound on requests in flight: 1 to 64, 8 when unset.
fn concurrency(env: &Env, var: &str) -> Result<usize, ConfigError> {
    env.number_in(var, 8usize, 1..=64)
}

fn rules(env: &Env, known: &[String]) -> Result<Vec<Rule>, ConfigError> {
    let bad = |why: String| ConfigError::new("ROLLOUT_RULES", why);
    let text = env.required("ROLLOUT_RULES")?;
    let specs: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| bad(format!("is not a JSON array of rules: {e}")))?;
    if specs.is_empty() {
        return Err(bad("holds no rules".into()));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = format!(
                "rule {} ({})",
                i + 1,
                v.get("repository")
                    .and_then(|r| r.as_str())
                    .unwrap_or("no repository")
            );
            let spec: RuleSpec =
                serde_json::from_value(v).map_err(|e| bad(format!("{label}: {e}")))?;
            Rule::from_spec(spec, known).map_err(|e| bad(format!("{label}: {e}")))
        })
        .collect()
}

/// The hub's own registry (`ACCOUNT_ID` in `AWS_REGION`) and those `ALLOWED_REGISTRIES` adds
/// (`<account>.dkr.ecr.<region>.amazonaws.com`, comma-separated).
fn allowed_registries(env: &Env) -> Result<Option<Vec<String>>, ConfigError> {
    let mut allowed = Vec::new();
    for r in env.list("ALLOWED_REGISTRIES") {
        let r = r.to_ascii_lowercase();
        if crate::image::Push::ecr_parts(&r).is_none() {
            return Err(ConfigError::new(
                "ALLOWED_REGISTRIES",
                format!(
                    "entry {r:?} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)"
                ),
            ));
        }
        allowed.push(r);
    }
    match (
        env.optional(bridgekeeper::accounts::ACCOUNT_VAR),
        env.optional("AWS_REGION"),
    ) {
        (Some(account), Some(region)) => {
            allowed.push(crate::image::Push::ecr_registry(&account, &region));
            Ok(Some(allowed))
        }
        _ if allowed.is_empty() => Ok(None),
        _ => Ok(Some(allowed)),
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let clusters = bridgekeeper::cluster_target::targets_from_env(env, "CLUSTERS")?;
        let aliases: Vec<String> = clusters.iter().map(|(a, _)| a.clone()).collect();
        let mode = env.choice(
            "ROLLOUT_MODE",
            &[("opt-out", Mode::OptOut), ("opt-in", Mode::OptIn)],
            // Consent of the workload's owner (its annotation), not of whoever pushes the tag.
            Mode::OptIn,
        )?;
        let max_concurrent = concurrency(env, "MAX_CONCURRENT_PATCHES")?;
        let cluster_concurrency = concurrency(env, "CLUSTER_CONCURRENCY")?;
        Ok(Config {
            admitted: Admitted::from_env(env)?,
            environment: environment(env),
            topics: Destinations::from_env(env, crate::FUNCTION)?,
            rules: rules(env, &aliases)?,
            clusters,
            mode,
            max_concurrent,
            cluster_concurrency,
            watch: env.flag("WATCH", true)?,
            // Lambda runs 15 minutes at most; a poll must fit in a watch.
            watch_timeout: env.seconds_in(
                "WATCH_TIMEOUT_SECONDS",
                Duration::from_secs(120),
                0..=900,
            )?,
            poll_interval: env.seconds_in("WATCH_POLL_SECONDS", Duration::from_secs(5), 1..=60)?,
            rollback_on_failure: env.flag("ROLLBACK_ON_FAILURE", false)?,
            allowed_registries: allowed_registries(env)?,
            reconcile_max_tags: env.number_in("RECONCILE_MAX_TAGS", 100usize, 1..=10_000)?,
            dry_run: env.flag("DRY_RUN", false)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const RULES: &str = r#"[
        {"repository": "shop/*", "tag": "latest", "clusters": ["dev"]},
        {"repository": "shop/*", "tag": "stable", "clusters": ["prod"]},
        {"repository": "shop/api", "semver": ">=1.0.0, <2", "clusters": ["staging"], "namespaces": ["shop"], "strategy": "restart"}
    ]"#;

    pub fn env_with(extra: &[(&'static str, &'static str)]) -> Env {
        let base = [
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            (
                "CLUSTERS",
                "dev=dev-eks, staging=staging-eks, prod=https://prod.example.internal:6443",
            ),
            ("ROLLOUT_RULES", RULES),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn reads_clusters_rules_and_defaults() {
        let c = Config::from_env(&env_with(&[])).unwrap();
        assert_eq!(c.clusters.len(), 3);
        assert_eq!(c.clusters[0], ("dev".into(), ClusterTarget::eks("dev-eks")));
        assert!(matches!(c.clusters[2].1, ClusterTarget::Url { .. }));
        assert_eq!(c.rules.len(), 3);
        assert_eq!(
            (c.mode, c.max_concurrent, c.cluster_concurrency, c.watch),
            (Mode::OptIn, 8, 8, true)
        );
    }

    #[test]
    fn a_bad_rule_is_named_by_position_and_repository() {
        for (rules, says) in [
            (
                r#"[{"repository": "a", "clusters": ["dev"]}]"#,
                "rule 1 (a): give a tag",
            ),
            (
                r#"[{"repository": "a", "tag": "x", "semver": "1", "clusters": ["dev"]}]"#,
                "one of tag, semver and pattern",
            ),
            (
                r#"[{"repository": "a", "pattern": "build-([0-9]+", "order": "numerical", "clusters": ["dev"]}]"#,
                "pattern \"build-([0-9]+\"",
            ),
            (
                r#"[{"repository": "a", "pattern": "build-([0-9]+)", "clusters": ["dev"]}]"#,
                "needs order",
            ),
            (
                r#"[{"repository": "a", "tag": "latest", "bump": true, "clusters": ["dev"]}]"#,
                "semver range or a pattern",
            ),
            (
                r#"[{"repository": "ok", "tag": "x", "clusters": ["dev"]}, {"repository": "b", "tag": "x", "clusters": ["qa"]}]"#,
                "rule 2 (b): cluster \"qa\" is not in CLUSTERS",
            ),
            (
                r#"[{"repository": "a", "semver": "not a range", "clusters": ["dev"]}]"#,
                "semver \"not a range\"",
            ),
            (
                r#"[{"repository": "a", "tag": "x", "clusters": ["dev"], "stratgy": "restart"}]"#,
                "unknown field `stratgy`",
            ),
            (r#"{"repository": "a"}"#, "is not a JSON array"),
        ] {
            let rules: &'static str = Box::leak(rules.to_owned().into_boxed_str());
            let err = Config::from_env(&env_with(&[("ROLLOUT_RULES", rules)])).unwrap_err();
            assert_eq!(err.var, "ROLLOUT_RULES");
            assert!(err.problem.contains(says), "{err}");
        }
    }

    #[test]
    fn bad_clusters_and_modes_are_named() {
        for (var, value) in [
            ("CLUSTERS", "dev"),
            ("CLUSTERS", "dev=a,dev=b"),
            ("CLUSTERS", "dev=not a name"),
            ("ROLLOUT_MODE", "sometimes"),
            ("MAX_CONCURRENT_PATCHES", "0"),
            ("CLUSTER_CONCURRENCY", "0"),
            ("CLUSTER_CONCURRENCY", "65"),
            ("WATCH_TIMEOUT_SECONDS", "soon"),
            // The review: these overflowed Instant arithmetic and panicked mid-watch.
            ("WATCH_POLL_SECONDS", "18446744073709551615"),
            ("WATCH_POLL_SECONDS", "0"),
            ("WATCH_TIMEOUT_SECONDS", "86400"),
            ("ROLLBACK_ON_FAILURE", "maybe"),
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
