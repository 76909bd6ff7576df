//! What happens to a failure: the failed-invocations queue keeps what a person must look at.
//!
//! Lambda retries an asynchronous invocation on *any* error, twice by default, whatever the
//! error type says. So a `NonRetryable` failure (bad or foreign event, bad config) is not
//! returned to Lambda: [`settle`] records it once in the queue (the event, the error type and
//! message, the function) and ends the invocation successfully. A `Retryable` one is returned, so
//! Lambda retries with backoff and its `OnFailure` destination (the same queue) keeps it after
//! the last attempt. [`Queued`] does the same for a report that could not be published after
//! the function acted: the report body goes to the queue instead of being lost or re-acted.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use tracing::{error, warn};

use crate::classify::{AwsError, Class, Classify, SdkResultExt, chain};
use crate::error::{Error, MAX_MESSAGE_BYTES};
use crate::notify::{Notification, Notifier};
use crate::text::cap;

/// SQS takes 256 KiB per message; the event is cut well below so the rest always fits.
pub const MAX_EVENT_BYTES: usize = 192 * 1024;

/// One entry of the failed-invocations queue written by a function itself (Lambda's own
/// `OnFailure` records have another shape: `requestContext`, `requestPayload`, `responsePayload`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureRecord {
    pub kind: &'static str,
    pub function: String,
    pub error_type: String,
    pub error_message: String,
    /// The event as received, or `{"truncated": ...}` when it was too large to keep whole.
    pub event: Value,
    pub recorded_at: String,
}

impl FailureRecord {
    pub fn rejected(function: &str, err: &Error, event: &Value) -> Self {
        let d = err.diagnostic();
        FailureRecord {
            kind: "rejected-event",
            function: function.to_owned(),
            error_type: d.error_type,
            error_message: cap(&d.error_message, MAX_MESSAGE_BYTES),
            event: cap_event(event),
            recorded_at: chrono::Utc::now().to_rfc3339(),
        }
    }

    pub fn undelivered(function: &str, err: &AwsError, n: &Notification) -> Self {
        FailureRecord {
            kind: "undelivered-notification",
            function: function.to_owned(),
            error_type: format!("{}.Aws", err.class()),
            error_message: cap(&chain(err), MAX_MESSAGE_BYTES),
            event: cap_event(&serde_json::json!({
                "subject": n.subject,
                "severity": n.severity,
                "attributes": n.attributes,
                "body": n.body,
            })),
            recorded_at: chrono::Utc::now().to_rfc3339(),
        }
    }
}

fn cap_event(event: &Value) -> Value {
    let text = event.to_string();
    if text.len() <= MAX_EVENT_BYTES {
        return event.clone();
    }
    serde_json::json!({ "truncated": cap(&text, MAX_EVENT_BYTES), "bytes": text.len() })
}

/// Where failure records go. Handlers stay generic; tests use a plain fake or moto's SQS.
pub trait FailureSink: Send + Sync {
    fn record(&self, r: &FailureRecord) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// The failed-invocations queue (`FAILED_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct SqsFailureSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsFailureSink {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsFailureSink {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// From `FAILED_QUEUE_URL` (the stack's failed-invocations queue); required, so nothing a
    /// function refuses is ever only in its log.
    pub fn from_env(
        env: &crate::config::Env,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            aws_sdk_sqs::Client::new(sdk),
            env.queue_url("FAILED_QUEUE_URL")?,
        ))
    }
}

impl FailureSink for SqsFailureSink {
    async fn record(&self, r: &FailureRecord) -> Result<(), AwsError> {
        let body = serde_json::to_string(r).unwrap_or_default();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .context("sqs:SendMessage")?;
        Ok(())
    }
}

/// What an invocation that refused its event returns: a success, so Lambda does not retry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub rejected: bool,
    pub error_type: String,
    pub error_message: String,
    pub recorded_in_failed_invocations_queue: bool,
}

/// Settles an invocation's outcome (see the module docs). If even the queue cannot take the
/// record, the error goes back to Lambda: its retries and `OnFailure` destination still keep it.
pub async fn settle<T: Serialize, S: FailureSink>(
    function: &str,
    outcome: Result<T, Error>,
    event: &Value,
    sink: &S,
) -> Result<Value, Error> {
    let err = match outcome {
        Ok(v) => return Ok(serde_json::to_value(v).unwrap_or(Value::Null)),
        Err(e) if e.class() == Class::Retryable => return Err(e),
        Err(e) => e,
    };
    let record = FailureRecord::rejected(function, &err, event);
    match sink.record(&record).await {
        Ok(()) => {
            warn!(error_type = %record.error_type, error = %record.error_message, "event rejected, recorded in the failed-invocations queue, not retried");
            Ok(serde_json::to_value(Rejected {
                rejected: true,
                error_type: record.error_type,
                error_message: record.error_message,
                recorded_in_failed_invocations_queue: true,
            })
            .unwrap_or(Value::Null))
        }
        Err(sink_err) => {
            error!(error = %sink_err, "failed-invocations queue unreachable; returning the error to Lambda");
            Err(err)
        }
    }
}

