//! CloudWatch alarm state changes: what the alarm watches (a metric, a math expression, an
//! anomaly band, other alarms), whether its actions are silenced, and how a batch of its changes
//! reads when it flapped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use bridgekeeper::events::{AlarmMetric, AlarmStateChangeEvent, MuteDetail, cloudwatch_time};
use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

use crate::alert::{GroupInfo, attributes, fmt_number};

#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub name: String,
    pub state: String,
    pub previous: Option<String>,
    pub reason: String,
    pub description: Option<String>,
    pub target: Target,
    /// The dimensions of the metric it watches (`AutoScalingGroupName` is looked up).
    pub dimensions: BTreeMap<String, String>,
    pub latest: Option<f64>,
    /// When the state changed: the state's own timestamp (milliseconds), else the event's time.
    pub time: Option<DateTime<Utc>>,
    pub silenced: Option<Silence>,
    /// Its propagated tags (`alarmTags`): message attributes, and `bridgekeeper:severity`.
    pub tags: BTreeMap<String, String>,
}

/// The tag that sets an alarm's severity (`info`, `warning` or `error`): a team says which of its
/// alarms wake someone, without naming conventions.
pub const SEVERITY_TAG: &str = "bridgekeeper:severity";
/// Room left for tags among SNS's ten message attributes (the notifier's three, and `source`,
/// `alarm`, `group` and `cluster`).
const MAX_TAG_ATTRIBUTES: usize = 3;

/// An SNS message attribute name for a tag key: letters, digits, `_`, `-` and `.` (SNS's rule),
/// under `tag.` so a tag never replaces one of Bridgekeeper's attributes.
fn tag_attribute(key: &str) -> Option<String> {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    (!name.is_empty() && !key.starts_with("aws:")).then(|| format!("tag.{name}"))
}

/// What an alarm alarms on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `AWS/EC2 CPUUtilization (Average, 300 s)`.
    Metric {
        metric: String,
        name: String,
        threshold: Option<f64>,
    },
    /// The metric-math (or Metrics Insights) expression whose result the alarm evaluates.
    Expression {
        id: String,
        label: Option<String>,
        expression: String,
        inputs: Vec<String>,
        threshold: Option<f64>,
    },
    /// An anomaly-detection band around a metric.
    Band {
        name: String,
        metric: String,
        expression: String,
        lower: Option<f64>,
        upper: Option<f64>,
    },
    /// A composite alarm's rule over other alarms.
    Composite {
        rule: Option<String>,
    },
    Unknown,
}

/// Why an alarm's own actions did not fire, as CloudWatch says in the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Silence {
    /// An alarm mute rule covers the change (`muteDetail`).
    Muted {
        rule: Option<String>,
        until: Option<DateTime<Utc>>,
    },
    /// A composite alarm's suppressor (`actionsSuppressedBy`: `Alarm`, `WaitPeriod`,
    /// `ExtensionPeriod`).
    Suppressed { by: String, reason: Option<String> },
}

impl Silence {
    /// The mute rule CloudWatch names in `muteDetail`, and until when it mutes.
    pub fn muted(detail: Option<&MuteDetail>) -> Option<Silence> {
        detail.map(|m| Silence::Muted {
            rule: m
                .muted_by_arn
                .as_deref()
                .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_owned()),
            until: m.mute_window_end.as_deref().and_then(cloudwatch_time),
        })
    }

    pub fn says(&self) -> String {
        match self {
            Silence::Muted { rule, until } => {
                let mut s = format!(
                    "muted by alarm mute rule {}",
                    rule.as_deref().unwrap_or("(unnamed)")
                );
                if let Some(t) = until {
                    let _ = write!(s, " until {}", t.format("%Y-%m-%d %H:%M UTC"));
                }
                s
            }
            Silence::Suppressed { by, reason } => match reason {
                Some(r) if !r.is_empty() => format!("suppressed by {by} ({r})"),
                _ => format!("suppressed by {by}"),
            },
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Silence::Muted { .. } => "muted",
            Silence::Suppressed { .. } => "suppressed",
        }
    }
}

