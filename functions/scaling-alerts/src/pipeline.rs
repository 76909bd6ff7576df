//! One batch's records through the pipeline: parsed and admitted, EC2 events kept only for
//! nodes, enriched from Auto Scaling, coalesced into alerts, late or silenced alarm changes
//! dropped, each alert rendered and delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::Error;
use bridgekeeper::accounts::Scope;
use bridgekeeper::idempotency::{Remember, recall_all};
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::Notifier;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::{info, warn};

use crate::addons::{AddonRef, AddonState};
use crate::alert::GroupInfo;
use crate::autoscaling::InstanceAction;
use crate::aws::{AutoScaling, Eks, Instances};
use crate::batch::{RecordError, Response};
use crate::config::{Config, Silenced};
use crate::contributors::ContributorEvent;
use crate::delivery::{self, Notifiers};
use crate::domain::{self, Alert, Fact};
use crate::following;
use crate::karpenter;
use crate::nodes;
use crate::parse::parse;

/// What the handler talks to, built once in `main`.
pub struct Ports<A, E, N, S, U> {
    pub asg: A,
    pub ec2: E,
    /// What it asks EKS (followed node-group updates, add-ons), and the follow-ups it sends itself.
    pub eks: U,
    pub notifiers: Notifiers<N>,
    /// Handled event ids, and which topics already got a partly delivered alert.
    pub store: S,
}

/// The batch's records, each reported in one alert or returned to SQS (`batch_item_failures`).
pub async fn handle_batch<A: AutoScaling, E: Instances, N: Notifier, S: Remember, U: Eks>(
    event: SqsEvent,
    config: &Config,
    ports: &Ports<A, E, N, S, U>,
) -> Result<Response, Error> {
    let mut response = Response {
        events: event.records.len(),
        ..Response::default()
    };
    let (facts, records, origins) = admit(&event, config, &mut response);
    let facts = following::follow(facts, &origins, &ports.eks, &ports.store, &mut response).await;
    let facts = nodes_only(facts, &origins, config, &ports.ec2, &mut response).await;
    let facts = karpenter::reasons(facts, &ports.store).await;

    let groups = enrich(&facts, &origins, &ports.asg).await;
    let facts = ask_addons(facts, &origins, &ports.eks).await;
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
        let alert = match fresh_contributors(alert, scope, &ports.store).await {
            Ok(alert) => alert,
            Err(stale) => {
                info!(
                    records = stale,
                    "late contributor changes: newer states were reported"
                );
                response.dropped += stale;
                continue;
            }
        };
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
        let sent = delivery::deliver(
            &alert,
            &n,
            &records,
            &ports.notifiers,
            &ports.store,
            &mut response,
        )
        .await;
        let reported = latest
            .into_iter()
            .map(|(name, at)| (format!("alarm#{name}"), at))
            .chain(contributor_marks(&alert, scope));
        for (key, at) in reported.filter(|_| sent) {
            if let Err(e) = ports.store.remember(&key, &at.to_rfc3339()).await {
                warn!(key = %key, error = %e, "reported alarm state not remembered");
            }
        }
        if sent {
            karpenter::remember(&ports.store, karpenter::marks(&alert)).await;
        }
    }

    summarize(&response);
    Ok(response)
}

/// Records → facts and where each came from (its account and region); a record that cannot be
/// read, or comes from an account the stack does not serve, is refused for good.
type Admitted<'a> = (
    Vec<(String, Fact)>,
    HashMap<String, &'a SqsMessage>,
    HashMap<String, Scope>,
);

fn admit<'a>(event: &'a SqsEvent, config: &Config, response: &mut Response) -> Admitted<'a> {
    let mut facts = Vec::new();
    let mut records: HashMap<String, &SqsMessage> = HashMap::new();
    let mut origins: HashMap<String, Scope> = HashMap::new();
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let admitted = parse(record).and_then(|(origin, found)| {
            config
                .admitted
                .check(origin.account.as_deref())
                .map(|_| (origin, found))
                .map_err(|e| e.to_string())
        });
        match admitted {
            Ok((origin, found)) => {
                records.insert(id.clone(), record);
                origins.insert(id.clone(), origin);
                facts.extend(found.into_iter().map(|fact| (id.clone(), fact)));
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

    (facts, records, origins)
}

/// What Auto Scaling says about the batch's groups (one DescribeAutoScalingGroups per account
/// and region). Enrichment is a nicety: without it the alert still goes out, with less context.
async fn enrich<'a, A: AutoScaling>(
    facts: &[(String, Fact)],
    origins: &'a HashMap<String, Scope>,
    asg: &A,
) -> HashMap<&'a Scope, HashMap<String, GroupInfo>> {
    let mut names: BTreeMap<&Scope, BTreeSet<String>> = BTreeMap::new();
    for (id, fact) in facts {
        if let Some(group) = fact.group() {
            names
                .entry(&origins[id])
                .or_default()
                .insert(group.to_owned());
        }
    }
    let mut groups: HashMap<&Scope, HashMap<String, GroupInfo>> = HashMap::new();
    for (scope, names) in names {
        let names: Vec<String> = names.into_iter().collect();
        match asg.describe_groups(scope, &names).await {
            Ok(found) => {
                groups.insert(scope, found);
            }
            Err(e) => warn!(error = %e, origin = %scope, "enrichment skipped"),
        }
    }
    groups
}

