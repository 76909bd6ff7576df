//! The error type every handler returns: what failed, classified (see [`crate::classify`]).

use std::fmt;

use lambda_runtime::Diagnostic;

use crate::classify::{AwsError, Class, Classify};
use crate::config::ConfigError;

/// The most an error message carries (the failed-invocations queue and Lambda's diagnostic keep
/// it; a parse error quotes its input, which may be megabytes).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// The error type shared by the functions' handlers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event is not one this function handles, or is malformed.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something this invocation depends on failed in a way worth retrying.
    #[error("transient failure: {0}")]
    Transient(String),
    // Boxed: these are large, and every Result in the handlers carries this type.
    #[error(transparent)]
    Aws(Box<AwsError>),
    /// A member account's role could not be assumed.
    #[error(transparent)]
    Account(Box<crate::accounts::AccountError>),
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(Box<crate::cluster::ClusterError>),
    /// Something failed while acting in a member account.
    #[error("account {account}: {source}")]
    In {
        account: String,
        #[source]
        source: Box<Error>,
    },
}

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        Error::Aws(Box::new(e))
    }
}

impl From<crate::accounts::AccountError> for Error {
    fn from(e: crate::accounts::AccountError) -> Self {
        Error::Account(Box::new(e))
    }
}

#[cfg(feature = "cluster")]
impl From<crate::cluster::ClusterError> for Error {
    fn from(e: crate::cluster::ClusterError) -> Self {
        Error::Cluster(Box::new(e))
    }
}

impl From<crate::accounts::NotServed> for Error {
    fn from(e: crate::accounts::NotServed) -> Self {
        Error::invalid_event(e)
    }
}

impl Error {
    /// The message is capped: parse errors quote their input, which may be megabytes.
    pub fn invalid_event(what: impl fmt::Display) -> Self {
        Error::InvalidEvent(crate::text::cap(&what.to_string(), MAX_MESSAGE_BYTES))
    }

    /// `self`, said to have happened in `account` (a member's name or id).
    pub fn within(self, account: &str) -> Error {
        match self {
            already @ (Error::Account(_) | Error::In { .. }) => already,
            other => Error::In {
                account: account.to_owned(),
                source: Box::new(other),
            },
        }
    }
}

impl Classify for Error {
    fn class(&self) -> Class {
        match self {
            Error::InvalidEvent(_) | Error::Config(_) => Class::NonRetryable,
            Error::Transient(_) => Class::Retryable,
            Error::Aws(e) => e.class(),
            Error::Account(e) => e.class(),
            #[cfg(feature = "cluster")]
            Error::Cluster(e) => e.class(),
            Error::In { source, .. } => source.class(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Error::InvalidEvent(_) => "InvalidEvent",
            Error::Config(_) => "Config",
            Error::Transient(_) => "Transient",
            Error::Aws(e) => e.kind(),
            Error::Account(e) => e.kind(),
            #[cfg(feature = "cluster")]
            Error::Cluster(e) => e.kind(),
            Error::In { source, .. } => source.kind(),
        }
    }
}

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
        e.diagnostic()
    }
}