/// A notifier whose undeliverable reports are queued, never lost, and never fail the invocation
/// after its actions are done (a retry would then act again or report nothing). The SDK has
/// already retried throttling and 5xx (standard mode, 3 attempts) before this sees an error.
pub struct Queued<'a, N, S> {
    pub inner: N,
    pub sink: &'a S,
    pub function: &'static str,
}

impl<N: Notifier, S: FailureSink> Notifier for Queued<'_, N, S> {
    async fn notify(&self, n: &Notification) -> Result<String, AwsError> {
        match self.inner.notify(n).await {
            Ok(id) => Ok(id),
            Err(e) => {
                let record = FailureRecord::undelivered(self.function, &e, n);
                self.sink.record(&record).await.map_err(|_| e)?;
                warn!(subject = %n.subject, "notification undeliverable; kept in the failed-invocations queue");
                crate::metrics::Metrics::new(self.function)
                    .count("NotificationsQueued", 1)
                    .flush();
                Ok("queued-in-failed-invocations".to_owned())
            }
        }
    }
}

/// A sink that keeps records in memory, for the functions' unit tests.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct Kept {
        pub records: Mutex<Vec<FailureRecord>>,
        pub broken: bool,
    }

    impl FailureSink for Kept {
        async fn record(&self, r: &FailureRecord) -> Result<(), AwsError> {
            if self.broken {
                return Err(AwsError::fake(
                    "sqs:SendMessage",
                    "AWS.SimpleQueueService.NonExistentQueue",
                    400,
                    "",
                ));
            }
            self.records.lock().expect("lock").push(r.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Kept;
    use super::*;
    use crate::notify::Severity;
    use crate::notify::testing::Recorder;

    #[tokio::test]
    async fn bad_input_is_recorded_once_and_ends_the_invocation() {
        let kept = Kept::default();
        let event = serde_json::json!({"source": "aws.ec2"});
        let out = settle::<(), _>(
            "dns-sync",
            Err(Error::invalid_event("source 'aws.ec2' is not handled")),
            &event,
            &kept,
        )
        .await
        .unwrap();
        assert_eq!(out["rejected"], true);
        let records = kept.records.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].error_type, "NonRetryable.InvalidEvent");
        assert_eq!(records[0].event, event);
        assert_eq!(records[0].function, "dns-sync");
    }

    #[tokio::test]
    async fn a_transient_failure_goes_back_to_lambda_for_its_retries() {
        let kept = Kept::default();
        let err = settle::<(), _>(
            "x",
            Err(Error::Transient("503".into())),
            &Value::Null,
            &kept,
        )
        .await
        .unwrap_err();
        assert_eq!(err.class(), Class::Retryable);
        assert!(kept.records.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_the_queue_bad_input_is_left_to_lambda_rather_than_lost() {
        let kept = Kept {
            broken: true,
            ..Kept::default()
        };
        let err = settle::<(), _>("x", Err(Error::invalid_event("bad")), &Value::Null, &kept)
            .await
            .unwrap_err();
        assert_eq!(err.class(), Class::NonRetryable);
    }

    #[test]
    fn a_huge_event_and_message_are_cut() {
        let huge = "x".repeat(1_000_000);
        let r = FailureRecord::rejected(
            "x",
            &Error::invalid_event(format!("field is {huge}")),
            &serde_json::json!({ "detail": huge }),
        );
        assert!(r.error_message.len() <= MAX_MESSAGE_BYTES);
        assert!(r.error_message.ends_with("more bytes)"));
        assert!(serde_json::to_string(&r).unwrap().len() < 256 * 1024);
        assert_eq!(r.event["bytes"], 1_000_013);
    }

    #[tokio::test]
    async fn an_unpublishable_report_is_queued_with_its_body() {
        let kept = Kept::default();
        let n = Queued {
            inner: Recorder::failing("AuthorizationError", 403),
            sink: &kept,
            function: "image-rollout",
        };
        let report = Notification::new("[prod] api rolled", "3 Deployments rolled", Severity::Info);
        assert_eq!(
            n.notify(&report).await.unwrap(),
            "queued-in-failed-invocations"
        );
        let records = kept.records.lock().unwrap();
        assert_eq!(records[0].kind, "undelivered-notification");
        assert_eq!(records[0].event["body"], "3 Deployments rolled");
    }
}
