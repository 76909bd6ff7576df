//! `make demo`: starts the local stand-ins and runs Bridgekeeper's jobs against them, printing
//! what each did. Each function adds its job here as it lands.

use anyhow::{Context, Result};
use aws_sdk_rds::types::Tag;
use bridgekeeper::accounts::Accounts;
use bridgekeeper::cluster::ClusterAccess;
use bridgekeeper::config::Env;
use bridgekeeper_tests::{
    Inbox, TestEnv, instance, kmock, load_balancer, moto, node_group, repo_root,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use snapshot_export::account::{Response, handle};

fn event(path: &str) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(repo_root().join("events").join(path)).context(path.to_owned())?;
    Ok(serde_json::from_str(&text)?)
}

async fn show_inbox(inbox: &Inbox) -> Result<()> {
    for m in inbox.receive().await? {
        println!("  ┌ SNS: {}", m.subject.unwrap_or_default());
        for line in m.body.lines() {
            println!("  │ {line}");
        }
        println!("  └ attributes: {:?}", m.attributes);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    println!("Starting the local stand-ins (from .venv) ...");
    println!("  AWS (moto server):           {}", moto().url);
    println!("  Kubernetes (kmock emulator): {}", kmock().url);
    snapshot_export_demo().await?;
    scaling_alerts_demo().await?;
    image_rollout_demo().await?;
    dns_sync_demo().await?;
    many_accounts_demo().await?;
    println!("\nDone. Every call above went to the local stand-ins; nothing left this machine.");
    Ok(())
}

async fn snapshot_export_demo() -> Result<()> {
    println!(
        "\n== snapshot-export: two RDS instances and one Aurora cluster, tagged bridgekeeper:export=true"
    );
    let env = TestEnv::aws().await;
    let rds = aws_sdk_rds::Client::new(&env.sdk);
    let inbox = Inbox::create(&env.sdk).await?;
    let tag = export_tag();
    for db in ["shop-db", "billing-db"] {
        postgres(&rds, db, true).await?;
    }
    rds.create_db_cluster()
        .db_cluster_identifier("orders-aurora")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("demo-password")
        .tags(tag)
        .send()
        .await?;
    // Two slots for three sources: the night is worked through, not cut short. Completed
    // exports go into the Glue catalog, one database per source.
    let config = export_config(
        &env,
        &inbox,
        &[
            ("MAX_CONCURRENT_EXPORTS", "2"),
            ("GLUE_DATABASE_PREFIX", "bridgekeeper_demo_"),
        ],
    )?;
    let exports = (
        snapshot_export::files::S3Files::from_conf(&env.sdk),
        snapshot_export::glue::GlueCatalog::new(aws_sdk_glue::Client::new(&env.sdk)),
    );
    let exports = snapshot_export::completion::Exports {
        files: &exports.0,
        catalog: &exports.1,
    };
    let api = snapshot_export::aws::RdsApi::new(rds.clone());
    let notifier = config.topics.sns(aws_sdk_sns::Client::new(&env.sdk));
    let store = bridgekeeper_tests::idempotency_store(&env.sdk, "snapshot-export").await?;

    println!(
        "\n-- nightly run (events/snapshot-export/schedule.json), MAX_CONCURRENT_EXPORTS=2 for three sources"
    );
    let Response::Schedule(first) = handle(
        event("snapshot-export/schedule.json")?,
        &config,
        &api,
        &notifier,
        &store,
        exports,
    )
    .await?
    else {
        anyhow::bail!("expected a run summary");
    };
    for e in &first.started {
        println!(
            "  started {:<14} {:?} {:<40} → {}",
            e.source, e.kind, e.snapshot, e.s3_uri
        );
    }
    for e in &first.deferred {
        println!(
            "  deferred {:<13} (no free slot; never exported, so it goes first next time)",
            e.source
        );
    }
    show_inbox(&inbox).await?;

    println!(
        "\n-- RDS reports an export finished (events/snapshot-export/export-completed.json): the freed slot goes to the source still waiting"
    );
    let shop = first.started.first().context("an export started")?;
    let tasks = export_tasks(&rds).await?;
    let task = tasks
        .iter()
        .find(|t| t.export_task_identifier() == Some(&shop.task_id))
        .context("task")?;
    let mut completed = event("snapshot-export/export-completed.json")?;
    completed["detail"]["SourceArn"] = task.source_arn().unwrap_or_default().into();
    completed["detail"]["SourceIdentifier"] = shop.snapshot.clone().into();
    // What RDS wrote (moto runs no export): two tables exported, two it skipped, with its reasons.
    let folder = format!(
        "{}/{}/",
        task.s3_prefix().unwrap_or_default().trim_end_matches('/'),
        shop.task_id
    );
    bridgekeeper_tests::write_export(
        &env.sdk,
        "bridgekeeper-demo-exports",
        &folder,
        serde_json::json!([
            {"target": "shop.public.orders", "status": "COMPLETE", "sizeGB": 1.2,
             "schemaMetadata": {"originalTypeMappings": [
                 {"columnName": "id", "expectedExportedType": "int64"},
                 {"columnName": "total", "expectedExportedType": "decimal(10,2)"}]}},
            {"target": "shop.public.customers", "status": "COMPLETE",
             "schemaMetadata": {"originalTypeMappings": [
                 {"columnName": "id", "expectedExportedType": "int64"},
                 {"columnName": "email", "expectedExportedType": "binary (UTF8)"}]}},
            {"target": "shop.public.Order Notes", "status": "SKIPPED",
             "warningMessage": "The table has a column name with a character Parquet does not allow"},
            {"target": "shop.public.attachments", "status": "SKIPPED",
             "warningMessage": "A row is larger than the 2 GB RDS can export"}
        ]),
    )
    .await?;
    if let Response::ExportEvent {
        next: Some(next), ..
    } = handle(completed, &config, &api, &notifier, &store, exports).await?
    {
        for e in &next.started {
            println!("  then started {} ({})", e.source, e.snapshot);
        }
    }
    show_inbox(&inbox).await?;
    println!("\n-- the nightly event again (EventBridge delivers at least once): nothing new");
    let Response::Schedule(second) = handle(
        event("snapshot-export/schedule.json")?,
        &config,
        &api,
        &notifier,
        &store,
        exports,
    )
    .await?
    else {
        anyhow::bail!("expected a run summary");
    };
    println!(
        "  started {}, deferred {}, already exported {}: {}",
        second.started.len(),
        second.deferred.len(),
        second.already_exported.len(),
        second
            .already_exported
            .iter()
            .map(|a| a.task_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let tasks = export_tasks(&rds).await?;
    println!(
        "  export tasks in RDS: {} (one per started snapshot, none twice)",
        tasks.len()
    );

    show_inbox(&inbox).await?;
    Ok(())
}

async fn scaling_alerts_demo() -> Result<()> {
    println!("\n== scaling-alerts: one SQS batch (events/scaling-alerts/sqs-batch.json)");
    println!(
        "   a scale-out of three nodes, an alarm going to ALARM and back to OK, a node group resize"
    );
    // The sample events happened in eu-west-1: enrichment asks that region.
    let env = TestEnv::in_region("eu-west-1").await;
    let inbox = Inbox::create(&env.sdk).await?;
    node_group(&env.sdk, "eks-prod-ng-1-a2c4e6g8", "prod-eks", "ng-1", 7).await?;
    // The function's own queue, where it sends itself a node-group update's follow-ups.
    let sqs = aws_sdk_sqs::Client::new(&env.sdk);
    let own_queue = sqs
        .create_queue()
        .queue_name(bridgekeeper_tests::unique("scaling-events"))
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let config = scaling_alerts::Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
        ("FOLLOW_UP_QUEUE_URL", own_queue.as_str()),
    ]))?;
    let ports = scaling_alerts::pipeline::Ports {
        asg: scaling_alerts::aws::AutoScalingApi::new(Accounts::single(&env.sdk)),
        ec2: scaling_alerts::aws::Ec2Api::new(Accounts::single(&env.sdk)),
        eks: scaling_alerts::aws::EksApi::new(
            Accounts::single(&env.sdk),
            &env.sdk,
            config.follow_up_queue.clone(),
        ),
        notifiers: config.notifiers(aws_sdk_sns::Client::new(&env.sdk)),
        store: bridgekeeper_tests::idempotency_store(&env.sdk, "scaling-alerts").await?,
    };
    let run = |name: &'static str| {
        let (config, ports) = (&config, &ports);
        async move {
            let r = scaling_alerts::handler::handle_payload(event(name)?, config, ports).await?;
            println!(
                "   {} events → {} notifications ({} coalesced, {} dropped), {} records returned to the queue",
                r.events,
                r.notifications,
                r.coalesced,
                r.dropped,
                r.batch_item_failures.len()
            );
            anyhow::Ok(())
        }
    };
    run("scaling-alerts/sqs-batch.json").await?;
    show_inbox(&inbox).await?;

    println!(
        "\n   A flapping alarm (events/scaling-alerts/sqs-flapping-alarm.json): ALARM, OK, ALARM,"
    );
    println!("   delivered out of order; the message reads the latest state by time");
    run("scaling-alerts/sqs-flapping-alarm.json").await?;
    show_inbox(&inbox).await?;

    println!(
        "\n   A Spot interruption warning for a Karpenter node (no Auto Scaling group: found by"
    );
    println!(
        "   its tags with one DescribeInstances), and one for a bastion host, which is dropped"
    );
    let node = instance(
        &env.sdk,
        "m6i.large",
        true,
        &[
            ("karpenter.sh/nodepool", "default"),
            ("eks:eks-cluster-name", "prod-eks"),
        ],
    )
    .await?;
    let bastion = instance(&env.sdk, "t3.micro", false, &[("Name", "bastion")]).await?;
    let spot =
        std::fs::read_to_string(repo_root().join("events/scaling-alerts/spot-interruption.json"))?;
    let records: Vec<serde_json::Value> = [(&node, "m1"), (&bastion, "m2")]
        .iter()
        .map(|(id, m)| {
            let body = spot
                .replace("i-0c1d2e3f4a5b6c7d8", id)
                .replace("a1b2c3d4-0001", &format!("a1b2c3d4-00{}", &m[1..]));
            serde_json::json!({"messageId": m, "body": body, "eventSource": "aws:sqs"})
        })
        .collect();
    let r = scaling_alerts::handler::handle_payload(
        serde_json::json!({ "Records": records }),
        &config,
        &ports,
    )
    .await?;
    println!(
        "   {} events → {} notification, {} dropped (not a node of an EKS cluster)",
        r.events, r.notifications, r.dropped
    );
    show_inbox(&inbox).await?;

    println!(
        "\n   A Metrics Insights alarm's series in ALARM (events/scaling-alerts/alarm-contributor.json),"
    );
    println!("   named with its node group and cluster");
    run("scaling-alerts/alarm-contributor.json").await?;
    show_inbox(&inbox).await?;

    println!(
        "\n   A node-group version update (events/scaling-alerts/nodegroup-version-update.json): told as"
    );
    println!(
        "   it starts, and followed: a follow-up waits 15 minutes in the function's own queue, then"
    );
    println!("   asks eks:DescribeUpdate (moto has none) and tells how the update ended");
    run("scaling-alerts/nodegroup-version-update.json").await?;
    let waiting = sqs
        .get_queue_attributes()
        .queue_url(&own_queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?
        .attributes
        .unwrap_or_default()
        .into_values()
        .next()
        .unwrap_or_default();
    println!(
        "   follow-ups waiting in the function's queue: {waiting} (this update, and the first batch's resize)"
    );
    show_inbox(&inbox).await?;
    Ok(())
}

