//! EC2 events that take nodes away (Spot interruption warnings, rebalance recommendations,
//! instance state changes): which cluster and pool an instance serves, read from its tags, and
//! whether the event is about a node at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use bridgekeeper::notify::{Notification, Severity};
use chrono::{DateTime, Utc};

use crate::alert::plural;

/// Where an instance belongs, from its tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    /// `karpenter.sh/nodepool`: Karpenter launched it; it has no Auto Scaling group.
    Karpenter(String),
    /// `eks:nodegroup-name`: an EKS managed node group.
    NodeGroup(String),
    /// `aws:autoscaling:groupName` only: a self-managed group.
    AutoScaling(String),
    None,
}

impl Pool {
    pub fn describe(&self) -> String {
        match self {
            Pool::Karpenter(p) => format!("Karpenter NodePool {p}"),
            Pool::NodeGroup(g) => format!("node group {g}"),
            Pool::AutoScaling(g) => format!("Auto Scaling group {g}"),
            Pool::None => "no node pool".to_owned(),
        }
    }
}

/// What DescribeInstances says about one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub cluster: Option<String>,
    pub pool: Option<Pool>,
    pub auto_scaling_group: Option<String>,
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    /// `spot` or `capacity-block`; EC2 leaves it out for On-Demand.
    pub lifecycle: Option<String>,
    /// Its private DNS name: the name of its Kubernetes Node (the kubelet registers under the
    /// hostname EC2 gives it), which Karpenter's events name.
    pub node_name: Option<String>,
}

