//! The Kubernetes adapter: each cluster's Events, through the shared cluster access (EKS tokens
//! minted from the function's role, a 401 re-minted once, `CLUSTERS` targets).

use std::future::Future;

use bridgekeeper::accounts::Accounts;
use bridgekeeper::cluster::{ClusterError, Clusters};
use bridgekeeper::cluster_target::ClusterTarget;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

use crate::kube_events::KubeEvent;

/// Events per page, and pages per cluster and run: 10,000 Events, far more than the hour an API
/// server keeps them (kube-apiserver's `--event-ttl`, 1 h by default) holds in a busy cluster.
const PAGE: u32 = 500;
const MAX_PAGES: usize = 20;

pub trait ClusterEvents: Send + Sync {
    /// The Events `cluster` holds now, every namespace.
    fn events(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<KubeEvent>, ClusterError>> + Send;
}

pub struct KubeClusterEvents {
    clusters: Clusters,
}

impl KubeClusterEvents {
    pub fn new(targets: &[(String, ClusterTarget)], accounts: &Accounts) -> Self {
        KubeClusterEvents {
            clusters: Clusters::new(targets, accounts),
        }
    }
}

/// An Event as far as a message needs it; one without a time or an object is skipped.
fn read(e: Event) -> Option<KubeEvent> {
    let last = e
        .last_timestamp
        .map(|t| t.0)
        .or(e.event_time.map(|t| t.0))
        .or(e.metadata.creation_timestamp.map(|t| t.0))?;
    let last = chrono::DateTime::from_timestamp(last.as_second(), last.subsec_nanosecond() as u32)?;
    Some(KubeEvent {
        namespace: e
            .involved_object
            .namespace
            .or(e.metadata.namespace)
            .unwrap_or_default(),
        kind: e.involved_object.kind?,
        name: e.involved_object.name?,
        reason: e.reason.unwrap_or_default(),
        message: e.message.unwrap_or_default(),
        count: e.count.unwrap_or(1),
        last,
    })
}

impl ClusterEvents for KubeClusterEvents {
    async fn events(&self, cluster: &str) -> Result<Vec<KubeEvent>, ClusterError> {
        self.clusters
            .call(cluster, "list Events", |client| async move {
                let api: Api<Event> = Api::all(client);
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let mut params = ListParams::default().limit(PAGE);
                    if let Some(t) = &token {
                        params = params.continue_token(t);
                    }
                    let page = api.list(&params).await?;
                    out.extend(page.items.into_iter().filter_map(read));
                    token = page.metadata.continue_.filter(|t| !t.is_empty());
                    if token.is_none() {
                        break;
                    }
                }
                Ok(out)
            })
            .await
    }
}
