//! Device enrollment over HTTPS without a TPM: every refusal the server reaches from the start
//! request or from a wrong finish request, with evidence captured from swtpm
//! (`fixtures/tpm/`). Each refused enrollment records no device, and a code or challenge is
//! spent by its first use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::crypto::{Algorithm, base64url};
use devbound::http::routes;
use devbound::tpm::ObjectAttributes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::devices::{
    call, create_code, fixture, fixture_trust_dir, post_enrollment, server_trusting,
};
use support::server::TestServer;

fn start_body(code: &str, ek_certificate: Option<&[u8]>, ek_public: &[u8], ak: &[u8]) -> Value {
    json!({
        "code": code,
        "ek_certificate": ek_certificate.map(base64url::encode),
        "ek_public": base64url::encode(ek_public),
        "ak_public": base64url::encode(ak),
    })
}

/// The swtpm evidence the fixtures' trust directory accepts, with `ak` as the AK.
fn genuine(code: &str, ak: &[u8]) -> Value {
    start_body(
        code,
        Some(&fixture("swtpm-ek-rsa.der")),
        &fixture("swtpm-ek-public.bin"),
        ak,
    )
}

/// The AK fixture with `clear` bits cleared in its objectAttributes.
fn ak_without(clear: u32) -> Vec<u8> {
    let mut ak = fixture("ak-ecc-public.bin");
    // TPM2B size, type and nameAlg come first: 6 bytes.
    let attributes = u32::from_be_bytes(ak[6..10].try_into().unwrap());
    ak[6..10].copy_from_slice(&(attributes & !clear).to_be_bytes());
    ak
}

/// An answer to `started` with a secret no TPM recovered, and a certification from swtpm.
fn wrong_answer(started: &Value) -> Value {
    json!({
        "challenge_id": started["challenge_id"],
        "activated_secret": base64url::encode([0u8; 32]),
        "key_public": base64url::encode(fixture("session-key-public.bin")),
        "certify_info": base64url::encode(fixture("certify-attest.bin")),
        "signature": base64url::encode(fixture("certify-signature.bin")),
    })
}

/// A server trusting the fixtures' CA, with a signed-in user `alice`, and one code of hers.
async fn setup() -> (TestServer, devbound::client::DbscClient, String) {
    let server = server_trusting(fixture_trust_dir()).await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let code = create_code(&server, &alice, "laptop").await;
    (server, alice, code)
}

async fn start(server: &TestServer, body: &Value) -> (StatusCode, Value) {
    post_enrollment(server, routes::API_ENROLL_START, body).await
}

/// Asserts a 403 `enrollment_refused` with `reason`, and that no device was recorded.
fn assert_refused(server: &TestServer, (status, body): &(StatusCode, Value), reason: &str) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], json!("enrollment_refused"), "{body}");
    assert_eq!(body["reason"], json!(reason), "{body}");
    assert!(server.store().list_devices(None).unwrap().is_empty());
    // The refusal is the newest entry in the audit log.
    let entries = server.store().list_audit(0, usize::MAX).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.outcome.as_str(),
            last.detail.as_str()
        ),
        ("device.enroll", "refused", reason)
    );
}

