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
use crate::karpenter;
use crate::kube::ClusterEvents;
use crate::kube_events::{Finding, findings, render, watermark};

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
    let mut found = findings(&events, since);
    out.findings = found.len();
    let removed: Vec<String> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Disrupted { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect();
    let gone = karpenter::endings(cluster, &removed, store).await;
    for f in &mut found {
        if let Finding::Disrupted { node, ended, .. } = f {
            *ended = gone.get(node).cloned();
        }
    }
    let mut delivered = true;
    for n in render(cluster, &found, environment) {
        let mut sent = true;
        for (target, format, notifier) in notifiers.targets(n.severity) {
            if let Err(e) = notifier.notify(&format.apply(&n)).await {
                warn!(cluster, target, error = %e, "cluster story not sent; the next run tries again");
                out.error = Some(e.to_string());
                sent = false;
            }
        }
        out.notifications += usize::from(sent);
        delivered &= sent;
    }
    if delivered {
        let decided = found
            .iter()
            .filter_map(|f| match f {
                Finding::Disrupted { node, why, .. } => {
                    Some((karpenter::decided(cluster, node), why.clone()))
                }
                _ => None,
            })
            .collect();
        karpenter::remember(store, decided).await;
    }
    // Moved on only once everything was told: a failed send is tried again by the next run.
    if let Some(mark) = watermark(&events).filter(|m| delivered && *m > since)
        && let Err(e) = store.remember(&key(cluster), &mark.to_rfc3339()).await
    {
        warn!(cluster, error = %e, "where this run stopped not kept; the next run may repeat it");
    }
    out
}

#[cfg(test)]
mod tests {
    use bridgekeeper::idempotency::testing::Memory;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::fakes::FakeEvents;
    use crate::kube_events::KubeEvent;

    fn rescale(at: DateTime<Utc>) -> KubeEvent {
        KubeEvent {
            namespace: "shop".into(),
            kind: "HorizontalPodAutoscaler".into(),
            name: "api".into(),
            reason: "SuccessfulRescale".into(),
            message:
                "New size: 5; reason: cpu resource utilization (percentage of request) above target"
                    .into(),
            count: 1,
            last: at,
        }
    }

    fn notifiers(all: Recorder) -> Notifiers<Recorder> {
        Notifiers {
            all,
            errors: None,
            chat: None,
        }
    }

    #[tokio::test]
    async fn a_story_not_sent_is_told_again_by_the_next_run_and_then_never() {
        let now = Utc::now();
        let kube = FakeEvents::default();
        kube.events
            .lock()
            .unwrap()
            .push(rescale(now - chrono::Duration::minutes(2)));
        let store = Memory::default();
        let clusters = ["prod".to_owned()];
        let down = notifiers(Recorder::failing("Throttling", 400));
        let first = run(&clusters, &kube, &down, &store, "prod", now).await;
        assert!(first.clusters[0].error.is_some(), "{first:?}");
        assert_eq!(first.clusters[0].notifications, 0, "not sent, not counted");
        let up = notifiers(Recorder::default());
        let second = run(&clusters, &kube, &up, &store, "prod", now).await;
        assert_eq!(second.clusters[0].notifications, 1, "{second:?}");
        assert_eq!(up.all.sent().len(), 1);
        let third = run(&clusters, &kube, &up, &store, "prod", now).await;
        assert_eq!(third.clusters[0].notifications, 0, "{third:?}");
        assert_eq!(up.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_named_and_old_events_are_not_news() {
        let now = Utc::now();
        let store = Memory::default();
        let up = notifiers(Recorder::default());
        let down = FakeEvents {
            down: true,
            ..FakeEvents::default()
        };
        let r = run(&["prod".to_owned()], &down, &up, &store, "prod", now).await;
        assert!(
            r.clusters[0]
                .error
                .as_deref()
                .unwrap()
                .contains("no route to host")
        );
        // A first run looks back 15 minutes: an hour-old rescale is not sent.
        let kube = FakeEvents::default();
        kube.events
            .lock()
            .unwrap()
            .push(rescale(now - chrono::Duration::minutes(50)));
        let r = run(&["prod".to_owned()], &kube, &up, &store, "prod", now).await;
        assert_eq!(r.clusters[0].notifications, 0, "{r:?}");
        assert!(up.all.sent().is_empty());
    }
}
