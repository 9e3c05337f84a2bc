#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! DBSC sign-in and registration over HTTPS against a running server and its sled store: the
//! proof Chromium 156 sends binds the session, every other proof is rejected without binding
//! anything, and the cookie sent is the one the instructions describe.

mod support;

use devbound::config::ServeOptions;
use devbound::crypto::{Algorithm, Jwk, base64url};
use devbound::dbsc::headers;
use devbound::dbsc::proof::PROOF_TYPE;
use devbound::http::routes;
use devbound::store::SessionState;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION};
use serde_json::{Value, json};

use support::dbsc::{
    ALGORITHMS, Pending, assert_cookie_accepted, assert_instructions_match_cookie,
    assert_no_bound_session, assert_registration_rejected, challenges, cookie_pair, generate_key,
    http, registration_claims, registration_header, set_cookies, sign, sign_in_again,
    sign_in_pending, stored,
};
use support::server::{PASSWORD, TestServer};

/// Registers `pending` with the proof Chromium would send and asserts that it was accepted.
async fn register(pending: &Pending) {
    let proof = pending.proof(&registration_claims(&pending.offer));
    let response = pending.register(&proof).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn sign_in_offers_registration() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;

    assert_eq!(pending.offer.algorithms, ["ES256", "RS256"]);
    assert_eq!(pending.offer.path, routes::REGISTER);
    assert!(!pending.offer.challenge.is_empty());
    let authorization = pending.offer.authorization.as_deref().unwrap_or_default();
    assert!(!authorization.is_empty(), "no authorization value offered");

    assert_eq!(pending.record.state, SessionState::Pending);
    assert_eq!(pending.record.user_id, pending.user_id);
    assert!(pending.record.key.is_none());
    assert!(pending.record.credential_digest.is_none());
}

#[tokio::test]
async fn registration_accepts_chromium_shape_proof() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let proof = pending.proof(&registration_claims(&pending.offer));
        let response = pending.register(&proof).await;

        assert_eq!(response.status(), StatusCode::OK, "{alg}");
        let cookies = set_cookies(&response);
        let sent = challenges(&response);
        let cache_control = response.headers().get(CACHE_CONTROL).cloned();
        let body: Value = response.json().await.unwrap();

        assert!(body["session_identifier"].is_string(), "{body}");
        assert_eq!(body["session_identifier"], pending.session_id.as_str());
        assert_eq!(body["continue"], true);
        assert_eq!(
            body["refresh_url"],
            server.server.state.policy.refresh_url()
        );
        assert_eq!(body["scope"]["include_site"], false);
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert_instructions_match_cookie(&cookies[0], &body);
        assert_eq!(cache_control.unwrap(), "no-store");

        let record = stored(&server, &pending.session_id);
        assert_eq!(record.state, SessionState::Bound);
        let key = record.key.as_ref().unwrap();
        assert_eq!(key.alg, alg);
        assert_eq!(
            key.jwk,
            Jwk::from_value(&pending.client.key().public_jwk()).unwrap()
        );

        // The next refresh's challenge is sent ahead, with the session id Chromium requires.
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].1.as_deref(), Some(pending.session_id.as_str()));
        assert_eq!(record.challenge.unwrap().value, sent[0].0);

        let consumed = server
            .store()
            .find_challenge(&pending.offer.challenge)
            .unwrap();
        assert!(
            consumed.is_none(),
            "registration challenge is still outstanding"
        );
        assert_cookie_accepted(&server, cookie_pair(&cookies[0])).await;
    }
}

#[tokio::test]
async fn registration_accepts_quoted_proof_header() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let proof = pending.proof(&registration_claims(&pending.offer));

    let response = pending.register(&format!("\"{proof}\"")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        stored(&server, &pending.session_id).state,
        SessionState::Bound
    );
}

/// Older drafts sent `iat` as a string and `sub`; both are ignored. An optional Chromium
/// feature adds `aud`, the full endpoint URL.
#[tokio::test]
async fn registration_tolerates_iat_sub_and_endpoint_aud() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Rs256).await;
    let mut claims = registration_claims(&pending.offer);
    claims["iat"] = json!("1700000000");
    claims["sub"] = json!("someone");
    claims["aud"] = json!(server.server.state.policy.register_url());

    let response = pending.register(&pending.proof(&claims)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        stored(&server, &pending.session_id).state,
        SessionState::Bound
    );
}

