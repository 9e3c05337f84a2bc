//! The device authorization grant (RFC 8628): an agent without a browser gets its first
//! delegation from its owner, bound to the agent's session key.

use rand::{CryptoRng, Rng, RngCore};

use super::token_exchange::Issuer;
use super::{GRANT_TOKEN_TTL, OAuthError, access_token, dpop::DpopProof, gate};
use crate::clock::UnixTime;
use crate::crypto::Secret;
use crate::dbsc::{self, Policy};
use crate::store::{
    AccessTokenClaims, AgentRecord, Assurance, Confirmation, DeviceGrantRecord, DeviceGrantStatus,
    SessionRecord, SessionState, Store, TokenLineage, Update, UserRecord,
};

/// Lifetime of a device code, in seconds (RFC 8628 §3.2 `expires_in`).
pub const DEVICE_CODE_TTL: u64 = 600;
/// Minimum seconds between polls (RFC 8628 §3.2 `interval`).
pub const POLL_INTERVAL: u64 = 5;
/// How much a `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: u64 = 5;
/// RFC 8628 §6.1: a base-20 alphabet without vowels, so codes spell no words and are easy to
/// type, with 8 characters for about 34.5 bits of entropy.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
const DEVICE_CODE_BYTES: usize = 32;
/// How often a new user code is drawn when the first one is taken.
const USER_CODE_ATTEMPTS: usize = 4;

/// A device authorization request (RFC 8628 §3.1).
#[derive(Debug)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub scope: Option<String>,
    /// devbound extension: an existing bound device session whose key made the DPoP proof.
    pub session_id: Option<String>,
}

