//! Sign-out ends the session on the server whatever state the cookie is in, and is not lost to
//! a refresh that runs at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::{DbscClient, RefreshOutcome};
use devbound::crypto::Algorithm;
use devbound::http::routes;
use futures_util::future::join;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use support::dbsc::{http, stored};
use support::server::TestServer;

async fn post_logout(server: &TestServer, cookie: &str, extra: Option<(&str, &str)>) -> StatusCode {
    let mut request = http(server)
        .post(format!("{}{}", server.url(), routes::LOGOUT))
        .header(COOKIE, cookie);
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status()
}

fn session_id(client: &DbscClient) -> String {
    client.session_id.clone().unwrap()
}

#[tokio::test]
async fn sign_out_with_skipped_refresh_header() {
    let server = TestServer::default_manual().await;
    let mut client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    let skipped = format!(r#"unreachable;session_identifier="{id}""#);

    let status = post_logout(
        &server,
        &client.cookie_header(),
        Some(("secure-session-skipped", &skipped)),
    )
    .await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(stored(&server, &id).state_name(), "signed_out");
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);
}

#[tokio::test]
async fn sign_out_with_expired_cookie() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);
    server.advance(server.server.state.policy.cookie_ttl + 1);

    let status = post_logout(&server, &client.cookie_header(), None).await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(stored(&server, &id).state_name(), "signed_out");
}

#[tokio::test]
async fn sign_out_ignores_forged_credential() {
    let server = TestServer::default_manual().await;
    let client = server.bound_client("alice", Algorithm::Es256).await;
    let id = session_id(&client);

    let forged = format!("__Host-devbound={id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let status = post_logout(&server, &forged, None).await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(stored(&server, &id).state_name(), "bound");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_racing_refresh_is_not_lost() {
    let server = TestServer::default_manual().await;
    for round in 0..20 {
        let client = server
            .bound_client(&format!("user-{round}"), Algorithm::Es256)
            .await;
        let id = session_id(&client);
        let proof = client
            .refresh_proof(client.challenge.as_deref().unwrap())
            .unwrap();
        let cookie = client.cookie_header();

        let (refreshed, signed_out) = join(
            client.post_refresh(&id, Some(&proof)),
            post_logout(&server, &cookie, None),
        )
        .await;

        assert!(refreshed.is_ok());
        assert_eq!(signed_out, StatusCode::SEE_OTHER);
        assert_eq!(
            stored(&server, &id).state_name(),
            "signed_out",
            "round {round}"
        );
    }
}