/// How each add-on the batch's EKS events name stands now (one DescribeAddon per add-on; at
/// most [`RECALLS`] at once). As with the groups, a failure to ask still sends the message,
/// saying EKS could not be asked.
async fn ask_addons<U: Eks>(
    facts: Vec<(String, Fact)>,
    origins: &HashMap<String, Scope>,
    eks: &U,
) -> Vec<(String, Fact)> {
    let named: BTreeSet<(&Scope, &AddonRef)> = facts
        .iter()
        .filter_map(|(record, f)| match f {
            Fact::Addon(e) => Some((&origins[record], e.addon.as_ref()?)),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        return facts;
    }
    let answers: HashMap<(Scope, AddonRef), Result<Option<AddonState>, String>> =
        futures::stream::iter(named)
            .map(|(scope, addon)| async move {
                let answer = eks.describe_addon(scope, addon).await.map_err(|e| {
                    warn!(error = %e, origin = %scope, addon = %addon.name(), "add-on not described");
                    e.to_string()
                });
                ((scope.clone(), addon.clone()), answer)
            })
            .buffer_unordered(RECALLS)
            .collect()
            .await;
    facts
        .into_iter()
        .map(|(record, mut fact)| {
            if let Fact::Addon(e) = &mut fact
                && let Some(addon) = &e.addon
            {
                match answers.get(&(origins[&record].clone(), addon.clone())) {
                    Some(Ok(now)) => e.now = now.clone(),
                    Some(Err(why)) => e.unasked = Some(why.clone()),
                    None => {}
                }
            }
            (record, fact)
        })
        .collect()
}

/// The batch's figures, as metrics and one log line.
fn summarize(response: &Response) {
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
        followed = response.followed,
        failed = response.batch_item_failures.len(),
        "batch done"
    );
}

/// An alarm alert's name (with its account and region: names are unique only within those) and
/// the time of its latest change.
fn latest_alarm(alert: &Alert, origin: Option<&Scope>) -> Option<(String, DateTime<Utc>)> {
    let latest = alert.alarms().into_iter().max_by_key(|a| a.time)?;
    Some((qualified(&latest.name, origin), latest.time?))
}

fn qualified(alarm: &str, origin: Option<&Scope>) -> String {
    match origin {
        Some(Scope {
            account: Some(account),
            region,
        }) => format!(
            "{alarm}/{}/{account}",
            region.as_deref().unwrap_or_default()
        ),
        _ => alarm.to_owned(),
    }
}

/// Where a contributor's last reported change is kept: under its alarm's key, by its id.
fn contributor_key(c: &ContributorEvent, origin: Option<&Scope>) -> String {
    format!("alarm#{}#{}", qualified(&c.alarm, origin), c.id)
}

/// The store key of a contributor's last reported change, and the time of its latest change in
/// the alert.
fn contributor_marks(alert: &Alert, origin: Option<&Scope>) -> Vec<(String, DateTime<Utc>)> {
    let mut latest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for c in alert.contributors() {
        if let Some(t) = c.time {
            let at = latest.entry(contributor_key(c, origin)).or_insert(t);
            *at = (*at).max(t);
        }
    }
    latest.into_iter().collect()
}

/// Store reads and EKS calls at once.
const RECALLS: usize = 16;

