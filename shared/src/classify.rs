//! Whether an error is worth retrying: Retryable (throttling, 5xx, timeouts, credentials that
//! expired) or NonRetryable (bad event, bad config, access denied, validation, not found), and
//! the failed AWS call with what the service said about it.
//!
//! The class is the first part of the Lambda `Diagnostic::error_type` (`Retryable.Aws`,
//! `NonRetryable.InvalidEvent`), so a DLQ reader, a metric filter or a Step Functions `Retry`
//! block can tell them apart without parsing messages. Nothing here knows the crate's other
//! errors: they all classify themselves through [`Classify`].

use std::error::Error as StdError;
use std::fmt;

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::request_id::RequestId;
use lambda_runtime::Diagnostic;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether trying the same thing again can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Class {
    Retryable,
    NonRetryable,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Retryable => "Retryable",
            Class::NonRetryable => "NonRetryable",
        })
    }
}

/// An error that knows whether it is worth retrying, and a short kind name for `error_type`.
pub trait Classify: StdError {
    fn class(&self) -> Class;
    fn kind(&self) -> &'static str;

    /// The Lambda `Diagnostic`: `error_type` is `<Class>.<kind>`, the message carries the whole
    /// source chain so the DLQ entry says what went wrong without a trip to the logs.
    fn diagnostic(&self) -> Diagnostic
    where
        Self: Sized,
    {
        Diagnostic {
            error_type: format!("{}.{}", self.class(), self.kind()),
            error_message: chain(self),
        }
    }
}

/// `outer: inner: innermost`, skipping a source whose text the outer message already contains.
pub fn chain(err: &(dyn StdError + '_)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// A failed AWS call, with what the service said about it: error code, HTTP status, request id.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {}{}{}", code.as_deref().unwrap_or("no error code"),
    message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
    request_id.as_deref().map(|r| format!(" [request id {r}]")).unwrap_or_default())]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub status: Option<u16>,
    pub class: Class,
    #[source]
    pub source: BoxError,
}

impl AwsError {
    /// Keeps the SDK's metadata and classifies it. `operation` names the call, e.g. `sns:Publish`.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        // Query-protocol services (SNS, RDS) carry it in the body, which the SDK copies into metadata.
        let request_id = err
            .request_id()
            .or_else(|| err.as_service_error().and_then(|e| e.meta().request_id()))
            .map(str::to_owned);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let class = match &err {
            // A garbled or cut-off answer (ResponseError) says nothing about the request.
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Class::Retryable,
            SdkError::ConstructionFailure(_) => Class::NonRetryable,
            _ => classify_service(code.as_deref(), status),
        };
        AwsError {
            operation,
            code,
            message,
            request_id,
            status,
            class,
            source: Box::new(err),
        }
    }

    pub fn kind(&self) -> &'static str {
        "Aws"
    }

    pub fn class(&self) -> Class {
        self.class
    }
}

#[cfg(any(test, feature = "test-util"))]
impl AwsError {
    /// A service's error answer as the SDK reports it, classified the same way: for test fakes.
    pub fn fake(operation: &'static str, code: &str, status: u16, message: &str) -> Self {
        AwsError {
            operation,
            code: Some(code.to_owned()),
            message: (!message.is_empty()).then(|| message.to_owned()),
            request_id: None,
            status: Some(status),
            class: classify_service(Some(code), Some(status)),
            source: code.to_owned().into(),
        }
    }
}

/// Throttling and transient codes (the SDK's own lists), 429 and 5xx are worth retrying;
/// everything else the service answered (validation, access denied, not found) is not.
pub fn classify_service(code: Option<&str>, status: Option<u16>) -> Class {
    let known_retryable = code.is_some_and(|c| {
        THROTTLING_ERRORS.contains(&c)
            || TRANSIENT_ERRORS.contains(&c)
            || matches!(
                c,
                "InternalError"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "ServiceUnavailableException"
                    | "PriorRequestNotComplete"
                    // Credentials that expired, or a clock that drifted: the SDK's providers
                    // refresh and re-sign on the next attempt.
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "RequestExpired"
                    | "RequestTimeTooSkewed"
                    // KMS throttling as services pass it on (SNS to an encrypted topic, RDS).
                    | "KMSThrottling"
                    | "KMSThrottlingException"
                    | "KMS.ThrottlingException"
            )
    });
    match status {
        _ if known_retryable => Class::Retryable,
        Some(429) => Class::Retryable,
        Some(s) if s >= 500 => Class::Retryable,
        _ => Class::NonRetryable,
    }
}

