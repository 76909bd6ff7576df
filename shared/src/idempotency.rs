//! "This event was handled": a DynamoDB conditional write per (function, event id), so a second,
//! late or concurrent delivery of the same EventBridge event does not act or notify again.
//!
//! The semantics follow Powertools for AWS Lambda's idempotency utility: a key is claimed
//! `IN_PROGRESS` (with a short lease, so a crashed invocation does not hold it for a week), set
//! `COMPLETED` when the handler succeeds and deleted when it fails (so Lambda's retry can run),
//! and expires after `IDEMPOTENCY_TTL` through the table's TTL attribute. The store failing never
//! blocks an action: the function acts, logs that the check was skipped and counts it.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::error::{AwsError, Error, SdkResultExt};

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Claim {
    /// Ours to handle.
    New,
    /// Handled before, within the TTL.
    Completed,
    /// Another invocation is handling it now (its lease has not run out).
    InProgress,
}

pub trait Store: Send + Sync {
    /// Claims `key` until `lease_until` (the invocation's deadline: a run that dies holds it no
    /// longer than Lambda would have let it run).
    fn begin(
        &self,
        key: &str,
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;
    fn complete(&self, key: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn release(&self, key: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// A small value kept across invocations and cold starts (what a function reported last), in
/// the same table and under the same key prefix as its claims.
pub trait Remember: Send + Sync {
    fn recall(&self, key: &str) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn remember(&self, key: &str, value: &str)
    -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// DynamoDB's item limit is 400 KB; a remembered value stays far below it.
pub const MAX_REMEMBERED: usize = 100_000;

/// The stack's table: partition key `id` (S), TTL attribute `expires_at` (epoch seconds).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    function: String,
    ttl: Duration,
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl DynamoStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        function: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            function: function.into(),
            ttl,
        }
    }

    /// From `IDEMPOTENCY_TABLE` (required) and `IDEMPOTENCY_TTL_SECONDS` (default 7 days).
    pub fn from_env(
        env: &crate::config::Env,
        sdk: &aws_config::SdkConfig,
        function: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            aws_sdk_dynamodb::Client::new(sdk),
            env.required("IDEMPOTENCY_TABLE")?,
            function,
            // An hour (a redelivery comes within EventBridge's retry window, 24 h at most) to a
            // year; larger overflows the expiry arithmetic.
            env.seconds_in("IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL, 3_600..=31_536_000)?,
        ))
    }

    fn id(&self, key: &str) -> AttributeValue {
        AttributeValue::S(format!("{}#{key}", self.function))
    }
}

fn epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Store for DynamoStore {
    async fn begin(&self, key: &str, lease_until: SystemTime) -> Result<Claim, AwsError> {
        let now = SystemTime::now();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", self.id(key))
            .item("status", AttributeValue::S("IN_PROGRESS".into()))
            .item("expires_at", n(epoch(now + self.ttl)))
            .item("lease_until", n(epoch(lease_until)))
            .condition_expression(
                "attribute_not_exists(id) OR expires_at < :now \
                 OR (#status = :in_progress AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(epoch(now)))
            .expression_attribute_values(":in_progress", AttributeValue::S("IN_PROGRESS".into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::New),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    let status = c
                        .item()
                        .and_then(|i: &HashMap<String, AttributeValue>| i.get("status"))
                        .and_then(|s| s.as_s().ok())
                        .map(String::as_str);
                    Ok(if status == Some("IN_PROGRESS") {
                        Claim::InProgress
                    } else {
                        Claim::Completed
                    })
                }
                _ => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
            },
        }
    }

    async fn complete(&self, key: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .update_expression("SET #status = :completed, expires_at = :expires")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", AttributeValue::S("COMPLETED".into()))
            .expression_attribute_values(":expires", n(epoch(SystemTime::now() + self.ttl)))
            .send()
            .await
            .context("dynamodb:UpdateItem")?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .send()
            .await
            .context("dynamodb:DeleteItem")?;
        Ok(())
    }
}

