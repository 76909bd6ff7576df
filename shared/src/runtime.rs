//! The Lambda runtime as every function runs it: tracing, and a guard in front of the runtime's
//! own payload deserializer.
//!
//! lambda_runtime answers a payload that is not JSON (or not UTF-8) itself, with its own error
//! type, before the handler runs: the Retryable/NonRetryable class is lost and nothing is kept.
//! [`Guard`] replaces such a payload with `{"bridgekeeper:unreadable-payload": "<why>"}`, which
//! every entry point refuses through [`readable`] as `NonRetryable.InvalidEvent`, so it is
//! recorded once in the failed-invocations queue like any other bad input.

use std::task::{Context, Poll};

use lambda_runtime::LambdaInvocation;
use serde_json::Value;

use crate::Error;

pub const UNREADABLE: &str = "bridgekeeper:unreadable-payload";

/// Why a payload cannot be read as JSON, or `None` when it can.
pub fn unreadable(body: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Some(format!(
                "the payload is not UTF-8 ({} bytes, invalid from byte {})",
                body.len(),
                e.valid_up_to()
            ));
        }
    };
    // Parsed as the runtime will parse it (into a Value): IgnoredAny would let through JSON
    // nested deeper than serde_json's recursion limit (128), which the runtime then refuses.
    serde_json::from_str::<Value>(text)
        .err()
        .map(|e| format!("the payload is not JSON ({} bytes): {e}", body.len()))
}

/// When Lambda stops this invocation (the context's deadline, epoch milliseconds).
pub fn deadline(context: &lambda_runtime::Context) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(context.deadline)
}

/// The entry points' first check: refuses the guard's marker, naming what was wrong.
pub fn readable(payload: &Value) -> Result<(), Error> {
    match payload.get(UNREADABLE).and_then(Value::as_str) {
        Some(why) => Err(Error::invalid_event(why)),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct GuardLayer;

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
}

impl<S: tower::Service<LambdaInvocation>> tower::Service<LambdaInvocation> for Guard<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        if let Some(why) = unreadable(&invocation.body) {
            let marker = serde_json::json!({ UNREADABLE: why });
            invocation.body = serde_json::to_vec(&marker).unwrap_or_default().into();
        }
        self.inner.call(invocation)
    }
}

/// `lambda_runtime::run` with the guard: what every function's `main` ends with.
#[macro_export]
macro_rules! serve {
    ($handler:expr) => {
        lambda_runtime::Runtime::new($handler)
            .layer($crate::runtime::GuardLayer)
            .layer(lambda_runtime::layers::TracingLayer::new())
            .run()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Classify;

    #[test]
    fn json_passes_and_anything_else_is_named() {
        assert_eq!(unreadable(br#"{"source": "aws.ecr"}"#), None);
        assert_eq!(unreadable(b"\"a string is JSON too\""), None);
        let why = unreadable(b"source=aws.ecr").unwrap();
        assert!(
            why.starts_with("the payload is not JSON (14 bytes)"),
            "{why}"
        );
        let why = unreadable(b"{\"a\": \"\xff\xfe\"}").unwrap();
        assert!(why.contains("not UTF-8"), "{why}");
        // Found by `make fuzz`: deeper than serde_json's recursion limit.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            unreadable(deep.as_bytes())
                .unwrap()
                .contains("recursion limit")
        );
    }

    #[test]
    fn the_marker_is_refused_as_invalid_input() {
        let marker = serde_json::json!({ UNREADABLE: "the payload is not JSON (3 bytes): x" });
        let err = readable(&marker).unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert!(err.to_string().contains("not JSON"));
        assert!(readable(&serde_json::json!({"source": "x"})).is_ok());
    }
}