impl NodeInfo {
    /// Reads the tags EKS, Karpenter and Auto Scaling put on the instances they launch.
    pub fn from_tags(
        tags: &[(&str, &str)],
        instance_type: Option<String>,
        zone: Option<String>,
        lifecycle: Option<String>,
    ) -> Self {
        let tag = |key: &str| {
            tags.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
                .filter(|v| !v.is_empty())
        };
        // Karpenter tags `eks:eks-cluster-name`, managed node groups `eks:cluster-name`; both (and
        // self-managed nodes) carry `kubernetes.io/cluster/<name>` = owned|shared.
        let cluster = tag("eks:eks-cluster-name")
            .or_else(|| tag("eks:cluster-name"))
            .or_else(|| tag("aws:eks:cluster-name"))
            .or_else(|| {
                tags.iter().find_map(|(k, _)| {
                    k.strip_prefix("kubernetes.io/cluster/")
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                })
            });
        let auto_scaling_group = tag("aws:autoscaling:groupName");
        let pool = tag("karpenter.sh/nodepool")
            .map(Pool::Karpenter)
            .or_else(|| tag("eks:nodegroup-name").map(Pool::NodeGroup))
            .or_else(|| auto_scaling_group.clone().map(Pool::AutoScaling));
        NodeInfo {
            cluster,
            pool,
            auto_scaling_group,
            instance_type,
            zone,
            lifecycle,
            node_name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// `instance-action`: terminate, stop or hibernate, two minutes from the event.
    SpotInterruption {
        action: String,
    },
    Rebalance,
    /// `stopping`, `stopped`, `shutting-down` or `terminated`.
    State(String),
    /// An AWS Health scheduled change: `AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED`, from `start`.
    Scheduled {
        code: String,
        start: Option<DateTime<Utc>>,
        description: Option<String>,
        /// The Health event's ARN.
        event: Option<String>,
    },
}

/// What a scheduled change does, for people (AWS Health's EC2 event type codes).
fn scheduled_words(code: &str) -> String {
    match code {
        "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
        | "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED" => "retirement".into(),
        "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED" => "reboot for maintenance".into(),
        "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED" => "host reboot for maintenance".into(),
        "AWS_EC2_INSTANCE_STOP_SCHEDULED" => "stop".into(),
        "AWS_EC2_INSTANCE_NETWORK_MAINTENANCE_SCHEDULED" => "network maintenance".into(),
        "AWS_EC2_INSTANCE_POWER_MAINTENANCE_SCHEDULED" => "power maintenance".into(),
        other => other
            .trim_start_matches("AWS_EC2_")
            .trim_end_matches("_SCHEDULED")
            .replace('_', " ")
            .to_lowercase(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub kind: NodeKind,
    pub instance_id: String,
    pub time: Option<DateTime<Utc>>,
    /// Filled in by the handler from DescribeInstances.
    pub node: Option<NodeInfo>,
    /// Why Karpenter removed it, when the cluster's Events told that first (`underutilized`).
    pub karpenter: Option<String>,
}

/// Why an EC2 event is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// EC2 does not know the instance (gone for over an hour, or another account's).
    Unknown,
    /// No EKS cluster tag, or a cluster this stack does not watch.
    NotANode,
    /// Auto Scaling took it away and reports that itself (its terminate event).
    ExplainedByAutoScaling,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Unknown => "instance unknown to EC2",
            Drop::NotANode => "not a node of a watched cluster",
            Drop::ExplainedByAutoScaling => "explained by Auto Scaling",
        }
    }
}

/// Whether an EC2 event about `e.instance_id` is worth a message. `clusters` empty = any cluster
/// its tags name; `auto_scaled` = instances this batch has Auto Scaling activity for.
pub fn keep(e: &NodeEvent, clusters: &[String], auto_scaled: &HashSet<String>) -> Result<(), Drop> {
    let node = e.node.as_ref().ok_or(Drop::Unknown)?;
    let cluster = node.cluster.as_deref().ok_or(Drop::NotANode)?;
    if !clusters.is_empty() && !clusters.iter().any(|c| c == cluster) {
        return Err(Drop::NotANode);
    }
    if let NodeKind::State(state) = &e.kind {
        let auto_scaling_ends_it = node.auto_scaling_group.is_some()
            && matches!(state.as_str(), "shutting-down" | "terminated");
        if auto_scaled.contains(&e.instance_id) || auto_scaling_ends_it {
            return Err(Drop::ExplainedByAutoScaling);
        }
    }
    Ok(())
}

impl NodeEvent {
    /// Events of one kind about nodes of one pool become one message.
    pub fn key(&self) -> (String, Option<String>, Option<Pool>) {
        let kind = match &self.kind {
            NodeKind::SpotInterruption { action } => format!("spot:{action}"),
            NodeKind::Rebalance => "rebalance".to_owned(),
            NodeKind::State(s) => format!("state:{s}"),
            NodeKind::Scheduled { code, start, .. } => format!(
                "scheduled:{code}:{}",
                start.map(|t| t.timestamp()).unwrap_or_default()
            ),
        };
        let node = self.node.as_ref();
        (
            kind,
            node.and_then(|n| n.cluster.clone()),
            node.and_then(|n| n.pool.clone()),
        )
    }
}

/// One message for events of one kind about the nodes of one pool.
pub fn render(events: &[&NodeEvent], env: &str) -> Notification {
    let first = events[0];
    let node = first.node.clone().unwrap_or_default();
    let cluster = node.cluster.as_deref().unwrap_or("?");
    let pool = node.pool.clone().unwrap_or(Pool::None);
    let nodes = plural(events.len(), "node", "nodes");
    let place = format!("{} in {cluster}", pool.describe());
    let when = first.time;
    // Karpenter's reasons, from the cluster's Events, for the nodes that have one.
    let mut whys: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        if let Some(why) = e.karpenter.as_deref() {
            *whys.entry(why).or_default() += 1;
        }
    }
    let joined = |whys: &BTreeMap<&str, usize>| {
        if whys.len() == 1 {
            whys.keys().next().copied().unwrap_or_default().to_owned()
        } else {
            whys.iter()
                .map(|(w, n)| format!("{n} {w}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let (subject, lead, severity) = match &first.kind {
        NodeKind::SpotInterruption { action } => (
            format!("[{env}] Spot interruption: {nodes} of {place}"),
            format!(
                "EC2 reclaims {nodes} of {place} (cluster {cluster}): it will {action} {} in about two minutes{}.",
                if events.len() == 1 { "it" } else { "them" },
                when.map(|t| format!(
                    ", at {}",
                    (t + chrono::Duration::minutes(2)).format("%H:%M:%S UTC")
                ))
                .unwrap_or_default()
            ),
            Severity::Warning,
        ),
        NodeKind::Rebalance => (
            format!("[{env}] Rebalance recommendation: {nodes} of {place}"),
            format!(
                "EC2 says {nodes} of {place} (cluster {cluster}) {} at elevated risk of Spot interruption.",
                if events.len() == 1 { "is" } else { "are" }
            ),
            Severity::Info,
        ),
        NodeKind::Scheduled { code, start, .. } => {
            let what = scheduled_words(code);
            let at = start
                .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            let short = match &pool {
                Pool::Karpenter(n) | Pool::NodeGroup(n) | Pool::AutoScaling(n) => n.as_str(),
                Pool::None => "no pool",
            };
            let on = start
                .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            (
                format!("[{env}] Scheduled {what}{on}: {nodes} of {cluster}/{short}"),
                format!(
                    "AWS Health scheduled a {what} for {nodes} of {place} (cluster {cluster}){at}. \
                     Replace {} before then: drain and terminate, and the pool launches new ones.",
                    if events.len() == 1 { "it" } else { "them" }
                ),
                Severity::Warning,
            )
        }
        NodeKind::State(state) if !whys.is_empty() && whys.len() == events.len() => (
            format!("[{env}] {nodes} {state}: {place} ({})", joined(&whys)),
            format!(
                "{nodes} of {place} (cluster {cluster}) {} {state}: Karpenter removed {} ({}).",
                if events.len() == 1 { "is" } else { "are" },
                if events.len() == 1 { "it" } else { "them" },
                joined(&whys)
            ),
            Severity::Info,
        ),
        NodeKind::State(state) => (
            format!("[{env}] {nodes} {state}: {place}"),
            format!(
                "{nodes} of {place} (cluster {cluster}) {} {state}, and no Auto Scaling activity explains it.",
                if events.len() == 1 { "is" } else { "are" }
            ),
            if matches!(state.as_str(), "stopping" | "stopped") {
                Severity::Warning
            } else {
                Severity::Info
            },
        ),
    };
    let mut body = format!("{lead}\n\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(body, "{label:<11}{value}");
    };
    line("Cluster:", cluster);
    line(
        match pool {
            Pool::Karpenter(_) => "NodePool:",
            Pool::NodeGroup(_) => "Node group:",
            _ => "Group:",
        },
        &pool.describe(),
    );
    let infos: HashMap<&str, &NodeInfo> = events
        .iter()
        .filter_map(|e| Some((e.instance_id.as_str(), e.node.as_ref()?)))
        .collect();
    for (i, e) in events.iter().enumerate() {
        let info = infos.get(e.instance_id.as_str());
        let detail = [
            Some(e.instance_id.as_str()),
            info.and_then(|n| n.instance_type.as_deref()),
            info.and_then(|n| n.lifecycle.as_deref()),
            info.and_then(|n| n.zone.as_deref()),
        ]
        .into_iter()
        .flatten()
        .chain(e.karpenter.as_deref().map(|_| "Karpenter:"))
        .chain(e.karpenter.as_deref())
        .collect::<Vec<_>>()
        .join("  ");
        line(if i == 0 { "Instances:" } else { "" }, &detail);
    }
    if let NodeKind::Scheduled {
        description: Some(d),
        ..
    } = &first.kind
    {
        let d = bridgekeeper::text::prefix(d.trim(), 600);
        line("AWS says:", &d.replace('\n', " "));
    }
    if let Some(t) = when {
        line("Time:", &t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    }
    let mut n = Notification::new(subject, body.trim_end().to_owned(), severity)
        .attribute("source", "ec2")
        .attribute("cluster", cluster)
        .event_type(match &first.kind {
            NodeKind::SpotInterruption { .. } => "SpotInterruption",
            NodeKind::Rebalance => "RebalanceRecommendation",
            NodeKind::State(_) => "InstanceStateChange",
            NodeKind::Scheduled { .. } => "ScheduledChange",
        })
        .keyword(cluster.to_owned());
    for e in events {
        n = n.related(e.instance_id.clone());
    }
    if !whys.is_empty() {
        // Karpenter's decision (the cluster's Events) and the instance's end are one story.
        n = n.thread(format!("karpenter/{cluster}"));
    }
    if let NodeKind::Scheduled {
        event: Some(arn), ..
    } = &first.kind
    {
        n = n.thread(format!("health/{arn}")).next_step(format!(
            "aws health describe-event-details --region us-east-1 --event-arns {arn}"
        ));
    }
    match pool {
        Pool::Karpenter(p) => n.attribute("nodepool", p),
        Pool::NodeGroup(g) | Pool::AutoScaling(g) => n.attribute("group", g),
        Pool::None => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: NodeKind, node: Option<NodeInfo>) -> NodeEvent {
        NodeEvent {
            kind,
            instance_id: "i-0123456789abcdef0".into(),
            time: None,
            node,
            karpenter: None,
        }
    }

    #[test]
    fn tags_name_the_cluster_and_pool_karpenter_first() {
        let karpenter = NodeInfo::from_tags(
            &[
                ("karpenter.sh/nodepool", "default"),
                ("eks:eks-cluster-name", "prod-eks"),
                ("kubernetes.io/cluster/prod-eks", "owned"),
            ],
            None,
            None,
            Some("spot".into()),
        );
        assert_eq!(karpenter.cluster.as_deref(), Some("prod-eks"));
        assert_eq!(karpenter.pool, Some(Pool::Karpenter("default".into())));
        let managed = NodeInfo::from_tags(
            &[
                ("eks:cluster-name", "dev-eks"),
                ("eks:nodegroup-name", "ng-1"),
                ("aws:autoscaling:groupName", "eks-ng-1-abc"),
            ],
            None,
            None,
            None,
        );
        assert_eq!(managed.pool, Some(Pool::NodeGroup("ng-1".into())));
        assert_eq!(managed.auto_scaling_group.as_deref(), Some("eks-ng-1-abc"));
        let self_managed =
            NodeInfo::from_tags(&[("kubernetes.io/cluster/ops", "shared")], None, None, None);
        assert_eq!(self_managed.cluster.as_deref(), Some("ops"));
        let plain = NodeInfo::from_tags(&[("Name", "bastion")], None, None, None);
        assert_eq!((plain.cluster, plain.pool), (None, None));
    }

    #[test]
    fn only_nodes_of_watched_clusters_are_kept() {
        let node = |cluster: Option<&str>| NodeInfo {
            cluster: cluster.map(str::to_owned),
            ..NodeInfo::default()
        };
        let none = HashSet::new();
        let spot = || NodeKind::SpotInterruption {
            action: "terminate".into(),
        };
        assert_eq!(keep(&event(spot(), None), &[], &none), Err(Drop::Unknown));
        assert_eq!(
            keep(&event(spot(), Some(node(None))), &[], &none),
            Err(Drop::NotANode)
        );
        assert_eq!(
            keep(&event(spot(), Some(node(Some("dev")))), &[], &none),
            Ok(())
        );
        let watched = ["prod".to_owned()];
        assert_eq!(
            keep(&event(spot(), Some(node(Some("dev")))), &watched, &none),
            Err(Drop::NotANode)
        );
        assert_eq!(
            keep(&event(spot(), Some(node(Some("prod")))), &watched, &none),
            Ok(())
        );
    }

    #[test]
    fn auto_scaling_explains_its_own_terminations_but_not_a_stop() {
        let member = NodeInfo {
            cluster: Some("prod".into()),
            auto_scaling_group: Some("eks-ng-1".into()),
            ..NodeInfo::default()
        };
        let none = HashSet::new();
        let state = |s: &str| NodeKind::State(s.into());
        assert_eq!(
            keep(
                &event(state("terminated"), Some(member.clone())),
                &[],
                &none
            ),
            Err(Drop::ExplainedByAutoScaling)
        );
        assert_eq!(
            keep(&event(state("stopped"), Some(member.clone())), &[], &none),
            Ok(())
        );
        let in_batch = HashSet::from(["i-0123456789abcdef0".to_owned()]);
        assert_eq!(
            keep(&event(state("stopping"), Some(member)), &[], &in_batch),
            Err(Drop::ExplainedByAutoScaling)
        );
        let karpenter = NodeInfo {
            cluster: Some("prod".into()),
            pool: Some(Pool::Karpenter("default".into())),
            ..NodeInfo::default()
        };
        assert_eq!(
            keep(&event(state("terminated"), Some(karpenter)), &[], &none),
            Ok(())
        );
    }

    use bridgekeeper::notify::Severity;

    use crate::fakes::*;
    use crate::nodes::{NodeInfo, Pool};

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
}
