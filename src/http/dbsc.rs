//! The DBSC registration and refresh endpoints.
//!
//! Status codes follow what Chromium does with them. A 403 with a challenge makes it sign and
//! retry, and a 200 with `continue: false` ends the session cleanly. Any other 4xx also ends the
//! session, while a 5xx keeps it for a later attempt. So a refresh with a bad proof gets a new
//! challenge rather than a 401, and a store failure is a 500.

use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::audit::Event;
use crate::clock::UnixTime;
use crate::dbsc::{self, DbscError, Issued, SessionInstructions, headers, proof};
use crate::metrics::Outcome;
use crate::store::{SessionRecord, SessionState, StoreError, Update, Versioned};

/// Maximum length of a `Sec-Secure-Session-Id` that is looked up. devbound's own ids are 22
/// characters.
const MAX_SESSION_ID_LEN: usize = 64;

/// How often a refresh retries after another request changed the session under it.
const MAX_UPDATE_ATTEMPTS: usize = 3;

enum Failure {
    Rejected(DbscError),
    /// The request is malformed and names no session to respond for.
    BadRequest(&'static str),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<DbscError> for Failure {
    fn from(error: DbscError) -> Self {
        Self::Rejected(error)
    }
}

/// Handles a registration. Both DBSC handlers take the whole request, because axum's
/// `HeaderMap` extractor would copy every header.
pub async fn register(State(state): State<AppState>, request: Request) -> Response {
    let now = state.clock.now();
    match register_session(&state, request.headers(), now).await {
        Ok(issued) => {
            tracing::info!(
                target: "security",
                session = %issued.session.id,
                user = %issued.session.user_id,
                alg = %issued.session.key.as_ref().map_or("-", |key| key.alg.name()),
                assurance = issued.session.assurance.name(),
                "DBSC session bound"
            );
            state.audit(&Event::allowed(
                format!("user:{}", issued.session.user_id),
                "session.bind",
                format!("session:{}", issued.session.id),
            ));
            count(&state, "registration", "bound");
            renewed_response(&state, &issued)
        }
        Err(Failure::Rejected(error)) => {
            tracing::info!(target: "security", reason = error.reason(), %error, "DBSC registration rejected");
            state.audit(&Event::refused(
                "peer",
                "session.bind",
                "registration",
                error.reason(),
            ));
            state.metrics.refuse("registration", error.reason());
            count(&state, "registration", "rejected");
            let code = match error {
                DbscError::UnknownChallenge | DbscError::ChallengeExpired => "invalid_challenge",
                DbscError::MissingAuthorization | DbscError::WrongAuthorization => {
                    "invalid_authorization"
                }
                DbscError::NotPending
                | DbscError::ChallengeMismatch
                | DbscError::SessionEnded
                | DbscError::DeviceRevoked
                | DbscError::UserDisabled => "invalid_session",
                DbscError::DeviceKeyMismatch => "invalid_key",
                _ => "invalid_proof",
            };
            error_response(StatusCode::BAD_REQUEST, code)
        }
        Err(Failure::BadRequest(reason)) => {
            tracing::info!(target: "security", reason, "DBSC registration rejected");
            state.metrics.refuse("registration", reason);
            error_response(StatusCode::BAD_REQUEST, "invalid_request")
        }
        Err(Failure::Store(error)) => server_error("registration", &error),
    }
}

/// Verifies a registration proof, consumes its challenge and binds the pending session.
async fn register_session(
    state: &AppState,
    request: &HeaderMap,
    now: UnixTime,
) -> Result<Issued, Failure> {
    let token =
        read_header(request, headers::RESPONSE)?.ok_or(Failure::BadRequest("missing_proof"))?;
    let policy = &state.policy;
    let proof = proof::verify_registration(&token, &policy.algorithms, &policy.register_url())?;

    let challenge = state
        .store
        .find_challenge(&proof.challenge)?
        .ok_or(DbscError::UnknownChallenge)?;
    let session = state
        .store
        .find_session(&challenge.session_id)?
        .ok_or(DbscError::ChallengeMismatch)?;
    // Disabling a user revokes their sessions, but a sign-in that checked the password just
    // before can store one after. Ending it here keeps it from binding once the user is enabled.
    if state.store.user_disabled(&session.record.user_id)? {
        state.store.consume_challenge(&challenge.value)?;
        let revoked = SessionState::Revoked {
            at: now,
            by: "operator".into(),
        };
        super::api::end_stored_session(state.store.as_ref(), &session.record.id, revoked, now)?;
        state.store.sync().await?;
        return Err(DbscError::UserDisabled.into());
    }
    let issued = {
        let mut rng = rand::thread_rng();
        dbsc::complete_registration(policy, &session.record, &challenge, proof, now, &mut rng)?
    };
    // A device's session must be registered with the key its TPM certified, and then has the
    // device's assurance.
    let device = super::devices::session_device(state, session.record.device_id.as_deref())?;
    let issued = Issued {
        session: crate::device::bind_to_device(issued.session, device.as_ref())?,
        credential: issued.credential,
    };

    // Every check passed; the challenge is now spent, exactly once.
    if state.store.consume_challenge(&challenge.value)?.is_none() {
        return Err(DbscError::UnknownChallenge.into());
    }
    if state.store.update_session(&session, &issued.session)? == Update::Conflict {
        return Err(DbscError::NotPending.into());
    }
    state.store.sync().await?;
    Ok(issued)
}

pub async fn refresh(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let now = state.clock.now();
    let response = refresh_session(&state, request.headers(), now).await;
    state
        .metrics
        .refresh_latency
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn refresh_session(state: &AppState, request: &HeaderMap, now: UnixTime) -> Response {
    let session_id = match read_header(request, headers::SESSION_ID) {
        Ok(Some(id)) if id.len() <= MAX_SESSION_ID_LEN => id,
        Ok(_) | Err(_) => {
            state.metrics.refuse("refresh", "missing_session_id");
            count(state, "refresh", "rejected");
            return error_response(StatusCode::BAD_REQUEST, "invalid_request");
        }
    };
    let session = match state.store.find_session(&session_id) {
        Ok(Some(session)) if session.record.is_bound() && session.record.is_live(now) => session,
        Ok(found) => return terminate(state, &session_id, found.as_ref().map(|s| &s.record)),
        Err(error) => return server_error("refresh", &error),
    };
    // Revoking a device revokes its sessions; this also ends one that raced the revocation.
    if let Some(device_id) = &session.record.device_id {
        match super::devices::device_revoked(state, device_id) {
            Ok(false) => {}
            Ok(true) => return terminate(state, &session_id, Some(&session.record)),
            Err(error) => return server_error("refresh", &error),
        }
    }

    // A repeated or malformed proof header counts as no proof: the browser gets a challenge.
    let token = read_header(request, headers::RESPONSE).unwrap_or_default();
    let Some(token) = token else {
        return challenge(state, session, now).await;
    };
    match check_proof(state, &session.record, &token, now) {
        Ok(()) => renew(state, session, now).await,
        Err(error) => {
            tracing::info!(
                target: "security",
                session = %session.record.id,
                reason = error.reason(),
                %error,
                "DBSC refresh proof rejected; sending a new challenge"
            );
            state.metrics.refuse("refresh", error.reason());
            let session_ref = format!("session:{}", session.record.id);
            state.audit(&Event::refused(
                session_ref.clone(),
                "session.refresh",
                session_ref,
                error.reason(),
            ));
            challenge(state, session, now).await
        }
    }
}

fn check_proof(
    state: &AppState,
    session: &SessionRecord,
    token: &str,
    now: UnixTime,
) -> Result<(), DbscError> {
    let key = session.key.as_ref().ok_or(DbscError::NotBound)?;
    let proof = proof::verify_refresh(token, key, &state.policy.refresh_url())?;
    dbsc::check_refresh_proof(session, &proof, now)
}

/// Stores a new credential and the next challenge, and responds 200 with both.
async fn renew(state: &AppState, session: Versioned<SessionRecord>, now: UnixTime) -> Response {
    let issued = {
        let mut rng = rand::thread_rng();
        dbsc::renew(&state.policy, &session.record, now, &mut rng)
    };
    match state.store.update_session(&session, &issued.session) {
        Ok(Update::Applied) => {}
        // A concurrent refresh spent the challenge first; this proof is stale.
        Ok(Update::Conflict) => return challenge_latest(state, &session.record.id, now).await,
        Err(error) => return server_error("refresh", &error),
    }
    if let Err(error) = state.store.sync().await {
        return server_error("refresh", &error);
    }

    tracing::debug!(target: "security", session = %issued.session.id, "DBSC session refreshed");
    count(state, "refresh", "renewed");
    renewed_response(state, &issued)
}

/// Responds 403 with the session's outstanding challenge, or a new one if it has none left.
///
/// Reusing an unexpired challenge means that a request without a proof, which anyone with
/// the session id can send, cannot replace the challenge the browser has cached.
async fn challenge(state: &AppState, session: Versioned<SessionRecord>, now: UnixTime) -> Response {
    if dbsc::outstanding_challenge(&session.record, now).is_some() {
        return challenge_response(state, &session.record);
    }
    let mut current = session;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let next = {
            let mut rng = rand::thread_rng();
            dbsc::issue_challenge(&state.policy, &current.record, now, &mut rng)
        };
        match state.store.update_session(&current, &next) {
            Ok(Update::Applied) => return challenge_response(state, &next),
            Ok(Update::Conflict) => {}
            Err(error) => return server_error("refresh", &error),
        }
        current = match state.store.find_session(&current.record.id) {
            Ok(Some(session)) if session.record.is_bound() && session.record.is_live(now) => {
                session
            }
            Ok(found) => {
                return terminate(state, &current.record.id, found.as_ref().map(|s| &s.record));
            }
            Err(error) => return server_error("refresh", &error),
        };
    }
    server_error(
        "refresh",
        &StoreError::Database("session kept changing".into()),
    )
}

async fn challenge_latest(state: &AppState, session_id: &str, now: UnixTime) -> Response {
    match state.store.find_session(session_id) {
        Ok(Some(session)) if session.record.is_bound() && session.record.is_live(now) => {
            challenge(state, session, now).await
        }
        Ok(found) => terminate(state, session_id, found.as_ref().map(|s| &s.record)),
        Err(error) => server_error("refresh", &error),
    }
}

fn challenge_response(state: &AppState, session: &SessionRecord) -> Response {
    let Some(header) = challenge_header(session) else {
        return server_error(
            "refresh",
            &StoreError::Database("challenge not representable".into()),
        );
    };
    count(state, "refresh", "challenged");
    (
        StatusCode::FORBIDDEN,
        [(HeaderName::from_static(headers::CHALLENGE), header)],
    )
        .into_response()
}

/// Ends an unknown, expired, signed-out or revoked session in the browser.
fn terminate(state: &AppState, session_id: &str, session: Option<&SessionRecord>) -> Response {
    tracing::info!(
        target: "security",
        session = ?session_id,
        state = session.map_or("unknown", SessionRecord::state_name),
        "DBSC refresh for a session that is not live; telling the browser to end it"
    );
    count(state, "refresh", "terminated");
    let mut response = Json(SessionInstructions::terminate(session_id)).into_response();
    if let Ok(clear) = HeaderValue::from_str(&state.policy.cookie.clear()) {
        response.headers_mut().insert(SET_COOKIE, clear);
    }
    response
}

/// Builds the 200 response to a registration or refresh: `Set-Cookie`, the instructions JSON built from
/// the same cookie value, and the next challenge.
fn renewed_response(state: &AppState, issued: &Issued) -> Response {
    let policy = &state.policy;
    let instructions = SessionInstructions::live(
        &issued.session.id,
        &policy.refresh_url(),
        &policy.origin,
        &policy.cookie,
    );
    let cookie = policy.cookie.set(&issued.cookie_value(), policy.cookie_ttl);
    let (Ok(cookie), Some(challenge)) = (
        HeaderValue::from_str(&cookie),
        challenge_header(&issued.session),
    ) else {
        return server_error(
            "refresh",
            &StoreError::Database("cookie not representable".into()),
        );
    };

    let mut response = Json(instructions).into_response();
    let headers = response.headers_mut();
    headers.insert(SET_COOKIE, cookie);
    headers.insert(HeaderName::from_static(headers::CHALLENGE), challenge);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn challenge_header(session: &SessionRecord) -> Option<HeaderValue> {
    let challenge = session.challenge.as_ref()?;
    let value = headers::challenge(&challenge.value, &session.id).ok()?;
    HeaderValue::from_str(&value).ok()
}

/// Reads a header that carries one quoted or bare string.
fn read_header(request: &HeaderMap, name: &'static str) -> Result<Option<String>, Failure> {
    let mut values = request.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::BadRequest("repeated_header"));
    }
    headers::parse_string_or_bare(name, value.as_bytes())
        .map(Some)
        .map_err(|_| Failure::BadRequest("malformed_header"))
}

fn count(state: &AppState, endpoint: &'static str, outcome: &'static str) {
    let family = match endpoint {
        "registration" => &state.metrics.registrations,
        _ => &state.metrics.refreshes,
    };
    family.get_or_create(&Outcome { outcome }).inc();
}

fn error_response(status: StatusCode, code: &'static str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

fn server_error(endpoint: &'static str, error: &StoreError) -> Response {
    tracing::error!(endpoint, %error, "store failure while handling DBSC request");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
}
