//! Enrollment of a TPM-held session key, in two requests.
//!
//! 1. [`start_enrollment`]: the EK certificate chains to a trusted root, the EK public area is
//!    the certificate's key, and the AK has the attributes of an attestation key. The server
//!    wraps a random secret for the AK's Name with MakeCredential. It returns an
//!    [`EnrollmentChallenge`] for the store, which must consume it atomically on finish.
//! 2. [`finish_enrollment`]: the TPM recovered the secret with ActivateCredential, so the AK is
//!    on the EK's TPM. The AK certified the session key with the challenge's nonce, and the
//!    session key cannot leave the TPM. The result is the session key and the evidence for a device
//!    record at assurance `tpm`.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::attest::{AkSignature, CertifyAttest};
use super::credential::{IdCredential, MAX_CREDENTIAL_BYTES, make_credential};
use super::ek_certificate::{TrustStore, verify_ek_certificate};
use super::error::TpmError;
use super::public::{ObjectAttributes as Attributes, PublicKey, TpmPublic, alg, curve};
use crate::clock::UnixTime;
use crate::crypto::secret::{constant_time_eq, sha256};
use crate::crypto::{Jwk, Secret};
use crate::store::Assurance;

/// Length of the credential secret, the certify nonce and the challenge id, in random bytes.
pub const CHALLENGE_BYTES: usize = 32;

/// The settings enrollment depends on.
#[derive(Debug, Clone)]
pub struct EnrollmentPolicy {
    /// The TPM vendors' root certificates, and intermediates that chain to them.
    pub trust_store: TrustStore,
    /// Lifetime of an enrollment challenge, in seconds.
    pub challenge_ttl: u64,
}

/// The client's request that starts enrollment.
#[derive(Debug, Clone, Copy)]
pub struct EnrollmentRequest<'a> {
    /// The EK certificate as read from NV (RSA-2048 EK: index 0x01c00002), possibly with a TCG
    /// header or padding, or `None` if the TPM has none.
    pub ek_certificate: Option<&'a [u8]>,
    /// The EK's TPM2B_PUBLIC.
    pub ek_public: &'a [u8],
    /// The AK's TPM2B_PUBLIC.
    pub ak_public: &'a [u8],
}

/// The server's record of a started enrollment. The store keeps it under `id` and must consume
/// it atomically when the client finishes, so that each one is used at most once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentChallenge {
    pub id: String,
    /// SHA-256 of the secret wrapped by MakeCredential.
    pub secret_sha256: [u8; 32],
    /// The qualifyingData the client must pass to TPM2_Certify.
    pub certify_nonce: Vec<u8>,
    /// The AK's TPM2B_PUBLIC, which verifies the certification.
    pub ak_public: Vec<u8>,
    pub ak_name: Vec<u8>,
    pub ek_certificate_sha256: [u8; 32],
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for EnrollmentChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentChallenge")
            .field("ak_name", &hex::encode(&self.ak_name))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A started enrollment: the record to store, and the credential to send with its id and
/// `certify_nonce`.
#[derive(Debug, Clone)]
pub struct EnrollmentStart {
    pub challenge: EnrollmentChallenge,
    pub credential: IdCredential,
}

/// The client's request that finishes enrollment.
#[derive(Debug, Clone, Copy)]
pub struct EnrollmentResponse<'a> {
    /// The secret TPM2_ActivateCredential returned.
    pub activated_secret: &'a [u8],
    /// The session key's TPM2B_PUBLIC.
    pub key_public: &'a [u8],
    /// The TPMS_ATTEST from TPM2_Certify (`certifyInfo` without its size).
    pub certify_info: &'a [u8],
    /// The TPMT_SIGNATURE from TPM2_Certify.
    pub signature: &'a [u8],
}

/// The evidence a device record keeps for assurance `tpm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEvidence {
    pub ek_certificate_sha256: [u8; 32],
    pub ak_name: Vec<u8>,
    pub ak_public: Vec<u8>,
}

/// A finished enrollment: a session key that a trusted TPM holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEnrollment {
    pub session_key: Jwk,
    pub evidence: TpmEvidence,
}

