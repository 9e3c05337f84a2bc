//! Records of the agent area: registered agents, their change history, device authorization
//! grants, issued access tokens, spent DPoP proofs and the service's token signing keys.

use serde::{Deserialize, Serialize};

use super::Assurance;
use crate::clock::UnixTime;

/// The lifecycle state of an agent. Only an active agent gets tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Active,
    /// Paused by its owner; tokens issued under it are inactive until it is resumed.
    Suspended,
    /// Ended for good.
    Revoked,
}

impl AgentState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }
}

/// A registered agent: a principal with exactly one human owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    /// The user id of the owner, the only person who may delegate to this agent.
    pub owner_id: String,
    /// Resource identifiers the agent may ever request, normalised.
    pub audiences: Vec<String>,
    /// Scope tokens the agent may ever request.
    pub scopes: Vec<String>,
    /// The lowest session assurance the agent's tokens may be issued at.
    pub required_assurance: Assurance,
    pub state: AgentState,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// One change to an agent, with who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChange {
    pub agent_id: String,
    pub at: UnixTime,
    /// `user:<id>` for an owner, `operator` for the admin API.
    pub by: String,
    /// `created`, `updated`, `suspended`, `resumed` or `revoked`.
    pub action: String,
}

/// Where a device authorization request (RFC 8628 §3.1) stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum DeviceGrantStatus {
    Pending,
    Approved {
        by: String,
        at: UnixTime,
    },
    Denied {
        by: String,
        at: UnixTime,
    },
    /// The agent has received its token; the device code is spent.
    Issued {
        at: UnixTime,
    },
}

/// A device authorization request, stored under the SHA-256 of its device code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGrantRecord {
    /// base64url SHA-256 of the device code; the code itself is never stored.
    pub device_code_digest: String,
    pub user_code: String,
    pub agent_id: String,
    /// RFC 7638 thumbprint of the key that made the request's DPoP proof.
    pub jkt: String,
    pub scope: Vec<String>,
    /// A bound device session the agent named; without one the grant creates a software
    /// session bound to `jkt`.
    pub session_id: Option<String>,
    pub expires_at: UnixTime,
    pub interval: u64,
    pub last_poll_at: Option<UnixTime>,
    pub status: DeviceGrantStatus,
}

impl std::fmt::Debug for DeviceGrantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceGrantRecord")
            .field("agent_id", &self.agent_id)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// An actor in a delegation chain (RFC 8693 §4.1): the outermost is the most recent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// Lists the actors from the most recent to the first.
    pub fn chain(&self) -> Vec<&str> {
        let mut subjects = vec![self.sub.as_str()];
        let mut next = self.act.as_deref();
        while let Some(actor) = next {
            subjects.push(actor.sub.as_str());
            next = actor.act.as_deref();
        }
        subjects
    }
}

/// The party allowed to act for the subject (RFC 8693 §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayAct {
    pub sub: String,
}

/// Proof-of-possession confirmation (RFC 9449 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// The claims of a JWT access token (RFC 9068 §2.2) as devbound issues them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<MayAct>,
    pub cnf: Confirmation,
    /// The assurance level of the session the token was issued to.
    pub acr: String,
}

/// Everything a token was issued under. Revoking any of these makes the token inactive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLineage {
    /// The session of every agent in the chain, the holder's last.
    pub sessions: Vec<String>,
    /// Devices of those sessions, where they have one.
    pub devices: Vec<String>,
    /// Every agent in the chain, the holder's last.
    pub agents: Vec<String>,
    /// The `jti` of every token this one was exchanged from, the subject token's last.
    pub ancestors: Vec<String>,
}

/// An issued access token, stored under its `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// base64url SHA-256 of the compact token: a presented token is this exact token only if
    /// its digest matches, so its signature need not be verified again.
    pub digest: String,
    pub claims: AccessTokenClaims,
    pub lineage: TokenLineage,
    pub revoked_at: Option<UnixTime>,
}

/// One of the service's P-256 keys for signing access tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// PKCS#8 v1 private key, base64url.
    pub pkcs8: String,
    pub created_at: UnixTime,
    /// When a newer key replaced this one for signing; it stays published until the tokens it
    /// signed have expired.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}
