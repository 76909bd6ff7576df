//! The run's notification: records changed, and lasting problems (conflicts, refused hosts,
//! held deletions, unreadable clusters and zones) when they start and when they clear — not
//! every five minutes. The last reported set lives in the stack's store, so a cold start does
//! not repeat it; when the store cannot be read, the warm copy in memory stands in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bridgekeeper::idempotency::{MAX_REMEMBERED, Remember, skipped};
use bridgekeeper::notify::{Notification, Severity};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::domain::{self, Conflict, HostChanges};
use crate::records::DnsChange;
use crate::sources::Skip;
use crate::zones::Zone;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub zone_id: String,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: usize,
    pub conflicts: Vec<Conflict>,
    pub held: Vec<Conflict>,
    /// Hosts Route53 refused (InvalidChangeBatch), with its message; the rest were applied.
    pub rejected: Vec<Conflict>,
    /// ChangeResourceRecordSets calls made (a refused batch is split and tried again).
    pub batches: usize,
    /// In a dry run: every change the run would make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DnsChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is worth another run (throttling, a 5xx): after the report, the run fails
    /// retryably.
    #[serde(skip)]
    pub retryable: bool,
}

impl ZoneReport {
    pub fn new(zone: &Zone) -> Self {
        ZoneReport {
            zone: zone.name.clone(),
            zone_id: zone.id.clone(),
            created: vec![],
            updated: vec![],
            deleted: vec![],
            unchanged: 0,
            conflicts: vec![],
            held: vec![],
            rejected: vec![],
            batches: 0,
            changes: vec![],
            error: None,
            retryable: false,
        }
    }

    pub fn changed(&self) -> usize {
        self.created.len() + self.updated.len() + self.deleted.len()
    }

    pub fn applied(&mut self, h: HostChanges) {
        match h.outcome {
            domain::Outcome::Created => self.created.push(h.host),
            domain::Outcome::Updated => self.updated.push(h.host),
            domain::Outcome::Deleted => self.deleted.push(h.host),
        }
    }
}

