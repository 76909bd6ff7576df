//! The crate's test doubles, for any of its tests: Auto Scaling and EC2 that answer from
//! fixed groups and instances (per account), or refuse; and the harness that runs sample events
//! through the pipeline as the deployed function does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bridgekeeper::config::Env;
use bridgekeeper::idempotency::testing::Memory;
use bridgekeeper::notify::Notification;
use bridgekeeper::notify::testing::Recorder;

use bridgekeeper::accounts::Scope;
use bridgekeeper::{AwsError, Error};

use crate::addons::{AddonRef, AddonState};
use crate::alert::GroupInfo;
use crate::aws::{AutoScaling, Eks, Instances};
use crate::batch::Response;
use crate::config::Config;
use crate::delivery::Notifiers;
use crate::followup::{FollowUp, UpdateState};
use crate::handler::handle_once;
use crate::nodes::NodeInfo;
use crate::pipeline::{Ports, handle_batch};

/// The member account of the tests (the hub is 123456789012).
pub const MEMBER: &str = "222222222222";

/// What a role refused for `operation` says.
pub fn denied(operation: &'static str) -> AwsError {
    AwsError::fake(operation, "AccessDenied", 403, "denied")
}

#[derive(Default)]
pub struct FakeAsg {
    pub groups: HashMap<String, GroupInfo>,
    /// What the member account's DescribeAutoScalingGroups knows.
    pub member: HashMap<String, GroupInfo>,
    pub calls: Mutex<Vec<Vec<String>>>,
    pub scopes: Mutex<Vec<Scope>>,
    pub fail: bool,
}

impl AutoScaling for FakeAsg {
    async fn describe_groups(
        &self,
        scope: &Scope,
        names: &[String],
    ) -> Result<HashMap<String, GroupInfo>, Error> {
        self.calls.lock().unwrap().push(names.to_vec());
        self.scopes.lock().unwrap().push(scope.clone());
        if self.fail {
            return Err(denied("autoscaling:DescribeAutoScalingGroups").into());
        }
        let known = match scope.account.as_deref() {
            Some(MEMBER) => &self.member,
            _ => &self.groups,
        };
        Ok(names
            .iter()
            .filter_map(|n| Some((n.clone(), known.get(n)?.clone())))
            .collect())
    }
}

#[derive(Default)]
pub struct FakeEc2 {
    pub instances: HashMap<String, NodeInfo>,
    pub calls: Mutex<Vec<Vec<String>>>,
    pub fail: bool,
}

impl Instances for FakeEc2 {
    async fn describe_instances(
        &self,
        _: &Scope,
        ids: &[String],
    ) -> Result<HashMap<String, NodeInfo>, Error> {
        self.calls.lock().unwrap().push(ids.to_vec());
        if self.fail {
            return Err(AwsError::fake(
                "ec2:DescribeInstances",
                "RequestLimitExceeded",
                503,
                "slow down",
            )
            .into());
        }
        Ok(ids
            .iter()
            .filter_map(|i| Some((i.clone(), self.instances.get(i)?.clone())))
            .collect())
    }
}

// The harness: prod-eks's group ng-1, its nodes, the hub's configuration.

/// A sample event of `events/scaling-alerts/`.
macro_rules! sample {
    ($name:literal) => {
        include_str!(concat!("../../../events/scaling-alerts/", $name))
    };
}
pub(crate) use sample;

pub const KARPENTER_NODE: &str = "i-0c1d2e3f4a5b6c7d8";
/// Its Kubernetes Node name (its private DNS name).
pub const KARPENTER_NODE_NAME: &str = "ip-10-0-1-23.eu-west-1.compute.internal";

pub fn prod_ng1() -> FakeAsg {
    let info = GroupInfo {
        cluster: Some("prod-eks".into()),
        nodegroup: Some("ng-1".into()),
        desired: Some(7),
        min: Some(3),
        max: Some(10),
        instance_types: HashMap::from([
            ("i-0a1b2c3d4e5f60718".into(), "m6i.large".into()),
            ("i-0b2c3d4e5f6071829".into(), "m6i.large".into()),
        ]),
    };
    FakeAsg {
        groups: HashMap::from([("eks-prod-ng-1-a2c4e6g8".into(), info)]),
        ..FakeAsg::default()
    }
}

/// A Karpenter Spot node of prod-eks, a second one, and a bastion host with no cluster tags.
pub fn instances() -> FakeEc2 {
    let karpenter = |zone: &str| {
        NodeInfo::from_tags(
            &[
                ("karpenter.sh/nodepool", "default"),
                ("eks:eks-cluster-name", "prod-eks"),
            ],
            Some("m6i.large".into()),
            Some(zone.into()),
            Some("spot".into()),
        )
    };
    FakeEc2 {
        instances: HashMap::from([
            (
                KARPENTER_NODE.into(),
                NodeInfo {
                    node_name: Some(KARPENTER_NODE_NAME.into()),
                    ..karpenter("eu-west-1a")
                },
            ),
            ("i-0d2e3f4a5b6c7d8e9".into(), karpenter("eu-west-1b")),
            (
                "i-0ba57105700000000".into(),
                NodeInfo::from_tags(&[("Name", "bastion")], None, None, None),
            ),
        ]),
        ..FakeEc2::default()
    }
}