#[tokio::test]
async fn registration_binds_jwk_not_key_claim() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let attacker = generate_key(Algorithm::Es256);
    let mut claims = registration_claims(&pending.offer);
    claims["key"] = attacker.public_jwk();

    let response = pending.register(&pending.proof(&claims)).await;

    assert_eq!(response.status(), StatusCode::OK);
    let key = stored(&server, &pending.session_id).key.unwrap();
    assert_eq!(
        key.jwk,
        Jwk::from_value(&pending.client.key().public_jwk()).unwrap()
    );
    assert_ne!(key.jwk, Jwk::from_value(&attacker.public_jwk()).unwrap());
}

#[tokio::test]
async fn registration_rejects_unknown_challenge() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let other = server.bound_client("bob", Algorithm::Es256).await;
    let refresh_challenge = other.challenge.clone().unwrap();
    let authorization = pending.offer.authorization.clone();

    let jtis = [
        json!(base64url::encode([7u8; 32])),
        json!(refresh_challenge),
        json!(format!("{}x", pending.offer.challenge)),
        json!(""),
        json!(42),
        Value::Null,
    ];
    for jti in jtis {
        let claims = json!({ "jti": jti, "authorization": authorization });
        let response = pending.register(&pending.proof(&claims)).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
    let claims = json!({ "authorization": authorization });
    let response = pending.register(&pending.proof(&claims)).await;
    assert_registration_rejected(&server, &pending, response).await;
}

#[tokio::test]
async fn registration_rejects_consumed_challenge() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let claims = registration_claims(&pending.offer);
    let proof = pending.proof(&claims);
    assert_eq!(pending.register(&proof).await.status(), StatusCode::OK);
    let bound = stored(&server, &pending.session_id);

    let replay = pending.register(&proof).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&replay).is_empty());

    // Another key signing the spent challenge must not take over the session.
    let attacker = generate_key(Algorithm::Es256);
    let takeover = sign(&attacker, &registration_header(&attacker), &claims);
    let response = pending.register(&takeover).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&response).is_empty());

    assert_eq!(stored(&server, &pending.session_id), bound);
}

