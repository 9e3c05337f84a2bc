//! The gate every agent token passes at issuance, and the liveness check of issued tokens.
//!
//! A token is issued only if the requesting agent's session is bound to the DPoP key, its last
//! proof of possession is within the window, its assurance meets the agent's requirement, and
//! the agent, its owner, the session and everything the subject token was issued under are
//! still active.

use crate::clock::UnixTime;
use crate::store::{
    AgentRecord, AgentState, SessionRecord, Store, TokenLineage, TokenRecord, UserRecord,
};

use super::OAuthError;

/// What the gate looks at for the agent that requests a token.
#[derive(Debug)]
pub struct ActorFacts {
    pub agent: AgentRecord,
    pub owner: Option<UserRecord>,
    pub session: Option<SessionRecord>,
}

impl ActorFacts {
    /// Loads the agent `agent_id`, its owner and the session `session_id`.
    pub fn load(store: &dyn Store, agent_id: &str, session_id: &str) -> Result<Self, OAuthError> {
        let agent = store
            .find_agent(agent_id)?
            .ok_or(OAuthError::UnknownAgent)?;
        let owner = store.find_user(&agent.owner_id)?;
        let session = store.find_session(session_id)?.map(|found| found.record);
        Ok(Self {
            agent,
            owner,
            session,
        })
    }
}

/// Checks the requesting agent at `now`: active, owned by a known user, and holding a live
/// session bound to the key `jkt` with a fresh enough proof and enough assurance.
pub fn check_actor(
    facts: &ActorFacts,
    jkt: &str,
    now: UnixTime,
    proof_window: u64,
) -> Result<(), OAuthError> {
    check_agent(&facts.agent)?;
    if facts.owner.is_none() {
        return Err(OAuthError::UserRevoked);
    }
    let session = facts.session.as_ref().ok_or(OAuthError::SessionNotBound)?;
    if !session.is_live(now) {
        return Err(OAuthError::SessionEnded);
    }
    if !session.is_bound() {
        return Err(OAuthError::SessionNotBound);
    }
    if session.user_id != facts.agent.owner_id {
        return Err(OAuthError::NotOwner);
    }

    // RFC 9449 §10: the token is bound to the key that proves possession for the session.
    let bound_to_proof_key = session
        .key
        .as_ref()
        .is_some_and(|key| key.jwk.thumbprint() == jkt);
    if !bound_to_proof_key {
        return Err(OAuthError::DpopKeyMismatch);
    }

    let last_proof = session.last_proof_at.ok_or(OAuthError::NoProof)?;
    let age = now.saturating_sub(last_proof);
    if age > proof_window {
        return Err(OAuthError::StaleProof {
            age,
            window: proof_window,
        });
    }
    if session.assurance < facts.agent.required_assurance {
        return Err(OAuthError::InsufficientAssurance {
            have: session.assurance,
            need: facts.agent.required_assurance,
        });
    }
    Ok(())
}

/// Checks an agent's registry state.
pub fn check_agent(agent: &AgentRecord) -> Result<(), OAuthError> {
    match agent.state {
        AgentState::Active => Ok(()),
        AgentState::Suspended => Err(OAuthError::AgentSuspended),
        AgentState::Revoked => Err(OAuthError::AgentRevoked),
    }
}

/// Checks that an issued token is still in force at `now`: unexpired, not revoked, and every
/// token, session, agent and user it was issued under still active.
pub fn check_token(
    store: &dyn Store,
    token: &TokenRecord,
    now: UnixTime,
) -> Result<(), OAuthError> {
    if token.revoked_at.is_some() {
        return Err(OAuthError::TokenRevoked);
    }
    if now >= token.claims.exp {
        return Err(OAuthError::TokenExpired);
    }
    if store.find_user(&token.claims.sub)?.is_none() {
        return Err(OAuthError::UserRevoked);
    }
    check_lineage(store, &token.lineage, now)
}

fn check_lineage(
    store: &dyn Store,
    lineage: &TokenLineage,
    now: UnixTime,
) -> Result<(), OAuthError> {
    for jti in &lineage.ancestors {
        let revoked = store
            .find_token(jti)?
            .is_none_or(|ancestor| ancestor.revoked_at.is_some());
        if revoked {
            return Err(OAuthError::TokenRevoked);
        }
    }
    for agent_id in &lineage.agents {
        let agent = store
            .find_agent(agent_id)?
            .ok_or(OAuthError::AgentRevoked)?;
        check_agent(&agent)?;
    }
    for session_id in &lineage.sessions {
        let live = store
            .find_session(session_id)?
            .is_some_and(|session| session.record.is_bound() && session.record.is_live(now));
        if !live {
            return Err(OAuthError::SessionEnded);
        }
    }
    Ok(())
}
