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

/// How long the answer may take: main keeps `ANSWER_MARGIN` (5 s) of the invocation for it.
pub const RESPOND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// What is read of an error answer (S3's XML error is well under this).
const MAX_ERROR_BODY: usize = 4 * 1024;

/// The DNS suffixes of every AWS partition (aws and aws-us-gov, aws-cn, aws-eusc, and the ISO
/// partitions), as the SDK's partition table lists them.
const PARTITION_SUFFIXES: [&str; 7] = [
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// CloudFormation's response URL is a presigned S3 URL over https
/// (`https://cloudformation-custom-resource-response-<region>.s3.<region>.amazonaws.com/...`,
/// or the legacy `s3-<region>` and global forms). Anything else is not CloudFormation's, and the
/// function must not be made to send requests (and the stack's ids) to whatever URL an invoker
/// names.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("ResponseURL is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("ResponseURL is not https: CloudFormation's response URLs always are".into());
    }
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    if uri.port().is_some() || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "ResponseURL names a port or user on {host}; S3's never do"
        ));
    }
    let s3 = PARTITION_SUFFIXES.iter().any(|suffix| {
        host.strip_suffix(suffix)
            .and_then(|h| h.strip_suffix('.'))
            .is_some_and(|labels| labels.split('.').any(|l| l == "s3" || l.starts_with("s3-")))
    });
    if !s3 {
        return Err(format!(
            "ResponseURL's host {host:?} is not an S3 endpoint of any AWS partition"
        ));
    }
    Ok(())
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
        Https::build(false)
    }

    /// Plain http too: only for a loopback server in tests.
    #[cfg(test)]
    fn loopback() -> Result<Self, RespondError> {
        Https::build(true)
    }

    fn build(http_too: bool) -> Result<Self, RespondError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| RespondError(format!("no TLS trust store: {e}")))?;
        let builder = if http_too {
            builder.https_or_http()
        } else {
            builder.https_only()
        };
        let connector = builder.enable_http1().build();
        Ok(Https {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl Respond for Https {
    async fn respond(&self, url: &str, response: &Response) -> Result<(), RespondError> {
        tokio::time::timeout(RESPOND_TIMEOUT, self.put(url, response))
            .await
            .map_err(|_| {
                RespondError(format!("no answer within {} s", RESPOND_TIMEOUT.as_secs()))
            })?
    }
}

impl Https {
    async fn put(&self, url: &str, response: &Response) -> Result<(), RespondError> {
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
        let text = http_body_util::Limited::new(answer.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_else(|_| format!("(an error body over {MAX_ERROR_BODY} bytes)"));
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
        Https::loopback()
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

    #[test]
    fn only_https_urls_on_s3_hosts_of_an_aws_partition_are_answered() {
        for ok in [
            "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/arn%3A?X-Amz-Signature=0",
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
            "https://cloudformation-custom-resource-response-uswest2.s3-us-west-2.amazonaws.com/x",
            "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/x",
            "https://cloudformation-custom-resource-response-usgovwest1.s3.us-gov-west-1.amazonaws.com/x",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/x",
            "https://attacker.example/collect",
            "https://s3.eu-west-1.amazonaws.com.attacker.example/x",
            "https://lambda.eu-west-1.amazonaws.com/x",
            "https://x.s3.eu-west-1.amazonaws.com:8443/x",
            "https://user@x.s3.eu-west-1.amazonaws.com/x",
            "https://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    /// A server that accepts the PUT and never answers: the answer gives up in time, so the
    /// invocation can still end (and be retried) before Lambda stops it.
    #[tokio::test(start_paused = true)]
    async fn a_response_url_that_never_answers_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let _held = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let response = Response {
            status: Status::Success,
            reason: None,
            physical_resource_id: "p".into(),
            stack_id: "s".into(),
            request_id: "r".into(),
            logical_resource_id: "l".into(),
            data: BTreeMap::new(),
        };
        let err = Https::loopback()
            .unwrap()
            .respond(&url, &response)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer within 4 s"), "{err}");
    }
}
