//! Registering a first passkey through an operator's invitation, without signing in.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs_core::proto::RegisterPublicKeyCredential;

use super::pages::internal_error;
use super::passkeys::{Failure, consume_ceremony, json_error, passkey_json_error, store_ceremony};
use super::{AppState, passkey_views, routes};
use crate::passkey::PasskeyError;
use crate::store::{CeremonyPurpose, PasskeyRecord};

/// Longest accepted invitation secret, in characters.
const MAX_INVITE_LEN: usize = 64;

#[derive(Deserialize)]
pub struct EnrollQuery {
    invite: Option<String>,
}

#[derive(Deserialize)]
pub struct EnrollOptionsRequest {
    invite: String,
    name: String,
}

#[derive(Deserialize)]
pub struct EnrollRequest {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

/// Shows the invitation page. The invitation is checked when the passkey is created.
pub async fn page(Query(query): Query<EnrollQuery>) -> Response {
    let invite = query.invite.unwrap_or_default();
    let plausible = !invite.is_empty()
        && invite.len() <= MAX_INVITE_LEN
        && invite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        let body = "<p>This invitation link is incomplete. Copy the whole link, or ask your administrator for a new one.</p>";
        return (
            StatusCode::BAD_REQUEST,
            Html(super::views::page("Invitation", body)),
        )
            .into_response();
    }
    Html(passkey_views::enroll_page(&invite)).into_response()
}

/// Starts the registration of the invited user's passkey. The invitation is spent when the
/// registration verifies.
pub async fn options(
    State(state): State<AppState>,
    body: Result<Json<EnrollOptionsRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The invitation and a passkey name are needed.",
        );
    };
    let Some(name) = super::passkeys::valid_name(&body.name) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "Give the passkey a name of 1 to 64 characters.",
        );
    };
    let now = state.clock.now();
    let started = match start(&state, &body.invite, &name, now) {
        Ok(started) => started,
        Err(Failure::Passkey(error)) => return invite_error(&state, &error),
        Err(Failure::Store(error)) => return internal_error("passkey_enroll", &error),
    };
    store_ceremony(&state, started.ceremony, json!(started.options)).await
}

fn start(
    state: &AppState,
    invite_id: &str,
    name: &str,
    now: u64,
) -> Result<crate::passkey::Started<webauthn_rs_core::proto::CreationChallengeResponse>, Failure> {
    let invite = state
        .store
        .find_ceremony(invite_id)?
        .ok_or(PasskeyError::UnknownCeremony)?;
    let CeremonyPurpose::Invite { user_id } = &invite.purpose else {
        return Err(PasskeyError::WrongCeremony.into());
    };
    let user = state
        .store
        .find_user(user_id)?
        .ok_or(PasskeyError::UnknownCeremony)?;
    if user.is_disabled() {
        return Err(PasskeyError::UserDisabled.into());
    }
    let existing = state.store.list_passkeys(&user.id)?;
    let mut rng = rand::thread_rng();
    Ok(state
        .passkeys
        .start_enrollment(&invite, &user, name, &existing, now, &mut rng)?)
}

/// Verifies the invited user's new passkey and stores it.
pub async fn finish(
    State(state): State<AppState>,
    body: Result<Json<EnrollRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        let error = PasskeyError::MalformedResponse("enrollment body".into());
        return passkey_json_error(&state, "passkey_enroll", &error);
    };
    let now = state.clock.now();
    match register(&state, &body, now).await {
        Ok(passkey) => {
            tracing::info!(
                target: "security",
                passkey = %passkey.id,
                user = %passkey.user_id,
                assurance = passkey.assurance.name(),
                "first passkey registered through an invitation"
            );
            state.audit(&crate::audit::Event::allowed(
                format!("user:{}", passkey.user_id),
                "passkey.register",
                format!("passkey:{}", passkey.id),
            ));
            Json(json!({ "redirect": routes::LOGIN })).into_response()
        }
        Err(Failure::Passkey(error)) => passkey_json_error(&state, "passkey_enroll", &error),
        Err(Failure::Store(error)) => internal_error("passkey_enroll", &error),
    }
}

