//! Authorization-server metadata, JWKS rotation, RFC 6749 error bodies, and the operator's
//! view of the agent registry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use devbound::http::{ADMIN_TOKEN_FILE, routes};
use devbound::oauth;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use support::agents::{AgentWorld, OWNER, oauth_error};

fn admin_token(world: &AgentWorld) -> String {
    let data_dir = world.server.server.tls.cert.parent().unwrap();
    let token = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)).unwrap();
    format!("Bearer {}", token.trim())
}

async fn get_json(world: &AgentWorld, path: &str) -> Value {
    let response = world.http().get(world.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn metadata_names_every_endpoint_from_routes() {
    let world = AgentWorld::start().await;
    let metadata = get_json(&world, routes::OAUTH_METADATA).await;

    assert_eq!(metadata["issuer"], world.server.url());
    for (member, path) in [
        ("token_endpoint", routes::OAUTH_TOKEN),
        (
            "device_authorization_endpoint",
            routes::OAUTH_DEVICE_AUTHORIZATION,
        ),
        ("introspection_endpoint", routes::OAUTH_INTROSPECT),
        ("revocation_endpoint", routes::OAUTH_REVOKE),
        ("jwks_uri", routes::OAUTH_JWKS),
    ] {
        assert_eq!(metadata[member], world.url(path), "{member}");
    }
    assert_eq!(
        metadata["grant_types_supported"],
        json!([oauth::GRANT_TOKEN_EXCHANGE, oauth::GRANT_DEVICE_CODE])
    );
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
}

#[tokio::test]
async fn token_errors_are_rfc6749_json() {
    let world = AgentWorld::start().await;
    let token_url = world.url(routes::OAUTH_TOKEN);
    let post =
        |form: Vec<(&'static str, &'static str)>| world.http().post(&token_url).form(&form).send();

    let response = post(vec![("grant_type", "password")]).await.unwrap();
    assert_eq!(
        oauth_error(response).await,
        (StatusCode::BAD_REQUEST, "unsupported_grant_type".to_owned())
    );
    let response = post(vec![]).await.unwrap();
    assert_eq!(oauth_error(response).await.1, "invalid_request");
    let response = post(vec![
        ("grant_type", oauth::GRANT_TOKEN_EXCHANGE),
        ("grant_type", oauth::GRANT_TOKEN_EXCHANGE),
    ])
    .await
    .unwrap();
    assert_eq!(oauth_error(response).await.1, "invalid_request");

    let json_body = world
        .http()
        .post(&token_url)
        .json(&json!({ "grant_type": oauth::GRANT_TOKEN_EXCHANGE }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.headers()["cache-control"], "no-store");
    assert_eq!(oauth_error(json_body).await.1, "invalid_request");
}

#[tokio::test]
async fn token_types_other_than_access_tokens_are_rejected() {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let agent = world.logged_in_agent("typed", &["x"], &[&api]).await;
    let grant = agent.grant_token.clone().unwrap();
    let url = world.url(routes::OAUTH_TOKEN);

    for (name, value) in [
        ("subject_token_type", oauth::TOKEN_TYPE_ID_TOKEN),
        ("subject_token_type", oauth::TOKEN_TYPE_REFRESH_TOKEN),
        ("subject_token_type", "urn:example:unknown"),
        ("requested_token_type", oauth::TOKEN_TYPE_ID_TOKEN),
        ("actor_token_type", oauth::TOKEN_TYPE_ACCESS_TOKEN),
    ] {
        let mut form = vec![
            ("grant_type", oauth::GRANT_TOKEN_EXCHANGE),
            ("subject_token", grant.as_str()),
        ];
        if name != "subject_token_type" {
            form.push(("subject_token_type", oauth::TOKEN_TYPE_ACCESS_TOKEN));
        }
        form.push((name, value));
        let proof = agent.dpop_proof("POST", &url, None).unwrap();
        let response = world
            .http()
            .post(&url)
            .header("DPoP", proof)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            oauth_error(response).await.1,
            "invalid_request",
            "{name} {value}"
        );
    }
}

#[tokio::test]
async fn rotated_key_stays_published_until_its_tokens_expire() {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let agent = world.logged_in_agent("rotator", &["x"], &[&api]).await;
    let before = agent.token(&[&api], None).await.unwrap().access_token;

    let rotated = world
        .http()
        .post(world.url(routes::ADMIN_KEYS_ROTATE))
        .header(AUTHORIZATION, admin_token(&world))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_kid = rotated.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();

    let jwks = get_json(&world, routes::OAUTH_JWKS).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let after = agent.token(&[&api], None).await.unwrap().access_token;
    let header: Value = serde_json::from_slice(
        &devbound::crypto::base64url::decode(after.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());

    // Both verify at the example API, which fetches the JWKS again for the new kid.
    assert_eq!(world.call_tool(&agent, &before).await.0, StatusCode::OK);
    assert_eq!(world.call_tool(&agent, &after).await.0, StatusCode::OK);

    // After the longest token lifetime the old key is gone.
    world.server.advance(oauth::GRANT_TOKEN_TTL);
    let jwks = get_json(&world, routes::OAUTH_JWKS).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![new_kid.as_str()]);
}

#[tokio::test]
async fn operator_lists_agents_and_changes_are_recorded() {
    let world = AgentWorld::start().await;
    let id = world
        .register_agent("observer", &["x"], &["https://a.example"], "software")
        .await;
    assert_eq!(
        world.set_agent_state(&id, "suspended").await,
        StatusCode::OK
    );

    let listed = world
        .http()
        .get(world.url(routes::ADMIN_AGENTS))
        .header(AUTHORIZATION, admin_token(&world))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["agents"][0]["agent"]["id"], id.as_str());
    assert_eq!(listed["agents"][0]["owner_name"], OWNER);
    assert_eq!(listed["agents"][0]["agent"]["state"], "suspended");

    let owner_id = world
        .server
        .store()
        .find_user_by_name(OWNER)
        .unwrap()
        .unwrap()
        .id;
    let changes = world.server.store().list_agent_changes(&id).unwrap();
    let actions: Vec<(&str, &str)> = changes
        .iter()
        .map(|change| (change.action.as_str(), change.by.as_str()))
        .collect();
    let by = format!("user:{owner_id}");
    assert_eq!(
        actions,
        vec![("created", by.as_str()), ("suspended", by.as_str())]
    );
    let audit = world.server.store().list_audit(0, 1000).unwrap();
    assert!(audit.iter().any(|entry| entry.action == "agent.suspend"
        && entry.target == format!("agent:{id}")
        && entry.actor == by));

    // The operator resumes it; the change names the operator.
    let resumed = world
        .http()
        .post(world.url(&routes::with_id(routes::ADMIN_AGENT_STATE, &id)))
        .header(AUTHORIZATION, admin_token(&world))
        .json(&json!({ "state": "active" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let last = world
        .server
        .store()
        .list_agent_changes(&id)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.action.as_str(), last.by.as_str()),
        ("resumed", "operator")
    );
}

#[tokio::test]
async fn agents_page_lists_and_registers() {
    let world = AgentWorld::start().await;
    let cookie = world.owner.cookie_header();
    let created = world
        .http()
        .post(world.url(routes::AGENTS))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("name", "paged"),
            ("audiences", "https://a.example https://b.example"),
            ("scopes", "x y"),
            ("required_assurance", "tpm"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let page = world
        .http()
        .get(world.url(routes::AGENTS))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("paged"), "{page}");
    assert!(page.contains("https://b.example/"), "{page}");

    let invalid = world
        .http()
        .post(world.url(routes::AGENTS))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("name", "bad name"),
            ("audiences", "http://a.example"),
            ("scopes", "x"),
            ("required_assurance", "tpm"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
}
