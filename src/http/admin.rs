//! The operator API behind `devbound user` and `devbound session`, authenticated with the
//! admin token from the data directory.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::api::{api_error, api_error_store, end_stored_session, revoke};
use super::views::SessionView;
use crate::account;
use crate::audit::Event;
use crate::crypto::secret::constant_time_eq;
use crate::store::{SessionState, Store, StoreError, UserRecord};

#[derive(Debug, Deserialize)]
pub struct SessionFilter {
    pub user: Option<String>,
}

#[derive(Deserialize, Serialize)]
pub struct NewUser {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize)]
struct UserView {
    id: String,
    name: String,
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_at: Option<u64>,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> Self {
        Self {
            id: user.id,
            name: user.name,
            created_at: user.created_at,
            disabled_at: user.disabled_at,
        }
    }
}

/// A user disabled or re-enabled by [`set_user_disabled`].
#[derive(Debug)]
pub struct UserChange {
    pub user: UserRecord,
    /// Live sessions that disabling revoked.
    pub ended_sessions: usize,
    /// Sessions that could not be revoked, with the error. Disabling again retries them.
    pub failed_sessions: Vec<(String, StoreError)>,
}

/// Disables or re-enables the user named `name`, or returns `None` if there is no such user.
///
/// Disabling also revokes each of the user's live sessions, so their cookies stop working at
/// once and their next refresh ends them in the browser. Refreshes do not read the user record,
/// which keeps them to one store read. Enabling restores none of those sessions. The caller
/// makes the writes durable and records them in the audit log.
pub fn set_user_disabled(
    store: &dyn Store,
    name: &str,
    disabled: bool,
    now: u64,
) -> Result<Option<UserChange>, StoreError> {
    let Some(mut user) = store.find_user_by_name(name)? else {
        return Ok(None);
    };
    user.disabled_at = if disabled {
        Some(user.disabled_at.unwrap_or(now))
    } else {
        None
    };
    store.update_user(&user)?;

    let mut ended_sessions = 0;
    let mut failed_sessions = Vec::new();
    if disabled {
        // One session that keeps changing must not leave the others live.
        for session in store.list_sessions(Some(&user.id))? {
            let revoked = SessionState::Revoked {
                at: now,
                by: "operator".into(),
            };
            match end_stored_session(store, &session.id, revoked, now) {
                Ok(Some((_, true))) => ended_sessions += 1,
                Ok(_) => {}
                Err(error) => failed_sessions.push((session.id, error)),
            }
        }
    }
    Ok(Some(UserChange {
        user,
        ended_sessions,
        failed_sessions,
    }))
}

pub async fn list_users(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    match state.store.list_users() {
        Ok(users) => {
            let views: Vec<UserView> = users.into_iter().map(UserView::from).collect();
            Json(json!({ "users": views })).into_response()
        }
        Err(error) => api_error_store(&error),
    }
}

pub async fn add_user(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let Ok(Json(new_user)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be JSON with name and password",
        );
    };
    let now = state.clock.now();
    let created = tokio::task::spawn_blocking(move || {
        account::new_user(
            &new_user.name,
            &new_user.password,
            now,
            &mut rand::thread_rng(),
        )
    })
    .await;
    let user = match created {
        Ok(Ok(user)) => user,
        Ok(Err(error)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "invalid_request", "error_description": error.to_string() })),
            )
                .into_response();
        }
        Err(_) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            );
        }
    };
    match state.store.insert_user(&user) {
        Ok(true) => {}
        Ok(false) => {
            return api_error(
                StatusCode::CONFLICT,
                "user_exists",
                "a user with this name exists",
            );
        }
        Err(error) => return api_error_store(&error),
    }
    if let Err(error) = state.store.sync().await {
        return api_error_store(&error);
    }
    tracing::info!(target: "security", user = %user.id, name = %user.name, "user created by operator");
    state.audit(&Event::allowed(
        "operator",
        "user.create",
        format!("user:{}", user.id),
    ));
    (StatusCode::CREATED, Json(UserView::from(user))).into_response()
}

