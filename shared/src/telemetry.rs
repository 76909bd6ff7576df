//! Logging: JSON lines when Lambda's advanced logging asks for them (`AWS_LAMBDA_LOG_FORMAT=JSON`),
//! readable text otherwise; the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` (which may
//! also hold per-crate directives), else `info`.

use tracing_subscriber::EnvFilter;

use crate::config::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub json: bool,
    pub filter: String,
}

impl LogSettings {
    pub fn from_env(env: &Env) -> Self {
        let json = env
            .optional("AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|f| f.eq_ignore_ascii_case("json"));
        // Lambda's level names (TRACE..FATAL) map onto tracing's; FATAL has no equivalent.
        let filter = match env
            .optional("AWS_LAMBDA_LOG_LEVEL")
            .map(|l| l.to_ascii_lowercase())
        {
            Some(l) if l == "fatal" => "error".to_owned(),
            Some(l) => l,
            None => env
                .optional("RUST_LOG")
                .unwrap_or_else(|| "info".to_owned()),
        };
        LogSettings { json, filter }
    }
}

/// Crates whose TRACE/DEBUG lines carry credentials: aws-sigv4 logs the signing identity,
/// access key id included (checked by cluster's `no_log_line_carries_...` test). Whatever level
/// is asked for, they stay at INFO.
const REDACTING: &[&str] = &["aws_sigv4=info"];

/// The filter for `directives` (a level or RUST_LOG-style list), with [`REDACTING`] appended so
/// they win over a global `trace`.
pub fn filter(directives: &str) -> EnvFilter {
    let base = EnvFilter::try_new(directives)
        .map(|_| directives)
        .unwrap_or("info");
    EnvFilter::new(format!("{base},{}", REDACTING.join(",")))
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let settings = LogSettings::from_env(&Env::from_process());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&settings.filter))
        .with_target(false)
        .with_writer(std::io::stdout);
    if settings.json {
        // Fields at the top level so Logs Insights can filter on them (`zone`, `changes`, ...).
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time()
            .init();
    } else {
        builder.with_ansi(false).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_when_lambda_asks_for_it() {
        let s = LogSettings::from_env(&Env::from_pairs([("AWS_LAMBDA_LOG_FORMAT", "JSON")]));
        assert!(s.json);
        assert_eq!(s.filter, "info");
        assert!(!LogSettings::from_env(&Env::from_pairs([("AWS_LAMBDA_LOG_FORMAT", "Text")])).json);
    }

    #[test]
    fn lambda_level_wins_over_rust_log() {
        let s = LogSettings::from_env(&Env::from_pairs([
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "warn"),
        ]));
        assert_eq!(s.filter, "debug");
        let s = LogSettings::from_env(&Env::from_pairs([("RUST_LOG", "dns_sync=debug,info")]));
        assert_eq!(s.filter, "dns_sync=debug,info");
        let s = LogSettings::from_env(&Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "FATAL")]));
        assert_eq!(s.filter, "error");
    }
}
