//! `make demo`: starts the local stand-ins and runs Bridgekeeper's jobs against them, printing
//! what each did. Each function adds its job here as it lands.

use anyhow::{Context, Result};
use bridgekeeper::cluster::ClusterAccess;
use bridgekeeper::notify::{Notification, Notifier, Severity, SnsNotifier};
use bridgekeeper_tests::{Inbox, TestEnv, kmock, moto};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    println!("Starting the local stand-ins (from .venv) ...");
    println!("  AWS (moto server):          {}", moto().url);
    println!("  Kubernetes (kmock emulator): {}", kmock().url);

    println!(
        "\n== Notifications: the shared SNS notifier, read back through a subscribed SQS queue"
    );
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let notifier = SnsNotifier::new(
        aws_sdk_sns::Client::new(&env.sdk),
        &inbox.topic_arn,
        "demo",
        "dev",
    );
    let n = Notification::new(
        "[dev] Bridgekeeper demo: the alerts topic answers",
        "If you can read this, SNS publishing works against the local stand-in.",
        Severity::Info,
    );
    notifier.notify(&n).await?;
    for m in inbox.receive().await? {
        println!("  subject:    {}", m.subject.unwrap_or_default());
        println!("  body:       {}", m.body);
        println!("  attributes: {:?}", m.attributes);
    }

    println!("\n== Kubernetes: the shared cluster access (URL target), listing Deployments");
    let client = ClusterAccess::url(&kmock().url, None).client().await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {
            "metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:latest"}]}}}
    }))?;
    api.create(&PostParams::default(), &deployment).await?;
    for d in Api::<Deployment>::all(client)
        .list(&ListParams::default())
        .await?
    {
        let image = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .context("image")?;
        println!(
            "  {}/{}: {image}",
            d.metadata.namespace.unwrap_or_default(),
            d.metadata.name.unwrap_or_default()
        );
    }

    println!("\nThe stand-ins answer. Functions add their jobs to this demo as they land.");
    Ok(())
}
