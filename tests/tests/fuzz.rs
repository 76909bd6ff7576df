//! Bad input, fuzzed: every function's entry point gets generated payloads the way the Lambda
//! runtime would hand them over (bytes → the guard → JSON): arbitrary JSON (wrong types, nulls,
//! deep nesting, huge strings, unknown fields), the `events/` samples with one field replaced or
//! removed, and bytes that are not JSON or not UTF-8. For each: no panic; an error is
//! `NonRetryable` with a capped message; and an `InvalidEvent` refusal made no AWS or Kubernetes
//! call and sent nothing. Every port is a fake that counts its calls.
//!
//! `make fuzz` runs it for FUZZ_MINUTES (default 10) with a random seed and prints the figures;
//! without FUZZ_SECONDS (CI) it runs a fixed number of cases from a fixed seed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bridgekeeper::Classify;
use bridgekeeper::cluster::ClusterError;
use bridgekeeper::config::Env;
use bridgekeeper::idempotency::testing::Memory;
use bridgekeeper::notify::testing::Recorder;
use bridgekeeper::{AwsError, Class, Error};
use bridgekeeper_tests::repo_root;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn call() {
    CALLS.fetch_add(1, Ordering::SeqCst);
}

fn refused() -> AwsError {
    AwsError::fake("fake", "AccessDenied", 403, "the fuzz fakes refuse writes")
}

struct Fakes;

impl snapshot_export::aws::Rds for Fakes {
    async fn list_instances(&self) -> Result<Vec<snapshot_export::domain::SourceInfo>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn list_clusters(&self) -> Result<Vec<snapshot_export::domain::SourceInfo>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn snapshots(
        &self,
        _: &snapshot_export::domain::Source,
        _: bool,
    ) -> Result<Vec<snapshot_export::snapshots::Snapshot>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn snapshot_source(
        &self,
        _: bridgekeeper::events::SnapshotKind,
        _: &str,
    ) -> Result<Option<String>, AwsError> {
        call();
        Ok(None)
    }
    async fn export_tasks(
        &self,
        _: &str,
    ) -> Result<Vec<snapshot_export::domain::ExportTask>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn all_exports(&self) -> Result<Vec<snapshot_export::domain::ExportTask>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn start_export(
        &self,
        _: &snapshot_export::domain::Export,
    ) -> Result<snapshot_export::aws::Started, AwsError> {
        call();
        Err(refused())
    }
}

impl snapshot_export::files::ExportFiles for Fakes {
    async fn folder(&self, _: &str, _: &str) -> Result<snapshot_export::files::Folder, AwsError> {
        call();
        Ok(Default::default())
    }
    async fn read(&self, _: &str, _: &str) -> Result<Vec<u8>, AwsError> {
        call();
        Ok(vec![])
    }
}

impl snapshot_export::glue::Catalog for Fakes {
    async fn database(&self, _: &str, _: &str) -> Result<(), AwsError> {
        call();
        Ok(())
    }
    async fn table(
        &self,
        _: &str,
        _: &snapshot_export::catalog::CatalogTable,
    ) -> Result<(), AwsError> {
        call();
        Ok(())
    }
}

impl dns_sync::aws::Dns for Fakes {
    async fn zones(&self) -> Result<dns_sync::aws::ZoneListing, AwsError> {
        call();
        Ok(dns_sync::aws::ZoneListing::default())
    }
    async fn records(
        &self,
        _: &dns_sync::zones::Zone,
    ) -> Result<Vec<dns_sync::records::RecordSet>, AwsError> {
        call();
        Ok(vec![])
    }
    async fn load_balancers(
        &self,
    ) -> Result<HashMap<String, dns_sync::records::LoadBalancer>, AwsError> {
        call();
        Ok(HashMap::new())
    }
    async fn apply(
        &self,
        _: &dns_sync::zones::Zone,
        _: &[dns_sync::records::DnsChange],
        _: &str,
    ) -> Result<String, AwsError> {
        call();
        Err(refused())
    }
}

