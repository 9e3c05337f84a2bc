//! Passkeys (W3C Web Authentication Level 3) on webauthn-rs-core: registration with the
//! operator's attestation policy, sign-in with discoverable credentials, and passkey-bound
//! sessions with a freshness window and step-up.
//!
//! devbound drives `webauthn_rs_core::WebauthnCore` directly, because the policies here
//! (attestation `any` with assurance from the trust list, the counter and backup-flag rules,
//! ceremony state in the store) need its lower-level verbs. devbound adds its own strict checks
//! of the client data, the authenticator data flags and the TPM AIK certificate attributes.

pub mod aaguid;
pub mod authentication;
pub mod authenticator_data;
pub mod binding;
pub mod client_data;
mod error;
pub mod invite;
pub mod registration;
pub mod relying_party;
pub mod tpm_attestation;
pub mod tpm_san;
pub mod trust;

pub use authentication::Asserted;
pub use authenticator_data::{CounterCheck, CounterPolicy};
pub use binding::{StepUpRequired, effective_assurance, needs_reproof, require_recent_proof};
pub use error::PasskeyError;
pub use registration::Started;
pub use relying_party::{PasskeySettings, RelyingParty, RelyingPartyError};
pub use trust::{AttestationMode, TrustAnchors, TrustError};
