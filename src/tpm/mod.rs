//! TPM-assured devices: the server's side of enrollment.
//!
//! A device proves in two requests that its session key lives in a TPM from a trusted vendor,
//! and [`enrollment`] lists the steps. The first request sends the EK certificate and an
//! attestation key (AK). The second sends the secret the TPM recovered with
//! TPM2_ActivateCredential and a TPM2_Certify of the session key by that AK. Everything here is pure Rust over the TPM's marshalled structures
//! (TPM 2.0 Library Specification, Part 2), with the time and the random number generator
//! passed in. The client that talks to a TPM is behind the `tpm` cargo feature.

pub mod attest;
pub mod credential;
mod der;
pub mod ek_certificate;
pub mod enrollment;
mod error;
pub mod public;
mod wire;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use attest::{AkSignature, CertifyAttest};
pub use credential::{IdCredential, MAX_CREDENTIAL_BYTES, make_credential};
pub use ek_certificate::{
    CertificateKey, TrustStore, TrustStoreError, VerifiedEkCertificate, verify_ek_certificate,
};
pub use enrollment::{
    CHALLENGE_BYTES, EnrollmentChallenge, EnrollmentPolicy, EnrollmentRequest, EnrollmentResponse,
    EnrollmentStart, TpmEnrollment, TpmEvidence, finish_enrollment, start_enrollment,
    start_untrusted_enrollment,
};
pub use error::TpmError;
pub use public::{ObjectAttributes, TpmPublic};
