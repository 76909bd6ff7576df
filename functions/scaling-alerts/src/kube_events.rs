//! Pure: the cluster's own story, from its Kubernetes Events — why it scaled (HPA rescales), why
//! it could not (HPAs that cannot read their metrics), why pods wait (FailedScheduling, per
//! workload), and why Karpenter removed a node — as few, short messages per cluster and run.

use std::collections::BTreeMap;
use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

use crate::alert::plural;

/// One Kubernetes Event, as far as a message needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeEvent {
    pub namespace: String,
    /// The object it is about: `HorizontalPodAutoscaler`, `Pod`, `Node`.
    pub kind: String,
    pub name: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    /// When it last happened (`lastTimestamp`, else `eventTime`).
    pub last: DateTime<Utc>,
}

/// The HPA reasons that say it cannot compute a scale (kube-controller-manager's
/// `podautoscaler` events).
const METRIC_FAILURES: [&str; 5] = [
    "FailedGetResourceMetric",
    "FailedComputeMetricsReplicas",
    "FailedGetPodsMetric",
    "FailedGetObjectMetric",
    "FailedGetExternalMetric",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `New size: 5; reason: cpu resource utilization (percentage of request) above target`.
    Rescale {
        hpa: String,
        size: Option<u32>,
        why: String,
        at: DateTime<Utc>,
    },
    Unmeasured {
        hpa: String,
        reason: String,
        message: String,
    },
    /// Pods of one workload that the scheduler could not place, and why.
    Pending {
        workload: String,
        pods: Vec<String>,
        why: String,
    },
    /// Karpenter took a node away: `Underutilized`, `Drifted`, `Empty`, `Expired`, ...
    Disrupted {
        node: String,
        why: String,
        /// `i-0abc… at 03:07 UTC`: EC2 already told its instance ended (filled in by the run).
        ended: Option<String>,
    },
}

/// What happened after `since`, read from `events` (any order). Unknown reasons are ignored.
pub fn findings(events: &[KubeEvent], since: DateTime<Utc>) -> Vec<Finding> {
    let mut newer: Vec<&KubeEvent> = events.iter().filter(|e| e.last > since).collect();
    newer.sort_by_key(|e| e.last);
    let mut out = Vec::new();
    let mut pending: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    for e in newer {
        let object = format!("{}/{}", e.namespace, e.name);
        match (e.kind.as_str(), e.reason.as_str()) {
            ("HorizontalPodAutoscaler", "SuccessfulRescale") => {
                let (size, why) = rescale(&e.message);
                out.push(Finding::Rescale {
                    hpa: object,
                    size,
                    why,
                    at: e.last,
                });
            }
            ("HorizontalPodAutoscaler", r) if METRIC_FAILURES.contains(&r) => {
                out.retain(|f| !matches!(f, Finding::Unmeasured { hpa, .. } if *hpa == object));
                out.push(Finding::Unmeasured {
                    hpa: object,
                    reason: r.to_owned(),
                    message: e.message.clone(),
                });
            }
            ("Pod", "FailedScheduling") => {
                let workload = format!("{}/{}", e.namespace, workload_of(&e.name));
                let entry = pending.entry(workload).or_default();
                if !entry.0.contains(&e.name) {
                    entry.0.push(e.name.clone());
                }
                entry.1 = unschedulable(&e.message);
            }
            // Karpenter records the decision on the Node and on its NodeClaim alike
            // (`disruption/events`): the Node's is read, named as EC2's instance is.
            ("Node", "DisruptionTerminating") => out.push(Finding::Disrupted {
                node: e.name.clone(),
                why: disruption(&e.message),
                ended: None,
            }),
            _ => {}
        }
    }
    out.extend(
        pending
            .into_iter()
            .map(|(workload, (pods, why))| Finding::Pending {
                workload,
                pods,
                why,
            }),
    );
    out
}

/// The latest time among `events`: where the next run starts.
pub fn watermark(events: &[KubeEvent]) -> Option<DateTime<Utc>> {
    events.iter().map(|e| e.last).max()
}

