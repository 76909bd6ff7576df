//! The crate's test doubles, for any of its tests: Auto Scaling and EC2 that answer from
//! fixed groups and instances (per account), or refuse.

use std::collections::HashMap;
use std::sync::Mutex;

use bridgekeeper::accounts::Scope;
use bridgekeeper::{AwsError, Error};

use crate::alert::GroupInfo;
use crate::aws::{AutoScaling, Instances};
use crate::nodes::NodeInfo;

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
