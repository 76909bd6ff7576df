//! dns-sync: keep the Route53 records of each Ingress's (and LoadBalancer Service's) hosts
//! pointing at its load balancer, touching only records it owns.

pub mod alias_zones;
pub mod aws;
pub mod batch;
pub mod config;
pub mod domain;
#[cfg(test)]
mod fakes;
pub mod gateway;
pub mod handler;
pub mod kube;
pub mod ledger;
pub mod policy;
pub mod records;
pub mod report;
pub mod sources;
pub mod targets;
pub mod zone_run;
pub mod zones;

pub use config::Config;

pub const FUNCTION: &str = "dns-sync";
