//! TPM-assured devices end to end against a swtpm: the real server over HTTPS on loopback and
//! the real `devbound device` client (built with `--features tpm`), then enrollment driven step
//! by step through the client library to send evidence a TPM would not.
//!
//! These tests need `DEVBOUND_SWTPM_TCTI` and `DEVBOUND_SWTPM_TRUST_DIR` (`scripts/test.sh`
//! provisions and starts a swtpm and sets both). They take [`TPM_LOCK`], so that one test at a
//! time uses the swtpm's 3 object slots.
#![cfg(feature = "tpm")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use devbound::client::tpm::{self, TpmSigner};
use devbound::client::{ClientError, DbscClient};
use devbound::crypto::{Algorithm, base64url};
use devbound::dbsc::headers;
use devbound::http::routes;
use devbound::store::Assurance;
use reqwest::{Method, StatusCode};
use serde_json::json;

use support::devices::{
    TPM_LOCK, call, create_code, fixture, post_enrollment, server_trusting, swtpm,
};
use support::server::TestServer;

const BINARY: &str = env!("CARGO_BIN_EXE_devbound");
/// TPM-signed refreshes in the end-to-end test. About 1 TPM signature in 256 has a leading zero
/// byte in `r` or `s`, so 2,000 exercise the JWS padding several times.
const REFRESHES: u32 = 2_000;

