//! The idempotency store against moto's DynamoDB (real conditional writes): a redelivered event
//! is not handled twice, a failed one is, only the claim's owner completes or releases it, and a
//! missing table stops the action (deduplication silently off would act on every redelivery).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use bridgekeeper::Error;
use bridgekeeper::idempotency::{Claim, DynamoStore, Remember, Store, once};
use bridgekeeper_tests::{TestEnv, unique};
use serde_json::json;

async fn table(client: &aws_sdk_dynamodb::Client) -> Result<String> {
    bridgekeeper_tests::idempotency_table(client).await
}

fn store(client: &aws_sdk_dynamodb::Client, table: &str) -> DynamoStore {
    DynamoStore::new(
        client.clone(),
        table,
        "image-rollout",
        Duration::from_secs(3600),
    )
}

/// An invocation's deadline, five minutes away.
fn deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(300)
}

#[tokio::test]
async fn claims_follow_powertools_semantics_on_real_conditional_writes() -> Result<()> {
    let env = TestEnv::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let s = store(&client, &table(&client).await?);

    assert_eq!(s.begin("evt-1", deadline(), "req-a").await?, Claim::New);
    assert_eq!(
        s.begin("evt-1", deadline(), "req-a").await?,
        Claim::InProgress,
        "a concurrent duplicate"
    );
    assert!(s.complete("evt-1", "req-a").await?);
    assert_eq!(
        s.begin("evt-1", deadline(), "req-a").await?,
        Claim::Completed,
        "a late duplicate"
    );
    assert_eq!(
        s.begin("evt-2", deadline(), "req-b").await?,
        Claim::New,
        "another event"
    );
    assert!(s.release("evt-2", "req-b").await?);
    assert_eq!(
        s.begin("evt-2", deadline(), "req-b").await?,
        Claim::New,
        "released for the retry"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_lease_lets_the_retry_take_the_event_over() -> Result<()> {
    let env = TestEnv::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let s = store(&client, &table(&client).await?);
    // The crashed invocation's deadline has passed.
    assert_eq!(
        s.begin("evt-crashed", SystemTime::now(), "crashed").await?,
        Claim::New
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        s.begin("evt-crashed", deadline(), "retry").await?,
        Claim::New
    );
    // The first invocation was only slow: its late finish must not touch the retry's claim.
    assert!(!s.release("evt-crashed", "crashed").await?);
    assert!(!s.complete("evt-crashed", "crashed").await?);
    assert_eq!(
        s.begin("evt-crashed", deadline(), "third").await?,
        Claim::InProgress,
        "still the retry's"
    );
    assert!(s.complete("evt-crashed", "retry").await?);
    Ok(())
}

#[tokio::test]
async fn three_deliveries_of_one_push_run_the_handler_once() -> Result<()> {
    let env = TestEnv::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let s = store(&client, &table(&client).await?);
    let push = json!({"id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "ECR Image Action", "detail": {}});
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        once(&s, &push, deadline(), "req", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("rolled")
        })
        .await?;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn a_missing_table_stops_the_action() -> Result<()> {
    let env = TestEnv::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let s = store(&client, &unique("no-such-table"));
    let push = json!({"id": "e", "detail-type": "ECR Image Action", "detail": {}});
    let runs = AtomicUsize::new(0);
    let out = once(&s, &push, deadline(), "req", || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>("acted")
    })
    .await;
    let err = out.unwrap_err();
    assert_eq!(
        bridgekeeper::Classify::class(&err),
        bridgekeeper::Class::NonRetryable,
        "{err}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test]
async fn a_remembered_value_survives_a_new_store_and_expires_with_the_ttl() -> Result<()> {
    let env = TestEnv::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&env.sdk);
    let name = table(&client).await?;
    let s = store(&client, &name);
    assert_eq!(s.recall("report#problems").await?, None);
    s.remember("report#problems", "conflict a\nheld b").await?;
    // A cold start: a new client and store read what the last process wrote.
    let fresh = store(&aws_sdk_dynamodb::Client::new(&env.sdk), &name);
    assert_eq!(
        fresh.recall("report#problems").await?.as_deref(),
        Some("conflict a\nheld b")
    );
    // Past its TTL (DynamoDB deletes expired items days late) it reads as gone.
    let expired = DynamoStore::new(client.clone(), &name, "image-rollout", Duration::ZERO);
    expired.remember("report#problems", "old").await?;
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(expired.recall("report#problems").await?, None);
    Ok(())
}
