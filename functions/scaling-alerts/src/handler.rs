//! An SQS batch of EventBridge events in; grouped notifications and the batch item failures out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsEvent, SqsMessage};
use bridgekeeper::accounts::Scope;
use bridgekeeper::failures::{FailureRecord, FailureSink};
use bridgekeeper::idempotency::{Claim, Remember, Store, event_id};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::{Notification, Notifier};
use bridgekeeper::{Classify, Error};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::alert::GroupInfo;
use crate::aws::{AutoScaling, Instances};
use crate::config::{Config, Silenced};
use crate::delivery::Notifiers;
use crate::domain::{self, Alert, Fact, InstanceAction};
use crate::nodes;
use crate::parse::parse;

/// What the handler talks to, built once in `main`.
pub struct Ports<A, E, N, S> {
    pub asg: A,
    pub ec2: E,
    pub notifiers: Notifiers<N>,
    /// Handled event ids, and which topics already got a partly delivered alert.
    pub store: S,
}

/// A record SQS is to deliver again (`batchItemFailures`), as the event crate names it.
pub fn item_failure(message_id: impl Into<String>) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id.into();
    f
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub message_id: String,
    pub error: String,
    /// `false`: the record cannot be used (it goes to the DLQ after the queue's retries);
    /// `true`: its notification could not be sent this time.
    pub retryable: bool,
}

/// The Lambda's answer: `batchItemFailures` is what SQS acts on (those records come back, and
/// after the queue's maxReceiveCount go to its DLQ); the rest is the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
    pub events: usize,
    pub notifications: usize,
    pub coalesced: usize,
    /// Records whose EventBridge event was already reported (an earlier batch, or twice here).
    pub duplicates: usize,
    /// Records deliberately not sent: EC2 events about instances that are not nodes of a
    /// watched cluster, alarm changes older than one already reported, and silenced alarms when
    /// `SILENCED_ALARMS=drop`.
    pub dropped: usize,
    pub failures: Vec<RecordError>,
    /// Records that can never be used: kept in the failed-invocations queue by
    /// [`record_rejected`] instead of being received five times on their way to the DLQ.
    #[serde(skip)]
    pub rejected: Vec<(String, String)>,
}

impl Response {
    fn retry(&mut self, records: impl IntoIterator<Item = String>, e: &Error) {
        for id in records {
            self.failures.push(RecordError {
                message_id: id.clone(),
                error: e.to_string(),
                retryable: e.class() == bridgekeeper::Class::Retryable,
            });
            self.batch_item_failures.push(item_failure(id));
        }
    }
}

