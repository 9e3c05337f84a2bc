//! Helpers for the device tests: enrollment codes from a signed-in user, raw enrollment
//! requests, and the swtpm the TPM tests share.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::PathBuf;

use devbound::client::{DbscClient, ProofSigner};
use devbound::config::ServeOptions;
use devbound::http::routes;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use super::server::TestServer;

/// swtpm has 3 object slots and no resource manager: one test at a time uses it.
pub static TPM_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The swtpm the tests use, from `DEVBOUND_SWTPM_TCTI` and `DEVBOUND_SWTPM_TRUST_DIR`
/// (`scripts/test.sh` sets both), or `None` with the test skipped. With
/// `DEVBOUND_REQUIRE_SWTPM` set a missing swtpm fails the test instead.
pub fn swtpm() -> Option<(String, PathBuf)> {
    let tcti = std::env::var("DEVBOUND_SWTPM_TCTI")
        .ok()
        .filter(|t| !t.is_empty());
    let trust = std::env::var_os("DEVBOUND_SWTPM_TRUST_DIR").map(PathBuf::from);
    match (tcti, trust) {
        (Some(tcti), Some(trust)) => Some((tcti, trust)),
        _ => {
            assert!(
                std::env::var_os("DEVBOUND_REQUIRE_SWTPM").is_none(),
                "DEVBOUND_REQUIRE_SWTPM is set but DEVBOUND_SWTPM_TCTI or \
                 DEVBOUND_SWTPM_TRUST_DIR is not"
            );
            eprintln!("skipping: DEVBOUND_SWTPM_TCTI or DEVBOUND_SWTPM_TRUST_DIR is not set");
            None
        }
    }
}

/// The fixtures' trust directory: the swtpm local CA that signed `swtpm-ek-rsa.der`.
pub fn fixture_trust_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tpm/trust")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tpm")
            .join(name),
    )
    .unwrap()
}

/// Starts a server (system clock) that trusts the EK certificates chaining to `trust_dir`.
pub async fn server_trusting(trust_dir: PathBuf) -> TestServer {
    let options = ServeOptions {
        tpm_trust_dir: Some(trust_dir),
        ..ServeOptions::default()
    };
    TestServer::start(options, false).await
}

/// Creates an enrollment code through the owner's JSON API with `client`'s bound cookie.
pub async fn create_code<S: ProofSigner>(
    server: &TestServer,
    client: &DbscClient<S>,
    name: &str,
) -> String {
    let response = https(server)
        .post(client.url(routes::API_DEVICE_CODES))
        .header(COOKIE, client.cookie_header())
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["code"].as_str().unwrap().to_owned()
}

/// Sends a request with `client`'s cookie and returns the status and JSON body.
pub async fn call<S: ProofSigner>(
    server: &TestServer,
    client: &DbscClient<S>,
    method: reqwest::Method,
    path: &str,
) -> (StatusCode, Value) {
    let response = https(server)
        .request(method, client.url(path))
        .header(COOKIE, client.cookie_header())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POSTs an enrollment step and returns the status and JSON body.
pub async fn post_enrollment(server: &TestServer, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = https(server)
        .post(format!("{}{path}", server.url()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn https(server: &TestServer) -> reqwest::Client {
    devbound::client::https_client(&server.cert_pem).unwrap()
}
