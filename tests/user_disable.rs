//! Disabling a user, over HTTPS: the user's sessions end at once, no new sign-in or
//! registration succeeds, the user's agents get no tokens, and other users are unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::{ClientError, RefreshOutcome};
use devbound::crypto::Algorithm;
use devbound::http::{ADMIN_TOKEN_FILE, routes};
use devbound::store::SessionState;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::Value;
use support::agents::{AgentWorld, OWNER};
use support::dbsc::{http, sign_in_pending, stored};
use support::server::{PASSWORD, TestServer};

const API_A: &str = "https://api-a.example";

/// Calls `POST /admin/users/{name}/disable` or `.../enable`; returns the status and body.
async fn change_user(server: &TestServer, route: &str, name: &str) -> (StatusCode, Value) {
    let data_dir = server.server.tls.cert.parent().unwrap();
    let token = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)).unwrap();
    let response = http(server)
        .post(format!("{}{}", server.url(), routes::with_id(route, name)))
        .header(AUTHORIZATION, format!("Bearer {}", token.trim()))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

fn audit_actions(server: &TestServer) -> Vec<String> {
    let entries = server.store().list_audit(0, 10_000).unwrap();
    entries.into_iter().map(|entry| entry.action).collect()
}

#[tokio::test]
async fn disabled_user_sessions_end_and_sign_in_fails() {
    let server = TestServer::default_manual().await;
    let mut alice = server.bound_client("alice", Algorithm::Es256).await;
    let mut bob = server.bound_client("bob", Algorithm::Es256).await;
    let alice_session = alice.session_id.clone().unwrap();

    let (status, body) = change_user(&server, routes::ADMIN_USER_DISABLE, "alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ended_sessions"], 1);
    assert!(body["user"]["disabled_at"].is_u64(), "{body}");

    // The cookie is refused at once and the next refresh ends the session in the client.
    assert_eq!(alice.get(routes::APP).await.unwrap().status(), 303);
    assert_eq!(alice.refresh().await.unwrap(), RefreshOutcome::Terminated);
    assert!(matches!(
        stored(&server, &alice_session).state,
        SessionState::Revoked { .. }
    ));

    let mut again = server.client(Algorithm::Es256);
    match again.sign_in("alice", PASSWORD).await {
        Err(ClientError::Status { status, body }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(body.contains("disabled"), "{body}");
        }
        other => panic!("disabled user signed in: {other:?}"),
    }
    // A wrong password does not reveal that the account is disabled.
    match again.sign_in("alice", "not the password").await {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => panic!("wrong password signed in: {other:?}"),
    }

    assert_eq!(
        bob.refresh().await.unwrap(),
        RefreshOutcome::Renewed { requests: 1 }
    );
    assert!(audit_actions(&server).contains(&"user.disable".to_owned()));
}

#[tokio::test]
async fn enabled_user_signs_in_again() {
    let server = TestServer::default_manual().await;
    let mut first = server.bound_client("carol", Algorithm::Rs256).await;
    assert_eq!(
        change_user(&server, routes::ADMIN_USER_DISABLE, "carol")
            .await
            .0,
        StatusCode::OK
    );

    let (status, body) = change_user(&server, routes::ADMIN_USER_ENABLE, "carol").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["user"].get("disabled_at").is_none(), "{body}");
    assert_eq!(first.refresh().await.unwrap(), RefreshOutcome::Terminated);
    let mut second = server.client(Algorithm::Es256);
    second
        .sign_in_and_register("carol", PASSWORD)
        .await
        .unwrap();
    assert_eq!(second.get(routes::APP).await.unwrap().status(), 200);
    assert!(audit_actions(&server).contains(&"user.enable".to_owned()));
}

#[tokio::test]
async fn unknown_user_is_not_found() {
    let server = TestServer::default_manual().await;

    let (status, body) = change_user(&server, routes::ADMIN_USER_DISABLE, "nobody").await;

    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// A sign-in that checked the password just before the user was disabled leaves a pending
/// session that the sweep missed. Its registration must still fail.
#[tokio::test]
async fn registration_after_disable_is_rejected() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "dave", Algorithm::Es256).await;
    let mut user = server.store().find_user_by_name("dave").unwrap().unwrap();
    user.disabled_at = Some(server.server.state.clock.now());
    server.store().update_user(&user).unwrap();

    let response = pending
        .register(&pending.proof(&support::dbsc::registration_claims(&pending.offer)))
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_session");
    // Enabling the user again must not let this session bind.
    assert!(matches!(
        stored(&server, &pending.session_id).state,
        SessionState::Revoked { .. }
    ));
    let challenge = server.store().find_challenge(&pending.offer.challenge);
    assert!(challenge.unwrap().is_none());
}

#[tokio::test]
async fn disabled_owner_grant_poll_creates_no_session() {
    let world = AgentWorld::start().await;
    let id = world
        .register_agent("poller", &["repo.read"], &[API_A], "software")
        .await;
    let mut agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();
    let approved = world.decide(&authorization.user_code, "approve").await;
    assert_eq!(approved, StatusCode::OK);
    let store = world.server.store();
    let owner = store.find_user_by_name(OWNER).unwrap().unwrap();
    let sessions_before = store.list_sessions(Some(&owner.id)).unwrap().len();

    let (status, _) = change_user(&world.server, routes::ADMIN_USER_DISABLE, OWNER).await;
    assert_eq!(status, StatusCode::OK);
    let polled = agent.poll_login(&authorization).await;

    assert!(polled.is_err(), "{polled:?}");
    let sessions_after = store.list_sessions(Some(&owner.id)).unwrap().len();
    assert_eq!(sessions_after, sessions_before);
}

#[tokio::test]
async fn disabled_owner_agent_gets_no_token() {
    let world = AgentWorld::start().await;
    let agent = world
        .logged_in_agent("builder", &["repo.read"], &[API_A])
        .await;
    let token = agent.token(&[API_A], None).await.unwrap();
    assert_eq!(world.introspect(&token.access_token).await["active"], true);

    let (status, _) = change_user(&world.server, routes::ADMIN_USER_DISABLE, OWNER).await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(world.introspect(&token.access_token).await["active"], false);
    assert!(agent.token(&[API_A], None).await.is_err());
}
