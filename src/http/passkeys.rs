//! Passkey endpoints: sign-in with a discoverable passkey, and adding, naming and removing
//! passkeys. The rules live in `crate::passkey`; these handlers parse, call and map.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs_core::proto::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::auth::{self, CurrentSession};
use super::budget::Spend;
use super::pages::{self, internal_error};
use super::step_up::{self, json_post_session, json_session, page_post_session};
use super::{AppState, passkey_views, routes};
use crate::audit::Event;
use crate::crypto::base64url;
use crate::passkey::{Asserted, PasskeyError};
use crate::store::{CeremonyPurpose, CeremonyRecord, PasskeyRecord, SessionState, StoreError};

/// Maximum length of a passkey name, in characters.
const MAX_NAME_CHARS: usize = 64;

#[derive(Deserialize)]
pub struct SignInOptionsRequest {
    #[serde(default)]
    conditional: bool,
}

#[derive(Deserialize)]
pub struct SignInForm {
    ceremony: String,
    credential: String,
}

#[derive(Deserialize)]
pub struct RegisterOptionsRequest {
    name: String,
}

#[derive(Deserialize)]
pub struct RegisterRequest {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
pub struct RenameForm {
    name: String,
}

/// Starts a discoverable sign-in: the browser may show passkeys in autofill (`conditional`)
/// or in its own dialog.
///
/// Each request stores a ceremony until it expires, so the sign-ins that start per minute are
/// limited (`--passkey-sign-in-rate`). Beyond the limit the request gets 429 and stores nothing.
pub async fn sign_in_options(
    State(state): State<AppState>,
    body: Result<Json<SignInOptionsRequest>, JsonRejection>,
) -> Response {
    let conditional = body.map(|Json(body)| body.conditional).unwrap_or(false);
    let now = state.clock.now();
    if let Some(response) = over_sign_in_budget(&state, now) {
        return response;
    }
    let started = {
        let mut rng = rand::thread_rng();
        state.passkeys.start_authentication(
            CeremonyPurpose::SignIn,
            &[],
            conditional,
            now,
            &mut rng,
        )
    };
    match started {
        Ok(started) => store_ceremony(&state, started.ceremony, json!(started.options)).await,
        Err(error) => passkey_json_error(&state, "passkey_sign_in", &error),
    }
}

/// Spends one sign-in start from this minute's budget, or returns the 429 response when the
/// budget is used up.
fn over_sign_in_budget(state: &AppState, now: u64) -> Option<Response> {
    let spent = match state.sign_in_budget.lock() {
        Ok(mut budget) => budget.spend(now),
        // The budget is a plain counter, so a panic while it was held leaves it usable.
        Err(poisoned) => poisoned.into_inner().spend(now),
    };
    let Spend::Exhausted { first, retry_after } = spent else {
        return None;
    };
    if first {
        tracing::warn!(
            target: "security",
            limit = state.passkeys.settings.sign_in_rate,
            "passkey sign-in starts exceed the limit per minute; rejecting the rest of this minute"
        );
    }
    state.metrics.refuse("passkey_sign_in", "rate_limited");
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many passkey sign-ins are starting. Try again in a minute.",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    Some(response)
}

/// Verifies a passkey sign-in and starts a session with a DBSC registration offer.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return pages::forbidden_origin(&state, "passkey_sign_in");
    }
    let now = state.clock.now();
    let asserted = match verify_sign_in(&state, form.ok().map(|Form(form)| form), now).await {
        Ok(asserted) => asserted,
        Err(Failure::Passkey(error)) => return sign_in_rejected(&state, &error),
        Err(Failure::Store(error)) => return internal_error("passkey_sign_in", &error),
    };
    let user_id = asserted.passkey.user_id.clone();
    match state.store.user_disabled(&user_id) {
        Ok(true) => return sign_in_rejected(&state, &PasskeyError::UserDisabled),
        Ok(false) => {}
        Err(error) => return internal_error("passkey_sign_in", &error),
    }

    // A browser that already has a live bound session for this user is not offered a second
    // DBSC registration: the assertion proves that session instead.
    if let Ok(current) = auth::authenticate(&state, &headers, now) {
        if current.user.id == user_id {
            let session_id = &current.session.record.id;
            return match step_up::record_proof(&state, session_id, &asserted, now).await {
                Ok(()) => Redirect::to(routes::APP).into_response(),
                Err(error) => internal_error("passkey_sign_in", &error),
            };
        }
    }
    match pages::start_session(&state, &user_id, now, Some(&asserted)).await {
        Ok(response) => {
            state.audit(&Event::allowed(
                format!("user:{user_id}"),
                "session.sign_in",
                format!("passkey:{}", asserted.passkey.id),
            ));
            response
        }
        Err(error) => internal_error("passkey_sign_in", &error),
    }
}