// Several worker threads, so that the server handles the requests in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_binds_once_under_concurrent_replays() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let proof = pending.proof(&registration_claims(&pending.offer));

    let attempts = (0..6).map(|_| pending.register(&proof));
    let statuses: Vec<StatusCode> = join_all(attempts)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();

    let accepted = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert_eq!(accepted, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn registration_rejects_other_audience() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let policy = &server.server.state.policy;
    let audiences = [
        json!(policy.refresh_url()),
        json!(policy.origin),
        json!(format!("{}/", policy.register_url())),
        json!("https://attacker.example/dbsc/register"),
        json!(["https://attacker.example/dbsc/register"]),
        json!([]),
        json!(""),
        json!(1),
    ];
    for aud in audiences {
        let mut claims = registration_claims(&pending.offer);
        claims["aud"] = aud;
        let response = pending.register(&pending.proof(&claims)).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_missing_authorization() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    for claims in [
        json!({ "jti": pending.offer.challenge }),
        json!({ "jti": pending.offer.challenge, "authorization": null }),
    ] {
        let response = pending.register(&pending.proof(&claims)).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_wrong_authorization() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let second = sign_in_again(&server, "alice", Algorithm::Es256).await;
    let offered = pending.offer.authorization.clone().unwrap();
    let authorizations = [
        json!(second.offer.authorization),
        json!(format!("{offered}x")),
        json!(offered.to_ascii_uppercase()),
        json!(""),
        json!(7),
        json!([offered]),
    ];
    for authorization in authorizations {
        let claims = json!({ "jti": pending.offer.challenge, "authorization": authorization });
        let response = pending.register(&pending.proof(&claims)).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
    assert_eq!(stored(&server, &second.session_id), second.record);
}

#[tokio::test]
async fn registration_rejects_algorithm_of_other_key_type() {
    let server = TestServer::default_manual().await;
    for (alg, declared) in [(Algorithm::Es256, "RS256"), (Algorithm::Rs256, "ES256")] {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let key = pending.client.key();
        let header = json!({ "alg": declared, "typ": PROOF_TYPE, "jwk": key.public_jwk() });

        // A valid signature by the key in `jwk`, under the other key type's algorithm.
        let proof = sign(key, &header, &registration_claims(&pending.offer));
        let response = pending.register(&proof).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_signature_by_other_key() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let other = generate_key(alg);
        let header = registration_header(pending.client.key());
        let proof = sign(&other, &header, &registration_claims(&pending.offer));

        let response = pending.register(&proof).await;

        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_other_typ() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let key = pending.client.key();
    for typ in [
        json!("jwt"),
        json!("JWT"),
        json!("dpop+jwt"),
        json!(1),
        Value::Null,
    ] {
        let mut header = registration_header(key);
        header["typ"] = typ;
        let proof = sign(key, &header, &registration_claims(&pending.offer));
        let response = pending.register(&proof).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
    let header = json!({ "alg": "ES256", "jwk": key.public_jwk() });
    let proof = sign(key, &header, &registration_claims(&pending.offer));
    let response = pending.register(&proof).await;
    assert_registration_rejected(&server, &pending, response).await;
}

/// Older drafts put the key in a `key` payload claim; devbound accepts only a `jwk` header.
#[tokio::test]
async fn registration_rejects_key_claim_without_jwk() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let key = pending.client.key();
        let mut claims = registration_claims(&pending.offer);
        claims["key"] = key.public_jwk();

        let header = json!({ "alg": alg.name(), "typ": PROOF_TYPE });
        let response = pending.register(&sign(key, &header, &claims)).await;
        assert_registration_rejected(&server, &pending, response).await;

        // The whole older shape: `typ: "jwt"` and a string `iat` as well.
        claims["iat"] = json!("1700000000");
        let header = json!({ "alg": alg.name(), "typ": "jwt" });
        let response = pending.register(&sign(key, &header, &claims)).await;
        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_expired_challenge() {
    let server = TestServer::default_manual().await;
    let challenge_ttl = server.server.state.policy.challenge_ttl;
    let in_time = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let late = sign_in_pending(&server, "bob", Algorithm::Es256).await;

    server.advance(challenge_ttl - 1);
    register(&in_time).await;

    server.advance(1);
    let proof = late.proof(&registration_claims(&late.offer));
    let response = late.register(&proof).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&response).is_empty());
    assert_no_bound_session(&server, &late.user_id);

    // The sweeper may already have deleted the expired pending session.
    if let Some(session) = server.store().find_session(&late.session_id).unwrap() {
        assert_eq!(session.record, late.record);
    }
}

#[tokio::test]
async fn registration_rejects_private_key_in_jwk() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let key = pending.client.key();
        let mut header = registration_header(key);
        header["jwk"]["d"] = match key {
            devbound::client::SessionKey::Es256(signing) => {
                json!(base64url::encode(signing.to_bytes()))
            }
            devbound::client::SessionKey::Rs256(_) => json!("AQAB"),
        };

        let proof = sign(key, &header, &registration_claims(&pending.offer));
        let response = pending.register(&proof).await;

        assert_registration_rejected(&server, &pending, response).await;
    }
}

#[tokio::test]
async fn registration_rejects_missing_or_repeated_proof_header() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let url = format!("{}{}", server.url(), pending.offer.path);

    let missing = http(&server).post(&url).send().await.unwrap();
    assert_registration_rejected(&server, &pending, missing).await;

    let proof = pending.proof(&registration_claims(&pending.offer));
    let repeated = http(&server)
        .post(&url)
        .header(headers::RESPONSE, &proof)
        .header(headers::RESPONSE, &proof)
        .send()
        .await
        .unwrap();
    assert_registration_rejected(&server, &pending, repeated).await;
}

