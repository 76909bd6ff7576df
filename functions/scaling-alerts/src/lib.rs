//! scaling-alerts: Auto Scaling, CloudWatch alarm, EC2 node and EKS node-group events, read from
//! an SQS queue in batches, become short, readable, grouped SNS notifications.

pub mod addons;
pub mod alarm;
pub mod alert;
pub mod autoscaling;
pub mod aws;
pub mod batch;
pub mod cluster_run;
pub mod config;
pub mod contributors;
pub mod delivery;
pub mod domain;
#[cfg(test)]
mod fakes;
pub mod following;
pub mod followup;
pub mod handler;
pub mod karpenter;
pub mod kube;
pub mod kube_events;
pub mod nodegroups;
pub mod nodes;
pub mod parse;
pub mod pipeline;
pub mod refresh;

pub use config::Config;

pub const FUNCTION: &str = "scaling-alerts";