/// A failed request: a ceremony the peer got wrong, or the store.
pub(super) enum Failure {
    Passkey(PasskeyError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<PasskeyError> for Failure {
    fn from(error: PasskeyError) -> Self {
        Self::Passkey(error)
    }
}

async fn verify_sign_in(
    state: &AppState,
    form: Option<SignInForm>,
    now: u64,
) -> Result<Asserted, Failure> {
    let form = form.ok_or(PasskeyError::MalformedResponse(
        "form fields missing".into(),
    ))?;
    let response: PublicKeyCredential = serde_json::from_str(&form.credential)
        .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
    let ceremony = consume_ceremony(state, &form.ceremony)?;
    if ceremony.purpose != CeremonyPurpose::SignIn {
        return Err(PasskeyError::WrongCeremony.into());
    }
    let passkey = find_response_passkey(state, &response)?;
    verify_assertion(state, &ceremony, &response, &passkey, now).await
}

/// Verifies an assertion, stores the updated passkey, and flags it on a counter regression.
pub(super) async fn verify_assertion(
    state: &AppState,
    ceremony: &CeremonyRecord,
    response: &PublicKeyCredential,
    passkey: &PasskeyRecord,
    now: u64,
) -> Result<Asserted, Failure> {
    match state
        .passkeys
        .finish_authentication(ceremony, response, passkey, now)
    {
        Ok(asserted) => {
            state.store.update_passkey(&asserted.passkey)?;
            state.store.sync().await?;
            log_assertion(&asserted);
            state.audit(&Event::allowed(
                format!("user:{}", passkey.user_id),
                "passkey.assert",
                format!("passkey:{}", passkey.id),
            ));
            Ok(asserted)
        }
        Err(error @ PasskeyError::PossibleClone { .. }) => {
            let mut flagged = passkey.clone();
            flagged.clone_warning_at = Some(now);
            state.store.update_passkey(&flagged)?;
            state.store.sync().await?;
            state.audit(&Event::refused(
                format!("user:{}", passkey.user_id),
                "passkey.assert",
                format!("passkey:{}", passkey.id),
                error.code(),
            ));
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}

fn log_assertion(asserted: &Asserted) {
    tracing::info!(
        target: "security",
        passkey = %asserted.passkey.id,
        user = %asserted.passkey.user_id,
        assurance = asserted.assurance.name(),
        counter = ?asserted.counter,
        backup_eligibility_gained = asserted.backup_eligibility_gained,
        "passkey assertion verified"
    );
}

pub(super) fn consume_ceremony(state: &AppState, id: &str) -> Result<CeremonyRecord, Failure> {
    state
        .store
        .consume_ceremony(id)?
        .ok_or(Failure::Passkey(PasskeyError::UnknownCeremony))
}

pub(super) fn find_response_passkey(
    state: &AppState,
    response: &PublicKeyCredential,
) -> Result<PasskeyRecord, Failure> {
    let id = base64url::encode(response.raw_id.as_slice());
    state
        .store
        .find_passkey(&id)?
        .ok_or(Failure::Passkey(PasskeyError::UnknownCredential))
}

fn sign_in_rejected(state: &AppState, error: &PasskeyError) -> Response {
    tracing::info!(target: "security", reason = %error, "passkey sign-in rejected");
    state.audit(&Event::refused(
        "peer",
        "session.sign_in",
        "passkey",
        error.code(),
    ));
    state.metrics.refuse("passkey_sign_in", error.code());
    let notice = format!(
        r#"<p class="notice" id="sign-in-error">{}</p>"#,
        super::views::escape(error.person_message())
    );
    let page = passkey_views::login_page(&notice, state.passkeys.settings.password_sign_in);
    (StatusCode::UNAUTHORIZED, Html(page)).into_response()
}

/// Lists the signed-in user's passkeys.
pub async fn list_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match pages::signed_in(&state, &headers, now, "passkeys") {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.store.list_passkeys(&current.user.id) {
        Ok(passkeys) => Html(passkey_views::passkeys_page(&passkeys, "")).into_response(),
        Err(error) => internal_error("passkeys", &error),
    }
}

/// Lists the signed-in user's passkeys as JSON.
pub async fn list_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match json_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.store.list_passkeys(&current.user.id) {
        Ok(passkeys) => {
            let views: Vec<_> = passkeys.iter().map(passkey_json).collect();
            Json(json!({ "passkeys": views })).into_response()
        }
        Err(error) => internal_error("passkeys", &error),
    }
}

fn passkey_json(passkey: &PasskeyRecord) -> serde_json::Value {
    json!({
        "id": passkey.id,
        "name": passkey.name,
        "aaguid": passkey.aaguid,
        "authenticator": passkey.authenticator,
        "attestation_format": passkey.attestation_format,
        "trust": passkey.trust,
        "assurance": passkey.assurance.name(),
        "backup_eligible": passkey.credential.backup_eligible,
        "counter": passkey.credential.counter,
        "created_at": passkey.created_at,
        "last_used_at": passkey.last_used_at,
        "clone_warning_at": passkey.clone_warning_at,
    })
}

/// Starts registering a passkey. A user who has passkeys must have proved one recently, so
/// that a stolen session cannot add the thief's passkey.
pub async fn register_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RegisterOptionsRequest>, JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match json_post_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Some(name) = body.ok().and_then(|Json(body)| valid_name(&body.name)) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "Give the passkey a name of 1 to 64 characters.",
        );
    };
    let existing = match state.store.list_passkeys(&current.user.id) {
        Ok(existing) => existing,
        Err(error) => return internal_error("passkey_register", &error),
    };
    if !existing.is_empty() {
        if let Err(response) = step_up::require_json(&state, &current, None, routes::PASSKEYS, now)
        {
            return response;
        }
    }
    let started = {
        let mut rng = rand::thread_rng();
        state
            .passkeys
            .start_registration(&current.user, &name, &existing, now, &mut rng)
    };
    match started {
        Ok(started) => store_ceremony(&state, started.ceremony, json!(started.options)).await,
        Err(error) => passkey_json_error(&state, "passkey_register", &error),
    }
}

