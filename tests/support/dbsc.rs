//! Helpers for the DBSC and JOSE integration tests: proofs built by hand, raw requests, and
//! checks of what the server stored.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use devbound::client::{DbscClient, SessionKey, https_client, sign_jws};
use devbound::crypto::{Algorithm, base64url};
use devbound::dbsc::headers::{self, RegistrationOffer};
use devbound::dbsc::proof::PROOF_TYPE;
use devbound::http::routes;
use devbound::store::SessionRecord;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::server::{PASSWORD, TestServer};

/// Both algorithms DBSC offers, for tests that must hold for each.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];

/// Assembles a compact JWS from a header, claims and any signature bytes.
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string()),
        base64url::encode(signature)
    )
}

/// Signs a compact JWS over `header` and `claims` with `key`, whatever `alg` the header names.
pub fn sign(key: &SessionKey, header: &Value, claims: &Value) -> String {
    sign_jws(key, header, claims).unwrap()
}

/// Decodes the signature part of a compact JWS.
pub fn signature_of(token: &str) -> Vec<u8> {
    let encoded = token.rsplit('.').next().unwrap();
    base64url::decode(encoded).unwrap()
}

/// Replaces the signature of a compact JWS with `signature`.
pub fn with_signature(token: &str, signature: &[u8]) -> String {
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    format!("{signing_input}.{}", base64url::encode(signature))
}

/// Builds an HS256 JWS whose HMAC key is `secret`.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", base64url::encode(tag.as_ref()))
}

/// Lists encodings of `key`'s public half that an algorithm-confusion attack uses as an HMAC key:
/// the JWK JSON, and the raw key (the SEC 1 point, or the PKCS #1 RSAPublicKey DER).
pub fn public_key_bytes(key: &SessionKey) -> Vec<Vec<u8>> {
    use aws_lc_rs::signature::KeyPair;

    let raw = match key {
        SessionKey::Es256(signing) => signing
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
        SessionKey::Rs256(pair) => pair.public_key().as_ref().to_vec(),
    };
    vec![key.public_jwk().to_string().into_bytes(), raw]
}

/// Builds the header of a registration proof as Chromium 156 does.
pub fn registration_header(key: &SessionKey) -> Value {
    json!({ "alg": key.algorithm().name(), "typ": PROOF_TYPE, "jwk": key.public_jwk() })
}

/// Builds the header of a refresh proof as Chromium 156 does.
pub fn refresh_header(key: &SessionKey) -> Value {
    json!({ "alg": key.algorithm().name(), "typ": PROOF_TYPE })
}

/// Builds the claims of a registration proof with the challenge and authorization of `offer`.
pub fn registration_claims(offer: &RegistrationOffer) -> Value {
    json!({ "jti": offer.challenge, "authorization": offer.authorization })
}

pub fn generate_key(alg: Algorithm) -> SessionKey {
    SessionKey::generate(alg).unwrap()
}

/// Builds an HTTPS client that trusts the test server and keeps no cookies.
pub fn http(server: &TestServer) -> reqwest::Client {
    https_client(&server.cert_pem).unwrap()
}

/// A user signed in with a password whose registration is offered but not yet done.
pub struct Pending {
    pub client: DbscClient,
    pub offer: RegistrationOffer,
    pub user_id: String,
    pub session_id: String,
    /// The pending session as stored right after sign-in.
    pub record: SessionRecord,
}

/// Creates user `name` and signs in with a client holding a new `alg` key.
pub async fn sign_in_pending(server: &TestServer, name: &str, alg: Algorithm) -> Pending {
    server.add_user(name);
    sign_in_again(server, name, alg).await
}

/// Signs in as an existing user `name` from a new client with a new `alg` key.
pub async fn sign_in_again(server: &TestServer, name: &str, alg: Algorithm) -> Pending {
    let mut client = server.client(alg);
    let offer = client.sign_in(name, PASSWORD).await.unwrap();
    let challenge = server.store().find_challenge(&offer.challenge).unwrap();
    let session_id = challenge.expect("sign-in stored no challenge").session_id;
    let user = server.store().find_user_by_name(name).unwrap().unwrap();
    Pending {
        client,
        offer,
        user_id: user.id,
        record: stored(server, &session_id),
        session_id,
    }
}

