//! The SDK configuration every function loads once at init.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

/// The default credential/region chain, with the SDK's HTTP client on rustls + ring (the same TLS
/// stack kube uses, so the binary carries one). `AWS_ENDPOINT_URL` and, for `sam local invoke`
/// (which passes only the template's variables), a non-empty `LOCAL_ENDPOINT_URL` send every
/// call to local stand-ins.
///
/// Lambda hands the function its role's credentials and its region in the environment. When they
/// are there, they are used directly: the default chain would otherwise build (not call) the
/// web-identity, ECS, IMDS and profile providers on every cold start, the first with an STS client
/// and a TLS root store of its own.
pub fn loader() -> ConfigLoader {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(ValidateOnce::new(https));
    if let Some(region) = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()) {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = std::env::var("LOCAL_ENDPOINT_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        loader = loader.endpoint_url(url);
    }
    let has = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if has("AWS_ACCESS_KEY_ID") && has("AWS_SECRET_ACCESS_KEY") {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    loader
}

pub async fn sdk_config() -> SdkConfig {
    loader().load().await
}

/// The SDK's hyper client, validated once rather than once per service client.
///
/// Every `Client::new` validates its HTTP client, and the SDK's does so by building a throwaway
/// connector, which parses the whole trust store again (~140 roots; 6 clients, 6 parses, most of
/// a cold start's instructions). The first validation still happens at init, so the trust store
/// is loaded before the first event; the rest would build identical connectors and are skipped.
#[derive(Debug)]
struct ValidateOnce {
    inner: SharedHttpClient,
    validated: AtomicBool,
}

impl ValidateOnce {
    fn new(inner: SharedHttpClient) -> Self {
        ValidateOnce {
            inner,
            validated: AtomicBool::new(false),
        }
    }
}

impl HttpClient for ValidateOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        if self.validated.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.validate_base_client_config(components, cfg)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl HttpClient for Counting {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            unreachable!("not called by validation")
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn six_service_clients_validate_the_http_client_once() {
        let count = Arc::new(AtomicUsize::new(0));
        let http = SharedHttpClient::new(ValidateOnce::new(SharedHttpClient::new(Counting(
            count.clone(),
        ))));
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .http_client(http)
            .build();
        for _ in 0..3 {
            let _ = aws_sdk_sns::Client::new(&sdk);
            let _ = aws_sdk_sqs::Client::new(&sdk);
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
