//! Passkey sign-in over HTTPS with a software authenticator: DBSC binding after sign-in, single
//! use ceremonies, step-up, the freshness window, counter and backup-flag policies, and
//! password sign-in turned off.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::RefreshOutcome;
use devbound::config::ServeOptions;
use devbound::crypto::Algorithm;
use devbound::http::routes;
use reqwest::StatusCode;
use serde_json::json;
use support::dbsc::stored;
use support::passkeys::{
    authenticator, post_json, post_sign_in, register, sign_in_bound, sign_in_options,
    start_sign_in, step_up,
};
use support::server::{TEST_EPOCH, TestServer};
use support::webauthn::{Attestation, BE};

const AAGUID: [u8; 16] = [7; 16];

/// Starts a server, creates alice, signs her in with a password and registers a passkey.
async fn with_passkey(options: ServeOptions) -> (TestServer, support::webauthn::SoftAuthenticator) {
    let server = TestServer::start(options, true).await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let authenticator = authenticator(&server, "alice", AAGUID);
    let (status, body) = register(&server, &client, &authenticator, &Attestation::None).await;
    assert_eq!(status, StatusCode::OK, "registration: {body}");
    (server, authenticator)
}

/// Signs in with `authenticator` and asserts a 401 page that contains `message`.
async fn assert_sign_in_rejected(
    server: &TestServer,
    authenticator: &mut support::webauthn::SoftAuthenticator,
    message: &str,
) {
    let options = sign_in_options(server).await;
    let credential = authenticator.assert(&options);

    let response = post_sign_in(server, &options["ceremony"], &credential).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = response.text().await.unwrap();
    assert!(page.contains(message), "{page}");
}

#[tokio::test]
async fn passkey_sign_in_binds_dbsc_and_refreshes() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;

    let mut client = sign_in_bound(&server, &mut authenticator).await;
    let session = stored(&server, client.session_id.as_deref().unwrap());
    assert!(session.is_bound(), "DBSC registration did not bind");
    assert_eq!(
        session.passkey_id.as_deref(),
        Some(authenticator.credential_id_b64().as_str())
    );
    assert!(session.passkey_proof_at.is_some());

    server.advance(server.server.state.policy.cookie_ttl + 1);
    let outcome = client.refresh().await.unwrap();
    assert!(
        matches!(outcome, RefreshOutcome::Renewed { .. }),
        "{outcome:?}"
    );
    let page = client.get(routes::APP).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("test key, proved"),
        "app page does not name the passkey: {html}"
    );
    assert!(
        html.contains(r#"<td id="assurance">software</td>"#),
        "{html}"
    );

    let audit = server.store().list_audit(0, 100).unwrap();
    let recorded = |action: &str, outcome: &str| {
        audit
            .iter()
            .any(|entry| entry.action == action && entry.outcome == outcome)
    };
    assert!(recorded("passkey.register", "allowed"));
    assert!(recorded("session.sign_in", "allowed"));
    assert!(recorded("session.bind", "allowed"));
}

/// A passkey sign-in in a browser that already has a bound session for the same user proves
/// that session instead of starting a second one.
#[tokio::test]
async fn sign_in_with_live_session_proves_it() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    let session_id = client.session_id.clone().unwrap();
    server.advance(60);
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);

    let response = support::dbsc::http(&server)
        .post(format!("{}{}", server.url(), routes::PASSKEY_SIGN_IN))
        .header(reqwest::header::COOKIE, client.cookie_header())
        .form(&[
            ("ceremony", options["ceremony"].as_str().unwrap().to_owned()),
            ("credential", credential.to_string()),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response
            .headers()
            .get("secure-session-registration")
            .is_none()
    );
    let session = stored(&server, &session_id);
    let now = server.server.state.clock.now();
    assert_eq!(session.passkey_proof_at, Some(now));
}

#[tokio::test]
async fn sign_in_ceremony_is_single_use() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);

    let first = post_sign_in(&server, &options["ceremony"], &credential).await;
    let replay = post_sign_in(&server, &options["ceremony"], &credential).await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
}

