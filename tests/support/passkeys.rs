//! Passkey ceremonies over HTTPS against a test server, driven by the software authenticator.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use devbound::client::DbscClient;
use devbound::crypto::Algorithm;
use devbound::dbsc::headers;
use devbound::http::routes;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

use super::dbsc::http;
use super::server::TestServer;
use super::webauthn::{Attestation, SoftAuthenticator};

/// POSTs JSON with the client's session cookie and returns the status and the JSON body.
pub async fn post_json(
    server: &TestServer,
    client: &DbscClient,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = http(server)
        .post(format!("{}{path}", server.url()))
        .header(COOKIE, client.cookie_header())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Creates a soft authenticator for the server's origin, with the user's handle set.
pub fn authenticator(server: &TestServer, user: &str, aaguid: [u8; 16]) -> SoftAuthenticator {
    let mut authenticator = SoftAuthenticator::new(server.url(), aaguid);
    let user = server.store().find_user_by_name(user).unwrap().unwrap();
    authenticator.user_handle = Some(user.id.into_bytes());
    authenticator
}

/// Runs a registration ceremony for the signed-in client; returns the status and JSON body of
/// the final request.
pub async fn register(
    server: &TestServer,
    client: &DbscClient,
    authenticator: &SoftAuthenticator,
    attestation: &Attestation,
) -> (StatusCode, Value) {
    let (status, options) = post_json(
        server,
        client,
        routes::PASSKEY_REGISTER_OPTIONS,
        &json!({ "name": "test key" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "registration options: {options}");
    let credential = authenticator.register(&options, attestation);
    let body = json!({ "ceremony": options["ceremony"], "credential": credential });
    post_json(server, client, routes::PASSKEY_REGISTER, &body).await
}

/// Starts a passkey sign-in and returns the ceremony options.
pub async fn sign_in_options(server: &TestServer) -> Value {
    let response = start_sign_in(server).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Posts a request for passkey sign-in options and returns the response, whatever its status.
pub async fn start_sign_in(server: &TestServer) -> reqwest::Response {
    http(server)
        .post(format!(
            "{}{}",
            server.url(),
            routes::PASSKEY_SIGN_IN_OPTIONS
        ))
        .json(&json!({ "conditional": false }))
        .send()
        .await
        .unwrap()
}

/// POSTs the sign-in form with a credential, as the page's script does.
pub async fn post_sign_in(
    server: &TestServer,
    ceremony: &Value,
    credential: &Value,
) -> reqwest::Response {
    http(server)
        .post(format!("{}{}", server.url(), routes::PASSKEY_SIGN_IN))
        .form(&[
            ("ceremony", ceremony.as_str().unwrap().to_owned()),
            ("credential", credential.to_string()),
        ])
        .send()
        .await
        .unwrap()
}

/// Signs in with the authenticator's passkey and registers a DBSC key for the new session.
pub async fn sign_in_bound(
    server: &TestServer,
    authenticator: &mut SoftAuthenticator,
) -> DbscClient {
    let options = sign_in_options(server).await;
    let credential = authenticator.assert(&options);
    let response = post_sign_in(server, &options["ceremony"], &credential).await;
    assert_eq!(response.status(), StatusCode::OK, "passkey sign-in refused");
    let offer = response
        .headers()
        .get(headers::REGISTRATION)
        .map(|value| {
            headers::parse_registration(value.as_bytes())
                .unwrap()
                .remove(0)
        })
        .expect("passkey sign-in offered no DBSC registration");
    let mut client = server.client(Algorithm::Es256);
    client.register(&offer).await.unwrap();
    client
}

/// Proves the session with the authenticator through the step-up endpoints.
pub async fn step_up(
    server: &TestServer,
    client: &DbscClient,
    authenticator: &mut SoftAuthenticator,
    return_to: &str,
) -> (StatusCode, Value) {
    let (status, options) = post_json(server, client, routes::STEP_UP_OPTIONS, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "step-up options: {options}");
    let credential = authenticator.assert(&options);
    let body = json!({ "ceremony": options["ceremony"], "credential": credential, "return_to": return_to });
    post_json(server, client, routes::STEP_UP, &body).await
}