async fn register(
    state: &AppState,
    body: &EnrollRequest,
    now: u64,
) -> Result<PasskeyRecord, Failure> {
    let ceremony = consume_ceremony(state, &body.ceremony)?;
    let CeremonyPurpose::Enroll {
        invite, user_id, ..
    } = &ceremony.purpose
    else {
        return Err(PasskeyError::WrongCeremony.into());
    };
    // The user may have been disabled since the options were issued.
    if state.store.user_disabled(user_id)? {
        return Err(PasskeyError::UserDisabled.into());
    }
    let passkey = state
        .passkeys
        .finish_registration(&ceremony, &body.credential, now)?;
    // The invitation is spent only by a registration that verified, and only once.
    consume_ceremony(state, invite)?;
    if !state.store.insert_passkey(&passkey)? {
        return Err(PasskeyError::DuplicateCredential.into());
    }
    state.store.sync().await?;
    Ok(passkey)
}

fn invite_error(state: &AppState, error: &PasskeyError) -> Response {
    tracing::info!(target: "security", reason = %error, "passkey invitation rejected");
    state.metrics.refuse("passkey_enroll", error.code());
    json_error(
        StatusCode::BAD_REQUEST,
        "invalid_invitation",
        "This invitation has expired or was already used. Ask your administrator for a new one.",
    )
}

/// The invitation made for an operator, as the admin API returns it.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct InviteView {
    pub user: String,
    pub url: String,
    pub expires_at: u64,
}

/// Admin API: invites user `name` to register a first passkey, creating a passkey-only account
/// if there is none.
pub async fn invite(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(response) = super::admin::check_admin(&state, peer, &headers) {
        return response;
    }
    let now = state.clock.now();
    match create_invite(&*state.store, &name, &state.policy.origin, now).await {
        Ok(Ok(view)) => (StatusCode::CREATED, Json(view)).into_response(),
        Ok(Err(message)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_request", "error_description": message })),
        )
            .into_response(),
        Err(error) => super::api::api_error_store(&error),
    }
}

/// Creates the user if needed and an invitation for them; the outer error is the store's, the
/// inner one the operator's input.
pub async fn create_invite(
    store: &dyn crate::store::Store,
    name: &str,
    origin: &str,
    now: u64,
) -> Result<Result<InviteView, String>, crate::store::StoreError> {
    let (user, invite) = match invite_records(store, name, now)? {
        Ok(records) => records,
        Err(message) => return Ok(Err(message)),
    };
    store.sync().await?;
    Ok(Ok(InviteView {
        user,
        url: format!("{origin}{}?invite={}", routes::ENROLL, invite.id),
        expires_at: invite.expires_at,
    }))
}

/// Writes the user (if new) and the invitation; returns the user name and the invitation.
fn invite_records(
    store: &dyn crate::store::Store,
    name: &str,
    now: u64,
) -> Result<Result<(String, crate::store::CeremonyRecord), String>, crate::store::StoreError> {
    let mut rng = rand::thread_rng();
    let user = match store.find_user_by_name(name)? {
        Some(user) => user,
        None => {
            let user = match crate::account::new_passkey_user(name, now, &mut rng) {
                Ok(user) => user,
                Err(error) => return Ok(Err(error.to_string())),
            };
            if !store.insert_user(&user)? {
                return Ok(Err(format!(
                    "a user named {name:?} was created at the same time"
                )));
            }
            user
        }
    };
    if user.is_disabled() {
        return Ok(Err(format!(
            "user {name:?} is disabled; run `devbound user enable {name}` first"
        )));
    }
    let invite = crate::passkey::invite::new_invite(&user.id, now, &mut rng);
    store.insert_ceremony(&invite)?;
    let event =
        crate::audit::Event::allowed("operator", "passkey.invite", format!("user:{}", user.id));
    store.append_audit(&mut |previous| crate::audit::seal(previous, now, &event))?;
    tracing::info!(target: "security", user = %user.id, name = %user.name, "passkey invitation created");
    Ok(Ok((user.name, invite)))
}