/// Zones whose wanted records were those last applied, within `DRIFT_INTERVAL_SECONDS` of
/// their last read, are not read (see `ledger`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reads {
    /// The hosted zones were listed (not taken from the ledger).
    pub zones_listed: bool,
    /// Zones whose records were read.
    pub zones_read: usize,
    /// Zones left unread: what they hold is what was applied, and was read recently.
    pub zones_unchanged: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountError {
    pub account: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterError {
    pub cluster: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    pub dry_run: bool,
    pub zones: Vec<ZoneReport>,
    pub hosts_without_zone: Vec<String>,
    pub skipped: Vec<Skip>,
    pub cluster_errors: Vec<ClusterError>,
    /// Member accounts whose zones could not be listed: their zones are left as they are, and
    /// no new host is created anywhere (it might belong in one of their zones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_errors: Vec<AccountError>,
    /// Why sync deletions were held back, if they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions_held: Option<String>,
    /// What this run asked of Route53.
    pub route53: Reads,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

const KEY: &str = "report#problems";
/// Problems whose text is kept, for the "Cleared:" lines; past it only fingerprints are kept.
const SAMPLE: usize = 100;
/// A kept line is cut here.
const MAX_LINE: usize = 300;
/// Lines of one source (one Ingress or Service) in the problem set; the rest are counted.
pub const MAX_PER_SOURCE: usize = 20;
/// Messages one hour may carry; past it the news waits (and adds up) for the next hour.
pub const MAX_MESSAGES_PER_HOUR: usize = 12;

/// What the store keeps of the last report: each problem's fingerprint (with its text for the
/// first [`SAMPLE`]), the fingerprint of the whole set (so a set too large to keep whole still
/// compares equal when nothing changed), and when the last messages went out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub digest: String,
    pub problems: BTreeMap<String, String>,
    pub sent: Vec<u64>,
}

fn fingerprint(line: &str) -> String {
    let d = Sha256::digest(line.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Reported {
    /// `current` as it would be kept, within the store's value size.
    fn of(current: &BTreeSet<String>, sent: Vec<u64>) -> Reported {
        let mut digest = Sha256::new();
        for line in current {
            digest.update(line.as_bytes());
            digest.update(b"\n");
        }
        let digest: String = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut problems = BTreeMap::new();
        let mut size = 0;
        for (i, line) in current.iter().enumerate() {
            let text = if i < SAMPLE {
                bridgekeeper::text::prefix(line, MAX_LINE).to_owned()
            } else {
                String::new()
            };
            size += 16 + 6 + text.len();
            // A set past the store's size keeps what fits; the digest still tells "unchanged".
            if size > MAX_REMEMBERED - 1_000 {
                break;
            }
            problems.insert(fingerprint(line), text);
        }
        Reported {
            digest,
            problems,
            sent,
        }
    }

    /// Reads the stored value: this format, or the plain lines an earlier version kept.
    fn parse(value: &str) -> Reported {
        if let Ok(r) = serde_json::from_str::<Reported>(value) {
            return r;
        }
        let lines: BTreeSet<String> = value.lines().map(str::to_owned).collect();
        Reported::of(&lines, vec![])
    }

    fn sent_last_hour(&self, at: u64) -> Vec<u64> {
        self.sent
            .iter()
            .copied()
            .filter(|t| at.saturating_sub(*t) < 3_600)
            .collect()
    }
}

pub struct State<'a, M> {
    memory: &'a M,
    warm: Mutex<Option<Reported>>,
}

impl<'a, M: Remember> State<'a, M> {
    pub fn new(memory: &'a M) -> Self {
        State {
            memory,
            warm: Mutex::new(None),
        }
    }

    async fn last(&self) -> Reported {
        let warm = || self.warm.lock().expect("state lock").clone();
        match self.memory.recall(KEY).await {
            Ok(Some(v)) => Reported::parse(&v),
            Ok(None) => warm().unwrap_or_default(),
            Err(e) => {
                skipped(KEY, &e);
                warm().unwrap_or_default()
            }
        }
    }

    /// The store itself, for what else dns-sync keeps (the Route53 ledger).
    pub fn store(&self) -> &'a M {
        self.memory
    }

    /// Remembers what was reported; called only once the report went out.
    pub async fn save(&self, reported: Reported) {
        let value = serde_json::to_string(&reported).unwrap_or_default();
        *self.warm.lock().expect("state lock") = Some(reported);
        if let Err(e) = self.memory.remember(KEY, &value).await {
            warn!(error = %e, "reported problems not remembered; a cold start may repeat them");
        }
    }
}

/// What to send after a run, if anything, and what to remember once it is sent (`None` when
/// nothing changed).
pub struct Outcome {
    pub notification: Option<Notification>,
    pub remember: Option<Reported>,
}

pub async fn notification<M: Remember>(
    r: &Response,
    environment: &str,
    state: &State<'_, M>,
) -> Outcome {
    if r.dry_run {
        return Outcome {
            notification: None,
            remember: None,
        };
    }
    let current: BTreeSet<String> = problems(r)
        .into_iter()
        .map(|k| k.replace('\n', " "))
        .collect();
    let last = state.last().await;
    let at = now();
    // Built once: compared with what was kept, and kept (with the send times) if it changed.
    let mut kept = Reported::of(&current, vec![]);
    let unchanged_set = kept.digest == last.digest;
    let news = News::since(&last, &current, unchanged_set, r);
    if news.changed == 0 && news.new.is_empty() && news.cleared == 0 {
        // The sample may differ while the set is the same (a new sample order): keep it fresh.
        kept.sent = last.sent.clone();
        let remember = (!unchanged_set).then_some(kept);
        return Outcome {
            notification: None,
            remember,
        };
    }
    let mut sent = last.sent_last_hour(at);
    if sent.len() >= MAX_MESSAGES_PER_HOUR {
        warn!(
            sent = sent.len(),
            "dns-sync messages rate-limited: the news waits for the next hour"
        );
        bridgekeeper::metrics::Metrics::new(crate::FUNCTION)
            .count("NotificationsSuppressed", 1)
            .flush();
        return Outcome {
            notification: None,
            remember: None,
        };
    }
    sent.push(at);
    kept.sent = sent;
    Outcome {
        notification: Some(news.words(r, environment, !current.is_empty())),
        remember: Some(kept),
    }
}

/// What changed since the last report: records changed this run, problems new, still open and
/// cleared (by fingerprint; cleared ones whose text was not kept are only counted).
struct News<'a> {
    changed: usize,
    new: Vec<&'a String>,
    still: Vec<&'a String>,
    cleared_named: Vec<String>,
    cleared: usize,
}