/// A multi-time-series alarm's contributor changes as old as (or older than) the one last
/// reported for that contributor are dropped, as [`already_newer`] does for an alarm: its ALARM
/// delivered after its OK must not say it alarms again. `Err(n)`: all `n` records were stale.
async fn fresh_contributors<S: Remember>(
    alert: Alert,
    origin: Option<&Scope>,
    store: &S,
) -> Result<Alert, usize> {
    let keys: BTreeSet<String> = alert
        .contributors()
        .into_iter()
        .map(|c| contributor_key(c, origin))
        .collect();
    if keys.is_empty() {
        return Ok(alert);
    }
    let reported = recall_all(store, keys, RECALLS).await;
    let total = alert.records.len();
    let mut kept = Alert {
        facts: Vec::new(),
        records: Vec::new(),
    };
    for (fact, record) in alert.facts.into_iter().zip(alert.records) {
        let stale = match &fact {
            Fact::Contributor(c) => reported
                .get(&contributor_key(c, origin))
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .zip(c.time)
                .is_some_and(|(reported, t)| t <= reported),
            _ => false,
        };
        if !stale {
            kept.facts.push(fact);
            kept.records.push(record);
        }
    }
    if kept.facts.is_empty() {
        Err(total)
    } else {
        Ok(kept)
    }
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
    // As in alarm::render: of equal times, the later arrival is the latest (max_by_key keeps
    // the last of equal elements).
    let alarm = alert.alarms().into_iter().max_by_key(|a| a.time);
    let contributor = alert.contributors().into_iter().max_by_key(|c| c.time);
    alarm.is_some_and(|a| a.silenced.is_some()) || contributor.is_some_and(|c| c.silenced.is_some())
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

#[cfg(test)]
mod tests {

    use std::collections::{BTreeSet, HashMap};

    use aws_lambda_events::event::sqs::SqsEvent;
    use bridgekeeper::accounts::Scope;

    use bridgekeeper::notify::Severity;

    use crate::alert::GroupInfo;
    use crate::batch::item_failure;

    use crate::fakes::*;
    use crate::nodes::{NodeInfo, Pool};
    use crate::pipeline::handle_batch;

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
    async fn every_sample_reads_within_the_subject_limit() {
        for body in [
            sample!("alarm-anomaly.json"),
            sample!("alarm-composite-suppressed.json"),
            sample!("alarm-math.json"),
            sample!("alarm-muted.json"),
            sample!("alarm-tagged.json"),
            sample!("health-scheduled-retirement.json"),
            sample!("instance-refresh-checkpoint.json"),
            sample!("instance-refresh-failed.json"),
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
            sample!("warm-pool-return.json"),
        ] {
            let n = one(body).await;
            assert!(!n.subject.ends_with('…'), "cut: {}", n.subject);
        }
    }

    /// AWS Health's scheduled retirement of two Karpenter nodes: one message for the pool,
    /// what to do and by when, threaded by the Health event and naming both instances.
    #[tokio::test]
    async fn a_scheduled_retirement_of_two_nodes_is_one_message_saying_when_and_what_to_do() {
        let n = one(sample!("health-scheduled-retirement.json")).await;
        assert_eq!(
            n.subject,
            "[prod] Scheduled retirement on 2026-12-09 09:00 UTC: 2 nodes of prod-eks/default"
        );
        assert_eq!(n.severity, Severity::Warning);
        assert!(n.body.contains("Replace them before then"), "{}", n.body);
        assert!(
            n.body.contains("AWS says:  EC2 has detected degradation"),
            "{}",
            n.body
        );
        assert_eq!(n.chat.related.len(), 2);
        assert!(
            n.chat
                .thread
                .as_deref()
                .unwrap()
                .starts_with("health/arn:aws:health:")
        );
    }

    /// Alarm tag propagation: the tags become message attributes (routing by team needs no
    /// naming convention), and `bridgekeeper:severity` sets the severity.
    #[tokio::test]
    async fn a_tagged_alarm_carries_its_tags_and_the_severity_its_tag_says() {
        let n = one(sample!("alarm-tagged.json")).await;
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(
            n.attributes.get("tag.team").map(String::as_str),
            Some("payments")
        );
        assert!(
            !n.attributes
                .keys()
                .any(|k| k.contains("severity") && k != "severity")
        );
        assert_eq!(n.chat.thread.as_deref(), Some("alarm/payments-cpu-high"));
    }

    /// A node returned to the warm pool is kept, stopped, for the next scale-out: not lost.
    #[tokio::test]
    async fn a_return_to_the_warm_pool_does_not_read_as_a_termination() {
        let n = one(sample!("warm-pool-return.json")).await;
        assert!(n.subject.contains("into the warm pool"), "{}", n.subject);
        assert!(!n.subject.contains("terminated"), "{}", n.subject);
    }

    /// One refresh's checkpoint and failure in one batch: one message, read as failed.
    #[tokio::test]
    async fn an_instance_refresh_that_fails_after_its_checkpoint_is_one_error() {
        let p = ports();
        let r = handle_batch(
            batch(&[
                sample!("instance-refresh-checkpoint.json"),
                sample!("instance-refresh-failed.json"),
            ]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let sent = p.notifiers.all.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(
            sent[0].subject,
            "[prod] Instance refresh of prod-eks/ng-1 failed"
        );
        assert_eq!(sent[0].severity, Severity::Error);
        assert!(
            sent[0]
                .body
                .contains("reached its checkpoint: 50% replaced"),
            "{}",
            sent[0].body
        );
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
}
