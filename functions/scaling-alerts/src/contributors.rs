//! Multi-time-series alarms (Metrics Insights `GROUP BY`): CloudWatch tells each time series'
//! change apart (`CloudWatch Alarm Contributor State Change`), and a batch's changes of one
//! alarm read as one message naming the contributors that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use bridgekeeper::events::{AlarmStateChangeEvent, cloudwatch_time};
use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

use crate::alarm::{Silence, comparison, tagged, tagged_severity};
use crate::alert::{GroupInfo, attributes, fmt_number, plural};

#[derive(Debug, Clone, PartialEq)]
pub struct ContributorEvent {
    pub alarm: String,
    /// CloudWatch's id of the time series; stable while the series exists.
    pub id: String,
    /// The series' `GROUP BY` values, e.g. `AutoScalingGroupName`.
    pub attributes: BTreeMap<String, String>,
    pub state: String,
    pub reason: String,
    /// The Metrics Insights query the alarm evaluates, and its period.
    pub query: Option<(String, Option<u64>)>,
    pub description: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub silenced: Option<Silence>,
    pub tags: BTreeMap<String, String>,
}

/// Contributors listed per state in one message; the rest are counted.
const LISTED: usize = 15;
const LABEL_CHARS: usize = 200;

/// The contributor change an event tells; `None` when it names no contributor.
pub fn read(e: AlarmStateChangeEvent) -> Option<ContributorEvent> {
    let d = e.detail;
    let contributor = d.alarm_contributor?;
    let query = d.configuration.as_ref().and_then(|c| {
        let watched = c
            .metrics
            .iter()
            .find(|m| m.return_data.unwrap_or(true) && m.expression.is_some())?;
        Some((watched.expression.clone()?, watched.period))
    });
    Some(ContributorEvent {
        alarm: d.alarm_name,
        id: contributor.id,
        attributes: contributor.attributes,
        state: d.state.value.text(),
        reason: d.state.reason.clone(),
        description: d.configuration.and_then(|c| c.description),
        query,
        time: cloudwatch_time(&d.state.timestamp).or(e.time),
        silenced: Silence::muted(d.mute_detail.as_ref()),
        tags: d.alarm_tags,
    })
}