#[tokio::test]
async fn sign_in_while_bound_offers_no_registration() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let user_id = stored(&server, client.session_id.as_deref().unwrap()).user_id;

    let response = http(&server)
        .post(format!("{}{}", server.url(), routes::LOGIN))
        .header(COOKIE, client.cookie_header())
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();

    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers().get(LOCATION).unwrap(), routes::APP);
    assert!(!response.headers().contains_key(headers::REGISTRATION));
    let sessions = server.store().list_sessions(Some(&user_id)).unwrap();
    assert_eq!(sessions.len(), 1, "a second session was started");
}

#[tokio::test]
async fn sign_in_while_unbound_offers_registration() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let old_cookie = client.cookie_header();

    // Another device of the same user has no bound session of its own.
    let other_device = sign_in_again(&server, "alice", Algorithm::Rs256).await;
    register(&other_device).await;

    // After signing out, the same browser is offered a new registration.
    let logout = client.post(routes::LOGOUT).await.unwrap();
    assert!(logout.status().is_redirection());
    let response = http(&server)
        .post(format!("{}{}", server.url(), routes::LOGIN))
        .header(COOKIE, old_cookie)
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(headers::REGISTRATION));
}

/// `__Host-` cookies need `Secure`, an explicit `Path=/` and no `Domain` (RFC 6265bis draft 12,
/// §4.1.3.2), and browsers match the prefix case-insensitively.
fn assert_host_prefix_rules(set_cookie: &str) {
    let pair = cookie_pair(set_cookie);
    assert!(
        pair.to_ascii_lowercase().starts_with("__host-"),
        "cookie name lacks the __Host- prefix: {set_cookie}"
    );
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|attribute| attribute.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.iter().any(|a| a == "secure"), "{set_cookie}");
    assert!(attributes.iter().any(|a| a == "path=/"), "{set_cookie}");
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "{set_cookie}"
    );
}

#[tokio::test]
async fn sent_cookies_follow_host_prefix_rules() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let proof = pending.proof(&registration_claims(&pending.offer));
    let registered = pending.register(&proof).await;
    let mut sent = set_cookies(&registered);

    let mut client = server.bound_client("bob", Algorithm::Rs256).await;
    let session_id = client.session_id.clone().unwrap();
    let proof = client
        .refresh_proof(&client.challenge.clone().unwrap())
        .unwrap();
    let refreshed = client
        .post_refresh(&session_id, Some(&proof))
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let renewed = set_cookies(&refreshed);
    let (name, value) = cookie_pair(&renewed[0]).split_once('=').unwrap();
    client.set_cookie(name, value);
    sent.extend(renewed);

    let logout = client.post(routes::LOGOUT).await.unwrap();
    sent.extend(set_cookies(&logout));
    let terminated = client.post_refresh(&session_id, None).await.unwrap();
    assert_eq!(terminated.status(), StatusCode::OK);
    sent.extend(set_cookies(&terminated));

    assert_eq!(sent.len(), 4, "{sent:?}");
    for set_cookie in &sent {
        assert_host_prefix_rules(set_cookie);
    }
}

#[tokio::test]
async fn domain_cookie_matches_instructions() {
    let options = ServeOptions {
        cookie_name: Some("__Secure-devbound".into()),
        cookie_domain: Some("localhost".into()),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, true).await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let proof = pending.proof(&registration_claims(&pending.offer));

    let response = pending.register(&proof).await;

    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(cookies.len(), 1);
    assert!(
        cookies[0].starts_with("__Secure-devbound="),
        "{}",
        cookies[0]
    );
    assert!(cookies[0].contains("; Domain=localhost;"), "{}", cookies[0]);
    assert!(cookies[0].contains("; Secure;"), "{}", cookies[0]);
    assert_instructions_match_cookie(&cookies[0], &body);
}

#[test]
fn host_prefix_with_domain_is_rejected_by_config() {
    for name in ["__Host-devbound", "__host-devbound", "__HOST-devbound"] {
        let options = ServeOptions {
            cookie_name: Some(name.into()),
            cookie_domain: Some("localhost".into()),
            ..ServeOptions::default()
        };
        assert!(
            options.resolve().is_err(),
            "{name} with a Domain was accepted"
        );
    }
}
