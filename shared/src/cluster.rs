//! Access to a Kubernetes cluster: an EKS cluster by name (endpoint and CA from
//! `eks:DescribeCluster`, a bearer token from a presigned STS `GetCallerIdentity` URL, as
//! `aws eks get-token` makes it), or a plain URL (local stand-ins, non-EKS clusters).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use base64::Engine;
use kube::client::ClientBuilder;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Mutex;
use tracing::{debug, info};

use crate::accounts::{AccountError, Accounts};
use crate::classify::{AwsError, Class, Classify, SdkResultExt};
use crate::cluster_auth::{BearerLayer, SharedToken, bearer, eks_token};
use crate::cluster_target::ClusterTarget;

/// EKS honours a token for 15 minutes; `aws eks get-token` says 14. A token is re-minted once
/// it is this old, when the next invocation asks for the client, so a token in use is at most
/// this old plus the function's timeout (keep that under 9 minutes).
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(5 * 60);

/// How long connecting to an API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an API server may leave a request unanswered (a page of 500 objects is well
/// under a second on a healthy server).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: {source}")]
    Describe {
        cluster: String,
        #[source]
        source: Box<AwsError>,
    },
    #[error("cluster {cluster}: {source}")]
    Account {
        cluster: String,
        #[source]
        source: Box<AccountError>,
    },
    #[error("cluster {cluster} cannot be reached: {why}")]
    Unusable { cluster: String, why: String },
    #[error("cluster {cluster}: no AWS credentials to sign a token with")]
    Credentials {
        cluster: String,
        #[source]
        source: aws_credential_types::provider::error::CredentialsError,
    },
    #[error("cluster {cluster}: signing the token failed")]
    Sign {
        cluster: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cluster {cluster}: {operation} failed: {}", describe_kube(source))]
    Api {
        cluster: String,
        operation: String,
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    pub fn api(
        cluster: impl fmt::Display,
        operation: impl Into<String>,
        source: kube::Error,
    ) -> Self {
        ClusterError::Api {
            cluster: cluster.to_string(),
            operation: operation.into(),
            source,
        }
    }

    pub fn class(&self) -> Class {
        match self {
            ClusterError::Describe { source, .. } => source.class(),
            ClusterError::Account { source, .. } => source.class(),
            ClusterError::Unusable { .. } | ClusterError::Sign { .. } => Class::NonRetryable,
            ClusterError::Credentials { .. } => Class::Retryable,
            ClusterError::Api { source, .. } => classify_kube(source),
        }
    }

    pub fn kind(&self) -> &'static str {
        "Cluster"
    }

    /// The HTTP status the API server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClusterError::Api {
                source: kube::Error::Api(s),
                ..
            } => Some(s.code),
            _ => None,
        }
    }
}

/// `403 Forbidden: deployments.apps is forbidden: ...` for an API answer; the cause chain otherwise.
pub fn describe_kube(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                ""
            } else {
                s.reason.as_str()
            };
            match (reason, s.message.as_str()) {
                ("", "") => format!("HTTP {}", s.code),
                (r, "") => format!("HTTP {} {r}", s.code),
                (r, m) if m.contains(r) => format!("HTTP {}: {m}", s.code),
                (r, m) => format!("HTTP {} {r}: {m}", s.code),
            }
        }
        other => crate::classify::chain(other),
    }
}

/// 401/403 (access), 404, 400/422 (invalid) will not change on retry; 409 (conflict, re-read
/// first), 429 and 5xx, and connection failures may.
pub fn classify_kube(err: &kube::Error) -> Class {
    match err {
        kube::Error::Api(s) if s.code == 409 || s.code == 429 || s.code >= 500 => Class::Retryable,
        kube::Error::Api(_) => Class::NonRetryable,
        // An API server whose certificate does not verify (a wrong CA, a name mismatch, an
        // intercepting proxy) will not verify on the next try either.
        e if tls_refused(e) => Class::NonRetryable,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            Class::Retryable
        }
        _ => Class::NonRetryable,
    }
}

/// Whether `err` is, somewhere down its chain, rustls refusing the server's certificate.
fn tls_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        // hyper-util and tokio-rustls hand rustls's error on as an io::Error's inner error.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        next = e.source();
    }
    false
}

struct Connected {
    client: kube::Client,
    token_minted: Option<Instant>,
}