/// Verifies a registration and stores the passkey.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RegisterRequest>, JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match json_post_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Json(body)) = body else {
        let error = PasskeyError::MalformedResponse("registration body".into());
        return passkey_json_error(&state, "passkey_register", &error);
    };
    match finish_registration(&state, &current, &body, now).await {
        Ok(passkey) => Json(passkey_json(&passkey)).into_response(),
        Err(Failure::Passkey(error)) => passkey_json_error(&state, "passkey_register", &error),
        Err(Failure::Store(error)) => internal_error("passkey_register", &error),
    }
}

async fn finish_registration(
    state: &AppState,
    current: &CurrentSession,
    body: &RegisterRequest,
    now: u64,
) -> Result<PasskeyRecord, Failure> {
    let ceremony = consume_ceremony(state, &body.ceremony)?;
    let owner_matches = matches!(
        &ceremony.purpose,
        CeremonyPurpose::Register { user_id, .. } if *user_id == current.user.id
    );
    if !owner_matches {
        return Err(PasskeyError::WrongCeremony.into());
    }
    let passkey = state
        .passkeys
        .finish_registration(&ceremony, &body.credential, now)?;
    if !state.store.insert_passkey(&passkey)? {
        return Err(PasskeyError::DuplicateCredential.into());
    }
    state.store.sync().await?;
    tracing::info!(
        target: "security",
        passkey = %passkey.id,
        user = %passkey.user_id,
        aaguid = %passkey.aaguid,
        format = %passkey.attestation_format,
        trust = ?passkey.trust,
        assurance = passkey.assurance.name(),
        "passkey registered"
    );
    state.audit(&Event::allowed(
        format!("user:{}", passkey.user_id),
        "passkey.register",
        format!("passkey:{}", passkey.id),
    ));
    Ok(passkey)
}

/// Renames one of the user's passkeys.
pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<RenameForm>, FormRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match page_post_session(&state, &headers, now, "passkey_rename") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Some(name) = form.ok().and_then(|Form(form)| valid_name(&form.name)) else {
        return passkeys_notice(
            &state,
            &current,
            "Give the passkey a name of 1 to 64 characters.",
        );
    };
    match own_passkey(&state, &current, &id) {
        Ok(Some(mut passkey)) => {
            passkey.name = name;
            let saved = state.store.update_passkey(&passkey);
            match saved {
                Ok(()) => Redirect::to(routes::PASSKEYS).into_response(),
                Err(error) => internal_error("passkey_rename", &error),
            }
        }
        Ok(None) => passkeys_notice(&state, &current, "That passkey does not exist."),
        Err(error) => internal_error("passkey_rename", &error),
    }
}

