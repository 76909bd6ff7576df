//! Typed environment configuration. Each function reads its `Config` once at init; a missing or
//! malformed variable stops the cold start with an error that names the variable and the problem.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What was wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {var} {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &str, problem: impl fmt::Display) -> Self {
        ConfigError {
            var: var.to_owned(),
            problem: problem.to_string(),
        }
    }

    pub fn missing(var: &str) -> Self {
        Self::new(var, "is not set")
    }
}

/// Ten years: the longest duration any setting takes.
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A source of variables: the process environment, or a fixed map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value, or `None` when unset or blank (SAM passes empty strings for unset Parameters).
    pub fn optional(&self, var: &str) -> Option<String> {
        self.vars
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.optional(var).ok_or_else(|| ConfigError::missing(var))
    }

    /// Parses with `FromStr`; the error names the variable, the value and what was expected.
    pub fn parse<T>(&self, var: &str, expected: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
    {
        self.optional(var)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| ConfigError::new(var, format!("is {v:?}, expected {expected}")))
            })
            .transpose()
    }

    pub fn parse_or<T: FromStr>(
        &self,
        var: &str,
        expected: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.parse(var, expected)?.unwrap_or(default))
    }

    /// A whole number within `allowed` (a bound, a concurrency, a count), or `default` when
    /// unset; out of range is refused by name, with the range.
    pub fn number_in<T>(
        &self,
        var: &str,
        default: T,
        allowed: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a number from {} to {}", allowed.start(), allowed.end());
        let n = self.parse_or(var, &expected, default)?;
        if !allowed.contains(&n) {
            return Err(ConfigError::new(
                var,
                format!("is {n}, expected {expected}"),
            ));
        }
        Ok(n)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`), case-insensitive.
    pub fn flag(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self
            .optional(var)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                var,
                format!("is {other:?}, expected true or false"),
            )),
        }
    }

    /// One of a fixed set of words; the error lists them.
    pub fn choice<T: Copy>(
        &self,
        var: &str,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = self.optional(var) else {
            return Ok(default);
        };
        options
            .iter()
            .find(|(word, _)| *word == value)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                ConfigError::new(
                    var,
                    format!("is {value:?}, expected one of {}", words.join(", ")),
                )
            })
    }

    /// A number of seconds up to ten years: anything larger overflows the time arithmetic it
    /// feeds (`Instant + Duration` panics), so it is refused here, by name.
    pub fn seconds(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.seconds_in(var, default, 0..=MAX_SECONDS)
    }

    /// A number of seconds within `allowed`.
    pub fn seconds_in(
        &self,
        var: &str,
        default: Duration,
        allowed: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        match self.parse::<u64>(var, "a whole number of seconds")? {
            None => Ok(default),
            Some(n) if allowed.contains(&n) => Ok(Duration::from_secs(n)),
            Some(n) => Err(ConfigError::new(
                var,
                format!(
                    "is {n} seconds, expected {} to {}",
                    allowed.start(),
                    allowed.end()
                ),
            )),
        }
    }

    /// A comma-separated list; blanks are dropped.
    pub fn list(&self, var: &str) -> Vec<String> {
        self.optional(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn arn(&self, var: &str) -> Result<Arn, ConfigError> {
        let v = self.required(var)?;
        v.parse()
            .map_err(|why| ConfigError::new(var, format!("is {v:?}, not an ARN: {why}")))
    }

    pub fn optional_arn(&self, var: &str) -> Result<Option<Arn>, ConfigError> {
        match self.optional(var) {
            None => Ok(None),
            Some(_) => self.arn(var).map(Some),
        }
    }

    /// An SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<queue>` (a stand-in's
    /// `http://host:port/<account>/<queue>` too), the form SQS's SendMessage takes.
    pub fn queue_url(&self, var: &str) -> Result<String, ConfigError> {
        self.optional_queue_url(var)?
            .ok_or_else(|| ConfigError::missing(var))
    }

    pub fn optional_queue_url(&self, var: &str) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.optional(var) else {
            return Ok(None);
        };
        let mut path = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, path)| path.trim_end_matches('/').split('/'));
        let account = path.as_mut().and_then(|p| p.next());
        let queue = path.as_mut().and_then(|p| p.next());
        let rest = path.as_mut().and_then(|p| p.next());
        let ok = account.is_some_and(crate::accounts::is_account_id)
            && queue.is_some_and(|q| {
                !q.is_empty()
                    && q.len() <= 80
                    && q.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
            && rest.is_none();
        if !ok {
            return Err(ConfigError::new(
                var,
                format!(
                    "is {url:?}, expected an SQS queue URL, https://sqs.<region>.amazonaws.com/<account>/<queue>"
                ),
            ));
        }
        Ok(Some(url))
    }
}

/// An ARN, checked for shape: `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn(String);

impl Arn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn part(&self, i: usize) -> &str {
        self.0.splitn(6, ':').nth(i).unwrap_or_default()
    }

    pub fn service(&self) -> &str {
        self.part(2)
    }

    pub fn region(&self) -> &str {
        self.part(3)
    }

    pub fn account(&self) -> &str {
        self.part(4)
    }

    pub fn resource(&self) -> &str {
        self.part(5)
    }
}