/// The event as an [`AlarmEvent`].
pub fn read(e: AlarmStateChangeEvent) -> AlarmEvent {
    let d = e.detail;
    let reason_data = d.state.reason_data().unwrap_or_default();
    let time = cloudwatch_time(&d.state.timestamp).or(e.time);
    let metrics = d
        .configuration
        .as_ref()
        .map(|c| c.metrics.as_slice())
        .unwrap_or_default();
    let target = target(
        metrics,
        d.configuration.as_ref().and_then(|c| c.alarm_rule.clone()),
        reason_data.threshold,
        reason_data.recent_lower_thresholds.last().copied(),
        reason_data.recent_upper_thresholds.last().copied(),
    );
    // A math expression has no dimensions of its own: its first metric input's stand for it.
    let dimensions = watched(metrics)
        .and_then(|m| m.metric_stat.as_ref())
        .or_else(|| metrics.iter().find_map(|m| m.metric_stat.as_ref()))
        .map(|s| s.metric.dimensions.clone())
        .unwrap_or_default();
    // CloudWatch adds `muteDetail` to a change whose actions an alarm mute rule muted.
    let muted = Silence::muted(d.mute_detail.as_ref());
    let suppressed = d
        .state
        .actions_suppressed_by
        .clone()
        .map(|by| Silence::Suppressed {
            by,
            reason: d.state.actions_suppressed_reason.clone(),
        });
    AlarmEvent {
        name: d.alarm_name,
        state: d.state.value.text(),
        previous: d.previous_state.as_ref().map(|p| p.value.text()),
        reason: d.state.reason.clone(),
        description: d.configuration.as_ref().and_then(|c| c.description.clone()),
        target,
        dimensions,
        latest: reason_data.recent_datapoints.last().copied(),
        time,
        silenced: muted.or(suppressed),
        tags: d.alarm_tags,
    }
}

fn describe(m: &AlarmMetric) -> String {
    match (&m.metric_stat, &m.expression) {
        (Some(s), _) => {
            let dims: Vec<String> = s
                .metric
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{} {} ({}, {} s) {}",
                s.metric.namespace,
                s.metric.name,
                s.stat,
                s.period,
                dims.join(" ")
            )
            .trim_end()
            .to_owned()
        }
        (None, Some(e)) => e.clone(),
        (None, None) => m.id.clone(),
    }
}

fn is_band(m: &AlarmMetric) -> bool {
    m.expression
        .as_deref()
        .is_some_and(|e| e.trim_start().starts_with("ANOMALY_DETECTION_BAND"))
}

/// The series the alarm evaluates: the one that returns data and is not an anomaly band
/// (`returnData` absent means true for a single metric).
fn watched(metrics: &[AlarmMetric]) -> Option<&AlarmMetric> {
    let band_input = metrics.iter().find(|m| is_band(m)).and_then(|band| {
        let expr = band.expression.as_deref().unwrap_or_default();
        metrics.iter().find(|m| !is_band(m) && expr.contains(&m.id))
    });
    band_input.or_else(|| {
        metrics
            .iter()
            .find(|m| !is_band(m) && m.return_data.unwrap_or(metrics.len() == 1))
    })
}

fn target(
    metrics: &[AlarmMetric],
    rule: Option<String>,
    threshold: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
) -> Target {
    if metrics.is_empty() {
        return if rule.is_some() {
            Target::Composite { rule }
        } else {
            Target::Unknown
        };
    }
    let Some(watched) = watched(metrics) else {
        return Target::Unknown;
    };
    let name = watched
        .label
        .clone()
        .or_else(|| watched.metric_stat.as_ref().map(|s| s.metric.name.clone()))
        .unwrap_or_else(|| watched.id.clone());
    if let Some(band) = metrics.iter().find(|m| is_band(m)) {
        return Target::Band {
            name,
            metric: describe(watched),
            expression: band.expression.clone().unwrap_or_default(),
            lower,
            upper,
        };
    }
    match (&watched.expression, &watched.metric_stat) {
        (Some(expression), _) => Target::Expression {
            id: watched.id.clone(),
            label: watched.label.clone(),
            expression: expression.clone(),
            inputs: metrics
                .iter()
                .filter(|m| m.id != watched.id)
                .map(|m| format!("{} = {}", m.id, describe(m)))
                .collect(),
            threshold,
        },
        (None, Some(_)) => Target::Metric {
            metric: describe(watched),
            name,
            threshold,
        },
        (None, None) => Target::Unknown,
    }
}