/// The response to a device authorization request (RFC 8628 §3.2), before URLs are added.
#[derive(Debug)]
pub struct Authorization {
    pub device_code: Secret,
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// The token the device grant issues: for devbound itself, good only for token exchange.
#[derive(Debug)]
pub struct GrantIssued {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub session_id: String,
}

/// Starts a device authorization for the agent `client_id`, bound to the DPoP proof's key.
pub fn authorize(
    store: &dyn Store,
    request: &AuthorizationRequest,
    proof: &DpopProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Authorization, OAuthError> {
    let agent = store
        .find_agent(&request.client_id)?
        .ok_or(OAuthError::UnknownAgent)?;
    gate::check_agent(&agent)?;
    let scope = requested_scope(&agent, request.scope.as_deref())?;
    if let Some(session_id) = &request.session_id {
        check_device_session(store, &agent, session_id, &proof.jkt, now)?;
    }

    let device_code = Secret::generate(rng, DEVICE_CODE_BYTES);
    for _ in 0..USER_CODE_ATTEMPTS {
        let user_code = generate_user_code(rng);
        let grant = DeviceGrantRecord {
            device_code_digest: crate::crypto::base64url::encode(device_code.digest()),
            user_code: user_code.clone(),
            agent_id: agent.id.clone(),
            jkt: proof.jkt.clone(),
            scope: scope.clone(),
            session_id: request.session_id.clone(),
            expires_at: now + DEVICE_CODE_TTL,
            interval: POLL_INTERVAL,
            last_poll_at: None,
            status: DeviceGrantStatus::Pending,
        };
        if store.insert_device_grant(&grant)? {
            return Ok(Authorization {
                device_code,
                user_code: format_user_code(&user_code),
                expires_in: DEVICE_CODE_TTL,
                interval: POLL_INTERVAL,
            });
        }
    }
    Err(OAuthError::Store(crate::store::StoreError::Database(
        "no free user code".into(),
    )))
}

/// Records the owner's decision on the grant with `user_code`. Only the agent's owner may
/// decide, and only while the grant is pending and unexpired.
pub fn decide(
    store: &dyn Store,
    user_code: &str,
    user_id: &str,
    approve: bool,
    now: UnixTime,
) -> Result<DeviceGrantRecord, OAuthError> {
    let grant = find_by_user_code(store, user_code, now)?;
    let agent = store
        .find_agent(&grant.record.agent_id)?
        .ok_or(OAuthError::UnknownAgent)?;
    if agent.owner_id != user_id {
        return Err(OAuthError::NotOwner);
    }
    if grant.record.status != DeviceGrantStatus::Pending {
        return Err(OAuthError::UnknownDeviceCode);
    }
    let mut next = grant.record.clone();
    let by = format!("user:{user_id}");
    next.status = if approve {
        DeviceGrantStatus::Approved { by, at: now }
    } else {
        DeviceGrantStatus::Denied { by, at: now }
    };
    if store.update_device_grant(&grant, &next)? == Update::Conflict {
        return Err(OAuthError::UnknownDeviceCode);
    }
    Ok(next)
}

/// Finds a pending, unexpired grant by the user code as a person typed it.
pub fn find_by_user_code(
    store: &dyn Store,
    typed: &str,
    now: UnixTime,
) -> Result<crate::store::Versioned<DeviceGrantRecord>, OAuthError> {
    let code = normalize_user_code(typed).ok_or(OAuthError::UnknownDeviceCode)?;
    let grant = store
        .find_device_grant_by_user_code(&code)?
        .ok_or(OAuthError::UnknownDeviceCode)?;
    if now >= grant.record.expires_at {
        return Err(OAuthError::DeviceCodeExpired);
    }
    Ok(grant)
}

/// Handles a poll of the token endpoint (RFC 8628 §3.4, §3.5). Once approved, the grant is
/// spent and the agent gets a token bound to the proof key, after the gate.
pub fn poll(
    issuer: Issuer<'_>,
    policy: &Policy,
    device_code: &str,
    client_id: &str,
    proof: &DpopProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<GrantIssued, OAuthError> {
    let store = issuer.store;
    let digest = crate::crypto::base64url::encode(Secret::from_string(device_code.into()).digest());
    let grant = store
        .find_device_grant(&digest)?
        .ok_or(OAuthError::UnknownDeviceCode)?;
    if grant.record.agent_id != client_id {
        return Err(OAuthError::UnknownDeviceCode);
    }
    if now >= grant.record.expires_at {
        return Err(OAuthError::DeviceCodeExpired);
    }
    // RFC 9449 §10: the poll must be signed by the key the request was bound to.
    if grant.record.jkt != proof.jkt {
        return Err(OAuthError::DpopKeyMismatch);
    }
    match grant.record.status {
        DeviceGrantStatus::Pending => return Err(record_poll(store, &grant, now)?),
        DeviceGrantStatus::Denied { .. } => return Err(OAuthError::AccessDenied),
        DeviceGrantStatus::Issued { .. } => return Err(OAuthError::UnknownDeviceCode),
        DeviceGrantStatus::Approved { .. } => {}
    }

    let agent = store
        .find_agent(client_id)?
        .ok_or(OAuthError::UnknownAgent)?;
    let session_id = match &grant.record.session_id {
        Some(id) => id.clone(),
        None => {
            // A new session here is software-assured; refuse before creating one that the
            // gate would refuse anyway.
            gate::check_agent(&agent)?;
            let owner = store.find_user(&agent.owner_id)?;
            if owner.as_ref().is_none_or(UserRecord::is_disabled) {
                return Err(OAuthError::UserRevoked);
            }
            if agent.required_assurance > Assurance::Software {
                return Err(OAuthError::InsufficientAssurance {
                    have: Assurance::Software,
                    need: agent.required_assurance,
                });
            }
            create_software_session(store, policy, &agent, proof, now, rng)?
        }
    };
    let facts = gate::ActorFacts::load(store, &agent.id, &session_id)?;
    gate::check_actor(&facts, &proof.jkt, now, issuer.settings.proof_window)?;

    let mut spent = grant.record.clone();
    spent.status = DeviceGrantStatus::Issued { at: now };
    if store.update_device_grant(&grant, &spent)? == Update::Conflict {
        return Err(OAuthError::UnknownDeviceCode);
    }
    issue_grant_token(
        issuer,
        &facts,
        &grant.record.scope,
        &session_id,
        proof,
        now,
        rng,
    )
}

fn issue_grant_token(
    issuer: Issuer<'_>,
    facts: &gate::ActorFacts,
    scope: &[String],
    session_id: &str,
    proof: &DpopProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<GrantIssued, OAuthError> {
    let claims = AccessTokenClaims {
        iss: issuer.settings.issuer.clone(),
        sub: facts.agent.owner_id.clone(),
        aud: vec![
            super::token_exchange::normalize_resource(&issuer.settings.issuer)
                .unwrap_or_else(|| issuer.settings.issuer.clone()),
        ],
        exp: now + GRANT_TOKEN_TTL,
        iat: now,
        jti: access_token::new_jti(now, rng),
        client_id: facts.agent.id.clone(),
        scope: scope.join(" "),
        act: None,
        may_act: None,
        cnf: Confirmation {
            jkt: proof.jkt.clone(),
        },
        acr: facts
            .session
            .as_ref()
            .map_or("software", |session| session.assurance.name())
            .to_owned(),
    };
    let lineage = TokenLineage {
        sessions: vec![session_id.to_owned()],
        devices: facts
            .session
            .as_ref()
            .and_then(|session| session.device_id.clone())
            .into_iter()
            .collect(),
        agents: vec![facts.agent.id.clone()],
        ancestors: Vec::new(),
    };
    let scope = claims.scope.clone();
    let access_token = access_token::issue(issuer.store, issuer.keys, claims, lineage)?;
    Ok(GrantIssued {
        access_token,
        expires_in: GRANT_TOKEN_TTL,
        scope,
        session_id: session_id.to_owned(),
    })
}

/// RFC 8628 §3.5: a poll sooner than the interval gets `slow_down` and a longer interval;
/// otherwise `authorization_pending`.
fn record_poll(
    store: &dyn Store,
    grant: &crate::store::Versioned<DeviceGrantRecord>,
    now: UnixTime,
) -> Result<OAuthError, OAuthError> {
    let mut next = grant.record.clone();
    let too_soon = grant
        .record
        .last_poll_at
        .is_some_and(|last| now < last + grant.record.interval);
    next.last_poll_at = Some(now);
    if too_soon {
        next.interval += SLOW_DOWN_STEP;
    }
    store.update_device_grant(grant, &next)?;
    Ok(if too_soon {
        OAuthError::SlowDown
    } else {
        OAuthError::AuthorizationPending
    })
}

/// Returns the scope a device grant requests: within the agent's registry entry, all of it if
/// none is named.
fn requested_scope(
    agent: &AgentRecord,
    requested: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested.filter(|scope| !scope.trim().is_empty()) else {
        return Ok(agent.scopes.clone());
    };
    let mut scope: Vec<String> = Vec::new();
    for token in requested.split(' ').filter(|token| !token.is_empty()) {
        if !agent.scopes.iter().any(|entry| entry == token) {
            return Err(OAuthError::ScopeWidened(token.to_owned()));
        }
        if !scope.iter().any(|kept| kept == token) {
            scope.push(token.to_owned());
        }
    }
    Ok(scope)
}

/// A device session the agent names must be the owner's, live, bound, and bound to the key
/// that signed the DPoP proof.
fn check_device_session(
    store: &dyn Store,
    agent: &AgentRecord,
    session_id: &str,
    jkt: &str,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let session = store
        .find_session(session_id)?
        .ok_or(OAuthError::DeviceSession("unknown session"))?
        .record;
    if session.user_id != agent.owner_id {
        return Err(OAuthError::DeviceSession("session of another user"));
    }
    if !session.is_bound() || !session.is_live(now) {
        return Err(OAuthError::DeviceSession("session not live and bound"));
    }
    if session
        .key
        .as_ref()
        .is_none_or(|key| key.jwk.thumbprint() != jkt)
    {
        return Err(OAuthError::DeviceSession("session bound to another key"));
    }
    Ok(())
}

/// Creates a software-assured session for an agent with no enrolled device, bound to the
/// proof key. The DPoP proof of this poll is its first proof of possession.
fn create_software_session(
    store: &dyn Store,
    policy: &Policy,
    agent: &AgentRecord,
    proof: &DpopProof,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, OAuthError> {
    let sign_in = dbsc::begin_sign_in(policy, &agent.owner_id, now, rng)
        .map_err(|_| OAuthError::Signing("session setup failed".into()))?;
    let mut session: SessionRecord = sign_in.session;
    session.state = SessionState::Bound;
    session.expires_at = now + policy.session_ttl;
    session.authorization_digest = None;
    session.key = Some(proof.key.clone());
    let issued = dbsc::renew(policy, &session, now, rng);
    store.insert_session(&issued.session)?;
    tracing::info!(
        target: "security",
        session = %issued.session.id,
        agent = %agent.id,
        assurance = issued.session.assurance.name(),
        "agent session bound through the device grant"
    );
    Ok(issued.session.id)
}

fn generate_user_code(rng: &mut impl RngCore) -> String {
    (0..USER_CODE_LEN)
        .map(|_| {
            let index = rng.gen_range(0..USER_CODE_ALPHABET.len());
            char::from(USER_CODE_ALPHABET[index])
        })
        .collect()
}

/// Shows a user code in two groups of four, as RFC 8628 §6.1 suggests.
fn format_user_code(code: &str) -> String {
    let (first, second) = code.split_at(USER_CODE_LEN / 2);
    format!("{first}-{second}")
}

/// Normalises a typed user code: case, dashes and spaces are ignored (RFC 8628 §6.1).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}
