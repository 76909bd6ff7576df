//! scaling-alerts: Auto Scaling, CloudWatch alarm and EKS node-group scaling events, read from
//! an SQS queue in batches, become short, readable, grouped SNS notifications.

pub mod aws;
pub mod config;
pub mod domain;
pub mod handler;

pub use config::Config;

pub const FUNCTION: &str = "scaling-alerts";
