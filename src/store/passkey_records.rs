//! Passkey records: registered WebAuthn credentials and ceremonies in progress.

use serde::{Deserialize, Serialize};
use webauthn_rs_core::proto::Credential;

use super::Assurance;
use crate::clock::UnixTime;

/// How far devbound trusts the attestation a passkey was registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttestationTrust {
    /// The authenticator sent no attestation (`none`), or the browser removed it.
    None,
    /// Self attestation: signed by the credential key itself, so it proves nothing about the
    /// authenticator.
    SelfSigned,
    /// The attestation signature verified, but its certificate does not chain to a trusted root
    /// or its AAGUID is not on the trusted list.
    Untrusted,
    /// The attestation chains to the trusted root with this subject.
    Trusted { root: String },
}

/// A passkey registered to a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url without padding.
    pub id: String,
    pub user_id: String,
    /// The name the user gave it.
    pub name: String,
    /// The authenticator model's AAGUID, lower-case hyphenated; all zeros when unknown.
    pub aaguid: String,
    /// The authenticator model's name, when the AAGUID is known.
    pub authenticator: Option<String>,
    /// Attestation statement format (`packed`, `tpm`, `none`, ...).
    pub attestation_format: String,
    pub trust: AttestationTrust,
    pub assurance: Assurance,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// Set when an assertion's signature counter did not advance (a possible clone).
    #[serde(default)]
    pub clone_warning_at: Option<UnixTime>,
    /// The verified credential as webauthn-rs-core keeps it: public key, counter, backup flags
    /// and the attestation chain.
    pub credential: Credential,
}

/// Purpose of a WebAuthn ceremony in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CeremonyPurpose {
    /// Registering a new passkey for a signed-in user.
    Register { user_id: String, name: String },
    /// Signing in with a discoverable passkey.
    SignIn,
    /// Proving possession again for a signed-in session (step-up or an expired binding).
    Reauthenticate { session_id: String },
    /// An operator's invitation to register a first passkey without signing in. The record's
    /// id is the secret in the invitation link.
    Invite { user_id: String },
    /// Registering a first passkey through the invitation with id `invite`, which is consumed
    /// only when the registration verifies.
    Enroll {
        user_id: String,
        name: String,
        invite: String,
    },
}

/// A WebAuthn ceremony in progress: its purpose and the library state with its challenge.
/// Consumed once, when the browser's response arrives.
#[derive(Clone, Serialize, Deserialize)]
pub struct CeremonyRecord {
    pub id: String,
    pub purpose: CeremonyPurpose,
    pub expires_at: UnixTime,
    /// The challenge sent to the browser, base64url without padding.
    pub challenge: String,
    /// webauthn-rs-core's `RegistrationState` or `AuthenticationState`, as JSON.
    pub state: serde_json::Value,
}

impl std::fmt::Debug for CeremonyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CeremonyRecord")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