/// What an EKS cluster is reached with: DescribeCluster, and the credentials and region its
/// tokens are signed with (the cluster's own account and region).
type EksAccess = (aws_sdk_eks::Client, SharedCredentialsProvider, String);

/// Builds a `kube::Client` for one cluster once, and keeps its token fresh.
pub struct ClusterAccess {
    target: ClusterTarget,
    accounts: Option<Accounts>,
    eks: tokio::sync::OnceCell<EksAccess>,
    static_token: Option<String>,
    token: SharedToken,
    connected: Mutex<Option<Connected>>,
}

impl ClusterAccess {
    /// `accounts` gives EKS targets their account's and region's configuration (DescribeCluster,
    /// credentials and region to sign with), built on first use.
    pub fn new(target: ClusterTarget, accounts: &Accounts) -> Self {
        ClusterAccess::with(target, Some(accounts.clone()), None, None)
    }

    fn with(
        target: ClusterTarget,
        accounts: Option<Accounts>,
        eks: Option<EksAccess>,
        static_token: Option<String>,
    ) -> Self {
        ClusterAccess {
            target,
            accounts,
            eks: tokio::sync::OnceCell::new_with(eks),
            static_token,
            token: Arc::new(RwLock::new(None)),
            connected: Mutex::new(None),
        }
    }

    /// An EKS target through a ready client and credentials (tests: a mocked DescribeCluster).
    pub fn with_eks(
        name: &str,
        eks: aws_sdk_eks::Client,
        credentials: SharedCredentialsProvider,
        region: &str,
    ) -> Self {
        let eks = (eks, credentials, region.to_owned());
        ClusterAccess::with(ClusterTarget::eks(name), None, Some(eks), None)
    }

    /// A URL target with an optional fixed bearer token (a service-account token, say).
    pub fn url(url: &str, token: Option<String>) -> Self {
        let target = ClusterTarget::Url {
            url: url.to_owned(),
        };
        ClusterAccess::with(target, None, None, token)
    }

    /// A cluster reached through a client built elsewhere (a mock API server in tests, a
    /// kubeconfig-built client in tools). Its token is never refreshed.
    pub fn from_client(name: &str, client: kube::Client) -> Self {
        let access = ClusterAccess::url(name, None);
        *access.connected.try_lock().expect("new, so unlocked") = Some(Connected {
            client,
            token_minted: None,
        });
        access
    }

    pub fn target(&self) -> &ClusterTarget {
        &self.target
    }