#[tokio::test]
async fn sign_in_ceremony_expires() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);
    server.advance(server.server.state.passkeys.settings.ceremony_ttl);

    let response = post_sign_in(&server, &options["ceremony"], &credential).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_rejects_disabled_user() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let changed =
        devbound::http::set_user_disabled(server.store(), "alice", true, TEST_EPOCH).unwrap();
    assert!(changed.is_some());

    assert_sign_in_rejected(&server, &mut authenticator, "account is disabled").await;
    let audit = server.store().list_audit(0, 100).unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, "session.sign_in");
    assert_eq!(last.outcome, "refused");
}

#[tokio::test]
async fn sign_in_rejects_another_users_handle() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    server.add_user("mallory");
    let mallory = server
        .store()
        .find_user_by_name("mallory")
        .unwrap()
        .unwrap();
    authenticator.user_handle = Some(mallory.id.into_bytes());
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);

    let response = post_sign_in(&server, &options["ceremony"], &credential).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn remove_demands_step_up_and_returns() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let mut client = sign_in_bound(&server, &mut authenticator).await;
    let remove = routes::with_id(routes::PASSKEY_REMOVE, &authenticator.credential_id_b64());
    server.advance(server.server.state.passkeys.settings.step_up_max_age + 1);

    let refused = client.post(&remove).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    let location = refused.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/passkeys/step-up?return_to=%2Fpasskeys");
    assert!(
        server
            .store()
            .find_passkey(&authenticator.credential_id_b64())
            .unwrap()
            .is_some()
    );

    let (status, body) = step_up(&server, &client, &mut authenticator, routes::PASSKEYS).await;
    assert_eq!(status, StatusCode::OK, "step-up: {body}");
    assert_eq!(body["redirect"], routes::PASSKEYS);

    let removed = client.post(&remove).await.unwrap();
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(removed.headers()["location"], routes::PASSKEYS);
    assert!(
        server
            .store()
            .find_passkey(&authenticator.credential_id_b64())
            .unwrap()
            .is_none()
    );
}

/// Removing a lost passkey ends the other sessions it signed in, but not the one removing it.
#[tokio::test]
async fn removing_passkey_ends_its_other_sessions() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let mut thief = sign_in_bound(&server, &mut authenticator).await;
    let mut owner = sign_in_bound(&server, &mut authenticator).await;
    let remove = routes::with_id(routes::PASSKEY_REMOVE, &authenticator.credential_id_b64());

    let removed = owner.post(&remove).await.unwrap();
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(removed.headers()["location"], routes::PASSKEYS);

    assert_eq!(thief.refresh().await.unwrap(), RefreshOutcome::Terminated);
    assert!(matches!(
        owner.refresh().await.unwrap(),
        RefreshOutcome::Renewed { .. }
    ));
}

#[tokio::test]
async fn rename_trims_and_rejects_unknown() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    let id = authenticator.credential_id_b64();
    let rename = |name: &'static str, id: &str| {
        support::dbsc::http(&server)
            .post(format!(
                "{}{}",
                server.url(),
                routes::with_id(routes::PASSKEY_RENAME, id)
            ))
            .header(reqwest::header::COOKIE, client.cookie_header())
            .form(&[("name", name)])
            .send()
    };

    let renamed = rename("  Work laptop  ", &id).await.unwrap();
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    let stored_name = server.store().find_passkey(&id).unwrap().unwrap().name;
    assert_eq!(stored_name, "Work laptop");

    let empty = rename("   ", &id).await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let unknown = rename("Other", "bm90LW1pbmU").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let page = client
        .get(routes::PASSKEYS)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Work laptop"), "{page}");
}

#[tokio::test]
async fn step_up_rejects_foreign_return_to() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let client = sign_in_bound(&server, &mut authenticator).await;

    let (status, body) = step_up(&server, &client, &mut authenticator, "//evil.example/x").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["redirect"], routes::APP);
}

