//! Karpenter's removal of a node, joined to the EC2 termination of its instance. The two arrive
//! apart — the decision in the cluster's Events (read every 5 minutes), the termination as an EC2
//! event (in the next batch) — and either may be told first. Each side keeps what it told in the
//! store under the node's name, and the side told second names the first: the termination says
//! why Karpenter removed the node; the decision says the instance is already gone.

use std::collections::{BTreeSet, HashMap};

use bridgekeeper::idempotency::{Remember, recall_all};
use tracing::warn;

use crate::domain::{Alert, Fact};
use crate::nodes::{NodeEvent, NodeKind, Pool};

/// Store lookups at once.
const AT_ONCE: usize = 16;

/// Why Karpenter removed `node` of `cluster` (the cluster run writes it).
pub fn decided(cluster: &str, node: &str) -> String {
    format!("karpenter#{cluster}#{node}")
}

/// Which instance of `node` ended, and when (the batch writes it).
pub fn ended(cluster: &str, node: &str) -> String {
    format!("terminated#{cluster}#{node}")
}

/// A Karpenter node's EC2 termination: its cluster and Kubernetes node name.
fn terminated(n: &NodeEvent) -> Option<(&str, &str)> {
    let NodeKind::State(state) = &n.kind else {
        return None;
    };
    let info = n.node.as_ref()?;
    let karpenters = matches!(info.pool, Some(Pool::Karpenter(_)));
    let ends = matches!(state.as_str(), "shutting-down" | "terminated");
    (karpenters && ends).then_some((info.cluster.as_deref()?, info.node_name.as_deref()?))
}

/// Each Karpenter node termination in the batch with the reason the cluster's Events gave, when
/// they were read first. A store that cannot answer leaves the reason out.
pub async fn reasons<S: Remember>(
    mut facts: Vec<(String, Fact)>,
    store: &S,
) -> Vec<(String, Fact)> {
    let wanted: BTreeSet<String> = facts
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Node(n) => terminated(n).map(|(c, node)| decided(c, node)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return facts;
    }
    let known = recall_all(store, wanted, AT_ONCE).await;
    for (_, fact) in &mut facts {
        if let Fact::Node(n) = fact
            && let Some(key) = terminated(n).map(|(c, node)| decided(c, node))
        {
            n.karpenter = known.get(&key).cloned();
        }
    }
    facts
}

/// After an alert is sent: what its Karpenter node terminations say to a later read of the
/// cluster's Events (`<instance> at <time>`).
pub fn marks(alert: &Alert) -> Vec<(String, String)> {
    alert
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Node(n) => {
                let (cluster, node) = terminated(n)?;
                let at = n
                    .time
                    .map(|t| format!(" at {}", t.format("%H:%M UTC")))
                    .unwrap_or_default();
                Some((ended(cluster, node), format!("{}{at}", n.instance_id)))
            }
            _ => None,
        })
        .collect()
}

pub async fn remember<S: Remember>(store: &S, marks: Vec<(String, String)>) {
    for (key, value) in marks {
        if let Err(e) = store.remember(&key, &value).await {
            warn!(key = %key, error = %e, "Karpenter join not kept: the other side will not name this one");
        }
    }
}

/// For the cluster run: of `nodes` Karpenter removed, which instances EC2 already told ended
/// (node → `<instance> at <time>`).
pub async fn endings<S: Remember>(
    cluster: &str,
    nodes: &[String],
    store: &S,
) -> HashMap<String, String> {
    let keys = nodes.iter().map(|node| ended(cluster, node));
    let mut seen = recall_all(store, keys, AT_ONCE).await;
    nodes
        .iter()
        .filter_map(|node| Some((node.clone(), seen.remove(&ended(cluster, node))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use bridgekeeper::notify::testing::Recorder;
    use chrono::{DateTime, Utc};

    use crate::cluster_run::run;
    use crate::delivery::Notifiers;
    use crate::fakes::*;
    use crate::kube_events::KubeEvent;
    use crate::pipeline::handle_batch;

    fn decision(at: DateTime<Utc>) -> FakeEvents {
        let kube = FakeEvents::default();
        kube.events.lock().unwrap().push(KubeEvent {
            namespace: String::new(),
            kind: "Node".into(),
            name: KARPENTER_NODE_NAME.into(),
            reason: "DisruptionTerminating".into(),
            message: "Disrupting Node: Underutilized/Delete".into(),
            count: 1,
            last: at,
        });
        kube
    }

    /// A cluster run that reads Karpenter's decision to remove the node a minute ago, sharing
    /// the batch's store; what it told.
    async fn read_decision(p: &TestPorts) -> bridgekeeper::notify::Notification {
        let chat = Notifiers {
            all: Recorder::default(),
            errors: None,
            chat: None,
        };
        let now = Utc::now();
        let r = run(
            &["prod-eks".to_owned()],
            &decision(now - chrono::Duration::minutes(1)),
            &chat,
            &p.store,
            "prod",
            now,
        )
        .await;
        assert_eq!(r.clusters[0].notifications, 1, "{r:?}");
        chat.all.sent().remove(0)
    }

    fn terminated() -> String {
        sample!("instance-stopped.json").replace("\"stopped\"", "\"terminated\"")
    }

    #[tokio::test]
    async fn a_termination_told_after_karpenters_decision_says_why_in_its_thread() {
        let p = ports();
        let told = read_decision(&p).await;
        assert_eq!(told.chat.thread.as_deref(), Some("karpenter/prod-eks"));

        handle_batch(batch(&[&terminated()]), &config(&[]), &p)
            .await
            .unwrap();
        let n = p.notifiers.all.sent().remove(0);
        assert_eq!(
            n.subject,
            "[prod] 1 node terminated: Karpenter NodePool default in prod-eks (underutilized)"
        );
        assert!(
            n.body.starts_with(
                "1 node of Karpenter NodePool default in prod-eks (cluster prod-eks) is terminated: Karpenter removed it (underutilized)."
            ),
            "{}",
            n.body
        );
        assert!(n.body.contains("Karpenter:  underutilized"), "{}", n.body);
        assert_eq!(n.chat.thread.as_deref(), Some("karpenter/prod-eks"));
    }

    #[tokio::test]
    async fn a_decision_read_after_the_termination_names_the_instance_that_ended() {
        let p = ports();
        handle_batch(batch(&[&terminated()]), &config(&[]), &p)
            .await
            .unwrap();
        let first = p.notifiers.all.sent().remove(0);
        assert_eq!(
            first.subject,
            "[prod] 1 node terminated: Karpenter NodePool default in prod-eks"
        );
        let n = read_decision(&p).await;
        assert!(
            n.body.contains(&format!(
                "{KARPENTER_NODE_NAME}: underutilized (EC2 terminated {KARPENTER_NODE} at 03:20 UTC)"
            )),
            "{}",
            n.body
        );
    }

    #[tokio::test]
    async fn a_termination_with_no_decision_read_says_no_reason() {
        let p = ports();
        handle_batch(batch(&[&terminated()]), &config(&[]), &p)
            .await
            .unwrap();
        let n = p.notifiers.all.sent().remove(0);
        assert!(!n.body.contains("Karpenter:"), "{}", n.body);
        assert_eq!(n.chat.thread, None);
    }
}
