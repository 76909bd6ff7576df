//! The Kubernetes adapter: lists Ingresses, LoadBalancer Services, Gateway API routes and
//! Gateways.

use std::future::Future;

use bridgekeeper::accounts::Accounts;
use bridgekeeper::cluster::{ClusterError, Clusters, list_as};
use bridgekeeper::cluster_target::ClusterTarget;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde::de::DeserializeOwned;

use crate::gateway::{GATEWAY_GROUP, Gateway, LISTENER_HOLDERS, ROUTE_KINDS, Route};

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
    /// Every Gateway API route kind the API server serves; none when it serves none.
    fn routes(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Route>, ClusterError>> + Send;
    /// Gateways and ListenerSets (standard and experimental), each marked with its kind.
    fn gateways(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Gateway>, ClusterError>> + Send;
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

impl KubeSources {
    /// The objects of `plural` at the first of `versions` the API server serves: an object is
    /// the same at every version, and a cluster without the Gateway API CRDs serves none (404,
    /// not an error).
    async fn list_served<T>(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        group: &str,
        plural: &str,
        versions: &[&str],
    ) -> Result<Vec<T>, ClusterError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        for version in versions {
            let what = format!(
                "list {plural}.{version} in {}",
                namespace.unwrap_or("all namespaces")
            );
            let path = crate::gateway::path(group, plural, version, namespace);
            let listed = self
                .clusters
                .call(cluster, &what, |client| {
                    let path = path.clone();
                    async move { list_as(&client, &path, 500, Some).await }
                })
                .await;
            match listed {
                Err(e) if e.status() == Some(404) => continue,
                other => return other,
            }
        }
        Ok(vec![])
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

    async fn routes(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Route>, ClusterError> {
        let mut all = Vec::new();
        for k in ROUTE_KINDS {
            let listed: Vec<Route> = self
                .list_served(cluster, namespace, GATEWAY_GROUP, k.plural, k.versions)
                .await?;
            all.extend(listed.into_iter().map(|r| Route { kind: k.kind, ..r }));
        }
        Ok(all)
    }

    async fn gateways(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Gateway>, ClusterError> {
        let mut all = Vec::new();
        for (kind, group, plural, versions) in LISTENER_HOLDERS {
            let listed: Vec<Gateway> = self
                .list_served(cluster, namespace, group, plural, versions)
                .await?;
            all.extend(listed.into_iter().map(|g| Gateway { kind, ..g }));
        }
        Ok(all)
    }
}