/// The comparison CloudWatch wrote in the state reason: `was greater than the threshold`.
pub fn comparison(reason: &str) -> Option<&'static str> {
    [
        ("greater than or equal to the threshold", ">="),
        ("less than or equal to the threshold", "<="),
        ("greater than the threshold", ">"),
        ("less than the threshold", "<"),
    ]
    .iter()
    .find(|(phrase, _)| reason.contains(phrase))
    .map(|(_, op)| *op)
}

impl AlarmEvent {
    /// `CPUUtilization > 80`, `Total Network Traffic > 10000`, `CPUUtilization outside 0.02–0.3`.
    fn condition(&self) -> Option<String> {
        let op = comparison(&self.reason);
        let against = |name: &str, threshold: Option<f64>| match (op, threshold) {
            (Some(op), Some(t)) => Some(format!("{name} {op} {}", fmt_number(t))),
            (None, Some(t)) => Some(format!("{name}, threshold {}", fmt_number(t))),
            _ => None,
        };
        match &self.target {
            Target::Metric {
                name, threshold, ..
            } => against(name, *threshold),
            Target::Expression {
                id,
                label,
                threshold,
                ..
            } => against(label.as_deref().unwrap_or(id), *threshold),
            Target::Band {
                name, lower, upper, ..
            } => Some(match (lower, upper) {
                (Some(l), Some(u)) => {
                    format!("{name} outside {}–{}", fmt_number(*l), fmt_number(*u))
                }
                _ => format!("{name} outside its expected band"),
            }),
            Target::Composite { .. } | Target::Unknown => None,
        }
    }
}

