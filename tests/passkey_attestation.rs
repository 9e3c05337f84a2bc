//! The operator's attestation policy over HTTPS, both ways: which registrations are accepted,
//! and which assurance a passkey and its sessions get.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::DbscClient;
use devbound::config::ServeOptions;
use devbound::crypto::{Algorithm, base64url};
use devbound::http::routes;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::dbsc::stored;
use support::passkeys::{authenticator, register, sign_in_bound};
use support::server::TestServer;
use support::webauthn::{Attestation, BE, TestCa};

/// The AAGUID of the test key model.
const MODEL: [u8; 16] = [0x7e, 0x57, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1];
const MODEL_TEXT: &str = "7e570000-0000-4000-8000-000000000001";

/// Starts a server whose trust list is `trusted` (written to a CA directory), and signs alice in.
async fn server_trusting(
    trusted: &TestCa,
    attestation: &str,
    aaguids: Option<Vec<String>>,
) -> (TestServer, DbscClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    trusted.write_to(dir.path(), "vendor-root.pem");
    let options = ServeOptions {
        passkey_attestation: Some(attestation.into()),
        passkey_trusted_ca_dir: Some(dir.path().to_path_buf()),
        passkey_trusted_aaguids: aaguids,
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, true).await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    (server, client, dir)
}

fn packed(ca: &TestCa) -> Attestation {
    let (leaf, key) = ca.packed_leaf(Some((MODEL, false)));
    Attestation::Packed {
        chain: vec![leaf],
        key,
    }
}

fn assert_not_approved(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_approved");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("not on your organisation's approved list"),
        "{message}"
    );
}

fn passkey_count(server: &TestServer) -> usize {
    let user = server.store().find_user_by_name("alice").unwrap().unwrap();
    server.store().list_passkeys(&user.id).unwrap().len()
}

#[tokio::test]
async fn packed_from_trusted_ca_gets_passkey_assurance() {
    let vendor = TestCa::new("Test Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "trusted", None).await;
    let mut key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assurance"], "passkey");
    assert_eq!(body["trust"]["kind"], "trusted");
    assert_eq!(body["trust"]["root"], "Test Vendor Root");
    assert_eq!(body["aaguid"], MODEL_TEXT);
    assert_eq!(body["attestation_format"], "packed");

    // The passkey list shows the same record.
    let listed: Value = client
        .get(routes::API_PASSKEYS)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["passkeys"][0]["aaguid"], MODEL_TEXT);
    assert_eq!(listed["passkeys"][0]["assurance"], "passkey");
    let page = client
        .get(routes::PASSKEYS)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("approved model"), "{page}");

    // A session signed in with it is at `passkey` assurance, on the page too.
    let client = sign_in_bound(&server, &mut key).await;
    let session = stored(&server, client.session_id.as_deref().unwrap());
    assert_eq!(session.assurance.name(), "passkey");
    let page = client.get(routes::APP).await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"<td id="assurance">passkey</td>"#),
        "{page}"
    );
}

#[tokio::test]
async fn trusted_policy_rejects_none_attestation() {
    let vendor = TestCa::new("Test Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "trusted", None).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &Attestation::None).await;

    assert_not_approved(status, &body);
    assert_eq!(passkey_count(&server), 0);
}

#[tokio::test]
async fn trusted_policy_rejects_self_attestation() {
    let vendor = TestCa::new("Test Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "trusted", None).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &Attestation::PackedSelf).await;

    assert_not_approved(status, &body);
    assert_eq!(passkey_count(&server), 0);
}

#[tokio::test]
async fn trusted_policy_rejects_untrusted_ca() {
    let vendor = TestCa::new("Test Vendor Root");
    let stranger = TestCa::new("Unknown Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "trusted", None).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&stranger)).await;

    assert_not_approved(status, &body);
    assert_eq!(passkey_count(&server), 0);
}

#[tokio::test]
async fn any_policy_keeps_untrusted_ca_at_software() {
    let vendor = TestCa::new("Test Vendor Root");
    let stranger = TestCa::new("Unknown Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "any", None).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&stranger)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["trust"]["kind"], "untrusted");
    assert_eq!(body["assurance"], "software");
}

#[tokio::test]
async fn any_policy_accepts_none_at_software() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &Attestation::None).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["trust"]["kind"], "none");
    assert_eq!(body["assurance"], "software");
    assert_eq!(passkey_count(&server), 1);
}

#[tokio::test]
async fn aaguid_allow_list_limits_a_trusted_ca() {
    let vendor = TestCa::new("Test Vendor Root");
    let other_model = "7e570000-0000-4000-8000-000000000002".to_owned();
    let (server, client, _dir) = server_trusting(&vendor, "trusted", Some(vec![other_model])).await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;

    assert_not_approved(status, &body);

    let (server, client, _dir) =
        server_trusting(&vendor, "trusted", Some(vec![MODEL_TEXT.to_owned()])).await;
    let key = authenticator(&server, "alice", MODEL);
    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assurance"], "passkey");
}

#[tokio::test]
async fn backup_eligible_key_stays_at_software() {
    let vendor = TestCa::new("Test Vendor Root");
    let (server, client, _dir) = server_trusting(&vendor, "trusted", None).await;
    let mut key = authenticator(&server, "alice", MODEL);
    key.extra_flags = BE;

    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["trust"]["kind"], "trusted");
    assert_eq!(body["assurance"], "software");
}

