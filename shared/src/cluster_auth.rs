//! How a request reaches an EKS API server as the function's role: a bearer token made as
//! `aws eks get-token` makes it (a presigned STS `GetCallerIdentity` URL, signed for the
//! cluster), and the request layer that puts the current token on every request.

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, header::AUTHORIZATION};

/// What every EKS bearer token starts with (aws-iam-authenticator's version marker).
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header aws-iam-authenticator reads the cluster name from; it must be signed.
const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// The presigned URL's own lifetime; EKS accepts the token for 15 minutes from signing anyway.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// The DNS suffix of `region`'s partition, as the SDK's partition table gives it: STS in
/// Beijing is `sts.cn-north-1.amazonaws.com.cn`, and a token presigned for the wrong host is
/// refused by every API server there.
pub fn dns_suffix(region: &str) -> &'static str {
    match region {
        r if r.starts_with("cn-") => "amazonaws.com.cn",
        r if r.starts_with("us-isob-") => "sc2s.sgov.gov",
        r if r.starts_with("us-isof-") || r.starts_with("eu-isof-") => "csp.hci.ic.gov",
        r if r.starts_with("eu-isoe-") => "cloud.adc-e.uk",
        r if r.starts_with("us-iso-") => "c2s.ic.gov",
        r if r.starts_with("eusc-") => "amazonaws.eu",
        _ => "amazonaws.com",
    }
}

/// A bearer token for EKS: `k8s-aws-v1.` + base64url (no padding) of a presigned STS
/// `GetCallerIdentity` URL whose signed headers include `x-k8s-aws-id: <cluster>`.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    time: SystemTime,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()?
        .into();
    let url = format!(
        "https://sts.{region}.{}/?Action=GetCallerIdentity&Version=2011-06-15",
        dns_suffix(region)
    );
    let signable = SignableRequest::new(
        "GET",
        &url,
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    let mut request = Request::get(&url).body(())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(request.uri().to_string())
    ))
}

/// The current bearer token, shared between [`ClusterAccess`] (which refreshes it) and the
/// client's request layer (which reads it for every request).
pub type SharedToken = Arc<RwLock<Option<HeaderValue>>>;

#[derive(Clone)]
pub struct BearerLayer(pub SharedToken);

impl<S> tower::Layer<S> for BearerLayer {
    type Service = BearerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerService {
            inner,
            token: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct BearerService<S> {
    inner: S,
    token: SharedToken,
}

impl<S, B> tower::Service<Request<B>> for BearerService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(token) = self.token.read().expect("token lock").clone() {
            req.headers_mut().insert(AUTHORIZATION, token);
        }
        self.inner.call(req)
    }
}

pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token has characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use aws_credential_types::Credentials;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// Query parameters of the URL inside a token, sorted.
    fn token_params(token: &str) -> Vec<(String, String)> {
        let url = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(TOKEN_PREFIX).unwrap())
            .unwrap();
        let url = String::from_utf8(url).unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://sts.us-east-1.amazonaws.com/");
        let mut params: Vec<(String, String)> = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        params.sort();
        params
    }

    #[test]
    fn eks_token_matches_an_independent_signer() {
        // Expected signature computed with botocore's SigV4QueryAuth (the signer behind
        // `aws eks get-token`) for the same credentials, region, cluster and time.
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400); // 2026-11-21T12:00:00Z
        let token = eks_token(&creds, "us-east-1", "prod-cluster", time).unwrap();
        assert!(token.starts_with("k8s-aws-v1."));
        assert!(!token.contains('='), "base64url without padding");
        let params = token_params(&token);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("GetCallerIdentity"));
        assert_eq!(get("X-Amz-Expires"), Some("60"));
        assert_eq!(get("X-Amz-Date"), Some("20261121T120000Z"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20261121%2Fus-east-1%2Fsts%2Faws4_request")
        );
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host%3Bx-k8s-aws-id"));
        assert_eq!(
            get("X-Amz-Signature"),
            Some("17c3bb10316be292fc69a2bef4dbe803846694a5a32f12ab79dd8a374c795bd3")
        );
    }

    #[test]
    fn eks_token_differs_per_cluster_and_carries_the_session_token() {
        let creds = Credentials::new("AKID", "SECRET", Some("SESSION/TOKEN".into()), None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400);
        let a = eks_token(&creds, "us-east-1", "dev", time).unwrap();
        let b = eks_token(&creds, "us-east-1", "prod", time).unwrap();
        assert_ne!(a, b);
        assert!(
            token_params(&a)
                .iter()
                .any(|(k, v)| k == "X-Amz-Security-Token" && v == "SESSION%2FTOKEN")
        );
    }

    /// The review: the token was presigned for sts.<region>.amazonaws.com in every partition;
    /// China's API servers need amazonaws.com.cn.
    #[test]
    fn the_sts_host_of_the_token_is_the_partitions() {
        let creds = Credentials::for_tests();
        let url_of = |region: &str| {
            let token = eks_token(&creds, region, "prod", SystemTime::now()).unwrap();
            let b64 = token.strip_prefix(TOKEN_PREFIX).unwrap();
            String::from_utf8(URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
        };
        assert!(url_of("cn-north-1").starts_with("https://sts.cn-north-1.amazonaws.com.cn/"));
        assert!(url_of("eu-west-1").starts_with("https://sts.eu-west-1.amazonaws.com/"));
        assert!(url_of("us-gov-west-1").starts_with("https://sts.us-gov-west-1.amazonaws.com/"));
        assert_eq!(dns_suffix("us-iso-east-1"), "c2s.ic.gov");
        assert_eq!(dns_suffix("us-isob-east-1"), "sc2s.sgov.gov");
    }
}
