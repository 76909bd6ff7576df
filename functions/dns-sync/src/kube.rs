//! The Kubernetes adapter: lists Ingresses and LoadBalancer Services.

use std::future::Future;

use bridgekeeper::accounts::Accounts;
use bridgekeeper::cluster::{ClusterError, Clusters, list_as};
use bridgekeeper::cluster_target::ClusterTarget;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde::de::DeserializeOwned;

/// What dns-sync reads from a cluster; the handler is generic over it.
pub trait Sources: Send + Sync {
    fn ingresses(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Ingress>, ClusterError>> + Send;
    fn services(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Service>, ClusterError>> + Send;
}

pub struct KubeSources {
    clusters: Clusters,
}

impl KubeSources {
    pub fn new(targets: &[(String, ClusterTarget)], accounts: &Accounts) -> Self {
        KubeSources {
            clusters: Clusters::new(targets, accounts),
        }
    }

    async fn list<K>(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        kind: &str,
        keep: fn(K) -> Option<K>,
    ) -> Result<Vec<K>, ClusterError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let what = format!("list {kind} in {}", namespace.unwrap_or("all namespaces"));
        let path = K::url_path(&K::DynamicType::default(), namespace);
        self.clusters
            .call(cluster, &what, |client| {
                let path = path.clone();
                // A page of whole objects at a time; only what the planner reads is kept.
                async move { list_as(&client, &path, 500, keep).await }
            })
            .await
    }
}

impl Sources for KubeSources {
    async fn ingresses(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Ingress>, ClusterError> {
        self.list(
            cluster,
            namespace,
            "ingresses",
            crate::sources::slim_ingress,
        )
        .await
    }

    async fn services(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Service>, ClusterError> {
        self.list(cluster, namespace, "services", crate::sources::slim_service)
            .await
    }
}