/// Removes one of the user's passkeys after a recent passkey proof.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = state.clock.now();
    let current = match page_post_session(&state, &headers, now, "passkey_remove") {
        Ok(current) => current,
        Err(response) => return response,
    };
    if let Err(response) = step_up::require_page(&state, &current, None, routes::PASSKEYS, now) {
        return response;
    }
    match own_passkey(&state, &current, &id) {
        Ok(Some(passkey)) => {
            match delete(&state, &passkey, &current.session.record.id, now).await {
                Ok(()) => Redirect::to(routes::PASSKEYS).into_response(),
                Err(error) => internal_error("passkey_remove", &error),
            }
        }
        Ok(None) => passkeys_notice(&state, &current, "That passkey does not exist."),
        Err(error) => internal_error("passkey_remove", &error),
    }
}

/// Removes a passkey and ends the user's other live sessions that it proved, so that a session
/// taken with a lost or stolen passkey stops when its owner removes the passkey. The session
/// making the request stays: its owner has just proved it with step-up.
async fn delete(
    state: &AppState,
    passkey: &PasskeyRecord,
    current_session_id: &str,
    now: u64,
) -> Result<(), StoreError> {
    state.store.delete_passkey(&passkey.id)?;
    state.store.sync().await?;
    tracing::info!(target: "security", passkey = %passkey.id, user = %passkey.user_id, "passkey removed");
    let actor = format!("user:{}", passkey.user_id);
    state.audit(&Event::allowed(
        actor.clone(),
        "passkey.remove",
        format!("passkey:{}", passkey.id),
    ));

    let proved_by_passkey = state
        .store
        .list_sessions(Some(&passkey.user_id))?
        .into_iter()
        .filter(|session| session.id != current_session_id && session.is_live(now))
        .filter(|session| session.passkey_id.as_deref() == Some(passkey.id.as_str()));
    for session in proved_by_passkey {
        let revoked = SessionState::Revoked {
            at: now,
            by: actor.clone(),
        };
        if super::api::end_session(state, &session.id, revoked, now)
            .await?
            .is_some()
        {
            tracing::info!(target: "security", session = %session.id, passkey = %passkey.id, "session ended with its passkey");
            state.audit(&Event::allowed(
                actor.clone(),
                "session.revoke",
                format!("session:{}", session.id),
            ));
        }
    }
    Ok(())
}

/// Finds a passkey of the signed-in user; another user's passkey reads as missing.
fn own_passkey(
    state: &AppState,
    current: &CurrentSession,
    id: &str,
) -> Result<Option<PasskeyRecord>, StoreError> {
    Ok(state
        .store
        .find_passkey(id)?
        .filter(|passkey| passkey.user_id == current.user.id))
}

fn passkeys_notice(state: &AppState, current: &CurrentSession, notice: &str) -> Response {
    let notice = format!(r#"<p class="notice">{}</p>"#, super::views::escape(notice));
    match state.store.list_passkeys(&current.user.id) {
        Ok(passkeys) => (
            StatusCode::BAD_REQUEST,
            Html(passkey_views::passkeys_page(&passkeys, &notice)),
        )
            .into_response(),
        Err(error) => internal_error("passkeys", &error),
    }
}

pub(super) fn valid_name(name: &str) -> Option<String> {
    let name = name.trim();
    let length = name.chars().count();
    let printable = name.chars().all(|c| !c.is_control());
    (length > 0 && length <= MAX_NAME_CHARS && printable).then(|| name.to_owned())
}

/// Stores a started ceremony and returns its id and the browser's options.
pub(super) async fn store_ceremony(
    state: &AppState,
    ceremony: CeremonyRecord,
    options: serde_json::Value,
) -> Response {
    if let Err(error) = state.store.insert_ceremony(&ceremony) {
        return internal_error("passkey_ceremony", &error);
    }
    if let Err(error) = state.store.sync().await {
        return internal_error("passkey_ceremony", &error);
    }
    let mut body = options;
    body["ceremony"] = json!(ceremony.id);
    Json(body).into_response()
}

/// Builds a JSON error with a code for scripts and a sentence for the person.
pub(super) fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

pub(super) fn passkey_json_error(
    state: &AppState,
    endpoint: &'static str,
    error: &PasskeyError,
) -> Response {
    tracing::info!(target: "security", endpoint, reason = %error, "passkey ceremony rejected");
    state.audit(&Event::refused(
        "peer",
        "passkey.ceremony",
        endpoint,
        error.code(),
    ));
    state.metrics.refuse(endpoint, error.code());
    let status = match error {
        _ if error.code() == "not_approved" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    json_error(status, error.code(), error.person_message())
}