pub type TestPorts = Ports<FakeAsg, FakeEc2, Recorder, Memory, FakeEks>;

/// EKS's node-group updates as a test sets them (update id → state; absent: EKS no longer knows
/// it), and the follow-ups sent to the queue.
#[derive(Default)]
pub struct FakeEks {
    pub following: bool,
    pub states: HashMap<String, UpdateState>,
    pub described: Mutex<Vec<String>>,
    pub later: Mutex<Vec<(Scope, FollowUp)>>,
    /// `cluster/add-on` → how it stands; absent: EKS no longer knows it.
    pub addons: HashMap<String, AddonState>,
    pub addons_described: Mutex<Vec<String>>,
    pub down: bool,
}

impl Eks for FakeEks {
    fn following(&self) -> bool {
        self.following
    }

    async fn describe_update(&self, _: &Scope, f: &FollowUp) -> Result<Option<UpdateState>, Error> {
        self.described.lock().unwrap().push(f.update_id.clone());
        if self.down {
            return Err(
                AwsError::fake("eks:DescribeUpdate", "ServerException", 500, "down").into(),
            );
        }
        Ok(self.states.get(&f.update_id).cloned())
    }

    async fn describe_addon(
        &self,
        _: &Scope,
        addon: &AddonRef,
    ) -> Result<Option<AddonState>, Error> {
        self.addons_described.lock().unwrap().push(addon.name());
        if self.down {
            return Err(AwsError::fake("eks:DescribeAddon", "ServerException", 500, "down").into());
        }
        Ok(self.addons.get(&addon.name()).cloned())
    }

    async fn later(&self, scope: &Scope, f: &FollowUp) -> Result<(), Error> {
        self.later.lock().unwrap().push((scope.clone(), f.clone()));
        Ok(())
    }
}

pub fn ports() -> TestPorts {
    with(Notifiers {
        all: Recorder::default(),
        errors: None,
        chat: None,
    })
}

pub fn with(notifiers: Notifiers<Recorder>) -> TestPorts {
    Ports {
        asg: prod_ng1(),
        ec2: instances(),
        eks: FakeEks::default(),
        notifiers,
        store: Memory::default(),
    }
}

pub fn config(extra: &[(&'static str, &'static str)]) -> Config {
    let base = [
        (
            "ALERTS_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
        ),
        ("ENVIRONMENT", "prod"),
        ("ACCOUNT_ID", "123456789012"),
    ];
    Config::from_env(&Env::from_pairs(base.iter().chain(extra).copied())).unwrap()
}

pub fn batch(bodies: &[&str]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        m.body = Some(body.to_string());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(m);
    }
    event
}

pub fn subjects(r: &Recorder) -> Vec<String> {
    r.sent().into_iter().map(|m| m.subject).collect()
}

/// One sample event, alone in a batch, as a subscriber of the alerts topic receives it.
pub async fn one(body: &str) -> Notification {
    one_with(body, &config(&[])).await
}

pub async fn one_with(body: &str, config: &Config) -> Notification {
    let p = ports();
    let r = handle_batch(batch(&[body]), config, &p).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let sent = p.notifiers.all.sent();
    assert_eq!(sent.len(), 1, "{r:?}");
    let m = sent.into_iter().next().unwrap();
    assert!(
        m.subject.chars().count() <= 99 && !m.subject.contains('\n'),
        "{}",
        m.subject
    );
    m
}

/// One delivery of a batch to the deployed entry point.
pub async fn delivered(payload: &SqsEvent, p: &TestPorts) -> Response {
    let payload = serde_json::to_value(payload).unwrap();
    handle_once(payload, SystemTime::now(), "request-1", &config(&[]), p)
        .await
        .unwrap()
}

/// The batch as SQS delivers it a second time.
pub fn again(mut event: SqsEvent) -> SqsEvent {
    for r in &mut event.records {
        r.attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
    }
    event
}

/// A cluster's Events as a test sets them; `down` answers as an unreachable cluster does.
#[derive(Default)]
pub struct FakeEvents {
    pub events: std::sync::Mutex<Vec<crate::kube_events::KubeEvent>>,
    pub down: bool,
}

impl crate::kube::ClusterEvents for FakeEvents {
    async fn events(
        &self,
        cluster: &str,
    ) -> Result<Vec<crate::kube_events::KubeEvent>, bridgekeeper::cluster::ClusterError> {
        if self.down {
            return Err(bridgekeeper::cluster::ClusterError::Unusable {
                cluster: cluster.into(),
                why: "no route to host".into(),
            });
        }
        Ok(self.events.lock().unwrap().clone())
    }
}

/// The follow-up of the version update `nodegroup-version-update.json` starts.
pub fn version_update() -> FollowUp {
    FollowUp {
        cluster: "prod-eks".into(),
        nodegroup: "ng-1".into(),
        update_id: "1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff".into(),
        what: "update to release 1.33.5-20261110".into(),
        started: "2026-11-22T05:10:00Z".parse().ok(),
        by: Some("arn:aws:sts::123456789012:assumed-role/PlatformAdmin/jane".into()),
        round: 0,
    }
}