impl TpmEnrollment {
    pub fn assurance(&self) -> Assurance {
        Assurance::Tpm
    }
}

/// Checks the EK certificate, the EK and the AK, and wraps a fresh secret for the AK.
pub fn start_enrollment(
    policy: &EnrollmentPolicy,
    request: EnrollmentRequest<'_>,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<EnrollmentStart, TpmError> {
    // The EK certificate chains to a trusted TPM vendor root.
    let nv_contents = request.ek_certificate.ok_or(TpmError::NoEkCertificate)?;
    let certificate = verify_ek_certificate(nv_contents, &policy.trust_store, now)?;

    // The EK public key the client presents equals the key in that certificate.
    let ek = TpmPublic::from_tpm2b(request.ek_public)?;
    certificate.check_ek_public(&ek)?;

    let ak = TpmPublic::from_tpm2b(request.ak_public)?;
    check_attestation_key(&ak)?;
    issue_challenge(
        &ek,
        request.ak_public,
        &ak,
        certificate.sha256,
        now + policy.challenge_ttl,
        rng,
    )
}

/// Wraps a fresh secret for the AK without checking the EK certificate, the EK or the AK, for
/// a device that failed [`start_enrollment`] and that policy still lets enroll below `tpm`.
/// Finishing it proves possession of the session key and nothing about where the key lives.
pub fn start_untrusted_enrollment(
    policy: &EnrollmentPolicy,
    request: EnrollmentRequest<'_>,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<EnrollmentStart, TpmError> {
    let ek = TpmPublic::from_tpm2b(request.ek_public)?;
    let ak = TpmPublic::from_tpm2b(request.ak_public)?;
    let presented = sha256(request.ek_certificate.unwrap_or_default());
    issue_challenge(
        &ek,
        request.ak_public,
        &ak,
        presented,
        now + policy.challenge_ttl,
        rng,
    )
}