#[tokio::test]
async fn untrusted_ca_refused_and_code_spent() {
    let (server, _, code) = setup().await;
    let body = start_body(
        &code,
        Some(&fixture("swtpm-ek-rsa-untrusted-ca.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    // That CA has the same name as the trusted one, so its signature is what fails.
    let answer = start(&server, &body).await;
    assert_refused(&server, &answer, "bad_certificate_signature");

    // The code worked once; genuine evidence with it now fails.
    let (status, body) = start(&server, &genuine(&code, &fixture("ak-ecc-public.bin"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], json!("invalid_code"));
}

#[tokio::test]
async fn tpm_without_an_ek_certificate_is_refused() {
    let (server, _, code) = setup().await;
    let body = start_body(
        &code,
        None,
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    assert_refused(&server, &start(&server, &body).await, "no_ek_certificate");
}

#[tokio::test]
async fn ek_public_differing_from_the_certificate_is_refused() {
    let (server, _, code) = setup().await;
    let mut ek_public = fixture("swtpm-ek-public.bin");
    let last = ek_public.len() - 1;
    ek_public[last] ^= 0x01;
    let body = start_body(
        &code,
        Some(&fixture("swtpm-ek-rsa.der")),
        &ek_public,
        &fixture("ak-ecc-public.bin"),
    );
    assert_refused(&server, &start(&server, &body).await, "ek_public_mismatch");
}

#[tokio::test]
async fn an_ak_that_is_not_restricted_is_refused() {
    let (server, _, code) = setup().await;
    // A signing key the TPM created like a session key, presented as the AK.
    let body = genuine(&code, &fixture("session-key-public.bin"));
    assert_refused(&server, &start(&server, &body).await, "object_attribute");

    let (server, _, code) = setup().await;
    let body = genuine(&code, &ak_without(ObjectAttributes::RESTRICTED));
    assert_refused(&server, &start(&server, &body).await, "object_attribute");
}

#[tokio::test]
async fn an_ak_without_fixed_tpm_or_fixed_parent_is_refused() {
    for attribute in [ObjectAttributes::FIXED_TPM, ObjectAttributes::FIXED_PARENT] {
        let (server, _, code) = setup().await;
        let body = genuine(&code, &ak_without(attribute));
        assert_refused(&server, &start(&server, &body).await, "object_attribute");
    }
}

#[tokio::test]
async fn a_wrong_activated_secret_is_refused_and_its_challenge_cannot_be_replayed() {
    let (server, _, code) = setup().await;
    let (status, started) = start(&server, &genuine(&code, &fixture("ak-ecc-public.bin"))).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    for field in [
        "challenge_id",
        "credential_blob",
        "encrypted_secret",
        "certify_nonce",
    ] {
        assert!(started[field].is_string(), "{field}");
    }

    let finish = wrong_answer(&started);
    let answer = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_refused(&server, &answer, "wrong_secret");
    // The challenge was spent by the first answer, right or wrong.
    let answer = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_refused(&server, &answer, "unknown_challenge");
}

#[tokio::test]
async fn expired_codes_and_challenges_are_refused() {
    let options = devbound::config::ServeOptions {
        tpm_trust_dir: Some(fixture_trust_dir()),
        ..Default::default()
    };
    let server = TestServer::start(options, true).await;
    // The fixture EK certificate is valid from 2026-12-04 17:29:20 UTC.
    server.advance(18 * 3600);
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let late_code = create_code(&server, &alice, "laptop").await;
    let code = create_code(&server, &alice, "laptop").await;

    let (status, started) = start(&server, &genuine(&code, &fixture("ak-ecc-public.bin"))).await;
    assert_eq!(status, StatusCode::OK);
    let challenge_ttl = server.server.state.enrollment.challenge_ttl;
    server.advance(challenge_ttl);
    let finish = wrong_answer(&started);
    let answer = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_refused(&server, &answer, "challenge_expired");

    server.advance(devbound::device::CODE_TTL - challenge_ttl);
    let body = genuine(&late_code, &fixture("ak-ecc-public.bin"));
    let (status, answer) = start(&server, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], json!("invalid_code"));
}

#[tokio::test]
async fn malformed_enrollment_requests_get_invalid_request() {
    let (server, _, code) = setup().await;
    let bodies = [
        json!({ "code": code }),
        json!({ "code": code, "ek_public": "+/=", "ak_public": "AA" }),
        json!({ "code": code, "ek_certificate": "%%", "ek_public": "AA", "ak_public": "AA" }),
        json!([1, 2, 3]),
    ];
    for body in bodies {
        let (status, answer) = start(&server, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"], json!("invalid_request"));
    }
    // Truncated TPM structures are refused in the TPM's terms, and never panic the server.
    let body = start_body(&code, Some(&[0x30, 0x82]), &[0, 4, 0, 1], &[0]);
    let (status, answer) = start(&server, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
}

#[tokio::test]
async fn enrollment_codes_need_a_signed_in_user() {
    let server = server_trusting(fixture_trust_dir()).await;
    let anonymous = server.client(Algorithm::Es256);
    let (status, body) = call(&server, &anonymous, Method::POST, routes::API_DEVICE_CODES).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = call(&server, &anonymous, Method::GET, routes::API_DEVICES).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_route_demanding_tpm_refuses_a_software_session_clearly() {
    let server = server_trusting(fixture_trust_dir()).await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let (status, body) = call(&server, &alice, Method::GET, routes::API_ATTESTED).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], json!("insufficient_assurance"));
    assert_eq!(body["required"], json!("tpm"));
    assert_eq!(body["assurance"], json!("software"));

    // The app page and the sessions API show the session's assurance.
    let page = alice.get(routes::APP).await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"<td id="assurance">software</td>"#),
        "{page}"
    );
    let (_, sessions) = call(&server, &alice, Method::GET, routes::API_SESSIONS).await;
    assert_eq!(sessions["sessions"][0]["assurance"], json!("software"));
}

#[tokio::test]
async fn a_user_cannot_see_or_revoke_another_users_device() {
    let server = server_trusting(fixture_trust_dir()).await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let bob = server.bound_client("bob", Algorithm::Es256).await;
    let alice_id = server
        .store()
        .find_user_by_name("alice")
        .unwrap()
        .unwrap()
        .id;
    let device = devbound::store::DeviceRecord {
        id: "d-alice".into(),
        owner_id: alice_id,
        name: "laptop".into(),
        assurance: devbound::store::Assurance::Tpm,
        ek_certificate_sha256: Some([1; 32]),
        ak_name: vec![0, 0x0b],
        session_key: devbound::crypto::Jwk::from_value(&alice.key().public_jwk()).unwrap(),
        created_at: 0,
        revoked: None,
    };
    assert!(server.store().insert_device(&device).unwrap());

    let (_, listed) = call(&server, &bob, Method::GET, routes::API_DEVICES).await;
    assert_eq!(listed["devices"], json!([]));
    let path = routes::with_id(routes::API_DEVICE, "d-alice");
    let (status, _) = call(&server, &bob, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        !server
            .store()
            .find_device("d-alice")
            .unwrap()
            .unwrap()
            .record
            .is_revoked()
    );

    let (status, body) = call(&server, &alice, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        server
            .store()
            .find_device("d-alice")
            .unwrap()
            .unwrap()
            .record
            .is_revoked()
    );
    let page = alice
        .get(routes::DEVICES)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("laptop") && page.contains("revoked"),
        "{page}"
    );
}

#[tokio::test]
async fn devices_page_creates_a_one_time_code() {
    let server = server_trusting(fixture_trust_dir()).await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let page = alice
        .get(routes::DEVICES)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(routes::DEVICE_CODES), "{page}");

    let response = post_code_form(&server, &alice, "build <box>").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    let command = page
        .split(r#"<pre id="enroll-command">"#)
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap();
    let code = command.rsplit(' ').next().unwrap();
    assert!(
        command.starts_with("devbound device enroll --server https://"),
        "{command}"
    );

    // The code shown starts one enrollment for alice; only its digest was stored.
    let body = genuine(code, &fixture("ak-ecc-public.bin"));
    let (status, started) = start(&server, &body).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let (status, _) = start(&server, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let response = post_code_form(&server, &alice, "").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Submits the devices page's form that creates an enrollment code.
async fn post_code_form(
    server: &TestServer,
    client: &devbound::client::DbscClient,
    name: &str,
) -> reqwest::Response {
    support::devices::https(server)
        .post(client.url(routes::DEVICE_CODES))
        .header(reqwest::header::COOKIE, client.cookie_header())
        .form(&[("name", name)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn software_fallback_enrolls_a_failing_device_below_tpm() {
    let options = devbound::config::ServeOptions {
        tpm_trust_dir: Some(fixture_trust_dir()),
        tpm_software_fallback: Some(true),
        ..Default::default()
    };
    let server = TestServer::start(options, false).await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;

    // An untrusted EK certificate still gets a credential when policy allows software.
    let code = create_code(&server, &alice, "laptop").await;
    let body = start_body(
        &code,
        Some(&fixture("swtpm-ek-rsa-untrusted-ca.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    let (status, started) = start(&server, &body).await;
    assert_eq!(status, StatusCode::OK, "{started}");

    // A wrong secret too: the device is recorded at software, with no TPM evidence.
    let finish = wrong_answer(&started);
    let (status, finished) = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    assert_eq!(finished["assurance"], json!("software"));
    let devices = server.store().list_devices(None).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].assurance, devbound::store::Assurance::Software);
    assert_eq!(devices[0].ek_certificate_sha256, None);
    assert!(devices[0].ak_name.is_empty());

    // Spent challenges are still refused, and a key that is not P-256 is still refused.
    let (status, replayed) = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(replayed["reason"], json!("unknown_challenge"));
    let code = create_code(&server, &alice, "laptop").await;
    let (_, started) = start(&server, &genuine(&code, &fixture("ak-ecc-public.bin"))).await;
    let mut finish = wrong_answer(&started);
    finish["key_public"] = json!(base64url::encode(fixture("ak-rsa-public.bin")));
    let (status, refused) = post_enrollment(&server, routes::API_ENROLL_FINISH, &finish).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["reason"], json!("wrong_secret"));
    assert_eq!(server.store().list_devices(None).unwrap().len(), 1);
}

/// Guessed codes are refused without limit, but the audit log records at most
/// `MAX_REFUSALS_PER_MINUTE` of them a minute and then one entry with the count of the rest.
#[tokio::test]
async fn guessed_codes_do_not_grow_audit_log() {
    use devbound::audit::limit::MAX_REFUSALS_PER_MINUTE;

    let server = TestServer::default_manual().await;
    let guesses = MAX_REFUSALS_PER_MINUTE + 40;
    for guess in 0..guesses {
        let body = start_body(
            &format!("guess-{guess}"),
            None,
            &fixture("swtpm-ek-public.bin"),
            &fixture("ak-ecc-public.bin"),
        );
        let (status, refused) = post_enrollment(&server, routes::API_ENROLL_START, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    }
    let entries = server.store().list_audit(0, 1000).unwrap();
    assert_eq!(entries.len(), MAX_REFUSALS_PER_MINUTE as usize);

    server.advance(60);
    let body = start_body(
        "one-more",
        None,
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    post_enrollment(&server, routes::API_ENROLL_START, &body).await;
    let entries = server.store().list_audit(0, 1000).unwrap();
    assert_eq!(entries.len(), MAX_REFUSALS_PER_MINUTE as usize + 2);
    let summary = &entries[MAX_REFUSALS_PER_MINUTE as usize];
    assert_eq!(summary.action, "audit.suppressed");
    assert!(summary.detail.starts_with("40 "), "{}", summary.detail);
    assert_eq!(entries.last().unwrap().action, "device.enroll");
    assert!(devbound::audit::verify(None, &entries).is_ok());
}

#[tokio::test]
async fn disabled_owner_cannot_enroll_with_an_earlier_code() {
    let (server, _, code) = setup().await;
    let changed = devbound::http::set_user_disabled(
        server.store(),
        "alice",
        true,
        support::server::TEST_EPOCH,
    )
    .unwrap();
    assert!(changed.is_some());

    let answer = start(&server, &genuine(&code, &fixture("ak-ecc-public.bin"))).await;

    assert_refused(&server, &answer, "user_disabled");
}
