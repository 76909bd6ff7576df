//! image-rollout: when an image is pushed to ECR, roll the EKS workloads that run it; on a
//! schedule, catch up the pushes whose events never came.

pub mod catchup;
pub mod config;
pub mod domain;
#[cfg(test)]
mod fakes;
pub mod gitops;
pub mod handler;
pub mod health;
pub mod held;
pub mod image;
pub mod kube;
pub mod listing;
pub mod reconcile;
pub mod registry;
pub mod report;
pub mod rollout;
pub mod versions;
pub mod watch;
pub mod workload;

pub use config::Config;

pub const FUNCTION: &str = "image-rollout";