async fn image_rollout_demo() -> Result<()> {
    println!(
        "\n== image-rollout: Deployments in kmock on shop/api:latest (dev) and shop/api:stable (prod)"
    );
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let client = ClusterAccess::url(&kmock().url, None).client().await?;
    let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    for (ns, name, tag) in [
        ("shop-dev", "api", "latest"),
        ("shop-dev", "worker", "latest"),
        ("shop-prod", "api", "stable"),
    ] {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            // Opted in: image-rollout's default (ROLLOUT_MODE=opt-in) rolls only such workloads.
            "metadata": {"name": name, "namespace": ns, "annotations": {"bridgekeeper.io/rollout": "true"}},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("{registry}/shop/api:{tag}")}]}}}
        }))?;
        Api::<Deployment>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &d)
            .await?;
    }
    let show = |title: &'static str| {
        let client = client.clone();
        async move {
            println!("  {title}");
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
                let ns = d.metadata.namespace.unwrap_or_default();
                println!(
                    "    {:<20} {}",
                    format!("{ns}/{}", d.metadata.name.unwrap_or_default()),
                    image.replace(registry, "…")
                );
            }
            anyhow::Ok(())
        }
    };
    show("before:").await?;
    let url = &kmock().url;
    let clusters = format!("dev={url},prod={url}");
    let config = image_rollout::Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "dev"),
        ("CLUSTERS", clusters.as_str()),
        ("LOCAL_HTTP_CLUSTERS", "true"),
        (
            "ROLLOUT_RULES",
            r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev"], "namespaces": ["shop-dev"]},
                {"repository": "shop/*", "tag": "stable", "clusters": ["prod"], "namespaces": ["shop-prod"]}]"#,
        ),
        ("WATCH_TIMEOUT_SECONDS", "0"),
    ]))?;
    let kube =
        image_rollout::kube::KubeClusters::new(&config.clusters, &Accounts::single(&env.sdk));
    let ecr = image_rollout::registry::Ecr::new(&env.sdk);
    let notifier = config.topics.sns(aws_sdk_sns::Client::new(&env.sdk));
    let store = bridgekeeper_tests::idempotency_store(&env.sdk, image_rollout::FUNCTION).await?;
    let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(300);
    let run = |e: serde_json::Value| {
        image_rollout::handler::handle(e, deadline, &config, &kube, &ecr, &notifier, &store)
    };

    // ECR (moto) holds the pushed image; the event names its digest, as ECR's would.
    let digest = bridgekeeper_tests::ecr_push(&env.sdk, "shop/api", "latest", 1).await?;
    let mut pushed = event("image-rollout/push-latest.json")?;
    pushed["detail"]["image-digest"] = serde_json::json!(digest);
    println!(
        "\n-- ECR push of shop/api:latest (events/image-rollout/push-latest.json, digest from moto's ECR)"
    );
    run(pushed.clone()).await?;
    show("after (only dev pinned to the pushed digest; kmock runs no controller, so the demo does not watch):").await?;
    show_inbox(&inbox).await?;

    println!("\n-- the same push again");
    let again = run(pushed).await?;
    for c in &again.clusters {
        println!(
            "  {}: rolled {}, skipped {}",
            c.cluster,
            c.rolled.len(),
            c.skipped.len()
        );
        for s in &c.skipped {
            println!(
                "    {}/{}: {}",
                s.workload.namespace, s.workload.name, s.reason
            );
        }
    }
    println!("  notifications sent: {}", inbox.receive().await?.len());

    println!(
        "\n-- an untagged push (a buildx platform manifest or attestation; events/image-rollout/push-untagged.json)"
    );
    let r = run(event("image-rollout/push-untagged.json")?).await?;
    println!("  ignored: {}", r.ignored.unwrap_or_default());

    println!(
        "\n-- shop/api:stable pushed, its event never delivered; the scheduled reconcile (events/image-rollout/reconcile.json)"
    );
    bridgekeeper_tests::ecr_push(&env.sdk, "shop/api", "stable", 2).await?;
    let r = run(event("image-rollout/reconcile.json")?).await?;
    for i in &r.images {
        println!(
            "  ECR {}:{} is {}",
            i.repository,
            i.tag,
            i.digest.as_deref().unwrap_or("absent")
        );
    }
    show("after the reconcile:").await?;
    show_inbox(&inbox).await?;
    let r = run(event("image-rollout/reconcile.json")?).await?;
    let rolled: usize = r.clusters.iter().map(|c| c.rolled.len()).sum();
    println!(
        "\n-- the reconcile again: {rolled} rolled, {} notifications",
        inbox.receive().await?.len()
    );
    Ok(())
}

