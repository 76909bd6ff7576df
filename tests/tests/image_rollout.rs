//! image-rollout against kmock (Deployments in several namespaces) and moto (ECR PutImage and
//! DescribeImages, EKS DescribeCluster, SNS read back through SQS). Each test pushes to its own
//! ECR repository, so tests running at once never move each other's tags.

use anyhow::Result;
use bridgekeeper::accounts::Scope;
use bridgekeeper::config::Env;
use bridgekeeper_tests::{
    HUB_ACCOUNT, Inbox, MEMBER_ACCOUNT, Proxy, TestEnv, acting_in, ecr_push, eks_cluster,
    hub_accounts, kmock, moto, repo_root, sdk_config_at, unique,
};
use image_rollout::handler::handle;
use image_rollout::kube::KubeClusters;
use image_rollout::registry::Ecr;
use image_rollout::report::Response;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;

const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn event_file(name: &str) -> serde_json::Value {
    let path = repo_root().join("events/image-rollout").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn deployments() -> Result<Api<Deployment>> {
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    Ok(Api::all(client))
}

async fn create(ns: &str, name: &str, image: &str, annotations: serde_json::Value) -> Result<()> {
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))?;
    Api::<Deployment>::namespaced(client, ns)
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

/// A Deployment a GitOps controller applied: its labels and annotations say which.
async fn create_owned(
    ns: &str,
    name: &str,
    image: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> Result<()> {
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))?;
    Api::<Deployment>::namespaced(client, ns)
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

async fn image(ns: &str, name: &str) -> Result<String> {
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let d = Api::<Deployment>::namespaced(client, ns).get(name).await?;
    Ok(d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap())
}

struct World {
    env: TestEnv,
    inbox: Inbox,
    shop: String,
    api: String,
    /// This test's repository, `shop/api-<n>`.
    repo: String,
    /// What the function remembers (the holds it named), on a table of its own in moto.
    store: bridgekeeper::idempotency::DynamoStore,
}

impl World {
    /// Two namespaces of this test's own: matching Deployments, one on `stable`, one of another
    /// repository, one opted out.
    async fn new() -> Result<World> {
        let env = TestEnv::aws().await;
        let inbox = Inbox::create(&env.sdk).await?;
        let (shop, api) = (unique("shop"), unique("api"));
        let repo = format!("shop/{}", unique("api"));
        let latest = format!("{REGISTRY}/{repo}:latest");
        create(&shop, "api", &latest, json!({})).await?;
        create(&shop, "worker", &format!("{REGISTRY}/{repo}"), json!({})).await?;
        create(
            &shop,
            "frozen",
            &latest,
            json!({"bridgekeeper.io/rollout": "false"}),
        )
        .await?;
        create(
            &shop,
            "web",
            &format!("{REGISTRY}/shop/web:latest"),
            json!({}),
        )
        .await?;
        create(&api, "api", &latest, json!({})).await?;
        create(
            &api,
            "api-stable",
            &format!("{REGISTRY}/{repo}:stable"),
            json!({}),
        )
        .await?;
        deployments().await?;
        let store =
            bridgekeeper_tests::idempotency_store(&env.sdk, image_rollout::FUNCTION).await?;
        Ok(World {
            store,
            env,
            inbox,
            shop,
            api,
            repo,
        })
    }

    /// Pushes an image to ECR and returns its push event (and digest), as ECR would send it.
    async fn push(&self, tag: &str, layer: u8) -> Result<(serde_json::Value, String)> {
        let digest = ecr_push(&self.env.sdk, &self.repo, tag, layer).await?;
        Ok((self.event("push-latest.json", tag, &digest), digest))
    }

    /// An event file for this test's repository.
    fn event(&self, file: &str, tag: &str, digest: &str) -> serde_json::Value {
        let mut e = event_file(file);
        e["detail"]["repository-name"] = json!(self.repo);
        e["detail"]["image-tag"] = json!(tag);
        e["detail"]["image-digest"] = json!(digest);
        e
    }

