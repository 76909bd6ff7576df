//! The Kubernetes adapter: lists, reads and patches Deployments in the configured clusters.

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use bridgekeeper::cluster::{ClusterAccess, ClusterError, ClusterTarget, Clusters, list_all};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::Value;
use tracing::info;

/// The Deployment calls image-rollout makes; the handler is generic over it.
pub trait Kube: Send + Sync {
    /// Deployments in one namespace, or in all when `None`.
    fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Deployment>, ClusterError>> + Send;
    fn get(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Deployment, ClusterError>> + Send;
    fn patch(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> impl Future<Output = Result<Deployment, ClusterError>> + Send;
    /// Pods in a namespace matching a label selector (`app=api`): what a rollout's pods say.
    fn pods(
        &self,
        cluster: &str,
        namespace: &str,
        selector: &str,
    ) -> impl Future<Output = Result<Vec<Pod>, ClusterError>> + Send;
}

pub struct KubeClusters {
    clusters: Clusters,
}

impl KubeClusters {
    pub fn new(targets: &[(String, ClusterTarget)], sdk: &SdkConfig) -> Self {
        KubeClusters {
            clusters: Clusters::new(targets, sdk),
        }
    }

    /// For tests: clusters reached through ready-made accesses.
    pub fn from_accesses(accesses: HashMap<String, ClusterAccess>) -> Self {
        KubeClusters {
            clusters: Clusters::from_accesses(accesses),
        }
    }
}

impl Kube for KubeClusters {
    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Deployment>, ClusterError> {
        let what = format!(
            "list deployments in {}",
            namespace.unwrap_or("all namespaces")
        );
        self.clusters
            .call(cluster, &what, |client| async move {
                let api: Api<Deployment> = match namespace {
                    Some(ns) => Api::namespaced(client, ns),
                    None => Api::all(client),
                };
                list_all(&api).await
            })
            .await
    }

    async fn get(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Deployment, ClusterError> {
        self.clusters
            .call(
                cluster,
                &format!("get deployment {namespace}/{name}"),
                |client| async move {
                    Api::<Deployment>::namespaced(client, namespace)
                        .get(name)
                        .await
                },
            )
            .await
    }

    async fn patch(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> Result<Deployment, ClusterError> {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| {
                ClusterError::Unusable {
                    cluster: cluster.to_owned(),
                    why: format!("bad patch: {e}"),
                }
            })?;
        let result = self
            .clusters
            .call(
                cluster,
                &format!("patch deployment {namespace}/{name}"),
                |client| {
                    let patch = patch.clone();
                    async move {
                        let api = Api::<Deployment>::namespaced(client, namespace);
                        api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                            .await
                    }
                },
            )
            .await?;
        info!(cluster, namespace, deployment = name, "deployment patched");
        Ok(result)
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
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"}})
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
        let (patched, ()) = tokio::join!(kube.patch("dev", "shop", "api", &ops), server);
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
        let (got, ()) = tokio::join!(kube.get("dev", "shop", "api"), server);
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
        let (got, ()) = tokio::join!(kube.get("dev", "shop", "api"), server);
        let err = got.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.class(), bridgekeeper::Class::NonRetryable);
    }

    #[tokio::test]
    async fn conflict_is_returned_as_a_retryable_409() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (_, send) = respond(&mut handle).await;
            send.send_response(json_response(409, status(409, "Conflict")));
        };
        let (got, ()) = tokio::join!(kube.patch("dev", "shop", "api", &[]), server);
        let err = got.unwrap_err();
        assert_eq!(
            (err.status(), err.class()),
            (Some(409), bridgekeeper::Class::Retryable)
        );
    }

    #[tokio::test]
    async fn listing_follows_continue_tokens() {
        let (kube, mut handle) = clusters();
        let server = async {
            let (req, send) = respond(&mut handle).await;
            assert_eq!(req.uri().path(), "/apis/apps/v1/deployments");
            assert!(
                req.uri().query().unwrap().contains("limit=500"),
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
                json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": [deployment("b")]}),
            ));
        };
        let (got, ()) = tokio::join!(kube.list("dev", None), server);
        let names: Vec<_> = got
            .unwrap()
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
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
