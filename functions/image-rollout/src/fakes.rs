//! The crate's test doubles, for any of its tests: a cluster API that keeps its workloads as
//! JSON and applies real JSON patches (test ops included), and an ECR that knows the tags the
//! sample events push; and the harness that delivers the sample events to the handler.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use bridgekeeper::Error;
use bridgekeeper::cluster::ClusterError;
use bridgekeeper::config::Env;
use bridgekeeper::notify::Notifier;
use bridgekeeper::notify::testing::Recorder;
use serde_json::{Value, json};

use crate::config::Config;
use crate::kube::Kube;
use crate::registry::Registry;
use crate::report::Response;
use crate::workload::{Kind, Workload};

#[derive(Default)]
pub struct FakeKube {
    pub objects: Mutex<HashMap<(String, String, String), Value>>,
    pub failing: HashMap<String, u16>,
    /// Statuses the next patches answer with, in order, before patches go through.
    pub patch_errors: Mutex<std::collections::VecDeque<u16>>,
    pub patches: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub lists_in_flight: AtomicUsize,
    pub max_lists_in_flight: AtomicUsize,
    pub calls: AtomicUsize,
    pub status: Option<Value>,
    /// Pods every `pods` call returns.
    pub pods: Vec<Value>,
    /// (cluster, namespace, name, image): another writer sets this image just before the
    /// next patch lands (a second push of the tag, rolled at the same time).
    pub raced_by: Mutex<Option<(String, String, String, String)>>,
    /// A cluster whose API server accepts requests and never answers.
    pub hanging: Option<&'static str>,
}

pub fn api_error(cluster: &str, code: u16) -> ClusterError {
    ClusterError::api(
        cluster,
        "call",
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        })),
    )
}

