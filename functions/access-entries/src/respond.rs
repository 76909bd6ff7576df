//! The answer CloudFormation waits for: a JSON document PUT to the request's presigned S3 URL.
//! Without it the stack hangs until the custom resource times out (an hour by default).

use std::collections::BTreeMap;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// CloudFormation's response object ("Custom resource response objects", CloudFormation guide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

/// The whole response must stay under 4,096 bytes; the reason is what can grow.
pub const MAX_REASON: usize = 2_000;

pub fn cap_reason(reason: &str) -> String {
    bridgekeeper::text::cap(reason, MAX_REASON)
}

#[derive(Debug, thiserror::Error)]
#[error("could not answer CloudFormation at the response URL: {0}")]
pub struct RespondError(pub String);

#[allow(async_fn_in_trait)]
pub trait Respond {
    async fn respond(&self, url: &str, response: &Response) -> Result<(), RespondError>;
}

/// PUT over hyper with rustls + ring, the stack the SDK already links.
pub struct Https {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<bytes::Bytes>,
    >,
}

impl Https {
    pub fn new() -> Result<Self, RespondError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| RespondError(format!("no TLS trust store: {e}")))?
            // http only for a local stand-in; CloudFormation's URLs are https.
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Https {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl Respond for Https {
    async fn respond(&self, url: &str, response: &Response) -> Result<(), RespondError> {
        let body = serde_json::to_vec(response).map_err(|e| RespondError(e.to_string()))?;
        // The URL is presigned without a content type: sending one breaks the signature.
        let request = http::Request::put(url)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| RespondError(format!("bad response URL: {e}")))?;
        let answer = self
            .client
            .request(request)
            .await
            .map_err(|e| RespondError(e.to_string()))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let text = answer
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(RespondError(format!(
            "HTTP {status}: {}",
            cap_reason(&text)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let long = "é".repeat(3_000);
        let cut = cap_reason(&long);
        assert!(cut.len() <= MAX_REASON);
        assert!(cut.ends_with("more bytes)"), "{cut}");
        assert_eq!(cap_reason("short"), "short");
    }

    /// A real HTTP server on loopback in the place of S3: what arrives is what S3 would check.
    #[tokio::test]
    async fn puts_the_json_without_a_content_type_the_url_was_not_signed_for() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/arn%3Aaws%3Acloudformation/x?X-Amz-Signature=abc",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if body.len() >= len {
                        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        return text;
                    }
                }
            }
        });
        let response = Response {
            status: Status::Success,
            reason: None,
            physical_resource_id: "access-entries:arn:aws:iam::1:role/r".into(),
            stack_id: "sid".into(),
            request_id: "rid".into(),
            logical_resource_id: "DnsSyncAccess".into(),
            data: BTreeMap::new(),
        };
        Https::new()
            .unwrap()
            .respond(&url, &response)
            .await
            .unwrap();
        let seen = server.await.unwrap();
        let (head, body) = seen.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("PUT /arn%3Aaws%3Acloudformation/x?X-Amz-Signature=abc HTTP/1.1"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("content-type"),
            "{head}"
        );
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(sent["Status"], "SUCCESS");
        assert_eq!(sent["LogicalResourceId"], "DnsSyncAccess");
    }

    #[test]
    fn serialises_as_cloudformation_expects() {
        let r = Response {
            status: Status::Failed,
            reason: Some("why".into()),
            physical_resource_id: "pid".into(),
            stack_id: "sid".into(),
            request_id: "rid".into(),
            logical_resource_id: "lid".into(),
            data: BTreeMap::new(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["PhysicalResourceId"], "pid");
        assert_eq!(v["Reason"], "why");
        assert!(v["Data"].is_object());
    }
}