fn device(args: &[&str], state_dir: &Path, tcti: &str) -> Output {
    Command::new(BINARY)
        .arg("device")
        .args(args)
        .arg("--tcti")
        .arg(tcti)
        .arg("--state-dir")
        .arg(state_dir)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn check(output: &Output) -> String {
    assert!(
        output.status.success(),
        "devbound failed: {}\n{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(output)
}

/// Enrolls the swtpm through the `devbound device enroll` command for a user who created a
/// code, and returns the state directory.
async fn enroll_with_cli(server: &TestServer, user: &str, tcti: &str) -> tempfile::TempDir {
    let owner = server.bound_client(user, Algorithm::Es256).await;
    let code = create_code(server, &owner, "build box").await;
    let state = tempfile::tempdir().unwrap();
    let cert = state.path().join("server.pem");
    std::fs::write(&cert, &server.cert_pem).unwrap();
    let output = Command::new(BINARY)
        .args(["device", "enroll", "--server", server.url(), "--tcti", tcti])
        .args(["--code", &code, "--ca-cert"])
        .arg(&cert)
        .arg("--state-dir")
        .arg(state.path().join("device"))
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap();
    let printed = check(&output);
    assert!(printed.contains("at assurance tpm"), "{printed}");
    state
}

fn stored_session(server: &TestServer, id: &str) -> devbound::store::SessionRecord {
    server.store().find_session(id).unwrap().unwrap().record
}

fn data_dir(server: &TestServer) -> &Path {
    server.server.tls.cert.parent().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn device_refreshes_2000_times_until_revoked() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    let server = server_trusting(trust).await;
    let state = enroll_with_cli(&server, "alice", &tcti).await;
    let state_dir = state.path().join("device");

    // The state directory contains TPM blobs and ids, with no cookie and no key in the clear.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("device.json")).unwrap()).unwrap();
    let device_id = saved["device_id"].as_str().unwrap().to_owned();
    let session_id = saved["session_id"].as_str().unwrap().to_owned();
    let stored = server
        .store()
        .find_device(&device_id)
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(stored.assurance, Assurance::Tpm);
    assert!(stored.ek_certificate_sha256.is_some());
    assert!(!stored.ak_name.is_empty());
    let session = stored_session(&server, &session_id);
    assert!(session.is_bound());
    assert_eq!(
        session.assurance,
        Assurance::Tpm,
        "session inherits the device's assurance"
    );
    assert_eq!(session.key.as_ref().unwrap().jwk, stored.session_key);

    // 2,000 refreshes, each a TPM2_Sign over the server's challenge. Then a route that demands
    // assurance tpm accepts the device's fresh cookie.
    let count = REFRESHES.to_string();
    let printed = check(&device(
        &["refresh", "--count", &count, "--get", routes::API_ATTESTED],
        &state_dir,
        &tcti,
    ));
    assert!(
        printed.contains(&format!("refreshed {REFRESHES} times")),
        "{printed}"
    );
    assert!(printed.contains("200 {"), "{printed}");
    assert!(printed.contains("\"assurance\":\"tpm\""), "{printed}");
    let session = stored_session(&server, &session_id);
    assert!(
        session.refresh_count >= u64::from(REFRESHES),
        "{}",
        session.refresh_count
    );

    // The owner sees the device and its session's assurance, and revokes the device.
    let mut owner = server.client(Algorithm::Es256);
    owner
        .sign_in_and_register("alice", support::server::PASSWORD)
        .await
        .unwrap();
    let (status, listed) = call(&server, &owner, Method::GET, routes::API_DEVICES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["devices"][0]["id"], json!(device_id));
    assert_eq!(listed["devices"][0]["assurance"], json!("tpm"));
    let (_, sessions) = call(&server, &owner, Method::GET, routes::API_SESSIONS).await;
    let device_session = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(session_id))
        .unwrap();
    assert_eq!(device_session["assurance"], json!("tpm"));
    assert_eq!(device_session["device_id"], json!(device_id));

    let path = routes::with_id(routes::API_DEVICE, &device_id);
    let (status, revoked) = call(&server, &owner, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked_by"], json!("owner"));

    // The next refresh is refused: the server returns continue:false and the client stops.
    let output = device(&["refresh"], &state_dir, &tcti);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ended this device's session"), "{stderr}");
    let session = stored_session(&server, &session_id);
    assert_eq!(session.state_name(), "revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_lists_and_revokes_a_device_from_the_cli() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    // A 3-second cookie, so that keep-alive's second refresh comes 2 seconds after the first.
    let options = devbound::config::ServeOptions {
        tpm_trust_dir: Some(trust),
        cookie_ttl: Some("3s".into()),
        ..Default::default()
    };
    let server = TestServer::start(options, false).await;
    let state = enroll_with_cli(&server, "bob", &tcti).await;
    let state_dir = state.path().join("device");
    let printed = check(&device(
        &["keep-alive", "--max-refreshes", "2"],
        &state_dir,
        &tcti,
    ));
    assert!(
        printed.contains("refresh 2: cookie valid for 3 s"),
        "{printed}"
    );

    let operator = |args: &[&str]| {
        Command::new(BINARY)
            .args(args)
            .arg("--data-dir")
            .arg(data_dir(&server))
            .output()
            .unwrap()
    };
    let listed = check(&operator(&["device", "list", "--user", "bob", "--json"]));
    let devices: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = devices[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(devices[0]["assurance"], json!("tpm"));
    check(&operator(&["device", "revoke", &id]));

    let output = device(&["keep-alive"], &state_dir, &tcti);
    assert!(
        !output.status.success(),
        "keep-alive stops when the session is ended"
    );
    let table = check(&operator(&["device", "list"]));
    assert!(table.contains(&id) && !table.contains(" - "), "{table}");
}

// ---- Enrollment driven step by step, with evidence a TPM would not send -------------------

/// A device that has answered the server's challenge with its real TPM, before sending the
/// answer: the test may alter `finish` first.
struct Answered {
    finish: serde_json::Value,
    signer: TpmSigner,
}

/// Creates a code for `owner`, starts enrollment with the swtpm's evidence, activates the
/// credential and certifies a new key over `nonce` (the server's unless given).
async fn answer_challenge(
    server: &TestServer,
    owner: &DbscClient,
    tcti: &str,
    nonce: Option<Vec<u8>>,
) -> Answered {
    let code = create_code(server, owner, "probe").await;
    let mut context = tpm::open(tcti).unwrap();
    let attestation = tpm::attest(&mut context).unwrap();
    let start = json!({
        "code": code,
        "ek_certificate": attestation.ek_certificate.as_deref().map(base64url::encode),
        "ek_public": base64url::encode(&attestation.ek_public),
        "ak_public": base64url::encode(&attestation.ak_public),
    });
    let (status, started) = post_enrollment(server, routes::API_ENROLL_START, &start).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let field = |name: &str| base64url::decode(started[name].as_str().unwrap()).unwrap();
    let secret = tpm::activate_credential(
        &mut context,
        &attestation,
        &field("credential_blob"),
        &field("encrypted_secret"),
    )
    .unwrap();
    let nonce = nonce.unwrap_or_else(|| field("certify_nonce"));
    let (certified, key) = tpm::create_certified_key(&mut context, attestation, &nonce).unwrap();
    let finish = json!({
        "challenge_id": started["challenge_id"],
        "activated_secret": base64url::encode(&secret),
        "key_public": base64url::encode(&certified.public),
        "certify_info": base64url::encode(&certified.certify_info),
        "signature": base64url::encode(&certified.signature),
    });
    Answered {
        finish,
        signer: TpmSigner::new(context, key, &certified.public).unwrap(),
    }
}

/// A change made to a TPM structure before it is sent.
type Alteration = fn(&mut Vec<u8>);

/// Replaces one base64url field of a finish request with `change` applied to its bytes.
fn altered(
    finish: &serde_json::Value,
    field: &str,
    change: impl Fn(&mut Vec<u8>),
) -> serde_json::Value {
    let mut bytes = base64url::decode(finish[field].as_str().unwrap()).unwrap();
    change(&mut bytes);
    let mut finish = finish.clone();
    finish[field] = json!(base64url::encode(&bytes));
    finish
}

/// Sends an altered answer, expects the refusal `reason`, and checks that no device was
/// recorded.
async fn assert_finish_refused(server: &TestServer, finish: &serde_json::Value, reason: &str) {
    let (status, body) = post_enrollment(server, routes::API_ENROLL_FINISH, finish).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], json!(reason), "{body}");
    assert!(server.store().list_devices(None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_activated_secret_from_a_real_tpm_is_refused() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    let server = server_trusting(trust).await;
    let owner = server.bound_client("carol", Algorithm::Es256).await;
    let answered = answer_challenge(&server, &owner, &tcti, None).await;
    let finish = altered(&answered.finish, "activated_secret", |secret| {
        secret[0] ^= 1
    });
    answered.signer.close();
    assert_finish_refused(&server, &finish, "wrong_secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certify_over_a_stale_nonce_is_refused() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    let server = server_trusting(trust).await;
    let owner = server.bound_client("carol", Algorithm::Es256).await;
    // A nonce from an earlier enrollment: the certification is not fresh.
    let stale = base64url::decode("ouzCcWOnCZnSRbMlYRh4CG-kExKk82tX5W7jAM37Kq8").unwrap();
    let answered = answer_challenge(&server, &owner, &tcti, Some(stale)).await;
    answered.signer.close();
    assert_finish_refused(&server, &answered.finish, "nonce_mismatch").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tpms_attest_with_wrong_magic_type_or_trailing_bytes_is_refused() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    let server = server_trusting(trust).await;
    let owner = server.bound_client("carol", Algorithm::Es256).await;
    let cases: [(&str, Alteration); 3] = [
        ("wrong_magic", |attest| attest[0] ^= 0x01),
        // TPM_ST_ATTEST_QUOTE (0x8018) instead of TPM_ST_ATTEST_CERTIFY (0x8017).
        ("wrong_attestation_type", |attest| attest[5] = 0x18),
        ("trailing_bytes", |attest| attest.push(0)),
    ];
    for (reason, change) in cases {
        let answered = answer_challenge(&server, &owner, &tcti, None).await;
        answered.signer.close();
        let finish = altered(&answered.finish, "certify_info", change);
        assert_finish_refused(&server, &finish, reason).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_key_swapped_after_certification_is_refused() {
    let Some((tcti, trust)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    let server = server_trusting(trust).await;
    let owner = server.bound_client("carol", Algorithm::Es256).await;

    // Another TPM key than the one the AK certified, presented at enrollment.
    let answered = answer_challenge(&server, &owner, &tcti, None).await;
    answered.signer.close();
    let mut finish = answered.finish.clone();
    finish["key_public"] = json!(base64url::encode(fixture("session-key-public.bin")));
    assert_finish_refused(&server, &finish, "certified_name_mismatch").await;

    // The certified key, then another key at DBSC registration: refused; the certified key
    // registers, and the session has assurance tpm.
    let answered = answer_challenge(&server, &owner, &tcti, None).await;
    let response = support::devices::https(&server)
        .post(format!("{}{}", server.url(), routes::API_ENROLL_FINISH))
        .json(&answered.finish)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let offer = headers::parse_registration(
        response
            .headers()
            .get(headers::REGISTRATION)
            .unwrap()
            .as_bytes(),
    )
    .unwrap()
    .remove(0);
    let (status, replayed) =
        post_enrollment(&server, routes::API_ENROLL_FINISH, &answered.finish).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a replayed answer is refused"
    );
    assert_eq!(replayed["reason"], json!("unknown_challenge"));

    let mut swapped = server.client(Algorithm::Es256);
    let refused = swapped.register(&offer).await;
    assert!(
        matches!(&refused, Err(ClientError::Status { body, .. }) if body.contains("invalid_key")),
        "{refused:?}"
    );
    let http = support::devices::https(&server);
    let mut device = DbscClient::new(http, server.url(), answered.signer);
    device.register(&offer).await.unwrap();
    let session = stored_session(&server, device.session_id.as_deref().unwrap());
    assert_eq!(session.assurance, Assurance::Tpm);
    device.into_signer().close();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tpm_from_an_untrusted_ca_is_refused_or_enrolled_only_at_software() {
    let Some((tcti, _)) = swtpm() else { return };
    let _lock = TPM_LOCK.lock().await;
    // The fixtures' CA did not sign this run's swtpm EK certificate.
    let untrusted = support::devices::fixture_trust_dir();
    let server = server_trusting(untrusted.clone()).await;
    let owner = server.bound_client("dave", Algorithm::Es256).await;
    let code = create_code(&server, &owner, "build box").await;
    let state = tempfile::tempdir().unwrap();
    let cert = state.path().join("server.pem");
    std::fs::write(&cert, &server.cert_pem).unwrap();
    let enroll = |code: &str, url: &str| {
        Command::new(BINARY)
            .args(["device", "enroll", "--server", url, "--tcti", &tcti])
            .args(["--code", code, "--ca-cert"])
            .arg(&cert)
            .arg("--state-dir")
            .arg(state.path().join("device"))
            .env("TSS2_LOG", "all+NONE")
            .output()
            .unwrap()
    };
    let output = enroll(&code, server.url());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enrollment_refused"), "{stderr}");
    assert!(server.store().list_devices(None).unwrap().is_empty());

    let options = devbound::config::ServeOptions {
        tpm_trust_dir: Some(untrusted),
        tpm_software_fallback: Some(true),
        ..Default::default()
    };
    let server = TestServer::start(options, false).await;
    std::fs::write(&cert, &server.cert_pem).unwrap();
    let owner = server.bound_client("dave", Algorithm::Es256).await;
    let code = create_code(&server, &owner, "build box").await;
    let printed = check(&enroll(&code, server.url()));
    assert!(printed.contains("at assurance software"), "{printed}");
    let devices = server.store().list_devices(None).unwrap();
    assert_eq!(devices[0].assurance, Assurance::Software);

    // Its session is bound to the TPM key but stays software, so the tpm route refuses it.
    let printed = check(&device(
        &["refresh", "--get", routes::API_ATTESTED],
        &state.path().join("device"),
        &tcti,
    ));
    assert!(printed.contains("403 {"), "{printed}");
    assert!(printed.contains("insufficient_assurance"), "{printed}");
}