impl FakeKube {
    pub fn add(&self, cluster: &str, ns: &str, name: &str, image: &str, annotations: Value) {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations, "generation": 1},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        });
        self.objects
            .lock()
            .unwrap()
            .insert((cluster.into(), ns.into(), name.into()), d);
    }

    /// Any workload kind, as JSON (names are unique per namespace across kinds here).
    pub fn add_object(&self, cluster: &str, v: Value) {
        let key = (
            cluster.to_owned(),
            v["metadata"]["namespace"].as_str().unwrap().to_owned(),
            v["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        self.objects.lock().unwrap().insert(key, v);
    }

    pub fn image(&self, cluster: &str, ns: &str, name: &str) -> String {
        let objects = self.objects.lock().unwrap();
        let v = &objects[&(cluster.into(), ns.into(), name.into())];
        let kind = Workload::from_json(v.clone()).unwrap().kind;
        v.pointer(&format!("{}/spec/containers/0/image", kind.template_path()))
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }
}

impl Kube for FakeKube {
    async fn list(
        &self,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Workload>, ClusterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(code) = self.failing.get(cluster) {
            return Err(api_error(cluster, *code));
        }
        if self.hanging == Some(cluster) {
            std::future::pending::<()>().await;
        }
        let now = self.lists_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_lists_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.lists_in_flight.fetch_sub(1, Ordering::SeqCst);
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((c, ns, _), _)| c == cluster && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| Workload::from_json(v.clone()).unwrap())
            .collect())
    }

    async fn get(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Workload, ClusterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut v =
            self.objects.lock().unwrap()[&(cluster.into(), namespace.into(), name.into())].clone();
        if let Some(s) = &self.status {
            v["status"] = s.clone();
        }
        let w = Workload::from_json(v).unwrap();
        assert_eq!(w.kind, kind);
        Ok(w)
    }

    async fn patch(
        &self,
        cluster: &str,
        kind: Kind,
        namespace: &str,
        name: &str,
        ops: &[Value],
    ) -> Result<Workload, ClusterError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(code) = self.patch_errors.lock().unwrap().pop_front() {
            return Err(api_error(cluster, code));
        }
        if let Some((c, ns, n, image)) = self.raced_by.lock().unwrap().take() {
            let mut objects = self.objects.lock().unwrap();
            let v = objects.get_mut(&(c, ns, n)).unwrap();
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.patches.fetch_add(1, Ordering::SeqCst);
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
        let mut objects = self.objects.lock().unwrap();
        let v = objects
            .get_mut(&(cluster.into(), namespace.into(), name.into()))
            .unwrap();
        json_patch::patch(v, &patch).map_err(|_| api_error(cluster, 422))?;
        v["metadata"]["generation"] = json!(v["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        let w = Workload::from_json(v.clone()).unwrap();
        assert_eq!(w.kind, kind);
        Ok(w)
    }

    async fn pods(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, ClusterError> {
        Ok(self
            .pods
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect())
    }
}

pub const LATEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd";
pub const STABLE: &str = "sha256:3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b";
pub const NEWER: &str = "sha256:aaaa5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091aaa";

/// ECR as the event files describe it (latest and stable at their events' digests), with
/// tags moved by a test; `broken` answers AccessDenied.
#[derive(Default)]
pub struct FakeEcr {
    pub moved: Mutex<HashMap<String, Option<String>>>,
    pub broken: bool,
    pub calls: AtomicUsize,
    /// Answers for shop/api given before anything else, one per call.
    pub answers: Mutex<std::collections::VecDeque<Option<String>>>,
    /// shop/api's other tags, `tag → digest`, as DescribeImages lists them.
    pub versions: crate::catchup::Tags,
    pub listings: AtomicUsize,
}

impl FakeEcr {
    /// A `broken` registry's answer: AccessDenied, as ECR gives it to a role it does not allow.
    fn refuse(&self) -> Result<(), bridgekeeper::AwsError> {
        if self.broken {
            return Err(bridgekeeper::AwsError::fake(
                "ecr:DescribeImages",
                "AccessDeniedException",
                400,
                "not authorized to perform ecr:DescribeImages",
            ));
        }
        Ok(())
    }

    pub fn moved(tag: &str, digest: Option<&str>) -> Self {
        let ecr = FakeEcr::default();
        ecr.moved
            .lock()
            .unwrap()
            .insert(tag.into(), digest.map(str::to_owned));
        ecr
    }
}

impl Registry for FakeEcr {
    async fn current_digest(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, bridgekeeper::AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!((account, region), ("123456789012", "eu-west-1"));
        self.refuse()?;
        if repository == "shop/api"
            && let Some(answer) = self.answers.lock().unwrap().pop_front()
        {
            return Ok(answer);
        }
        if let Some(d) = self.moved.lock().unwrap().get(tag)
            && repository == "shop/api"
        {
            return Ok(d.clone());
        }
        if repository == "shop/api"
            && let Some(d) = self.versions.get(tag)
        {
            return Ok(Some(d.clone()));
        }
        Ok(match (repository, tag) {
            ("shop/api", "latest") => Some(LATEST.into()),
            ("shop/api", "stable") => Some(STABLE.into()),
            _ => None,
        })
    }

    async fn tagged_images(
        &self,
        account: &str,
        region: &str,
        repository: &str,
    ) -> Result<crate::catchup::Tags, bridgekeeper::AwsError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        assert_eq!((account, region), ("123456789012", "eu-west-1"));
        self.refuse()?;
        if repository != "shop/api" {
            return Ok(crate::catchup::Tags::new());
        }
        let mut tags = self.versions.clone();
        tags.insert("latest".into(), LATEST.into());
        tags.insert("stable".into(), STABLE.into());
        Ok(tags)
    }
}

// The harness: the sample events, the default rules, and the clusters they roll.

/// One delivery of an event file with the default rules and ECR as the events describe it.
pub async fn deliver(kube: &FakeKube, n: &Recorder, file: &str) -> Response {
    handle(event(file), &config(&[]), kube, &FakeEcr::default(), n)
        .await
        .unwrap()
}

/// The handler with five minutes left in the invocation.
pub async fn handle<K: Kube, R: Registry, N: Notifier>(
    event: Value,
    config: &Config,
    kube: &K,
    registry: &R,
    notifier: &N,
) -> Result<Response, Error> {
    let deadline = std::time::SystemTime::now() + Duration::from_secs(300);
    let memory = bridgekeeper::idempotency::testing::Memory::default();
    crate::handler::handle(event, deadline, config, kube, registry, notifier, &memory).await
}

pub const PUSH_LATEST: &str = include_str!("../../../events/image-rollout/push-latest.json");

pub const PUSH_STABLE: &str = include_str!("../../../events/image-rollout/push-stable.json");

pub const PUSH_FAILED: &str = include_str!("../../../events/image-rollout/push-failed.json");

pub const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

pub const PUSH_UNTAGGED: &str = include_str!("../../../events/image-rollout/push-untagged.json");

pub const PUSH_ATTESTATION: &str =
    include_str!("../../../events/image-rollout/push-attestation.json");

pub const RECONCILE: &str = include_str!("../../../events/image-rollout/reconcile.json");

/// Deployments per cluster as JSON; patches applied with the json-patch crate, as the API
/// server would.
pub fn config(extra: &[(&'static str, &'static str)]) -> Config {
    let base = [
        (
            "ALERTS_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
        ),
        ("CLUSTERS", "dev=dev-eks,prod=prod-eks"),
        (
            "ROLLOUT_RULES",
            r#"[{"repository": "shop/*", "tag": "latest", "clusters": ["dev"]},
                {"repository": "shop/*", "tag": "stable", "clusters": ["prod"]}]"#,
        ),
        ("WATCH", "false"),
        ("ACCOUNT_ID", "123456789012"),
        ("AWS_REGION", "eu-west-1"),
        ("ROLLOUT_MODE", "opt-out"),
    ];
    Config::from_env(&Env::from_pairs(base.iter().chain(extra).copied())).unwrap()
}

