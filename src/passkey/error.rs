//! Why a passkey ceremony failed: the detail for logs and tests, and the sentence shown to a person.

use webauthn_rs_core::error::WebauthnError;

use super::tpm_attestation::TpmAttestationError;

/// A failed WebAuthn registration or authentication. The detail goes to the log. A person is
/// shown [`PasskeyError::person_message`], and the page's script receives [`PasskeyError::code`].
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("the ceremony is unknown, already used or expired")]
    UnknownCeremony,
    #[error("the ceremony was started for another purpose")]
    WrongCeremony,
    #[error("the browser's response is not valid WebAuthn JSON: {0}")]
    MalformedResponse(String),
    #[error("client data is invalid: {0}")]
    ClientData(#[from] super::client_data::ClientDataError),
    #[error("authenticator data is invalid: {0}")]
    AuthenticatorData(#[from] super::authenticator_data::AuthenticatorDataError),
    #[error("no passkey with this credential id is registered")]
    UnknownCredential,
    #[error("the user handle does not belong to the credential's owner")]
    UserHandleMismatch,
    #[error("a passkey with this credential id is already registered")]
    DuplicateCredential,
    #[error("the authenticator {aaguid} is not trusted: {reason}")]
    AuthenticatorNotApproved { aaguid: String, reason: String },
    #[error("tpm attestation: {0}")]
    TpmAttestation(#[from] super::tpm_attestation::TpmAttestationError),
    #[error("the signature counter did not advance (stored {stored}, received {received})")]
    PossibleClone { stored: u32, received: u32 },
    #[error("the passkey's session freshness window has passed")]
    Stale,
    #[error("webauthn-rs-core rejected the response: {0:?}")]
    Webauthn(WebauthnError),
    #[error("the passkey's user is disabled")]
    UserDisabled,
}

impl From<WebauthnError> for PasskeyError {
    fn from(error: WebauthnError) -> Self {
        Self::Webauthn(error)
    }
}

impl PasskeyError {
    /// Returns a short, stable code for the page's script and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCeremony | Self::WrongCeremony => "ceremony_expired",
            Self::MalformedResponse(_) => "malformed_response",
            Self::ClientData(_) | Self::AuthenticatorData(_) => "invalid_response",
            Self::UnknownCredential | Self::UserHandleMismatch => "unknown_passkey",
            Self::DuplicateCredential => "already_registered",
            Self::AuthenticatorNotApproved { .. } => "not_approved",
            // An AIK certificate from a manufacturer outside the TCG registry is not an
            // approved authenticator; any other failure is an invalid response.
            Self::TpmAttestation(TpmAttestationError::DeviceAttributes(_)) => "not_approved",
            Self::TpmAttestation(_) => "invalid_response",
            Self::PossibleClone { .. } => "possible_clone",
            Self::Stale => "stale",
            Self::UserDisabled => "user_disabled",
            Self::Webauthn(error) => webauthn_code(error),
        }
    }

    /// Returns the sentence shown to a person. It names what to do next and carries no internal
    /// detail.
    pub fn person_message(&self) -> &'static str {
        match self.code() {
            "ceremony_expired" => {
                "This passkey request has expired or was already used. Try again."
            }
            "unknown_passkey" => {
                "This passkey is not registered with devbound. It may have been removed; sign in another way or ask your administrator."
            }
            "already_registered" => "This passkey is already registered.",
            "user_disabled" => "This account is disabled. Ask your administrator to enable it.",
            "not_approved" => {
                "This security key is not on your organisation's approved list. Use an approved key, or ask your administrator which keys are allowed."
            }
            "possible_clone" => {
                "This passkey reported a signature counter that did not advance, which can mean it was copied. It has been flagged; sign in another way and tell your administrator."
            }
            "user_not_verified" => {
                "Your authenticator did not verify you (PIN, fingerprint or face). Try again and complete the check."
            }
            "backup_changed" => {
                "This passkey's backup status changed in a way devbound does not accept. Register it again."
            }
            _ => {
                "Your browser's passkey response could not be verified. Try again; if it keeps failing, tell your administrator."
            }
        }
    }
}

fn webauthn_code(error: &WebauthnError) -> &'static str {
    match error {
        WebauthnError::AttestationNotVerifiable
        | WebauthnError::AttestationUntrustedAaguid
        | WebauthnError::AttestationFormatMissingAaguid
        | WebauthnError::MissingAttestationCaList => "not_approved",
        WebauthnError::CredentialPossibleCompromise => "possible_clone",
        WebauthnError::UserNotVerified => "user_not_verified",
        WebauthnError::CredentialBackupEligibilityInconsistent
        | WebauthnError::CredentialMayNotBeHardwareBound => "backup_changed",
        WebauthnError::CredentialNotFound => "unknown_passkey",
        _ => "invalid_response",
    }
}
