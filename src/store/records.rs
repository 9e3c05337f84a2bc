//! Records kept in the store. Field names are stable: they are the on-disk format.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::crypto::{Algorithm, Jwk};

/// A local account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// Argon2id hash in PHC string form.
    pub password_hash: String,
    pub created_at: UnixTime,
    /// When an operator disabled the account. A disabled user cannot sign in, and nothing
    /// authenticates as them.
    #[serde(default)]
    pub disabled_at: Option<UnixTime>,
}

impl UserRecord {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// How much devbound trusts the key a session is bound to. Ordered from weakest to strongest,
/// and set only from verified evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    /// Proof of possession of a key, with nothing known about where the key lives.
    Software,
    /// An attested authenticator from a trusted list.
    Passkey,
    /// A key certified by an attestation key activated against a trusted EK certificate.
    Tpm,
}

impl Assurance {
    pub fn name(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Passkey => "passkey",
            Self::Tpm => "tpm",
        }
    }
}

/// The public key a session is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundKey {
    pub alg: Algorithm,
    pub jwk: Jwk,
}

/// The lifecycle state of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SessionState {
    /// Signed in, waiting for the browser to register a key.
    Pending,
    /// Bound to a key that has proved possession at least once.
    Bound,
    /// Ended by the user signing out.
    SignedOut { at: UnixTime },
    /// Ended by the user or an operator.
    Revoked { at: UnixTime, by: String },
}

/// The challenge a bound session must sign next. Only one is outstanding per session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChallenge {
    pub value: String,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A signed-in session and, once registered, the key it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub state: SessionState,
    pub created_at: UnixTime,
    /// The session ends at this time whatever its proofs.
    pub expires_at: UnixTime,
    /// SHA-256 of the `authorization` value offered at sign-in, while pending.
    #[serde(with = "digest")]
    pub authorization_digest: Option<[u8; 32]>,
    pub key: Option<BoundKey>,
    pub assurance: Assurance,
    pub challenge: Option<PendingChallenge>,
    /// SHA-256 of the current cookie credential.
    #[serde(with = "digest")]
    pub credential_digest: Option<[u8; 32]>,
    pub credential_expires_at: UnixTime,
    /// SHA-256 of the credential the last refresh replaced, still accepted until
    /// `previous_credential_expires_at` for requests that were in flight during the refresh.
    #[serde(default, with = "digest")]
    pub previous_credential_digest: Option<[u8; 32]>,
    #[serde(default)]
    pub previous_credential_expires_at: UnixTime,
    pub last_proof_at: Option<UnixTime>,
    pub refresh_count: u64,
    /// Credential id (base64url) of the passkey that last proved this session, if any.
    #[serde(default)]
    pub passkey_id: Option<String>,
    /// When that passkey last proved possession with a WebAuthn assertion.
    #[serde(default)]
    pub passkey_proof_at: Option<UnixTime>,
    /// The enrolled device this session was issued to. Its registration must use the device's
    /// session key, and the session ends at its next refresh once the device is revoked.
    #[serde(default)]
    pub device_id: Option<String>,
}

impl SessionRecord {
    pub fn is_bound(&self) -> bool {
        self.state == SessionState::Bound && self.key.is_some()
    }

    /// Checks whether the session can still be used or refreshed at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        matches!(self.state, SessionState::Pending | SessionState::Bound) && now < self.expires_at
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            SessionState::Pending => "pending",
            SessionState::Bound => "bound",
            SessionState::SignedOut { .. } => "signed_out",
            SessionState::Revoked { .. } => "revoked",
        }
    }
}

/// A DBSC registration challenge, issued at sign-in and consumed by one registration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationChallenge {
    pub value: String,
    pub session_id: String,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for RegistrationChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationChallenge")
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// One entry of the audit log. `hash` commits to every other field, `prev_hash` to the entry
/// before; the rules are in [`crate::audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: UnixTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `allowed` or `refused`.
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A machine enrolled by its owner, and the evidence its assurance rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: String,
    /// The user on whose behalf the device was enrolled.
    pub owner_id: String,
    /// A label the owner gave, shown in lists.
    pub name: String,
    pub assurance: Assurance,
    /// SHA-256 of the EK certificate (DER, as read from NV), or `None` below `tpm`.
    #[serde(with = "digest")]
    pub ek_certificate_sha256: Option<[u8; 32]>,
    /// The AK's Name (`nameAlg || H(TPMT_PUBLIC)`), empty below `tpm`.
    #[serde(default, with = "hex_bytes")]
    pub ak_name: Vec<u8>,
    /// The key the device's sessions must be bound to.
    pub session_key: Jwk,
    pub created_at: UnixTime,
    pub revoked: Option<Revocation>,
}

impl DeviceRecord {
    pub fn is_revoked(&self) -> bool {
        self.revoked.is_some()
    }
}

/// When and by whom a device was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: UnixTime,
    /// `owner`, or `operator`.
    pub by: String,
}

/// A one-time code a signed-in user creates so that a device can enroll on their behalf. The
/// store keys it by the SHA-256 of the code, so the code itself is never stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentCode {
    #[serde(with = "digest_required")]
    pub code_sha256: [u8; 32],
    pub user_id: String,
    pub device_name: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentCode")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A started TPM enrollment: the challenge from [`crate::tpm::start_enrollment`] and the person
/// whose code started it. Consumed atomically by the finish request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub challenge: crate::tpm::EnrollmentChallenge,
    pub user_id: String,
    pub device_name: String,
    /// Why the start request failed the `tpm` checks, when policy let the device go on to
    /// enroll at `software`. Such an enrollment never yields a `tpm` device.
    #[serde(default)]
    pub untrusted: Option<String>,
}

/// SHA-256 digests as base64url strings, less than half the size of a JSON array of numbers.
mod digest {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::crypto::base64url;

    pub fn serialize<S: Serializer>(
        value: &Option<[u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(digest) => serializer.serialize_some(&base64url::encode(digest)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let bytes = base64url::decode(&text).map_err(serde::de::Error::custom)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| serde::de::Error::custom("digest is not 32 bytes"))
    }
}

/// A required SHA-256 digest as a base64url string.
mod digest_required {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        super::digest::serialize(&Some(*value), serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        super::digest::deserialize(deserializer)?
            .ok_or_else(|| serde::de::Error::custom("digest is missing"))
    }
}

/// Byte strings as lowercase hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}