async fn dns_sync_demo() -> Result<()> {
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::{Patch, PatchParams};

    println!(
        "\n== dns-sync: the seed's scenario: an Ingress on a Classic Load Balancer for api.<zone> and the apex (kmock), the zone in moto"
    );
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let route53 = aws_sdk_route53::Client::new(&env.sdk);
    let zone = "shop-demo.example.com";
    let created = route53
        .create_hosted_zone()
        .name(zone)
        .caller_reference("bridgekeeper-demo")
        .send()
        .await?;
    let zone_id = created
        .hosted_zone()
        .context("zone")?
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    // What a Service of type LoadBalancer or an in-cluster ingress controller gets by default; ELBv2
    // cannot see it, AWS's per-region table names its alias zone.
    let lb = "default-1854330541.ap-northeast-1.elb.amazonaws.com";
    let client = ClusterAccess::url(&kmock().url, None).client().await?;
    let ingresses: Api<Ingress> = Api::namespaced(client, "shop-web");
    let ing: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "shop-web"},
        "spec": {"rules": [{"host": format!("api.{zone}")}, {"host": zone}]},
        "status": {"loadBalancer": {"ingress": [{"hostname": lb}]}}
    }))?;
    ingresses.create(&PostParams::default(), &ing).await?;
    println!("  zone {zone} ({zone_id}); Ingress shop-web/shop → {lb}");

    let clusters = format!("prod={}", kmock().url);
    let host_policy = format!("shop-web={zone},shop-web=@{zone}");
    let config = dns_sync::Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "prod"),
        ("CLUSTERS", clusters.as_str()),
        ("LOCAL_HTTP_CLUSTERS", "true"),
        ("NAMESPACES", "shop-web,tenant"),
        ("ZONE_IDS", zone_id.as_str()),
        ("OWNER_ID", "bridgekeeper-demo"),
        // shop-web may claim the zone and its apex; any other namespace nothing (README
        // "Multi-tenant clusters").
        ("HOST_POLICY", host_policy.as_str()),
    ]))?;
    let sources = dns_sync::kube::KubeSources::new(&config.clusters, &Accounts::single(&env.sdk));
    let dns = dns_sync::aws::AwsDns::new(
        route53.clone(),
        aws_sdk_elasticloadbalancingv2::Client::new(&env.sdk),
    );
    let notifier = config.topics.sns(aws_sdk_sns::Client::new(&env.sdk));
    let memory = bridgekeeper_tests::idempotency_store(&env.sdk, "dns-sync").await?;
    let state = dns_sync::report::State::new(&memory);
    let show_records = || async {
        let out = route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .send()
            .await?;
        for r in out.resource_record_sets() {
            let t = r.r#type().as_str();
            if t == "SOA" || t == "NS" {
                continue;
            }
            let value = match r.alias_target() {
                Some(a) => format!("ALIAS {} (zone {})", a.dns_name(), a.hosted_zone_id()),
                None => r
                    .resource_records()
                    .iter()
                    .map(|v| v.value())
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            println!("    {:<48} {:<5} {value}", r.name(), t);
        }
        anyhow::Ok(())
    };

    let run = |n: String| {
        let (config, sources, dns, notifier, state) = (&config, &sources, &dns, &notifier, &state);
        async move {
            println!("\n-- {n} (events/dns-sync/schedule.json)");
            let r = dns_sync::handler::handle(
                event("dns-sync/schedule.json")?,
                std::time::SystemTime::now() + std::time::Duration::from_secs(120),
                config,
                sources,
                dns,
                notifier,
                state,
            )
            .await?;
            for z in &r.zones {
                println!(
                    "  {}: created {:?}, updated {:?}, deleted {:?}, unchanged {}, conflicts {}, refused {}, change batches {}",
                    z.zone,
                    z.created,
                    z.updated,
                    z.deleted,
                    z.unchanged,
                    z.conflicts.len(),
                    z.rejected.len(),
                    z.batches
                );
                for c in &z.conflicts {
                    println!("    conflict {}: {}", c.host, c.reason);
                }
            }
            println!(
                "  Route53: zones listed {}, zones read {}, zones not read (wanted as last applied) {}",
                r.route53.zones_listed as u8, r.route53.zones_read, r.route53.zones_unchanged
            );
            anyhow::Ok(())
        }
    };
    run("first sync".into()).await?;
    println!("  records now:");
    show_records().await?;
    show_inbox(&inbox).await?;
    run(
        "the same event again: the clusters want what was applied, so no Route53 call, no message"
            .into(),
    )
    .await?;
    println!("  messages: {}", inbox.receive().await?.len());

    let (lb2, _) = load_balancer(&env.region, "k8s-shop-api-v2", false)?;
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"hostname": lb2}]}}});
    ingresses
        .patch("shop", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    run(format!("the Ingress moved to {lb2}")).await?;
    println!("  records now:");
    show_records().await?;
    show_inbox(&inbox).await?;

    // A tenant with edit rights in its own namespace tries to take the shop's names.
    let tenant: Api<Ingress> = Api::namespaced(
        ClusterAccess::url(&kmock().url, None).client().await?,
        "tenant",
    );
    let evil: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "aaa", "namespace": "tenant"},
        "spec": {"rules": [{"host": format!("api.{zone}")}, {"host": zone}, {"host": format!("promo.{zone}")}]},
        "status": {"loadBalancer": {"ingress": [{"hostname": "k8s-tenant-evil-1.eu-west-1.elb.amazonaws.com"}]}}
    }))?;
    tenant.create(&PostParams::default(), &evil).await?;
    run(
        "a tenant's Ingress (namespace tenant, sorting first) claims api, the apex and promo"
            .into(),
    )
    .await?;
    println!(
        "  records now (unchanged: the owner keeps its names, HOST_POLICY gives tenant none):"
    );
    show_records().await?;
    show_inbox(&inbox).await?;
    Ok(())
}

