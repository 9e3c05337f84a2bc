//! The OAuth endpoints: token, device authorization, introspection, revocation, JWKS and the
//! authorization-server metadata. Errors are RFC 6749 §5.2 JSON bodies.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, routes};
use crate::audit::Event;
use crate::clock::UnixTime;
use crate::oauth::device_grant::{self, AuthorizationRequest};
use crate::oauth::dpop::{self, DpopProof, Expected};
use crate::oauth::replay::ReplayError;
use crate::oauth::token_exchange::{self, ExchangeRequest, Issuer};
use crate::oauth::{self, OAuthError, introspection};

/// Parameters of a form body; each name maps to every value it was sent with.
struct FormParams(HashMap<String, Vec<String>>);

impl FormParams {
    /// Parses an `application/x-www-form-urlencoded` body (RFC 6749 §3.2 requires it).
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(OAuthError::Malformed("body is not form-encoded"));
        }
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            params
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Ok(Self(params))
    }

    /// Returns a parameter that may appear at most once (RFC 6749 §3.2).
    fn single(&self, name: &str) -> Result<Option<String>, OAuthError> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) => Ok(Some(value.clone())),
            Some(_) => Err(OAuthError::RepeatedParameter(name.to_owned())),
        }
    }

    fn required(&self, name: &'static str) -> Result<String, OAuthError> {
        self.single(name)?
            .filter(|value| !value.is_empty())
            .ok_or(OAuthError::Malformed(name))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// `POST /oauth/token`: token exchange and the device-code poll.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    match token_grant(&state, &headers, &body, now).await {
        Ok(response) => no_store(Json(response).into_response()),
        Err(error) => error_response(&state, "token", &error),
    }
}

async fn token_grant(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let params = FormParams::parse(headers, body)?;
    let grant_type = params.required("grant_type")?;
    if grant_type != oauth::GRANT_TOKEN_EXCHANGE && grant_type != oauth::GRANT_DEVICE_CODE {
        return Err(OAuthError::UnsupportedGrantType(grant_type));
    }
    let proof = check_dpop(state, headers, routes::OAUTH_TOKEN, now)?;
    let issuer = Issuer {
        store: state.store.as_ref(),
        keys: &state.oauth.keys,
        settings: &state.oauth.settings,
    };
    if grant_type == oauth::GRANT_DEVICE_CODE {
        return poll_device_code(state, issuer, &params, &proof, now).await;
    }

    let request = exchange_request(&params)?;
    let issued = {
        let mut rng = rand::thread_rng();
        token_exchange::exchange(issuer, &request, &proof, now, &mut rng)?
    };
    let chain = issued.claims.act.as_ref().map(|act| act.chain().join(">"));
    tracing::info!(
        target: "security",
        jti = %issued.claims.jti,
        sub = %issued.claims.sub,
        client_id = %issued.claims.client_id,
        act = chain.as_deref().unwrap_or("-"),
        aud = %issued.claims.aud.join(" "),
        scope = %issued.claims.scope,
        acr = %issued.claims.acr,
        "token exchange issued an access token"
    );
    state.audit(&Event::allowed(
        format!("agent:{}", issued.claims.client_id),
        "token.exchange",
        format!("token:{}", issued.claims.jti),
    ));
    Ok(json!({
        "access_token": issued.access_token,
        "issued_token_type": oauth::TOKEN_TYPE_ACCESS_TOKEN,
        "token_type": "DPoP",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }))
}

fn exchange_request(params: &FormParams) -> Result<ExchangeRequest, OAuthError> {
    let mut audiences = params.all("resource");
    audiences.extend(params.all("audience"));
    Ok(ExchangeRequest {
        subject_token: params.required("subject_token")?,
        subject_token_type: params.required("subject_token_type")?,
        actor_token: params.single("actor_token")?,
        actor_token_type: params.single("actor_token_type")?,
        requested_token_type: params.single("requested_token_type")?,
        audiences,
        scope: params.single("scope")?,
        may_act: params.single("may_act")?,
    })
}

async fn poll_device_code(
    state: &AppState,
    issuer: Issuer<'_>,
    params: &FormParams,
    proof: &DpopProof,
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let device_code = params.required("device_code")?;
    let client_id = params.required("client_id")?;
    let issued = {
        let mut rng = rand::thread_rng();
        device_grant::poll(
            issuer,
            &state.policy,
            &device_code,
            &client_id,
            proof,
            now,
            &mut rng,
        )?
    };
    state.store.sync().await?;
    tracing::info!(
        target: "security",
        agent = %client_id,
        session = %issued.session_id,
        "device grant issued the agent's grant token"
    );
    state.audit(&Event::allowed(
        format!("agent:{client_id}"),
        "token.device_grant",
        format!("session:{}", issued.session_id),
    ));
    Ok(json!({
        "access_token": issued.access_token,
        "token_type": "DPoP",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "session_id": issued.session_id,
    }))
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1), with a DPoP proof that binds the grant.
pub async fn device_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.clock.now();
    match start_device_authorization(&state, &headers, &body, now).await {
        Ok(response) => no_store(Json(response).into_response()),
        Err(error) => error_response(&state, "device_authorization", &error),
    }
}