/// [`handle_payload`], reporting each EventBridge event once: a record whose event id was handled
/// in an earlier batch, or appears twice in this one, is dropped before anything is sent. An id
/// is completed once its alert went out and released when its record goes back to SQS.
pub async fn handle_once<A: AutoScaling, E: Instances, N: Notifier, S: Store + Remember>(
    payload: serde_json::Value,
    lease_until: SystemTime,
    owner: &str,
    config: &Config,
    ports: &Ports<A, E, N, S>,
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
    for record in batch.records {
        let Some(id) = record_event_id(&record) else {
            kept.records.push(record);
            continue;
        };
        // Within a batch regardless of the store: SQS may carry one event twice.
        if !seen.insert(id.clone()) {
            continue;
        }
        match ports.store.begin(&id, lease_until, owner).await {
            Ok(Claim::New) => {
                claimed.push((id, record.message_id.clone().unwrap_or_default()));
                kept.records.push(record);
            }
            Ok(Claim::Completed | Claim::InProgress) => {}
            // Throttled or briefly down: report rather than drop, and count it.
            Err(e) if e.class() == bridgekeeper::Class::Retryable => {
                bridgekeeper::idempotency::skipped(&id, &e);
                kept.records.push(record);
            }
            // A store that refuses for good: every redelivery would notify again, unseen.
            Err(e) => return Err(Error::from(e)),
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
        let done = if returned {
            ports.store.release(&id, owner).await
        } else {
            ports.store.complete(&id, owner).await
        };
        match done {
            Ok(true) => {}
            Ok(false) => {
                warn!(event_id = %id, "the claim had passed to a newer invocation; left as it is")
            }
            Err(e) => warn!(event_id = %id, error = %e, "idempotency record not updated"),
        }
    }
    Ok(response)
}

fn record_event_id(record: &SqsMessage) -> Option<String> {
    record
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .as_ref()
        .and_then(event_id)
}

/// The entry: a batch (or one event invoked directly) reported once per event, and every
/// unusable record kept in the failed-invocations queue.
pub async fn handle<A, E, N, S, F>(
    payload: serde_json::Value,
    lease_until: SystemTime,
    owner: &str,
    config: &Config,
    ports: &Ports<A, E, N, S>,
    failed: &F,
) -> Result<Response, Error>
where
    A: AutoScaling,
    E: Instances,
    N: Notifier,
    S: Store + Remember,
    F: FailureSink,
{
    let response = handle_once(payload, lease_until, owner, config, ports).await?;
    Ok(record_rejected(response, failed).await)
}

/// Records each unusable record once in the failed-invocations queue; one the queue could not
/// take goes back to SQS as a batch item failure, so it is still kept (in the DLQ) in the end.
pub async fn record_rejected<S: FailureSink>(mut response: Response, sink: &S) -> Response {
    for (id, body) in std::mem::take(&mut response.rejected) {
        let why = response
            .failures
            .iter()
            .find(|f| f.message_id == id)
            .map(|f| f.error.clone())
            .unwrap_or_default();
        let event = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        let record = FailureRecord::rejected(crate::FUNCTION, &Error::invalid_event(why), &event);
        if let Err(e) = sink.record(&record).await {
            warn!(message_id = %id, error = %e, "failed-invocations queue unreachable; record returned to SQS");
            response.batch_item_failures.push(item_failure(id));
        }
    }
    response
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records", default)]
    records: Option<serde::de::IgnoredAny>,
}

/// The Lambda's input: an SQS batch (the deployed path), or one EventBridge event invoked
/// directly (`cargo lambda invoke --data-file events/scaling-alerts/alarm-ok.json`), which is
/// handled as a batch of one and fails the invocation if it cannot be used.
pub async fn handle_payload<A: AutoScaling, E: Instances, N: Notifier, S: Remember>(
    payload: serde_json::Value,
    config: &Config,
    ports: &Ports<A, E, N, S>,
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

/// SQS delivered the record before (`ApproximateReceiveCount` > 1).
fn redelivered(record: &SqsMessage) -> bool {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

fn sent_key(event_id: &str, target: &str) -> String {
    format!("sent#{event_id}#{target}")
}

pub async fn handle_batch<A: AutoScaling, E: Instances, N: Notifier, S: Remember>(
    event: SqsEvent,
    config: &Config,
    ports: &Ports<A, E, N, S>,
) -> Result<Response, Error> {
    let mut response = Response {
        events: event.records.len(),
        ..Response::default()
    };
    let mut facts = Vec::new();
    let mut records: HashMap<String, &SqsMessage> = HashMap::new();
    let mut origins: HashMap<String, Scope> = HashMap::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let admitted = parse(record).and_then(|(origin, fact)| {
            config
                .admitted
                .check(origin.account.as_deref())
                .map(|_| (origin, fact))
                .map_err(|e| e.to_string())
        });
        match admitted {
            Ok((origin, fact)) => {
                records.insert(id.clone(), record);
                origins.insert(id.clone(), origin);
                facts.push((id, fact));
            }
            Err(why) => {
                warn!(message_id = %id, reason = %why, "record rejected");
                response.failures.push(RecordError {
                    message_id: id.clone(),
                    error: why,
                    retryable: false,
                });
                response
                    .rejected
                    .push((id, record.body.clone().unwrap_or_default()));
            }
        }
    }

    let facts = nodes_only(facts, &origins, config, &ports.ec2, &mut response).await;

    let mut names: BTreeMap<&Scope, BTreeSet<String>> = BTreeMap::new();
    for (id, fact) in &facts {
        if let Some(group) = fact.group() {
            names
                .entry(&origins[id])
                .or_default()
                .insert(group.to_owned());
        }
    }
    // Enrichment is a nicety: without it the alert still goes out, just with less context.
    let mut groups: HashMap<&Scope, HashMap<String, GroupInfo>> = HashMap::new();
    for (scope, names) in names {
        let names: Vec<String> = names.into_iter().collect();
        match ports.asg.describe_groups(scope, &names).await {
            Ok(found) => {
                groups.insert(scope, found);
            }
            Err(e) => warn!(error = %e, origin = %scope, "enrichment skipped"),
        }
    }
    let no_groups = HashMap::new();

    let parsed = facts.len();
    // Two accounts' groups or alarms of the same name are different things: never one alert.
    let mut by_origin: BTreeMap<&Scope, Vec<(String, Fact)>> = BTreeMap::new();
    for (id, fact) in facts {
        by_origin.entry(&origins[&id]).or_default().push((id, fact));
    }
    let alerts: Vec<Alert> = by_origin.into_values().flat_map(domain::coalesce).collect();
    response.coalesced = parsed - alerts.len();
    for alert in alerts {
        let scope = alert.records.first().and_then(|id| origins.get(id));
        if config.silenced == Silenced::Drop && silenced(&alert) {
            info!(records = alert.records.len(), "silenced alarm not sent");
            response.dropped += alert.records.len();
            continue;
        }
        let latest = latest_alarm(&alert, scope);
        if let Some((name, at)) = &latest
            && already_newer(&ports.store, name, *at).await
        {
            info!(alarm = %name, records = alert.records.len(), "late alarm change: a newer state was reported");
            response.dropped += alert.records.len();
            continue;
        }
        let known = scope.and_then(|s| groups.get(s)).unwrap_or(&no_groups);
        let mut n = domain::render(&alert, known, &config.environment);
        if let Some(Ok(origin)) = scope.map(|s| config.admitted.check(s.account.as_deref())) {
            n = origin.stamp(n);
        }
        let sent = deliver(&alert, &n, &records, ports, &mut response).await;
        if let (true, Some((name, at))) = (sent, latest) {
            let key = format!("alarm#{name}");
            if let Err(e) = ports.store.remember(&key, &at.to_rfc3339()).await {
                warn!(alarm = %name, error = %e, "reported alarm state not remembered");
            }
        }
    }

    let mut metrics = Metrics::new(crate::FUNCTION);
    metrics
        .count("Events", response.events as u64)
        .count("NotificationsSent", response.notifications as u64)
        .count("EventsCoalesced", response.coalesced as u64)
        .count("EventsDropped", response.dropped as u64)
        .count("RecordsFailed", response.batch_item_failures.len() as u64);
    metrics.flush();
    info!(
        events = response.events,
        notifications = response.notifications,
        coalesced = response.coalesced,
        dropped = response.dropped,
        failed = response.batch_item_failures.len(),
        "batch done"
    );
    Ok(response)
}

/// An alarm alert's name (with its account and region: names are unique only within those) and
/// the time of its latest change.
fn latest_alarm(alert: &Alert, origin: Option<&Scope>) -> Option<(String, DateTime<Utc>)> {
    let latest = alert.alarms().into_iter().max_by_key(|a| a.time)?;
    let name = match origin {
        Some(Scope {
            account: Some(account),
            region,
        }) => format!(
            "{}/{}/{account}",
            latest.name,
            region.as_deref().unwrap_or_default()
        ),
        _ => latest.name.clone(),
    };
    Some((name, latest.time?))
}

/// EventBridge delivers late and out of order: a change older than (or as old as) the one last
/// reported for the alarm would report a state the alarm has left. Unknown or unreadable: send.
async fn already_newer<S: Remember>(store: &S, alarm: &str, at: DateTime<Utc>) -> bool {
    match store.recall(&format!("alarm#{alarm}")).await {
        Ok(Some(t)) => DateTime::parse_from_rfc3339(&t).is_ok_and(|reported| reported >= at),
        _ => false,
    }
}

/// The latest change of an alarm alert had its actions muted or suppressed.
fn silenced(alert: &Alert) -> bool {
    let alarms = alert.alarms();
    // As in alarm::render: of equal times, the later arrival is the latest (max_by_key keeps
    // the last of equal elements).
    let latest = alarms.iter().max_by_key(|a| a.time);
    latest.is_some_and(|a| a.silenced.is_some())
}

/// Fills in what EC2 says about the instances the batch's EC2 events name (one
/// DescribeInstances per account and region) and drops the events that are not about nodes of a
/// watched cluster. If EC2 cannot be asked, those records go back to SQS: whether they are nodes
/// is not known.
async fn nodes_only<E: Instances>(
    facts: Vec<(String, Fact)>,
    origins: &HashMap<String, Scope>,
    config: &Config,
    ec2: &E,
    response: &mut Response,
) -> Vec<(String, Fact)> {
    let mut ids: BTreeMap<&Scope, BTreeSet<String>> = BTreeMap::new();
    for (record, fact) in &facts {
        if let Fact::Node(n) = fact {
            ids.entry(&origins[record])
                .or_default()
                .insert(n.instance_id.clone());
        }
    }
    if ids.is_empty() {
        return facts;
    }
    let mut found = HashMap::new();
    let mut unknown: Vec<(&Scope, Error)> = Vec::new();
    for (scope, ids) in ids {
        let ids: Vec<String> = ids.into_iter().collect();
        match ec2.describe_instances(scope, &ids).await {
            Ok(described) => found.extend(described.into_iter().map(|(id, n)| ((scope, id), n))),
            Err(e) => {
                warn!(error = %e, origin = %scope, instances = ids.len(), "instances not described; their records return to the queue");
                unknown.push((scope, e));
            }
        }
    }
    let (facts, retried): (Vec<_>, Vec<_>) = facts.into_iter().partition(|(record, f)| {
        !matches!(f, Fact::Node(_)) || !unknown.iter().any(|(s, _)| *s == &origins[record])
    });
    for (scope, e) in &unknown {
        let records = retried
            .iter()
            .filter(|(record, _)| &origins[record] == *scope)
            .map(|(record, _)| record.clone());
        response.retry(records, e);
    }
    let auto_scaled: HashSet<String> = facts
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Instance(e) if e.action != InstanceAction::Launch => e.instance_id.clone(),
            _ => None,
        })
        .collect();
    let mut kept = Vec::with_capacity(facts.len());
    for (record, mut fact) in facts {
        if let Fact::Node(n) = &mut fact {
            n.node = found
                .get(&(&origins[&record], n.instance_id.clone()))
                .cloned();
            if let Err(why) = nodes::keep(n, &config.clusters, &auto_scaled) {
                info!(instance = %n.instance_id, reason = why.as_str(), "EC2 event dropped");
                response.dropped += 1;
                continue;
            }
        }
        kept.push((record, fact));
    }
    kept
}

