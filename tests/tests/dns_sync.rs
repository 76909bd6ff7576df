//! dns-sync against moto (Route53, ELBv2) and kmock (Ingresses, Services).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use bridgekeeper::AwsError;
use bridgekeeper::config::Env;
use bridgekeeper::idempotency::testing::Memory;
use bridgekeeper_tests::{
    Inbox, MEMBER_ACCOUNT, TestEnv, acting_in, hub_accounts, kmock, load_balancer, repo_root,
    unique,
};
use dns_sync::aws::{AwsDns, Dns};
use dns_sync::handler::handle;
use dns_sync::kube::KubeSources;
use dns_sync::records::{DnsChange, LoadBalancer, RecordSet};
use dns_sync::report::Response;
use dns_sync::report::State;
use dns_sync::zones::Zone;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// The real adapter, counting the calls that matter.
struct Counting {
    inner: AwsDns,
    applies: AtomicUsize,
    lb_listings: AtomicUsize,
    zone_listings: AtomicUsize,
    zone_reads: AtomicUsize,
}

impl Dns for Counting {
    async fn zones(&self) -> Result<dns_sync::aws::ZoneListing, AwsError> {
        self.zone_listings.fetch_add(1, Ordering::SeqCst);
        self.inner.zones().await
    }
    async fn records(&self, zone: &Zone) -> Result<Vec<RecordSet>, AwsError> {
        self.zone_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.records(zone).await
    }
    async fn load_balancers(&self) -> Result<HashMap<String, LoadBalancer>, AwsError> {
        self.lb_listings.fetch_add(1, Ordering::SeqCst);
        self.inner.load_balancers().await
    }
    async fn apply(
        &self,
        zone: &Zone,
        batch: &[DnsChange],
        comment: &str,
    ) -> Result<String, AwsError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(zone, batch, comment).await
    }
}

struct World {
    env: TestEnv,
    inbox: Inbox,
    route53: aws_sdk_route53::Client,
    dns: Counting,
    zone: String,
    zone_id: String,
    ns: String,
    lb: (String, String),
    /// What a warm instance remembers; each run starts as a new process (in memory here;
    /// moto's DynamoDB is tested in idempotency.rs).
    store: Memory,
}

impl World {
    async fn new() -> Result<World> {
        World::build(None).await
    }

    /// The zone in a member account, which dns-sync lists and writes through the member role.
    async fn with_member_zone() -> Result<World> {
        World::build(Some(MEMBER_ACCOUNT)).await
    }

    async fn build(member: Option<&str>) -> Result<World> {
        let env = TestEnv::aws().await;
        let inbox = Inbox::create(&env.sdk).await?;
        let zone_sdk = match member {
            Some(account) => acting_in(&env.sdk, account).await,
            None => env.sdk.clone(),
        };
        let route53 = aws_sdk_route53::Client::new(&zone_sdk);
        let zone = format!("{}.example.com", unique("shop"));
        let created = route53
            .create_hosted_zone()
            .name(&zone)
            .caller_reference(unique("ref"))
            .send()
            .await?;
        let zone_id = created
            .hosted_zone()
            .context("zone")?
            .id()
            .trim_start_matches("/hostedzone/")
            .to_owned();
        let lb = load_balancer(&env.region, &unique("k8s-shop"), false)?;
        let inner = match member {
            Some(account) => AwsDns::across(
                &hub_accounts(&env.sdk, "dns-sync"),
                &[account.to_owned()],
                &[],
            ),
            None => AwsDns::new(
                aws_sdk_route53::Client::new(&env.sdk),
                aws_sdk_elasticloadbalancingv2::Client::new(&env.sdk),
            ),
        };
        let dns = Counting {
            inner,
            applies: AtomicUsize::new(0),
            lb_listings: AtomicUsize::new(0),
            zone_listings: AtomicUsize::new(0),
            zone_reads: AtomicUsize::new(0),
        };
        Ok(World {
            env,
            inbox,
            route53,
            dns,
            zone,
            zone_id,
            ns: unique("shop"),
            lb,
            store: Memory::default(),
        })
    }