impl Pending {
    /// POSTs `proof` to the offered registration path.
    pub async fn register(&self, proof: &str) -> Response {
        self.client
            .post_register(&self.offer.path, proof)
            .await
            .unwrap()
    }

    /// Signs a registration proof over `claims` with this client's key.
    pub fn proof(&self, claims: &Value) -> String {
        let key = self.client.key();
        sign(key, &registration_header(key), claims)
    }
}

/// Reads the session record stored under `id`.
pub fn stored(server: &TestServer, id: &str) -> SessionRecord {
    let session = server.store().find_session(id).unwrap();
    session
        .unwrap_or_else(|| panic!("session {id} is not stored"))
        .record
}

/// Asserts that a registration got a 400 without a cookie, and that the pending
/// session and its challenge are stored as they were, so nothing was bound.
pub async fn assert_registration_rejected(
    server: &TestServer,
    pending: &Pending,
    response: Response,
) {
    let status = response.status();
    let sets_cookie = response.headers().contains_key(SET_COOKIE);
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "response body: {body}");
    assert!(!sets_cookie, "a rejected registration set a cookie");

    assert_eq!(
        stored(server, &pending.session_id),
        pending.record,
        "a rejected registration changed the pending session"
    );
    let challenge = server
        .store()
        .find_challenge(&pending.offer.challenge)
        .unwrap();
    assert!(
        challenge.is_some(),
        "a rejected registration consumed the challenge"
    );
    assert_no_bound_session(server, &pending.user_id);
}

/// Asserts that none of the user's sessions is bound to a key.
pub fn assert_no_bound_session(server: &TestServer, user_id: &str) {
    let sessions = server.store().list_sessions(Some(user_id)).unwrap();
    let bound: Vec<&str> = sessions
        .iter()
        .filter(|session| session.is_bound())
        .map(|session| session.id.as_str())
        .collect();
    assert!(bound.is_empty(), "sessions {bound:?} were bound");
}

/// Collects every `Set-Cookie` header value of a response.
pub fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

/// Parses the `(challenge, id)` pairs of a response's `Secure-Session-Challenge` header.
pub fn challenges(response: &Response) -> Vec<(String, Option<String>)> {
    match response.headers().get(headers::CHALLENGE) {
        Some(value) => headers::parse_challenges(value.as_bytes()).unwrap(),
        None => Vec::new(),
    }
}

/// Asserts that a refresh got a 403 with one new challenge for `session_id` and no
/// cookie, as Chromium needs in order to sign again, and returns the challenge.
pub fn assert_challenged(response: &Response, session_id: &str) -> String {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        set_cookies(response).is_empty(),
        "a refresh without a valid proof set a cookie"
    );
    let mut sent = challenges(response);
    assert_eq!(sent.len(), 1, "expected one challenge, got {sent:?}");
    let (challenge, id) = sent.remove(0);
    assert_eq!(
        id.as_deref(),
        Some(session_id),
        "challenge has the wrong `id`"
    );
    challenge
}

/// Copies `record` without its outstanding challenge, so that the rest can be compared.
pub fn without_challenge(record: &SessionRecord) -> SessionRecord {
    SessionRecord {
        challenge: None,
        ..record.clone()
    }
}

/// Asserts that a refused refresh proof got a new challenge and changed nothing else: the
/// stored key, credential and counters are those of `before`.
pub fn assert_refresh_rejected(server: &TestServer, response: &Response, before: &SessionRecord) {
    let challenge = assert_challenged(response, &before.id);
    let after = stored(server, &before.id);
    assert_eq!(
        without_challenge(&after),
        without_challenge(before),
        "a rejected refresh changed the stored session"
    );
    let outstanding = after.challenge.expect("no challenge is outstanding");
    assert_eq!(
        outstanding.value, challenge,
        "the stored challenge is not the one sent"
    );
}

/// Asserts that a refresh got a 200 with instructions that end `session_id`.
pub async fn assert_terminated(response: Response, session_id: &str) {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "session_identifier": session_id, "continue": false })
    );
}

