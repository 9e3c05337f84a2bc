//! The gate on every agent token issuance, over HTTPS: each refused condition gets its RFC
//! error and is named in the audit log, and scope and audience only narrow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::client::{AgentClient, ExchangeParams, Poll};
use devbound::http::routes;
use reqwest::StatusCode;
use serde_json::Value;
use support::agents::{AgentWorld, act_chain, oauth_error};

const API_A: &str = "https://api-a.example";
const API_B: &str = "https://api-b.example";

/// Asserts a refused token request: its status, RFC error code, and the condition the audit
/// log names for it.
async fn assert_refused(
    world: &AgentWorld,
    response: reqwest::Response,
    code: &str,
    condition: &str,
) {
    let (status, error) = oauth_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{condition}");
    assert_eq!(error, code, "{condition}");
    let entries = world.server.store().list_audit(0, 10_000).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.outcome, "refused");
    assert_eq!(last.detail, condition);
}

async fn exchange(
    agent: &AgentClient,
    subject: &str,
    audiences: &[&str],
    scope: Option<&str>,
) -> reqwest::Response {
    agent
        .exchange_response(&ExchangeParams {
            subject_token: subject,
            audiences,
            scope,
            ..ExchangeParams::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn stale_session_proof_is_refused_until_refreshed() {
    let world = AgentWorld::start().await;
    let mut agent = world
        .logged_in_agent("builder", &["repo.read"], &[API_A])
        .await;
    let grant = agent.grant_token.clone().unwrap();

    // The window is the cookie lifetime, 600 s by default.
    world.server.advance(601);
    let response = exchange(&agent, &grant, &[API_A], None).await;
    assert_refused(&world, response, "invalid_grant", "session_proof_stale").await;

    agent.refresh_session().await.unwrap();
    let response = exchange(&agent, &grant, &[API_A], None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn software_session_refused_when_tpm_required() {
    let world = AgentWorld::start().await;
    let id = world
        .register_agent("deployer", &["deploy"], &[API_A], "tpm")
        .await;
    let mut agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();
    assert_eq!(
        world.decide(&authorization.user_code, "approve").await,
        StatusCode::OK
    );

    let refused = agent.poll_login(&authorization).await.unwrap_err();
    assert!(refused.to_string().contains("invalid_grant"), "{refused}");
    let entries = world.server.store().list_audit(0, 10_000).unwrap();
    assert_eq!(entries.last().unwrap().detail, "assurance_too_low");
    assert!(agent.grant_token.is_none());
}

#[tokio::test]
async fn suspended_agent_is_refused_and_its_tokens_inactive() {
    let world = AgentWorld::start().await;
    let agent = world
        .logged_in_agent("scheduler", &["cal.read"], &[API_A])
        .await;
    let grant = agent.grant_token.clone().unwrap();
    let token = agent.token(&[API_A], None).await.unwrap();

    assert_eq!(
        world.set_agent_state(&agent.agent_id, "suspended").await,
        StatusCode::OK
    );
    let response = exchange(&agent, &grant, &[API_A], None).await;
    assert_refused(&world, response, "invalid_grant", "agent_suspended").await;
    assert_eq!(world.introspect(&token.access_token).await["active"], false);

    assert_eq!(
        world.set_agent_state(&agent.agent_id, "active").await,
        StatusCode::OK
    );
    assert_eq!(world.introspect(&token.access_token).await["active"], true);

    assert_eq!(
        world.set_agent_state(&agent.agent_id, "revoked").await,
        StatusCode::OK
    );
    let response = exchange(&agent, &grant, &[API_A], None).await;
    assert_refused(&world, response, "invalid_grant", "agent_revoked").await;
    assert_eq!(
        world.set_agent_state(&agent.agent_id, "active").await,
        StatusCode::CONFLICT,
        "a revoked agent came back"
    );
}

#[tokio::test]
async fn dpop_proof_from_another_key_is_refused() {
    let world = AgentWorld::start().await;
    let agent = world
        .logged_in_agent("copier", &["files.read"], &[API_A])
        .await;
    let grant = agent.grant_token.clone().unwrap();

    // Same agent id, another key: a thief holding the grant token but not the session key.
    let thief = world.agent_client(&agent.agent_id);
    let response = exchange(&thief, &grant, &[API_A], None).await;
    assert_refused(&world, response, "invalid_dpop_proof", "dpop_key_mismatch").await;
}

#[tokio::test]
async fn scope_and_audience_only_narrow() {
    let world = AgentWorld::start().await;
    let agent = world
        .logged_in_agent("narrow", &["files.read", "files.write"], &[API_A, API_B])
        .await;
    let grant = agent.grant_token.clone().unwrap();
    let subject = agent.token(&[API_A], Some("files.read")).await.unwrap();
    let subject = subject.access_token.as_str();

    // More scope than the subject token has is an error, never silently narrowed.
    let response = exchange(&agent, subject, &[API_A], Some("files.read files.write")).await;
    assert_refused(&world, response, "invalid_scope", "scope_widened").await;
    // An audience the subject token does not reach is invalid_target.
    let response = exchange(&agent, subject, &[API_B], Some("files.read")).await;
    assert_refused(&world, response, "invalid_target", "audience_widened").await;
    // An audience outside the registry entry, even from the grant token.
    let response = exchange(&agent, &grant, &["https://other.example"], None).await;
    assert_refused(&world, response, "invalid_target", "audience_widened").await;
    // A scope outside the registry entry, even from the grant token.
    let response = exchange(&agent, &grant, &[API_A], Some("admin")).await;
    assert_refused(&world, response, "invalid_scope", "scope_widened").await;

    // Trailing-slash rule: an empty path equals `/`; any other path must match exactly.
    let slash = format!("{API_A}/");
    let response = exchange(&agent, subject, &[&slash], Some("files.read")).await;
    assert_eq!(response.status(), StatusCode::OK, "empty path and / differ");
    let path = format!("{API_A}/files/");
    let response = exchange(&agent, subject, &[&path], Some("files.read")).await;
    assert_refused(&world, response, "invalid_target", "audience_widened").await;

    // No scope requested: at most the subject's scope.
    let response = exchange(&agent, subject, &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "files.read");
    let claims = world
        .introspect(body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["aud"], serde_json::json!([format!("{API_A}/")]));
}

#[tokio::test]
async fn may_act_is_enforced_and_chains_are_kept() {
    let world = AgentWorld::start().await;
    let lead = world
        .logged_in_agent("lead", &["files.read"], &[API_A])
        .await;
    let helper = world
        .logged_in_agent("helper", &["files.read"], &[API_A])
        .await;
    let other = world
        .logged_in_agent("other", &["files.read"], &[API_A])
        .await;
    let token = lead.token(&[API_A], None).await.unwrap().access_token;

    // Without may_act, another agent cannot act on the lead's token.
    let helper_grant = helper.grant_token.clone().unwrap();
    let params = ExchangeParams {
        subject_token: &token,
        actor_token: Some(&helper_grant),
        ..ExchangeParams::default()
    };
    let response = helper.exchange_response(&params).await.unwrap();
    assert_refused(&world, response, "invalid_grant", "actor_not_permitted").await;

    let handoff = lead
        .exchange(&ExchangeParams {
            subject_token: &token,
            may_act: Some(&helper.agent_id),
            ..ExchangeParams::default()
        })
        .await
        .unwrap()
        .access_token;

    // may_act names the helper: the lead itself, with no actor token, may not use it.
    let response = exchange(&lead, &handoff, &[], None).await;
    assert_refused(&world, response, "invalid_grant", "may_act_mismatch").await;
    // Nor may a third agent with its own actor token.
    let other_grant = other.grant_token.clone().unwrap();
    let response = other
        .exchange_response(&ExchangeParams {
            subject_token: &handoff,
            actor_token: Some(&other_grant),
            ..ExchangeParams::default()
        })
        .await
        .unwrap();
    assert_refused(&world, response, "invalid_grant", "may_act_mismatch").await;

    // The helper may; its token nests the lead under it.
    let delegated = helper
        .exchange(&ExchangeParams {
            subject_token: &handoff,
            actor_token: Some(&helper_grant),
            ..ExchangeParams::default()
        })
        .await
        .unwrap()
        .access_token;
    let claims = world.introspect(&delegated).await;
    let expected = vec![helper.agent_id.clone(), lead.agent_id.clone()];
    assert_eq!(act_chain(&claims), expected);

    // Re-exchanging the delegated token keeps its chain.
    let again = exchange(&helper, &delegated, &[], None).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    let claims = world
        .introspect(again["access_token"].as_str().unwrap())
        .await;
    assert_eq!(act_chain(&claims), expected);
}

#[tokio::test]
async fn revoked_token_and_its_descendants_are_inactive() {
    let world = AgentWorld::start().await;
    let agent = world
        .logged_in_agent("archiver", &["files.read"], &[API_A])
        .await;
    let parent = agent.token(&[API_A], None).await.unwrap().access_token;
    let child = exchange(&agent, &parent, &[], None).await;
    let child: Value = child.json().await.unwrap();
    let child = child["access_token"].as_str().unwrap().to_owned();

    let revoked = world
        .http()
        .post(world.url(routes::OAUTH_REVOKE))
        .form(&[("token", parent.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(world.introspect(&parent).await["active"], false);
    assert_eq!(world.introspect(&child).await["active"], false);

    // RFC 7009 §2.2: an unknown token is still a 200.
    let unknown = world
        .http()
        .post(world.url(routes::OAUTH_REVOKE))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::OK);

    let response = exchange(&agent, &parent, &[], None).await;
    assert_refused(&world, response, "invalid_grant", "token_revoked").await;
}

#[tokio::test]
async fn device_poll_with_another_key_is_refused() {
    let world = AgentWorld::start().await;
    let id = world
        .register_agent("poller", &["x"], &[API_A], "software")
        .await;
    let mut agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();
    assert_eq!(
        world.decide(&authorization.user_code, "approve").await,
        StatusCode::OK
    );

    let mut thief = world.agent_client(&id);
    let refused = thief.poll_login(&authorization).await.unwrap_err();
    assert!(
        refused.to_string().contains("invalid_dpop_proof"),
        "{refused}"
    );
    // The rightful agent still gets its token, once.
    assert!(matches!(
        agent.poll_login(&authorization).await.unwrap(),
        Poll::Issued(_)
    ));
    let spent = agent.poll_login(&authorization).await.unwrap_err();
    assert!(spent.to_string().contains("invalid_grant"), "{spent}");
}

#[tokio::test]
async fn another_owner_cannot_approve_or_see_agents() {
    let world = AgentWorld::start().await;
    let id = world
        .register_agent("private", &["x"], &[API_A], "software")
        .await;
    let agent = world.agent_client(&id);
    let authorization = agent.start_login(None).await.unwrap();

    let mallory = world
        .server
        .bound_client("mallory", devbound::crypto::Algorithm::Es256)
        .await;
    let response = world
        .http()
        .post(world.url(routes::DEVICE))
        .header(reqwest::header::COOKIE, mallory.cookie_header())
        .form(&[
            ("user_code", authorization.user_code.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let listed: Value = world
        .http()
        .get(world.url(routes::API_AGENTS))
        .header(reqwest::header::COOKIE, mallory.cookie_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["agents"], serde_json::json!([]));
}