impl<'a> News<'a> {
    fn since(
        last: &Reported,
        current: &'a BTreeSet<String>,
        unchanged_set: bool,
        r: &Response,
    ) -> News<'a> {
        let fingerprints: BTreeMap<String, &String> =
            current.iter().map(|l| (fingerprint(l), l)).collect();
        let new: Vec<&String> = if unchanged_set {
            vec![]
        } else {
            fingerprints
                .iter()
                .filter(|(f, _)| !last.problems.contains_key(*f))
                .map(|(_, l)| *l)
                .collect()
        };
        let cleared_texts: Vec<String> = if unchanged_set {
            vec![]
        } else {
            last.problems
                .iter()
                .filter(|(f, _)| !fingerprints.contains_key(*f))
                .map(|(_, text)| text.clone())
                .collect()
        };
        let still: Vec<&String> = fingerprints
            .iter()
            .filter(|(f, _)| last.problems.contains_key(*f))
            .map(|(_, l)| *l)
            .collect();
        News {
            changed: r.zones.iter().map(|z| z.changed()).sum(),
            new,
            still,
            cleared: cleared_texts.len(),
            cleared_named: cleared_texts
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }

    /// The message: what changed, zone by zone, then the problems by state.
    fn words(&self, r: &Response, environment: &str, open: bool) -> Notification {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.changed, "records changed"),
            (self.new.len(), "new problems"),
            (self.cleared, "cleared"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let zones: Vec<&str> = r
            .zones
            .iter()
            .filter(|z| z.changed() > 0 || z.error.is_some() || !z.conflicts.is_empty())
            .map(|z| z.zone.as_str())
            .collect();
        let subject = format!(
            "[{environment}] DNS sync: {}{}",
            parts.join(", "),
            if zones.is_empty() {
                String::new()
            } else {
                format!(" in {}", zones.join(", "))
            }
        );
        let mut body = String::new();
        for z in r.zones.iter().filter(|z| z.changed() > 0) {
            let _ = writeln!(body, "Zone {} ({}):", z.zone, z.zone_id);
            for (label, hosts) in [
                ("created", &z.created),
                ("updated", &z.updated),
                ("deleted", &z.deleted),
            ] {
                for h in hosts {
                    let _ = writeln!(body, "  {label:<9}{h}");
                }
            }
            let _ = writeln!(body, "  ({} unchanged)\n", z.unchanged);
        }
        let label = |key: &str| key.split_once(' ').map_or("", |(k, _)| k).to_uppercase();
        let cleared: Vec<&String> = self.cleared_named.iter().collect();
        for (title, keys) in [
            ("New problems:", &self.new),
            ("Still open:", &self.still),
            ("Cleared:", &cleared),
        ] {
            if keys.is_empty() {
                continue;
            }
            let _ = writeln!(body, "{title}");
            for k in keys {
                let line = k.split_once(' ').map_or(k.as_str(), |(_, l)| l);
                let _ = writeln!(body, "  {:<9}{line}", label(k));
            }
            body.push('\n');
        }
        let cleared_unnamed = self.cleared - self.cleared_named.len();
        if cleared_unnamed > 0 {
            let _ = writeln!(
                body,
                "Cleared: {cleared_unnamed} more problems (too many to keep their text)\n"
            );
        }
        if let Some(why) = &r.deletions_held {
            let _ = writeln!(body, "Deletions held: {why}");
        }
        let severity = if self
            .new
            .iter()
            .any(|k| k.starts_with("error ") || k.starts_with("rejected "))
        {
            Severity::Error
        } else if open {
            Severity::Warning
        } else {
            Severity::Info
        };
        Notification::new(subject, body.trim_end().to_owned(), severity)
            .attribute("zone", zones.join(","))
    }
}

/// The lasting problems of a run as stable `<kind> <line>` keys: what is reported when it
/// starts and when it clears.
pub fn problems(r: &Response) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &str, line: String| {
        out.insert(format!("{kind} {}", strip_request_id(&line)));
    };
    // One tenant's Ingress naming a thousand hosts is one problem with a count, not a thousand.
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for z in &r.zones {
        for c in &z.conflicts {
            if let Some(source) = source_of(&c.reason) {
                let n = per_source.entry(source.to_owned()).or_default();
                *n += 1;
                if *n > MAX_PER_SOURCE {
                    continue;
                }
            }
            add("conflict", format!("{} ({}): {}", c.host, z.zone, c.reason));
        }
        for c in &z.rejected {
            add("rejected", format!("{} ({}): {}", c.host, z.zone, c.reason));
        }
        for c in &z.held {
            add("held", format!("{} ({}): {}", c.host, z.zone, c.reason));
        }
        if let Some(e) = &z.error {
            add("error", format!("zone {} ({}): {e}", z.zone, z.zone_id));
        }
    }
    for c in &r.cluster_errors {
        add("error", format!("cluster {}: {}", c.cluster, c.error));
    }
    for a in &r.account_errors {
        add(
            "error",
            format!(
                "account {}: its zones could not be listed, left as they are, and no new host was created anywhere: {}",
                a.account, a.error
            ),
        );
    }
    for h in &r.hosts_without_zone {
        add("no-zone", h.clone());
    }
    for (source, n) in per_source {
        if n > MAX_PER_SOURCE {
            add(
                "conflict",
                format!(
                    "{source}: {} more hosts in conflict, not listed",
                    n - MAX_PER_SOURCE
                ),
            );
        }
    }
    out
}

