//! Step-up: sensitive actions demand a passkey proof newer than a maximum age, and the step-up
//! page requests one and returns the person to where they were.
//!
//! Other handlers call [`require_page`] (HTML pages) or [`require_json`] (JSON APIs) before a
//! sensitive action, with `None` for the operator's default maximum age.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs_core::proto::PublicKeyCredential;

use super::auth::{self, AuthError, CurrentSession};
use super::pages::{self, internal_error};
use super::passkeys::{
    Failure, consume_ceremony, find_response_passkey, json_error, passkey_json_error,
    store_ceremony, verify_assertion,
};
use super::{AppState, passkey_views, routes};
use crate::passkey::{Asserted, PasskeyError, StepUpRequired, binding};
use crate::store::{CeremonyPurpose, StoreError, Update};

/// How often recording a proof is retried when refreshes keep changing the session.
const MAX_UPDATE_ATTEMPTS: usize = 5;
/// Maximum length of an accepted `return_to` path, in bytes.
const MAX_RETURN_TO_LEN: usize = 512;

#[derive(Deserialize)]
pub struct StepUpQuery {
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct StepUpRequest {
    ceremony: String,
    credential: PublicKeyCredential,
    return_to: Option<String>,
}

/// Checks that a passkey proved the session at most `max_age` seconds ago, or the operator's
/// default when `None`. Otherwise it returns a redirect to the step-up page, which comes back to
/// `return_to`.
pub fn require_page(
    state: &AppState,
    current: &CurrentSession,
    max_age: Option<u64>,
    return_to: &str,
    now: u64,
) -> Result<(), Response> {
    let max_age = max_age.unwrap_or(state.passkeys.settings.step_up_max_age);
    binding::require_recent_proof(&current.session.record, now, max_age).map_err(|required| {
        log_required(current, &required);
        Redirect::to(&step_up_url(return_to)).into_response()
    })
}

/// Like [`require_page`] for JSON APIs: 401 with `step_up_required` and the step-up page URL.
pub fn require_json(
    state: &AppState,
    current: &CurrentSession,
    max_age: Option<u64>,
    return_to: &str,
    now: u64,
) -> Result<(), Response> {
    let max_age = max_age.unwrap_or(state.passkeys.settings.step_up_max_age);
    binding::require_recent_proof(&current.session.record, now, max_age).map_err(|required| {
        log_required(current, &required);
        let body = json!({
            "error": "step_up_required",
            "message": "Confirm it's you with your passkey first.",
            "step_up_url": step_up_url(return_to),
        });
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    })
}

fn log_required(current: &CurrentSession, required: &StepUpRequired) {
    tracing::info!(
        target: "security",
        session = %current.session.record.id,
        user = %current.user.id,
        reason = %required,
        "passkey step-up required"
    );
}

/// Builds the step-up page's URL for a local path to return to.
pub fn step_up_url(return_to: &str) -> String {
    let return_to = local_path(Some(return_to));
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    format!("{}?return_to={encoded}", routes::STEP_UP)
}

/// Accepts only a path on this origin, so that the step-up page cannot redirect elsewhere.
fn local_path(candidate: Option<&str>) -> &str {
    match candidate {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.len() <= MAX_RETURN_TO_LEN
                && path
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '<' | '>' | '"')) =>
        {
            path
        }
        _ => routes::APP,
    }
}

/// Shows the prompt for a fresh passkey proof.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StepUpQuery>,
) -> Response {
    let now = state.clock.now();
    let current = match auth::authenticate(&state, &headers, now) {
        Ok(current) => current,
        Err(AuthError::Unauthenticated(_)) => {
            return Redirect::to(&format!("{}?reason=unbound", routes::LOGIN)).into_response();
        }
        Err(AuthError::Store(error)) => return internal_error("step_up", &error),
    };
    let reason = if binding::needs_reproof(
        &current.session.record,
        now,
        state.passkeys.settings.freshness,
    ) {
        "Your session's passkey check has expired. Confirm it's you with your passkey to continue."
    } else {
        "This action needs a recent passkey check. Confirm it's you with your passkey to continue."
    };
    let return_to = local_path(query.return_to.as_deref());
    Html(passkey_views::step_up_page(return_to, reason)).into_response()
}