async fn start_device_authorization(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let params = FormParams::parse(headers, body)?;
    let request = AuthorizationRequest {
        client_id: params.required("client_id")?,
        scope: params.single("scope")?,
        session_id: params.single("session_id")?,
    };
    let proof = check_dpop(state, headers, routes::OAUTH_DEVICE_AUTHORIZATION, now)?;
    let authorization = {
        let mut rng = rand::thread_rng();
        device_grant::authorize(state.store.as_ref(), &request, &proof, now, &mut rng)?
    };
    state.store.sync().await?;
    tracing::info!(target: "security", agent = %request.client_id, "device authorization started");

    let verification_uri = state.oauth.settings.url(routes::DEVICE);
    Ok(json!({
        "device_code": authorization.device_code.expose(),
        "user_code": authorization.user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={}", authorization.user_code),
        "expires_in": authorization.expires_in,
        "interval": authorization.interval,
    }))
}

/// `POST /oauth/introspect` (RFC 7662 §2).
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.clock.now();
    let token = match FormParams::parse(&headers, &body).and_then(|params| params.required("token"))
    {
        Ok(token) => token,
        Err(error) => return error_response(&state, "introspect", &error),
    };
    match introspection::introspect(state.store.as_ref(), &token, now) {
        Ok(response) => no_store(Json(response).into_response()),
        Err(error) => error_response(&state, "introspect", &error.into()),
    }
}

/// `POST /oauth/revoke` (RFC 7009 §2): 200 for every well-formed request.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let token = match FormParams::parse(&headers, &body).and_then(|params| params.required("token"))
    {
        Ok(token) => token,
        Err(error) => return error_response(&state, "revoke", &error),
    };
    match introspection::revoke(state.store.as_ref(), &token, now) {
        Ok(Some(jti)) => {
            tracing::info!(target: "security", %jti, "access token revoked");
            state.audit(&Event::allowed(
                "token holder",
                "token.revoke",
                format!("token:{jti}"),
            ));
            StatusCode::OK.into_response()
        }
        Ok(None) => StatusCode::OK.into_response(),
        Err(error) => error_response(&state, "revoke", &error.into()),
    }
}

/// `GET /oauth/jwks`: the published signing keys.
pub async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.oauth.keys.jwks(state.clock.now())).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 §3), built from the route
/// constants the router uses.
pub async fn metadata(State(state): State<AppState>) -> Response {
    let settings = &state.oauth.settings;
    let algs: Vec<&str> = dpop::ALGORITHMS.iter().map(|alg| alg.name()).collect();
    Json(json!({
        "issuer": settings.issuer,
        "token_endpoint": settings.url(routes::OAUTH_TOKEN),
        "device_authorization_endpoint": settings.url(routes::OAUTH_DEVICE_AUTHORIZATION),
        "introspection_endpoint": settings.url(routes::OAUTH_INTROSPECT),
        "revocation_endpoint": settings.url(routes::OAUTH_REVOKE),
        "jwks_uri": settings.url(routes::OAUTH_JWKS),
        "grant_types_supported": [oauth::GRANT_TOKEN_EXCHANGE, oauth::GRANT_DEVICE_CODE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": algs,
        "token_types_supported": [oauth::TOKEN_TYPE_ACCESS_TOKEN, oauth::TOKEN_TYPE_JWT],
    }))
    .into_response()
}

/// Verifies the one `DPoP` header of a request to `path` and spends its replay key.
fn check_dpop(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    now: UnixTime,
) -> Result<DpopProof, OAuthError> {
    let mut values = headers.get_all(dpop::HEADER).iter();
    let proof = values.next().ok_or(OAuthError::MissingDpop)?;
    // RFC 9449 §4.3 step 1: exactly one DPoP header.
    if values.next().is_some() {
        return Err(OAuthError::InvalidDpop("more than one DPoP header".into()));
    }
    let proof = proof
        .to_str()
        .map_err(|_| OAuthError::InvalidDpop("header is not ASCII".into()))?;
    let url = state.oauth.settings.url(path);
    let expected = Expected {
        method: "POST",
        url: &url,
        access_token: None,
    };
    let proof = dpop::verify(proof, expected, now)
        .map_err(|error| OAuthError::InvalidDpop(error.to_string()))?;
    // RFC 9449 §11.1: a proof is accepted once within its window.
    match state.oauth.replay.spend(&proof, now) {
        Ok(()) => {}
        Err(ReplayError::Replayed) => return Err(OAuthError::DpopReplay),
        Err(ReplayError::BeforeStart) => return Err(OAuthError::DpopBeforeStart),
    }
    Ok(proof)
}

/// Logs a rejection under `security` with its condition and answers with the RFC error.
fn error_response(state: &AppState, endpoint: &'static str, error: &OAuthError) -> Response {
    let code = error.code();
    if code == oauth::ErrorCode::ServerError {
        tracing::error!(endpoint, %error, "OAuth request failed");
    } else {
        tracing::info!(
            target: "security",
            endpoint,
            condition = error.condition(),
            error = code.as_str(),
            detail = %error,
            "OAuth request rejected"
        );
    }
    state.metrics.refuse(endpoint, error.condition());
    // Polls that only wait for the owner are not decisions.
    let waiting = matches!(
        error,
        OAuthError::AuthorizationPending | OAuthError::SlowDown
    );
    if !waiting && code != oauth::ErrorCode::ServerError {
        state.audit(&Event::refused(
            "peer",
            "token.issue",
            endpoint,
            error.condition(),
        ));
    }
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({ "error": code.as_str(), "error_description": error.description() });
    no_store((status, Json(body)).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
