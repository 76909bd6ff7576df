//! What every event function is built with, once per cold start, and the one way it serves:
//! the environment, the SDK configuration, the member accounts, the failed-invocations queue
//! and the idempotency store; then each event claimed once, handled, and its outcome settled
//! (a refused event recorded in the queue, a passing failure left to Lambda's retries).

use std::future::Future;
use std::time::SystemTime;

use aws_config::SdkConfig;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::accounts::Accounts;
use crate::config::Env;
use crate::error::Error;
use crate::failures::{Queued, SqsFailureSink, settle};
use crate::idempotency::{DynamoStore, once};

pub struct Wiring {
    pub function: &'static str,
    pub env: Env,
    pub sdk: SdkConfig,
    pub accounts: Accounts,
    pub failed: SqsFailureSink,
    pub store: DynamoStore,
}

impl Wiring {
    /// Logging first, then everything from the environment: a bad setting stops the cold start
    /// with its name, before any event is taken.
    pub async fn init(function: &'static str) -> Result<Wiring, lambda_runtime::Error> {
        crate::telemetry::init();
        // Before the SDK builds its connector, which would panic on an empty store.
        if let Err(e) = crate::trust::check() {
            tracing::error!(error = %e, "init failed");
            return Err(e.into());
        }
        let env = Env::from_process();
        let sdk = crate::aws::sdk_config().await;
        let accounts = Accounts::from_env(&env, &sdk, function)?;
        let failed = SqsFailureSink::from_env(&env, &sdk)?;
        let store = DynamoStore::from_env(&env, &sdk, function)?;
        Ok(Wiring {
            function,
            env,
            sdk,
            accounts,
            failed,
            store,
        })
    }

    /// `inner` with a report SNS would not take kept in the failed-invocations queue.
    pub fn queued<N>(&self, inner: N) -> Queued<'_, N, SqsFailureSink> {
        Queued {
            inner,
            sink: &self.failed,
            function: self.function,
        }
    }

    /// Serves `handler` (the event, the invocation's deadline, its request id) until the
    /// runtime stops: each EventBridge event handled once (`once`), its outcome settled.
    pub async fn serve_once<F, Fut, T>(&self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(Value, SystemTime, String) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
        T: Serialize,
    {
        let (handler, store) = (&handler, &self.store);
        self.serve(move |event, deadline, request| async move {
            once(store, &event, deadline, &request, || {
                handler(event.clone(), deadline, request.clone())
            })
            .await
        })
        .await
    }

    /// Serves `handler` as it is (a handler that deduplicates by itself, per record), its
    /// outcome settled: a refused event kept in the failed-invocations queue, a passing
    /// failure left to Lambda's retries.
    pub async fn serve<F, Fut, T>(&self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(Value, SystemTime, String) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
        T: Serialize,
    {
        let (handler, failed, function) = (&handler, &self.failed, self.function);
        crate::serve!(service_fn(move |event: LambdaEvent<Value>| async move {
            let deadline = crate::runtime::deadline(&event.context);
            let request = event.context.request_id.clone();
            let outcome = handler(event.payload.clone(), deadline, request).await;
            settle(function, outcome, &event.payload, failed).await
        }))
        .await
    }
}
