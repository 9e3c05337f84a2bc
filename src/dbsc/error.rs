//! Detailed reasons for a failed DBSC registration or refresh, for logs and tests.

use crate::crypto::JoseError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbscError {
    #[error("proof JWT rejected: {0}")]
    Jose(#[from] JoseError),
    #[error("registration proof has no `jwk` header")]
    MissingJwk,
    #[error(
        "refresh proof carries a `jwk` header; refreshes are verified only with the stored key"
    )]
    UnexpectedJwk,
    #[error("proof has no `jti` string claim")]
    MissingJti,
    #[error("proof `aud` {0:?} is not this endpoint")]
    WrongAudience(String),
    #[error("challenge in `jti` was not issued by this server or has been used")]
    UnknownChallenge,
    #[error("challenge expired")]
    ChallengeExpired,
    #[error("challenge does not belong to this session")]
    ChallengeMismatch,
    #[error("registration proof lacks the `authorization` value offered at sign-in")]
    MissingAuthorization,
    #[error("registration proof `authorization` does not match the value offered at sign-in")]
    WrongAuthorization,
    #[error("session is not waiting for registration")]
    NotPending,
    #[error("session is not bound to a key")]
    NotBound,
    #[error("session has ended or expired")]
    SessionEnded,
    #[error("registration key is not the key the device's TPM certified")]
    DeviceKeyMismatch,
    #[error("the session's device is revoked or unknown")]
    DeviceRevoked,
    #[error("the session's user is disabled")]
    UserDisabled,
}

impl DbscError {
    /// Returns a short stable label for metrics and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Jose(JoseError::BadSignature) => "bad_signature",
            Self::Jose(JoseError::UnsupportedAlgorithm(_)) => "unsupported_algorithm",
            Self::Jose(JoseError::Jwk(_)) => "invalid_jwk",
            Self::Jose(JoseError::WrongType { .. }) => "wrong_typ",
            Self::Jose(JoseError::ForbiddenHeader(_)) => "forbidden_header",
            Self::Jose(_) => "malformed_jwt",
            Self::MissingJwk => "missing_jwk",
            Self::UnexpectedJwk => "unexpected_jwk",
            Self::MissingJti => "missing_jti",
            Self::WrongAudience(_) => "wrong_audience",
            Self::UnknownChallenge => "unknown_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::ChallengeMismatch => "challenge_mismatch",
            Self::MissingAuthorization => "missing_authorization",
            Self::WrongAuthorization => "wrong_authorization",
            Self::NotPending => "not_pending",
            Self::NotBound => "not_bound",
            Self::SessionEnded => "session_ended",
            Self::DeviceKeyMismatch => "device_key_mismatch",
            Self::DeviceRevoked => "device_revoked",
            Self::UserDisabled => "user_disabled",
        }
    }
}
