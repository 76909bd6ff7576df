//! The SQS batch's vocabulary: what the Lambda answers (the batch item failures SQS acts on, and
//! a summary), what a record says about itself, and where unusable records are kept.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsMessage};
use bridgekeeper::failures::{FailureRecord, FailureSink};
use bridgekeeper::idempotency::event_id;
use bridgekeeper::{Classify, Error};
use serde::Serialize;
use tracing::warn;

/// A record SQS is to deliver again (`batchItemFailures`), as the event crate names it.
pub fn item_failure(message_id: impl Into<String>) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id.into();
    f
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub message_id: String,
    pub error: String,
    /// `false`: the record cannot be used (it goes to the DLQ after the queue's retries);
    /// `true`: its notification could not be sent this time.
    pub retryable: bool,
}

/// The Lambda's answer: `batchItemFailures` is what SQS acts on (those records come back, and
/// after the queue's maxReceiveCount go to its DLQ); the rest is the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
    pub events: usize,
    pub notifications: usize,
    pub coalesced: usize,
    /// Records whose EventBridge event was already reported (an earlier batch, or twice here).
    pub duplicates: usize,
    /// Records deliberately not sent: EC2 events about instances that are not nodes of a
    /// watched cluster, alarm changes older than one already reported, and silenced alarms when
    /// `SILENCED_ALARMS=drop`.
    pub dropped: usize,
    /// Follow-ups of node-group updates still running, sent on to be asked again later.
    pub followed: usize,
    pub failures: Vec<RecordError>,
    /// Records that can never be used: kept in the failed-invocations queue by
    /// [`record_rejected`] instead of being received five times on their way to the DLQ.
    #[serde(skip)]
    pub rejected: Vec<(String, String)>,
}

impl Response {
    /// Returns `records` to SQS for `e`.
    pub fn retry(&mut self, records: impl IntoIterator<Item = String>, e: &Error) {
        for id in records {
            self.failures.push(RecordError {
                message_id: id.clone(),
                error: e.to_string(),
                retryable: e.class() == bridgekeeper::Class::Retryable,
            });
            self.batch_item_failures.push(item_failure(id));
        }
    }
}

/// The EventBridge event id in a record's body; `None` when the body is not an event.
pub fn record_event_id(record: &SqsMessage) -> Option<String> {
    record
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .as_ref()
        .and_then(event_id)
}

/// SQS delivered the record before (`ApproximateReceiveCount` > 1).
pub fn redelivered(record: &SqsMessage) -> bool {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

/// Records each unusable record once in the failed-invocations queue; one the queue could not
/// take goes back to SQS as a batch item failure, so it is still kept (in the DLQ) in the end.
pub async fn record_rejected<S: FailureSink>(mut response: Response, sink: &S) -> Response {
    for (id, body) in std::mem::take(&mut response.rejected) {
        let why = response
            .failures
            .iter()
            .find(|f| f.message_id == id)
            .map(|f| f.error.clone())
            .unwrap_or_default();
        let event = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        let record = FailureRecord::rejected(crate::FUNCTION, &Error::invalid_event(why), &event);
        if let Err(e) = sink.record(&record).await {
            warn!(message_id = %id, error = %e, "failed-invocations queue unreachable; record returned to SQS");
            response.batch_item_failures.push(item_failure(id));
        }
    }
    response
}

#[cfg(test)]
mod tests {

    use bridgekeeper::failures::testing::Kept;

    use crate::batch::record_rejected;

    use crate::fakes::*;

    use crate::pipeline::handle_batch;

    #[tokio::test]
    async fn unparseable_records_are_kept_once_not_redelivered_and_do_not_block_the_rest() {
        let p = ports();
        let bodies = [
            "not json at all",
            sample!("launch-successful.json"),
            r#"{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}"#,
            r#"{"source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Successful", "detail": {"no": "group"}}"#,
            r#"{"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-1", "state": "running"}}"#,
        ];
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert!(r.failures.iter().all(|f| !f.retryable));
        assert!(
            r.failures[1].error.contains("\"aws.s3\""),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[2]
                .error
                .contains("malformed EC2 Instance Launch Successful event"),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[3].error.contains("\"running\""),
            "{:?}",
            r.failures
        );
        assert_eq!(p.notifiers.all.sent().len(), 1);
        assert!(p.ec2.calls.lock().unwrap().is_empty());
        // Kept in the failed-invocations queue, so SQS need not bring them back five times.
        let kept = Kept::default();
        let r = record_rejected(r, &kept).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        let records = kept.records.lock().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].event, "not json at all");
        assert_eq!(records[1].event["source"], "aws.s3");
        assert!(
            records
                .iter()
                .all(|r| r.error_type == "NonRetryable.InvalidEvent")
        );
    }

    #[tokio::test]
    async fn unparseable_records_go_back_to_sqs_when_the_queue_is_unreachable() {
        let p = ports();
        let r = handle_batch(batch(&["not json at all"]), &config(&[]), &p)
            .await
            .unwrap();
        let broken = Kept {
            broken: true,
            ..Kept::default()
        };
        let r = record_rejected(r, &broken).await;
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["batchItemFailures"][0],
            serde_json::json!({"itemIdentifier": "m0"})
        );
    }
}