/// Sends one alert to each of its topics. On a redelivery, a topic that already got it (a
/// remembered partial delivery) is skipped; when some topic fails, the ones that succeeded are
/// remembered and the alert's records go back to SQS for the others.
async fn deliver<A, E, N: Notifier, S: Remember>(
    alert: &Alert,
    n: &Notification,
    records: &HashMap<String, &SqsMessage>,
    ports: &Ports<A, E, N, S>,
    response: &mut Response,
) -> bool {
    // Event ids are read (the bodies parsed again) only on a redelivery or a failure.
    let events = || -> Vec<Option<String>> {
        alert
            .records
            .iter()
            .map(|r| records.get(r).and_then(|m| record_event_id(m)))
            .collect()
    };
    let earlier: Option<Vec<String>> = alert
        .records
        .iter()
        .any(|r| records.get(r).is_some_and(|m| redelivered(m)))
        .then(events)
        .and_then(|ids| ids.into_iter().collect());
    let mut sent = Vec::new();
    let mut failed = None;
    for (target, format, notifier) in ports.notifiers.targets(n.severity) {
        if let Some(ids) = &earlier
            && already_sent(&ports.store, ids, target).await
        {
            info!(target, "already delivered to this topic; skipped");
            continue;
        }
        match notifier.notify(&format.apply(n)).await {
            Ok(_) => sent.push(target),
            Err(e) => {
                warn!(target, error = %e, records = alert.records.len(), "notification failed; records returned to the queue");
                failed = Some(e);
            }
        }
    }
    let Some(e) = failed else {
        response.notifications += 1;
        return true;
    };
    let ids: Vec<String> = events().into_iter().flatten().collect();
    for target in sent {
        for event in &ids {
            if let Err(err) = ports.store.remember(&sent_key(event, target), "1").await {
                warn!(target, error = %err, "partial delivery not remembered; the retry may repeat it");
            }
        }
    }
    response.retry(alert.records.iter().cloned(), &Error::from(e));
    false
}

