//! The detailed reasons a TPM enrollment step fails, for logs and tests.

/// A rejected enrollment. Every variant except [`TpmError::Internal`] is the peer's fault, or a
/// device that policy may still accept at a lower assurance level. None of them may be recorded
/// as `tpm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    #[error("{0} is shorter than its fields or sizes declare")]
    Truncated(&'static str),
    #[error("{0} has bytes after its last field")]
    TrailingBytes(&'static str),
    #[error("{structure} uses algorithm 0x{algorithm:04x}, which is not supported here")]
    UnsupportedAlgorithm {
        structure: &'static str,
        algorithm: u16,
    },

    #[error("the TPM has no EK certificate")]
    NoEkCertificate,
    #[error("EK certificate declares {declared} bytes but only {available} are present")]
    EkCertificateLengthExceedsData { declared: usize, available: usize },
    #[error("EK certificate is followed by {0} bytes that are not padding")]
    EkCertificateTrailingData(usize),
    #[error("certificate is not a valid X.509 certificate: {0}")]
    CertificateMalformed(String),
    #[error("certificate signature algorithm {0} is not supported")]
    UnsupportedCertificateSignature(String),
    #[error("certificate signature algorithm differs between the TBS and the outer structure")]
    SignatureAlgorithmMismatch,
    #[error("certificate `{subject}` is not valid at {now} (valid {not_before}..={not_after})")]
    CertificateNotValidAt {
        subject: String,
        now: i64,
        not_before: i64,
        not_after: i64,
    },
    #[error("EK certificate issued by `{0}` does not chain to a trusted TPM vendor root")]
    UntrustedEkCertificate(String),
    #[error("signature on certificate `{0}` does not verify with its issuer's key")]
    BadCertificateSignature(String),
    #[error("EK public area does not match the key in the EK certificate")]
    EkPublicMismatch,
    #[error("EK is not usable for MakeCredential: {0}")]
    UnsupportedEk(&'static str),

    #[error("{key} attribute {attribute} must be {}", if *.expected { "set" } else { "clear" })]
    ObjectAttribute {
        key: &'static str,
        attribute: &'static str,
        expected: bool,
    },
    #[error("{key} is not supported: {reason}")]
    UnsupportedKey {
        key: &'static str,
        reason: &'static str,
    },
    #[error("credential of {0} bytes is longer than the EK name digest")]
    CredentialTooLong(usize),

    #[error("enrollment challenge was not issued by this server or has been used")]
    UnknownChallenge,
    #[error("enrollment challenge expired")]
    ChallengeExpired,
    #[error("activated secret does not match the credential")]
    WrongSecret,

    #[error("TPMS_ATTEST magic is 0x{0:08x}, not TPM_GENERATED_VALUE")]
    WrongMagic(u32),
    #[error("TPMS_ATTEST type is 0x{0:04x}, not TPM_ST_ATTEST_CERTIFY")]
    WrongAttestationType(u16),
    #[error("TPMS_ATTEST extraData is not the nonce of this enrollment")]
    NonceMismatch,
    #[error("TPMS_ATTEST certifies a different key than the one presented")]
    CertifiedNameMismatch,
    #[error("AK signature over TPMS_ATTEST is invalid")]
    BadSignature,

    #[error("unexpected failure in a cryptographic primitive: {0}")]
    Internal(&'static str),
}

impl TpmError {
    /// Checks whether the error is about the device's evidence, rather than a spent or expired
    /// challenge or a failure inside the server: only such a device may enroll below `tpm`.
    pub fn is_evidence(&self) -> bool {
        !matches!(
            self,
            Self::UnknownChallenge | Self::ChallengeExpired | Self::Internal(_)
        )
    }

    /// Returns a short stable label for metrics and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "truncated",
            Self::TrailingBytes(_) => "trailing_bytes",
            Self::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Self::NoEkCertificate => "no_ek_certificate",
            Self::EkCertificateLengthExceedsData { .. } => "ek_certificate_length",
            Self::EkCertificateTrailingData(_) => "ek_certificate_trailing_data",
            Self::CertificateMalformed(_) => "certificate_malformed",
            Self::UnsupportedCertificateSignature(_) => "unsupported_certificate_signature",
            Self::SignatureAlgorithmMismatch => "signature_algorithm_mismatch",
            Self::CertificateNotValidAt { .. } => "certificate_not_valid",
            Self::UntrustedEkCertificate(_) => "untrusted_ek_certificate",
            Self::BadCertificateSignature(_) => "bad_certificate_signature",
            Self::EkPublicMismatch => "ek_public_mismatch",
            Self::UnsupportedEk(_) => "unsupported_ek",
            Self::ObjectAttribute { .. } => "object_attribute",
            Self::UnsupportedKey { .. } => "unsupported_key",
            Self::CredentialTooLong(_) => "credential_too_long",
            Self::UnknownChallenge => "unknown_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::WrongSecret => "wrong_secret",
            Self::WrongMagic(_) => "wrong_magic",
            Self::WrongAttestationType(_) => "wrong_attestation_type",
            Self::NonceMismatch => "nonce_mismatch",
            Self::CertifiedNameMismatch => "certified_name_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Internal(_) => "internal",
        }
    }
}
