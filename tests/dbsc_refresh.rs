#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! DBSC refresh over HTTPS against a running server and its sled store: challenges, renewed
//! cookies, the end of a session, and what a stolen cookie is worth without the key.

mod support;

use devbound::client::{DbscClient, RefreshOutcome};
use devbound::crypto::{Algorithm, Jwk};
use devbound::dbsc::proof::PROOF_TYPE;
use devbound::dbsc::{REPLACED_CREDENTIAL_GRACE, headers};
use devbound::http::{ADMIN_TOKEN_FILE, routes};
use devbound::store::{SessionState, Update};
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use serde_json::{Value, json};

use support::dbsc::{
    ALGORITHMS, assert_challenged, assert_cookie_accepted, assert_cookie_refused,
    assert_instructions_match_cookie, assert_redirects_to_login, assert_refresh_rejected,
    assert_terminated, challenges, cookie_pair, generate_key, get_with, http,
    outstanding_challenge, post_refresh, refresh_header, set_cookies, sign, sign_in_pending,
    stored,
};
use support::server::{PASSWORD, TestServer};

/// Returns the session id of a bound client.
fn session_id(client: &DbscClient) -> String {
    client.session_id.clone().unwrap()
}

#[tokio::test]
async fn refresh_without_proof_returns_challenge() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);

    for sent_id in [id.clone(), format!("\"{id}\"")] {
        let before = stored(&server, &id);
        let response = post_refresh(&server, &sent_id, None).await;
        assert_refresh_rejected(&server, &response, &before);
    }
    assert_cookie_accepted(&server, &client.cookie_header()).await;
}

#[tokio::test]
async fn refresh_with_valid_proof_renews_cookie() {
    let server = TestServer::default_manual().await;
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    for alg in ALGORITHMS {
        let client = server.bound_client(&format!("user-{alg}"), alg).await;
        let id = session_id(&client);
        let before = stored(&server, &id);
        server.advance(60);

        let proof = client
            .refresh_proof(client.challenge.as_deref().unwrap())
            .unwrap();
        let response = client.post_refresh(&id, Some(&proof)).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK, "{alg}");
        let cookies = set_cookies(&response);
        let sent = challenges(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["session_identifier"], id.as_str());
        assert_eq!(body["continue"], true);
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert_ne!(cookie_pair(&cookies[0]), client.cookie_header());
        assert_instructions_match_cookie(&cookies[0], &body);

        let after = stored(&server, &id);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].1.as_deref(), Some(id.as_str()));
        assert_eq!(after.challenge.as_ref().unwrap().value, sent[0].0);
        assert_eq!(after.key, before.key);
        assert_ne!(after.credential_digest, before.credential_digest);
        assert_eq!(
            after.credential_expires_at,
            server.server.state.clock.now() + cookie_ttl
        );
        assert_eq!(after.refresh_count, before.refresh_count + 1);
        assert_cookie_accepted(&server, cookie_pair(&cookies[0])).await;
    }
}

/// Chromium refreshes about 2 minutes before the bound cookie expires and caches the challenge
/// sent with the previous response, so a refresh normally needs one request.
#[tokio::test]
async fn refresh_takes_one_request_with_preissued_challenge() {
    let server = TestServer::default_manual().await;
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    for alg in ALGORITHMS {
        let mut client = server.bound_client(&format!("user-{alg}"), alg).await;
        assert_eq!(
            client.refresh().await.unwrap(),
            RefreshOutcome::Renewed { requests: 1 }
        );

        for _ in 0..3 {
            server.advance(cookie_ttl - 120);
            let outcome = client.refresh().await.unwrap();
            assert_eq!(outcome, RefreshOutcome::Renewed { requests: 1 }, "{alg}");
        }
    }
}

#[tokio::test]
async fn refresh_retires_old_cookie_after_grace() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let old_cookie = client.cookie_header();

    assert!(matches!(
        client.refresh().await.unwrap(),
        RefreshOutcome::Renewed { .. }
    ));
    assert_ne!(client.cookie_header(), old_cookie);

    // A request that left the browser before the refresh finished still goes through.
    assert_cookie_accepted(&server, &old_cookie).await;
    server.advance(REPLACED_CREDENTIAL_GRACE);
    assert_cookie_refused(&server, &old_cookie).await;
    assert_cookie_accepted(&server, &client.cookie_header()).await;
}

#[tokio::test]
async fn second_refresh_retires_first_cookie() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let first_cookie = client.cookie_header();

    for _ in 0..2 {
        assert!(matches!(
            client.refresh().await.unwrap(),
            RefreshOutcome::Renewed { .. }
        ));
    }
    assert_cookie_refused(&server, &first_cookie).await;
    assert_cookie_accepted(&server, &client.cookie_header()).await;
}

