//! access-entries: a CloudFormation custom resource that gives a function's role an EKS access
//! entry on every cluster of a list, however long. `AWS::EKS::AccessEntry` takes one cluster,
//! and `Fn::ForEach` (which could repeat it) is not expanded by `sam build`.

pub mod aws;
pub mod domain;
#[cfg(test)]
mod fakes;
pub mod handler;
pub mod respond;

pub const FUNCTION: &str = "access-entries";