/// The source a conflict's reason starts with (`<cluster>/<kind>/<namespace>/<name>`), if any.
fn source_of(reason: &str) -> Option<&str> {
    let first = reason.split([' ', ':']).next()?;
    (first.matches('/').count() == 3).then_some(first)
}

/// Request ids differ between runs of the same situation.
fn strip_request_id(line: &str) -> String {
    match line.find(" [request id ") {
        Some(i) => {
            let end = line[i..].find(']').map_or(line.len(), |j| i + j + 1);
            format!("{}{}", &line[..i], &line[end..])
        }
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use bridgekeeper::idempotency::testing::Memory;

    use super::*;
    use crate::domain::Conflict;

    fn zone(conflicts: Vec<Conflict>) -> ZoneReport {
        ZoneReport {
            conflicts,
            ..ZoneReport::new(&Zone {
                id: "Z1".into(),
                name: "example.com".into(),
                private: false,
                account: None,
            })
        }
    }

    fn without_zone(hosts: usize, tag: &str) -> Response {
        Response {
            hosts_without_zone: (0..hosts)
                .map(|i| format!("h{i:05}.{tag}.example.net"))
                .collect(),
            ..Response::default()
        }
    }

    /// The review: the remembered set was a value cut at 100 KB, so past ~1,700 problem lines
    /// it never matched and every five-minute run notified again.
    #[tokio::test]
    async fn a_problem_set_too_large_to_keep_is_still_reported_once() {
        let memory = Memory::default();
        let r = without_zone(5_000, "far");
        let mut sent = 0;
        for _ in 0..3 {
            let state = State::new(&memory);
            let out = notification(&r, "prod", &state).await;
            if out.notification.is_some() {
                sent += 1;
            }
            if let Some(keep) = out.remember {
                state.save(keep).await;
            }
        }
        assert_eq!(sent, 1);
        let kept = memory.values.lock().unwrap()["report#problems"].len();
        assert!(kept <= MAX_REMEMBERED, "{kept}");
    }

    #[tokio::test]
    async fn one_source_with_a_thousand_hosts_is_a_few_lines_and_a_count() {
        let conflicts = (0..1_000)
            .map(|i| Conflict {
                host: format!("h{i}.example.com"),
                reason: format!("prod/ingress/tenant/flood: refused, no claim to h{i}.example.com"),
            })
            .collect();
        let r = Response {
            zones: vec![zone(conflicts)],
            ..Response::default()
        };
        let lines = problems(&r);
        assert_eq!(lines.len(), MAX_PER_SOURCE + 1);
        assert!(
            lines.iter().any(|l| l.contains("980 more hosts")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn a_storm_is_rate_limited_to_a_dozen_messages_an_hour() {
        let memory = Memory::default();
        let mut sent = 0;
        for i in 0..30 {
            let state = State::new(&memory);
            let r = without_zone(1, &format!("flap{}", i % 2));
            let out = notification(&r, "prod", &state).await;
            if out.notification.is_some() {
                sent += 1;
            }
            if let Some(keep) = out.remember {
                state.save(keep).await;
            }
        }
        assert_eq!(sent, MAX_MESSAGES_PER_HOUR);
    }

    /// A store written by the previous version (plain lines) is read, not re-reported.
    #[tokio::test]
    async fn the_previous_versions_plain_lines_are_still_understood() {
        let memory = Memory::default();
        let r = without_zone(2, "old");
        let lines: Vec<String> = problems(&r).into_iter().collect();
        memory
            .values
            .lock()
            .unwrap()
            .insert(KEY.into(), lines.join("\n"));
        let out = notification(&r, "prod", &State::new(&memory)).await;
        assert!(out.notification.is_none());
    }
}
