//! The adapters that enrich a batch: one DescribeAutoScalingGroups for the groups it mentions and
//! one DescribeInstances for the instances its EC2 events name, per account and region the events
//! came from (a member account's events are enriched with that account's role).

use std::collections::HashMap;
use std::future::Future;

use bridgekeeper::Error;
use bridgekeeper::accounts::{Accounts, Scope, ScopedClient};
use bridgekeeper::classify::SdkResultExt;

use crate::alert::GroupInfo;
use crate::nodes::NodeInfo;

/// DescribeAutoScalingGroups takes at most 50 names per call.
pub const NAMES_PER_CALL: usize = 50;

pub trait AutoScaling: Send + Sync {
    fn describe_groups(
        &self,
        scope: &Scope,
        names: &[String],
    ) -> impl Future<Output = Result<HashMap<String, GroupInfo>, Error>> + Send;
}

pub struct AutoScalingApi {
    client: ScopedClient<aws_sdk_autoscaling::Client>,
}

impl AutoScalingApi {
    pub fn new(accounts: Accounts) -> Self {
        AutoScalingApi {
            client: ScopedClient::new(&accounts, aws_sdk_autoscaling::Client::new),
        }
    }
}

impl AutoScaling for AutoScalingApi {
    async fn describe_groups(
        &self,
        scope: &Scope,
        names: &[String],
    ) -> Result<HashMap<String, GroupInfo>, Error> {
        let client = self.client.get(scope).await?;
        let mut groups = HashMap::new();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let pages = client
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .into_paginator()
                .items()
                .send();
            let found: Vec<_> = pages
                .collect::<Result<_, _>>()
                .await
                .context("autoscaling:DescribeAutoScalingGroups")?;
            for g in found {
                let tag = |key: &str| {
                    g.tags()
                        .iter()
                        .find(|t| t.key() == Some(key))
                        .and_then(|t| t.value().map(str::to_owned))
                };
                let info = GroupInfo {
                    cluster: tag("eks:cluster-name"),
                    nodegroup: tag("eks:nodegroup-name"),
                    desired: g.desired_capacity(),
                    min: g.min_size(),
                    max: g.max_size(),
                    instance_types: g
                        .instances()
                        .iter()
                        .filter_map(|i| {
                            Some((i.instance_id()?.to_owned(), i.instance_type()?.to_owned()))
                        })
                        .collect(),
                };
                groups.insert(
                    g.auto_scaling_group_name().unwrap_or_default().to_owned(),
                    info,
                );
            }
        }
        Ok(groups)
    }
}

/// The EC2 adapter: what the instances an event names are, in one call per batch.
pub trait Instances: Send + Sync {
    /// Instance id → what its tags and placement say; ids EC2 no longer knows are left out.
    fn describe_instances(
        &self,
        scope: &Scope,
        ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, NodeInfo>, Error>> + Send;
}

/// Instance ids per DescribeInstances call: a batch of 1,000 records naming 1,000 instances is
/// ten calls, one after another (make scale, "scaling-alerts storm").
pub const IDS_PER_CALL: usize = 100;

pub struct Ec2Api {
    client: ScopedClient<aws_sdk_ec2::Client>,
}

impl Ec2Api {
    pub fn new(accounts: Accounts) -> Self {
        Ec2Api {
            client: ScopedClient::new(&accounts, aws_sdk_ec2::Client::new),
        }
    }
}

impl Instances for Ec2Api {
    async fn describe_instances(
        &self,
        scope: &Scope,
        ids: &[String],
    ) -> Result<HashMap<String, NodeInfo>, Error> {
        let client = self.client.get(scope).await?;
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            // A filter, not InstanceIds: "If you specify an instance ID that is not valid, an
            // error is returned" (EC2 DescribeInstances) and one terminated-and-gone instance
            // would fail the lookup of all the others.
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            let reservations: Vec<_> = client
                .describe_instances()
                .filters(filter)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .context("ec2:DescribeInstances")?;
            for instance in reservations.iter().flat_map(|r| r.instances()) {
                let Some(id) = instance.instance_id() else {
                    continue;
                };
                let tags: Vec<(&str, &str)> = instance
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
                    .collect();
                let info = NodeInfo::from_tags(
                    &tags,
                    instance.instance_type().map(|t| t.as_str().to_owned()),
                    instance
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .map(str::to_owned),
                    instance.instance_lifecycle().map(|l| l.as_str().to_owned()),
                );
                found.insert(id.to_owned(), info);
            }
        }
        Ok(found)
    }
}
