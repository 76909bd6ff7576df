//! The SDK configuration every function loads once at init.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The default credential/region chain, with the SDK's HTTP client on rustls + ring (the same TLS
/// stack kube uses, so the binary carries one). `AWS_ENDPOINT_URL` (local stand-ins) is honoured.
pub fn loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}

pub async fn sdk_config() -> SdkConfig {
    loader().load().await
}
