//! The reasons devbound rejects an OAuth request, and their RFC error codes.

use crate::store::{Assurance, StoreError};

/// The error codes a client sees (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8628 §3.5,
/// RFC 9449 §5 and §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    InvalidDpopProof,
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::AccessDenied => "access_denied",
            Self::ExpiredToken => "expired_token",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status: 401 for client authentication (RFC 6749 §5.2), 500 for server
    /// failures, 400 for everything else.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            Self::ServerError => 500,
            _ => 400,
        }
    }
}

/// A rejected OAuth request, in detail for the `security` log. Only [`ErrorCode`] and a fixed
/// description reach the client.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("request is malformed: {0}")]
    Malformed(&'static str),
    #[error("parameter `{0}` is repeated")]
    RepeatedParameter(String),
    #[error("grant type {0:?} is not supported")]
    UnsupportedGrantType(String),
    #[error("token type {0:?} is not accepted for this parameter")]
    UnsupportedTokenType(String),
    #[error("DPoP proof is missing")]
    MissingDpop,
    #[error("DPoP proof is invalid: {0}")]
    InvalidDpop(String),
    #[error("DPoP proof was already used")]
    DpopReplay,
    /// Spent proofs are kept in memory, so one made before a restart may have been spent.
    #[error("DPoP proof was made before the server started")]
    DpopBeforeStart,
    #[error("DPoP proof key is not the key the token is bound to")]
    DpopKeyMismatch,
    #[error("agent is unknown")]
    UnknownAgent,
    #[error("token is not one devbound issued, or was altered")]
    UnknownToken,
    #[error("token has expired")]
    TokenExpired,
    #[error("token or one it was exchanged from is revoked")]
    TokenRevoked,
    #[error("token audience does not include this service")]
    NotForTokenEndpoint,
    #[error("agent session is not bound to a key")]
    SessionNotBound,
    #[error("agent session has ended or was revoked")]
    SessionEnded,
    #[error("agent session's last proof is {age} s old, over the {window} s window")]
    StaleProof { age: u64, window: u64 },
    #[error("agent session has no proof of possession yet")]
    NoProof,
    #[error("session assurance {have:?} is below the required {need:?}")]
    InsufficientAssurance { have: Assurance, need: Assurance },
    #[error("agent is suspended")]
    AgentSuspended,
    #[error("agent is revoked")]
    AgentRevoked,
    #[error("delegating user is revoked or unknown")]
    UserRevoked,
    #[error("device is revoked")]
    DeviceRevoked,
    #[error("agent is not owned by the token's subject")]
    NotOwner,
    #[error("subject token's may_act does not name this actor")]
    MayActMismatch,
    #[error("actor may not act on a token held by another agent without may_act")]
    ActorNotPermitted,
    #[error("requested scope `{0}` is not within what the subject and actor allow")]
    ScopeWidened(String),
    #[error("requested audience {0:?} is not within what the subject and actor allow")]
    AudienceWidened(String),
    #[error("resource {0:?} is not an absolute https URI")]
    InvalidResource(String),
    #[error("no audience remains after narrowing")]
    NoAudience,
    #[error("no scope remains after narrowing")]
    NoScope,
    #[error("device code is unknown or spent")]
    UnknownDeviceCode,
    #[error("device code has expired")]
    DeviceCodeExpired,
    #[error("owner has not approved the request yet")]
    AuthorizationPending,
    #[error("agent polled faster than the interval")]
    SlowDown,
    #[error("owner denied the request")]
    AccessDenied,
    #[error("device session named by the agent is not usable: {0}")]
    DeviceSession(&'static str),
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    #[error("signing failure: {0}")]
    Signing(String),
}

impl OAuthError {
    /// The RFC error code the client receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_)
            | Self::RepeatedParameter(_)
            | Self::UnsupportedTokenType(_)
            | Self::DeviceSession(_) => ErrorCode::InvalidRequest,
            Self::UnsupportedGrantType(_) => ErrorCode::UnsupportedGrantType,
            Self::MissingDpop
            | Self::InvalidDpop(_)
            | Self::DpopReplay
            | Self::DpopBeforeStart
            | Self::DpopKeyMismatch => ErrorCode::InvalidDpopProof,
            Self::UnknownAgent => ErrorCode::InvalidClient,
            Self::ScopeWidened(_) | Self::NoScope => ErrorCode::InvalidScope,
            // RFC 8707 §2: an invalid or unacceptable resource is `invalid_target`.
            Self::AudienceWidened(_) | Self::NoAudience | Self::InvalidResource(_) => {
                ErrorCode::InvalidTarget
            }
            Self::AuthorizationPending => ErrorCode::AuthorizationPending,
            Self::SlowDown => ErrorCode::SlowDown,
            Self::AccessDenied => ErrorCode::AccessDenied,
            Self::DeviceCodeExpired => ErrorCode::ExpiredToken,
            Self::Store(_) | Self::Signing(_) => ErrorCode::ServerError,
            Self::UnknownToken
            | Self::TokenExpired
            | Self::TokenRevoked
            | Self::NotForTokenEndpoint
            | Self::SessionNotBound
            | Self::SessionEnded
            | Self::StaleProof { .. }
            | Self::NoProof
            | Self::InsufficientAssurance { .. }
            | Self::AgentSuspended
            | Self::AgentRevoked
            | Self::UserRevoked
            | Self::DeviceRevoked
            | Self::NotOwner
            | Self::MayActMismatch
            | Self::ActorNotPermitted
            | Self::UnknownDeviceCode => ErrorCode::InvalidGrant,
        }
    }

    /// The name of the failed condition, for the `security` log and metrics.
    pub fn condition(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::RepeatedParameter(_) => "repeated_parameter",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::MissingDpop => "dpop_missing",
            Self::InvalidDpop(_) => "dpop_invalid",
            Self::DpopReplay => "dpop_replayed",
            Self::DpopBeforeStart => "dpop_before_start",
            Self::DpopKeyMismatch => "dpop_key_mismatch",
            Self::UnknownAgent => "unknown_agent",
            Self::UnknownToken => "unknown_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::NotForTokenEndpoint => "wrong_token_audience",
            Self::SessionNotBound => "session_not_bound",
            Self::SessionEnded => "session_ended",
            Self::StaleProof { .. } => "session_proof_stale",
            Self::NoProof => "session_never_proved",
            Self::InsufficientAssurance { .. } => "assurance_too_low",
            Self::AgentSuspended => "agent_suspended",
            Self::AgentRevoked => "agent_revoked",
            Self::UserRevoked => "user_revoked",
            Self::DeviceRevoked => "device_revoked",
            Self::NotOwner => "agent_not_owned_by_subject",
            Self::MayActMismatch => "may_act_mismatch",
            Self::ActorNotPermitted => "actor_not_permitted",
            Self::ScopeWidened(_) => "scope_widened",
            Self::AudienceWidened(_) => "audience_widened",
            Self::InvalidResource(_) => "invalid_resource",
            Self::NoAudience => "no_audience",
            Self::NoScope => "no_scope",
            Self::UnknownDeviceCode => "unknown_device_code",
            Self::DeviceCodeExpired => "device_code_expired",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::AccessDenied => "access_denied",
            Self::DeviceSession(_) => "device_session_unusable",
            Self::Store(_) => "store_failure",
            Self::Signing(_) => "signing_failure",
        }
    }

    /// A fixed description for the client: it names the condition, never internal detail.
    pub fn description(&self) -> String {
        match self {
            Self::Store(_) | Self::Signing(_) => "internal error".into(),
            Self::RepeatedParameter(name) => format!("parameter {name} is repeated"),
            Self::DpopBeforeStart => {
                "DPoP proof was made before the server started; send a new proof".into()
            }
            _ => self.condition().replace('_', " "),
        }
    }
}
