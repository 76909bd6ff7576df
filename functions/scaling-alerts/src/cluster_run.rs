//! The scheduled read of each cluster's Events (`CLUSTERS`): what happened since the last run,
//! told in a few messages per cluster, and where the next run starts kept in the store, so a
//! second run (or a redelivered schedule) repeats nothing.

use std::time::Duration;

use bridgekeeper::idempotency::Remember;
use bridgekeeper::notify::Notifier;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tracing::warn;

use crate::delivery::Notifiers;
use crate::kube::ClusterEvents;
use crate::kube_events::{findings, render, watermark};

/// A first run, or one after the store forgot, looks back this far: an API server keeps Events
/// for an hour (`--event-ttl`), and an older story is no longer news.
const FIRST_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// Clusters read at once.
const CLUSTERS_AT_ONCE: usize = 4;
/// One cluster's listing, at most.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterOutcome {
    pub cluster: String,
    pub events: usize,
    pub findings: usize,
    pub notifications: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterRun {
    pub clusters: Vec<ClusterOutcome>,
}

fn key(cluster: &str) -> String {
    format!("cluster-events#{cluster}")
}

pub async fn run<K: ClusterEvents, N: Notifier, S: Remember>(
    clusters: &[String],
    kube: &K,
    notifiers: &Notifiers<N>,
    store: &S,
    environment: &str,
    now: DateTime<Utc>,
) -> ClusterRun {
    let outcomes = stream::iter(
        clusters
            .iter()
            .map(|c| one(c, kube, notifiers, store, environment, now)),
    )
    .buffered(CLUSTERS_AT_ONCE)
    .collect()
    .await;
    ClusterRun { clusters: outcomes }
}

async fn one<K: ClusterEvents, N: Notifier, S: Remember>(
    cluster: &str,
    kube: &K,
    notifiers: &Notifiers<N>,
    store: &S,
    environment: &str,
    now: DateTime<Utc>,
) -> ClusterOutcome {
    let mut out = ClusterOutcome {
        cluster: cluster.to_owned(),
        ..ClusterOutcome::default()
    };
    let first = now - chrono::Duration::from_std(FIRST_LOOKBACK).unwrap_or_default();
    let since = match store.recall(&key(cluster)).await {
        Ok(v) => v
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(first),
        Err(e) => {
            // Unreadable: not knowing where the last run stopped, start at the lookback
            // rather than send an hour of Events again.
            bridgekeeper::idempotency::skipped(&key(cluster), &e);
            first
        }
    };
    let events = match tokio::time::timeout(LIST_TIMEOUT, kube.events(cluster)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            warn!(cluster, error = %e, "cluster Events not read");
            out.error = Some(e.to_string());
            return out;
        }
        Err(_) => {
            out.error = Some(format!("no answer within {} s", LIST_TIMEOUT.as_secs()));
            return out;
        }
    };
    out.events = events.len();
    let found = findings(&events, since);
    out.findings = found.len();
    let mut delivered = true;
    for n in render(cluster, &found, environment) {
        for (target, format, notifier) in notifiers.targets(n.severity) {
            if let Err(e) = notifier.notify(&format.apply(&n)).await {
                warn!(cluster, target, error = %e, "cluster story not sent; the next run tries again");
                out.error = Some(e.to_string());
                delivered = false;
            }
        }
        out.notifications += 1;
    }
    // Moved on only once everything was told: a failed send is tried again by the next run.
    if let Some(mark) = watermark(&events).filter(|m| delivered && *m > since)
        && let Err(e) = store.remember(&key(cluster), &mark.to_rfc3339()).await
    {
        warn!(cluster, error = %e, "where this run stopped not kept; the next run may repeat it");
    }
    out
}