    fn config(&self, extra: &[(&str, &str)]) -> dns_sync::Config {
        let clusters = format!("prod={}", kmock().url);
        // The test's namespace may claim the zone, its apex included.
        let host_policy = format!("{ns}={zone},{ns}=@{zone}", ns = self.ns, zone = self.zone);
        let mut vars = vec![
            ("HOST_POLICY", host_policy.as_str()),
            ("LOCAL_HTTP_CLUSTERS", "true"),
            ("ALERTS_TOPIC_ARN", self.inbox.topic_arn.as_str()),
            ("CLUSTERS", clusters.as_str()),
            ("NAMESPACES", self.ns.as_str()),
            ("ZONE_IDS", self.zone_id.as_str()),
            ("OWNER_ID", "bk-test"),
            ("ENVIRONMENT", "prod"),
        ];
        vars.extend_from_slice(extra);
        dns_sync::Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    /// One invocation in a new execution environment: nothing in memory, only the store.
    async fn run(&self, config: &dns_sync::Config) -> Result<Response> {
        let sources = KubeSources::new(
            &config.clusters,
            &bridgekeeper::accounts::Accounts::single(&self.env.sdk),
        );
        let notifier = config.topics.sns(aws_sdk_sns::Client::new(&self.env.sdk));
        let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            repo_root().join("events/dns-sync/schedule.json"),
        )?)?;
        let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(120);
        let state = State::new(&self.store);
        Ok(handle(
            event, deadline, config, &sources, &self.dns, &notifier, &state,
        )
        .await?)
    }

    async fn ingresses(&self) -> Result<Api<Ingress>> {
        let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
            .client()
            .await?;
        Ok(Api::namespaced(client, &self.ns))
    }

    async fn ingress(&self, name: &str, hosts: &[String], lb: &str) -> Result<()> {
        self.annotated_ingress(name, hosts, lb, json!({})).await
    }

    async fn annotated_ingress(
        &self,
        name: &str,
        hosts: &[String],
        lb: &str,
        annotations: serde_json::Value,
    ) -> Result<()> {
        let rules: Vec<_> = hosts.iter().map(|h| json!({"host": h})).collect();
        let ing: Ingress = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": self.ns, "annotations": annotations},
            "spec": {"rules": rules},
            "status": {"loadBalancer": {"ingress": [{"hostname": lb}]}}
        }))?;
        self.ingresses()
            .await?
            .create(&PostParams::default(), &ing)
            .await?;
        Ok(())
    }

    /// (type, alias target or value) of every record at `name`.
    async fn records(&self, name: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .send()
            .await?;
        let mut found: Vec<(String, String)> = out
            .resource_record_sets()
            .iter()
            .filter(|r| r.name().trim_end_matches('.') == name)
            .map(|r| {
                let value = match r.alias_target() {
                    Some(a) => a.dns_name().trim_end_matches('.').to_owned(),
                    None => r
                        .resource_records()
                        .iter()
                        .map(|v| v.value().to_owned())
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                (r.r#type().as_str().to_owned(), value)
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// A record written by someone else (or by an earlier run), straight into moto.
    async fn put_record(&self, name: &str, rtype: RrType, value: &str) -> Result<()> {
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type(rtype)
            .ttl(60)
            .resource_records(ResourceRecord::builder().value(value).build()?)
            .build()?;
        let change = Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(set)
            .build()?;
        self.route53
            .change_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .change_batch(ChangeBatch::builder().changes(change).build()?)
            .send()
            .await?;
        Ok(())
    }

    fn applies(&self) -> usize {
        self.dns.applies.load(Ordering::SeqCst)
    }
}

/// A stage's zone in its own account: listed, read and written with the member role there. The
/// hub's own account has no such zone (moto keeps each account's state apart).
#[tokio::test]
async fn a_zone_in_a_member_account_is_written_through_the_member_role() -> Result<()> {
    let w = World::with_member_zone().await?;
    let api = format!("api.{}", w.zone);
    w.ingress("shop", std::slice::from_ref(&api), &w.lb.0)
        .await?;
    let config = w.config(&[
        ("ZONE_ACCOUNTS", MEMBER_ACCOUNT),
        ("MEMBER_ROLE_NAME", "bridgekeeper-dns-sync"),
        ("ACCOUNT_ID", bridgekeeper_tests::HUB_ACCOUNT),
    ]);
    assert_eq!(config.zone_accounts, [MEMBER_ACCOUNT]);
    let first = w.run(&config).await?;
    assert_eq!(first.zones.len(), 1, "{first:?}");
    assert_eq!(first.zones[0].created, std::slice::from_ref(&api));
    assert_eq!(
        w.records(&api).await?,
        [("A".to_owned(), w.lb.0.to_lowercase())]
    );
    let hub_zones = aws_sdk_route53::Client::new(&w.env.sdk)
        .list_hosted_zones()
        .send()
        .await?;
    assert!(
        hub_zones
            .hosted_zones()
            .iter()
            .all(|z| z.name().trim_end_matches('.') != w.zone),
        "the member's zone is not the hub's"
    );
    // Run again: the member's records are read back through the role, nothing to write.
    w.run(&config).await?;
    assert_eq!(w.applies(), 1);
    Ok(())
}

#[tokio::test]
async fn a_fresh_sync_creates_alias_and_txt_then_reruns_write_nothing() -> Result<()> {
    let w = World::new().await?;
    let (api, apex) = (format!("api.{}", w.zone), w.zone.clone());
    w.ingress("shop", &[api.clone(), apex.clone()], &w.lb.0)
        .await?;
    let config = w.config(&[]);

    let first = w.run(&config).await?;
    assert_eq!(first.zones.len(), 1, "{first:?}");
    let mut created = first.zones[0].created.clone();
    created.sort();
    let mut expected = vec![api.clone(), apex.clone()];
    expected.sort();
    assert_eq!(created, expected);
    assert_eq!(w.applies(), 1);
    assert_eq!(
        w.records(&api).await?,
        [("A".to_owned(), w.lb.0.to_lowercase())]
    );
    assert_eq!(
        w.records(&apex)
            .await?
            .iter()
            .filter(|(t, _)| t == "A")
            .count(),
        1
    );
    let txt = w.records(&format!("_bridgekeeper.{api}")).await?;
    assert_eq!(txt[0].0, "TXT");
    assert!(
        txt[0]
            .1
            .contains("owner=bk-test,cluster=prod,source=ingress/"),
        "{txt:?}"
    );

    // The same event twice more: the clusters want what was applied, so no Route53 call at all
    // (the ledger in the store). The published table names the load balancer's alias zone, so
    // DescribeLoadBalancers is never called.
    let calls = |w: &World| {
        (
            w.dns.zone_listings.load(Ordering::SeqCst),
            w.dns.zone_reads.load(Ordering::SeqCst),
            w.applies(),
        )
    };
    assert_eq!(calls(&w), (1, 1, 1));
    for _ in 0..2 {
        let again = w.run(&config).await?;
        assert!(again.zones.is_empty(), "{again:?}");
        assert_eq!(
            (again.route53.zones_read, again.route53.zones_unchanged),
            (0, 1)
        );
    }
    assert_eq!(calls(&w), (1, 1, 1));
    // Past the drift interval the zone is read again and found right: nothing written.
    let drift = w.run(&w.config(&[("DRIFT_INTERVAL_SECONDS", "0")])).await?;
    assert_eq!(drift.zones[0].unchanged, 2);
    assert!(drift.zones[0].created.is_empty() && drift.zones[0].updated.is_empty());
    assert_eq!(calls(&w), (2, 2, 1));
    assert_eq!(w.dns.lb_listings.load(Ordering::SeqCst), 0);

    let messages = w.inbox.receive().await?;
    assert_eq!(
        messages.len(),
        1,
        "only the run that changed records notifies"
    );
    assert!(
        messages[0]
            .subject
            .as_deref()
            .unwrap()
            .starts_with("[prod] DNS sync: 2 records changed in"),
        "{messages:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_load_balancer_updates_the_record() -> Result<()> {
    let w = World::new().await?;
    let api = format!("api.{}", w.zone);
    w.ingress("shop", std::slice::from_ref(&api), &w.lb.0)
        .await?;
    let config = w.config(&[]);
    w.run(&config).await?;
    let lb2 = load_balancer(&w.env.region, &unique("k8s-shop-v2"), true)?;
    // The AWS Load Balancer Controller's annotation says the new one is dualstack: AAAA too.
    let status = json!({
        "metadata": {"annotations": {"alb.ingress.kubernetes.io/ip-address-type": "dualstack"}},
        "status": {"loadBalancer": {"ingress": [{"hostname": lb2.0}]}}
    });
    w.ingresses()
        .await?
        .patch("shop", &PatchParams::default(), &Patch::Merge(&status))
        .await?;

    let r = w.run(&config).await?;
    assert_eq!(r.zones[0].updated, std::slice::from_ref(&api));
    let records = w.records(&api).await?;
    assert_eq!(
        records,
        [
            ("A".to_owned(), lb2.0.to_lowercase()),
            ("AAAA".to_owned(), lb2.0.to_lowercase())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_foreign_record_is_left_untouched_and_reported() -> Result<()> {
    let w = World::new().await?;
    let www = format!("www.{}", w.zone);
    w.put_record(&www, RrType::Cname, "legacy.example.net")
        .await?;
    w.ingress("shop", std::slice::from_ref(&www), &w.lb.0)
        .await?;

    let r = w.run(&w.config(&[("POLICY", "sync")])).await?;
    assert_eq!(r.zones[0].conflicts.len(), 1);
    assert_eq!(r.zones[0].conflicts[0].host, www);
    assert_eq!(w.applies(), 0);
    assert_eq!(
        w.records(&www).await?,
        [("CNAME".to_owned(), "legacy.example.net".to_owned())]
    );
    let messages = w.inbox.receive().await?;
    assert!(
        messages[0].body.contains("CONFLICT"),
        "{}",
        messages[0].body
    );
    // The same conflict on the next runs (each a cold start) is not mailed again.
    for _ in 0..2 {
        let r = w.run(&w.config(&[("POLICY", "sync")])).await?;
        assert_eq!(r.zones[0].conflicts.len(), 1);
    }
    assert!(w.inbox.receive().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn sync_deletes_only_the_owned_records_of_a_removed_ingress() -> Result<()> {
    let w = World::new().await?;
    let (api, old) = (format!("api.{}", w.zone), format!("old.{}", w.zone));
    w.ingress("shop", std::slice::from_ref(&api), &w.lb.0)
        .await?;
    w.ingress("legacy", std::slice::from_ref(&old), &w.lb.0)
        .await?;
    let config = w.config(&[("POLICY", "sync")]);
    w.run(&config).await?;
    w.ingresses()
        .await?
        .delete("legacy", &DeleteParams::default())
        .await?;

    let upsert_only = w.run(&w.config(&[])).await?;
    assert!(
        upsert_only.zones[0].deleted.is_empty(),
        "upsert-only never deletes"
    );
    let r = w.run(&config).await?;
    assert_eq!(r.zones[0].deleted, std::slice::from_ref(&old));
    assert!(w.records(&old).await?.is_empty());
    assert!(w.records(&format!("_bridgekeeper.{old}")).await?.is_empty());
    assert_eq!(w.records(&api).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn twenty_five_hundred_hosts_sync_in_the_fewest_batches() -> Result<()> {
    let w = World::new().await?;
    let hosts: Vec<String> = (0..2_500).map(|i| format!("h{i:04}.{}", w.zone)).collect();
    w.ingress("many", &hosts, &w.lb.0).await?;
    let config = w.config(&[("DRY_RUN", "true")]);
    let plan = w.run(&config).await?;
    let batches = plan.zones[0].batches;
    // Each host is an alias A plus its TXT; the 32,000-character limit decides the batch count.
    let chars: usize = plan.zones[0]
        .changes
        .iter()
        .map(|c| {
            let r = c.record();
            r.alias.as_ref().map_or_else(
                || r.values.iter().map(String::len).sum(),
                |a| a.dns_name.len(),
            )
        })
        .sum();
    assert_eq!(batches, chars.div_ceil(32_000));
    assert_eq!(w.applies(), 0, "a dry run writes nothing");

    let r = w.run(&w.config(&[])).await?;
    assert_eq!(r.zones[0].created.len(), 2_500);
    assert_eq!(w.applies(), batches);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_call() -> Result<()> {
    use bridgekeeper::Classify;
    let w = World::new().await?;
    let sources = KubeSources::new(
        &w.config(&[]).clusters,
        &bridgekeeper::accounts::Accounts::single(&w.env.sdk),
    );
    let notifier = w
        .config(&[])
        .topics
        .sns(aws_sdk_sns::Client::new(&w.env.sdk));
    let push: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("events/image-rollout/push-latest.json"),
    )?)?;
    let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let state = State::new(&w.store);
    let err = handle(
        push,
        deadline,
        &w.config(&[]),
        &sources,
        &w.dns,
        &notifier,
        &state,
    )
    .await
    .unwrap_err();
    assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
    assert_eq!(
        (w.applies(), w.dns.lb_listings.load(Ordering::SeqCst)),
        (0, 0)
    );
    Ok(())
}

/// The project's starting scenario: a Classic Load Balancer (what a Service of type LoadBalancer
/// gets by default; ELBv2 cannot see it) for the zone apex and `api`. It used to become two
/// CNAMEs, Route53 refused the batch, and neither host was ever written.
#[tokio::test]
async fn the_seed_scenario_gives_the_apex_and_api_alias_records_in_one_batch() -> Result<()> {
    let w = World::new().await?;
    let classic = "default-1854330541.ap-northeast-1.elb.amazonaws.com";
    let (apex, api) = (w.zone.clone(), format!("api.{}", w.zone));
    w.ingress("shop", &[apex.clone(), api.clone()], classic)
        .await?;
    let r = w.run(&w.config(&[])).await?;
    let z = &r.zones[0];
    assert!(z.conflicts.is_empty() && z.rejected.is_empty(), "{z:?}");
    assert_eq!(w.applies(), 1, "one batch");
    let listed = w
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&w.zone_id)
        .send()
        .await?;
    let mut aliases: Vec<(String, String, String)> = listed
        .resource_record_sets()
        .iter()
        .filter_map(|r| {
            let a = r.alias_target()?;
            Some((
                r.name().trim_end_matches('.').to_owned(),
                r.r#type().as_str().to_owned(),
                a.hosted_zone_id().to_owned(),
            ))
        })
        .collect();
    aliases.sort();
    // ap-northeast-1's zone for Classic and Application Load Balancers, from AWS's table.
    assert_eq!(
        aliases,
        [
            (api, "A".to_owned(), "Z14GRHDCWA56QT".to_owned()),
            (apex, "A".to_owned(), "Z14GRHDCWA56QT".to_owned()),
        ]
    );
    assert!(
        !listed
            .resource_record_sets()
            .iter()
            .any(|r| r.r#type().as_str() == "CNAME")
    );
    assert_eq!(w.dns.lb_listings.load(Ordering::SeqCst), 0);
    Ok(())
}

/// A second cluster whose API endpoint accepts connections and never answers (a private
/// endpoint behind a security group that drops the reply): the run cuts it off at its deadline,
/// applies the reachable cluster's hosts, and deletes none of the unreachable one's.
#[tokio::test]
async fn an_unreachable_cluster_holds_its_deletions_and_the_reachable_one_is_applied() -> Result<()>
{
    let w = World::new().await?;
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_url = format!("https://{}", silent.local_addr()?);
    let api = format!("api.{}", w.zone);
    w.ingress("shop", std::slice::from_ref(&api), &w.lb.0)
        .await?;
    // Last run, cluster dr owned dr.<zone>.
    let dr_host = format!("dr.{}", w.zone);
    let clusters = format!("prod={},dr={silent_url}", kmock().url);
    let both = w.config(&[
        ("CLUSTERS", clusters.as_str()),
        ("POLICY", "sync"),
        ("CLUSTER_TIMEOUT_SECONDS", "2"),
    ]);
    let txt = "\"heritage=bridgekeeper,owner=bk-test,cluster=dr,source=ingress/shop/dr\"";
    w.put_record(&dr_host, RrType::Cname, &w.lb.0).await?;
    w.put_record(&format!("_bridgekeeper.{dr_host}"), RrType::Txt, txt)
        .await?;

    let r = w.run(&both).await?;
    assert_eq!(r.cluster_errors.len(), 1, "{r:?}");
    assert_eq!(r.cluster_errors[0].cluster, "dr");
    assert!(
        r.cluster_errors[0].error.contains("no answer within 2 s"),
        "{:?}",
        r.cluster_errors
    );
    let z = &r.zones[0];
    assert_eq!(z.created, std::slice::from_ref(&api));
    assert!(z.deleted.is_empty());
    assert_eq!(z.held[0].host, dr_host);
    assert_eq!(w.records(&dr_host).await?.len(), 1, "dr's record kept");
    let messages = w.inbox.receive().await?;
    assert!(
        messages[0]
            .body
            .contains("cluster dr: no answer within 2 s"),
        "{}",
        messages[0].body
    );
    drop(silent);
    Ok(())
}

/// An object of a Gateway API kind, created with its status (kmock keeps what it is given).
async fn create_gateway_api(
    w: &World,
    kind: &str,
    plural: &str,
    object: serde_json::Value,
) -> Result<()> {
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let resource = kube::discovery::ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, &w.ns, &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(object)?;
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// The "done when": a Gateway with an HTTPRoute, and an Ingress whose only hosts are its
/// TLS hosts, in kmock; both get their alias and ownership records. The experimental route kinds
/// (TLSRoute, TCPRoute, UDPRoute) are not served there, as on a cluster with the standard
/// channel only: not an error.
#[tokio::test]
async fn a_gateway_route_and_a_tls_only_ingress_get_their_records() -> Result<()> {
    let w = World::new().await?;
    let (gw_host, tls_host) = (format!("gw.{}", w.zone), format!("secure.{}", w.zone));
    create_gateway_api(&w, "Gateway", "gateways", json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": w.ns},
        "spec": {"gatewayClassName": "alb", "listeners": [
            {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": format!("*.{}", w.zone)}]},
        "status": {"addresses": [{"type": "Hostname", "value": w.lb.0}]}
    }))
    .await?;
    create_gateway_api(&w, "HTTPRoute", "httproutes", json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "api", "namespace": w.ns},
        "spec": {"hostnames": [gw_host, "elsewhere.example.org"], "parentRefs": [{"name": "web"}]},
        "status": {"parents": [{"parentRef": {"name": "web"}, "controllerName": "gateway.k8s.aws/alb",
            "conditions": [{"type": "Accepted", "status": "True"}]}]}
    }))
    .await?;
    let ing: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "secure", "namespace": w.ns},
        "spec": {"tls": [{"hosts": [tls_host], "secretName": "secure-tls"}],
                 "defaultBackend": {"service": {"name": "web", "port": {"number": 443}}}},
        "status": {"loadBalancer": {"ingress": [{"hostname": w.lb.0}]}}
    }))?;
    w.ingresses()
        .await?
        .create(&PostParams::default(), &ing)
        .await?;

    let r = w.run(&w.config(&[])).await?;
    assert!(r.cluster_errors.is_empty(), "{:?}", r.cluster_errors);
    let z = &r.zones[0];
    assert_eq!(z.created, [gw_host.clone(), tls_host.clone()], "{z:?}");
    for host in [&gw_host, &tls_host] {
        let records = w.records(host).await?;
        assert_eq!(records, [("A".to_owned(), w.lb.0.clone())], "{host}");
    }
    let txt = w.records(&format!("_bridgekeeper.{gw_host}")).await?;
    assert!(
        txt[0].1.contains(&format!("source=httproute/{}/api", w.ns)),
        "{txt:?}"
    );
    Ok(())
}
