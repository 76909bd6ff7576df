//! `make scale`, Route53's part: the requests dns-sync makes per run for 20 zones × 2,000 records
//! (1,000 hosts a zone, each an alias A and its ownership TXT), counted as moto receives them
//! through a counting proxy: the first sync, a steady run, a run with one host changed, and a
//! drift run (the interval over). The real adapter, the real store (moto's DynamoDB), the
//! handler as Lambda runs it; only the clusters are in memory.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bridgekeeper::AwsError;
use bridgekeeper::cluster::ClusterError;
use bridgekeeper::config::Env;
use bridgekeeper::notify::{Notification, Notifier};
use bridgekeeper_tests::{Proxy, idempotency_store, moto, sdk_config_at, unique};
use dns_sync::aws::{AwsDns, route53_client};
use dns_sync::gateway::{Gateway, Route};
use dns_sync::handler::handle;
use dns_sync::report::{Response, State};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

const ZONES: usize = 20;
const HOSTS: usize = 1_000;
const LB: &str = "k8s-shop-web-0123456789.eu-west-1.elb.amazonaws.com";

/// The message is not what is measured.
struct Dropped;

impl Notifier for Dropped {
    async fn notify(&self, _: &Notification) -> Result<String, AwsError> {
        Ok("dropped".into())
    }
}

/// One Ingress per zone naming its 1,000 hosts.
struct Cluster {
    ingresses: std::sync::Mutex<Vec<Ingress>>,
}

impl dns_sync::kube::Sources for Cluster {
    async fn ingresses(&self, _: &str, _: Option<&str>) -> Result<Vec<Ingress>, ClusterError> {
        Ok(self.ingresses.lock().unwrap().clone())
    }
    async fn services(&self, _: &str, _: Option<&str>) -> Result<Vec<Service>, ClusterError> {
        Ok(vec![])
    }
    async fn routes(&self, _: &str, _: Option<&str>) -> Result<Vec<Route>, ClusterError> {
        Ok(vec![])
    }
    async fn gateways(&self, _: &str, _: Option<&str>) -> Result<Vec<Gateway>, ClusterError> {
        Ok(vec![])
    }
}

fn ingress(zone: &str, i: usize, first: &str) -> Ingress {
    let rules: Vec<_> = std::iter::once(first.to_owned())
        .chain((1..HOSTS).map(|h| format!("h{h}.{zone}")))
        .map(|h| json!({ "host": h }))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("web{i}"), "namespace": "shop"},
        "spec": {"rules": rules},
        "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
    }))
    .expect("an Ingress")
}

/// Route53 requests by operation, from the heads the proxy kept (REST-XML: the path names it).
fn count(heads: &[String]) -> (usize, usize, usize) {
    let (mut zones, mut reads, mut changes) = (0, 0, 0);
    for h in heads {
        let line = h.lines().next().unwrap_or_default();
        if line.starts_with("GET /2013-04-01/hostedzone/") && line.contains("/rrset") {
            reads += 1;
        } else if line.starts_with("POST /2013-04-01/hostedzone/") && line.contains("/rrset") {
            changes += 1;
        } else if line.starts_with("GET /2013-04-01/hostedzone") {
            zones += 1;
        }
    }
    (zones, reads, changes)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let region = "eu-west-1";
    let proxy = Proxy::start(&moto().url, |_, body| body).await?;
    let sdk = sdk_config_at(&proxy.url, region).await;
    let route53 = aws_sdk_route53::Client::new(&sdk);
    let suffix = unique("r53");
    let mut names = Vec::new();
    for i in 0..ZONES {
        let name = format!("z{i}.{suffix}.example.com");
        route53
            .create_hosted_zone()
            .name(&name)
            .caller_reference(unique("ref"))
            .send()
            .await
            .context("create a zone")?;
        names.push(name);
    }
    let cluster = Cluster {
        ingresses: std::sync::Mutex::new(
            names
                .iter()
                .enumerate()
                .map(|(i, z)| ingress(z, i, &format!("h0.{z}")))
                .collect(),
        ),
    };
    let store = idempotency_store(&sdk, "dns-sync").await?;
    let dns = AwsDns::new(
        route53_client(&sdk),
        aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
    );
    let domain = format!("{suffix}.example.com");
    let config = |drift: &str| {
        dns_sync::Config::from_env(&Env::from_pairs([
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("CLUSTERS", "prod=prod-eks"),
            ("POLICY", "sync"),
            ("MAX_DELETIONS", "5"),
            ("DRIFT_INTERVAL_SECONDS", drift),
            ("DOMAIN_FILTER", domain.as_str()),
        ]))
        .expect("a valid configuration")
    };
    let steady = config("3600");
    let drift = config("0");
    let event: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/dns-sync/schedule.json"))?;
    let state = State::new(&store);
    let notifier = Dropped;
    let mut rows = Vec::new();
    let mut run = async |label: &str, config: &dns_sync::Config| -> Result<Response> {
        let before = proxy.requests().len();
        let started = Instant::now();
        let deadline = SystemTime::now() + Duration::from_secs(900);
        let r = handle(
            event.clone(),
            deadline,
            config,
            &cluster,
            &dns,
            &notifier,
            &state,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        let (zones, reads, changes) = count(&proxy.requests()[before..]);
        let changed: usize = r.zones.iter().map(|z| z.changed()).sum();
        rows.push(format!(
            "| {label} | {zones} | {reads} | {changes} | {} | {changed} | {:.1} s |",
            zones + reads + changes,
            started.elapsed().as_secs_f64()
        ));
        Ok(r)
    };
    run("first sync (20 zones created)", &steady).await?;
    run("steady: nothing changed", &steady).await?;
    {
        let mut ingresses = cluster.ingresses.lock().unwrap();
        let z = &names[7];
        ingresses[7] = ingress(z, 7, &format!("moved.{z}"));
    }
    run("one host renamed in one zone", &steady).await?;
    run("drift: interval over (DRIFT_INTERVAL_SECONDS=0)", &drift).await?;
    println!(
        "dns-sync, {ZONES} zones × {} records ({HOSTS} hosts a zone), Route53 requests per run:",
        2 * HOSTS
    );
    println!(
        "| run | ListHostedZones | ListResourceRecordSets | ChangeResourceRecordSets | Route53 requests | hosts changed | time (moto) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