    fn config(&self, clusters: &str, extra: &[(&str, &str)]) -> image_rollout::Config {
        let rules = json!([
            {"repository": "shop/*", "tag": "latest", "clusters": ["dev"], "namespaces": [self.shop, self.api]},
            {"repository": "shop/*", "tag": "stable", "clusters": ["prod"], "namespaces": [self.api]},
        ])
        .to_string();
        let mut vars = vec![
            ("ALERTS_TOPIC_ARN", self.inbox.topic_arn.as_str()),
            ("CLUSTERS", clusters),
            ("LOCAL_HTTP_CLUSTERS", "true"),
            ("ROLLOUT_RULES", rules.as_str()),
            ("WATCH_TIMEOUT_SECONDS", "0"),
            // These tests are about rolling; opt-in (the default) has its own tests.
            ("ROLLOUT_MODE", "opt-out"),
        ];
        vars.extend_from_slice(extra);
        image_rollout::Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    async fn run(
        &self,
        config: &image_rollout::Config,
        event: serde_json::Value,
    ) -> Result<Response> {
        let single = bridgekeeper::accounts::Accounts::single(&self.env.sdk);
        self.run_with(config, event, &single).await
    }

    async fn run_with(
        &self,
        config: &image_rollout::Config,
        event: serde_json::Value,
        accounts: &bridgekeeper::accounts::Accounts,
    ) -> Result<Response> {
        let clusters = KubeClusters::new(&config.clusters, accounts);
        let notifier = config.topics.sns(aws_sdk_sns::Client::new(&self.env.sdk));
        let ecr = Ecr::new(&self.env.sdk);
        let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(300);
        Ok(handle(
            event,
            deadline,
            config,
            &clusters,
            &ecr,
            &notifier,
            &self.store,
        )
        .await?)
    }
}

#[tokio::test]
async fn a_push_rolls_exactly_the_matching_deployments_once_even_when_delivered_three_times()
-> Result<()> {
    let w = World::new().await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let config = w.config(&dev, &[]);

    let (pushed, digest) = w.push("latest", 1).await?;
    let first = w.run(&config, pushed.clone()).await?;
    let rolled: Vec<_> = first.clusters[0]
        .rolled
        .iter()
        .map(|r| format!("{}/{}", r.workload.namespace, r.workload.name))
        .collect();
    let mut expected = vec![
        format!("{}/api", w.api),
        format!("{}/api", w.shop),
        format!("{}/worker", w.shop),
    ];
    expected.sort();
    assert_eq!(rolled, expected, "{first:?}");
    let pinned = format!("{REGISTRY}/{}@{digest}", w.repo);
    assert_eq!(image(&w.shop, "api").await?, pinned);
    assert_eq!(image(&w.shop, "worker").await?, pinned);
    assert_eq!(image(&w.api, "api").await?, pinned);
    assert_eq!(
        image(&w.shop, "frozen").await?,
        format!("{REGISTRY}/{}:latest", w.repo)
    );
    assert_eq!(
        image(&w.shop, "web").await?,
        format!("{REGISTRY}/shop/web:latest")
    );
    assert_eq!(
        image(&w.api, "api-stable").await?,
        format!("{REGISTRY}/{}:stable", w.repo)
    );

    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let d = Api::<Deployment>::namespaced(client, &w.shop)
        .get("api")
        .await?;
    let annotations = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations["bridgekeeper.io/image-digest"], digest);
    // The event's time is the sender's word: nothing of it is written to the workload.
    assert!(!annotations.contains_key("bridgekeeper.io/pushed-at"));
    assert_eq!(
        annotations["bridgekeeper.io/tracked-tags"],
        r#"{"app":"latest"}"#
    );

    for _ in 0..2 {
        let again = w.run(&config, pushed.clone()).await?;
        assert!(again.clusters[0].rolled.is_empty(), "{again:?}");
        let already = again.clusters[0]
            .skipped
            .iter()
            .filter(|s| s.reason.starts_with("already at"))
            .count();
        assert_eq!(already, 3);
    }

