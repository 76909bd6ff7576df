//! The entry: an SQS batch of EventBridge events (or one event invoked directly) in; each event
//! reported once, grouped notifications and the batch item failures out.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::Error;
use bridgekeeper::failures::FailureSink;
use bridgekeeper::idempotency::{self, Claim, Remember, Store};
use bridgekeeper::notify::Notifier;
use futures::stream::{self, StreamExt};
use serde::Deserialize;

use crate::aws::{AutoScaling, Eks, Instances};
use crate::batch::{Response, record_event_id, record_rejected};
use crate::cluster_run::ClusterRun;
use crate::config::Config;
use crate::kube::ClusterEvents;
use crate::pipeline::{Ports, handle_batch};

/// DynamoDB claims in flight at once for one batch.
const CLAIMS_AT_ONCE: usize = 16;

/// The entry: a batch (or one event invoked directly) reported once per event, and every
/// unusable record kept in the failed-invocations queue.
#[allow(clippy::too_many_arguments)]
pub async fn handle<A, E, N, S, U, F, K>(
    payload: serde_json::Value,
    lease_until: SystemTime,
    owner: &str,
    config: &Config,
    ports: &Ports<A, E, N, S, U>,
    failed: &F,
    kube: &K,
) -> Result<Outcome, Error>
where
    A: AutoScaling,
    E: Instances,
    N: Notifier,
    S: Store + Remember,
    U: Eks,
    F: FailureSink,
    K: ClusterEvents,
{
    if payload.get("Records").is_none() && bridgekeeper::events::is_schedule(&payload)? {
        return clusters(config, ports, kube).await.map(Outcome::Clusters);
    }
    let response = handle_once(payload, lease_until, owner, config, ports).await?;
    Ok(Outcome::Batch(record_rejected(response, failed).await))
}

/// What an invocation did: a batch of events, or a scheduled read of the clusters' Events.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Batch(Response),
    Clusters(ClusterRun),
}

/// A schedule (EventBridge Scheduler's Input, or a legacy rule's event): each cluster's Events
/// since the last run.
pub async fn clusters<A, E, N: Notifier, S: Remember, U, K: ClusterEvents>(
    config: &Config,
    ports: &Ports<A, E, N, S, U>,
    kube: &K,
) -> Result<ClusterRun, Error> {
    if !config.cluster_events() {
        return Err(Error::invalid_event(
            "a scheduled run reads the clusters' Events, and none is configured (CLUSTER_EVENTS is off, CLUSTERS unset)",
        ));
    }
    let aliases: Vec<String> = config
        .kube_clusters
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    Ok(crate::cluster_run::run(
        &aliases,
        kube,
        &ports.notifiers,
        &ports.store,
        &config.environment,
        chrono::Utc::now(),
    )
    .await)
}

/// [`handle_payload`], reporting each EventBridge event once: a record whose event id was handled
/// in an earlier batch, or appears twice in this one, is dropped before anything is sent. An id
/// is completed once its alert went out and released when its record goes back to SQS.
pub async fn handle_once<A: AutoScaling, E: Instances, N: Notifier, S: Store + Remember, U: Eks>(
    payload: serde_json::Value,
    lease_until: SystemTime,
    owner: &str,
    config: &Config,
    ports: &Ports<A, E, N, S, U>,
) -> Result<Response, Error> {
    if payload.get("Records").is_none() {
        return handle_payload(payload, config, ports).await;
    }
    let batch: SqsEvent = serde_json::from_value(payload)
        .map_err(|e| Error::invalid_event(format!("malformed SQS batch: {e}")))?;
    let total = batch.records.len();
    let mut seen = BTreeSet::new();
    let mut claimed: Vec<(String, String)> = Vec::new();
    let mut kept = SqsEvent::default();
    let mut to_claim = Vec::new();
    for record in batch.records {
        let Some(id) = record_event_id(&record) else {
            to_claim.push((None, record));
            continue;
        };
        // Within a batch regardless of the store: SQS may carry one event twice.
        if seen.insert(id.clone()) {
            to_claim.push((Some(id), record));
        }
    }
    // A batch holds up to 1,000 records (template.yaml): their claims go out a few at a time,
    // in record order, not one after another.
    let store = &ports.store;
    let answers: Vec<_> = stream::iter(to_claim.into_iter().map(|(id, record)| async move {
        let claim = match &id {
            Some(id) => Some(idempotency::claim(store, id, lease_until, owner).await),
            None => None,
        };
        (id, record, claim)
    }))
    .buffered(CLAIMS_AT_ONCE)
    .collect()
    .await;
    for (id, record, claim) in answers {
        let (Some(id), Some(claim)) = (id, claim) else {
            kept.records.push(record);
            continue;
        };
        match claim? {
            Some(Claim::New) => {
                claimed.push((id, record.message_id.clone().unwrap_or_default()));
                kept.records.push(record);
            }
            Some(Claim::Completed | Claim::InProgress) => {}
            // Throttled or briefly down: report rather than drop (counted by `claim`).
            None => kept.records.push(record),
        }
    }
    let mut response = handle_batch(kept, config, ports).await?;
    response.duplicates = total - response.events;
    response.events = total;
    for (id, message_id) in claimed {
        let returned = response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == message_id);
        idempotency::settle(&ports.store, &id, owner, !returned).await;
    }
    Ok(response)
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records", default)]
    records: Option<serde::de::IgnoredAny>,
}

