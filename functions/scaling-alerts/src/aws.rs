//! The adapters that enrich a batch: one DescribeAutoScalingGroups for the groups it mentions and
//! one DescribeInstances for the instances its EC2 events name, per account and region the events
//! came from (a member account's events are enriched with that account's role).

use std::collections::HashMap;
use std::future::Future;

use bridgekeeper::Error;
use bridgekeeper::accounts::{Accounts, Scope, ScopedClient};
use bridgekeeper::classify::SdkResultExt;

use crate::addons::{AddonRef, AddonState};
use crate::alert::GroupInfo;
use crate::followup::{DELAY, FollowUp, Status, UpdateState};
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
                let info = NodeInfo {
                    node_name: instance
                        .private_dns_name()
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                    ..info
                };
                found.insert(id.to_owned(), info);
            }
        }
        Ok(found)
    }
}

/// What scaling-alerts asks EKS (a followed node-group update, an add-on an event names), and
/// the follow-up of an update it sends its own queue for later.
pub trait Eks: Send + Sync {
    /// Whether updates are followed (`FOLLOW_UP_QUEUE_URL` is set).
    fn following(&self) -> bool;
    /// `DescribeUpdate`, in the account and region the update is in; `None` when EKS no longer
    /// knows it.
    fn describe_update(
        &self,
        scope: &Scope,
        follow: &FollowUp,
    ) -> impl Future<Output = Result<Option<UpdateState>, Error>> + Send;
    /// `DescribeAddon`: how an add-on stands now; `None` when EKS no longer knows it.
    fn describe_addon(
        &self,
        scope: &Scope,
        addon: &AddonRef,
    ) -> impl Future<Output = Result<Option<AddonState>, Error>> + Send;
    /// The follow-up, delivered to the function again in [`DELAY`].
    fn later(
        &self,
        scope: &Scope,
        follow: &FollowUp,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

pub struct EksApi {
    eks: ScopedClient<aws_sdk_eks::Client>,
    sqs: aws_sdk_sqs::Client,
    queue: Option<String>,
}

impl EksApi {
    /// `queue`: the function's own queue (`FOLLOW_UP_QUEUE_URL`); `None` follows nothing.
    pub fn new(accounts: Accounts, sdk: &aws_config::SdkConfig, queue: Option<String>) -> Self {
        EksApi {
            eks: ScopedClient::new(&accounts, aws_sdk_eks::Client::new),
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue,
        }
    }
}

impl Eks for EksApi {
    fn following(&self) -> bool {
        self.queue.is_some()
    }

    async fn describe_update(
        &self,
        scope: &Scope,
        follow: &FollowUp,
    ) -> Result<Option<UpdateState>, Error> {
        let client = self.eks.get(scope).await?;
        describe_update(&client, follow).await
    }

    async fn describe_addon(
        &self,
        scope: &Scope,
        addon: &AddonRef,
    ) -> Result<Option<AddonState>, Error> {
        let client = self.eks.get(scope).await?;
        describe_addon(&client, addon).await
    }

    async fn later(&self, scope: &Scope, follow: &FollowUp) -> Result<(), Error> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        self.sqs
            .send_message()
            .queue_url(queue)
            .message_body(follow.body(scope, chrono::Utc::now()))
            .delay_seconds(DELAY.as_secs() as i32)
            .send()
            .await
            .context("sqs:SendMessage")?;
        Ok(())
    }
}

/// `DescribeUpdate` of a node-group update; `None` when EKS answers ResourceNotFoundException
/// (the node group, and with it its updates, was deleted).
async fn describe_update(
    client: &aws_sdk_eks::Client,
    follow: &FollowUp,
) -> Result<Option<UpdateState>, Error> {
    let answer = client
        .describe_update()
        .name(&follow.cluster)
        .nodegroup_name(&follow.nodegroup)
        .update_id(&follow.update_id)
        .send()
        .await;
    let update = match answer {
        Ok(out) => out.update,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(bridgekeeper::AwsError::from_sdk("eks:DescribeUpdate", e).into()),
    };
    let Some(update) = update else {
        return Ok(None);
    };
    Ok(Some(UpdateState {
        status: Status::from_eks(update.status().map(|s| s.as_str()).unwrap_or("Unknown")),
        errors: update
            .errors()
            .iter()
            .map(|e| {
                (
                    e.error_code()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_else(|| "Unknown".into()),
                    e.error_message().unwrap_or_default().to_owned(),
                    e.resource_ids().to_vec(),
                )
            })
            .collect(),
    }))
}

/// `DescribeAddon`; `None` when EKS answers ResourceNotFoundException (the add-on was deleted).
async fn describe_addon(
    client: &aws_sdk_eks::Client,
    addon: &AddonRef,
) -> Result<Option<AddonState>, Error> {
    let answer = client
        .describe_addon()
        .cluster_name(&addon.cluster)
        .addon_name(&addon.addon)
        .send()
        .await;
    let found = match answer {
        Ok(out) => out.addon,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(bridgekeeper::AwsError::from_sdk("eks:DescribeAddon", e).into()),
    };
    Ok(found.map(|a| AddonState {
        status: a
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "UNKNOWN".into()),
        version: a.addon_version().map(str::to_owned),
        issues: a
            .health()
            .map(|h| h.issues())
            .unwrap_or_default()
            .iter()
            .map(|i| {
                (
                    i.code()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_else(|| "Unknown".into()),
                    i.message().unwrap_or_default().to_owned(),
                    i.resource_ids().to_vec(),
                )
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_eks::Client;
    use aws_sdk_eks::operation::describe_update::{DescribeUpdateError, DescribeUpdateOutput};
    use aws_sdk_eks::types::error::ResourceNotFoundException;
    use aws_sdk_eks::types::{ErrorCode, ErrorDetail, Update, UpdateStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    use crate::fakes::version_update as follow;

    #[tokio::test]
    async fn a_failed_update_reads_as_eks_error_details_asked_about_by_name() {
        let rule = mock!(Client::describe_update)
            .match_requests(|r| {
                r.name() == Some("prod-eks")
                    && r.nodegroup_name() == Some("ng-1")
                    && r.update_id() == Some("1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff")
            })
            .then_output(|| {
                DescribeUpdateOutput::builder()
                    .update(
                        Update::builder()
                            .id("1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff")
                            .status(UpdateStatus::Failed)
                            .errors(
                                ErrorDetail::builder()
                                    .error_code(ErrorCode::PodEvictionFailure)
                                    .error_message("Reached max retries while trying to evict pods")
                                    .resource_ids("i-0a1b2c3d4e5f60718")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let eks = mock_client!(aws_sdk_eks, RuleMode::Sequential, [&rule]);
        let state = describe_update(&eks, &follow()).await.unwrap().unwrap();
        assert_eq!(state.status, Status::Failed);
        assert_eq!(
            state.errors,
            [(
                "PodEvictionFailure".to_owned(),
                "Reached max retries while trying to evict pods".to_owned(),
                vec!["i-0a1b2c3d4e5f60718".to_owned()]
            )]
        );
    }

    /// DescribeUpdate answers ResourceNotFoundException (HTTP 404) for a deleted node group's
    /// update (EKS API Reference, DescribeUpdate, Errors).
    #[tokio::test]
    async fn an_update_of_a_deleted_node_group_is_gone_not_an_error() {
        let rule = mock!(Client::describe_update).then_error(|| {
            DescribeUpdateError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("No node group found for name: ng-1.")
                    .build(),
            )
        });
        let eks = mock_client!(aws_sdk_eks, RuleMode::Sequential, [&rule]);
        assert_eq!(describe_update(&eks, &follow()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_addon_reads_as_its_status_version_and_health_issues() {
        use aws_sdk_eks::operation::describe_addon::DescribeAddonOutput;
        use aws_sdk_eks::types::{Addon, AddonHealth, AddonIssue, AddonIssueCode, AddonStatus};
        let rule = mock!(Client::describe_addon)
            .match_requests(|r| {
                r.cluster_name() == Some("prod-eks") && r.addon_name() == Some("vpc-cni")
            })
            .then_output(|| {
                DescribeAddonOutput::builder()
                    .addon(
                        Addon::builder()
                            .addon_name("vpc-cni")
                            .status(AddonStatus::Degraded)
                            .addon_version("v1.19.0-eksbuild.1")
                            .health(
                                AddonHealth::builder()
                                    .issues(
                                        AddonIssue::builder()
                                            .code(AddonIssueCode::InsufficientNumberOfReplicas)
                                            .message("not enough replicas")
                                            .resource_ids("kube-system/aws-node")
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let eks = mock_client!(aws_sdk_eks, RuleMode::Sequential, [&rule]);
        let addon = AddonRef {
            cluster: "prod-eks".into(),
            addon: "vpc-cni".into(),
        };
        let state = describe_addon(&eks, &addon).await.unwrap().unwrap();
        assert_eq!(
            state,
            AddonState {
                status: "DEGRADED".into(),
                version: Some("v1.19.0-eksbuild.1".into()),
                issues: vec![(
                    "InsufficientNumberOfReplicas".into(),
                    "not enough replicas".into(),
                    vec!["kube-system/aws-node".into()]
                )],
            }
        );
    }
}
