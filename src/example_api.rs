//! An example protected API: one tool endpoint that accepts only DPoP-bound devbound access
//! tokens, verified with devbound's JWKS and then checked at its introspection endpoint so
//! that a revocation takes effect on the next call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::json;

use crate::client::https_client;
use crate::clock::Clock;
use crate::http::routes;
use crate::oauth::replay::{ReplayCache, ReplayError};
use crate::oauth::resource::{self, Jwks, Presented, ResourceError};

/// The path of the example tool.
pub const TOOL_PATH: &str = "/tools/echo";

/// A failure to start the example API.
#[derive(Debug, thiserror::Error)]
pub enum ExampleApiError {
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("cannot reach devbound: {0}")]
    Devbound(String),
}

/// Where the example API finds devbound and keeps its certificate.
#[derive(Debug)]
pub struct ExampleApiConfig {
    /// devbound's issuer URL, such as `https://localhost:8443`.
    pub issuer: String,
    /// PEM certificate that devbound's HTTPS certificate chains to.
    pub issuer_cert_pem: Vec<u8>,
    pub data_dir: PathBuf,
}

/// A running example API.
#[derive(Debug)]
pub struct RunningExampleApi {
    pub addr: SocketAddr,
    /// The API's origin, which is also the audience its tokens must name.
    pub origin: String,
    pub cert_pem: Vec<u8>,
    handle: Handle,
}

impl RunningExampleApi {
    /// The URL of the tool endpoint.
    pub fn tool_url(&self) -> String {
        format!("{}{TOOL_PATH}", self.origin)
    }

    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

#[derive(Debug, Clone)]
struct ApiState {
    issuer: String,
    origin: String,
    http: reqwest::Client,
    jwks: Arc<RwLock<Arc<Jwks>>>,
    replay: Arc<ReplayCache>,
    clock: Arc<dyn Clock>,
}

/// Starts the example API on a free loopback port with a self-signed certificate.
pub async fn start(
    config: ExampleApiConfig,
    clock: Arc<dyn Clock>,
) -> Result<RunningExampleApi, ExampleApiError> {
    let tls = crate::tls::load_or_create(None, &config.data_dir, &["localhost".to_owned()])
        .map_err(|error| ExampleApiError::Tls(error.to_string()))?;
    let rustls = RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(|error| ExampleApiError::Tls(error.to_string()))?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(ExampleApiError::Bind)?;
    listener
        .set_nonblocking(true)
        .map_err(ExampleApiError::Bind)?;
    let addr = listener.local_addr().map_err(ExampleApiError::Bind)?;
    let origin = format!("https://localhost:{}", addr.port());

    let http = https_client(&config.issuer_cert_pem)
        .map_err(|error| ExampleApiError::Devbound(error.to_string()))?;
    let state = ApiState {
        issuer: config.issuer,
        origin: origin.clone(),
        http,
        jwks: Arc::new(RwLock::new(Arc::new(Jwks::default()))),
        replay: Arc::new(ReplayCache::new(clock.now())),
        clock,
    };
    refresh_jwks(&state).await?;

    let app = axum::Router::new()
        .route(TOOL_PATH, any(tool))
        .with_state(state);
    let handle = Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls)
        .handle(handle.clone())
        .serve(app.into_make_service());
    tokio::spawn(server);
    let cert_pem =
        std::fs::read(&tls.cert).map_err(|error| ExampleApiError::Tls(error.to_string()))?;
    Ok(RunningExampleApi {
        addr,
        origin,
        cert_pem,
        handle,
    })
}

/// The tool: echoes who called it, for whom, and with which scope.
async fn tool(State(state): State<ApiState>, method: Method, headers: HeaderMap) -> Response {
    match authorize(&state, &method, &headers).await {
        Ok(claims) => Json(json!({
            "sub": claims.sub,
            "client_id": claims.client_id,
            "act": claims.act,
            "scope": claims.scope,
            "acr": claims.acr,
        }))
        .into_response(),
        Err(error) => {
            tracing::info!(target: "security", %error, "example API rejected a call");
            (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, error.challenge())],
                Json(json!({ "error": error.code(), "error_description": error.to_string() })),
            )
                .into_response()
        }
    }
}

async fn authorize(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<crate::store::AccessTokenClaims, ResourceError> {
    let authorization = header_values(headers, AUTHORIZATION.as_str());
    let dpop = header_values(headers, crate::oauth::dpop::HEADER);
    let url = format!("{}{TOOL_PATH}", state.origin);
    let presented = Presented {
        authorization: &authorization,
        dpop: &dpop,
        method: method.as_str(),
        url: &url,
    };
    let now = state.clock.now();

    let token = resource::read_token(&authorization)?;
    // A token signed by a key this API has not seen yet: fetch the JWKS again, once.
    let kid_known = crate::oauth::access_token::parse(token)
        .ok()
        .and_then(|jws| jws.header.kid.clone())
        .is_none_or(|kid| current_jwks(state).contains(&kid));
    if !kid_known {
        let _ = refresh_jwks(state).await;
    }
    let (claims, proof) = resource::check_request(
        presented,
        &current_jwks(state),
        &state.issuer,
        &state.origin,
        now,
    )?;
    match state.replay.spend(&proof, now) {
        Ok(()) => {}
        Err(ReplayError::Replayed) => return Err(ResourceError::Replay),
        Err(error @ ReplayError::BeforeStart) => {
            return Err(ResourceError::InvalidProof(error.to_string()));
        }
    }
    if !introspect_active(state, token).await {
        return Err(ResourceError::Inactive);
    }
    Ok(claims)
}

/// Asks devbound whether the token is still active (RFC 7662); any failure counts as no.
async fn introspect_active(state: &ApiState, token: &str) -> bool {
    let url = format!("{}{}", state.issuer, routes::OAUTH_INTROSPECT);
    let response = state.http.post(url).form(&[("token", token)]).send().await;
    let Ok(response) = response else {
        return false;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["active"].as_bool() == Some(true)
}

async fn refresh_jwks(state: &ApiState) -> Result<(), ExampleApiError> {
    let url = format!("{}{}", state.issuer, routes::OAUTH_JWKS);
    let document: serde_json::Value = state
        .http
        .get(url)
        .send()
        .await
        .map_err(|error| ExampleApiError::Devbound(error.to_string()))?
        .json()
        .await
        .map_err(|error| ExampleApiError::Devbound(error.to_string()))?;
    if let Ok(mut jwks) = state.jwks.write() {
        *jwks = Arc::new(Jwks::from_value(&document));
    }
    Ok(())
}

fn current_jwks(state: &ApiState) -> Arc<Jwks> {
    state
        .jwks
        .read()
        .map(|jwks| jwks.clone())
        .unwrap_or_default()
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap_or_default())
        .collect()
}