impl dns_sync::kube::Sources for Fakes {
    async fn ingresses(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<k8s_openapi::api::networking::v1::Ingress>, ClusterError> {
        call();
        Ok(vec![])
    }
    async fn services(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Service>, ClusterError> {
        call();
        Ok(vec![])
    }
    async fn routes(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<dns_sync::gateway::Route>, ClusterError> {
        call();
        Ok(vec![])
    }
    async fn gateways(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<dns_sync::gateway::Gateway>, ClusterError> {
        call();
        Ok(vec![])
    }
}

impl image_rollout::registry::Registry for Fakes {
    async fn current_digest(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Option<String>, AwsError> {
        call();
        // No such tag: a well-formed push ends "superseded", with nothing rolled. (An
        // unreadable registry is a retry by design, not a verdict on the input.)
        Ok(None)
    }
    async fn tagged_images(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<image_rollout::catchup::Tags, AwsError> {
        call();
        Ok(Default::default())
    }
}

impl image_rollout::kube::Kube for Fakes {
    async fn pods(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, ClusterError> {
        call();
        Ok(vec![])
    }
    async fn list(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<image_rollout::workload::Workload>, ClusterError> {
        call();
        Ok(vec![])
    }
    async fn get(
        &self,
        c: &str,
        _: image_rollout::workload::Kind,
        _: &str,
        _: &str,
    ) -> Result<image_rollout::workload::Workload, ClusterError> {
        call();
        Err(ClusterError::Unusable {
            cluster: c.into(),
            why: "fake".into(),
        })
    }
    async fn patch(
        &self,
        c: &str,
        _: image_rollout::workload::Kind,
        _: &str,
        _: &str,
        _: &[Value],
    ) -> Result<image_rollout::workload::Workload, ClusterError> {
        call();
        Err(ClusterError::Unusable {
            cluster: c.into(),
            why: "fake".into(),
        })
    }
}

impl scaling_alerts::aws::AutoScaling for Fakes {
    async fn describe_groups(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &[String],
    ) -> Result<HashMap<String, scaling_alerts::alert::GroupInfo>, bridgekeeper::Error> {
        call();
        Ok(HashMap::new())
    }
}

impl scaling_alerts::aws::Instances for Fakes {
    async fn describe_instances(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &[String],
    ) -> Result<HashMap<String, scaling_alerts::nodes::NodeInfo>, bridgekeeper::Error> {
        call();
        Ok(HashMap::new())
    }
}

impl scaling_alerts::aws::Eks for Fakes {
    fn following(&self) -> bool {
        true
    }

    async fn describe_update(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::followup::FollowUp,
    ) -> Result<Option<scaling_alerts::followup::UpdateState>, bridgekeeper::Error> {
        call();
        Ok(None)
    }

    async fn describe_addon(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::addons::AddonRef,
    ) -> Result<Option<scaling_alerts::addons::AddonState>, bridgekeeper::Error> {
        call();
        Ok(None)
    }
    async fn later(
        &self,
        _: &bridgekeeper::accounts::Scope,
        _: &scaling_alerts::followup::FollowUp,
    ) -> Result<(), bridgekeeper::Error> {
        call();
        Ok(())
    }
}

impl access_entries::aws::AccessEntries for Fakes {
    async fn ensure(
        &self,
        _: &str,
        _: &str,
        _: &[String],
    ) -> Result<access_entries::aws::Outcome, AwsError> {
        call();
        Err(refused())
    }
    async fn remove(&self, _: &str, _: &str) -> Result<access_entries::aws::Outcome, AwsError> {
        call();
        Err(refused())
    }
}

impl access_entries::respond::Respond for Fakes {
    async fn respond(
        &self,
        _: &str,
        _: &access_entries::respond::Response,
    ) -> Result<(), access_entries::respond::RespondError> {
        call();
        Ok(())
    }
}

/// The variables `make standins` gives every function.
fn env() -> Env {
    Env::from_pairs([
        (
            "ALERTS_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
        ),
        ("ENVIRONMENT", "fuzz"),
        ("EXPORT_BUCKET", "exports"),
        ("EXPORT_ROLE_ARN", "arn:aws:iam::123456789012:role/export"),
        (
            "EXPORT_KMS_KEY_ARN",
            "arn:aws:kms:eu-west-1:123456789012:key/k",
        ),
        ("CLUSTERS", "dev=http://127.0.0.1:9,prod=http://127.0.0.1:9"),
        ("LOCAL_HTTP_CLUSTERS", "true"),
        (
            "ROLLOUT_RULES",
            r#"[{"repository":"*","tag":"latest","clusters":["dev"]},{"repository":"*","tag":"stable","clusters":["prod"]}]"#,
        ),
        ("WATCH", "false"),
        ("ZONE_IDS", "Z1"),
    ])
}

struct Configs {
    snapshot: snapshot_export::Config,
    dns: dns_sync::Config,
    rollout: image_rollout::Config,
    scaling: scaling_alerts::Config,
}

/// Runs one payload (as bytes) through a function's entry point: what the runtime and the guard do,
/// then the handler with counting fakes. Returns the outcome as (error type, message) if any.
async fn run(
    function: &str,
    bytes: &[u8],
    c: &Configs,
) -> Result<Option<(String, String)>, String> {
    let payload: Value = match bridgekeeper::runtime::unreadable(bytes) {
        Some(why) => json!({ bridgekeeper::runtime::UNREADABLE: why }),
        None => serde_json::from_slice(bytes)
            .map_err(|e| format!("guard let through unparseable bytes: {e}"))?,
    };
    let recorder = Recorder::default();
    let store = Memory::default();
    // scaling-alerts sends through its own notifiers; every other function through `recorder`.
    let alerts = scaling_alerts::pipeline::Ports {
        asg: Fakes,
        ec2: Fakes,
        eks: Fakes,
        notifiers: scaling_alerts::delivery::Notifiers {
            all: Recorder::default(),
            errors: None,
            chat: None,
        },
        store: Memory::default(),
    };
    let err: Option<Error> = match function {
        "snapshot-export" => {
            let exports = snapshot_export::completion::Exports {
                files: &Fakes,
                catalog: &Fakes,
            };
            snapshot_export::account::handle(
                payload,
                &c.snapshot,
                &Fakes,
                &recorder,
                &store,
                exports,
            )
            .await
            .err()
        }
        "dns-sync" => {
            let state = dns_sync::report::State::new(&store);
            let deadline = SystemTime::now() + Duration::from_secs(60);
            dns_sync::handler::handle(payload, deadline, &c.dns, &Fakes, &Fakes, &recorder, &state)
                .await
                .err()
        }
        "image-rollout" => image_rollout::handler::handle(
            payload,
            SystemTime::now() + Duration::from_secs(60),
            &c.rollout,
            &Fakes,
            &Fakes,
            &recorder,
            &store,
        )
        .await
        .err(),
        "scaling-alerts" => scaling_alerts::handler::handle_once(
            payload,
            SystemTime::now(),
            "fuzz",
            &c.scaling,
            &alerts,
        )
        .await
        .err(),
        "access-entries" => {
            let allowed = access_entries::domain::Allowed {
                principals: vec!["arn:aws:iam::111122223333:role/bk-DnsSyncFunctionRole-X".into()],
            };
            access_entries::handler::handle(
                payload,
                Duration::from_secs(5),
                &allowed,
                &Fakes,
                &Fakes,
            )
            .await
            .err()
        }
        other => unreachable!("{other}"),
    };
    let sent = recorder.sent().len() + alerts.notifiers.all.sent().len();
    let Some(err) = err else { return Ok(None) };
    let d = err.diagnostic();
    if err.class() != Class::NonRetryable {
        return Err(format!(
            "{function}: bad input came back {}: {}",
            d.error_type, d.error_message
        ));
    }
    if d.error_message.len() > bridgekeeper::error::MAX_MESSAGE_BYTES + 256 {
        return Err(format!(
            "{function}: error message of {} bytes is not capped",
            d.error_message.len()
        ));
    }
    if sent > 0 {
        return Err(format!("{function}: refused input but notified"));
    }
    Ok(Some((d.error_type, d.error_message)))
}

const KEYS: &[&str] = &[
    "source",
    "detail-type",
    "detail",
    "id",
    "time",
    "region",
    "account",
    "resources",
    "version",
    "Records",
    "body",
    "messageId",
    "RequestType",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "ResourceProperties",
    "PhysicalResourceId",
    "action-type",
    "result",
    "repository-name",
    "image-digest",
    "image-tag",
    "EventID",
    "SourceArn",
    "SourceIdentifier",
    "Message",
    "eventName",
    "eventSource",
    "requestParameters",
    "AutoScalingGroupName",
    "alarmName",
    "state",
    "value",
    "EC2InstanceId",
    "ClusterNames",
    "PrincipalArn",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(KEYS).prop_map(|s| Value::String(s.to_string())),
        prop::sample::select(vec![
            "aws.events",
            "aws.ecr",
            "aws.rds",
            "aws.cloudwatch",
            "aws.autoscaling",
            "aws.eks",
            "Scheduled Event",
            "ECR Image Action",
            "PUSH",
            "SUCCESS",
            "Create",
            "Delete"
        ])
        .prop_map(|s| Value::String(s.into())),
        (1usize..300_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn samples() -> Vec<Value> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(repo_root().join("events")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(dir).unwrap() {
                let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
                out.push(serde_json::from_str(&text).unwrap());
            }
        }
    }
    out
}

/// Every path to an object field in `v`.
fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let mut p = prefix.clone();
            p.push(k.clone());
            out.push(p.clone());
            paths(child, p, out);
        }
    }
}

fn mutate(mut v: Value, path: &[String], replacement: Option<Value>) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut v;
    for p in parents {
        at = &mut at[p.as_str()];
    }
    if let Value::Object(m) = at {
        match replacement {
            Some(r) => m.insert(last.clone(), r),
            None => m.remove(last),
        };
    }
    v
}

/// A payload as bytes: arbitrary JSON, a sample with one field changed or gone, deep nesting,
/// or bytes that are not JSON / not UTF-8.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let samples = samples();
    let mutated = (
        prop::sample::select(samples),
        any::<prop::sample::Index>(),
        prop::option::of(arb_json()),
    )
        .prop_map(|(s, i, r)| {
            let mut ps = Vec::new();
            paths(&s, vec![], &mut ps);
            if ps.is_empty() {
                return serde_json::to_vec(&s).unwrap();
            }
            serde_json::to_vec(&mutate(s, i.get(&ps).as_slice(), r)).unwrap()
        });
    prop_oneof![
        4 => mutated,
        3 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => (1usize..5000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (prop::sample::select(vec![0xffu8, 0xfe, 0xc3, 0x80]), ".{0,20}")
            .prop_map(|(b, s)| { let mut v = format!("{{\"source\": \"{s}").into_bytes(); v.push(b); v.extend_from_slice(b"\"}"); v }),
    ]
}

fn configs() -> Configs {
    let env = env();
    Configs {
        snapshot: snapshot_export::Config::from_env(&env).unwrap(),
        dns: dns_sync::Config::from_env(&env).unwrap(),
        rollout: image_rollout::Config::from_env(&env).unwrap(),
        scaling: scaling_alerts::Config::from_env(&env).unwrap(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn bad_input_is_refused_without_side_effects() {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let (configs, rt) = (configs(), runtime());
    let functions = [
        "snapshot-export",
        "dns-sync",
        "image-rollout",
        "scaling-alerts",
        "access-entries",
    ];
    let started = Instant::now();
    let (mut payloads, mut cases, mut refused_cases, mut failures) =
        (0usize, 0usize, 0usize, Vec::new());
    let seed = match budget {
        Some(_) => rand_seed(),
        None => [7u8; 32],
    };
    let mut runner = TestRunner::new_with_rng(
        PropConfig {
            failure_persistence: None,
            ..PropConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let strategy = payload();
    loop {
        let done = match budget {
            Some(s) => started.elapsed() >= Duration::from_secs(s),
            None => payloads >= 300,
        };
        if done {
            break;
        }
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        payloads += 1;
        for function in functions {
            cases += 1;
            CALLS.store(0, Ordering::SeqCst);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(run(function, &bytes, &configs))
            }));
            let preview = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            match outcome {
                Err(_) => failures.push(format!("{function}: panicked on {preview}")),
                Ok(Err(why)) => failures.push(format!("{why} — input {preview}")),
                Ok(Ok(Some((kind, msg)))) => {
                    refused_cases += 1;
                    let calls = CALLS.load(Ordering::SeqCst);
                    if kind == "NonRetryable.InvalidEvent" && calls > 0 {
                        failures.push(format!("{function}: refused ({msg}) after {calls} AWS/Kubernetes call(s) — input {preview}"));
                    }
                }
                Ok(Ok(None)) => {}
            }
        }
    }
    println!(
        "fuzz: {payloads} payloads, {cases} cases ({refused_cases} refused as bad input) over {} functions in {:.0?}, seed {}, {} failure(s)",
        functions.len(),
        started.elapsed(),
        seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}",
        failures[..failures.len().min(20)].join("\n")
    );
}

fn rand_seed() -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
    }
    seed
}

/// A trigger whose fields have the wrong types is not a trigger: dns-sync used to run a full
/// sync for it (writes included), snapshot-export a full export run.
#[test]
fn a_scheduled_event_with_wrong_field_types_acts_on_nothing() {
    let (configs, rt) = (configs(), runtime());
    for bad in [
        json!({"source": "aws.events", "detail-type": "Scheduled Event", "time": 12, "detail": {}}),
        json!({"source": "aws.events", "detail-type": "Scheduled Event", "resources": "rule", "detail": {}}),
        json!({"source": "bridgekeeper", "detail-type": "Scheduled Event", "detail": []}),
    ] {
        for function in ["dns-sync", "snapshot-export"] {
            CALLS.store(0, Ordering::SeqCst);
            let out = rt.block_on(run(function, &serde_json::to_vec(&bad).unwrap(), &configs));
            let (kind, msg) = out
                .unwrap()
                .unwrap_or_else(|| panic!("{function} acted on {bad}"));
            assert_eq!(kind, "NonRetryable.InvalidEvent", "{function}: {msg}");
            assert_eq!(CALLS.load(Ordering::SeqCst), 0, "{function}: {bad}");
        }
    }
}