    /// The client, connecting on first use and re-minting an EKS token once it is
    /// [`TOKEN_REFRESH_AFTER`] old. Call it at the start of each invocation.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let mut connected = self.connected.lock().await;
        match connected.as_mut() {
            Some(c)
                if c.token_minted
                    .is_none_or(|t| t.elapsed() < TOKEN_REFRESH_AFTER) => {}
            Some(c) => {
                self.mint_token().await?;
                c.token_minted = Some(Instant::now());
            }
            None => *connected = Some(self.connect().await?),
        }
        Ok(connected.as_ref().expect("connected above").client.clone())
    }

    /// After a 401: the next [`ClusterAccess::client`] call mints a new token.
    pub async fn invalidate_token(&self) {
        if let Some(c) = self.connected.lock().await.as_mut() {
            c.token_minted = c.token_minted.map(|t| t - TOKEN_REFRESH_AFTER);
        }
    }

    async fn connect(&self) -> Result<Connected, ClusterError> {
        let cluster = self.target.to_string();
        let unusable = |why: String| ClusterError::Unusable {
            cluster: cluster.clone(),
            why,
        };
        let (config, token_minted) = match &self.target {
            ClusterTarget::Url { url } => {
                let uri = url.parse().map_err(|e| unusable(format!("bad URL: {e}")))?;
                if let Some(t) = &self.static_token {
                    *self.token.write().expect("token lock") = Some(bearer(t).map_err(unusable)?);
                }
                (kube::Config::new(uri), None)
            }
            ClusterTarget::Eks { name, .. } => {
                let (eks, _, _) = self.eks_access().await?;
                let out = eks
                    .describe_cluster()
                    .name(name)
                    .send()
                    .await
                    .context("eks:DescribeCluster")
                    .map_err(|source| ClusterError::Describe {
                        cluster: cluster.clone(),
                        source: Box::new(source),
                    })?;
                let described = out
                    .cluster
                    .ok_or_else(|| unusable("DescribeCluster returned no cluster".into()))?;
                let endpoint = described.endpoint.ok_or_else(|| {
                    unusable("the cluster has no endpoint yet (still creating?)".into())
                })?;
                let ca = described
                    .certificate_authority
                    .and_then(|c| c.data)
                    .ok_or_else(|| {
                        unusable("the cluster has no certificate authority data".into())
                    })?;
                let mut config = kube::Config::new(
                    endpoint
                        .parse()
                        .map_err(|e| unusable(format!("endpoint {endpoint:?}: {e}")))?,
                );
                config.root_cert = Some(ca_certificates(&ca).map_err(unusable)?);
                self.mint_token().await?;
                (config, Some(Instant::now()))
            }
        };
        let mut config = config;
        // kube's default retries a 429/503/504 up to 15 times with backoff up to 1,000 s and
        // obeys any Retry-After: a server answering `503 Retry-After: 600` would keep the
        // function asleep past its deadline. The callers own the one bounded retry layer.
        config.default_retry = false;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        // No read timeout by default: an API server that accepts and never answers would hold
        // the call until Lambda stops the invocation.
        config.read_timeout = Some(READ_TIMEOUT);
        let builder = ClientBuilder::try_from(config)
            .map_err(|e| ClusterError::api(&cluster, "building the client", e))?;
        let client = builder.with_layer(&BearerLayer(self.token.clone())).build();
        info!(cluster = %cluster, "cluster client ready");
        Ok(Connected {
            client,
            token_minted,
        })
    }

    /// The cluster's account's and region's EKS client and credentials, built once.
    async fn eks_access(&self) -> Result<&EksAccess, ClusterError> {
        let ClusterTarget::Eks { scope, .. } = &self.target else {
            unreachable!("only EKS targets describe and sign");
        };
        let cluster = self.target.to_string();
        self.eks
            .get_or_try_init(|| async {
                let accounts = self
                    .accounts
                    .as_ref()
                    .ok_or_else(|| ClusterError::Unusable {
                        cluster: cluster.clone(),
                        why: "no AWS configuration to reach EKS with".into(),
                    })?;
                let sdk = accounts
                    .sdk(scope)
                    .await
                    .map_err(|source| ClusterError::Account {
                        cluster: cluster.clone(),
                        source: Box::new(source),
                    })?;
                let creds = sdk
                    .credentials_provider()
                    .ok_or_else(|| ClusterError::Unusable {
                        cluster: cluster.clone(),
                        why: "no AWS credentials configured".into(),
                    })?;
                let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
                Ok((aws_sdk_eks::Client::new(&sdk), creds, region))
            })
            .await
    }

    async fn mint_token(&self) -> Result<(), ClusterError> {
        let ClusterTarget::Eks { name, .. } = &self.target else {
            return Ok(());
        };
        let (_, creds, region) = self.eks_access().await?;
        let credentials =
            creds
                .provide_credentials()
                .await
                .map_err(|source| ClusterError::Credentials {
                    cluster: name.clone(),
                    source,
                })?;
        let sign_err = |source| ClusterError::Sign {
            cluster: name.clone(),
            source,
        };
        let token = eks_token(&credentials, region, name, SystemTime::now()).map_err(sign_err)?;
        *self.token.write().expect("token lock") =
            Some(bearer(&token).map_err(|e| sign_err(e.into()))?);
        debug!(cluster = %name, "eks token minted");
        Ok(())
    }
}

/// What `list` returns for each of `namespaces` in turn, or for all namespaces at once (`None`)
/// when none are configured. The first error ends it; what was listed before it is returned with
/// it, for a caller that keeps what it could read.
pub async fn in_namespaces<'a, T, E, F, Fut>(
    namespaces: &'a [String],
    mut list: F,
) -> (Vec<T>, Result<(), E>)
where
    F: FnMut(Option<&'a str>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
{
    let all: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut listed = Vec::new();
    for ns in all {
        match list(ns).await {
            Ok(items) => listed.extend(items),
            Err(e) => return (listed, Err(e)),
        }
    }
    (listed, Ok(()))
}

/// What `keep` makes of each object listed at `path` (`K::url_path`), `page` objects a page,
/// following continue tokens. Each page is read straight into `T`, which may be a shadow naming
/// only the fields wanted (serde skips the rest as it reads), and only one page of `T` is held at
/// a time: a cluster of thousands costs what is kept, not what was listed.
pub async fn list_as<T, U>(
    client: &kube::Client,
    path: &str,
    page: u32,
    mut keep: impl FnMut(T) -> Option<U>,
) -> Result<Vec<U>, kube::Error>
where
    T: serde::de::DeserializeOwned,
{
    #[derive(serde::Deserialize)]
    #[serde(bound = "T: serde::de::DeserializeOwned")]
    struct Page<T> {
        #[serde(default)]
        metadata: PageMeta,
        #[serde(default = "Vec::new")]
        items: Vec<T>,
    }
    #[derive(Default, serde::Deserialize)]
    struct PageMeta {
        #[serde(rename = "continue", default)]
        continue_: Option<String>,
    }
    let mut params = kube::api::ListParams::default().limit(page);
    let mut kept = Vec::new();
    loop {
        let request = kube::core::Request::new(path)
            .list(&params)
            .map_err(kube::Error::BuildRequest)?;
        let page: Page<T> = client.request(request).await?;
        kept.extend(page.items.into_iter().filter_map(&mut keep));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(kept),
        }
    }
}

