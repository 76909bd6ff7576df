//! "This event was handled": a DynamoDB conditional write per (function, event id), so a second,
//! late or concurrent delivery of the same EventBridge event does not act or notify again.
//!
//! The semantics follow Powertools for AWS Lambda's idempotency utility: a key is claimed
//! `IN_PROGRESS` (with a short lease, so a crashed invocation does not hold it for a week), set
//! `COMPLETED` when the handler succeeds and deleted when it fails (so Lambda's retry can run),
//! and expires after `IDEMPOTENCY_TTL` through the table's TTL attribute. Each claim carries its
//! owner (the invocation's request id): only the owner completes or releases it, so a late
//! finisher cannot close or delete a newer invocation's claim. A duplicate that arrives while
//! the first run holds the claim ends quietly: the first run owns the outcome (if it fails,
//! Lambda retries that one). The store being throttled or briefly down never blocks an action
//! (the function acts, logs that the check was skipped and counts `DedupSkipped`, which an alarm
//! watches); a store that refuses for good (AccessDenied, no such table) is a configuration
//! error and nothing acts: deduplication silently off would act twice on every redelivery.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::classify::{AwsError, SdkResultExt};
use crate::error::Error;

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
        owner: &str,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;
    /// Marks `owner`'s claim handled; `Ok(false)` when the claim is no longer `owner`'s.
    fn complete(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Deletes `owner`'s claim so a retry can run; `Ok(false)` when it is no longer `owner`'s.
    fn release(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

/// A small value kept across invocations and cold starts (what a function reported last), in
/// the same table and under the same key prefix as its claims.
pub trait Remember: Send + Sync {
    fn recall(&self, key: &str) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn remember(&self, key: &str, value: &str)
    -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// What the store holds for each of `keys`, `at_once` reads in flight. A key it cannot read
/// is left out, as one never written is: the caller decides what not knowing means.
pub async fn recall_all<S: Remember>(
    store: &S,
    keys: impl IntoIterator<Item = String>,
    at_once: usize,
) -> HashMap<String, String> {
    use futures::StreamExt;
    futures::stream::iter(keys)
        .map(|key| async move {
            match store.recall(&key).await {
                Ok(Some(value)) => Some((key, value)),
                Ok(None) => None,
                Err(e) => {
                    warn!(key, error = %e, "not read from the store: taken as unknown");
                    None
                }
            }
        })
        .buffer_unordered(at_once.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await
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

/// A write conditioned on the claim's owner: `Ok(false)` when the condition failed (the claim
/// has passed to a newer invocation), the AWS error otherwise.
fn still_owned<O, E>(
    operation: &'static str,
    done: Result<
        O,
        aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    >,
) -> Result<bool, AwsError>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
    match done {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(AwsError::from_sdk(operation, e)),
    }
}

impl Store for DynamoStore {
    async fn begin(
        &self,
        key: &str,
        lease_until: SystemTime,
        owner: &str,
    ) -> Result<Claim, AwsError> {
        let now = SystemTime::now();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", self.id(key))
            .item("owner", AttributeValue::S(owner.to_owned()))
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

    async fn complete(&self, key: &str, owner: &str) -> Result<bool, AwsError> {
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .update_expression("SET #status = :completed, expires_at = :expires")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":completed", AttributeValue::S("COMPLETED".into()))
            .expression_attribute_values(":expires", n(epoch(SystemTime::now() + self.ttl)))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        still_owned("dynamodb:UpdateItem", done)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, AwsError> {
        let done = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", self.id(key))
            .condition_expression("#owner = :owner AND #status = :in_progress")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":in_progress", AttributeValue::S("IN_PROGRESS".into()))
            .send()
            .await;
        still_owned("dynamodb:DeleteItem", done)
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

/// Claims `id` for `owner` until `lease_until`: `Some` with what the store answered; `None` when
/// it could not be asked (throttled, a 5xx, no answer: the caller acts rather than drop the
/// event, and it is counted); an error when it refused for good (AccessDenied, no such table:
/// deduplication would be off for good, unseen, so nothing is done).
pub async fn claim<S: Store>(
    store: &S,
    id: &str,
    lease_until: SystemTime,
    owner: &str,
) -> Result<Option<Claim>, Error> {
    match store.begin(id, lease_until, owner).await {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.class() == crate::Class::Retryable => {
            skipped(id, &e);
            Ok(None)
        }
        Err(e) => {
            warn!(event_id = %id, error = %e, "idempotency store refused: nothing done");
            Err(Error::from(e))
        }
    }
}

/// Ends `owner`'s claim on `id`: completed when the work was done, released (so a retry can
/// run) when it was not. A claim that passed to a newer invocation is left as it is.
pub async fn settle<S: Store>(store: &S, id: &str, owner: &str, done: bool) {
    let recorded = if done {
        store.complete(id, owner).await
    } else {
        store.release(id, owner).await
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            warn!(event_id = %id, "the claim had passed to a newer invocation; left as it is")
        }
        Err(e) => warn!(event_id = %id, error = %e, "idempotency record not updated"),
    }
}

/// Runs `handler` once per event id (see the module docs), holding the claim for `owner` (the
/// invocation's request id) until `lease_until`.
pub async fn once<S, F, Fut, T>(
    store: &S,
    event: &Value,
    lease_until: SystemTime,
    owner: &str,
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
    let claim = claim(store, &id, lease_until, owner).await?;
    if let Some(c @ (Claim::Completed | Claim::InProgress)) = claim {
        info!(event_id = %id, claim = ?c, "duplicate delivery: handled before or being handled now, nothing done");
        let duplicate = Duplicate {
            duplicate: true,
            event_id: id,
            claim: c,
        };
        return Ok(serde_json::to_value(duplicate).unwrap_or(Value::Null));
    }
    let outcome = handler().await;
    if claim == Some(Claim::New) {
        settle(store, &id, owner, outcome.is_ok()).await;
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
        /// Key → (claim, owner).
        pub keys: Mutex<HashMap<String, (Claim, String)>>,
        pub values: Mutex<HashMap<String, String>>,
        /// Every call fails as a missing table does (a configuration error).
        pub broken: bool,
        /// Every call is throttled (a passing failure).
        pub throttled: bool,
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
            if self.throttled {
                return Err(AwsError::fake(
                    "dynamodb:PutItem",
                    "ProvisionedThroughputExceededException",
                    400,
                    "The level of configured provisioned throughput for the table was exceeded",
                ));
            }
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
        async fn begin(&self, key: &str, _: SystemTime, owner: &str) -> Result<Claim, AwsError> {
            self.fail()?;
            let mut keys = self.keys.lock().expect("lock");
            Ok(match keys.get(key) {
                Some((c, _)) => *c,
                None => {
                    keys.insert(key.to_owned(), (Claim::InProgress, owner.to_owned()));
                    Claim::New
                }
            })
        }
        async fn complete(&self, key: &str, owner: &str) -> Result<bool, AwsError> {
            self.fail()?;
            let mut keys = self.keys.lock().expect("lock");
            match keys.get_mut(key) {
                Some((c, o)) if o == owner => {
                    *c = Claim::Completed;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        async fn release(&self, key: &str, owner: &str) -> Result<bool, AwsError> {
            self.fail()?;
            let mut keys = self.keys.lock().expect("lock");
            match keys.get(key) {
                Some((Claim::InProgress, o)) if o == owner => {
                    keys.remove(key);
                    Ok(true)
                }
                _ => Ok(false),
            }
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
    async fn recall_all_gives_what_is_kept_and_leaves_out_what_cannot_be_read() {
        let store = Memory::default();
        store.remember("a", "1").await.unwrap();
        store.remember("b", "2").await.unwrap();
        let keys = ["a", "b", "never"].map(str::to_owned);
        let got = recall_all(&store, keys.clone(), 2).await;
        assert_eq!(
            got,
            HashMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ])
        );
        let down = Memory {
            broken: true,
            ..Memory::default()
        };
        assert!(recall_all(&down, keys, 2).await.is_empty());
    }

    #[tokio::test]
    async fn a_second_delivery_does_nothing() {
        let (store, runs) = (Memory::default(), AtomicUsize::new(0));
        let run = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("rolled")
        };
        assert_eq!(
            once(&store, &event("e1"), lease(), "r1", run)
                .await
                .unwrap(),
            "rolled"
        );
        let again = once(&store, &event("e1"), lease(), "r1", run)
            .await
            .unwrap();
        assert_eq!(again["duplicate"], true);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_run_is_released_so_the_retry_runs() {
        let store = Memory::default();
        let err = once(&store, &event("e2"), lease(), "r1", || async {
            Err::<(), _>(Error::Transient("503".into()))
        })
        .await;
        assert!(err.is_err());
        let ok = once(&store, &event("e2"), lease(), "r2", || async {
            Ok::<_, Error>(1)
        })
        .await;
        assert_eq!(ok.unwrap(), 1);
    }

    /// The review: a duplicate arriving while the first run held the claim returned a
    /// retryable error and, after Lambda's retries, landed in the failed queue as a failure.
    #[tokio::test]
    async fn a_duplicate_during_the_first_run_ends_quietly() {
        let store = Memory::default();
        store.begin("e3", lease(), "first").await.unwrap();
        let runs = AtomicUsize::new(0);
        let out = once(&store, &event("e3"), lease(), "second", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(1)
        })
        .await
        .unwrap();
        assert_eq!(out["duplicate"], true);
        assert_eq!(out["claim"], "in-progress");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    /// The review: `complete` and `release` were unconditional, so a run that finished after
    /// its lease ran out deleted the claim of the invocation that had taken over.
    #[tokio::test]
    async fn a_late_finisher_never_touches_a_newer_claim() {
        let store = Memory::default();
        // "late" claimed, its lease ran out, "newer" claimed the event again.
        store
            .keys
            .lock()
            .unwrap()
            .insert("e5".into(), (Claim::InProgress, "newer".into()));
        assert!(!store.release("e5", "late").await.unwrap());
        assert!(!store.complete("e5", "late").await.unwrap());
        assert_eq!(
            store.keys.lock().unwrap()["e5"],
            (Claim::InProgress, "newer".to_owned())
        );
        assert!(store.complete("e5", "newer").await.unwrap());
    }

    /// The review: any store error meant "act anyway", so a missing table or AccessDenied
    /// silently turned deduplication off. Throttling still acts (and is counted).
    #[tokio::test]
    async fn a_store_that_refuses_for_good_stops_the_action_a_throttled_one_does_not() {
        let broken = Memory {
            broken: true,
            ..Memory::default()
        };
        let runs = AtomicUsize::new(0);
        let err = once(&broken, &event("e4"), lease(), "r", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("acted")
        })
        .await
        .unwrap_err();
        assert_eq!(crate::Classify::class(&err), crate::Class::NonRetryable);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        let throttled = Memory {
            throttled: true,
            ..Memory::default()
        };
        let ok = once(&throttled, &event("e4"), lease(), "r", || async {
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
