use bridgekeeper::accounts::Admitted;
use bridgekeeper::config::{Arn, ConfigError, Env, environment};
use bridgekeeper::notify::Destinations;

use crate::domain::Selection;

/// RDS runs at most five exports at once per account and region.
pub const ACCOUNT_EXPORT_LIMIT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryPolicy {
    /// Only when something was started, deferred or failed.
    Changes,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    /// The accounts whose events it acts on (the hub's and `MEMBER_ACCOUNTS`).
    pub admitted: Admitted,
    /// The alerts topic, and the chat topic that gets the chat JSON of every notification.
    pub topics: Destinations,
    pub bucket: String,
    pub prefix: String,
    pub role_arn: Arn,
    pub kms_key_arn: Arn,
    /// `EXPORT_ONLY`: what each source exports.
    pub export_only: crate::export_only::ExportOnly,
    pub selection: Selection,
    pub max_concurrent: usize,
    pub max_attempts: u32,
    /// A selected source whose newest successful export is older than this is reported.
    pub max_export_age: chrono::Duration,
    /// `MANUAL_SNAPSHOTS`: a manual snapshot newer than the automated and AWS Backup ones is
    /// the one exported (off: manual snapshots are often ad hoc copies).
    pub manual_snapshots: bool,
    /// `LIVE_EXPORT_CLUSTERS`: Aurora clusters whose live data is exported each night instead
    /// of their newest snapshot (RDS clones the cluster; no snapshot needed).
    pub live_clusters: Vec<String>,
    /// `GLUE_DATABASE_PREFIX`: each completed export's tables go into the Glue Data Catalog,
    /// one database per source named `<prefix><source>`; unset: no catalog.
    pub glue_database_prefix: Option<String>,
    pub dry_run: bool,
    pub summary: SummaryPolicy,
    /// `MEMBER_ACCOUNTS`: other accounts whose databases are exported too, each through the
    /// member role there, with its own export role, quota and report.
    pub members: Vec<Member>,
    pub member_export_role: String,
    /// `ACCOUNT_ID`: this account, when known; an RDS event from an account that is neither this
    /// one nor a member is refused.
    pub own_account: Option<String>,
}

/// A member account: `staging=222222222222` names it in reports, a bare id is its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub account: String,
}

/// The role each member stack creates for RDS to write exports with (trusted by
/// `export.rds.amazonaws.com`), unless `MEMBER_EXPORT_ROLE_NAME` names another.
pub const MEMBER_EXPORT_ROLE: &str = "bridgekeeper-rds-export";