/// The Lambda's input: an SQS batch (the deployed path), or one EventBridge event invoked
/// directly (`cargo lambda invoke --data-file events/scaling-alerts/alarm-ok.json`), which is
/// handled as a batch of one and fails the invocation if it cannot be used.
pub async fn handle_payload<A: AutoScaling, E: Instances, N: Notifier, S: Remember, U: Eks>(
    payload: serde_json::Value,
    config: &Config,
    ports: &Ports<A, E, N, S, U>,
) -> Result<Response, Error> {
    bridgekeeper::runtime::readable(&payload)?;
    let probe: Probe = Probe::deserialize(&payload).map_err(|e| {
        Error::invalid_event(format!(
            "expected an SQS batch or an EventBridge event object: {e}"
        ))
    })?;
    if probe.records.is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)
            .map_err(|e| Error::invalid_event(format!("malformed SQS batch: {e}")))?;
        return handle_batch(batch, config, ports).await;
    }
    let mut record = SqsMessage::default();
    record.message_id = Some("direct-invoke".into());
    record.body = Some(payload.to_string());
    let mut batch = SqsEvent::default();
    batch.records.push(record);
    let response = handle_batch(batch, config, ports).await?;
    match response.failures.first() {
        Some(f) if f.retryable => Err(Error::Transient(f.error.clone())),
        Some(f) => Err(Error::invalid_event(f.error.clone())),
        None => Ok(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fakes::*;

    #[tokio::test]
    async fn the_same_event_in_one_batch_or_across_batches_is_reported_once() {
        let p = ports();
        let alarm = sample!("alarm-state-change.json");
        let payload = batch(&[alarm, alarm]);
        let r = delivered(&payload, &p).await;
        assert_eq!((r.events, r.duplicates, r.notifications), (2, 1, 1));
        let again = delivered(&payload, &p).await;
        assert_eq!((again.duplicates, again.notifications), (2, 0));
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_direct_invoke_of_one_event_works_and_a_bad_one_fails_non_retryable() {
        use bridgekeeper::Classify;
        let p = ports();
        let event: serde_json::Value = serde_json::from_str(sample!("alarm-ok.json")).unwrap();
        let r = handle_payload(event, &config(&[]), &p).await.unwrap();
        assert_eq!(r.notifications, 1);
        let foreign: serde_json::Value = serde_json::from_str(include_str!(
            "../../../events/image-rollout/push-latest.json"
        ))
        .unwrap();
        let err = handle_payload(foreign, &config(&[]), &p).await.unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        let err = handle_payload(serde_json::json!("text"), &config(&[]), &p)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    /// A schedule reaching a function that reads no cluster's Events is refused by name, and
    /// tells nobody anything.
    #[tokio::test]
    async fn a_scheduled_run_without_clusters_is_refused_and_sends_nothing() {
        use bridgekeeper::Classify;
        let p = ports();
        let err = clusters(&config(&[]), &p, &FakeEvents::default())
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert!(err.to_string().contains("CLUSTER_EVENTS is off"), "{err}");
        assert!(p.notifiers.all.sent().is_empty());
    }
}