    let messages = w.inbox.receive().await?;
    assert_eq!(
        messages.len(),
        1,
        "one notification: the later deliveries changed nothing"
    );
    let short = &digest["sha256:".len()..][..12];
    assert_eq!(
        messages[0].subject.clone().unwrap(),
        format!(
            "[dev] {}:latest ({short}) rolled to 3 Deployments in dev",
            w.repo
        )
    );
    assert!(
        messages[0].body.contains("opted out"),
        "{}",
        messages[0].body
    );
    Ok(())
}

#[tokio::test]
async fn another_tag_a_failed_push_and_a_dry_run_touch_nothing() -> Result<()> {
    let w = World::new().await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let latest = format!("{REGISTRY}/{}:latest", w.repo);
    let (pushed, _) = w.push("latest", 2).await?;

    let dry = w
        .run(&w.config(&dev, &[("DRY_RUN", "true")]), pushed)
        .await?;
    assert_eq!(dry.clusters[0].rolled.len(), 3);
    let (version, _) = w.push("v1.4.2", 3).await?;
    let version = w.run(&w.config(&dev, &[]), version).await?;
    assert_eq!(
        version.ignored.clone().unwrap(),
        format!("no rule matches {}:v1.4.2", w.repo)
    );
    let mut failed = event_file("push-failed.json");
    failed["detail"]["repository-name"] = json!(w.repo);
    let failed = w.run(&w.config(&dev, &[]), failed).await?;
    let untagged = w
        .run(&w.config(&dev, &[]), event_file("push-untagged.json"))
        .await?;
    assert!(untagged.ignored.unwrap().starts_with("untagged push"));
    assert!(failed.ignored.unwrap().contains("FAILURE"));

    assert_eq!(image(&w.shop, "api").await?, latest);
    assert_eq!(image(&w.api, "api").await?, latest);
    assert!(w.inbox.receive().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn an_eks_cluster_that_cannot_be_used_is_reported_and_the_other_still_rolls() -> Result<()> {
    let w = World::new().await?;
    let name = unique("prod-eks");
    eks_cluster(&w.env.sdk, HUB_ACCOUNT, &name).await?;
    // moto answers DescribeCluster, but with a CA that is not a certificate.
    let clusters = format!("dev={},prod={name}", kmock().url);
    let rules = json!([
        {"repository": "shop/*", "tag": "latest", "clusters": ["prod", "dev"], "namespaces": [w.shop]},
    ])
    .to_string();
    let config = w.config(&clusters, &[("ROLLOUT_RULES", rules.as_str())]);
    let (pushed, _) = w.push("latest", 4).await?;
    let r = w.run(&config, pushed).await?;
    let prod = r.clusters.iter().find(|c| c.cluster == "prod").unwrap();
    let error = prod.error.as_deref().unwrap();
    assert!(
        error.contains(&format!(
            "cluster eks:{name} cannot be reached: certificate authority data"
        )),
        "{error}"
    );
    let dev = r.clusters.iter().find(|c| c.cluster == "dev").unwrap();
    assert_eq!(dev.rolled.len(), 2);
    let messages = w.inbox.receive().await?;
    assert_eq!(messages[0].attributes["severity"], "error");
    Ok(())
}

/// A cluster given by its ARN in a member account is described there, with the member role:
/// moto's cluster exists only in the member account, and what stops the rollout is its CA (moto's
/// is not a certificate), not a missing cluster. The token itself is checked in
/// `bridgekeeper::cluster`'s tests, which moto cannot serve (no usable endpoint).
#[tokio::test]
async fn an_eks_cluster_arn_in_a_member_account_is_described_with_the_member_role() -> Result<()> {
    let w = World::new().await?;
    let member = acting_in(&w.env.sdk, MEMBER_ACCOUNT).await;
    let name = unique("staging-eks");
    eks_cluster(&member, MEMBER_ACCOUNT, &name).await?;
    let arn = format!(
        "arn:aws:eks:{}:{MEMBER_ACCOUNT}:cluster/{name}",
        w.env.region
    );
    let rules = json!([
        {"repository": "shop/*", "tag": "latest", "clusters": ["staging", "hub"], "namespaces": [w.shop]},
    ])
    .to_string();
    let clusters = format!("staging={arn},hub={name}");
    let config = w.config(
        &clusters,
        &[
            ("ROLLOUT_RULES", rules.as_str()),
            ("ACCOUNT_ID", HUB_ACCOUNT),
            ("MEMBER_ROLE_NAME", "bridgekeeper-image-rollout"),
        ],
    );
    let (pushed, _) = w.push("latest", 9).await?;
    let accounts = hub_accounts(&w.env.sdk, "image-rollout");
    let r = w.run_with(&config, pushed, &accounts).await?;
    let error = |alias: &str| {
        r.clusters
            .iter()
            .find(|c| c.cluster == alias)
            .and_then(|c| c.error.clone())
            .unwrap_or_default()
    };
    assert!(
        error("staging").contains(&format!(
            "cluster eks:{name} (account {MEMBER_ACCOUNT} in {}) cannot be reached: certificate authority data",
            w.env.region
        )),
        "{}",
        error("staging")
    );
    // The same name in the hub's own account: not there.
    assert!(
        error("hub").contains("ResourceNotFound"),
        "{}",
        error("hub")
    );
    Ok(())
}

/// The whole way, as far as stand-ins go: a cluster given by its ARN in a member account is
/// described there (moto, the member's cluster), reached at its endpoint (kmock: a proxy gives
/// moto's answer the endpoint and CA moto cannot), and called with a token signed by the member
/// role's credentials, in the cluster's region. The rollout happens.
#[tokio::test]
async fn a_member_accounts_cluster_is_rolled_with_a_token_of_the_member_role() -> Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let w = World::new().await?;
    let member = acting_in(&w.env.sdk, MEMBER_ACCOUNT).await;
    let name = unique("staging-eks");
    eks_cluster(&member, MEMBER_ACCOUNT, &name).await?;

    let cluster_api = Proxy::start(&kmock().url, |_, body| body).await?;
    let pem = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")?;
    let ca = STANDARD.encode(
        pem.split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap_or_default(),
    );
    let endpoint = cluster_api.url.clone();
    let aws = Proxy::start(&moto().url, move |request, body| {
        if !request.starts_with("GET /clusters/") {
            return body;
        }
        let mut described: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        described["cluster"]["endpoint"] = json!(endpoint);
        described["cluster"]["certificateAuthority"]["data"] = json!(ca);
        described.to_string()
    })
    .await?;
    let hub = sdk_config_at(&aws.url, &w.env.region).await;
    let accounts = hub_accounts(&hub, "image-rollout");

    let arn = format!(
        "arn:aws:eks:{}:{MEMBER_ACCOUNT}:cluster/{name}",
        w.env.region
    );
    let clusters = format!("staging={arn}");
    let rules = json!([
        {"repository": "shop/*", "tag": "latest", "clusters": ["staging"], "namespaces": [w.shop]},
    ])
    .to_string();
    let config = w.config(
        &clusters,
        &[
            ("ROLLOUT_RULES", rules.as_str()),
            ("ACCOUNT_ID", HUB_ACCOUNT),
            ("MEMBER_ROLE_NAME", "bridgekeeper-image-rollout"),
        ],
    );
    let (pushed, digest) = w.push("latest", 11).await?;
    let r = w.run_with(&config, pushed, &accounts).await?;
    let staging = r.clusters.iter().find(|c| c.cluster == "staging").unwrap();
    assert!(staging.error.is_none(), "{staging:?}");
    assert_eq!(staging.rolled.len(), 2, "{staging:?}");
    assert!(image(&w.shop, "api").await?.ends_with(&digest));

    // The AssumeRole went to STS for the member role; DescribeCluster was signed as that role.
    let member_key = accounts
        .sdk(&Scope::account(MEMBER_ACCOUNT).in_region(&w.env.region))
        .await?
        .credentials_provider()
        .unwrap()
        .provide_credentials()
        .await?
        .access_key_id()
        .to_owned();
    let calls = aws.requests();
    let described = calls
        .iter()
        .find(|h| h.starts_with(&format!("GET /clusters/{name}")))
        .expect("DescribeCluster went through the proxy");
    assert!(
        described.contains(&format!("Credential={member_key}/")),
        "{described}"
    );
    // Every call to the cluster carried a token whose presigned URL is the member role's, in
    // the cluster's region.
    let tokens: Vec<String> = cluster_api
        .requests()
        .iter()
        .filter_map(|h| {
            h.lines()
                .find_map(|l| l.strip_prefix("authorization: Bearer k8s-aws-v1."))
                .map(|t| String::from_utf8(URL_SAFE_NO_PAD.decode(t.trim()).unwrap()).unwrap())
        })
        .collect();
    assert!(!tokens.is_empty(), "{:?}", cluster_api.requests());
    assert_eq!(tokens.len(), cluster_api.requests().len());
    for url in &tokens {
        assert!(
            url.starts_with(&format!("https://sts.{}.amazonaws.com/", w.env.region)),
            "{url}"
        );
        assert!(
            url.contains(&format!("X-Amz-Credential={member_key}%2F")),
            "{url}"
        );
    }
    Ok(())
}

/// A late delivery of an older push: ECR says the tag has moved on, so nothing moves back.
#[tokio::test]
async fn a_late_event_of_an_older_push_never_moves_a_workload_back() -> Result<()> {
    let w = World::new().await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let config = w.config(&dev, &[]);
    let (older, _) = w.push("latest", 5).await?;
    let (newer, newest) = w.push("latest", 6).await?;
    w.run(&config, newer).await?;
    let late = w.run(&config, older).await?;
    assert_eq!(late.superseded_by.as_deref(), Some(newest.as_str()));
    assert!(late.clusters.is_empty());
    assert_eq!(
        image(&w.shop, "api").await?,
        format!("{REGISTRY}/{}@{newest}", w.repo)
    );
    Ok(())
}

/// ECR's events are best effort: a push whose event never came is caught up by the scheduled
/// reconcile, and a second reconcile changes nothing.
#[tokio::test]
async fn the_reconcile_catches_up_a_missed_push_and_then_makes_zero_patches() -> Result<()> {
    let w = World::new().await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let config = w.config(&dev, &[]);
    let latest = ecr_push(&w.env.sdk, &w.repo, "latest", 7).await?;
    let stable = ecr_push(&w.env.sdk, &w.repo, "stable", 8).await?;

    let r = w.run(&config, event_file("reconcile.json")).await?;
    let mine = |c: &image_rollout::report::ClusterReport| -> Vec<String> {
        c.rolled
            .iter()
            .filter(|x| x.workload.namespace == w.shop || x.workload.namespace == w.api)
            .map(|x| format!("{}:{}/{}", c.cluster, x.workload.namespace, x.workload.name))
            .collect()
    };
    let mut rolled: Vec<String> = r.clusters.iter().flat_map(mine).collect();
    rolled.sort();
    let mut expected = vec![
        format!("dev:{}/api", w.api),
        format!("dev:{}/api", w.shop),
        format!("dev:{}/worker", w.shop),
        format!("prod:{}/api-stable", w.api),
    ];
    expected.sort();
    assert_eq!(rolled, expected);
    assert_eq!(
        image(&w.shop, "worker").await?,
        format!("{REGISTRY}/{}@{latest}", w.repo)
    );
    assert_eq!(
        image(&w.api, "api-stable").await?,
        format!("{REGISTRY}/{}@{stable}", w.repo)
    );
    assert!(
        r.images
            .iter()
            .any(|i| i.repository == w.repo && i.digest.as_deref() == Some(latest.as_str()))
    );

    let again = w.run(&config, event_file("reconcile.json")).await?;
    assert!(
        again.clusters.iter().all(|c| mine(c).is_empty()),
        "{again:?}"
    );
    Ok(())
}

/// A version pushed while its event was lost: the reconcile lists the repository's tags in ECR,
/// moves the workload on 1.4.2 to 1.4.3 (not to 2.0.0, outside its range), and the next
/// reconcile moves nothing.
#[tokio::test]
async fn the_reconcile_moves_a_workload_on_1_4_2_to_a_1_4_3_whose_event_never_came() -> Result<()> {
    let w = World::new().await?;
    create(
        &w.shop,
        "versioned",
        &format!("{REGISTRY}/{}:1.4.2", w.repo),
        json!({"bridgekeeper.io/rollout": "true"}),
    )
    .await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let rules = format!(
        r#"[{{"repository": "{}", "semver": "^1.4", "bump": true, "clusters": ["dev"], "namespaces": ["{}"]}}]"#,
        w.repo, w.shop
    );
    let config = w.config(&dev, &[("ROLLOUT_RULES", rules.as_str())]);
    ecr_push(&w.env.sdk, &w.repo, "1.4.2", 21).await?;
    let wanted = ecr_push(&w.env.sdk, &w.repo, "1.4.3", 22).await?;
    ecr_push(&w.env.sdk, &w.repo, "2.0.0", 23).await?;
    let r = w.run(&config, event_file("reconcile.json")).await?;
    let pinned = format!("{REGISTRY}/{}@{wanted}", w.repo);
    assert_eq!(image(&w.shop, "versioned").await?, pinned, "{r:?}");
    let again = w.run(&config, event_file("reconcile.json")).await?;
    assert!(
        again
            .clusters
            .iter()
            .all(|c| c.rolled.iter().all(|x| x.workload.namespace != w.shop)),
        "{again:?}"
    );
    assert_eq!(image(&w.shop, "versioned").await?, pinned);
    Ok(())
}

/// Every workload kind a team runs, in kmock: a StatefulSet, a DaemonSet (the image in an init
/// container) and a CronJob (the template under `spec.jobTemplate`) roll on one push.
#[tokio::test]
async fn a_statefulset_a_daemonset_and_a_cronjob_are_rolled() -> Result<()> {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    use k8s_openapi::api::batch::v1::CronJob;
    let w = World::new().await?;
    let client = bridgekeeper::cluster::ClusterAccess::url(&kmock().url, None)
        .client()
        .await?;
    let ns = w.shop.as_str();
    let latest = format!("{REGISTRY}/{}:latest", w.repo);
    let pod = |labels: &str| {
        json!({"metadata": {"labels": {"app": labels}},
               "spec": {"containers": [{"name": "app", "image": latest}]}})
    };
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": pod("db")}
    }))?;
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sts)
        .await?;
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"initContainers": [{"name": "setup", "image": latest}],
                     "containers": [{"name": "agent", "image": "busybox"}]}}}
    }))?;
    Api::<DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ds)
        .await?;
    let cron: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "report", "namespace": ns},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": latest}]}}}}}
    }))?;
    Api::<CronJob>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cron)
        .await?;

    let dev = format!("dev={0},prod={0}", kmock().url);
    let (pushed, digest) = w.push("latest", 9).await?;
    let r = w.run(&w.config(&dev, &[]), pushed).await?;
    let mut kinds: Vec<String> = r.clusters[0]
        .rolled
        .iter()
        .filter(|x| x.workload.namespace == ns)
        .map(|x| format!("{} {}", x.workload.kind, x.workload.name))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "CronJob report",
            "DaemonSet agent",
            "Deployment api",
            "Deployment worker",
            "StatefulSet db"
        ]
    );
    let pinned = format!("{REGISTRY}/{}@{digest}", w.repo);
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get("db")
        .await?;
    assert_eq!(
        sts.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some(pinned.as_str())
    );
    let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .get("agent")
        .await?;
    let ds_pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        ds_pod.init_containers.unwrap()[0].image.as_deref(),
        Some(pinned.as_str())
    );
    assert_eq!(ds_pod.containers[0].image.as_deref(), Some("busybox"));
    let cron = Api::<CronJob>::namespaced(client, ns).get("report").await?;
    let job_pod = cron
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(
        job_pod.containers[0].image.as_deref(),
        Some(pinned.as_str())
    );
    Ok(())
}