/// Runs MakeCredential for the AK's Name and picks the certify nonce and the challenge id.
fn issue_challenge(
    ek: &TpmPublic,
    ak_public: &[u8],
    ak: &TpmPublic,
    ek_certificate_sha256: [u8; 32],
    expires_at: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<EnrollmentStart, TpmError> {
    let ak_name = ak.name()?;

    // MakeCredential for the AK's Name: only the TPM with this EK can recover the secret, and
    // only for an object with this Name.
    let mut secret = Zeroizing::new([0u8; MAX_CREDENTIAL_BYTES]);
    rng.fill_bytes(secret.as_mut());
    let credential = make_credential(ek, &ak_name, secret.as_ref(), rng)?;
    let mut certify_nonce = vec![0u8; CHALLENGE_BYTES];
    rng.fill_bytes(&mut certify_nonce);

    let challenge = EnrollmentChallenge {
        id: Secret::generate(rng, CHALLENGE_BYTES).expose().to_owned(),
        secret_sha256: sha256(secret.as_ref()),
        certify_nonce,
        ak_public: ak_public.to_vec(),
        ak_name,
        ek_certificate_sha256,
        expires_at,
    };
    Ok(EnrollmentStart {
        challenge,
        credential,
    })
}

/// Checks the activated secret and the certification of the session key by the AK.
///
/// `consumed` is the challenge the store consumed for the id the client sent, or `None` if it
/// found none (never issued, already used or removed).
pub fn finish_enrollment(
    consumed: Option<EnrollmentChallenge>,
    response: EnrollmentResponse<'_>,
    now: UnixTime,
) -> Result<TpmEnrollment, TpmError> {
    let challenge = consumed.ok_or(TpmError::UnknownChallenge)?;
    if now >= challenge.expires_at {
        return Err(TpmError::ChallengeExpired);
    }

    // The AK is on the EK's TPM: that TPM recovered the secret wrapped for the AK's Name.
    let presented = sha256(response.activated_secret);
    if !constant_time_eq(&presented, &challenge.secret_sha256) {
        return Err(TpmError::WrongSecret);
    }

    // TPMS_ATTEST: TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY and no trailing bytes; then the
    // AK's signature over the bytes as received.
    let attest = CertifyAttest::parse(response.certify_info)?;
    let ak = TpmPublic::from_tpm2b(&challenge.ak_public)?;
    AkSignature::parse(response.signature)?.verify(&ak, response.certify_info)?;

    // extraData is this enrollment's nonce, so the certification is fresh.
    if !constant_time_eq(&attest.extra_data, &challenge.certify_nonce) {
        return Err(TpmError::NonceMismatch);
    }

    // The certified Name is the Name of the key presented, computed over the bytes received.
    let key = TpmPublic::from_tpm2b(response.key_public)?;
    if attest.name != key.name()? {
        return Err(TpmError::CertifiedNameMismatch);
    }
    check_session_key(&key)?;

    Ok(TpmEnrollment {
        session_key: key.p256_jwk()?,
        evidence: TpmEvidence {
            ek_certificate_sha256: challenge.ek_certificate_sha256,
            ak_name: challenge.ak_name,
            ak_public: challenge.ak_public,
        },
    })
}

/// Checks that an AK is a restricted signing key that was created inside the TPM and cannot
/// leave it. It is an ECC P-256 key signing with ECDSA-SHA256 or an RSA key with RSASSA-SHA256.
fn check_attestation_key(ak: &TpmPublic) -> Result<(), TpmError> {
    ak.attributes.check(
        "AK",
        &[
            (Attributes::FIXED_TPM, "fixedTPM", true),
            (Attributes::FIXED_PARENT, "fixedParent", true),
            (
                Attributes::SENSITIVE_DATA_ORIGIN,
                "sensitiveDataOrigin",
                true,
            ),
            (Attributes::RESTRICTED, "restricted", true),
            (Attributes::SIGN, "sign", true),
            (Attributes::DECRYPT, "decrypt", false),
        ],
    )?;
    let unsupported = |reason| TpmError::UnsupportedKey { key: "AK", reason };
    match &ak.key {
        PublicKey::Ecc { curve, scheme, .. } => {
            if *curve != curve::NIST_P256 {
                return Err(unsupported("ECC AK curve is not NIST P-256"));
            }
            if (scheme.algorithm, scheme.hash) != (alg::ECDSA, alg::SHA256) {
                return Err(unsupported("ECC AK scheme is not ECDSA with SHA-256"));
            }
        }
        PublicKey::Rsa {
            scheme, key_bits, ..
        } => {
            if *key_bits < 2048 {
                return Err(unsupported("RSA AK is shorter than 2048 bits"));
            }
            if (scheme.algorithm, scheme.hash) != (alg::RSASSA, alg::SHA256) {
                return Err(unsupported("RSA AK scheme is not RSASSA with SHA-256"));
            }
        }
    }
    Ok(())
}

/// Checks that a session key was created inside the TPM, cannot leave it, signs and does not
/// decrypt. Its scheme must allow ES256 signatures, and [`TpmPublic::p256_jwk`] checks the curve.
fn check_session_key(key: &TpmPublic) -> Result<(), TpmError> {
    key.attributes.check(
        "session key",
        &[
            (Attributes::FIXED_TPM, "fixedTPM", true),
            (Attributes::FIXED_PARENT, "fixedParent", true),
            (
                Attributes::SENSITIVE_DATA_ORIGIN,
                "sensitiveDataOrigin",
                true,
            ),
            (Attributes::SIGN, "sign", true),
            (Attributes::DECRYPT, "decrypt", false),
        ],
    )?;
    let PublicKey::Ecc { scheme, .. } = &key.key else {
        return Err(TpmError::UnsupportedKey {
            key: "session key",
            reason: "not an ECC key",
        });
    };
    match (scheme.algorithm, scheme.hash) {
        (alg::NULL, _) | (alg::ECDSA, alg::SHA256) => Ok(()),
        _ => Err(TpmError::UnsupportedKey {
            key: "session key",
            reason: "scheme is neither NULL nor ECDSA with SHA-256",
        }),
    }
}