impl Remember for DynamoStore {
    async fn recall(&self, key: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .consistent_read(true)
            .send()
            .await
            .context("dynamodb:GetItem")?;
        let now = epoch(SystemTime::now());
        let item = out.item().filter(|i| {
            // TTL deletion lags by up to days; an expired item is as good as gone.
            i.get("expires_at")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .is_none_or(|at| at >= now)
        });
        Ok(item
            .and_then(|i| i.get("value"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    async fn remember(&self, key: &str, value: &str) -> Result<(), AwsError> {
        let value = crate::text::prefix(value, MAX_REMEMBERED);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", self.id(key))
            .item("value", AttributeValue::S(value.to_owned()))
            .item("expires_at", n(epoch(SystemTime::now() + self.ttl)))
            .send()
            .await
            .context("dynamodb:PutItem")?;
        Ok(())
    }
}

/// The EventBridge event id, the key of a whole invocation; `None` for a payload without one
/// (a hand-made test event), which is then handled every time.
pub fn event_id(event: &Value) -> Option<String> {
    let id = event.get("id")?.as_str()?;
    (event.get("detail-type").is_some() && !id.is_empty()).then(|| id.to_owned())
}

/// The store could not be asked: say so and count it (`DedupSkipped`); the caller acts anyway.
pub fn skipped(key: &str, err: &AwsError) {
    warn!(key, error = %err, "idempotency check skipped: the store is unavailable");
    crate::metrics::Metrics::new("idempotency")
        .count("DedupSkipped", 1)
        .flush();
}

/// What a duplicate delivery returns instead of running the handler again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub duplicate: bool,
    pub event_id: String,
    pub claim: Claim,
}

/// Runs `handler` once per event id (see the module docs), holding the claim until
/// `lease_until`. A concurrent duplicate is a Retryable error: Lambda tries it again later, when
/// the first has finished or given up.
pub async fn once<S, F, Fut, T>(
    store: &S,
    event: &Value,
    lease_until: SystemTime,
    handler: F,
) -> Result<Value, Error>
where
    S: Store,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
    T: Serialize,
{
    let to_value = |v: T| serde_json::to_value(v).unwrap_or(Value::Null);
    let Some(id) = event_id(event) else {
        return handler().await.map(to_value);
    };
    let claim = match store.begin(&id, lease_until).await {
        Ok(c) => Some(c),
        Err(e) => {
            skipped(&id, &e);
            None
        }
    };
    match claim {
        Some(Claim::Completed) => {
            info!(event_id = %id, "duplicate delivery: handled before, nothing done");
            let duplicate = Duplicate {
                duplicate: true,
                event_id: id,
                claim: Claim::Completed,
            };
            return Ok(serde_json::to_value(duplicate).unwrap_or(Value::Null));
        }
        Some(Claim::InProgress) => {
            return Err(Error::Transient(format!(
                "event {id} is being handled by another invocation"
            )));
        }
        _ => {}
    }
    let outcome = handler().await;
    if claim == Some(Claim::New) {
        let recorded = match &outcome {
            Ok(_) => store.complete(&id).await,
            Err(_) => store.release(&id).await,
        };
        if let Err(e) = recorded {
            warn!(event_id = %id, error = %e, "idempotency record not updated");
        }
    }
    outcome.map(to_value)
}

/// An in-memory store for the functions' unit tests.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    pub struct Memory {
        pub keys: Mutex<HashMap<String, Claim>>,
        pub values: Mutex<HashMap<String, String>>,
        pub broken: bool,
    }

    impl Remember for Memory {
        async fn recall(&self, key: &str) -> Result<Option<String>, AwsError> {
            self.fail()?;
            Ok(self.values.lock().expect("lock").get(key).cloned())
        }
        async fn remember(&self, key: &str, value: &str) -> Result<(), AwsError> {
            self.fail()?;
            self.values
                .lock()
                .expect("lock")
                .insert(key.to_owned(), value.to_owned());
            Ok(())
        }
    }

    impl Memory {
        fn fail(&self) -> Result<(), AwsError> {
            if self.broken {
                return Err(AwsError::fake(
                    "dynamodb:PutItem",
                    "ResourceNotFoundException",
                    400,
                    "Requested resource not found",
                ));
            }
            Ok(())
        }
    }

    impl Store for Memory {
        async fn begin(&self, key: &str, _: SystemTime) -> Result<Claim, AwsError> {
            self.fail()?;
            let mut keys = self.keys.lock().expect("lock");
            Ok(match keys.get(key) {
                Some(c) => *c,
                None => {
                    keys.insert(key.to_owned(), Claim::InProgress);
                    Claim::New
                }
            })
        }
        async fn complete(&self, key: &str) -> Result<(), AwsError> {
            self.fail()?;
            self.keys
                .lock()
                .expect("lock")
                .insert(key.to_owned(), Claim::Completed);
            Ok(())
        }
        async fn release(&self, key: &str) -> Result<(), AwsError> {
            self.fail()?;
            self.keys.lock().expect("lock").remove(key);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Memory;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn lease() -> SystemTime {
        SystemTime::now() + Duration::from_secs(60)
    }

    fn event(id: &str) -> Value {
        serde_json::json!({"id": id, "detail-type": "ECR Image Action", "detail": {}})
    }

    #[tokio::test]
    async fn a_second_delivery_does_nothing() {
        let (store, runs) = (Memory::default(), AtomicUsize::new(0));
        let run = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("rolled")
        };
        assert_eq!(
            once(&store, &event("e1"), lease(), run).await.unwrap(),
            "rolled"
        );
        let again = once(&store, &event("e1"), lease(), run).await.unwrap();
        assert_eq!(again["duplicate"], true);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_run_is_released_so_the_retry_runs() {
        let store = Memory::default();
        let err = once(&store, &event("e2"), lease(), || async {
            Err::<(), _>(Error::Transient("503".into()))
        })
        .await;
        assert!(err.is_err());
        let ok = once(&store, &event("e2"), lease(), || async {
            Ok::<_, Error>(1)
        })
        .await;
        assert_eq!(ok.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_is_retried_later() {
        let store = Memory::default();
        store.begin("e3", SystemTime::now()).await.unwrap();
        let err = once(&store, &event("e3"), lease(), || async {
            Ok::<_, Error>(1)
        })
        .await
        .unwrap_err();
        assert_eq!(crate::Classify::class(&err), crate::Class::Retryable);
    }

    #[tokio::test]
    async fn an_unavailable_store_never_blocks_the_action() {
        let store = Memory {
            broken: true,
            ..Memory::default()
        };
        let ok = once(&store, &event("e4"), lease(), || async {
            Ok::<_, Error>("acted")
        })
        .await;
        assert_eq!(ok.unwrap(), "acted");
    }

    #[test]
    fn only_eventbridge_events_have_a_key() {
        assert_eq!(event_id(&event("abc")).as_deref(), Some("abc"));
        assert_eq!(event_id(&serde_json::json!({"id": "x"})), None);
        assert_eq!(
            event_id(&serde_json::json!({"detail-type": "x", "id": ""})),
            None
        );
    }
}