/// Disables the user named in the path: `POST /admin/users/{name}/disable`.
pub async fn disable_user(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    change_user(&state, peer, &headers, &name, true).await
}

/// Re-enables the user named in the path: `POST /admin/users/{name}/enable`.
pub async fn enable_user(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    change_user(&state, peer, &headers, &name, false).await
}

async fn change_user(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    name: &str,
    disabled: bool,
) -> Response {
    if let Err(response) = check_admin(state, peer, headers) {
        return response;
    }
    let now = state.clock.now();
    let change = match set_user_disabled(state.store.as_ref(), name, disabled, now) {
        Ok(Some(change)) => change,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, "not_found", "no such user"),
        Err(error) => return api_error_store(&error),
    };
    if let Err(error) = state.store.sync().await {
        return api_error_store(&error);
    }

    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    tracing::info!(
        target: "security",
        user = %change.user.id,
        ended_sessions = change.ended_sessions,
        action,
        "user changed by operator"
    );
    state.audit(&Event::allowed(
        "operator",
        action,
        format!("user:{}", change.user.id),
    ));
    if let Some((session, error)) = change.failed_sessions.first() {
        tracing::error!(
            user = %change.user.id,
            failed = change.failed_sessions.len(),
            %session,
            %error,
            "disabled a user but could not revoke all of their sessions"
        );
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the user is disabled but some sessions could not be revoked; disable again to retry",
        );
    }
    let ended_sessions = change.ended_sessions;
    Json(json!({ "user": UserView::from(change.user), "ended_sessions": ended_sessions }))
        .into_response()
}

pub async fn list_sessions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(filter): Query<SessionFilter>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let user_id = match filter
        .user
        .as_deref()
        .map(|name| state.store.find_user_by_name(name))
    {
        None => None,
        Some(Ok(Some(user))) => Some(user.id),
        Some(Ok(None)) => return api_error(StatusCode::NOT_FOUND, "not_found", "no such user"),
        Some(Err(error)) => return api_error_store(&error),
    };
    match state.store.list_sessions(user_id.as_deref()) {
        Ok(sessions) => {
            let views: Vec<SessionView> = sessions
                .iter()
                .map(|session| SessionView::new(session, None))
                .collect();
            Json(json!({ "sessions": views })).into_response()
        }
        Err(error) => api_error_store(&error),
    }
}

pub async fn revoke_session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let now = state.clock.now();
    let session = match state.store.find_session(&id) {
        Ok(Some(session)) => session,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, "not_found", "no such session"),
        Err(error) => return api_error_store(&error),
    };
    match revoke(&state, session, "operator", now).await {
        Ok(revoked) => Json(SessionView::new(&revoked, None)).into_response(),
        Err(response) => response,
    }
}

/// Which audit entries to list: `limit` entries from sequence number `from`.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

/// The most entries one request returns.
const MAX_AUDIT_PAGE: usize = 1000;

pub async fn list_audit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(page): Query<AuditPage>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let limit = page.limit.unwrap_or(MAX_AUDIT_PAGE).min(MAX_AUDIT_PAGE);
    match state.store.list_audit(page.from, limit) {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(error) => api_error_store(&error),
    }
}

/// Admits a request from a loopback address that carries the admin token. The admin API shares
/// the public listener, so a peer elsewhere is rejected whatever token it sends.
pub(super) fn check_admin(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !peer.ip().is_loopback() {
        tracing::info!(target: "security", %peer, "admin API request from a non-loopback address");
        state.metrics.refuse("admin", "not_loopback");
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API is served to loopback only",
        ));
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), state.admin_token.expose().as_bytes()) {
        return Ok(());
    }
    tracing::info!(target: "security", "admin API request with a missing or wrong token");
    state.metrics.refuse("admin", "bad_token");
    Err(api_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin token required",
    ))
}