/// Builds an MDS3 BLOB (a compact JWS) listing one model with `root` as its attestation root,
/// signed ES256 by a certificate that `signer` issued.
fn metadata_blob(root: &TestCa, status: &str, signer: &TestCa) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use base64::Engine;
    let standard = base64::engine::general_purpose::STANDARD;
    let payload = json!({
        "no": 1,
        "nextUpdate": "2027-01-01",
        "entries": [{
            "aaguid": MODEL_TEXT,
            "metadataStatement": {
                "description": "Test Key 5 NFC",
                "attestationRootCertificates": [standard.encode(root.certificate.der())],
            },
            "statusReports": [{ "status": status }],
        }],
    });
    let (signing_cert, signing_key) = signer.packed_leaf(None);
    let header = json!({ "alg": "ES256", "typ": "JWT", "x5c": [standard.encode(signing_cert)] });
    let signing_input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(payload.to_string())
    );
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signing_key).unwrap();
    let signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", base64url::encode(signature.as_ref()))
}

/// Writes a BLOB and the metadata root to a new directory and returns options naming them.
fn blob_options(blob: &str, root: &TestCa, attestation: &str) -> (ServeOptions, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blob.jwt"), blob).unwrap();
    root.write_to(dir.path(), "mds-root.pem");
    let options = ServeOptions {
        passkey_attestation: Some(attestation.into()),
        passkey_metadata_blob: Some(dir.path().join("blob.jwt")),
        passkey_metadata_root: Some(dir.path().join("mds-root.pem")),
        ..ServeOptions::default()
    };
    (options, dir)
}

async fn server_with_blob(
    status: &str,
    attestation: &str,
) -> (TestServer, DbscClient, TestCa, tempfile::TempDir) {
    let vendor = TestCa::new("Test Vendor Root");
    let mds = TestCa::new("Test Metadata Root");
    let (options, dir) = blob_options(&metadata_blob(&vendor, status, &mds), &mds, attestation);
    let server = TestServer::start(options, true).await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    (server, client, vendor, dir)
}

#[test]
fn metadata_blob_must_be_signed_by_its_root() {
    let vendor = TestCa::new("Test Vendor Root");
    let mds = TestCa::new("Test Metadata Root");
    let impostor = TestCa::new("Impostor Metadata Root");

    let (options, _dir) = blob_options(
        &metadata_blob(&vendor, "FIDO_CERTIFIED", &impostor),
        &mds,
        "trusted",
    );
    let error = options.resolve().unwrap_err().to_string();
    assert!(error.contains("does not chain"), "{error}");

    // One character of the signature changed: still base64url, no longer a valid signature.
    let mut blob = metadata_blob(&vendor, "FIDO_CERTIFIED", &mds).into_bytes();
    let index = blob.len() - 10;
    blob[index] = if blob[index] == b'A' { b'B' } else { b'A' };
    let blob = String::from_utf8(blob).unwrap();
    let (options, _dir) = blob_options(&blob, &mds, "trusted");
    let error = options.resolve().unwrap_err().to_string();
    assert!(error.contains("signature does not verify"), "{error}");
}

#[test]
fn metadata_blob_needs_a_root() {
    let vendor = TestCa::new("Test Vendor Root");
    let mds = TestCa::new("Test Metadata Root");
    let (mut options, _dir) =
        blob_options(&metadata_blob(&vendor, "FIDO_CERTIFIED", &mds), &mds, "any");
    options.passkey_metadata_root = None;
    let error = options.resolve().unwrap_err().to_string();
    assert!(error.contains("--passkey-metadata-root"), "{error}");
}

#[tokio::test]
async fn metadata_blob_roots_are_trusted_and_named() {
    let (server, client, vendor, _dir) = server_with_blob("FIDO_CERTIFIED_L1", "trusted").await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assurance"], "passkey");
    assert_eq!(body["authenticator"], "Test Key 5 NFC");
}

/// A revoked model's root is not loaded: under `any` its keys register at `software`.
#[tokio::test]
async fn metadata_blob_revoked_model_is_not_trusted() {
    let (server, client, vendor, _dir) = server_with_blob("REVOKED", "any").await;
    let key = authenticator(&server, "alice", MODEL);

    let (status, body) = register(&server, &client, &key, &packed(&vendor)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["trust"]["kind"], "untrusted");
    assert_eq!(body["assurance"], "software");
}

#[test]
fn trusted_policy_without_roots_is_a_config_error() {
    let options = ServeOptions {
        passkey_attestation: Some("trusted".into()),
        ..ServeOptions::default()
    };
    let error = options.resolve().unwrap_err().to_string();
    assert!(error.contains("--passkey-trusted-ca-dir"), "{error}");
}
