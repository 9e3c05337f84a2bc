//! The gate every agent token passes at issuance, and the liveness check of issued tokens.
//!
//! A token is issued only if the requesting agent's session is bound to the DPoP key, its last
//! proof of possession is within the window, its assurance meets the agent's requirement, and
//! the agent, its owner, the session and everything the subject token was issued under are
//! still active.

use crate::clock::UnixTime;
use crate::store::{
    AgentRecord, AgentState, DeviceRecord, SessionRecord, Store, TokenLineage, TokenRecord,
    UserRecord,
};

use super::OAuthError;

/// The records the gate checks for the agent that requests a token.
#[derive(Debug)]
pub struct ActorFacts {
    pub agent: AgentRecord,
    pub owner: Option<UserRecord>,
    pub session: Option<SessionRecord>,
    /// The device the session is bound to, if it has one; `None` also if the record is gone.
    pub device: Option<DeviceRecord>,
}

impl ActorFacts {
    /// Loads the agent `agent_id`, its owner and the session `session_id`.
    pub fn load(store: &dyn Store, agent_id: &str, session_id: &str) -> Result<Self, OAuthError> {
        let agent = store
            .find_agent(agent_id)?
            .ok_or(OAuthError::UnknownAgent)?;
        let owner = store.find_user(&agent.owner_id)?;
        let session = store.find_session(session_id)?.map(|found| found.record);
        let device = match session
            .as_ref()
            .and_then(|session| session.device_id.as_deref())
        {
            Some(device_id) => store.find_device(device_id)?.map(|found| found.record),
            None => None,
        };
        Ok(Self {
            agent,
            owner,
            session,
            device,
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
    if facts.owner.as_ref().is_none_or(UserRecord::is_disabled) {
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
    // A session on an enrolled device is usable only while the device is.
    if session.device_id.is_some() && facts.device.as_ref().is_none_or(DeviceRecord::is_revoked) {
        return Err(OAuthError::DeviceRevoked);
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
    if store
        .find_user(&token.claims.sub)?
        .as_ref()
        .is_none_or(UserRecord::is_disabled)
    {
        return Err(OAuthError::UserRevoked);
    }
    check_lineage(store, &token.lineage, now)
}

/// Checks a subject token at exchange. When the actor is the token's holder, its own session,
/// agent and user are left out here because [`check_actor`] checks them, more strictly, with
/// the user found through the agent, whose owner must be the subject.
pub fn check_subject_token(
    store: &dyn Store,
    token: &TokenRecord,
    actor_is_holder: bool,
    now: UnixTime,
) -> Result<(), OAuthError> {
    if !actor_is_holder {
        return check_token(store, token, now);
    }
    if token.revoked_at.is_some() {
        return Err(OAuthError::TokenRevoked);
    }
    if now >= token.claims.exp {
        return Err(OAuthError::TokenExpired);
    }
    let lineage = &token.lineage;
    let earlier = TokenLineage {
        sessions: lineage.sessions[..lineage.sessions.len().saturating_sub(1)].to_vec(),
        devices: lineage.devices.clone(),
        agents: lineage.agents[..lineage.agents.len().saturating_sub(1)].to_vec(),
        ancestors: lineage.ancestors.clone(),
    };
    check_lineage(store, &earlier, now)
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
    for device_id in &lineage.devices {
        let revoked = store
            .find_device(device_id)?
            .is_none_or(|device| device.record.is_revoked());
        if revoked {
            return Err(OAuthError::DeviceRevoked);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SessionKey;
    use crate::crypto::{Algorithm, Jwk};
    use crate::store::{Assurance, BoundKey, Revocation};

    const NOW: UnixTime = 1_000_000;
    const WINDOW: u64 = 600;

    fn key() -> Jwk {
        let key = SessionKey::generate(Algorithm::Es256).unwrap();
        Jwk::from_value(&key.public_jwk()).unwrap()
    }

    fn facts(jwk: &Jwk) -> ActorFacts {
        let policy = crate::config::ServeOptions::default()
            .resolve()
            .unwrap()
            .policy;
        let mut rng = rand::thread_rng();
        let mut session = crate::dbsc::begin_sign_in(&policy, "owner", NOW, &mut rng)
            .unwrap()
            .session;
        session.state = crate::store::SessionState::Bound;
        session.expires_at = NOW + 3600;
        session.key = Some(BoundKey {
            alg: Algorithm::Es256,
            jwk: jwk.clone(),
        });
        session.last_proof_at = Some(NOW - 10);
        let agent = AgentRecord {
            id: "agent".into(),
            name: "agent".into(),
            owner_id: "owner".into(),
            audiences: vec![],
            scopes: vec![],
            required_assurance: Assurance::Software,
            state: AgentState::Active,
            created_at: NOW,
            updated_at: NOW,
        };
        let owner = UserRecord {
            id: "owner".into(),
            name: "owner".into(),
            password_hash: String::new(),
            created_at: NOW,
            disabled_at: None,
        };
        ActorFacts {
            agent,
            owner: Some(owner),
            session: Some(session),
            device: None,
        }
    }

    fn device(jwk: &Jwk, revoked: bool) -> DeviceRecord {
        DeviceRecord {
            id: "device".into(),
            owner_id: "owner".into(),
            name: "laptop".into(),
            assurance: Assurance::Tpm,
            ek_certificate_sha256: None,
            ak_name: Vec::new(),
            session_key: jwk.clone(),
            created_at: NOW,
            revoked: revoked.then(|| Revocation {
                at: NOW,
                by: "owner".into(),
            }),
        }
    }

    fn condition(facts: &ActorFacts, jkt: &str) -> &'static str {
        match check_actor(facts, jkt, NOW, WINDOW) {
            Ok(()) => "passed",
            Err(error) => error.condition(),
        }
    }

    #[test]
    fn check_actor_passes_fresh_bound_session() {
        let jwk = key();
        assert_eq!(condition(&facts(&jwk), &jwk.thumbprint()), "passed");
    }

    #[test]
    fn check_actor_names_each_failed_condition() {
        let jwk = key();
        let jkt = jwk.thumbprint();

        let mut stale = facts(&jwk);
        stale.session.as_mut().unwrap().last_proof_at = Some(NOW - WINDOW - 1);
        assert_eq!(condition(&stale, &jkt), "session_proof_stale");

        let mut software = facts(&jwk);
        software.agent.required_assurance = Assurance::Tpm;
        assert_eq!(condition(&software, &jkt), "assurance_too_low");

        let mut suspended = facts(&jwk);
        suspended.agent.state = AgentState::Suspended;
        assert_eq!(condition(&suspended, &jkt), "agent_suspended");

        let mut no_owner = facts(&jwk);
        no_owner.owner = None;
        assert_eq!(condition(&no_owner, &jkt), "user_revoked");

        assert_eq!(
            condition(&facts(&jwk), &key().thumbprint()),
            "dpop_key_mismatch"
        );

        let mut ended = facts(&jwk);
        ended.session.as_mut().unwrap().expires_at = NOW;
        assert_eq!(condition(&ended, &jkt), "session_ended");
    }

    #[test]
    fn check_actor_requires_live_device() {
        let jwk = key();
        let jkt = jwk.thumbprint();
        let mut on_device = facts(&jwk);
        on_device.agent.required_assurance = Assurance::Tpm;
        let session = on_device.session.as_mut().unwrap();
        session.device_id = Some("device".into());
        session.assurance = Assurance::Tpm;

        on_device.device = Some(device(&jwk, false));
        assert_eq!(condition(&on_device, &jkt), "passed");
        on_device.device = Some(device(&jwk, true));
        assert_eq!(condition(&on_device, &jkt), "device_revoked");
        on_device.device = None;
        assert_eq!(condition(&on_device, &jkt), "device_revoked");
    }
}
