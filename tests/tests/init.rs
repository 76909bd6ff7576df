//! The deployed binaries at init: a trust store the SDK could not use stops the cold start with
//! an error naming the variable and the path, never a panic inside the SDK's TLS connector.
//! `make test` builds the binaries next to this test (`cargo build --workspace --all-targets`;
//! `cargo test` alone links them only as test harnesses).

use std::path::PathBuf;
use std::process::Command;

const FUNCTIONS: [&str; 5] = [
    "snapshot-export",
    "scaling-alerts",
    "image-rollout",
    "dns-sync",
    "access-entries",
];

/// `target/<profile>/<name>`: this test runs from `target/<profile>/deps/`.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run make test (cargo build --workspace --all-targets first)",
        path.display()
    );
    path
}

/// What a function prints when it stops at init with `vars` as its environment.
fn init_with(name: &str, vars: &[(&str, &str)]) -> String {
    let out = Command::new(binary(name))
        .env_clear()
        .envs(vars.iter().copied())
        .env("AWS_REGION", "eu-west-1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{name} started with {vars:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "{name} panicked: {stderr}"
    );
    stderr + &stdout
}

#[test]
fn a_broken_ssl_cert_file_is_a_named_init_error_in_every_function() {
    for name in FUNCTIONS {
        let said = init_with(name, &[("SSL_CERT_FILE", "/nonexistent/ca-bundle.crt")]);
        assert!(
            said.contains("SSL_CERT_FILE is \\\"/nonexistent/ca-bundle.crt\\\"")
                || said.contains("SSL_CERT_FILE is \"/nonexistent/ca-bundle.crt\""),
            "{name}: {said}"
        );
    }
}

#[test]
fn a_good_trust_store_lets_init_go_on_to_the_configuration() {
    let bundle = [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("a CA bundle on the test machine");
    let said = init_with("snapshot-export", &[("SSL_CERT_FILE", bundle)]);
    assert!(!said.contains("SSL_CERT_FILE"), "{said}");
    // Past the trust store, the first setting the cold start needs and this run lacks.
    assert!(
        said.contains("FAILED_QUEUE_URL") && said.contains("is not set"),
        "{said}"
    );
}
