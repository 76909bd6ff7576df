//! Shared cluster access against the kmock Kubernetes emulator: a client built from a URL lists
//! and patches a Deployment with kube-rs.

use anyhow::Result;
use bridgekeeper::cluster::{ClusterAccess, ClusterError};
use bridgekeeper::cluster_target::ClusterTarget;
use bridgekeeper_tests::{kmock, unique};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn deployment(ns: &str, name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn client_from_url_lists_and_patches_a_deployment() -> Result<()> {
    let access = ClusterAccess::url(&kmock().url, None);
    assert!(matches!(access.target(), ClusterTarget::Url { .. }));
    let client = access.client().await?;
    let ns = unique("shop");
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:latest";
    api.create(&PostParams::default(), &deployment(&ns, "api", image))
        .await?;
    api.create(&PostParams::default(), &deployment(&ns, "worker", image))
        .await?;

    let listed = api.list(&ListParams::default()).await?;
    let mut names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["api", "worker"]);

    let pinned = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@sha256:7f5b";
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": pinned}
    ]))?;
    api.patch("api", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;

    let merge = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-21T12:00:00Z"}}}}});
    api.patch("worker", &PatchParams::default(), &Patch::Merge(&merge))
        .await?;

    // A second client from the same access is the same connection, reused.
    let again: Api<Deployment> = Api::namespaced(access.client().await?, &ns);
    let api_dep = again.get("api").await?;
    let container = &api_dep.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some(pinned));
    let worker = again.get("worker").await?;
    let annotations = worker
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(
        annotations["kubectl.kubernetes.io/restartedAt"],
        "2026-11-21T12:00:00Z"
    );
    Ok(())
}

#[tokio::test]
async fn missing_object_is_a_non_retryable_api_error() -> Result<()> {
    let client = ClusterAccess::url(&kmock().url, Some("static-token".into()))
        .client()
        .await?;
    let api: Api<Deployment> = Api::namespaced(client, &unique("empty"));
    let err = api.get("nope").await.expect_err("nothing there");
    let err = ClusterError::api("kmock", "get deployment", err);
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.class(), bridgekeeper::Class::NonRetryable);
    Ok(())
}

#[tokio::test]
async fn unreachable_cluster_is_a_retryable_error() -> Result<()> {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let client = ClusterAccess::url(&format!("http://127.0.0.1:{port}"), None)
        .client()
        .await?;
    let err = Api::<Deployment>::all(client)
        .list(&ListParams::default())
        .await
        .expect_err("nothing listens");
    assert_eq!(
        ClusterError::api("gone", "list deployments", err).class(),
        bridgekeeper::Class::Retryable
    );
    Ok(())
}
