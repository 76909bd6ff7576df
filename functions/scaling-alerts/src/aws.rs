//! The Auto Scaling adapter: one DescribeAutoScalingGroups per batch for the groups it mentions.

use std::collections::HashMap;
use std::future::Future;

use bridgekeeper::AwsError;
use bridgekeeper::error::SdkResultExt;

use crate::domain::GroupInfo;

/// DescribeAutoScalingGroups takes at most 50 names per call.
const NAMES_PER_CALL: usize = 50;

pub trait AutoScaling: Send + Sync {
    fn describe_groups(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<HashMap<String, GroupInfo>, AwsError>> + Send;
}

pub struct AutoScalingApi {
    client: aws_sdk_autoscaling::Client,
}

impl AutoScalingApi {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        AutoScalingApi { client }
    }
}

impl AutoScaling for AutoScalingApi {
    async fn describe_groups(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, GroupInfo>, AwsError> {
        let mut groups = HashMap::new();
        for chunk in names.chunks(NAMES_PER_CALL) {
            let pages = self
                .client
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