/// The configured clusters by alias, each reached through its [`ClusterAccess`].
pub struct Clusters {
    by_alias: std::collections::HashMap<String, ClusterAccess>,
}

impl Clusters {
    pub fn new(targets: &[(String, ClusterTarget)], accounts: &Accounts) -> Self {
        let by_alias = targets
            .iter()
            .map(|(alias, target)| (alias.clone(), ClusterAccess::new(target.clone(), accounts)))
            .collect();
        Clusters { by_alias }
    }

    /// Clusters reached through ready-made accesses (tests, tools).
    pub fn from_accesses(by_alias: std::collections::HashMap<String, ClusterAccess>) -> Self {
        Clusters { by_alias }
    }

    /// Runs `op` with the cluster's client; an expired token (401) is re-minted once and `op`
    /// run again. `what` names the operation in errors (`list ingresses in all namespaces`).
    pub async fn call<T, F, Fut>(&self, cluster: &str, what: &str, op: F) -> Result<T, ClusterError>
    where
        F: Fn(kube::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let access = self
            .by_alias
            .get(cluster)
            .ok_or_else(|| ClusterError::Unusable {
                cluster: cluster.to_owned(),
                why: "not in CLUSTERS".into(),
            })?;
        let mut refreshed = false;
        loop {
            match op(access.client().await?).await {
                Err(kube::Error::Api(s)) if s.code == 401 && !refreshed => {
                    tracing::warn!(
                        cluster,
                        "401 from the API server; minting a new token and trying once more"
                    );
                    access.invalidate_token().await;
                    refreshed = true;
                }
                result => return result.map_err(|e| ClusterError::api(cluster, what, e)),
            }
        }
    }
}

