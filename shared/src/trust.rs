//! The TLS trust store, checked once at init.
//!
//! The SDK's HTTPS connector loads the CA certificates with `rustls-native-certs`
//! (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the system's store) when it is built, and a debug
//! build *panics* when none parses ("TrustStore configured to enable native roots but no valid
//! root certificates parsed!", aws-smithy-http-client's rustls provider); a release build goes on
//! and fails every HTTPS call instead. Loading the store the same way first turns both into one
//! init error that names the variable and the path.

use std::ffi::OsString;

use rustls_native_certs::CertificateResult;

use crate::config::ConfigError;

/// Where Lambda's `provided.al2023` keeps its bundle (what the template sets).
pub const AL2023_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";

/// The certificates the SDK's connector will trust, counted; an error when there are none.
pub fn check() -> Result<usize, ConfigError> {
    let file = std::env::var_os("SSL_CERT_FILE");
    let dir = std::env::var_os("SSL_CERT_DIR");
    verdict(rustls_native_certs::load_native_certs(), file, dir)
}

/// How many of `loaded` a root store accepts (as the connector counts them), or what is wrong,
/// named by the variable that chose where they came from.
pub fn verdict(
    loaded: CertificateResult,
    file: Option<OsString>,
    dir: Option<OsString>,
) -> Result<usize, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let (valid, _) = roots.add_parsable_certificates(loaded.certs);
    if valid > 0 {
        return Ok(valid);
    }
    let why = match loaded.errors.first() {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    };
    let fix = format!("point SSL_CERT_FILE at a PEM bundle (on provided.al2023: {AL2023_BUNDLE})");
    let show = |p: &OsString| p.to_string_lossy().into_owned();
    Err(match (file, dir) {
        (_, Some(d)) if !d.is_empty() => ConfigError::new(
            "SSL_CERT_DIR",
            format!(
                "is {:?}, where no CA certificate could be read{why}: every HTTPS call would fail; \
                 {fix}",
                show(&d)
            ),
        ),
        (Some(f), _) => ConfigError::new(
            "SSL_CERT_FILE",
            format!(
                "is {:?}, which holds no CA certificate that could be read{why}: every HTTPS call \
                 would fail; {fix}",
                show(&f)
            ),
        ),
        _ => ConfigError::new(
            "SSL_CERT_FILE",
            format!(
                "is not set and the system's trust store has no CA certificate{why}: every HTTPS \
                 call would fail; {fix}"
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls_native_certs::load_certs_from_paths;

    use super::*;

    fn from_file(path: &str) -> Result<usize, ConfigError> {
        let loaded = load_certs_from_paths(Some(Path::new(path)), None);
        verdict(loaded, Some(path.into()), None)
    }

    #[test]
    fn a_missing_bundle_is_named_with_its_path() {
        let err = from_file("/nonexistent/ca-bundle.crt").unwrap_err();
        assert_eq!(err.var, "SSL_CERT_FILE");
        assert!(
            err.problem.contains("\"/nonexistent/ca-bundle.crt\""),
            "{err}"
        );
        assert!(err.problem.contains("No such file"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_named_too() {
        let dir = std::env::temp_dir().join(format!("trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = from_file(junk.to_str().unwrap()).unwrap_err();
        assert_eq!(err.var, "SSL_CERT_FILE");
        assert!(err.problem.contains("holds no CA certificate"), "{err}");
        let empty_dir = dir.join("certs");
        std::fs::create_dir_all(&empty_dir).unwrap();
        let loaded = load_certs_from_paths(None, Some(&empty_dir));
        let err = verdict(loaded, None, Some(empty_dir.clone().into())).unwrap_err();
        assert_eq!(err.var, "SSL_CERT_DIR");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_set_and_nothing_found_says_where_to_point() {
        let err = verdict(CertificateResult::default(), None, None).unwrap_err();
        assert!(err.problem.starts_with("is not set"), "{err}");
        assert!(err.problem.contains(AL2023_BUNDLE), "{err}");
    }

    #[test]
    fn a_real_bundle_counts_its_roots() {
        let debian = "/etc/ssl/certs/ca-certificates.crt";
        let bundle = [AL2023_BUNDLE, debian]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a CA bundle on the test machine");
        assert!(from_file(bundle).unwrap() > 50);
    }
}