/// One alarm's changes in a batch, in arrival order, as one notification: the latest state by
/// the time CloudWatch changed it, how it got there, and whether its actions were silenced.
pub fn render(
    changes: &[&AlarmEvent],
    groups: &HashMap<String, GroupInfo>,
    env: &str,
) -> Notification {
    let mut ordered: Vec<&AlarmEvent> = changes.to_vec();
    // Stable: equal times keep arrival order, so the later arrival wins a tie.
    ordered.sort_by_key(|a| a.time);
    let a = *ordered.last().expect("an alert has a change");
    let before = ordered[0].previous.clone();
    let condition = a.condition();
    let silenced = a.silenced.as_ref();
    let state = match silenced {
        Some(s) => format!("{} ({})", a.state, s.word()),
        None => a.state.clone(),
    };
    let flapped = ordered.len() > 1;
    let mut subject = format!("[{env}] {state}: {}", a.name);
    if let Some(c) = &condition {
        let _ = write!(subject, " ({c})");
    }
    if flapped {
        let _ = write!(subject, ", {} changes", ordered.len());
    }
    let mut body = format!("{} is {}", a.name, a.state);
    match &before {
        Some(p) if flapped && *p == a.state => body.push_str(" again"),
        Some(p) => {
            let _ = write!(body, " (was {p})");
        }
        None => {}
    }
    body.push_str(".\n\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<13}{value}");
    };
    if flapped {
        let path: Vec<&str> = before
            .as_deref()
            .into_iter()
            .chain(ordered.iter().map(|c| c.state.as_str()))
            .collect();
        line(
            "Changes:",
            &format!("{} in this batch: {}", ordered.len(), path.join(" → ")),
        );
    }
    match &a.target {
        Target::Metric { metric, .. } => line("Metric:", metric),
        Target::Expression {
            id,
            label,
            expression,
            inputs,
            ..
        } => {
            let label = label
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            line("Expression:", &format!("{id} = {expression}{label}"));
            for (i, input) in inputs.iter().enumerate() {
                line(if i == 0 { "Inputs:" } else { "" }, input);
            }
        }
        Target::Band {
            metric, expression, ..
        } => {
            line("Metric:", metric);
            line("Band:", expression);
        }
        Target::Composite { rule: Some(rule) } => line("Rule:", rule),
        Target::Composite { rule: None } | Target::Unknown => {}
    }
    if let Some(c) = &condition {
        let latest = a
            .latest
            .map(|v| format!(", latest {}", fmt_number(v)))
            .unwrap_or_default();
        line("Condition:", &format!("{c}{latest}"));
    }
    line("Reason:", &a.reason);
    if let Some(s) = silenced {
        line(
            "Actions:",
            &format!("{}; sent for the record, not paged", s.says()),
        );
    }
    if let Some(d) = a.description.as_deref().filter(|d| !d.is_empty()) {
        line("Description:", d);
    }
    if let Some(t) = a.time {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let was_alarm =
        before.as_deref() == Some("ALARM") || ordered.iter().any(|c| c.state == "ALARM");
    let by_tag = tagged_severity(&a.tags);
    let severity = match (a.state.as_str(), silenced, by_tag) {
        (_, Some(_), _) => Severity::Info,
        ("ALARM", None, Some(s)) => s,
        ("ALARM", None, None) => Severity::Error,
        ("OK", None, _) if was_alarm => Severity::Resolved,
        _ => Severity::Info,
    };
    let group = a.dimensions.get("AutoScalingGroupName").map(String::as_str);
    let info = group.and_then(|g| groups.get(g));
    let n = attributes(
        Notification::new(subject, body.trim_end().to_owned(), severity),
        "cloudwatch",
        group,
        info,
    )
    .attribute("alarm", a.name.clone())
    // An alarm's ALARM and its OK are one story: one chat thread.
    .thread(format!("alarm/{}", a.name))
    .event_type(a.state.clone())
    .next_step(format!(
        "aws cloudwatch describe-alarm-history --alarm-name {} --history-item-type StateUpdate --max-items 5",
        a.name
    ));
    tagged(n, &a.tags)
}

/// The severity an alarm's `bridgekeeper:severity` tag asks for.
pub fn tagged_severity(tags: &BTreeMap<String, String>) -> Option<Severity> {
    match tags.get(SEVERITY_TAG).map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "info" => Some(Severity::Info),
        Some(v) if v == "warning" => Some(Severity::Warning),
        Some(v) if v == "error" => Some(Severity::Error),
        _ => None,
    }
}

/// The alarm's first tags as `tag.<key>` message attributes (its severity tag is read, not
/// passed on).
pub fn tagged(mut n: Notification, tags: &BTreeMap<String, String>) -> Notification {
    for (key, value) in tags
        .iter()
        .filter(|(k, _)| k.as_str() != SEVERITY_TAG)
        .take(MAX_TAG_ATTRIBUTES)
    {
        if let Some(name) = tag_attribute(key) {
            n = n.attribute(name, value.clone());
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_is_read_from_the_state_reason() {
        assert_eq!(
            comparison("[93.5] was greater than the threshold (80.0)"),
            Some(">")
        );
        assert_eq!(
            comparison("was not greater than or equal to the threshold (5.0)"),
            Some(">=")
        );
        assert_eq!(comparison("was less than the threshold (1.0)"), Some("<"));
        assert_eq!(
            comparison("Insufficient Data: 5 datapoints were unknown."),
            None
        );
    }

    use bridgekeeper::notify::Severity;
    use bridgekeeper::notify::testing::Recorder;

    use crate::delivery::Notifiers;
    use crate::fakes::*;

    use crate::pipeline::handle_batch;

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
    async fn long_multibyte_names_stay_valid_and_within_the_subject_limit() {
        let long =
            sample!("alarm-state-change.json").replace("api-cpu-high", &"überlast-ñ-🚀".repeat(12));
        let n = one(&long).await;
        assert_eq!(n.subject.chars().count(), 99);
        assert!(n.subject.ends_with('…'));
    }
}