#[tokio::test]
async fn refresh_terminates_unknown_or_pending_session() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;

    for id in ["AAAAAAAAAAAAAAAAAAAAAA", pending.session_id.as_str()] {
        let response = post_refresh(&server, id, None).await;
        let cleared = set_cookies(&response);
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        assert!(cleared[0].contains("Max-Age=0"), "{}", cleared[0]);
        assert_terminated(response, id).await;
    }
    assert_eq!(stored(&server, &pending.session_id), pending.record);
}

#[tokio::test]
async fn refresh_rejects_missing_or_malformed_session_id() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let before = stored(&server, &session_id(&client));
    let url = format!("{}{}", server.url(), routes::REFRESH);

    let missing = http(&server).post(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    for id in ["a b", "\"unterminated", "?1", "", "s\u{e9}ssion"] {
        let response = http(&server)
            .post(&url)
            .header(headers::SESSION_ID, id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id:?}");
    }
    assert_eq!(stored(&server, &before.id), before);
}

#[tokio::test]
async fn refresh_terminates_session_revoked_by_other_session() {
    let server = TestServer::default_manual().await;
    let mut laptop = server.bound_client("alice", Algorithm::Es256).await;
    let mut phone = server.client(Algorithm::Rs256);
    phone.sign_in_and_register("alice", PASSWORD).await.unwrap();
    let laptop_id = session_id(&laptop);
    let laptop_cookie = laptop.cookie_header();

    let revoke = http(&server)
        .delete(format!(
            "{}{}",
            server.url(),
            routes::with_id(routes::API_SESSION, &laptop_id)
        ))
        .header(COOKIE, phone.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    let view: Value = revoke.json().await.unwrap();
    assert_eq!(view["state"], "revoked");

    let record = stored(&server, &laptop_id);
    assert!(
        matches!(record.state, SessionState::Revoked { .. }),
        "{:?}",
        record.state
    );
    assert_cookie_refused(&server, &laptop_cookie).await;
    assert_eq!(laptop.refresh().await.unwrap(), RefreshOutcome::Terminated);
    assert_eq!(
        phone.refresh().await.unwrap(),
        RefreshOutcome::Renewed { requests: 1 }
    );
}

#[tokio::test]
async fn refresh_terminates_session_revoked_by_operator() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let data_dir = server.server.tls.cert.parent().unwrap();
    let token = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)).unwrap();

    let revoke = http(&server)
        .post(format!(
            "{}{}",
            server.url(),
            routes::with_id(routes::ADMIN_SESSION_REVOKE, &id)
        ))
        .header(AUTHORIZATION, format!("Bearer {}", token.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);

    let proof = client
        .refresh_proof(client.challenge.as_deref().unwrap())
        .unwrap();
    assert_terminated(post_refresh(&server, &id, Some(&proof)).await, &id).await;
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);
}

#[tokio::test]
async fn refresh_terminates_session_revoked_in_store() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Rs256).await;
    let id = session_id(&client);
    let current = server.store().find_session(&id).unwrap().unwrap();
    let revoked = devbound::dbsc::end_session(
        &current.record,
        SessionState::Revoked {
            at: server.server.state.clock.now(),
            by: "operator".into(),
        },
    );
    assert_eq!(
        server.store().update_session(&current, &revoked).unwrap(),
        Update::Applied
    );

    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);
    assert_cookie_refused(&server, &client.cookie_header()).await;
}

#[tokio::test]
async fn refresh_terminates_signed_out_session() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let cookie = client.cookie_header();

    let logout = client.post(routes::LOGOUT).await.unwrap();
    assert!(logout.status().is_redirection());

    assert!(matches!(
        stored(&server, &id).state,
        SessionState::SignedOut { .. }
    ));
    assert_cookie_refused(&server, &cookie).await;
    assert_terminated(post_refresh(&server, &id, None).await, &id).await;
}

#[tokio::test]
async fn refresh_terminates_expired_session() {
    let server = TestServer::default_manual().await;
    let session_ttl = server.server.state.policy.session_ttl;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;

    server.advance(session_ttl - 1);
    assert!(matches!(
        client.refresh().await.unwrap(),
        RefreshOutcome::Renewed { .. }
    ));

    server.advance(1);
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);
    assert_cookie_refused(&server, &client.cookie_header()).await;
}