/// Argo CD's and Flux's workloads are not patched (their controllers would put the image
/// back): each is named once in the push's report with who owns it (the report goes out for
/// them even when nothing else rolled); a rule with `"gitops": "patch"` rolls them.
#[tokio::test]
async fn workloads_argo_cd_and_flux_own_are_left_alone_and_named_once() -> Result<()> {
    let w = World::new().await?;
    let image_ref = format!("{REGISTRY}/{}:latest", w.repo);
    let opted = json!({"bridgekeeper.io/rollout": "true"});
    create_owned(
        &w.shop,
        "argo-api",
        &image_ref,
        json!({"argocd.argoproj.io/instance": "shop-prod"}),
        opted.clone(),
    )
    .await?;
    create_owned(
        &w.shop,
        "flux-api",
        &image_ref,
        json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
        opted,
    )
    .await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let config = w.config(&dev, &[]);
    let (pushed, _) = w.push("latest", 7).await?;
    // A redelivery of the event is stopped by its id before the handler (`once`, tested in
    // idempotency.rs): one delivery here.
    w.run(&config, pushed.clone()).await?;
    assert_eq!(image(&w.shop, "argo-api").await?, image_ref);
    assert_eq!(image(&w.shop, "flux-api").await?, image_ref);
    let messages = w.inbox.receive().await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body = &messages[0].body;
    for (name, owner) in [
        ("argo-api", "Argo CD application shop-prod"),
        ("flux-api", "Flux Kustomization apps"),
    ] {
        assert_eq!(
            body.matches(name).count(),
            1,
            "{name} named once in\n{body}"
        );
        assert!(body.contains(owner), "{owner} not in\n{body}");
    }
    // The next push of the image rolls the others; the holds, named before, are only counted.
    let (next, digest) = w.push("latest", 9).await?;
    w.run(&config, next.clone()).await?;
    let messages = w.inbox.receive().await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body = &messages[0].body;
    assert!(
        !body.contains("argo-api") && !body.contains("flux-api"),
        "{body}"
    );
    assert!(
        body.contains("2 more left for a person, named in an earlier message"),
        "{body}"
    );
    assert_eq!(image(&w.shop, "argo-api").await?, image_ref);

    // The team told its controllers to ignore the image: the rule patches them.
    let rules = format!(
        r#"[{{"repository": "{}", "tag": "latest", "clusters": ["dev"], "gitops": "patch"}}]"#,
        w.repo
    );
    let patching = w.config(&dev, &[("ROLLOUT_RULES", rules.as_str())]);
    let mut again = next.clone();
    again["id"] = format!("{}-again", next["id"].as_str().unwrap_or("push")).into();
    w.run(&patching, again).await?;
    let pinned = format!("{REGISTRY}/{}@{digest}", w.repo);
    assert_eq!(image(&w.shop, "argo-api").await?, pinned);
    assert_eq!(image(&w.shop, "flux-api").await?, pinned);
    Ok(())
}

