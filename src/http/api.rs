//! The JSON API a signed-in user calls with their bound cookie.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::{self, AuthError, CurrentSession};
use super::views::SessionView;
use crate::audit::Event;
use crate::dbsc;
use crate::passkey::binding;
use crate::store::{SessionState, Store, StoreError, Update};

/// How often ending a session is retried when refreshes keep changing it.
const MAX_END_ATTEMPTS: usize = 5;

pub async fn list_sessions(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match api_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.store.list_sessions(Some(&current.user.id)) {
        Ok(sessions) => {
            let current_id = current.session.record.id.as_str();
            let views: Vec<SessionView> = sessions
                .iter()
                .map(|session| SessionView::new(session, Some(current_id)))
                .collect();
            Json(json!({ "sessions": views })).into_response()
        }
        Err(error) => api_error_store(&error),
    }
}

pub async fn revoke_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return api_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "request came from another origin",
        );
    }
    let now = state.clock.now();
    let current = match api_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    match revoke_own(&state, &current, &id, now).await {
        Ok(view) => Json(view).into_response(),
        Err(response) => response,
    }
}

/// Revokes one of the signed-in user's own sessions. Another user's session is reported as
/// not found, so that session ids cannot be probed.
pub async fn revoke_own(
    state: &AppState,
    current: &CurrentSession,
    id: &str,
    now: u64,
) -> Result<SessionView, Response> {
    let session = state
        .store
        .find_session(id)
        .map_err(|error| api_error_store(&error))?
        .filter(|session| session.record.user_id == current.user.id)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, "not_found", "no such session"))?;
    let revoked = revoke(state, session, &format!("user:{}", current.user.id), now).await?;
    Ok(SessionView::new(&revoked, Some(&current.session.record.id)))
}

/// Marks a session revoked, durably. Its next refresh ends it in the browser and its cookie is
/// rejected from now on.
pub async fn revoke(
    state: &AppState,
    session: crate::store::Versioned<crate::store::SessionRecord>,
    by: &str,
    now: u64,
) -> Result<crate::store::SessionRecord, Response> {
    let revoked_state = SessionState::Revoked {
        at: now,
        by: by.to_owned(),
    };
    let ended = end_session(state, &session.record.id, revoked_state, now)
        .await
        .map_err(|error| api_error_store(&error))?
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, "not_found", "no such session"))?;
    tracing::info!(target: "security", session = %ended.id, user = %ended.user_id, by, "session revoked");
    state.audit(&Event::allowed(
        by,
        "session.revoke",
        format!("session:{}", ended.id),
    ));
    Ok(ended)
}

/// Ends a live session with `ended_state`, durably, retrying when a concurrent refresh changed
/// the record first. Returns the record as stored afterwards, or `None` if there is no such
/// session; a session that had already ended is returned unchanged.
pub async fn end_session(
    state: &AppState,
    id: &str,
    ended_state: SessionState,
    now: u64,
) -> Result<Option<crate::store::SessionRecord>, StoreError> {
    let ended = end_stored_session(state.store.as_ref(), id, ended_state, now)?;
    if let Some((_, true)) = ended {
        state.store.sync().await?;
    }
    Ok(ended.map(|(record, _)| record))
}

/// Ends a live session in the store as [`end_session`] does, without waiting for the write to
/// be durable. Returns the record as stored afterwards, and whether this call ended it.
pub fn end_stored_session(
    store: &dyn Store,
    id: &str,
    ended_state: SessionState,
    now: u64,
) -> Result<Option<(crate::store::SessionRecord, bool)>, StoreError> {
    for _ in 0..MAX_END_ATTEMPTS {
        let Some(session) = store.find_session(id)? else {
            return Ok(None);
        };
        if !session.record.is_live(now) {
            return Ok(Some((session.record, false)));
        }
        let ended = dbsc::end_session(&session.record, ended_state.clone());
        if store.update_session(&session, &ended)? == Update::Applied {
            return Ok(Some((ended, true)));
        }
    }
    Err(StoreError::Database(format!(
        "session {id} kept changing while it was being ended"
    )))
}

/// Returns the request's bound session, or 401 JSON. As on pages, a passkey-bound session whose
/// passkey proof is older than the freshness window gets `step_up_required` instead.
pub(super) fn api_session(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
) -> Result<CurrentSession, Response> {
    match auth::authenticate(state, headers, now) {
        Ok(current) => {
            let freshness = state.passkeys.settings.freshness;
            if binding::needs_reproof(&current.session.record, now, freshness) {
                state.metrics.refuse("api", "passkey_proof_expired");
                return Err(stale_passkey_proof(&current));
            }
            Ok(current)
        }
        Err(AuthError::Unauthenticated(reason)) => {
            state.metrics.refuse("api", reason.reason());
            Err(api_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a bound session cookie is required",
            ))
        }
        Err(AuthError::Store(error)) => Err(api_error_store(&error)),
    }
}

fn stale_passkey_proof(current: &CurrentSession) -> Response {
    tracing::info!(
        target: "security",
        session = %current.session.record.id,
        user = %current.user.id,
        "API request refused: the session's passkey proof is older than the freshness window"
    );
    let body = json!({
        "error": "step_up_required",
        "error_description": "the session's passkey proof has expired; prove it again",
        "step_up_url": super::step_up_url(super::routes::APP),
    });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

pub fn api_error(status: StatusCode, code: &'static str, description: &'static str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

pub fn api_error_store(error: &StoreError) -> Response {
    tracing::error!(%error, "store failure in API request");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal error",
    )
}