impl FromStr for Arn {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, service, _region, account, resource]
                if !partition.is_empty() && !service.is_empty() && !resource.is_empty() =>
            {
                if !account.is_empty() && !account.chars().all(|c| c.is_ascii_digit()) {
                    return Err("the account is not a number");
                }
                Ok(Arn(s.to_owned()))
            }
            ["arn", ..] => Err("expected arn:partition:service:region:account:resource"),
            _ => Err("does not start with 'arn:'"),
        }
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The deployment environment, used in notification subjects and attributes.
pub fn environment(env: &Env) -> String {
    env.optional("ENVIRONMENT")
        .unwrap_or_else(|| "dev".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The review: IDEMPOTENCY_TTL_SECONDS (and every other duration) near u64::MAX panicked
    /// in the time arithmetic it fed; it is refused at init, by name.
    #[test]
    fn durations_that_would_overflow_are_refused_by_name() {
        let env = Env::from_pairs([("IDEMPOTENCY_TTL_SECONDS", "18446744073709551615")]);
        let err = env
            .seconds_in(
                "IDEMPOTENCY_TTL_SECONDS",
                Duration::from_secs(1),
                3_600..=31_536_000,
            )
            .unwrap_err();
        assert_eq!(err.var, "IDEMPOTENCY_TTL_SECONDS");
        assert!(
            env.seconds("IDEMPOTENCY_TTL_SECONDS", Duration::ZERO)
                .is_err()
        );
        let ok = Env::from_pairs([("X", "30")]);
        assert_eq!(
            ok.seconds("X", Duration::ZERO).unwrap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn queue_urls_are_sqs_urls_or_refused_by_name() {
        let url = |v: &'static str| Env::from_pairs([("Q", v)]).optional_queue_url("Q");
        for good in [
            "https://sqs.eu-west-1.amazonaws.com/123456789012/bridgekeeper-failed",
            "http://127.0.0.1:5555/123456789012/queue.fifo",
        ] {
            assert_eq!(url(good).unwrap().as_deref(), Some(good));
        }
        for bad in [
            "sqs.eu-west-1.amazonaws.com/123456789012/q",
            "https://sqs.eu-west-1.amazonaws.com/q",
            "https://sqs.eu-west-1.amazonaws.com/12345/q",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/q/x",
            "arn:aws:sqs:eu-west-1:123456789012:q",
        ] {
            assert_eq!(url(bad).unwrap_err().var, "Q", "{bad}");
        }
        assert_eq!(url("").unwrap(), None);
        assert!(Env::default().queue_url("Q").is_err());
    }

    #[test]
    fn missing_variable_is_named() {
        let err = Env::default().required("ALERTS_TOPIC_ARN").unwrap_err();
        assert_eq!(err.var, "ALERTS_TOPIC_ARN");
        assert_eq!(
            err.to_string(),
            "configuration: ALERTS_TOPIC_ARN is not set"
        );
    }

    #[test]
    fn blank_variable_counts_as_missing() {
        let env = Env::from_pairs([("EXPORT_BUCKET", "  ")]);
        assert_eq!(env.optional("EXPORT_BUCKET"), None);
        assert!(env.required("EXPORT_BUCKET").is_err());
    }

    #[test]
    fn not_a_number_names_variable_and_value() {
        let env = Env::from_pairs([("MAX_CONCURRENT_EXPORTS", "five")]);
        let err = env
            .parse::<u32>("MAX_CONCURRENT_EXPORTS", "a number from 1 to 5")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: MAX_CONCURRENT_EXPORTS is \"five\", expected a number from 1 to 5"
        );
        assert_eq!(Env::default().parse_or("N", "a number", 8u32).unwrap(), 8);
    }

    #[test]
    fn not_an_arn_names_variable_and_why() {
        let env = Env::from_pairs([("ALERTS_TOPIC_ARN", "alerts"), ("ROLE", "arn:aws:iam")]);
        let err = env.arn("ALERTS_TOPIC_ARN").unwrap_err();
        assert_eq!(err.var, "ALERTS_TOPIC_ARN");
        assert!(err.problem.contains("does not start with 'arn:'"), "{err}");
        assert!(
            env.arn("ROLE")
                .unwrap_err()
                .problem
                .contains("expected arn:partition")
        );
    }

    #[test]
    fn arn_parts_are_readable() {
        let arn: Arn = "arn:aws:sns:eu-west-1:123456789012:bridgekeeper-alerts"
            .parse()
            .unwrap();
        assert_eq!(
            (arn.service(), arn.region(), arn.account(), arn.resource()),
            ("sns", "eu-west-1", "123456789012", "bridgekeeper-alerts")
        );
        let s3: Arn = "arn:aws:s3:::my-bucket".parse().unwrap();
        assert_eq!(s3.resource(), "my-bucket");
        assert!("arn:aws:iam::12ab:role/x".parse::<Arn>().is_err());
    }

    #[test]
    fn flags_lists_and_durations_parse() {
        let env = Env::from_pairs([
            ("DRY_RUN", "TRUE"),
            ("BAD", "maybe"),
            ("IDS", "db-1, ,db-2,"),
            ("WAIT", "90"),
        ]);
        assert!(env.flag("DRY_RUN", false).unwrap());
        assert!(!env.flag("UNSET", false).unwrap());
        assert_eq!(env.flag("BAD", false).unwrap_err().var, "BAD");
        assert_eq!(env.list("IDS"), ["db-1", "db-2"]);
        assert_eq!(
            env.seconds("WAIT", Duration::ZERO).unwrap(),
            Duration::from_secs(90)
        );
    }
}