impl ContributorEvent {
    /// `AutoScalingGroupName=eks-prod-ng-1`: its attributes, or its id when it has none.
    pub fn label(&self) -> String {
        let label = if self.attributes.is_empty() {
            self.id.clone()
        } else {
            self.attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // CloudWatch allows 30 attributes of 1,024 characters: a line stays a line.
        match label.char_indices().nth(LABEL_CHARS) {
            Some((cut, _)) => format!("{}…", &label[..cut]),
            None => label,
        }
    }

    /// The Auto Scaling group the series is about, when the alarm groups by it.
    pub fn group(&self) -> Option<&str> {
        self.attributes
            .get("AutoScalingGroupName")
            .map(String::as_str)
    }

    /// `AVG(CPUUtilization) > 80, latest 91.2`, from the query's SELECT and CloudWatch's reason
    /// ("… was greater than the threshold (80.0). The most recent datapoint which crossed the
    /// threshold: [91.2 (…)]").
    fn condition(&self) -> Option<String> {
        let op = comparison(&self.reason)?;
        let threshold = number_after(&self.reason, "the threshold (")?;
        let name = self
            .query
            .as_ref()
            .and_then(|(q, _)| selected(q))
            .unwrap_or("value");
        let latest = number_after(&self.reason, "crossed the threshold: [")
            .map(|v| format!(", latest {}", fmt_number(v)))
            .unwrap_or_default();
        Some(format!("{name} {op} {}{latest}", fmt_number(threshold)))
    }
}

fn number_after(text: &str, marker: &str) -> Option<f64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `AVG(CPUUtilization)` of `SELECT AVG(CPUUtilization) FROM …`.
fn selected(query: &str) -> Option<&str> {
    let upper = query.to_ascii_uppercase();
    let start = upper.find("SELECT ")? + "SELECT ".len();
    let end = upper[start..].find(" FROM ")? + start;
    Some(query[start..end].trim()).filter(|s| !s.is_empty())
}

/// One alarm's contributor changes in a batch: each contributor's latest change (by the time
/// CloudWatch changed it), grouped by state.
pub fn render(
    changes: &[&ContributorEvent],
    groups: &HashMap<String, GroupInfo>,
    env: &str,
) -> Notification {
    let mut ordered: Vec<&ContributorEvent> = changes.to_vec();
    // Stable: of equal times the later arrival is the latest.
    ordered.sort_by_key(|c| c.time);
    let mut latest: BTreeMap<&str, &ContributorEvent> = BTreeMap::new();
    for c in &ordered {
        latest.insert(c.id.as_str(), c);
    }
    let last = *ordered.last().expect("an alert has a change");
    let mut by_state: BTreeMap<&str, Vec<&ContributorEvent>> = BTreeMap::new();
    for c in latest.values() {
        by_state.entry(c.state.as_str()).or_default().push(c);
    }
    // ALARM first: it is what a person acts on.
    let mut states: Vec<&str> = by_state.keys().copied().collect();
    states.sort_by_key(|s| (*s != "ALARM", *s));
    let silenced = last.silenced.as_ref();
    let mark = silenced
        .map(|s| format!(" ({})", s.word()))
        .unwrap_or_default();
    let subject = match (latest.len(), states.as_slice()) {
        (1, [state]) => format!("[{env}] {state}{mark}: {} ({})", last.alarm, last.label()),
        (n, [state]) => format!("[{env}] {state}{mark}: {}, {n} contributors", last.alarm),
        _ => format!(
            "[{env}] {}{mark}: {}",
            last.alarm,
            states
                .iter()
                .map(|s| format!("{} {s}", by_state[s].len()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut body = match states.as_slice() {
        [state] => format!(
            "{} of {} {} {state}.\n\n",
            plural(latest.len(), "contributor", "contributors"),
            last.alarm,
            if latest.len() == 1 { "is" } else { "are" },
        ),
        _ => format!(
            "{} of {} changed state.\n\n",
            plural(latest.len(), "contributor", "contributors"),
            last.alarm
        ),
    };
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<13}{value}");
    };
    if let Some((query, period)) = &last.query {
        let period = period.map(|p| format!(" ({p} s)")).unwrap_or_default();
        line("Query:", &format!("{query}{period}"));
    }
    let cluster_of = |c: &ContributorEvent| {
        let info = groups.get(c.group()?)?;
        Some(match (&info.cluster, &info.nodegroup) {
            (Some(cl), Some(ng)) => format!("{cl}/{ng}"),
            (Some(cl), None) => cl.clone(),
            _ => return None,
        })
    };
    for state in &states {
        let members = &by_state[state];
        for (i, c) in members.iter().take(LISTED).enumerate() {
            let mut text = c.label();
            if let Some(place) = cluster_of(c) {
                let _ = write!(text, " ({place})");
            }
            if let Some(cond) = c.condition() {
                let _ = write!(text, ": {cond}");
            }
            let label = if i == 0 {
                format!("{state}:")
            } else {
                String::new()
            };
            line(&label, &text);
        }
        if members.len() > LISTED {
            line("", &format!("… and {} more", members.len() - LISTED));
        }
    }
    if latest.len() == 1 {
        line("Reason:", &last.reason);
    }
    if let Some(s) = silenced {
        line(
            "Actions:",
            &format!("{}; sent for the record, not paged", s.says()),
        );
    }
    if let Some(d) = last.description.as_deref().filter(|d| !d.is_empty()) {
        line("Description:", d);
    }
    if let Some(t) = last.time {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let alarming = by_state.contains_key("ALARM");
    let severity = match (silenced, alarming, states.as_slice()) {
        (Some(_), _, _) => Severity::Info,
        (None, true, _) => tagged_severity(&last.tags).unwrap_or(Severity::Error),
        // A contributor leaves the alarm's contributors by returning to OK.
        (None, false, ["OK"]) => Severity::Resolved,
        _ => Severity::Info,
    };
    let named: BTreeSet<&str> = latest.values().filter_map(|c| c.group()).collect();
    let group = (named.len() == 1).then(|| named.first().copied()).flatten();
    let clusters: BTreeSet<&str> = named
        .iter()
        .filter_map(|g| groups.get(*g)?.cluster.as_deref())
        .collect();
    let mut n = attributes(
        Notification::new(subject, body.trim_end().to_owned(), severity),
        "cloudwatch",
        group,
        group.and_then(|g| groups.get(g)),
    )
    .attribute("alarm", last.alarm.clone())
    // Its contributors' changes belong to the alarm's story: the alarm's chat thread.
    .thread(format!("alarm/{}", last.alarm))
    .event_type(if alarming {
        "ALARM"
    } else {
        last.state.as_str()
    })
    .next_step(format!(
        "aws cloudwatch describe-alarm-contributors --alarm-name {}",
        last.alarm
    ));
    if let (None, [cluster]) = (
        group,
        clusters.iter().copied().collect::<Vec<_>>().as_slice(),
    ) {
        n = n.attribute("cluster", *cluster);
    }
    tagged(n, &last.tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_read_from_the_query_and_the_contributors_reason() {
        let c = ContributorEvent {
            alarm: "a".into(),
            id: "6d442278dba546f6".into(),
            attributes: BTreeMap::new(),
            state: "ALARM".into(),
            // CloudWatch's documented contributor reason.
            reason: "Threshold Crossed: 1 datapoint was less than the threshold (1.0). The most recent datapoint which crossed the threshold: [0.0 (01/12/25 13:34:00)].".into(),
            query: Some((
                "SELECT AVG(ConsumedWriteCapacityUnits) FROM \"AWS/DynamoDB\" GROUP BY TableName".into(),
                Some(60),
            )),
            description: None,
            time: None,
            silenced: None,
            tags: BTreeMap::new(),
        };
        assert_eq!(
            c.condition().as_deref(),
            Some("AVG(ConsumedWriteCapacityUnits) < 1, latest 0")
        );
        assert_eq!(c.label(), "6d442278dba546f6");
    }

    use bridgekeeper::notify::testing::Recorder;

    use crate::delivery::Notifiers;
    use crate::fakes::*;
    use crate::pipeline::handle_batch;

    /// A contributor of `nodes-cpu-by-group` in `state` at `time` (17:12:04 in the sample).
    fn contributor(group: &str, id: &str, state: &str, time: &str) -> String {
        sample!("alarm-contributor.json")
            .replace("eks-prod-ng-1-a2c4e6g8", group)
            .replace("6d442278dba546f6", id)
            .replace("\"value\": \"ALARM\"", &format!("\"value\": \"{state}\""))
            .replace("17:12:04", time)
    }

    #[tokio::test]
    async fn a_contributor_in_alarm_names_its_series_query_and_node_group() {
        let n = one(sample!("alarm-contributor.json")).await;
        assert_eq!(
            n.subject,
            "[prod] ALARM: nodes-cpu-by-group (AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8)"
        );
        assert_eq!(
            n.body,
            "1 contributor of nodes-cpu-by-group is ALARM.\n\n\
             Query:       SELECT AVG(CPUUtilization) FROM SCHEMA(\"AWS/EC2\", AutoScalingGroupName) GROUP BY AutoScalingGroupName ORDER BY MAX() DESC (60 s)\n\
             ALARM:       AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8 (prod-eks/ng-1): AVG(CPUUtilization) > 80, latest 91.2\n\
             Reason:      Threshold Crossed: 1 datapoint was greater than the threshold (80.0). The most recent datapoint which crossed the threshold: [91.2 (21/11/26 17:10:00)].\n\
             Description: Any node group running hot\n\
             Time:        2026-11-21 17:12:04 UTC\n\n\
             From account 123456789012 (hub)."
        );
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(n.attributes["alarm"], "nodes-cpu-by-group");
        assert_eq!(n.attributes["group"], "eks-prod-ng-1-a2c4e6g8");
        assert_eq!(n.attributes["cluster"], "prod-eks");
        assert_eq!(n.chat.thread.as_deref(), Some("alarm/nodes-cpu-by-group"));
    }

    #[tokio::test]
    async fn a_batch_of_one_alarms_contributors_is_one_message_by_state() {
        let p = ports();
        let bodies = [
            contributor("eks-prod-ng-1-a2c4e6g8", "c1", "ALARM", "17:12:04"),
            contributor("eks-prod-ng-2", "c2", "ALARM", "17:12:05"),
            contributor("eks-prod-ng-3", "c3", "OK", "17:12:06"),
            // c1 again, later: it ends OK.
            contributor("eks-prod-ng-1-a2c4e6g8", "c1", "OK", "17:14:04"),
        ];
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.coalesced), (1, 3), "{r:?}");
        let n = &p.notifiers.all.sent()[0];
        assert_eq!(n.subject, "[prod] nodes-cpu-by-group: 1 ALARM, 2 OK");
        assert!(
            n.body.starts_with(
                "3 contributors of nodes-cpu-by-group changed state.\n\n\
                 Query:       SELECT AVG(CPUUtilization)"
            ),
            "{}",
            n.body
        );
        assert!(
            n.body.contains(
                "ALARM:       AutoScalingGroupName=eks-prod-ng-2: AVG(CPUUtilization) > 80, latest 91.2\n\
                 OK:          AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8 (prod-eks/ng-1): AVG(CPUUtilization) > 80, latest 91.2\n\
                 \x20            AutoScalingGroupName=eks-prod-ng-3: "
            ),
            "{}",
            n.body
        );
        assert!(!n.body.contains("Reason:"), "{}", n.body);
        assert_eq!(n.severity, Severity::Error);
        assert!(!n.attributes.contains_key("group"), "{:?}", n.attributes);
    }

    #[tokio::test]
    async fn contributors_all_back_to_ok_are_resolved() {
        let n = one(&contributor("eks-prod-ng-2", "c2", "OK", "17:20:00")).await;
        assert_eq!(
            n.subject,
            "[prod] OK: nodes-cpu-by-group (AutoScalingGroupName=eks-prod-ng-2)"
        );
        assert_eq!(n.severity, Severity::Resolved);
    }

    /// EventBridge delivers late: a contributor's ALARM arriving after its OK was reported, or
    /// the same change twice under another id, is not sent; a newer change is.
    #[tokio::test]
    async fn a_contributor_change_older_than_the_one_reported_is_not_sent() {
        let p = ports();
        let ok = contributor("eks-prod-ng-2", "c2", "OK", "17:20:00");
        let late_alarm = contributor("eks-prod-ng-2", "c2", "ALARM", "17:12:04");
        let other = contributor("eks-prod-ng-3", "c3", "ALARM", "17:12:04");
        let r = handle_batch(batch(&[&ok]), &config(&[]), &p).await.unwrap();
        assert_eq!(r.notifications, 1);
        let r = handle_batch(batch(&[&late_alarm]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.dropped), (0, 1), "{r:?}");
        // With a fresh contributor beside it, only the fresh one is told.
        let r = handle_batch(batch(&[&late_alarm, &other]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.notifications, 1, "{r:?}");
        let last = p.notifiers.all.sent().pop().unwrap();
        assert_eq!(
            last.subject,
            "[prod] ALARM: nodes-cpu-by-group (AutoScalingGroupName=eks-prod-ng-3)"
        );
        let newer = contributor("eks-prod-ng-2", "c2", "ALARM", "17:30:00");
        let r = handle_batch(batch(&[&newer]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.notifications, 1, "a newer change still goes out");
    }

    /// CloudWatch's own sample ("Alarm events and EventBridge", Multi Time Series Alarm, Alarm
    /// Contributor Example): a DynamoDB table's series under an alarm mute rule.
    #[tokio::test]
    async fn the_documented_contributor_sample_reads_as_a_muted_alarm_of_its_table() {
        let documented = r#"{
          "version": "0", "id": "6d226bbc-07f0-9a31-3359-1736968f8ded",
          "detail-type": "CloudWatch Alarm Contributor State Change", "source": "aws.cloudwatch",
          "account": "123456789012", "time": "2025-12-01T13:42:04Z", "region": "us-east-1",
          "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:DynamoDBInsightsAlarm"],
          "detail": {
            "alarmName": "DynamoDBInsightsAlarm",
            "alarmContributor": {"id": "6d442278dba546f6", "attributes": {"TableName": "example-dynamodb-table-name"}},
            "state": {"value": "ALARM", "reason": "Threshold Crossed: 1 datapoint was less than the threshold (1.0). The most recent datapoint which crossed the threshold: [0.0 (01/12/25 13:34:00)].", "timestamp": "2025-12-01T13:42:04.919+0000"},
            "configuration": {"metrics": [{"id": "m1", "expression": "SELECT AVG(ConsumedWriteCapacityUnits) FROM \"AWS/DynamoDB\" GROUP BY TableName ORDER BY MAX() DESC", "returnData": true, "period": 60}],
              "description": "Metrics Insights alarm for DynamoDB ConsumedWriteCapacity per TableName"},
            "muteDetail": {"mutedByArn": "arn:aws:cloudwatch:us-east-1:1234567890:alarm-mute-rule:testMute",
              "muteWindowStart": "2026-01-01T10:00:00.000+0000", "muteWindowEnd": "2026-01-01T12:00:00.000+0000"}
          }
        }"#;
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::default()),
            chat: None,
        });
        handle_batch(batch(&[documented]), &config(&[]), &p)
            .await
            .unwrap();
        let n = &p.notifiers.all.sent()[0];
        assert_eq!(
            n.subject,
            "[prod] ALARM (muted): DynamoDBInsightsAlarm (TableName=example-dynamodb-table-name)"
        );
        assert!(
            n.body.contains(
                "ALARM:       TableName=example-dynamodb-table-name: AVG(ConsumedWriteCapacityUnits) < 1, latest 0\n"
            ),
            "{}",
            n.body
        );
        assert!(
            n.body.contains(
                "Actions:     muted by alarm mute rule testMute until 2026-01-01 12:00 UTC; sent for the record, not paged"
            ),
            "{}",
            n.body
        );
        assert_eq!(n.severity, Severity::Info);
        assert!(p.notifiers.errors.as_ref().unwrap().sent().is_empty());
    }

    #[tokio::test]
    async fn many_contributors_are_listed_up_to_a_bound_and_counted() {
        let p = ports();
        let bodies: Vec<String> = (0..40)
            .map(|i| {
                contributor(
                    &format!("eks-prod-ng-{i}"),
                    &format!("c{i}"),
                    "ALARM",
                    "17:12:04",
                )
            })
            .collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        let n = &p.notifiers.all.sent()[0];
        assert_eq!(
            n.subject,
            "[prod] ALARM: nodes-cpu-by-group, 40 contributors"
        );
        assert_eq!(n.body.matches("AutoScalingGroupName=").count(), LISTED);
        assert!(n.body.contains("… and 25 more"), "{}", n.body);
    }
}
