//! Finding the signed-in, bound session behind a request's cookie.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, ORIGIN};

use super::AppState;
use crate::clock::UnixTime;
use crate::crypto::Secret;
use crate::crypto::secret::constant_time_eq;
use crate::dbsc::headers;
use crate::store::{SessionRecord, StoreError, UserRecord, Versioned};

/// A request's bound session and its user.
#[derive(Debug)]
pub struct CurrentSession {
    pub session: Versioned<SessionRecord>,
    pub user: UserRecord,
}

/// The reason a request is not authenticated. Logged, never shown to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    NoCookie,
    MalformedCookie,
    UnknownSession,
    NotBound,
    Ended,
    WrongCredential,
    CookieExpired,
    /// The browser reported a skipped refresh, so the request is treated as unbound.
    RefreshSkipped,
    UserDisabled,
}

impl Unauthenticated {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoCookie => "no_cookie",
            Self::MalformedCookie => "malformed_cookie",
            Self::UnknownSession => "unknown_session",
            Self::NotBound => "not_bound",
            Self::Ended => "session_ended",
            Self::WrongCredential => "wrong_credential",
            Self::CookieExpired => "cookie_expired",
            Self::RefreshSkipped => "refresh_skipped",
            Self::UserDisabled => "user_disabled",
        }
    }
}

#[derive(Debug)]
pub enum AuthError {
    Unauthenticated(Unauthenticated),
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Authenticates a request by its bound cookie: a live, bound session whose current credential
/// the cookie carries and whose last proof is within the cookie lifetime.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    now: UnixTime,
) -> Result<CurrentSession, AuthError> {
    log_skipped_refresh(headers)?;

    let (session_id, credential) = read_cookie(state, headers)?;
    let session = state
        .store
        .find_session(session_id)?
        .ok_or(AuthError::Unauthenticated(Unauthenticated::UnknownSession))?;
    check_session(&session.record, &credential, now).map_err(AuthError::Unauthenticated)?;

    let user = state
        .store
        .find_user(&session.record.user_id)?
        .ok_or(AuthError::Unauthenticated(Unauthenticated::UnknownSession))?;
    if user.is_disabled() {
        return Err(AuthError::Unauthenticated(Unauthenticated::UserDisabled));
    }
    Ok(CurrentSession { session, user })
}

/// Reads the session id and credential from the request's bound cookie.
pub fn read_cookie<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
) -> Result<(&'h str, Secret), AuthError> {
    let value = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .find_map(|header| state.policy.cookie.find(header))
        .ok_or(AuthError::Unauthenticated(Unauthenticated::NoCookie))?;
    let (session_id, credential) = value
        .split_once('.')
        .filter(|(id, credential)| !id.is_empty() && !credential.is_empty())
        .ok_or(AuthError::Unauthenticated(Unauthenticated::MalformedCookie))?;
    Ok((session_id, Secret::from_string(credential.to_owned())))
}

/// Finds the session whose current or just-replaced credential the cookie carries, whether or
/// not that credential has expired, and returns its id.
pub fn session_for_sign_out(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<String>, StoreError> {
    let (session_id, credential) = match read_cookie(state, headers) {
        Ok(cookie) => cookie,
        Err(AuthError::Store(error)) => return Err(error),
        Err(AuthError::Unauthenticated(_)) => return Ok(None),
    };
    let Some(session) = state.store.find_session(session_id)? else {
        return Ok(None);
    };
    let digest = credential.digest();
    let record = &session.record;
    let matches = [record.credential_digest, record.previous_credential_digest]
        .into_iter()
        .flatten()
        .any(|expected| constant_time_eq(&digest, &expected));
    Ok(matches.then(|| record.id.clone()))
}

fn check_session(
    session: &SessionRecord,
    credential: &Secret,
    now: UnixTime,
) -> Result<(), Unauthenticated> {
    if !session.is_live(now) {
        return Err(Unauthenticated::Ended);
    }
    if !session.is_bound() {
        return Err(Unauthenticated::NotBound);
    }
    let digest = credential.digest();
    let current = session
        .credential_digest
        .is_some_and(|expected| constant_time_eq(&digest, &expected));
    let previous = session
        .previous_credential_digest
        .is_some_and(|expected| constant_time_eq(&digest, &expected));

    // A copied cookie stops working when the credential's lifetime ends, even if the attacker
    // keeps the cookie past its Max-Age.
    let expires_at = match (current, previous) {
        (true, _) => session.credential_expires_at,
        (false, true) => session.previous_credential_expires_at,
        (false, false) => return Err(Unauthenticated::WrongCredential),
    };
    if now >= expires_at {
        return Err(Unauthenticated::CookieExpired);
    }
    Ok(())
}

/// `Secure-Session-Skipped` means the browser could not refresh; the request is not bound.
fn log_skipped_refresh(headers: &HeaderMap) -> Result<(), AuthError> {
    let Some(value) = headers.get(headers::SKIPPED) else {
        return Ok(());
    };
    match headers::parse_skipped(value.as_bytes()) {
        Ok(entries) => {
            for entry in entries {
                tracing::info!(
                    target: "security",
                    reason = %entry.reason,
                    session = entry.session_identifier.as_deref().unwrap_or("-"),
                    "browser skipped a DBSC refresh; request treated as unbound"
                );
            }
        }
        Err(error) => {
            tracing::info!(target: "security", %error, "malformed Secure-Session-Skipped header");
        }
    }
    Err(AuthError::Unauthenticated(Unauthenticated::RefreshSkipped))
}

/// Rejects a state-changing request from another origin. Browsers send `Origin` on every
/// cross-origin POST; a request without it came from a same-origin form or a non-browser client.
pub fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get(ORIGIN)
        .is_none_or(|origin| origin.as_bytes() == state.policy.origin.as_bytes())
}
