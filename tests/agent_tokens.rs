//! Agent tokens end to end over HTTPS: the owner registers agents and approves their device
//! grants, agents exchange tokens and call the example API, a sub-agent acts on a handed-off
//! token, and revocation stops both at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::ExchangeParams;
use devbound::http::routes;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::Value;
use support::agents::{AgentWorld, act_chain};
use support::passkeys;
use support::webauthn::Attestation;

#[tokio::test]
async fn owner_to_agent_to_sub_agent_and_revocation() {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let owner_id = world
        .server
        .store()
        .find_user_by_name(support::agents::OWNER)
        .unwrap()
        .unwrap()
        .id;

    // The owner registers a planner agent and a sub-agent that may only read.
    let planner = world
        .logged_in_agent("planner", &["files.read", "files.write"], &[&api])
        .await;
    let mut reader = world
        .logged_in_agent("reader", &["files.read"], &[&api])
        .await;

    // The planner gets a token for the API and calls it.
    let token = planner
        .token(&[&api], Some("files.read files.write"))
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    let (status, body) = world.call_tool(&planner, &token.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sub"], owner_id.as_str());
    assert_eq!(act_chain(&body), vec![planner.agent_id.clone()]);

    // The planner hands read access to the reader: a token that only the reader may act on.
    let handoff = planner
        .exchange(&ExchangeParams {
            subject_token: &token.access_token,
            audiences: &[&api],
            scope: Some("files.read"),
            may_act: Some(&reader.agent_id),
            ..ExchangeParams::default()
        })
        .await
        .unwrap();
    let reader_grant = reader.grant_token.clone().unwrap();
    let delegated = reader
        .exchange(&ExchangeParams {
            subject_token: &handoff.access_token,
            actor_token: Some(&reader_grant),
            audiences: &[&api],
            scope: Some("files.read"),
            ..ExchangeParams::default()
        })
        .await
        .unwrap();
    let (status, body) = world.call_tool(&reader, &delegated.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        act_chain(&body),
        vec![reader.agent_id.clone(), planner.agent_id.clone()]
    );
    assert_eq!(body["scope"], "files.read");

    // The owner revokes the planner's session (its software device): on the next request
    // both the planner and the reader, whose token descends from it, are refused.
    let planner_session = planner.session_id.clone().unwrap();
    let revoked = world
        .http()
        .delete(world.url(&routes::with_id(routes::API_SESSION, &planner_session)))
        .header(COOKIE, world.owner.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);

    let (status, _) = world.call_tool(&planner, &token.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "planner still accepted");
    let (status, _) = world.call_tool(&reader, &delegated.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "reader still accepted");
    let refused = planner.token(&[&api], Some("files.read")).await;
    assert!(refused.is_err(), "planner still gets tokens");

    // The reader's own grant is untouched: it can still get tokens of its own.
    reader.refresh_session().await.unwrap();
    let own = reader.token(&[&api], Some("files.read")).await.unwrap();
    let (status, _) = world.call_tool(&reader, &own.access_token).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn introspection_reports_act_and_cnf() {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let agent = world
        .logged_in_agent("indexer", &["files.read"], &[&api])
        .await;
    let token = agent.token(&[&api], None).await.unwrap();

    let claims: Value = world.introspect(&token.access_token).await;
    assert_eq!(claims["active"], true);
    assert_eq!(act_chain(&claims), vec![agent.agent_id.clone()]);
    assert!(
        claims["cnf"]["jkt"]
            .as_str()
            .is_some_and(|jkt| !jkt.is_empty())
    );
    assert_eq!(claims["acr"], "software");
    assert_eq!(claims["scope"], "files.read");
    assert_eq!(claims["client_id"], agent.agent_id.as_str());
}

#[tokio::test]
async fn device_grant_pending_then_denied() {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let id = world
        .register_agent("mailer", &["mail.send"], &[&api], "software")
        .await;
    let mut agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();

    let first = agent.poll_login(&authorization).await.unwrap();
    assert!(matches!(
        first,
        devbound::client::Poll::Wait { slow_down: false }
    ));
    let second = agent.poll_login(&authorization).await.unwrap();
    assert!(matches!(
        second,
        devbound::client::Poll::Wait { slow_down: true }
    ));

    assert_eq!(
        world.decide(&authorization.user_code, "deny").await,
        StatusCode::OK
    );
    world.server.advance(30);
    let denied = agent.poll_login(&authorization).await.unwrap_err();
    assert!(denied.to_string().contains("access_denied"), "{denied}");
}

#[tokio::test]
async fn owner_with_passkey_steps_up_before_approving() {
    let world = AgentWorld::start().await;
    let mut authenticator = passkeys::authenticator(&world.server, support::agents::OWNER, [7; 16]);
    let (status, body) = passkeys::register(
        &world.server,
        &world.owner,
        &authenticator,
        &Attestation::None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "passkey registration: {body}");
    let max_age = world.server.server.state.passkeys.settings.step_up_max_age;
    world.server.advance(max_age + 1);

    let api = world.api.origin.clone();
    let id = world
        .register_agent("stepper", &["files.read"], &[&api], "software")
        .await;
    let mut agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();

    // Without a recent passkey proof the approval goes to the step-up page and changes nothing.
    let refused = world
        .http()
        .post(world.url(routes::DEVICE))
        .header(COOKIE, world.owner.cookie_header())
        .form(&[
            ("user_code", authorization.user_code.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    let location = refused.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(routes::STEP_UP), "{location}");
    let pending = agent.poll_login(&authorization).await.unwrap();
    assert!(matches!(pending, devbound::client::Poll::Wait { .. }));

    let return_to = format!("{}?user_code={}", routes::DEVICE, authorization.user_code);
    let (status, body) =
        passkeys::step_up(&world.server, &world.owner, &mut authenticator, &return_to).await;
    assert_eq!(status, StatusCode::OK, "step-up: {body}");
    assert_eq!(
        world.decide(&authorization.user_code, "approve").await,
        StatusCode::OK
    );
    world.server.advance(10);
    let issued = agent.poll_login(&authorization).await.unwrap();
    assert!(matches!(issued, devbound::client::Poll::Issued(_)));
}
