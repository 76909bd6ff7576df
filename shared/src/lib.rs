//! What two or more Bridgekeeper functions share.
//!
//! Every function uses [`telemetry::init`], [`config::Env`], [`Error`] (and its mapping to a
//! Lambda `Diagnostic`), the [`notify`] SNS notifier, [`metrics`] (CloudWatch EMF) and the typed
//! [`events`]. [`cluster`] (feature `cluster`) gives dns-sync and image-rollout a `kube::Client`
//! for an EKS cluster or a plain URL.

pub mod accounts;
pub mod aws;
pub mod classify;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "cluster")]
pub mod cluster_auth;
#[cfg(feature = "cluster")]
pub mod cluster_target;
pub mod config;
pub mod error;
pub mod events;
pub mod failures;
pub mod idempotency;
pub mod metrics;
pub mod notify;
pub mod runtime;
pub mod telemetry;
pub mod text;
pub mod trust;
pub mod wiring;

pub use classify::{AwsError, Class, Classify};
pub use error::Error;