/// The account's export tasks as RDS lists them now.
/// Hub and spoke: the hub (moto's default account) acts in a member account (222222222222)
/// through the member role, as `deploy/member/template.yaml` sets it up.
async fn many_accounts_demo() -> Result<()> {
    println!(
        "\n== many accounts: a hub (123456789012) and a staging member account (222222222222)"
    );
    let env = TestEnv::aws().await;
    let inbox = Inbox::create(&env.sdk).await?;
    let member = bridgekeeper_tests::acting_in(&env.sdk, bridgekeeper_tests::MEMBER_ACCOUNT).await;
    let (hub_rds, member_rds) = (
        aws_sdk_rds::Client::new(&env.sdk),
        aws_sdk_rds::Client::new(&member),
    );
    for (rds, db, tagged) in [
        (&hub_rds, "ops-scratch", false),
        (&member_rds, "staging-orders", true),
        (&member_rds, "staging-scratch", false),
    ] {
        postgres(rds, db, tagged).await?;
    }
    println!("   hub: ops-scratch (untagged); staging: staging-orders (tagged), staging-scratch");
    let config = export_config(
        &env,
        &inbox,
        &[
            ("ENVIRONMENT", "ops"),
            ("ACCOUNT_ID", bridgekeeper_tests::HUB_ACCOUNT),
            ("MEMBER_ACCOUNTS", "staging=222222222222"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
        ],
    )?;
    println!("\n-- snapshot-export's nightly run, MEMBER_ACCOUNTS=staging=222222222222");
    let outcome = snapshot_export::handler::handle(
        event("snapshot-export/schedule.json")?,
        &config,
        &snapshot_export::aws::RdsApi::new(hub_rds.clone()),
        &snapshot_export::handler::MemberRds(bridgekeeper_tests::hub_accounts(
            &env.sdk,
            "snapshot-export",
        )),
        &config.topics.sns(aws_sdk_sns::Client::new(&env.sdk)),
        &bridgekeeper_tests::idempotency_store(&env.sdk, "snapshot-export").await?,
        snapshot_export::completion::Exports {
            files: &snapshot_export::files::S3Files::from_conf(&env.sdk),
            catalog: &snapshot_export::glue::GlueCatalog::new(aws_sdk_glue::Client::new(&env.sdk)),
        },
    )
    .await?;
    if let snapshot_export::handler::Outcome::Accounts { accounts } = &outcome {
        for a in accounts {
            let started = match &a.run {
                Some(Response::Schedule(s)) => s.started.iter().map(|e| e.s3_uri.clone()).collect(),
                _ => vec![],
            };
            println!(
                "  {:<13} started {}: {}",
                a.account,
                started.len(),
                started.join(", ")
            );
        }
    }
    for t in export_tasks(&member_rds).await? {
        println!(
            "  in the member account: task {} with role {}",
            t.export_task_identifier().unwrap_or_default(),
            t.iam_role_arn().unwrap_or_default()
        );
    }
    println!(
        "  in the hub account: {} export tasks",
        export_tasks(&hub_rds).await?.len()
    );
    show_inbox(&inbox).await?;

    println!("\n-- scaling-alerts: a launch in the member account, forwarded to the hub's bus");
    node_group(&member, "eks-staging-ng-1", "staging-eks", "ng-1", 2).await?;
    let launch =
        std::fs::read_to_string(repo_root().join("events/scaling-alerts/launch-successful.json"))?
            .replace("eks-prod-ng-1-a2c4e6g8", "eks-staging-ng-1")
            .replace("\"123456789012\"", "\"222222222222\"")
            .replace(
                "\"region\": \"eu-west-1\"",
                &format!("\"region\": \"{}\"", env.region),
            );
    let alerts = scaling_alerts::Config::from_env(&Env::from_pairs([
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("ENVIRONMENT", "staging"),
    ]))?;
    let accounts = bridgekeeper_tests::hub_accounts(&env.sdk, "scaling-alerts");
    let ports = scaling_alerts::pipeline::Ports {
        asg: scaling_alerts::aws::AutoScalingApi::new(accounts.clone()),
        ec2: scaling_alerts::aws::Ec2Api::new(accounts.clone()),
        eks: scaling_alerts::aws::EksApi::new(accounts, &env.sdk, None),
        notifiers: alerts.notifiers(aws_sdk_sns::Client::new(&env.sdk)),
        store: bridgekeeper_tests::idempotency_store(&env.sdk, "scaling-alerts").await?,
    };
    let records = serde_json::json!({"Records": [{"messageId": "m1", "body": launch, "eventSource": "aws:sqs"}]});
    let r = scaling_alerts::handler::handle_payload(records, &alerts, &ports).await?;
    println!(
        "   {} event → {} notification, enriched from the member account's group (its role, its region)",
        r.events, r.notifications
    );
    show_inbox(&inbox).await?;
    Ok(())
}

fn export_tag() -> Tag {
    Tag::builder()
        .key("bridgekeeper:export")
        .value("true")
        .build()
}

/// A small PostgreSQL instance (moto makes its automated snapshot), tagged for export or not.
async fn postgres(rds: &aws_sdk_rds::Client, id: &str, tagged: bool) -> Result<()> {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("demo-password")
        .set_tags(tagged.then(|| vec![export_tag()]))
        .send()
        .await?;
    Ok(())
}

/// snapshot-export's configuration for the demo's bucket and key, with `extra` on top.
fn export_config(
    env: &TestEnv,
    inbox: &Inbox,
    extra: &[(&str, &str)],
) -> Result<snapshot_export::Config> {
    let kms = format!("arn:aws:kms:{}:123456789012:key/0b1e5e7f-demo", env.region);
    let mut vars = vec![
        ("ALERTS_TOPIC_ARN", inbox.topic_arn.as_str()),
        ("EXPORT_BUCKET", "bridgekeeper-demo-exports"),
        (
            "EXPORT_ROLE_ARN",
            "arn:aws:iam::123456789012:role/bridgekeeper-export",
        ),
        ("EXPORT_KMS_KEY_ARN", kms.as_str()),
        ("ENVIRONMENT", "demo"),
    ];
    vars.extend_from_slice(extra);
    Ok(snapshot_export::Config::from_env(&Env::from_pairs(vars))?)
}

async fn export_tasks(rds: &aws_sdk_rds::Client) -> Result<Vec<aws_sdk_rds::types::ExportTask>> {
    Ok(rds
        .describe_export_tasks()
        .send()
        .await?
        .export_tasks
        .unwrap_or_default())
}