/// `MEMBER_ACCOUNTS` (every member account), named in reports by `MEMBER_ACCOUNT_NAMES` where it
/// names them: a name list that leaves some out must not leave their databases out.
fn members(admitted: &Admitted) -> Vec<Member> {
    admitted
        .members()
        .iter()
        .map(|(name, account)| Member {
            name: name.clone(),
            account: account.clone(),
        })
        .collect()
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let prefix = env
            .optional("EXPORT_PREFIX")
            .unwrap_or_else(|| "rds-exports".to_owned())
            .trim_matches('/')
            .to_owned();
        if prefix.contains(':') {
            return Err(ConfigError::new(
                "EXPORT_PREFIX",
                "contains ':', which RDS rejects in an S3 prefix",
            ));
        }
        let bucket = env.required("EXPORT_BUCKET")?;
        if bucket.starts_with("arn:") || bucket.contains('/') {
            return Err(ConfigError::new(
                "EXPORT_BUCKET",
                format!("is {bucket:?}, expected a bucket name"),
            ));
        }
        let instances = env.list("SOURCE_DB_INSTANCES");
        let clusters = env.list("SOURCE_DB_CLUSTERS");
        let selection = if instances.is_empty() && clusters.is_empty() {
            let tag = env
                .optional("SOURCE_TAG")
                .unwrap_or_else(|| "bridgekeeper:export=true".to_owned());
            let (key, value) = tag.split_once('=').ok_or_else(|| {
                ConfigError::new("SOURCE_TAG", format!("is {tag:?}, expected key=value"))
            })?;
            Selection::Tag {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }
        } else {
            Selection::Ids {
                instances,
                clusters,
            }
        };
        // RDS runs at most 5 exports at once per account.
        let max_concurrent = env.number_in(
            "MAX_CONCURRENT_EXPORTS",
            ACCOUNT_EXPORT_LIMIT,
            1..=ACCOUNT_EXPORT_LIMIT,
        )?;
        // chrono::Duration::hours panics past about 2.5e12 hours; a year is more than enough.
        let max_export_age = env.number_in("MAX_EXPORT_AGE_HOURS", 36i64, 1..=8_760)?;
        let max_attempts = env.number_in("MAX_EXPORT_ATTEMPTS", 3u32, 1..=10)?;
        let admitted = Admitted::from_env(env)?;
        let export_role = env
            .optional("MEMBER_EXPORT_ROLE_NAME")
            .unwrap_or_else(|| MEMBER_EXPORT_ROLE.to_owned());
        let summary = env.choice(
            "SUMMARY_NOTIFICATIONS",
            &[
                ("changes", SummaryPolicy::Changes),
                ("always", SummaryPolicy::Always),
                ("never", SummaryPolicy::Never),
            ],
            SummaryPolicy::Changes,
        )?;
        Ok(Config {
            environment: environment(env),
            topics: Destinations::from_env(env, crate::FUNCTION)?,
            bucket,
            prefix,
            role_arn: env.arn("EXPORT_ROLE_ARN")?,
            kms_key_arn: env.arn("EXPORT_KMS_KEY_ARN")?,
            export_only: crate::export_only::ExportOnly::parse(&env.list("EXPORT_ONLY"))
                .map_err(|e| ConfigError::new("EXPORT_ONLY", e))?,
            selection,
            max_concurrent,
            max_attempts,
            max_export_age: chrono::Duration::hours(max_export_age),
            manual_snapshots: env.flag("MANUAL_SNAPSHOTS", false)?,
            live_clusters: env.list("LIVE_EXPORT_CLUSTERS"),
            glue_database_prefix: env.optional("GLUE_DATABASE_PREFIX"),
            dry_run: env.flag("DRY_RUN", false)?,
            summary,
            members: members(&admitted),
            admitted,
            member_export_role: export_role,
            own_account: env.optional(bridgekeeper::accounts::ACCOUNT_VAR),
        })
    }

    /// The region the exports run in: the export key's (RDS exports only into a bucket of the
    /// snapshot's region, encrypted with a key of it).
    pub fn region(&self) -> &str {
        self.kms_key_arn
            .as_str()
            .split(':')
            .nth(3)
            .unwrap_or_default()
    }

    /// The configuration of one member account's run: its name in reports, its export role, and
    /// a prefix of its own in the shared bucket (two accounts may have databases of one name).
    pub fn for_member(&self, member: &Member) -> Config {
        let role = self.role_arn.as_str();
        let partition = role.split(':').nth(1).unwrap_or("aws");
        // The member stack names its export role for its region (IAM names are per account),
        // and RDS exports only into a bucket of the snapshot's region: the export key's.
        let region = self.region();
        let role_arn = format!(
            "arn:{partition}:iam::{}:role/{}-{region}",
            member.account, self.member_export_role
        );
        Config {
            environment: member.name.clone(),
            prefix: format!("{}/{}", self.prefix, member.account),
            role_arn: role_arn
                .parse()
                .expect("a role ARN from an account id and a role name"),
            members: Vec::new(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::REQUIRED;
    fn env_with(extra: &[(&'static str, &'static str)]) -> Env {
        Env::from_pairs(REQUIRED.iter().chain(extra).copied())
    }

    #[test]
    fn defaults_select_by_tag_and_allow_five_exports() {
        let c = Config::from_env(&env_with(&[])).unwrap();
        assert_eq!(
            c.selection,
            Selection::Tag {
                key: "bridgekeeper:export".into(),
                value: "true".into()
            }
        );
        assert_eq!(
            (c.max_concurrent, c.prefix.as_str(), c.dry_run),
            (5, "rds-exports", false)
        );
        assert_eq!(c.summary, SummaryPolicy::Changes);
    }

    #[test]
    fn listed_identifiers_replace_tag_selection() {
        let c = Config::from_env(&env_with(&[("SOURCE_DB_CLUSTERS", "orders-aurora")])).unwrap();
        assert_eq!(
            c.selection,
            Selection::Ids {
                instances: vec![],
                clusters: vec!["orders-aurora".into()]
            }
        );
    }

    #[test]
    fn names_for_some_member_accounts_leave_none_out() {
        let c = Config::from_env(&env_with(&[
            ("MEMBER_ACCOUNTS", "222222222222,333333333333"),
            ("MEMBER_ACCOUNT_NAMES", "staging=222222222222"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
        ]))
        .unwrap();
        let members: Vec<_> = c
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.account.as_str()))
            .collect();
        assert_eq!(
            members,
            [
                ("staging", "222222222222"),
                ("333333333333", "333333333333")
            ]
        );
    }

    #[test]
    fn a_name_for_an_account_that_is_not_a_member_is_refused_by_name() {
        let err = Config::from_env(&env_with(&[
            ("MEMBER_ACCOUNTS", "222222222222"),
            ("MEMBER_ACCOUNT_NAMES", "prod=333333333333"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("MEMBER_ACCOUNT_NAMES") && text.contains("333333333333"),
            "{text}"
        );
    }

    #[test]
    fn a_member_account_gets_its_export_role_prefix_and_name() {
        let c = Config::from_env(&env_with(&[
            ("MEMBER_ACCOUNTS", "staging=222222222222, 333333333333"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
        ]))
        .unwrap();
        assert_eq!(c.members.len(), 2);
        let staging = c.for_member(&c.members[0]);
        assert_eq!(
            staging.role_arn.as_str(),
            "arn:aws:iam::222222222222:role/bridgekeeper-rds-export-eu-west-1"
        );
        assert_eq!(staging.prefix, "rds-exports/222222222222");
        assert_eq!(staging.environment, "staging");
        assert_eq!(
            (staging.bucket.as_str(), staging.kms_key_arn.as_str()),
            (c.bucket.as_str(), c.kms_key_arn.as_str())
        );
        assert_eq!(c.for_member(&c.members[1]).environment, "333333333333");
        for bad in [
            "staging=2222",
            "a=222222222222,b=222222222222",
            "arn:aws:iam::222222222222:root",
        ] {
            let err = Config::from_env(&env_with(&[
                ("MEMBER_ACCOUNTS", bad),
                ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
            ]))
            .unwrap_err();
            assert_eq!(err.var, "MEMBER_ACCOUNTS", "{bad}");
        }
        let without_role = Config::from_env(&env_with(&[("MEMBER_ACCOUNTS", "222222222222")]));
        assert_eq!(without_role.unwrap_err().var, "MEMBER_ROLE_NAME");
    }

    #[test]
    fn missing_bucket_is_named() {
        let env = Env::from_pairs(
            REQUIRED
                .iter()
                .filter(|(k, _)| *k != "EXPORT_BUCKET")
                .copied(),
        );
        assert_eq!(Config::from_env(&env).unwrap_err().var, "EXPORT_BUCKET");
    }

    #[test]
    fn bad_values_are_rejected_with_the_variable_name() {
        for (var, value) in [
            ("EXPORT_PREFIX", "exports:nightly"),
            ("MAX_CONCURRENT_EXPORTS", "6"),
            ("MAX_CONCURRENT_EXPORTS", "0"),
            ("SOURCE_TAG", "no-equals-sign"),
            ("SUMMARY_NOTIFICATIONS", "sometimes"),
            ("DRY_RUN", "perhaps"),
            ("EXPORT_ROLE_ARN", "export-role"),
            ("MAX_EXPORT_AGE_HOURS", "0"),
            ("MAX_EXPORT_AGE_HOURS", "36h"),
            // The review: chrono::Duration::hours panicked at init on this.
            ("MAX_EXPORT_AGE_HOURS", "9223372036854775807"),
            ("EXPORT_ONLY", "shop.public.order-lines"),
            ("MANUAL_SNAPSHOTS", "sometimes"),
        ] {
            let err = Config::from_env(&env_with(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }
}