#[tokio::test]
async fn stale_passkey_binding_demands_reproof() {
    let options = ServeOptions {
        passkey_freshness: Some("2m".into()),
        ..ServeOptions::default()
    };
    let (server, mut authenticator) = with_passkey(options).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    assert_eq!(
        client.get(routes::APP).await.unwrap().status(),
        StatusCode::OK
    );

    server.advance(121);
    let stale = client.get(routes::APP).await.unwrap();
    assert_eq!(stale.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        stale.headers()["location"],
        "/passkeys/step-up?return_to=%2Fapp"
    );

    let (status, _) = step_up(&server, &client, &mut authenticator, routes::APP).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        client.get(routes::APP).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn stale_passkey_binding_demands_reproof_in_api() {
    let options = ServeOptions {
        passkey_freshness: Some("2m".into()),
        ..ServeOptions::default()
    };
    let (server, mut authenticator) = with_passkey(options).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    let sessions = client.get(routes::API_SESSIONS).await.unwrap();
    assert_eq!(sessions.status(), StatusCode::OK);

    server.advance(121);
    let stale = client.get(routes::API_SESSIONS).await.unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(body["error"], "step_up_required");
    assert_eq!(body["step_up_url"], "/passkeys/step-up?return_to=%2Fapp");
    let (status, body) = post_json(
        &server,
        &client,
        routes::API_DEVICE_CODES,
        &json!({ "name": "laptop" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "code created: {body}");

    let (status, _) = step_up(&server, &client, &mut authenticator, routes::APP).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = client.get(routes::API_SESSIONS).await.unwrap();
    assert_eq!(sessions.status(), StatusCode::OK);
}

#[tokio::test]
async fn adding_second_passkey_demands_step_up() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    server.advance(server.server.state.passkeys.settings.step_up_max_age + 1);

    let (status, body) = post_json(
        &server,
        &client,
        routes::PASSKEY_REGISTER_OPTIONS,
        &json!({ "name": "second" }),
    )
    .await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "step_up_required");
}

/// An enrollment code lets a machine join the account, so a passkey holder must have proved the
/// session recently to make one.
#[tokio::test]
async fn enrollment_code_demands_step_up() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    let client = sign_in_bound(&server, &mut authenticator).await;
    let request = json!({ "name": "build box" });

    let (fresh, body) = post_json(&server, &client, routes::API_DEVICE_CODES, &request).await;
    assert_eq!(fresh, StatusCode::CREATED, "{body}");

    server.advance(server.server.state.passkeys.settings.step_up_max_age + 1);
    let (stale, body) = post_json(&server, &client, routes::API_DEVICE_CODES, &request).await;
    assert_eq!(stale, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "step_up_required");

    let (proved, body) = step_up(&server, &client, &mut authenticator, routes::DEVICES).await;
    assert_eq!(proved, StatusCode::OK, "step-up: {body}");
    let (again, body) = post_json(&server, &client, routes::API_DEVICE_CODES, &request).await;
    assert_eq!(again, StatusCode::CREATED, "{body}");
}

/// A counter that does not advance is rejected by default and flags the passkey.
#[tokio::test]
async fn counter_regression_is_rejected_and_flagged() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    authenticator.counter = 7;
    sign_in_bound(&server, &mut authenticator).await;
    authenticator.counter = 7; // The next assertion sends 8 again: (8, 8).
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);

    let response = post_sign_in(&server, &options["ceremony"], &credential).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("signature counter"));
    let passkey = server
        .store()
        .find_passkey(&authenticator.credential_id_b64())
        .unwrap()
        .unwrap();
    assert!(passkey.clone_warning_at.is_some());
    assert_eq!(passkey.credential.counter, 8);
    let audit = server.store().list_audit(0, 100).unwrap();
    let flagged = audit.iter().any(|entry| {
        entry.action == "passkey.assert"
            && entry.outcome == "refused"
            && entry.detail == "possible_clone"
    });
    assert!(flagged, "no audit entry for the counter regression");
}

/// Under `record`, the same assertion signs in at `software` assurance and flags the passkey.
#[tokio::test]
async fn counter_regression_is_recorded_when_configured() {
    let options = ServeOptions {
        passkey_counter: Some("record".into()),
        ..ServeOptions::default()
    };
    let (server, mut authenticator) = with_passkey(options).await;
    authenticator.counter = 42;
    sign_in_bound(&server, &mut authenticator).await;
    authenticator.counter = 0; // A counter that went back to 0: (43, 0).
    let options = sign_in_options(&server).await;
    let credential = authenticator.assert(&options);

    let response = post_sign_in(&server, &options["ceremony"], &credential).await;

    assert_eq!(response.status(), StatusCode::OK);
    let passkey = server
        .store()
        .find_passkey(&authenticator.credential_id_b64())
        .unwrap()
        .unwrap();
    assert!(passkey.clone_warning_at.is_some());
    assert_eq!(
        passkey.credential.counter, 43,
        "the stored counter must not go back"
    );
}