/// GETs `path` with `cookie` and extra headers, from a client that keeps no state.
pub async fn get_with(
    server: &TestServer,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut request = http(server)
        .get(format!("{}{path}", server.url()))
        .header(COOKIE, cookie);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Asserts that a page request was redirected to the sign-in page.
pub fn assert_redirects_to_login(response: &Response) {
    assert!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    let location = response.headers().get(LOCATION).unwrap().to_str().unwrap();
    assert!(
        location.starts_with(routes::LOGIN),
        "redirected to {location}"
    );
}

/// Asserts that `/app` and `/api/sessions` accept the cookie.
pub async fn assert_cookie_accepted(server: &TestServer, cookie: &str) {
    let app = get_with(server, routes::APP, cookie, &[]).await;
    assert_eq!(app.status(), StatusCode::OK, "/app refused the cookie");
    let api = get_with(server, routes::API_SESSIONS, cookie, &[]).await;
    assert_eq!(
        api.status(),
        StatusCode::OK,
        "/api/sessions refused the cookie"
    );
}

/// Asserts that `/app` redirects a request with the cookie to sign in and `/api/sessions`
/// returns 401.
pub async fn assert_cookie_refused(server: &TestServer, cookie: &str) {
    let app = get_with(server, routes::APP, cookie, &[]).await;
    assert_redirects_to_login(&app);
    let api = get_with(server, routes::API_SESSIONS, cookie, &[]).await;
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "/api/sessions accepted the cookie"
    );
}

/// Returns the `name=value` pair at the start of a `Set-Cookie` value.
pub fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap().trim()
}

/// Joins the attributes of a `Set-Cookie` value that follow `name=value`, except `Max-Age`.
pub fn attributes_without_max_age(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|attribute| !attribute.to_ascii_lowercase().starts_with("max-age="))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Asserts that the session instructions name exactly the cookie set by `set_cookie`, with the
/// same Domain, Path, Secure, HttpOnly and SameSite. The attributes must not carry `Max-Age` or
/// `Partitioned`, because either makes Chromium reject the session.
pub fn assert_instructions_match_cookie(set_cookie: &str, instructions: &Value) {
    let credentials = instructions["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 1, "instructions: {instructions}");
    let credential = &credentials[0];
    assert_eq!(credential["type"], "cookie");

    let (name, _) = cookie_pair(set_cookie).split_once('=').unwrap();
    assert_eq!(credential["name"], name);
    let attributes = credential["attributes"].as_str().unwrap();
    assert_eq!(attributes, attributes_without_max_age(set_cookie));

    let lowercase = attributes.to_ascii_lowercase();
    assert!(!lowercase.contains("max-age"), "attributes: {attributes}");
    assert!(
        !lowercase.contains("partitioned"),
        "attributes: {attributes}"
    );
}

/// Reads the challenge the server expects next for session `id`.
pub fn outstanding_challenge(server: &TestServer, id: &str) -> String {
    let challenge = stored(server, id).challenge;
    challenge.expect("no challenge is outstanding").value
}

/// POSTs a refresh for session `id`, with `proof` if given, from a client that keeps no state.
pub async fn post_refresh(server: &TestServer, id: &str, proof: Option<&str>) -> Response {
    let mut request = http(server)
        .post(format!("{}{}", server.url(), routes::REFRESH))
        .header(headers::SESSION_ID, id);
    if let Some(proof) = proof {
        request = request.header(headers::RESPONSE, proof);
    }
    request.send().await.unwrap()
}

/// POSTs a refresh for session `id` whose `Secure-Session-Response` is any bytes.
pub async fn post_refresh_bytes(server: &TestServer, id: &str, proof: &[u8]) -> Response {
    let proof = reqwest::header::HeaderValue::from_bytes(proof).unwrap();
    http(server)
        .post(format!("{}{}", server.url(), routes::REFRESH))
        .header(headers::SESSION_ID, id)
        .header(headers::RESPONSE, proof)
        .send()
        .await
        .unwrap()
}

/// POSTs a registration whose `Secure-Session-Response` is any bytes.
pub async fn post_register_bytes(server: &TestServer, proof: &[u8]) -> Response {
    let proof = reqwest::header::HeaderValue::from_bytes(proof).unwrap();
    http(server)
        .post(format!("{}{}", server.url(), routes::REGISTER))
        .header(headers::RESPONSE, proof)
        .send()
        .await
        .unwrap()
}
