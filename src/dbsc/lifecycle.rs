//! A DBSC session's lifecycle: sign-in, registration, challenges, refresh and its end.

use rand::{CryptoRng, RngCore};

use super::error::DbscError;
use super::proof::{RefreshProof, RegistrationProof};
use super::{BoundCookie, SECRET_BYTES, SESSION_ID_BYTES, headers};
use crate::clock::UnixTime;
use crate::crypto::secret::constant_time_eq;
use crate::crypto::{Algorithm, Secret};
use crate::store::{
    Assurance, PendingChallenge, RegistrationChallenge, SessionRecord, SessionState,
};

/// How long a credential replaced by a refresh keeps working, in seconds.
pub const REPLACED_CREDENTIAL_GRACE: u64 = 60;

/// The settings registration and refresh depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The external origin, such as `https://login.example.com`, with no path.
    pub origin: String,
    pub register_path: String,
    pub refresh_path: String,
    pub cookie: BoundCookie,
    /// Lifetime of the bound cookie, in seconds.
    pub cookie_ttl: u64,
    /// Lifetime of a session from sign-in, in seconds.
    pub session_ttl: u64,
    /// Lifetime of a challenge sent at sign-in or with a refresh 403, in seconds. A challenge
    /// sent ahead with a renewed cookie lives as long as the cookie if that is longer.
    pub challenge_ttl: u64,
    pub algorithms: Vec<Algorithm>,
}

impl Policy {
    pub fn register_url(&self) -> String {
        format!("{}{}", self.origin, self.register_path)
    }

    pub fn refresh_url(&self) -> String {
        format!("{}{}", self.origin, self.refresh_path)
    }
}

/// The start of a signed-in session: a pending session and the registration offered for it.
#[derive(Debug)]
pub struct SignIn {
    pub session: SessionRecord,
    pub challenge: RegistrationChallenge,
    /// The `Secure-Session-Registration` header value.
    pub registration_header: String,
}

/// A session with a fresh cookie credential.
#[derive(Debug)]
pub struct Issued {
    pub session: SessionRecord,
    pub credential: Secret,
}

impl Issued {
    /// Formats the cookie value: the session id and the credential, separated by a dot.
    pub fn cookie_value(&self) -> String {
        format!("{}.{}", self.session.id, self.credential.expose())
    }
}