/// Starts a proof for the signed-in session with any of the user's passkeys.
pub async fn options(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match json_post_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let passkeys = match state.store.list_passkeys(&current.user.id) {
        Ok(passkeys) if passkeys.is_empty() => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "no_passkeys",
                "You have no passkey yet. Add one on the passkeys page first.",
            );
        }
        Ok(passkeys) => passkeys,
        Err(error) => return internal_error("step_up", &error),
    };
    let purpose = CeremonyPurpose::Reauthenticate {
        session_id: current.session.record.id.clone(),
    };
    let started = {
        let mut rng = rand::thread_rng();
        state
            .passkeys
            .start_authentication(purpose, &passkeys, false, now, &mut rng)
    };
    match started {
        Ok(started) => store_ceremony(&state, started.ceremony, json!(started.options)).await,
        Err(error) => passkey_json_error(&state, "step_up", &error),
    }
}

/// Verifies the proof, records it on the session and returns where to go next.
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<StepUpRequest>, JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match json_post_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Json(body)) = body else {
        let error = PasskeyError::MalformedResponse("step-up body".into());
        return passkey_json_error(&state, "step_up", &error);
    };
    let result = prove(&state, &current, &body, now).await;
    match result {
        Ok(()) => {
            let redirect = local_path(body.return_to.as_deref());
            Json(json!({ "redirect": redirect })).into_response()
        }
        Err(Failure::Passkey(error)) => passkey_json_error(&state, "step_up", &error),
        Err(Failure::Store(error)) => internal_error("step_up", &error),
    }
}

async fn prove(
    state: &AppState,
    current: &CurrentSession,
    body: &StepUpRequest,
    now: u64,
) -> Result<(), Failure> {
    let ceremony = consume_ceremony(state, &body.ceremony)?;
    let for_this_session = matches!(
        &ceremony.purpose,
        CeremonyPurpose::Reauthenticate { session_id } if *session_id == current.session.record.id
    );
    if !for_this_session {
        return Err(PasskeyError::WrongCeremony.into());
    }
    let passkey = find_response_passkey(state, &body.credential)?;
    if passkey.user_id != current.user.id {
        return Err(PasskeyError::UnknownCredential.into());
    }
    let asserted = verify_assertion(state, &ceremony, &body.credential, &passkey, now).await?;
    record_proof(state, &current.session.record.id, &asserted, now).await?;
    Ok(())
}

/// Records the proof on the session, retrying when a refresh changed the record meanwhile.
pub(super) async fn record_proof(
    state: &AppState,
    session_id: &str,
    asserted: &Asserted,
    now: u64,
) -> Result<(), StoreError> {
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let Some(session) = state.store.find_session(session_id)? else {
            return Err(StoreError::Database(
                "session disappeared during step-up".into(),
            ));
        };
        let proved = binding::record_proof(&session.record, asserted, now);
        if state.store.update_session(&session, &proved)? == Update::Applied {
            state.store.sync().await?;
            tracing::info!(
                target: "security",
                session = %session_id,
                passkey = %asserted.passkey.id,
                assurance = proved.assurance.name(),
                "session proved by passkey"
            );
            state.audit(&crate::audit::Event::allowed(
                format!("user:{}", asserted.passkey.user_id),
                "session.step_up",
                format!("session:{session_id}"),
            ));
            return Ok(());
        }
    }
    Err(StoreError::Database(
        "session kept changing during step-up".into(),
    ))
}

/// Returns the bound session of a state-changing JSON request from devbound's own pages, or a
/// 403 or 401 JSON error.
pub(super) fn json_post_session(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
) -> Result<CurrentSession, Response> {
    if !auth::same_origin(state, headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "This request must come from devbound's own pages.",
        ));
    }
    json_session(state, headers, now)
}

/// Returns the bound session of a form post from devbound's own pages, or an error page.
pub(super) fn page_post_session(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
    endpoint: &'static str,
) -> Result<CurrentSession, Response> {
    if !auth::same_origin(state, headers) {
        return Err(pages::forbidden_origin(state, endpoint));
    }
    pages::signed_in(state, headers, now, "passkeys")
}

/// Returns the bound session of a JSON request, or a 401 JSON error.
pub(super) fn json_session(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
) -> Result<CurrentSession, Response> {
    match auth::authenticate(state, headers, now) {
        Ok(current) => Ok(current),
        Err(AuthError::Unauthenticated(reason)) => {
            state.metrics.refuse("passkeys", reason.reason());
            Err(json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Sign in first.",
            ))
        }
        Err(AuthError::Store(error)) => Err(pages::internal_error("passkeys", &error)),
    }
}
