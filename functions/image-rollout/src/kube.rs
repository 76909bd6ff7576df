//! The Kubernetes adapter: lists, reads and patches the workloads (Deployments, StatefulSets,
//! DaemonSets, CronJobs) in the configured clusters, and lists their pods.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;

use bridgekeeper::accounts::Accounts;
use bridgekeeper::cluster::{ClusterAccess, ClusterError, Clusters, list_as};
use bridgekeeper::cluster_target::ClusterTarget;

use crate::listing::Shadow;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{info, warn};

use crate::workload::{Kind, Workload};

/// The calls image-rollout makes; the handler is generic over it.
pub trait Kube: Send + Sync {
    /// Every workload (all four kinds) in one namespace, or in all when `None`.
    fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Workload>, ClusterError>> + Send;
    fn get(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Workload, ClusterError>> + Send;
    fn patch(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> impl Future<Output = Result<Workload, ClusterError>> + Send;
    /// Pods in a namespace matching a label selector (`app=api`): what a rollout's pods say.
    fn pods(
        &self,
        cluster: &str,
        namespace: &str,
        selector: &str,
    ) -> impl Future<Output = Result<Vec<Pod>, ClusterError>> + Send;
}

/// A namespaced workload kind the adapter reads and patches.
trait Resource:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Debug
    + Into<Workload>
{
}

impl<K> Resource for K where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Into<Workload>
{
}

/// Objects a listing page asks for.
pub const PAGE: u32 = 250;

pub struct KubeClusters {
    clusters: Clusters,
}

impl KubeClusters {
    pub fn new(targets: &[(String, ClusterTarget)], accounts: &Accounts) -> Self {
        KubeClusters {
            clusters: Clusters::new(targets, accounts),
        }
    }

    /// For tests: clusters reached through ready-made accesses.
    pub fn from_accesses(accesses: HashMap<String, ClusterAccess>) -> Self {
        KubeClusters {
            clusters: Clusters::from_accesses(accesses),
        }
    }

    async fn list_kind<K>(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Workload>, ClusterError>
    where
        K: Resource,
    {
        let plural = K::plural(&()).into_owned();
        let what = format!("list {plural} in {}", namespace.unwrap_or("all namespaces"));
        let kind = Kind::of::<K>();
        self.clusters
            .call(cluster, &what, |client| async move {
                // Each page read into the listing's shadow (crate::listing), never into the full
                // types; 250 a page: a page of fat workloads is ~18 MB of JSON (make scale).
                let path = K::url_path(&(), namespace);
                list_as(&client, &path, PAGE, |shadow: Shadow| {
                    if !shadow.runs_ecr_image() {
                        return None;
                    }
                    shadow
                        .into_workload(kind)
                        .map_err(|e| warn!(cluster, error = %e, "a listed {kind} could not be read; skipped"))
                        .ok()
                })
                .await
            })
            .await
    }

    async fn get_kind<K>(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Workload, ClusterError>
    where
        K: Resource,
    {
        let kind = K::kind(&()).into_owned();
        self.clusters
            .call(
                cluster,
                &format!("get {kind} {namespace}/{name}"),
                |client| async move { Api::<K>::namespaced(client, namespace).get(name).await },
            )
            .await
            .map(Into::into)
    }

    async fn patch_kind<K>(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
        patch: &json_patch::Patch,
    ) -> Result<Workload, ClusterError>
    where
        K: Resource,
    {
        let kind = K::kind(&()).into_owned();
        self.clusters
            .call(
                cluster,
                &format!("patch {kind} {namespace}/{name}"),
                |client| {
                    let patch = patch.clone();
                    async move {
                        let api = Api::<K>::namespaced(client, namespace);
                        api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                            .await
                    }
                },
            )
            .await
            .map(Into::into)
    }
}

impl Kube for KubeClusters {
    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Workload>, ClusterError> {
        let mut all = self.list_kind::<Deployment>(cluster, namespace).await?;
        // A cluster whose RBAC predates the other kinds still rolls its Deployments.
        for listed in [
            self.list_kind::<StatefulSet>(cluster, namespace).await,
            self.list_kind::<DaemonSet>(cluster, namespace).await,
            self.list_kind::<CronJob>(cluster, namespace).await,
        ] {
            match listed {
                Ok(w) => all.extend(w),
                Err(e) if e.status() == Some(403) => {
                    warn!(cluster, error = %e, "not allowed to list this kind; bind deploy/rbac/image-rollout.yaml in its namespaces (or image-rollout-cluster.yaml) again");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    async fn get(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Workload, ClusterError> {
        match kind {
            Kind::Deployment => self.get_kind::<Deployment>(cluster, namespace, name).await,
            Kind::StatefulSet => self.get_kind::<StatefulSet>(cluster, namespace, name).await,
            Kind::DaemonSet => self.get_kind::<DaemonSet>(cluster, namespace, name).await,
            Kind::CronJob => self.get_kind::<CronJob>(cluster, namespace, name).await,
        }
    }

    async fn patch(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> Result<Workload, ClusterError> {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| {
                ClusterError::Unusable {
                    cluster: cluster.to_owned(),
                    why: format!("bad patch: {e}"),
                }
            })?;
        let patched = match kind {
            Kind::Deployment => {
                self.patch_kind::<Deployment>(cluster, namespace, name, &patch)
                    .await
            }
            Kind::StatefulSet => {
                self.patch_kind::<StatefulSet>(cluster, namespace, name, &patch)
                    .await
            }
            Kind::DaemonSet => {
                self.patch_kind::<DaemonSet>(cluster, namespace, name, &patch)
                    .await
            }
            Kind::CronJob => {
                self.patch_kind::<CronJob>(cluster, namespace, name, &patch)
                    .await
            }
        }?;
        info!(cluster, kind = %kind, namespace, name, "workload patched");
        Ok(patched)
    }

    async fn pods(
        &self,
        cluster: &str,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<Pod>, ClusterError> {
        self.clusters
            .call(
                cluster,
                &format!("list pods {selector} in {namespace}"),
                |client| async move {
                    let api = Api::<Pod>::namespaced(client, namespace);
                    api.list(&ListParams::default().labels(selector))
                        .await
                        .map(|l| l.items)
                },
            )
            .await
    }
}

/// The exact requests, against a mock API server (the kube-rs controller pattern).
#[cfg(test)]
mod tests {
    use bridgekeeper::cluster::ClusterAccess;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn clusters() -> (KubeClusters, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let access = ClusterAccess::from_client("dev", client);
        (
            KubeClusters::from_accesses(HashMap::from([("dev".to_owned(), access)])),
            handle,
        )
    }

    async fn respond(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
        handle.next_request().await.expect("a request")
    }

    fn json_response(status: u16, body: Value) -> Response<Body> {
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn status(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
    }

    fn deployment(name: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:latest"}]}}}})
    }

    async fn body_json(req: Request<Body>) -> Value {
        let bytes = req.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn patch_sends_a_json_patch_with_its_test_op() {
        let (kube, mut handle) = clusters();
        let ops = vec![
            json!({"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "api"}),
            json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "r/a@sha256:1"}),
        ];
        let server = async {
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.method(), "PATCH");
            assert_eq!(
                req.uri().path(),
                "/apis/apps/v1/namespaces/shop/deployments/api"
            );
            assert_eq!(req.headers()["content-type"], "application/json-patch+json");
            assert_eq!(body_json(req).await, Value::Array(ops.clone()));
            send.send_response(json_response(200, deployment("api")));
        };
        let (patched, ()) = tokio::join!(
            kube.patch("dev", Kind::Deployment, "shop", "api", &ops),
            server
        );
        assert_eq!(patched.unwrap().metadata.name.as_deref(), Some("api"));
    }

    #[tokio::test]
    async fn an_expired_token_is_refreshed_once_then_the_call_is_repeated() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (_, send) = respond(&mut handle).await;
            send.send_response(json_response(401, status(401, "Unauthorized")));
            let (req, send) = respond(&mut handle).await;
            assert_eq!(
                req.uri().path(),
                "/apis/apps/v1/namespaces/shop/deployments/api"
            );
            send.send_response(json_response(200, deployment("api")));
        };
        let (got, ()) = tokio::join!(kube.get("dev", Kind::Deployment, "shop", "api"), server);
        assert!(got.is_ok(), "{got:?}");
    }

    #[tokio::test]
    async fn a_second_401_is_an_error_not_a_loop() {
        let (kube, mut handle) = clusters();
        let server = async {
            for _ in 0..2 {
                let (_, send) = respond(&mut handle).await;
                send.send_response(json_response(401, status(401, "Unauthorized")));
            }
        };
        let (got, ()) = tokio::join!(kube.get("dev", Kind::Deployment, "shop", "api"), server);
        let err = got.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.class(), bridgekeeper::Class::NonRetryable);
    }

    /// What an API server answers when a JSON-patch `test` op fails (the workload changed since it
    /// was read): 422 Invalid, which the handler treats as a conflict. kmock answers 500.
    #[tokio::test]
    async fn a_failed_patch_guard_comes_back_as_422() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (_, send) = respond(&mut handle).await;
            send.send_response(json_response(
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                       "reason": "Invalid", "message": "the server rejected our request due to an error in our request"}),
            ));
        };
        let ops = vec![
            json!({"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "api"}),
        ];
        let (got, ()) = tokio::join!(
            kube.patch("dev", Kind::Deployment, "shop", "api", &ops),
            server
        );
        assert_eq!(got.unwrap_err().status(), Some(422));
    }

    #[tokio::test]
    async fn conflict_is_returned_as_a_retryable_409() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (_, send) = respond(&mut handle).await;
            send.send_response(json_response(409, status(409, "Conflict")));
        };
        let (got, ()) = tokio::join!(
            kube.patch("dev", Kind::Deployment, "shop", "api", &[]),
            server
        );
        let err = got.unwrap_err();
        assert_eq!(
            (err.status(), err.class()),
            (Some(409), bridgekeeper::Class::Retryable)
        );
    }

    #[tokio::test]
    async fn listing_follows_continue_tokens_over_every_kind_and_keeps_only_ecr_workloads() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.uri().path(), "/apis/apps/v1/deployments");
            assert!(
                req.uri().query().unwrap().contains("limit=250"),
                "{}",
                req.uri()
            );
            send.send_response(json_response(
                200,
                json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"continue": "page2"}, "items": [deployment("a")]}),
            ));
            let (req, send) = respond(&mut handle).await;
            assert!(
                req.uri().query().unwrap().contains("continue=page2"),
                "{}",
                req.uri()
            );
            send.send_response(json_response(
                200,
                json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": [deployment("b"),
                    // Public images only: no rule can match it, so the listing does not keep it.
                    {"metadata": {"name": "redis", "namespace": "shop", "managedFields": [{"manager": "helm"}]},
                     "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}}]}),
            ));
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.uri().path(), "/apis/apps/v1/statefulsets");
            send.send_response(json_response(
                200,
                json!({"apiVersion": "apps/v1", "kind": "StatefulSetList", "metadata": {}, "items": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
                     "spec": {"serviceName": "db", "selector": {}, "template": {"spec": {"initContainers": [
                        {"name": "migrate", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/db:latest"}],
                        "containers": [{"name": "pg", "image": "postgres:16"}]}}}}]}),
            ));
            // RBAC from before the other kinds: DaemonSets forbidden, the rest still rolls.
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.uri().path(), "/apis/apps/v1/daemonsets");
            send.send_response(json_response(403, status(403, "Forbidden")));
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.uri().path(), "/apis/batch/v1/cronjobs");
            send.send_response(json_response(
                200,
                json!({"apiVersion": "batch/v1", "kind": "CronJobList", "metadata": {}, "items": []}),
            ));
        };
        let (got, ()) = tokio::join!(kube.list("dev", None), server);
        let names: Vec<_> = got
            .unwrap()
            .into_iter()
            .map(|w| format!("{} {}", w.kind, w.metadata.name.unwrap_or_default()))
            .collect();
        assert_eq!(names, ["Deployment a", "Deployment b", "StatefulSet db"]);
    }

    #[tokio::test]
    async fn each_kind_is_patched_at_its_own_path() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (req, send) = respond(&mut handle).await;
            assert_eq!(
                req.uri().path(),
                "/apis/batch/v1/namespaces/shop/cronjobs/report"
            );
            send.send_response(json_response(
                200,
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "report", "namespace": "shop"},
                       "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {}}}}}),
            ));
        };
        let (got, ()) = tokio::join!(
            kube.patch("dev", Kind::CronJob, "shop", "report", &[]),
            server
        );
        assert_eq!(got.unwrap().kind, Kind::CronJob);
    }

    #[tokio::test]
    async fn an_unknown_cluster_alias_is_a_clear_error() {
        let (kube, _handle) = clusters();
        let err = kube.list("qa", None).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("cluster qa cannot be reached: not in CLUSTERS"),
            "{err}"
        );
    }
}