/// Shorthand for `.map_err(|e| AwsError::from_sdk(op, e))`.
pub trait SdkResultExt<T> {
    fn context(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E> SdkResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    fn context(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::error::Error;
    use aws_sdk_sns::operation::publish::PublishError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(code: &str, status: u16) -> AwsError {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("the service said no")
            .custom("aws_request_id", "req-123")
            .build();
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let err = SdkError::service_error(PublishError::generic(meta), raw);
        AwsError::from_sdk("sns:Publish", err)
    }

    #[test]
    fn throttling_is_retryable_and_keeps_code_and_request_id() {
        let e = service_error("Throttling", 400);
        assert_eq!(e.class, Class::Retryable);
        assert_eq!(e.code.as_deref(), Some("Throttling"));
        assert_eq!(e.request_id.as_deref(), Some("req-123"));
        assert_eq!(e.status, Some(400));
        let d = Error::from(e).diagnostic();
        assert_eq!(d.error_type, "Retryable.Aws");
        assert!(
            d.error_message.contains("sns:Publish failed: Throttling"),
            "{}",
            d.error_message
        );
        assert!(d.error_message.contains("req-123"), "{}", d.error_message);
    }

    #[test]
    fn server_errors_are_retryable() {
        assert_eq!(service_error("InternalError", 500).class, Class::Retryable);
        assert_eq!(service_error("SomethingNew", 503).class, Class::Retryable);
        assert_eq!(
            service_error("TooManyRequestsException", 429).class,
            Class::Retryable
        );
        assert_eq!(
            service_error("PriorRequestNotComplete", 400).class,
            Class::Retryable
        );
    }

    /// The review's misclassified codes: each was NonRetryable, and the event went to the
    /// failed queue for what a retry fixes.
    #[test]
    fn expired_credentials_clock_skew_and_kms_throttling_are_retryable() {
        for (code, status) in [
            ("ExpiredToken", 400),
            ("ExpiredTokenException", 400),
            ("RequestExpired", 400),
            ("RequestTimeTooSkewed", 403),
            ("KMSThrottling", 400),
            ("KMSThrottlingException", 400),
        ] {
            assert_eq!(
                service_error(code, status).class,
                Class::Retryable,
                "{code}"
            );
        }
    }

    #[test]
    fn a_garbled_or_truncated_answer_is_retryable() {
        let raw = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from("<Publi"));
        let err: SdkError<PublishError, HttpResponse> =
            SdkError::response_error("unexpected end of XML", raw);
        assert_eq!(
            AwsError::from_sdk("sns:Publish", err).class,
            Class::Retryable
        );
    }

    #[test]
    fn access_denied_validation_and_not_found_are_not_retryable() {
        for (code, status) in [
            ("AccessDenied", 403),
            ("AccessDeniedException", 403),
            ("ValidationError", 400),
            ("InvalidParameter", 400),
            ("NotFound", 404),
            ("DBSnapshotNotFound", 404),
        ] {
            let e = service_error(code, status);
            assert_eq!(e.class, Class::NonRetryable, "{code}");
            assert_eq!(Error::from(e).diagnostic().error_type, "NonRetryable.Aws");
        }
    }

    #[test]
    fn timeouts_and_dispatch_failures_are_retryable() {
        let err: SdkError<PublishError, HttpResponse> = SdkError::timeout_error("took too long");
        assert_eq!(
            AwsError::from_sdk("sns:Publish", err).class,
            Class::Retryable
        );
    }

    #[test]
    fn bad_event_and_config_are_not_retryable() {
        let d = Error::invalid_event("source 'aws.ec2' is not handled").diagnostic();
        assert_eq!(d.error_type, "NonRetryable.InvalidEvent");
        assert_eq!(
            d.error_message,
            "invalid event: source 'aws.ec2' is not handled"
        );
        let d = Error::from(ConfigError::missing("TOPIC_ARN")).diagnostic();
        assert_eq!(d.error_type, "NonRetryable.Config");
        assert!(d.error_message.contains("TOPIC_ARN"));
    }
}