async fn already_sent<S: Remember>(store: &S, events: &[String], target: &str) -> bool {
    for event in events {
        match store.recall(&sent_key(event, target)).await {
            Ok(Some(_)) => {}
            // Unknown or unreadable: send again rather than risk losing it.
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use bridgekeeper::notify::Severity;
    use std::collections::HashMap;

    use bridgekeeper::config::Env;
    use bridgekeeper::failures::testing::Kept;
    use bridgekeeper::idempotency::testing::Memory;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::fakes::*;
    use crate::nodes::{NodeInfo, Pool};

    macro_rules! sample {
        ($name:literal) => {
            include_str!(concat!("../../../events/scaling-alerts/", $name))
        };
    }

    const KARPENTER_NODE: &str = "i-0c1d2e3f4a5b6c7d8";

    fn prod_ng1() -> FakeAsg {
        let info = GroupInfo {
            cluster: Some("prod-eks".into()),
            nodegroup: Some("ng-1".into()),
            desired: Some(7),
            min: Some(3),
            max: Some(10),
            instance_types: HashMap::from([
                ("i-0a1b2c3d4e5f60718".into(), "m6i.large".into()),
                ("i-0b2c3d4e5f6071829".into(), "m6i.large".into()),
            ]),
        };
        FakeAsg {
            groups: HashMap::from([("eks-prod-ng-1-a2c4e6g8".into(), info)]),
            ..FakeAsg::default()
        }
    }

    /// A Karpenter Spot node of prod-eks, a second one, and a bastion host with no cluster tags.
    fn instances() -> FakeEc2 {
        let karpenter = |zone: &str| {
            NodeInfo::from_tags(
                &[
                    ("karpenter.sh/nodepool", "default"),
                    ("eks:eks-cluster-name", "prod-eks"),
                ],
                Some("m6i.large".into()),
                Some(zone.into()),
                Some("spot".into()),
            )
        };
        FakeEc2 {
            instances: HashMap::from([
                (KARPENTER_NODE.into(), karpenter("eu-west-1a")),
                ("i-0d2e3f4a5b6c7d8e9".into(), karpenter("eu-west-1b")),
                (
                    "i-0ba57105700000000".into(),
                    NodeInfo::from_tags(&[("Name", "bastion")], None, None, None),
                ),
            ]),
            ..FakeEc2::default()
        }
    }

    type TestPorts = Ports<FakeAsg, FakeEc2, Recorder, Memory>;

    fn ports() -> TestPorts {
        with(Notifiers {
            all: Recorder::default(),
            errors: None,
            chat: None,
        })
    }

    fn with(notifiers: Notifiers<Recorder>) -> TestPorts {
        Ports {
            asg: prod_ng1(),
            ec2: instances(),
            notifiers,
            store: Memory::default(),
        }
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Config {
        let base = [
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("ENVIRONMENT", "prod"),
            ("ACCOUNT_ID", "123456789012"),
        ];
        Config::from_env(&Env::from_pairs(base.iter().chain(extra).copied())).unwrap()
    }

    fn batch(bodies: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        for (i, body) in bodies.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(body.to_string());
            m.attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            event.records.push(m);
        }
        event
    }

    fn subjects(r: &Recorder) -> Vec<String> {
        r.sent().into_iter().map(|m| m.subject).collect()
    }

    /// One sample event, alone in a batch, as a subscriber of the alerts topic receives it.
    async fn one(body: &str) -> Notification {
        one_with(body, &config(&[])).await
    }

    async fn one_with(body: &str, config: &Config) -> Notification {
        let p = ports();
        let r = handle_batch(batch(&[body]), config, &p).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let sent = p.notifiers.all.sent();
        assert_eq!(sent.len(), 1, "{r:?}");
        let m = sent.into_iter().next().unwrap();
        assert!(
            m.subject.chars().count() <= 99 && !m.subject.contains('\n'),
            "{}",
            m.subject
        );
        m
    }

    #[tokio::test]
    async fn launch_reads_well() {
        let n = one(sample!("launch-successful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node launched in prod-eks/ng-1, desired 4→5"
        );
        assert_eq!(
            n.body,
            "1 node launched in eks-prod-ng-1-a2c4e6g8 (i-0a1b2c3d4e5f60718), desired 4→5.\n\n\
             Cluster:   prod-eks (node group ng-1)\n\
             Group now: desired 7 (min 3, max 10)\n\
             Instances: i-0a1b2c3d4e5f60718  m6i.large  eu-west-1b\n\
             Cause:     At 2026-11-21T09:12:10Z a user request update of AutoScalingGroup constraints to min: 3, max: 10, desired: 5 changing the desired capacity from 4 to 5.  At 2026-11-21T09:12:12Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 4 to 5.\n\
             Time:      2026-11-21 09:12:47 UTC\n\n\
             From account 123456789012 (hub)."
        );
        assert_eq!(n.severity, Severity::Info);
        assert_eq!(n.attributes["source"], "autoscaling");
        assert_eq!(n.attributes["cluster"], "prod-eks");
        assert_eq!(n.attributes["group"], "eks-prod-ng-1-a2c4e6g8");
    }

    /// The same launch in the hub's account and, forwarded, in a member's: each is described in
    /// its own account and reported on its own, though the group names are the same.
    #[tokio::test]
    async fn a_member_accounts_event_is_enriched_from_that_account_and_never_merged() {
        let hub = sample!("launch-successful.json");
        let member = hub.replace("\"123456789012\"", &format!("\"{MEMBER}\""));
        let mut p = ports();
        p.asg.member = HashMap::from([(
            "eks-prod-ng-1-a2c4e6g8".to_owned(),
            GroupInfo {
                cluster: Some("staging-eks".into()),
                nodegroup: Some("ng-1".into()),
                desired: Some(2),
                ..GroupInfo::default()
            },
        )]);
        let listed = config(&[
            ("MEMBER_ACCOUNTS", MEMBER),
            ("MEMBER_ROLE_NAME", "bridgekeeper-scaling-alerts"),
        ]);
        let r = handle_batch(batch(&[hub, &member]), &listed, &p)
            .await
            .unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let mut scopes = p.asg.scopes.lock().unwrap().clone();
        scopes.sort();
        assert_eq!(
            scopes,
            [
                Scope::account("123456789012").in_region("eu-west-1"),
                Scope::account(MEMBER).in_region("eu-west-1"),
            ]
        );
        let sent = p.notifiers.all.sent();
        assert_eq!(sent.len(), 2, "{r:?}");
        let clusters: BTreeSet<_> = sent
            .iter()
            .map(|m| m.attributes["cluster"].clone())
            .collect();
        assert_eq!(
            clusters,
            BTreeSet::from(["prod-eks".to_owned(), "staging-eks".to_owned()])
        );
    }

    #[tokio::test]
    async fn unsuccessful_launch_is_an_error_with_the_reason() {
        let n = one(sample!("launch-unsuccessful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node failed to launch in prod-eks/ng-1, desired 4→5"
        );
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body
                .contains("Error:     We currently do not have sufficient m6i.large capacity"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("Instances: (no instance)  eu-west-1b"),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn terminations_read_well() {
        let n = one(sample!("terminate-successful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node terminated in prod-eks/ng-1, desired 5→4"
        );
        assert_eq!(n.severity, Severity::Info);
        let n = one(sample!("terminate-unsuccessful.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node failed to terminate in prod-eks/ng-1, desired 5→4"
        );
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body
                .contains("Error:     Instance i-0a1b2c3d4e5f60718 is protected from scale in"),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn lifecycle_actions_are_info_and_name_their_hook() {
        let n = one(sample!("lifecycle-launch.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node held by a launch lifecycle hook in prod-eks/ng-1"
        );
        assert!(
            n.body
                .contains("Hook:      warm-up (autoscaling:EC2_INSTANCE_LAUNCHING)"),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Info);
        let n = one(sample!("lifecycle-terminate.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node held by a terminate lifecycle hook in prod-eks/ng-1"
        );
        assert!(
            n.body.contains("i-0b2c3d4e5f6071829  m6i.large"),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn alarm_says_metric_threshold_comparison_and_previous_state() {
        let n = one(sample!("alarm-state-change.json")).await;
        assert_eq!(
            n.subject,
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80)"
        );
        assert_eq!(
            n.body,
            "api-cpu-high is ALARM (was OK).\n\n\
             Metric:      AWS/EC2 CPUUtilization (Average, 300 s) AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8\n\
             Condition:   CPUUtilization > 80, latest 93.5\n\
             Reason:      Threshold Crossed: 1 out of the last 1 datapoints [93.5 (21/11/26 16:59:00)] was greater than the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition).\n\
             Description: API pods' nodes are running hot\n\
             Time:        2026-11-21 17:04:40 UTC\n\n\
             From account 123456789012 (hub)."
        );
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(n.attributes["alarm"], "api-cpu-high");
        assert_eq!(n.attributes["cluster"], "prod-eks");
    }

    #[tokio::test]
    async fn ok_after_alarm_is_resolved() {
        let n = one(sample!("alarm-ok.json")).await;
        assert_eq!(n.subject, "[prod] OK: api-cpu-high (CPUUtilization > 80)");
        assert!(
            n.body.starts_with("api-cpu-high is OK (was ALARM)."),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Resolved);
    }

    #[tokio::test]
    async fn a_flapping_alarm_ends_on_its_latest_state_by_time_not_by_arrival() {
        // Arrival order ALARM(03:04), ALARM(03:14), OK(03:09): the alarm is firing.
        let event: SqsEvent = serde_json::from_str(sample!("sqs-flapping-alarm.json")).unwrap();
        let p = ports();
        let r = handle_batch(event, &config(&[]), &p).await.unwrap();
        assert_eq!((r.notifications, r.coalesced), (1, 2));
        let n = &p.notifiers.all.sent()[0];
        assert_eq!(
            n.subject,
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80), 3 changes"
        );
        assert!(
            n.body.starts_with(
                "api-cpu-high is ALARM (was OK).\n\n\
                 Changes:     3 in this batch: OK → ALARM → OK → ALARM\n"
            ),
            "{}",
            n.body
        );
        assert!(n.body.contains("Time:        2026-11-22 03:14:40 UTC"));
        assert_eq!(n.severity, Severity::Error);
    }

    #[tokio::test]
    async fn a_late_alarm_change_older_than_the_reported_state_is_not_sent() {
        let p = ports();
        let event: SqsEvent = serde_json::from_str(sample!("sqs-flapping-alarm.json")).unwrap();
        let (mut first, mut late) = (event.clone(), event);
        first
            .records
            .retain(|r| r.body.as_deref().unwrap().contains("03:14:40"));
        late.records
            .retain(|r| r.body.as_deref().unwrap().contains("03:09:40"));
        let newer = first.records[0]
            .body
            .as_deref()
            .unwrap()
            .replace("03:14:40", "03:20:40");
        let r = handle_batch(first, &config(&[]), &p).await.unwrap();
        assert_eq!(r.notifications, 1);
        // The OK of 03:09 arrives after the ALARM of 03:14 was reported: the alarm still fires.
        let r = handle_batch(late, &config(&[]), &p).await.unwrap();
        assert_eq!((r.notifications, r.dropped), (0, 1));
        let r = handle_batch(batch(&[&newer]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.notifications, 1, "a newer change still goes out");
        assert_eq!(p.notifiers.all.sent().len(), 2);
    }

    #[tokio::test]
    async fn muted_and_suppressed_alarms_say_why_and_never_reach_the_errors_topic() {
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::default()),
            chat: None,
        });
        let bodies = [
            sample!("alarm-muted.json"),
            sample!("alarm-composite-suppressed.json"),
        ];
        handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        let sent = p.notifiers.all.sent();
        assert_eq!(
            sent[0].subject,
            "[prod] ALARM (muted): api-cpu-high (CPUUtilization > 80)"
        );
        assert!(
            sent[0].body.contains(
                "Actions:     muted by alarm mute rule nightly-maintenance until 2026-11-22 04:00 UTC; sent for the record, not paged"
            ),
            "{}",
            sent[0].body
        );
        assert_eq!(
            sent[1].subject,
            "[prod] ALARM (suppressed): prod-api-degraded"
        );
        assert!(
            sent[1].body.contains(
                "Actions:     suppressed by WaitPeriod (Actions suppressed by WaitPeriod)"
            ),
            "{}",
            sent[1].body
        );
        assert!(
            sent[1]
                .body
                .contains("Rule:        ALARM(api-cpu-high) OR ALARM(nodes-network-high)")
        );
        assert!(sent.iter().all(|n| n.severity == Severity::Info));
        assert!(p.notifiers.errors.as_ref().unwrap().sent().is_empty());
    }

    #[tokio::test]
    async fn silenced_alarms_can_be_dropped_and_are_counted() {
        let p = ports();
        let bodies = [
            sample!("alarm-muted.json"),
            sample!("alarm-composite-suppressed.json"),
            sample!("alarm-math.json"),
        ];
        let r = handle_batch(batch(&bodies), &config(&[("SILENCED_ALARMS", "drop")]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.dropped), (1, 2));
        assert_eq!(
            subjects(&p.notifiers.all),
            ["[prod] ALARM: nodes-network-high (Total Network Traffic > 10000)"]
        );
    }

    #[tokio::test]
    async fn a_math_alarm_names_the_expression_it_alarms_on_not_its_first_input() {
        let n = one(sample!("alarm-math.json")).await;
        assert_eq!(
            n.subject,
            "[prod] ALARM: nodes-network-high (Total Network Traffic > 10000)"
        );
        assert!(!n.body.contains("NetworkIn >"), "{}", n.body);
        assert!(
            n.body.contains(
                "Expression:  e1 = SUM(METRICS()) (Total Network Traffic)\n\
                 Inputs:      m1 = AWS/EC2 NetworkIn (Maximum, 300 s) AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8\n\
                 \x20            m2 = AWS/EC2 NetworkOut (Maximum, 300 s) AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8\n\
                 Condition:   Total Network Traffic > 10000, latest 45628\n"
            ),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Error);
        // The expression has no dimensions; its inputs' Auto Scaling group still enriches it.
        assert_eq!(n.attributes["cluster"], "prod-eks");
    }

    #[tokio::test]
    async fn an_anomaly_alarm_names_its_metric_and_band() {
        let n = one(sample!("alarm-anomaly.json")).await;
        assert_eq!(
            n.subject,
            "[prod] ALARM: api-latency-anomaly (TargetResponseTime outside 0.02–0.3)"
        );
        assert!(
            n.body.contains(
                "Metric:      AWS/ApplicationELB TargetResponseTime (Average, 60 s) LoadBalancer=app/k8s-prod-api/0123456789abcdef\n\
                 Band:        ANOMALY_DETECTION_BAND(m1, 0.8)\n\
                 Condition:   TargetResponseTime outside 0.02–0.3, latest 0.9\n"
            ),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn node_group_resize_says_who_and_what() {
        let n = one(sample!("nodegroup-config-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 resized: desired 8, min 3, max 12"
        );
        assert!(
            n.body
                .contains("By:       arn:aws:sts::123456789012:assumed-role/PlatformAdmin/jane"),
            "{}",
            n.body
        );
        assert_eq!(
            (
                n.attributes["source"].as_str(),
                n.attributes["cluster"].as_str()
            ),
            ("eks", "prod-eks")
        );
    }

    #[tokio::test]
    async fn a_failed_or_denied_node_group_call_is_an_error_not_a_resize() {
        let n = one(sample!("nodegroup-config-failed.json")).await;
        assert_eq!(
            n.subject,
            "[prod] FAILED: node group prod-eks/ng-1 configuration change: InvalidParameterException"
        );
        assert!(
            n.body.contains(
                "Error:    InvalidParameterException: Minimum capacity 3 can't be greater than maximum capacity 2"
            ),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Error);
        let n = one(sample!("nodegroup-config-denied.json")).await;
        assert_eq!(
            n.subject,
            "[prod] DENIED: node group prod-eks/ng-1 configuration change: AccessDenied"
        );
        assert!(
            n.body
                .contains("assumed-role/Developer/sam is not authorized")
        );
        assert_eq!(n.severity, Severity::Error);
    }

    /// The review's fence breakout, through a CloudTrail error message (the caller writes part
    /// of it: names, ARNs).
    #[tokio::test]
    async fn a_cloudtrail_error_message_never_leaves_the_chat_code_block() {
        let hostile = "denied ```\n[verify](https://evil.example) @here <!channel>";
        let body = sample!("nodegroup-config-denied.json").replace(
            "User: arn:aws:sts::123456789012:assumed-role/Developer/sam is not authorized",
            &hostile.replace('\n', "\\n"),
        );
        let n = one(&body).await;
        assert!(
            n.body.contains("```"),
            "the hostile text is quoted: {}",
            n.body
        );
        assert_eq!(bridgekeeper::notify::testing::chat_not_inert(&n), None);
    }

    /// The review's forged denial: a CloudTrail-shaped "DENIED: node group deletion" put on the
    /// bus from an account the stack does not serve became an error-severity alert naming prod.
    #[tokio::test]
    async fn an_event_from_an_unlisted_account_is_rejected_and_never_reported() {
        let config = config(&[
            ("ACCOUNT_ID", "123456789012"),
            ("MEMBER_ACCOUNTS", "staging=222222222222"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-scaling-alerts"),
        ]);
        let denied = sample!("nodegroup-config-denied.json");
        let forged = denied.replace("\"123456789012\"", "\"444444444444\"");
        assert_ne!(forged, denied);
        let member = denied.replace("\"123456789012\"", "\"222222222222\"");
        let p = ports();
        let r = handle_batch(batch(&[&forged, &member]), &config, &p)
            .await
            .unwrap();
        assert_eq!(r.failures.len(), 1, "{r:?}");
        assert!(r.failures[0].error.contains("444444444444"));
        assert!(!r.failures[0].retryable);
        assert_eq!(r.rejected.len(), 1);
        let sent = p.notifiers.all.sent();
        assert_eq!(sent.len(), 1, "only the member's event: {sent:?}");
        assert!(
            sent[0]
                .body
                .ends_with("From account 222222222222 (staging).")
        );
        assert_eq!(sent[0].attributes["account_name"], "staging");
    }

    #[tokio::test]
    async fn a_labels_and_taints_update_is_not_called_a_resize() {
        let n = one(sample!("nodegroup-labels-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 updated: labels, taints"
        );
        assert!(!n.body.contains("resized"), "{}", n.body);
    }

    #[tokio::test]
    async fn node_group_creation_deletion_and_version_updates_read_well() {
        let n = one(sample!("nodegroup-create.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-spot creation started"
        );
        assert!(n.body.contains("Types:    m6i.large, m6a.large (SPOT)"));
        assert!(n.body.contains("Sizes:    desired 2, min 0, max 10"));
        let n = one(sample!("nodegroup-delete.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-old deletion started"
        );
        assert_eq!(n.severity, Severity::Warning);
        let n = one(sample!("nodegroup-version-update.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 started"
        );
    }

    #[tokio::test]
    async fn a_spot_interruption_of_a_karpenter_node_names_pool_cluster_type_and_zone() {
        let n = one(sample!("spot-interruption.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Spot interruption: 1 node of Karpenter NodePool default in prod-eks"
        );
        assert_eq!(
            n.body,
            "EC2 reclaims 1 node of Karpenter NodePool default in prod-eks (cluster prod-eks): it will terminate it in about two minutes, at 03:14:05 UTC.\n\n\
             Cluster:   prod-eks\n\
             NodePool:  Karpenter NodePool default\n\
             Instances: i-0c1d2e3f4a5b6c7d8  m6i.large  spot  eu-west-1a\n\
             Time:      2026-11-22 03:12:05 UTC\n\n\
             From account 123456789012 (hub)."
        );
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.attributes["nodepool"], "default");
        assert_eq!(n.attributes["cluster"], "prod-eks");
    }

    #[tokio::test]
    async fn rebalance_and_unexplained_stops_read_well() {
        let n = one(sample!("rebalance-recommendation.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Rebalance recommendation: 1 node of Karpenter NodePool default in prod-eks"
        );
        assert_eq!(n.severity, Severity::Info);
        let n = one(sample!("instance-stopped.json")).await;
        assert_eq!(
            n.subject,
            "[prod] 1 node stopped: Karpenter NodePool default in prod-eks"
        );
        assert!(n.body.contains("no Auto Scaling activity explains it"));
        assert_eq!(n.severity, Severity::Warning);
    }

    #[tokio::test]
    async fn interruptions_of_one_pool_are_one_message_and_one_describe_instances() {
        let second = sample!("spot-interruption.json")
            .replace(KARPENTER_NODE, "i-0d2e3f4a5b6c7d8e9")
            .replace("a1b2c3d4-0001", "a1b2c3d4-0009");
        let bodies = [
            sample!("spot-interruption.json"),
            second.as_str(),
            sample!("rebalance-recommendation.json"),
        ];
        let p = ports();
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.notifications, 2);
        assert_eq!(
            subjects(&p.notifiers.all)[0],
            "[prod] Spot interruption: 2 nodes of Karpenter NodePool default in prod-eks"
        );
        let calls = p.ec2.calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one DescribeInstances per batch");
        assert_eq!(calls[0].len(), 2, "each instance asked once: {calls:?}");
    }

    #[tokio::test]
    async fn events_about_instances_that_are_not_nodes_are_dropped_and_counted() {
        let bastion =
            sample!("spot-interruption.json").replace(KARPENTER_NODE, "i-0ba57105700000000");
        let gone = sample!("instance-stopped.json").replace(KARPENTER_NODE, "i-0000000000000dead");
        let p = ports();
        let r = handle_batch(batch(&[&bastion, &gone]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.dropped, r.notifications), (2, 0));
        assert!(r.failures.is_empty() && r.batch_item_failures.is_empty());
        assert!(p.notifiers.all.sent().is_empty());
        // A cluster this stack does not watch is not its business either.
        let r = handle_batch(
            batch(&[sample!("spot-interruption.json")]),
            &config(&[("CLUSTER_NAMES", "dev-eks")]),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(r.dropped, 1);
        assert!(p.notifiers.all.sent().is_empty());
    }

    #[tokio::test]
    async fn a_termination_auto_scaling_reports_itself_is_not_reported_twice() {
        let mut p = ports();
        p.ec2.instances.insert(
            "i-0a1b2c3d4e5f60718".into(),
            NodeInfo {
                cluster: Some("prod-eks".into()),
                pool: Some(Pool::NodeGroup("ng-1".into())),
                auto_scaling_group: Some("eks-prod-ng-1-a2c4e6g8".into()),
                ..NodeInfo::default()
            },
        );
        let terminated = sample!("instance-stopped.json")
            .replace(KARPENTER_NODE, "i-0a1b2c3d4e5f60718")
            .replace("\"stopped\"", "\"terminated\"");
        let r = handle_batch(
            batch(&[sample!("terminate-successful.json"), &terminated]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert_eq!((r.notifications, r.dropped), (1, 1));
        assert_eq!(
            subjects(&p.notifiers.all),
            ["[prod] 1 node terminated in prod-eks/ng-1, desired 5→4"]
        );
    }

    #[tokio::test]
    async fn when_ec2_cannot_be_asked_only_the_node_records_return_to_the_queue() {
        let mut p = ports();
        p.ec2.fail = true;
        let r = handle_batch(
            batch(&[sample!("spot-interruption.json"), sample!("alarm-ok.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(r.batch_item_failures, [item_failure("m0")]);
        assert!(r.failures[0].retryable);
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn long_multibyte_names_stay_valid_and_within_the_subject_limit() {
        let long =
            sample!("alarm-state-change.json").replace("api-cpu-high", &"überlast-ñ-🚀".repeat(12));
        let n = one(&long).await;
        assert_eq!(n.subject.chars().count(), 99);
        assert!(n.subject.ends_with('…'));
    }

    #[tokio::test]
    async fn every_sample_reads_within_the_subject_limit() {
        for body in [
            sample!("alarm-anomaly.json"),
            sample!("alarm-composite-suppressed.json"),
            sample!("alarm-math.json"),
            sample!("alarm-muted.json"),
            sample!("instance-stopped.json"),
            sample!("lifecycle-launch.json"),
            sample!("lifecycle-terminate.json"),
            sample!("nodegroup-config-denied.json"),
            sample!("nodegroup-config-failed.json"),
            sample!("nodegroup-create.json"),
            sample!("nodegroup-delete.json"),
            sample!("nodegroup-labels-update.json"),
            sample!("nodegroup-version-update.json"),
            sample!("rebalance-recommendation.json"),
            sample!("spot-interruption.json"),
        ] {
            let n = one(body).await;
            assert!(!n.subject.ends_with('…'), "cut: {}", n.subject);
        }
    }

    #[tokio::test]
    async fn ten_launches_in_one_group_become_one_notification_listing_all() {
        let bodies: Vec<String> = (0..10)
            .map(|i| {
                sample!("launch-successful.json")
                    .replace("i-0a1b2c3d4e5f60718", &format!("i-{i:017}"))
            })
            .collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let p = ports();
        let r = handle_batch(batch(&refs), &config(&[]), &p).await.unwrap();
        assert_eq!((r.events, r.notifications, r.coalesced), (10, 1, 9));
        let sent = p.notifiers.all.sent();
        assert!(
            sent[0]
                .subject
                .starts_with("[prod] 10 nodes launched in prod-eks/ng-1"),
            "{}",
            sent[0].subject
        );
        for i in 0..10 {
            assert!(sent[0].body.contains(&format!("i-{i:017}")));
        }
        assert_eq!(
            p.asg.calls.lock().unwrap().len(),
            1,
            "one DescribeAutoScalingGroups per batch"
        );
        assert!(
            p.ec2.calls.lock().unwrap().is_empty(),
            "no EC2 events, no EC2 call"
        );
    }

    #[tokio::test]
    async fn the_sample_batch_groups_by_kind_and_group_and_an_alarm_reads_its_latest_state() {
        let event: SqsEvent = serde_json::from_str(sample!("sqs-batch.json")).unwrap();
        let p = ports();
        let r = handle_batch(event, &config(&[]), &p).await.unwrap();
        assert_eq!(
            subjects(&p.notifiers.all),
            [
                "[prod] 3 nodes launched in prod-eks/ng-1, desired 4→7",
                "[prod] OK: api-cpu-high (CPUUtilization > 80), 2 changes",
                "[prod] Node group prod-eks/ng-1 resized: desired 8, min 3, max 12",
            ]
        );
        let alarm = &p.notifiers.all.sent()[1];
        assert_eq!(alarm.severity, Severity::Resolved);
        assert!(
            alarm.body.starts_with(
                "api-cpu-high is OK again.\n\nChanges:     2 in this batch: OK → ALARM → OK\n"
            ),
            "{}",
            alarm.body
        );
        assert_eq!((r.events, r.notifications, r.coalesced), (6, 3, 3));
        assert_eq!(
            *p.asg.calls.lock().unwrap(),
            [vec!["eks-prod-ng-1-a2c4e6g8".to_owned()]]
        );
    }

    #[tokio::test]
    async fn mixed_groups_and_kinds_stay_separate() {
        let other = sample!("launch-successful.json")
            .replace("eks-prod-ng-1-a2c4e6g8", "eks-prod-ng-2-b3d5f7h9");
        let p = ports();
        let bodies = [
            sample!("launch-successful.json"),
            other.as_str(),
            sample!("terminate-successful.json"),
            sample!("launch-successful.json"),
        ];
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(
            subjects(&p.notifiers.all),
            [
                "[prod] 2 nodes launched in prod-eks/ng-1, desired 4→5",
                "[prod] 1 node launched in eks-prod-ng-2-b3d5f7h9, desired 4→5",
                "[prod] 1 node terminated in prod-eks/ng-1, desired 5→4",
            ]
        );
        assert_eq!(r.coalesced, 1);
    }

    #[tokio::test]
    async fn unparseable_records_are_kept_once_not_redelivered_and_do_not_block_the_rest() {
        let p = ports();
        let bodies = [
            "not json at all",
            sample!("launch-successful.json"),
            r#"{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}"#,
            r#"{"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {"no": "group"}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-1", "state": "running"}}"#,
        ];
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert!(r.failures.iter().all(|f| !f.retryable));
        assert!(
            r.failures[1].error.contains("\"aws.s3\""),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[2]
                .error
                .contains("malformed EC2 Instance Launch Successful event"),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[3].error.contains("\"running\""),
            "{:?}",
            r.failures
        );
        assert_eq!(p.notifiers.all.sent().len(), 1);
        assert!(p.ec2.calls.lock().unwrap().is_empty());
        // Kept in the failed-invocations queue, so SQS need not bring them back five times.
        let kept = Kept::default();
        let r = record_rejected(r, &kept).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let records = kept.records.lock().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].event, "not json at all");
        assert_eq!(records[1].event["source"], "aws.s3");
        assert!(
            records
                .iter()
                .all(|r| r.error_type == "NonRetryable.InvalidEvent")
        );
    }

    /// One delivery of a batch to the deployed entry point.
    async fn deliver(payload: &SqsEvent, p: &TestPorts) -> Response {
        let payload = serde_json::to_value(payload).unwrap();
        handle_once(payload, SystemTime::now(), "request-1", &config(&[]), p)
            .await
            .unwrap()
    }

    fn redelivered(mut event: SqsEvent) -> SqsEvent {
        for r in &mut event.records {
            r.attributes
                .insert("ApproximateReceiveCount".into(), "2".into());
        }
        event
    }

    #[tokio::test]
    async fn the_same_event_in_one_batch_or_across_batches_is_reported_once() {
        let p = ports();
        let alarm = sample!("alarm-state-change.json");
        let payload = batch(&[alarm, alarm]);
        let r = deliver(&payload, &p).await;
        assert_eq!((r.events, r.duplicates, r.notifications), (2, 1, 1));
        let again = deliver(&payload, &p).await;
        assert_eq!((again.duplicates, again.notifications), (2, 0));
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn an_alert_that_could_not_be_sent_is_sent_on_redelivery() {
        let mut p = with(Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
            chat: None,
        });
        let payload = batch(&[sample!("alarm-ok.json")]);
        let r = deliver(&payload, &p).await;
        assert_eq!(r.batch_item_failures.len(), 1);
        p.notifiers.all = Recorder::default();
        let r = deliver(&redelivered(payload), &p).await;
        assert_eq!((r.duplicates, r.notifications), (0, 1));
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_partial_two_topic_failure_is_retried_for_the_failed_topic_only() {
        let mut p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::failing("Throttling", 400)),
            chat: None,
        });
        let payload = batch(&[sample!("alarm-state-change.json")]);
        let r = deliver(&payload, &p).await;
        assert_eq!(r.batch_item_failures.len(), 1, "{r:?}");
        assert_eq!(p.notifiers.all.sent().len(), 1);
        p.notifiers.errors = Some(Recorder::default());
        let r = deliver(&redelivered(payload), &p).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        assert_eq!(
            p.notifiers.all.sent().len(),
            1,
            "the alerts topic had it already"
        );
        assert_eq!(p.notifiers.errors.as_ref().unwrap().sent().len(), 1);
    }

    #[tokio::test]
    async fn mail_and_chat_topics_each_get_their_own_format() {
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: None,
            chat: Some(Recorder::default()),
        });
        handle_batch(
            batch(&[sample!("alarm-state-change.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        let mail = &p.notifiers.all.sent()[0];
        assert!(
            mail.body.starts_with("api-cpu-high is ALARM (was OK)."),
            "{}",
            mail.body
        );
        let chat = &p.notifiers.chat.as_ref().unwrap().sent()[0];
        let body: serde_json::Value = serde_json::from_str(&chat.body).unwrap();
        assert_eq!(body["source"], "custom");
        assert_eq!(
            body["content"]["title"],
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80)"
        );
        assert!(
            body["content"]["description"]
                .as_str()
                .unwrap()
                .contains("latest 93.5")
        );
    }

    #[tokio::test]
    async fn unparseable_records_go_back_to_sqs_when_the_queue_is_unreachable() {
        let p = ports();
        let r = handle_batch(batch(&["not json at all"]), &config(&[]), &p)
            .await
            .unwrap();
        let broken = Kept {
            broken: true,
            ..Kept::default()
        };
        let r = record_rejected(r, &broken).await;
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["batchItemFailures"][0],
            serde_json::json!({"itemIdentifier": "m0"})
        );
    }

    #[tokio::test]
    async fn a_failed_publish_returns_exactly_its_records_for_retry() {
        let p = with(Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
            chat: None,
        });
        let bodies = [
            sample!("launch-successful.json"),
            sample!("launch-successful.json"),
        ];
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.batch_item_failures.len(), 2);
        assert!(r.failures.iter().all(|f| f.retryable));
        assert_eq!(r.notifications, 0);
    }

    #[tokio::test]
    async fn errors_also_go_to_the_errors_topic_and_others_do_not() {
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::default()),
            chat: None,
        });
        let bodies = [
            sample!("launch-successful.json"),
            sample!("alarm-state-change.json"),
            sample!("rebalance-recommendation.json"),
        ];
        handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(p.notifiers.all.sent().len(), 3);
        assert_eq!(
            subjects(p.notifiers.errors.as_ref().unwrap()),
            ["[prod] ALARM: api-cpu-high (CPUUtilization > 80)"]
        );
    }

    #[tokio::test]
    async fn enrichment_failure_still_sends_the_alert() {
        let mut p = ports();
        p.asg.fail = true;
        handle_batch(
            batch(&[sample!("launch-successful.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(
            p.notifiers.all.sent()[0].subject,
            "[prod] 1 node launched in eks-prod-ng-1-a2c4e6g8, desired 4→5"
        );
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
}