/// A rule with a semver range and `bump` moves a workload on 1.4.2 to a pushed 1.4.3, and a
/// 1.4.1 pushed later (a late event, an older build) moves nothing back.
#[tokio::test]
async fn a_workload_on_1_4_2_moves_to_a_pushed_1_4_3_and_not_to_a_later_1_4_1() -> Result<()> {
    let w = World::new().await?;
    let on = format!("{REGISTRY}/{}:1.4.2", w.repo);
    create(
        &w.shop,
        "versioned",
        &on,
        json!({"bridgekeeper.io/rollout": "true"}),
    )
    .await?;
    let dev = format!("dev={0},prod={0}", kmock().url);
    let rules = format!(
        r#"[{{"repository": "{}", "semver": "^1.4", "bump": true, "clusters": ["dev"], "namespaces": ["{}"]}}]"#,
        w.repo, w.shop
    );
    let config = w.config(&dev, &[("ROLLOUT_RULES", rules.as_str())]);
    let (newer, digest) = w.push("1.4.3", 11).await?;
    let r = w.run(&config, newer).await?;
    let pinned = format!("{REGISTRY}/{}@{digest}", w.repo);
    assert_eq!(image(&w.shop, "versioned").await?, pinned, "{r:?}");
    let (older, _) = w.push("1.4.1", 12).await?;
    let r = w.run(&config, older).await?;
    assert_eq!(
        image(&w.shop, "versioned").await?,
        pinned,
        "moved down: {r:?}"
    );
    Ok(())
}
