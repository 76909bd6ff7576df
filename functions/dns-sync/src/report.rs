//! The run's notification: records changed, and lasting problems (conflicts, refused hosts,
//! held deletions, unreadable clusters and zones) when they start and when they clear — not
//! every five minutes. The last reported set lives in the stack's store, so a cold start does
//! not repeat it; when the store cannot be read, the warm copy in memory stands in.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Mutex;

use bridgekeeper::idempotency::{Remember, skipped};
use bridgekeeper::notify::{Notification, Severity};
use tracing::warn;

use crate::handler::Response;

const KEY: &str = "report#problems";

pub struct State<'a, M> {
    memory: &'a M,
    warm: Mutex<Option<BTreeSet<String>>>,
}

impl<'a, M: Remember> State<'a, M> {
    pub fn new(memory: &'a M) -> Self {
        State {
            memory,
            warm: Mutex::new(None),
        }
    }

    async fn last(&self) -> BTreeSet<String> {
        let warm = || self.warm.lock().expect("state lock").clone();
        match self.memory.recall(KEY).await {
            Ok(Some(v)) => v.lines().map(str::to_owned).collect(),
            Ok(None) => warm().unwrap_or_default(),
            Err(e) => {
                skipped(KEY, &e);
                warm().unwrap_or_default()
            }
        }
    }

    /// Remembers what was reported; called only once the report went out.
    pub async fn save(&self, reported: BTreeSet<String>) {
        let value = reported.iter().cloned().collect::<Vec<_>>().join("\n");
        *self.warm.lock().expect("state lock") = Some(reported);
        if let Err(e) = self.memory.remember(KEY, &value).await {
            warn!(error = %e, "reported problems not remembered; a cold start may repeat them");
        }
    }
}

/// What to send after a run, if anything, and the problem set to remember once it is sent
/// (`None` when it is the one already remembered).
pub struct Outcome {
    pub notification: Option<Notification>,
    pub remember: Option<BTreeSet<String>>,
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
    let new: Vec<&String> = current.difference(&last).collect();
    let cleared: Vec<&String> = last.difference(&current).collect();
    let changed: usize = r.zones.iter().map(|z| z.changed()).sum();
    let remember = (current != last).then(|| current.clone());
    if changed == 0 && new.is_empty() && cleared.is_empty() {
        return Outcome {
            notification: None,
            remember,
        };
    }
    let mut parts = Vec::new();
    for (n, what) in [
        (changed, "records changed"),
        (new.len(), "new problems"),
        (cleared.len(), "cleared"),
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
    for (title, keys) in [
        ("New problems:", new.clone()),
        (
            "Still open:",
            current.intersection(&last).collect::<Vec<_>>(),
        ),
        ("Cleared:", cleared.clone()),
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
    if let Some(why) = &r.deletions_held {
        let _ = writeln!(body, "Deletions held: {why}");
    }
    let severity = if new
        .iter()
        .any(|k| k.starts_with("error ") || k.starts_with("rejected "))
    {
        Severity::Error
    } else if !current.is_empty() {
        Severity::Warning
    } else {
        Severity::Info
    };
    let n = Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("zone", zones.join(","));
    Outcome {
        notification: Some(n),
        remember,
    }
}

/// The lasting problems of a run as stable `<kind> <line>` keys: what is reported when it
/// starts and when it clears.
pub fn problems(r: &Response) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &str, line: String| {
        out.insert(format!("{kind} {}", strip_request_id(&line)));
    };
    for z in &r.zones {
        for c in &z.conflicts {
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
    out
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