/// Starts a pending session for `user_id` and the registration that will bind it.
///
/// The `authorization` value ties the registration to this sign-in: only its SHA-256 is kept,
/// and the registration proof must carry the value itself.
pub fn begin_sign_in(
    policy: &Policy,
    user_id: &str,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<SignIn, headers::HeaderError> {
    let session_id = Secret::generate(rng, SESSION_ID_BYTES).expose().to_owned();
    let challenge = Secret::generate(rng, SECRET_BYTES);
    let authorization = Secret::generate(rng, SECRET_BYTES);
    let registration_header = headers::registration(
        &policy.algorithms,
        &policy.register_path,
        challenge.expose(),
        authorization.expose(),
    )?;

    let session = SessionRecord {
        id: session_id.clone(),
        user_id: user_id.to_owned(),
        state: SessionState::Pending,
        created_at: now,
        expires_at: now + policy.challenge_ttl,
        authorization_digest: Some(authorization.digest()),
        key: None,
        assurance: Assurance::Software,
        challenge: None,
        credential_digest: None,
        credential_expires_at: 0,
        previous_credential_digest: None,
        previous_credential_expires_at: 0,
        last_proof_at: None,
        refresh_count: 0,
        passkey_id: None,
        passkey_proof_at: None,
        device_id: None,
    };
    let challenge = RegistrationChallenge {
        value: challenge.expose().to_owned(),
        session_id,
        expires_at: now + policy.challenge_ttl,
    };
    Ok(SignIn {
        session,
        challenge,
        registration_header,
    })
}

/// Binds a pending session to the key of a verified registration proof.
///
/// The caller has found `challenge` by the proof's `jti` and must still consume it atomically
/// before storing the result.
pub fn complete_registration(
    policy: &Policy,
    session: &SessionRecord,
    challenge: &RegistrationChallenge,
    proof: RegistrationProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Issued, DbscError> {
    if challenge.session_id != session.id {
        return Err(DbscError::ChallengeMismatch);
    }
    if now >= challenge.expires_at {
        return Err(DbscError::ChallengeExpired);
    }
    if session.state != SessionState::Pending || now >= session.expires_at {
        return Err(DbscError::NotPending);
    }

    // The registration must echo the `authorization` value offered at sign-in.
    let offered = session
        .authorization_digest
        .ok_or(DbscError::MissingAuthorization)?;
    let presented = proof
        .authorization
        .map(Secret::from_string)
        .ok_or(DbscError::MissingAuthorization)?;
    if !constant_time_eq(&presented.digest(), &offered) {
        return Err(DbscError::WrongAuthorization);
    }

    let mut bound = session.clone();
    bound.state = SessionState::Bound;
    bound.expires_at = now + policy.session_ttl;
    bound.authorization_digest = None;
    bound.key = Some(proof.key);
    // A browser's DBSC key is a software key; a passkey sign-in may already have set more.
    bound.assurance = bound.assurance.max(Assurance::Software);
    Ok(renew(policy, &bound, now, rng))
}

/// Replaces the session's outstanding challenge with a new one.
pub fn issue_challenge(
    policy: &Policy,
    session: &SessionRecord,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> SessionRecord {
    with_new_challenge(session, now + policy.challenge_ttl, rng)
}

fn with_new_challenge(
    session: &SessionRecord,
    expires_at: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> SessionRecord {
    let mut next = session.clone();
    next.challenge = Some(PendingChallenge {
        value: Secret::generate(rng, SECRET_BYTES).expose().to_owned(),
        expires_at,
    });
    next
}

/// Returns the session's challenge if it has one that has not expired at `now`.
pub fn outstanding_challenge(session: &SessionRecord, now: UnixTime) -> Option<&PendingChallenge> {
    session
        .challenge
        .as_ref()
        .filter(|challenge| now < challenge.expires_at)
}

/// Checks that a verified refresh proof signs the session's outstanding challenge.
pub fn check_refresh_proof(
    session: &SessionRecord,
    proof: &RefreshProof,
    now: UnixTime,
) -> Result<(), DbscError> {
    if !session.is_bound() {
        return Err(DbscError::NotBound);
    }
    if !session.is_live(now) {
        return Err(DbscError::SessionEnded);
    }
    let Some(outstanding) = &session.challenge else {
        return Err(DbscError::UnknownChallenge);
    };
    if !constant_time_eq(outstanding.value.as_bytes(), proof.challenge.as_bytes()) {
        return Err(DbscError::ChallengeMismatch);
    }
    if now >= outstanding.expires_at {
        return Err(DbscError::ChallengeExpired);
    }
    Ok(())
}

/// Records a successful proof: a new cookie credential, and the next challenge issued ahead so
/// that the following refresh needs one request.
pub fn renew(
    policy: &Policy,
    session: &SessionRecord,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Issued {
    let credential = Secret::generate(rng, SECRET_BYTES);

    // Chromium caches this challenge and signs it for the refresh it makes about 2 minutes
    // before the cookie expires, so the challenge lives at least as long as the cookie.
    let challenge_expires_at = now + policy.cookie_ttl.max(policy.challenge_ttl);
    let mut next = with_new_challenge(session, challenge_expires_at, rng);

    // Chromium may send a request with the old cookie while a refresh is in flight, so the
    // replaced credential keeps working for a short grace period, never past its own expiry.
    next.previous_credential_digest = session.credential_digest;
    next.previous_credential_expires_at = session
        .credential_expires_at
        .min(now + REPLACED_CREDENTIAL_GRACE);
    next.credential_digest = Some(credential.digest());
    next.credential_expires_at = now + policy.cookie_ttl;
    next.last_proof_at = Some(now);
    next.refresh_count += u64::from(session.is_bound() && session.last_proof_at.is_some());
    Issued {
        session: next,
        credential,
    }
}

/// Ends a session: the user signed out, or someone revoked it.
pub fn end_session(session: &SessionRecord, state: SessionState) -> SessionRecord {
    let mut ended = session.clone();
    ended.state = state;
    ended.challenge = None;
    ended.credential_digest = None;
    ended.previous_credential_digest = None;
    ended
}