pub fn event(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

pub fn world() -> FakeKube {
    let kube = FakeKube::default();
    let latest = format!("{REGISTRY}/shop/api:latest");
    kube.add("dev", "shop", "api", &latest, json!({}));
    kube.add("dev", "shop", "worker", &latest, json!({}));
    kube.add("dev", "other", "api", &latest, json!({}));
    kube.add(
        "dev",
        "shop",
        "frozen",
        &latest,
        json!({"bridgekeeper.io/rollout": "false"}),
    );
    kube.add(
        "dev",
        "shop",
        "web",
        &format!("{REGISTRY}/shop/web:latest"),
        json!({}),
    );
    kube.add(
        "prod",
        "shop",
        "api",
        &format!("{REGISTRY}/shop/api:stable"),
        json!({}),
    );
    kube
}

pub fn pushed(digest: &str, time: &str) -> Value {
    let mut e = event(&PUSH_LATEST.replace(LATEST, digest));
    e["time"] = json!(time);
    e
}

pub fn stuck_pod(reason: &str, message: &str, digest: &str) -> Value {
    json!({
        "metadata": {"name": "api-7d9f-x1", "annotations": {"bridgekeeper.io/image-digest": digest}},
        "status": {"containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}
    })
}

pub fn one_deployment() -> FakeKube {
    let kube = FakeKube::default();
    kube.add(
        "dev",
        "shop",
        "api",
        &format!("{REGISTRY}/shop/api:latest"),
        json!({}),
    );
    kube
}

pub fn watching(extra: &[(&'static str, &'static str)]) -> Config {
    let mut vars = vec![
        ("WATCH", "true"),
        ("WATCH_TIMEOUT_SECONDS", "120"),
        ("WATCH_POLL_SECONDS", "5"),
    ];
    vars.extend_from_slice(extra);
    config(&vars)
}