fn rescale(message: &str) -> (Option<u32>, String) {
    let size = message
        .split("New size: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.trim().parse().ok());
    let why = message
        .split("reason: ")
        .nth(1)
        .unwrap_or(message)
        .trim()
        .to_owned();
    (size, why)
}

/// `api-7d9f8b6c5d-x2x9z` (a Deployment's pod) → `api`; `db-2` (a StatefulSet's) → `db`.
fn workload_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    let alnum = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    match parts.as_slice() {
        [rest @ .., hash, suffix]
            if !rest.is_empty()
                && alnum(hash)
                && hash.len() >= 8
                && alnum(suffix)
                && suffix.len() == 5 =>
        {
            rest.join("-")
        }
        [rest @ .., ordinal] if !rest.is_empty() && ordinal.chars().all(|c| c.is_ascii_digit()) => {
            rest.join("-")
        }
        _ => pod.to_owned(),
    }
}

/// `0/12 nodes are available: 12 Insufficient cpu, 3 node(s) had untolerated taint ...` → the
/// scheduler's reasons, without the counts.
fn unschedulable(message: &str) -> String {
    let reasons = message
        .split("are available: ")
        .nth(1)
        .unwrap_or(message)
        .split(". ")
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    reasons
        .split(", ")
        .map(|r| {
            r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Disrupting Node: Underutilized/Delete` → `underutilized`.
fn disruption(message: &str) -> String {
    message
        .rsplit(": ")
        .next()
        .unwrap_or(message)
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// One rescale of an HPA: its new size, why, and when.
type Change<'a> = (Option<u32>, &'a str, DateTime<Utc>);

/// One message per kind of finding for `cluster`.
pub fn render(cluster: &str, found: &[Finding], env: &str) -> Vec<Notification> {
    let mut out = Vec::new();
    let rescales: Vec<&Finding> = found
        .iter()
        .filter(|f| matches!(f, Finding::Rescale { .. }))
        .collect();
    if !rescales.is_empty() {
        let mut per_hpa: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
        for f in &rescales {
            if let Finding::Rescale { hpa, size, why, at } = f {
                per_hpa.entry(hpa).or_default().push((*size, why, *at));
            }
        }
        let subject = match per_hpa.iter().next() {
            Some((hpa, changes)) if per_hpa.len() == 1 => {
                let (size, why, _) = changes[changes.len() - 1];
                format!(
                    "[{env}] HPA {hpa} scaled to {} in {cluster}: {}",
                    size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                    short(why)
                )
            }
            _ => format!(
                "[{env}] {} rescaled in {cluster}",
                plural(per_hpa.len(), "HPA", "HPAs")
            ),
        };
        let mut body = String::new();
        for (hpa, changes) in &per_hpa {
            let sizes: Vec<String> = changes
                .iter()
                .map(|(s, _, at)| {
                    format!(
                        "{} at {}",
                        s.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                        at.format("%H:%M:%S")
                    )
                })
                .collect();
            let _ = writeln!(body, "{hpa}: {} (UTC)", sizes.join(", "));
            let _ = writeln!(body, "  why: {}", changes[changes.len() - 1].1);
        }
        out.push(
            Notification::new(subject, body.trim_end().to_owned(), Severity::Info)
                .attribute("source", "kubernetes")
                .attribute("cluster", cluster)
                .event_type("HorizontalPodAutoscaler")
                .keyword(cluster.to_owned())
                .thread(format!("hpa/{cluster}"))
                .next_step(format!("kubectl --context {cluster} get hpa -A")),
        );
    }
    let unmeasured: Vec<(&String, &String, &String)> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Unmeasured {
                hpa,
                reason,
                message,
            } => Some((hpa, reason, message)),
            _ => None,
        })
        .collect();
    if let Some((first, _, _)) = unmeasured.first() {
        let subject = if unmeasured.len() == 1 {
            format!("[{env}] HPA {first} cannot read its metrics in {cluster}")
        } else {
            format!(
                "[{env}] {} cannot read their metrics in {cluster}",
                plural(unmeasured.len(), "HPA", "HPAs")
            )
        };
        let mut body = String::from(
            "These HPAs cannot compute a scale, so they hold their replicas where they are:\n\n",
        );
        for (hpa, reason, message) in &unmeasured {
            let _ = writeln!(body, "{hpa}: {reason}: {message}");
        }
        out.push(
            Notification::new(subject, body.trim_end().to_owned(), Severity::Warning)
                .attribute("source", "kubernetes")
                .attribute("cluster", cluster)
                .event_type("HorizontalPodAutoscaler")
                .next_step(format!(
                    "kubectl --context {cluster} -n {} describe hpa {}",
                    first.split('/').next().unwrap_or_default(),
                    first.split('/').nth(1).unwrap_or_default()
                )),
        );
    }
    let pending: Vec<(&String, &Vec<String>, &String)> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Pending {
                workload,
                pods,
                why,
            } => Some((workload, pods, why)),
            _ => None,
        })
        .collect();
    if let Some((workload, pods, why)) = pending.first() {
        let total: usize = pending.iter().map(|(_, p, _)| p.len()).sum();
        let subject = if pending.len() == 1 {
            format!(
                "[{env}] {} of {workload} pending in {cluster}: {}",
                plural(pods.len(), "pod", "pods"),
                short(why)
            )
        } else {
            format!(
                "[{env}] {} of {} workloads pending in {cluster}",
                plural(total, "pod", "pods"),
                pending.len()
            )
        };
        let mut body = String::from("The scheduler could not place these pods:\n\n");
        for (workload, pods, why) in &pending {
            let _ = writeln!(
                body,
                "{workload}: {} — {why}",
                plural(pods.len(), "pod", "pods")
            );
        }
        out.push(
            Notification::new(subject, body.trim_end().to_owned(), Severity::Warning)
                .attribute("source", "kubernetes")
                .attribute("cluster", cluster)
                .event_type("FailedScheduling")
                .next_step(format!(
                    "kubectl --context {cluster} get pods -A --field-selector status.phase=Pending"
                )),
        );
    }
    let disrupted: Vec<(&String, &String, &Option<String>)> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Disrupted { node, why, ended } => Some((node, why, ended)),
            _ => None,
        })
        .collect();
    if !disrupted.is_empty() {
        let mut whys: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, why, _) in &disrupted {
            *whys.entry(why.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = whys.iter().map(|(w, n)| format!("{n} {w}")).collect();
        let subject = format!(
            "[{env}] Karpenter is removing {} in {cluster}: {}",
            plural(disrupted.len(), "node", "nodes"),
            reasons.join(", ")
        );
        let mut body = String::from("Karpenter's disruption decisions:\n\n");
        for (node, why, ended) in &disrupted {
            match ended {
                Some(gone) => {
                    let _ = writeln!(body, "{node}: {why} (EC2 terminated {gone})");
                }
                None => {
                    let _ = writeln!(body, "{node}: {why}");
                }
            }
        }
        let mut n = Notification::new(subject, body.trim_end().to_owned(), Severity::Info)
            .attribute("source", "kubernetes")
            .attribute("cluster", cluster)
            .event_type("KarpenterDisruption")
            // The instances' EC2 terminations join this thread (nodes::render).
            .thread(format!("karpenter/{cluster}"))
            .next_step(format!("kubectl --context {cluster} get nodeclaims"));
        for (node, _, _) in disrupted.iter().take(5) {
            n = n.related((*node).clone());
        }
        out.push(n);
    }
    out
}

/// The first reason of a list without its asides, for a subject line: `cpu resource utilization
/// (percentage of request) above target` → `cpu resource utilization above target`.
fn short(why: &str) -> String {
    let first = why.split(", ").next().unwrap_or(why);
    let mut out = String::new();
    let mut depth = 0;
    for c in first.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = (depth - 1).max(0),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    bridgekeeper::text::prefix(&out, 60).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, name: &str, reason: &str, message: &str, at: i64) -> KubeEvent {
        KubeEvent {
            namespace: "shop".into(),
            kind: kind.into(),
            name: name.into(),
            reason: reason.into(),
            message: message.into(),
            count: 1,
            last: DateTime::from_timestamp(at, 0).unwrap(),
        }
    }

    #[test]
    fn pods_of_one_workload_are_counted_once_and_named_by_their_workload() {
        let events = [
            event(
                "Pod",
                "api-7d9f8b6c5d-x2x9z",
                "FailedScheduling",
                "0/12 nodes are available: 12 Insufficient cpu. preemption: 0/12 nodes are available.",
                10,
            ),
            event(
                "Pod",
                "api-7d9f8b6c5d-k8s2p",
                "FailedScheduling",
                "0/12 nodes are available: 12 Insufficient cpu. preemption: 0/12 nodes are available.",
                11,
            ),
            event(
                "Pod",
                "api-7d9f8b6c5d-x2x9z",
                "FailedScheduling",
                "0/12 nodes are available: 12 Insufficient cpu.",
                12,
            ),
            event(
                "Pod",
                "db-2",
                "FailedScheduling",
                "0/3 nodes are available: 3 node(s) had volume node affinity conflict.",
                13,
            ),
        ];
        let found = findings(&events, DateTime::from_timestamp(0, 0).unwrap());
        assert_eq!(
            found,
            [
                Finding::Pending {
                    workload: "shop/api".into(),
                    pods: vec!["api-7d9f8b6c5d-x2x9z".into(), "api-7d9f8b6c5d-k8s2p".into()],
                    why: "insufficient cpu".into()
                },
                Finding::Pending {
                    workload: "shop/db".into(),
                    pods: vec!["db-2".into()],
                    why: "node(s) had volume node affinity conflict".into()
                }
            ]
        );
        let n = render("prod", &found, "prod");
        assert_eq!(n[0].subject, "[prod] 3 pods of 2 workloads pending in prod");
    }

    #[test]
    fn rescales_metrics_failures_and_disruptions_read_as_people_say_them() {
        let events = [
            event(
                "HorizontalPodAutoscaler",
                "api",
                "SuccessfulRescale",
                "New size: 5; reason: cpu resource utilization (percentage of request) above target",
                100,
            ),
            event(
                "HorizontalPodAutoscaler",
                "web",
                "FailedGetResourceMetric",
                "failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API",
                101,
            ),
            event(
                "Node",
                "ip-10-0-1-23.eu-west-1.compute.internal",
                "DisruptionTerminating",
                "Disrupting Node: Underutilized/Delete",
                102,
            ),
            event(
                "HorizontalPodAutoscaler",
                "api",
                "SuccessfulRescale",
                "New size: 3; reason: All metrics below target",
                50,
            ),
        ];
        let found = findings(&events, DateTime::from_timestamp(60, 0).unwrap());
        assert_eq!(found.len(), 3, "{found:?}");
        let n = render("prod", &found, "prod");
        let subjects: Vec<&str> = n.iter().map(|n| n.subject.as_str()).collect();
        assert_eq!(
            subjects,
            [
                "[prod] HPA shop/api scaled to 5 in prod: cpu resource utilization above target",
                "[prod] HPA shop/web cannot read its metrics in prod",
                "[prod] Karpenter is removing 1 node in prod: 1 underutilized",
            ]
        );
        assert_eq!(n[1].severity, Severity::Warning);
        assert_eq!(watermark(&events), DateTime::from_timestamp(102, 0));
    }

    #[test]
    fn workloads_are_named_from_their_pods() {
        assert_eq!(workload_of("api-7d9f8b6c5d-x2x9z"), "api");
        assert_eq!(workload_of("payments-api-5c8f9d7b6-abcde"), "payments-api");
        assert_eq!(workload_of("db-12"), "db");
        assert_eq!(workload_of("standalone"), "standalone");
    }
}