/// A refresh is verified only with the key stored at registration, so a proof that brings its
/// own key is rejected even when it is validly signed by that key.
#[tokio::test]
async fn refresh_rejects_jwk_header() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let mut client = server.bound_client(&format!("user-{alg}"), alg).await;
        let id = session_id(&client);
        let attacker = generate_key(alg);
        let own_jwk = client.key().public_jwk();

        for (signer, jwk) in [(&attacker, attacker.public_jwk()), (client.key(), own_jwk)] {
            let before = stored(&server, &id);
            let header = json!({ "alg": alg.name(), "typ": PROOF_TYPE, "jwk": jwk });
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            let proof = sign(signer, &header, &claims);

            let response = post_refresh(&server, &id, Some(&proof)).await;

            assert_refresh_rejected(&server, &response, &before);
        }
        let key = stored(&server, &id).key.unwrap();
        assert_eq!(
            key.jwk,
            Jwk::from_value(&client.key().public_jwk()).unwrap()
        );
        // The rejected proofs did not replace the challenge the client cached.
        assert_eq!(
            client.refresh().await.unwrap(),
            RefreshOutcome::Renewed { requests: 1 }
        );
    }
}

#[tokio::test]
async fn refresh_rejects_proof_by_other_key() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let client = server.bound_client(&format!("user-{alg}"), alg).await;
        let id = session_id(&client);
        for other_alg in ALGORITHMS {
            let before = stored(&server, &id);
            let other = generate_key(other_alg);
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            let proof = sign(&other, &refresh_header(client.key()), &claims);

            let response = post_refresh(&server, &id, Some(&proof)).await;

            assert_refresh_rejected(&server, &response, &before);
        }
    }
}

#[tokio::test]
async fn refresh_rejects_replayed_proof() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let client = server.bound_client(&format!("user-{alg}"), alg).await;
        let id = session_id(&client);
        let proof = client
            .refresh_proof(client.challenge.as_deref().unwrap())
            .unwrap();
        let first = post_refresh(&server, &id, Some(&proof)).await;
        assert_eq!(first.status(), StatusCode::OK);

        let before = stored(&server, &id);
        let replay = post_refresh(&server, &id, Some(&proof)).await;

        assert_refresh_rejected(&server, &replay, &before);
    }
}

// Several worker threads, so that the server handles the requests in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_accepts_one_of_concurrent_identical_proofs() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let proof = client
        .refresh_proof(client.challenge.as_deref().unwrap())
        .unwrap();

    let attempts = (0..6).map(|_| post_refresh(&server, &id, Some(&proof)));
    let statuses: Vec<StatusCode> = join_all(attempts)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();

    let renewed = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert_eq!(renewed, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::OK || *status == StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    assert_eq!(stored(&server, &id).refresh_count, 1);
}

#[tokio::test]
async fn refresh_rejects_stale_challenge() {
    let server = TestServer::default_manual().await;
    let challenge_ttl = server.server.state.policy.challenge_ttl;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);

    let challenge = assert_challenged(&post_refresh(&server, &id, None).await, &id);
    server.advance(challenge_ttl - 1);
    let proof = client.refresh_proof(&challenge).unwrap();
    assert_eq!(
        post_refresh(&server, &id, Some(&proof)).await.status(),
        StatusCode::OK
    );

    // The challenge sent ahead with the renewed cookie lives as long as the cookie.
    let challenge = assert_challenged(&post_refresh(&server, &id, None).await, &id);
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    server.advance(challenge_ttl.max(cookie_ttl));
    let before = stored(&server, &id);
    let proof = client.refresh_proof(&challenge).unwrap();
    let response = post_refresh(&server, &id, Some(&proof)).await;

    assert_refresh_rejected(&server, &response, &before);
}

#[tokio::test]
async fn refresh_rejects_challenge_of_other_session() {
    let server = TestServer::default_manual().await;
    let alice = server.bound_client("alice", Algorithm::Es256).await;
    let bob = server.bound_client("bob", Algorithm::Es256).await;
    let pending = sign_in_pending(&server, "carol", Algorithm::Es256).await;
    let alice_id = session_id(&alice);
    let bob_id = session_id(&bob);

    for foreign in [
        outstanding_challenge(&server, &bob_id),
        pending.offer.challenge.clone(),
    ] {
        let before = stored(&server, &alice_id);
        let proof = alice.refresh_proof(&foreign).unwrap();
        let response = post_refresh(&server, &alice_id, Some(&proof)).await;
        assert_refresh_rejected(&server, &response, &before);
    }

    // Alice's key signing Bob's challenge for Bob's session.
    let before = stored(&server, &bob_id);
    let proof = alice
        .refresh_proof(&outstanding_challenge(&server, &bob_id))
        .unwrap();
    let response = post_refresh(&server, &bob_id, Some(&proof)).await;
    assert_refresh_rejected(&server, &response, &before);
}

