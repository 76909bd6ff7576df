//! snapshot-export: every night, export the newest automated (or AWS Backup) snapshot of each selected RDS
//! instance and Aurora cluster to S3 (Parquet, KMS-encrypted); report how the exports end.

pub mod account;
pub mod aws;
pub mod catalog;
pub mod completion;
pub mod config;
pub mod domain;
pub mod export_only;
#[cfg(test)]
mod fakes;
pub mod files;
pub mod glue;
pub mod handler;
pub mod report;
pub mod snapshots;
pub mod verify;

pub use config::Config;

pub const FUNCTION: &str = "snapshot-export";