/// A passkey registered device-bound that later reports backup eligibility keeps working.
#[tokio::test]
async fn backup_eligibility_gain_is_accepted() {
    let (server, mut authenticator) = with_passkey(ServeOptions::default()).await;
    authenticator.extra_flags = BE;

    let client = sign_in_bound(&server, &mut authenticator).await;

    let passkey = server
        .store()
        .find_passkey(&authenticator.credential_id_b64())
        .unwrap()
        .unwrap();
    assert!(passkey.credential.backup_eligible);
    assert_eq!(passkey.assurance.name(), "software");
    assert!(client.session_id.is_some());
}

/// A passkey registered as backup-eligible that stops reporting it is rejected.
#[tokio::test]
async fn backup_eligibility_loss_is_rejected() {
    let server = TestServer::start(ServeOptions::default(), true).await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let mut authenticator = authenticator(&server, "alice", AAGUID);
    authenticator.extra_flags = BE;
    let (status, body) = register(&server, &client, &authenticator, &Attestation::None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    authenticator.extra_flags = 0;

    assert_sign_in_rejected(&server, &mut authenticator, "backup status changed").await;
}

#[tokio::test]
async fn password_sign_in_can_be_turned_off() {
    let options = ServeOptions {
        password_sign_in: Some(false),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, true).await;
    server.add_user("alice");
    let mut client = server.client(Algorithm::Es256);

    let refused = client.sign_in("alice", support::server::PASSWORD).await;

    assert!(refused.is_err(), "password sign-in still works");
    let page = client
        .get(routes::LOGIN)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(r#"type="password""#));
    assert!(page.contains("passkey-sign-in"));
}

/// With passwords turned off, an operator's invitation lets a person create a first passkey
/// and sign in with it; the invitation works once.
#[tokio::test]
async fn invitation_enrolls_first_passkey_once() {
    let options = ServeOptions {
        password_sign_in: Some(false),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, true).await;
    let now = server.server.state.clock.now();
    let invite = devbound::http::create_invite(server.store(), "bob", server.url(), now)
        .await
        .unwrap()
        .unwrap();
    let invite_id = invite.url.split("invite=").nth(1).unwrap().to_owned();
    let anonymous = server.client(Algorithm::Es256);
    let page = anonymous
        .get(&format!("{}?invite={invite_id}", routes::ENROLL))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    let request = json!({ "invite": invite_id, "name": "bob's laptop" });
    // A ceremony the person abandons (a cancelled browser dialog) does not spend the invitation.
    let (status, _) = post_json(&server, &anonymous, routes::ENROLL_OPTIONS, &request).await;
    assert_eq!(status, StatusCode::OK);
    let (status, options) = post_json(&server, &anonymous, routes::ENROLL_OPTIONS, &request).await;
    assert_eq!(status, StatusCode::OK, "{options}");
    let mut key = authenticator(&server, "bob", AAGUID);
    let credential = key.register(&options, &Attestation::None);
    let body = json!({ "ceremony": options["ceremony"], "credential": credential });
    let (status, done) = post_json(&server, &anonymous, routes::ENROLL, &body).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["redirect"], routes::LOGIN);

    let client = sign_in_bound(&server, &mut key).await;
    assert!(stored(&server, client.session_id.as_deref().unwrap()).is_bound());

    let (status, replay) = post_json(&server, &anonymous, routes::ENROLL_OPTIONS, &request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_invitation");
}

#[tokio::test]
async fn sign_in_starts_are_limited_per_minute() {
    let options = ServeOptions {
        passkey_sign_in_rate: Some(2),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, true).await;
    let start = || start_sign_in(&server);
    // The manual clock starts at a whole minute.
    assert_eq!(start().await.status(), StatusCode::OK);
    server.advance(50);
    assert_eq!(start().await.status(), StatusCode::OK);

    let limited = start().await;

    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "10");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    server.advance(10);
    assert_eq!(start().await.status(), StatusCode::OK);
}