/// Chromium adds `aud` only behind an optional feature; when present it must be the refresh
/// endpoint.
#[tokio::test]
async fn refresh_checks_audience_when_present() {
    let server = TestServer::default_manual().await;
    let policy = &server.server.state.policy;
    let client = server.bound_client("alice", Algorithm::Rs256).await;
    let id = session_id(&client);
    let header = refresh_header(client.key());

    for aud in [
        json!(policy.register_url()),
        json!(policy.origin),
        json!(""),
    ] {
        let before = stored(&server, &id);
        let claims = json!({ "jti": outstanding_challenge(&server, &id), "aud": aud });
        let response =
            post_refresh(&server, &id, Some(&sign(client.key(), &header, &claims))).await;
        assert_refresh_rejected(&server, &response, &before);
    }

    let claims = json!({ "jti": outstanding_challenge(&server, &id), "aud": policy.refresh_url() });
    let response = post_refresh(&server, &id, Some(&sign(client.key(), &header, &claims))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_cookie_requires_refresh() {
    let server = TestServer::default_manual().await;
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let old_cookie = client.cookie_header();

    server.advance(cookie_ttl - 1);
    assert_cookie_accepted(&server, &old_cookie).await;

    server.advance(1);
    assert_cookie_refused(&server, &old_cookie).await;

    assert!(matches!(
        client.refresh().await.unwrap(),
        RefreshOutcome::Renewed { .. }
    ));
    assert_cookie_accepted(&server, &client.cookie_header()).await;
    assert_cookie_refused(&server, &old_cookie).await;
}

#[tokio::test]
async fn copied_cookie_stops_working_after_ttl() {
    let server = TestServer::default_manual().await;
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    for alg in ALGORITHMS {
        let mut victim = server.bound_client(&format!("user-{alg}"), alg).await;
        let id = session_id(&victim);
        let stolen = victim.cookie_header();
        let thief = generate_key(alg);

        assert_cookie_accepted(&server, &stolen).await;
        server.advance(cookie_ttl);
        assert_cookie_refused(&server, &stolen).await;

        // Without the session key the thief cannot sign the challenge it receives.
        let challenge = assert_challenged(&post_refresh(&server, &id, None).await, &id);
        let before = stored(&server, &id);
        let proof = sign(
            &thief,
            &refresh_header(&thief),
            &json!({ "jti": challenge }),
        );
        let response = http(&server)
            .post(format!("{}{}", server.url(), routes::REFRESH))
            .header(headers::SESSION_ID, &id)
            .header(headers::RESPONSE, &proof)
            .header(COOKIE, &stolen)
            .send()
            .await
            .unwrap();
        assert_refresh_rejected(&server, &response, &before);
        assert_cookie_refused(&server, &stolen).await;

        assert!(matches!(
            victim.refresh().await.unwrap(),
            RefreshOutcome::Renewed { .. }
        ));
        assert_cookie_accepted(&server, &victim.cookie_header()).await;
        assert_cookie_refused(&server, &stolen).await;
    }
}

#[tokio::test]
async fn skipped_refresh_makes_request_unbound() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let cookie = client.cookie_header();
    let before = stored(&server, &id);

    let skipped = [
        format!("unreachable;session_identifier=\"{id}\""),
        format!("server_error;session_identifier=\"{id}\""),
        format!("quota_exceeded;session_identifier=\"{id}\""),
        "unreachable".to_owned(),
        "((".to_owned(),
    ];
    for value in &skipped {
        let extra = [(headers::SKIPPED, value.as_str())];
        let app = get_with(&server, routes::APP, &cookie, &extra).await;
        assert_redirects_to_login(&app);
        let api = get_with(&server, routes::API_SESSIONS, &cookie, &extra).await;
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "{value}");
    }

    assert_eq!(stored(&server, &id), before);
    assert_cookie_accepted(&server, &cookie).await;
}

#[tokio::test]
async fn refused_requests_leave_session_unchanged() {
    let server = TestServer::default_manual().await;
    let cookie_ttl = server.server.state.policy.cookie_ttl;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let cookie = client.cookie_header();
    let (name, value) = cookie.split_once('=').unwrap();
    let (_, credential) = value.split_once('.').unwrap();
    let before = stored(&server, &id);

    let forged = [
        format!("{name}={id}.AAAA"),
        format!("{name}={id}"),
        format!("{name}=.{credential}"),
        format!("{name}=unknown.{credential}"),
    ];
    for cookie in &forged {
        assert_cookie_refused(&server, cookie).await;
    }
    server.advance(cookie_ttl);
    assert_cookie_refused(&server, &cookie).await;

    assert_eq!(stored(&server, &id), before);
}