/// DescribeCluster's `certificateAuthority.data`: base64 of a PEM bundle; kube wants DER.
fn ca_certificates(data: &str) -> Result<Vec<Vec<u8>>, String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("certificate authority data is not base64: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate authority data is not a PEM certificate: {e:?}"))?;
    if certs.is_empty() {
        return Err("certificate authority data holds no certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_credential_types::Credentials;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use crate::cluster_auth::TOKEN_PREFIX;

    /// The token path end to end (DescribeCluster, credentials, presign, client, a request that
    /// carries the token) with every log line captured at TRACE: neither the bearer token nor the
    /// credentials it is signed with may appear in any of them.
    #[tokio::test(flavor = "current_thread")]
    async fn no_log_line_carries_the_bearer_token_or_the_credentials() {
        use aws_smithy_mocks::{mock, mock_client};
        use base64::engine::general_purpose::STANDARD;
        use std::io::Write;

        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Sink::default();
        let writer = logs.clone();
        // The functions' own filter, asked for everything (RUST_LOG=trace).
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(crate::telemetry::filter("trace"))
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (endpoint, server) = api_server_once().await;
        let first = a_ca_certificate();
        let describe = mock!(aws_sdk_eks::Client::describe_cluster).then_output(move || {
            aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput::builder()
                .cluster(
                    aws_sdk_eks::types::Cluster::builder()
                        .name("prod")
                        .endpoint(endpoint.clone())
                        .certificate_authority(
                            aws_sdk_eks::types::Certificate::builder()
                                .data(STANDARD.encode(&first))
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let (key, secret, session) = (
            "AKIAFUZZEXAMPLE00001",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY",
            "SESSIONTOKEN/FwoGZXIvYXdzEXAMPLE",
        );
        let creds = SharedCredentialsProvider::new(Credentials::new(
            key,
            secret,
            Some(session.into()),
            None,
            "test",
        ));
        let access = ClusterAccess::with_eks(
            "prod",
            mock_client!(aws_sdk_eks, [&describe]),
            creds,
            "eu-west-1",
        );

        let client = access.client().await.unwrap();
        let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
            .list(&Default::default())
            .await;
        let token = bearer_of(&server.await.unwrap());

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            logs.contains("eks token minted"),
            "the token path ran: {logs}"
        );
        for (what, secret) in [
            ("token", token.as_str()),
            ("token body", &token[TOKEN_PREFIX.len()..]),
            ("access key", key),
            ("secret key", secret),
            ("session token", session),
        ] {
            let line = logs
                .lines()
                .find(|l| l.contains(secret))
                .unwrap_or_default();
            assert!(!logs.contains(secret), "the {what} is in the logs: {line}");
        }
    }

    /// A real API server stand-in: one TCP connection answered with an empty list; the request
    /// is returned.
    async fn api_server_once() -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap();
            let body = r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{},"items":[]}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (endpoint, server)
    }

    /// A stand-in API server on loopback that answers every request with `answer` (or, `None`,
    /// reads it and never answers); returns its URL and how many requests it has read.
    async fn api_server_answering(
        answer: Option<&'static str>,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        match answer {
                            Some(a) => sock.write_all(a.as_bytes()).await.unwrap(),
                            None => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        (endpoint, requests)
    }

    /// The review's `503 Retry-After: 600`: kube's default policy slept as the server asked, up
    /// to 15 times, past any Lambda deadline. Now the error comes back at once, asked once.
    #[tokio::test]
    async fn a_503_asking_for_ten_minutes_comes_back_at_once_without_hidden_retries() {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"busy","reason":"ServiceUnavailable","code":503}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nretry-after: 600\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (endpoint, requests) = api_server_answering(Some(answer)).await;
        let client = ClusterAccess::url(&endpoint, None).client().await.unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let listed = tokio::time::timeout(Duration::from_secs(60), api.list(&Default::default()))
            .await
            .expect("the call ends on its own, long before Retry-After");
        assert!(
            matches!(listed, Err(kube::Error::Api(ref s)) if s.code == 503),
            "{listed:?}"
        );
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// An API server that accepts and never answers: the read timeout ends the call.
    #[tokio::test]
    async fn an_api_server_that_never_answers_is_given_up_on() {
        let (endpoint, requests) = api_server_answering(None).await;
        let client = ClusterAccess::url(&endpoint, None).client().await.unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let listed = tokio::time::timeout(
            READ_TIMEOUT + Duration::from_secs(20),
            api.list(&Default::default()),
        )
        .await
        .expect("the read timeout ends the call");
        assert!(listed.is_err());
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// One PEM certificate, as DescribeCluster's CA data holds one.
    fn a_ca_certificate() -> String {
        let pem = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
        pem.split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap()
            .to_owned()
    }

    fn bearer_of(request: &str) -> String {
        let token = request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Bearer "))
            .expect("the request carried the token")
            .trim()
            .to_owned();
        assert!(token.starts_with(TOKEN_PREFIX));
        token
    }

    /// A cluster given by ARN in a member account: the hub's STS assumes the member role, and
    /// DescribeCluster and the token are signed with the member's credentials in the cluster's
    /// region (what moto cannot show: its clusters have no usable endpoint or CA).
    #[tokio::test(flavor = "current_thread")]
    async fn a_member_cluster_is_described_and_its_token_signed_with_the_member_role() {
        use aws_smithy_http_client::test_util::infallible_client_fn;
        use aws_smithy_types::body::SdkBody;
        use base64::engine::general_purpose::STANDARD;
        // A subscriber of its own: a callsite first reached with none would be cached as never
        // interesting, and the log test beside this one would miss its lines.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(crate::telemetry::filter("trace"))
            .with_writer(std::io::sink)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (endpoint, server) = api_server_once().await;
        let described = serde_json::json!({"cluster": {
            "name": "prod-eks", "endpoint": endpoint,
            "certificateAuthority": {"data": STANDARD.encode(a_ca_certificate())}}})
        .to_string();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let kept = seen.clone();
        let http =
            infallible_client_fn(move |req: http::Request<aws_smithy_types::body::SdkBody>| {
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                kept.lock().unwrap().push(format!("{} {auth}", req.uri()));
                let body = if req.uri().host().unwrap_or_default().starts_with("sts.") {
                    ASSUMED.to_owned()
                } else {
                    described.clone()
                };
                http::Response::builder()
                    .status(200)
                    .body(SdkBody::from(body))
                    .unwrap()
            });
        let hub = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(Credentials::for_tests())
            .http_client(http)
            .load()
            .await;
        let accounts = Accounts::new(
            &hub,
            Some("111111111111".into()),
            Some("bridgekeeper-image-rollout".into()),
            None,
            "bridgekeeper-image-rollout",
        );
        let target: ClusterTarget = "arn:aws:eks:us-east-2:222222222222:cluster/prod-eks"
            .parse()
            .unwrap();
        let access = ClusterAccess::new(target, &accounts);
        let client = access.client().await.unwrap();
        let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
            .list(&Default::default())
            .await;

        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            2,
            "one AssumeRole, one DescribeCluster: {seen:?}"
        );
        assert!(
            seen[0].starts_with("https://sts.eu-west-1.amazonaws.com/"),
            "{seen:?}"
        );
        assert!(
            seen[1].starts_with("https://eks.us-east-2.amazonaws.com/clusters/prod-eks")
                && seen[1].contains("Credential=ASIAMEMBER/"),
            "DescribeCluster in the cluster's region, as the member role: {}",
            seen[1]
        );
        let token = bearer_of(&server.await.unwrap());
        let url = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(&token[TOKEN_PREFIX.len()..])
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with("https://sts.us-east-2.amazonaws.com/"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Credential=ASIAMEMBER%2F"), "{url}");
        assert!(url.contains("X-Amz-Security-Token=member-session"), "{url}");
    }

    const ASSUMED: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:bridgekeeper-image-rollout</AssumedRoleId>
      <Arn>arn:aws:sts::222222222222:assumed-role/bridgekeeper-image-rollout/s</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAMEMBER</AccessKeyId>
      <SecretAccessKey>secret</SecretAccessKey>
      <SessionToken>member-session</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#;

    #[test]
    fn api_errors_are_classified_by_status() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert_eq!(classify_kube(&api(409)), Class::Retryable);
        assert_eq!(classify_kube(&api(503)), Class::Retryable);
        assert_eq!(classify_kube(&api(401)), Class::NonRetryable);
        assert_eq!(classify_kube(&api(403)), Class::NonRetryable);
        assert_eq!(classify_kube(&api(422)), Class::NonRetryable);
        // The review: a certificate that does not verify was retried for ever.
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            classify_kube(&kube::Error::Service(Box::new(refused))),
            Class::NonRetryable
        );
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(
            classify_kube(&kube::Error::Service(Box::new(reset))),
            Class::Retryable
        );
    }

    #[test]
    fn ca_data_that_is_not_a_certificate_is_named() {
        use base64::engine::general_purpose::STANDARD;
        let err = ca_certificates(&STANDARD.encode("not a certificate")).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        assert!(ca_certificates("%%%").unwrap_err().contains("not base64"));
    }

    #[tokio::test]
    async fn namespaces_are_listed_in_turn_or_all_at_once_and_an_error_keeps_what_came_before() {
        let asked = std::sync::Mutex::new(Vec::new());
        let list = |ns: Option<&str>| {
            asked.lock().unwrap().push(ns.map(str::to_owned));
            let answer = match ns {
                Some("broken") => Err("forbidden"),
                other => Ok(vec![other.unwrap_or("*").to_owned()]),
            };
            async move { answer }
        };
        let (all, done) = in_namespaces(&[], list).await;
        assert_eq!((all, done), (vec!["*".to_owned()], Ok(())));
        let names = ["shop", "broken", "api"].map(String::from);
        let (some, done) = in_namespaces(&names, list).await;
        assert_eq!((some, done), (vec!["shop".to_owned()], Err("forbidden")));
        assert_eq!(
            *asked.lock().unwrap(),
            [None, Some("shop".to_owned()), Some("broken".to_owned())]
        );
    }
}

#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    /// `n` cluster aliases (`c0`, `c1`, ...) and the `CLUSTERS` value naming each an EKS cluster
    /// (`c0=c0-eks,...`), for tests of the fan-out across clusters.
    pub fn eks_clusters(n: usize) -> (Vec<String>, String) {
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let var = names
            .iter()
            .map(|c| format!("{c}={c}-eks"))
            .collect::<Vec<_>>()
            .join(",");
        (names, var)
    }
}
