//! Enrollment and EK certificate tests over fixtures captured from swtpm 0.7.1.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::ek_certificate::certificate_from_nv;
use super::public::ObjectAttributes as Attributes;
use super::test_support::*;
use super::*;
use crate::crypto::secret::sha256;
use crate::store::Assurance;

const TTL: u64 = 300;

fn policy() -> EnrollmentPolicy {
    EnrollmentPolicy {
        trust_store: swtpm_trust_store(),
        challenge_ttl: TTL,
    }
}

fn start_with(
    ek_certificate: Option<&[u8]>,
    ek_public: &[u8],
    ak_public: &[u8],
) -> Result<EnrollmentStart, TpmError> {
    let request = EnrollmentRequest {
        ek_certificate,
        ek_public,
        ak_public,
    };
    start_enrollment(&policy(), request, NOW, &mut StdRng::seed_from_u64(3))
}

fn verify_nv(nv: &[u8]) -> Result<VerifiedEkCertificate, TpmError> {
    verify_ek_certificate(nv, &swtpm_trust_store(), NOW)
}

/// A trust store with only the certificate in one PEM fixture.
fn trust_store_of(name: &str) -> TrustStore {
    let pem = String::from_utf8(fixture(name)).unwrap();
    let base64: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, base64).unwrap();
    let mut store = TrustStore::default();
    store.add_der(der).unwrap();
    store
}

// EK certificate chain.

#[test]
fn swtpm_ek_certificate_chains_to_local_ca_root() {
    let der = fixture("swtpm-ek-rsa.der");
    let verified = verify_nv(&der).unwrap();
    assert_eq!(verified.sha256, sha256(&der));
    let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
    assert!(verified.check_ek_public(&ek).is_ok());
}

#[test]
fn swtpm_ecc_p384_ek_certificate_chains_too() {
    let verified = verify_nv(&fixture("swtpm-ek-ecc-p384.der")).unwrap();
    assert!(matches!(
        verified.key,
        CertificateKey::Ec { curve: 0x0004, ref point } if point.len() == 97
    ));
}

#[test]
fn ek_certificate_from_untrusted_ca_is_rejected() {
    // The other swtpm's CA has the same names as the trusted one but a different key.
    let result = verify_nv(&fixture("swtpm-ek-rsa-untrusted-ca.der"));
    assert!(
        matches!(result, Err(TpmError::BadCertificateSignature(_))),
        "{result:?}"
    );
}

#[test]
fn ek_certificate_needs_chain_to_self_signed_root() {
    let intermediate_only = trust_store_of("trust/swtpm-localca-issuer.pem");

    let result = verify_ek_certificate(&fixture("swtpm-ek-rsa.der"), &intermediate_only, NOW);
    assert!(
        matches!(result, Err(TpmError::UntrustedEkCertificate(_))),
        "{result:?}"
    );
}

#[test]
fn ek_certificate_without_intermediate_is_untrusted() {
    let root_only = trust_store_of("trust/swtpm-localca-root.pem");

    let result = verify_ek_certificate(&fixture("swtpm-ek-rsa.der"), &root_only, NOW);
    assert!(
        matches!(result, Err(TpmError::UntrustedEkCertificate(_))),
        "{result:?}"
    );
}

#[test]
fn ek_certificate_outside_its_validity_is_rejected() {
    let trust = swtpm_trust_store();
    let before = verify_ek_certificate(&fixture("swtpm-ek-rsa.der"), &trust, 0);
    assert!(
        matches!(before, Err(TpmError::CertificateNotValidAt { now: 0, .. })),
        "{before:?}"
    );

    // The first second of the year 10000, after the notAfter of 9999-12-31T23:59:59Z.
    let year_10000 = 253_402_300_800;
    let after = verify_ek_certificate(&fixture("swtpm-ek-rsa.der"), &trust, year_10000);
    assert!(
        matches!(after, Err(TpmError::CertificateNotValidAt { .. })),
        "{after:?}"
    );
}

#[test]
fn ek_certificate_with_mismatched_signature_algorithm_is_rejected() {
    // RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal the one inside the TBS. Change
    // the outer sha256WithRSAEncryption (1.2.840.113549.1.1.11) to sha384WithRSAEncryption.
    let mut der = fixture("swtpm-ek-rsa.der");
    let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    let outer = der
        .windows(oid.len())
        .rposition(|window| window == oid)
        .unwrap();
    der[outer + oid.len() - 1] = 0x0c;
    assert_eq!(
        verify_nv(&der).err(),
        Some(TpmError::SignatureAlgorithmMismatch)
    );
}

#[test]
fn ek_certificate_with_changed_tbs_byte_is_rejected() {
    let der = fixture("swtpm-ek-rsa.der");
    // Change one byte of the RSA modulus inside the TBS.
    let mut changed = der.clone();
    let at = der.len() / 3;
    changed[at] ^= 0x01;
    let result = verify_nv(&changed);
    assert!(
        matches!(result, Err(TpmError::BadCertificateSignature(_))),
        "{result:?}"
    );
}

#[test]
fn missing_ek_certificate_is_its_own_outcome() {
    let ek = fixture("swtpm-ek-public.bin");
    let ak = fixture("ak-ecc-public.bin");
    let error = start_with(None, &ek, &ak).unwrap_err();
    assert_eq!(error, TpmError::NoEkCertificate);
    assert_eq!(error.reason(), "no_ek_certificate");

    // Empty and unwritten NV areas mean the same.
    for nv in [vec![], vec![0xff; 1024], vec![0x00; 16]] {
        assert_eq!(
            certificate_from_nv(&nv),
            Err(TpmError::NoEkCertificate),
            "{} bytes",
            nv.len()
        );
    }
}

#[test]
fn load_dir_rejects_empty_dir_and_bad_pem() {
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        TrustStore::load_dir(empty.path()),
        Err(TrustStoreError::Empty(_))
    ));

    let broken = tempfile::tempdir().unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n";
    std::fs::write(broken.path().join("vendor.pem"), pem).unwrap();
    assert!(matches!(
        TrustStore::load_dir(broken.path()),
        Err(TrustStoreError::Pem { .. })
    ));

    let store = swtpm_trust_store();
    assert_eq!(store.len(), 2);
}

// EK certificates as found in NV (lenient where real TPMs need it).

#[test]
fn ek_certificate_with_tcg_nv_header_is_accepted() {
    let der = fixture("swtpm-ek-rsa.der");
    let mut nv = vec![0x10, 0x01, 0x00];
    nv.extend_from_slice(&(der.len() as u16).to_be_bytes());
    nv.extend_from_slice(&der);
    let verified = verify_nv(&nv).unwrap();
    assert_eq!(verified.der, der);
    assert_eq!(verified.sha256, sha256(&der));
}

#[test]
fn ek_certificate_with_padding_is_accepted() {
    let der = fixture("swtpm-ek-rsa.der");
    for padding in [0x00u8, 0xff] {
        let mut nv = der.clone();
        nv.extend_from_slice(&[padding; 200]);
        let verified = verify_nv(&nv).unwrap();
        assert_eq!(verified.der, der, "padding {padding:#x}");
    }

    let mut headed_and_padded = vec![0x10, 0x01, 0x00];
    headed_and_padded.extend_from_slice(&(der.len() as u16).to_be_bytes());
    headed_and_padded.extend_from_slice(&der);
    headed_and_padded.extend_from_slice(&[0xff; 64]);
    assert!(verify_nv(&headed_and_padded).is_ok());
}

#[test]
fn ek_certificate_followed_by_other_bytes_is_rejected() {
    let mut nv = fixture("swtpm-ek-rsa.der");
    nv.extend_from_slice(b"garbage");
    assert_eq!(
        verify_nv(&nv).err(),
        Some(TpmError::EkCertificateTrailingData(7))
    );
}

#[test]
fn ek_certificate_length_beyond_data_is_rejected() {
    let der = fixture("swtpm-ek-rsa.der");

    // A TCG header that declares more bytes than follow it.
    let mut nv = vec![0x10, 0x01, 0x00];
    nv.extend_from_slice(&(der.len() as u16 + 10).to_be_bytes());
    nv.extend_from_slice(&der);
    assert_eq!(
        verify_nv(&nv).err(),
        Some(TpmError::EkCertificateLengthExceedsData {
            declared: der.len() + 10,
            available: der.len()
        })
    );

    // A certificate whose SEQUENCE declares more bytes than the NV area holds.
    let cut = &der[..der.len() - 10];
    assert_eq!(
        verify_nv(cut).err(),
        Some(TpmError::EkCertificateLengthExceedsData {
            declared: der.len(),
            available: der.len() - 10
        })
    );
}

#[test]
fn non_minimal_serial_accepted_and_verified() {
    // Serial 2 written as 0x00 0x02, which DER forbids (X.690 §8.3.2), signed again by the CA.
    let der = swtpm_ek_certificate_with_serial(&[0x00, 0x02]);
    let verified = verify_nv(&der).unwrap();
    assert_eq!(verified.sha256, sha256(&der));

    // The same edit without signing again fails: the signature is still checked.
    let original = fixture("swtpm-ek-rsa.der");
    let mut unsigned_edit = swtpm_ek_certificate_with_serial(&[0x00, 0x02]);
    let signature_len = 384;
    let start = unsigned_edit.len() - signature_len;
    unsigned_edit[start..].copy_from_slice(&original[original.len() - signature_len..]);
    assert!(matches!(
        verify_nv(&unsigned_edit),
        Err(TpmError::BadCertificateSignature(_))
    ));
}

#[test]
fn unsorted_issuer_set_finds_its_ca() {
    let attributes: [(&[u8], &str); 2] = [
        (oid::COMMON_NAME, "devbound test TPM CA"),
        (oid::ORGANIZATION, "devbound"),
    ];
    let ca = TestCa::new(multi_valued_name(&attributes, true));
    let unsorted_issuer = multi_valued_name(&attributes, false);
    assert_ne!(unsorted_issuer, ca.name, "the two encodings differ");
    let subject = multi_valued_name(&[(oid::COMMON_NAME, "ek")], true);
    let ek_certificate = ca.issue(&[7], &unsorted_issuer, &subject, &swtpm_ek_spki(), &[]);

    let verified = verify_ek_certificate(&ek_certificate, &ca.trust_store(), NOW).unwrap();
    let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
    assert!(verified.check_ek_public(&ek).is_ok());
}

#[test]
fn issuer_name_with_other_value_is_untrusted() {
    let ca = TestCa::new(multi_valued_name(
        &[(oid::COMMON_NAME, "devbound CA")],
        true,
    ));
    let other = multi_valued_name(&[(oid::COMMON_NAME, "devbound CB")], true);
    let ek_certificate = ca.issue(&[7], &other, &other, &swtpm_ek_spki(), &[]);
    assert!(matches!(
        verify_ek_certificate(&ek_certificate, &ca.trust_store(), NOW),
        Err(TpmError::UntrustedEkCertificate(_))
    ));
}

#[test]
fn ek_certificate_parsing_never_panics_on_hostile_nv() {
    let der = fixture("swtpm-ek-rsa.der");
    let mut headed = vec![0x10, 0x01, 0x00];
    headed.extend_from_slice(&(der.len() as u16).to_be_bytes());
    headed.extend_from_slice(&der);
    let trust = swtpm_trust_store();

    for len in (0..headed.len()).step_by(7) {
        assert!(verify_ek_certificate(&headed[..len], &trust, NOW).is_err());
    }
    for index in (0..headed.len()).step_by(3) {
        for value in [0x00, 0x80, 0xff] {
            let mut changed = headed.clone();
            changed[index] = value;
            let _ = verify_ek_certificate(&changed, &trust, NOW);
        }
    }
}

// Enrollment start.

#[test]
fn enrollment_start_wraps_secret_for_ak_name() {
    let started = start_with(
        Some(&fixture("swtpm-ek-rsa.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    )
    .unwrap();
    let challenge = &started.challenge;
    assert_eq!(challenge.ak_name, fixture("ak-ecc-name.bin"));
    assert_eq!(challenge.ak_public, fixture("ak-ecc-public.bin"));
    assert_eq!(
        challenge.ek_certificate_sha256,
        sha256(&fixture("swtpm-ek-rsa.der"))
    );
    assert_eq!(challenge.expires_at, NOW + TTL);
    assert_eq!(challenge.certify_nonce.len(), CHALLENGE_BYTES);
    assert_eq!(started.credential.encrypted_secret.len(), 256);
    assert_eq!(started.credential.credential_blob.len(), 2 + 32 + 2 + 32);
}

#[test]
fn enrollment_start_accepts_rsa_ak() {
    let started = start_with(
        Some(&fixture("swtpm-ek-rsa.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-rsa-public.bin"),
    );
    assert!(started.is_ok(), "{started:?}");
}

#[test]
fn enrollment_start_rejects_ek_public_differing_from_certificate() {
    let mut ek_public = fixture("swtpm-ek-public.bin");
    let last = ek_public.len() - 1;
    ek_public[last] ^= 0x01;
    let result = start_with(
        Some(&fixture("swtpm-ek-rsa.der")),
        &ek_public,
        &fixture("ak-ecc-public.bin"),
    );
    assert_eq!(result.err(), Some(TpmError::EkPublicMismatch));

    // The ECC EK certificate does not certify the RSA EK either.
    let result = start_with(
        Some(&fixture("swtpm-ek-ecc-p384.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    assert_eq!(result.err(), Some(TpmError::EkPublicMismatch));
}

#[test]
fn enrollment_start_rejects_ecc_ek() {
    // The P-384 EK matches its certificate, but MakeCredential here needs an RSA EK.
    let result = start_with(
        Some(&fixture("swtpm-ek-ecc-p384.der")),
        &fixture("swtpm-ek-ecc-p384-public.bin"),
        &fixture("ak-ecc-public.bin"),
    );
    assert!(
        matches!(result, Err(TpmError::UnsupportedEk(_))),
        "{result:?}"
    );
    let verified = verify_nv(&fixture("swtpm-ek-ecc-p384.der")).unwrap();
    let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-ecc-p384-public.bin")).unwrap();
    assert!(verified.check_ek_public(&ek).is_ok());
}

/// The AK fixture with `set` bits set and `clear` bits cleared in its objectAttributes.
fn ak_with_attributes(set: u32, clear: u32) -> Vec<u8> {
    let mut ak = fixture("ak-ecc-public.bin");
    // TPM2B size, type and nameAlg come first: 6 bytes.
    let attributes = u32::from_be_bytes(ak[6..10].try_into().unwrap());
    ak[6..10].copy_from_slice(&((attributes | set) & !clear).to_be_bytes());
    ak
}

#[test]
fn enrollment_start_rejects_ak_without_attestation_key_attributes() {
    let cases = [
        (
            ak_with_attributes(0, Attributes::FIXED_TPM),
            "fixedTPM",
            true,
        ),
        (
            ak_with_attributes(0, Attributes::FIXED_PARENT),
            "fixedParent",
            true,
        ),
        (
            ak_with_attributes(0, Attributes::SENSITIVE_DATA_ORIGIN),
            "sensitiveDataOrigin",
            true,
        ),
        (
            ak_with_attributes(0, Attributes::RESTRICTED),
            "restricted",
            true,
        ),
        (ak_with_attributes(0, Attributes::SIGN), "sign", true),
        (ak_with_attributes(Attributes::DECRYPT, 0), "decrypt", false),
    ];
    for (ak, attribute, expected) in cases {
        let result = start_with(
            Some(&fixture("swtpm-ek-rsa.der")),
            &fixture("swtpm-ek-public.bin"),
            &ak,
        );
        assert_eq!(
            result.err(),
            Some(TpmError::ObjectAttribute {
                key: "AK",
                attribute,
                expected
            }),
            "{attribute}"
        );
    }
}

#[test]
fn enrollment_start_rejects_session_key_posing_as_ak() {
    // The session key signs but is not restricted, so it could sign a forged TPMS_ATTEST.
    let result = start_with(
        Some(&fixture("swtpm-ek-rsa.der")),
        &fixture("swtpm-ek-public.bin"),
        &fixture("session-key-public.bin"),
    );
    assert_eq!(
        result.err(),
        Some(TpmError::ObjectAttribute {
            key: "AK",
            attribute: "restricted",
            expected: true
        })
    );
}

// Enrollment finish, over the TPM2_Certify that swtpm made with the fixture AK and nonce.

const SECRET: [u8; 32] = [0x42; 32];

fn challenge() -> EnrollmentChallenge {
    EnrollmentChallenge {
        id: "enrollment-1".to_owned(),
        secret_sha256: sha256(&SECRET),
        certify_nonce: fixture("certify-nonce.bin"),
        ak_public: fixture("ak-ecc-public.bin"),
        ak_name: fixture("ak-ecc-name.bin"),
        ek_certificate_sha256: sha256(&fixture("swtpm-ek-rsa.der")),
        expires_at: NOW + TTL,
    }
}

struct Response {
    secret: Vec<u8>,
    key_public: Vec<u8>,
    certify_info: Vec<u8>,
    signature: Vec<u8>,
}

impl Response {
    fn certified() -> Self {
        Self {
            secret: SECRET.to_vec(),
            key_public: fixture("session-key-public.bin"),
            certify_info: fixture("certify-attest.bin"),
            signature: fixture("certify-signature.bin"),
        }
    }

    fn finish(&self, challenge: EnrollmentChallenge) -> Result<TpmEnrollment, TpmError> {
        self.finish_at(Some(challenge), NOW)
    }

    fn finish_at(
        &self,
        challenge: Option<EnrollmentChallenge>,
        now: u64,
    ) -> Result<TpmEnrollment, TpmError> {
        let response = EnrollmentResponse {
            activated_secret: &self.secret,
            key_public: &self.key_public,
            certify_info: &self.certify_info,
            signature: &self.signature,
        };
        finish_enrollment(challenge, response, now)
    }
}

#[test]
fn enrollment_finish_returns_session_key_at_tpm_assurance() {
    let enrolled = Response::certified().finish(challenge()).unwrap();
    let key = TpmPublic::from_tpm2b(&fixture("session-key-public.bin")).unwrap();
    assert_eq!(enrolled.session_key, key.p256_jwk().unwrap());
    assert_eq!(enrolled.assurance(), Assurance::Tpm);
    assert_eq!(enrolled.evidence.ak_name, fixture("ak-ecc-name.bin"));
    assert_eq!(
        enrolled.evidence.ek_certificate_sha256,
        sha256(&fixture("swtpm-ek-rsa.der"))
    );
}

#[test]
fn enrollment_finish_accepts_rsa_ak_certification() {
    let mut rsa_challenge = challenge();
    rsa_challenge.ak_public = fixture("ak-rsa-public.bin");
    let response = Response {
        certify_info: fixture("rsa-ak-certify-attest.bin"),
        signature: fixture("rsa-ak-certify-signature.bin"),
        ..Response::certified()
    };
    assert!(response.finish(rsa_challenge).is_ok());
}

#[test]
fn only_evidence_errors_allow_a_lower_assurance() {
    assert!(TpmError::NoEkCertificate.is_evidence());
    assert!(TpmError::WrongSecret.is_evidence());
    assert!(TpmError::NonceMismatch.is_evidence());
    assert!(!TpmError::UnknownChallenge.is_evidence());
    assert!(!TpmError::ChallengeExpired.is_evidence());
    assert!(!TpmError::Internal("x").is_evidence());
}

#[test]
fn untrusted_start_still_wraps_a_secret_for_the_ak() {
    let request = EnrollmentRequest {
        ek_certificate: None,
        ek_public: &fixture("swtpm-ek-public.bin"),
        ak_public: &fixture("session-key-public.bin"),
    };
    let mut rng = StdRng::seed_from_u64(5);
    assert_eq!(
        start_enrollment(&policy(), request, NOW, &mut rng).err(),
        Some(TpmError::NoEkCertificate)
    );
    let started = start_untrusted_enrollment(&policy(), request, NOW, &mut rng).unwrap();
    let key = TpmPublic::from_tpm2b(&fixture("session-key-public.bin")).unwrap();
    assert_eq!(started.challenge.ak_name, key.name().unwrap());
    assert_eq!(started.challenge.expires_at, NOW + TTL);
}

#[test]
fn enrollment_finish_rejects_wrong_activated_secret() {
    for secret in [vec![0x43; 32], vec![0x42; 31], vec![]] {
        let response = Response {
            secret,
            ..Response::certified()
        };
        assert_eq!(
            response.finish(challenge()).err(),
            Some(TpmError::WrongSecret)
        );
    }
}

#[test]
fn enrollment_finish_rejects_replayed_challenge() {
    // The store consumes a challenge atomically, and a HashMap plays that role here.
    let mut store = HashMap::from([(challenge().id, challenge())]);
    let response = Response::certified();
    assert!(
        response
            .finish_at(store.remove("enrollment-1"), NOW)
            .is_ok()
    );
    assert_eq!(
        response.finish_at(store.remove("enrollment-1"), NOW).err(),
        Some(TpmError::UnknownChallenge)
    );
}

#[test]
fn enrollment_finish_rejects_expired_challenge() {
    let response = Response::certified();
    assert!(response.finish_at(Some(challenge()), NOW + TTL - 1).is_ok());
    assert_eq!(
        response.finish_at(Some(challenge()), NOW + TTL).err(),
        Some(TpmError::ChallengeExpired)
    );
}

#[test]
fn enrollment_finish_rejects_stale_nonce() {
    // A certification made for an earlier enrollment, whose nonce was different.
    let mut later = challenge();
    later.certify_nonce = vec![0x11; CHALLENGE_BYTES];
    assert_eq!(
        Response::certified().finish(later).err(),
        Some(TpmError::NonceMismatch)
    );
}

#[test]
fn enrollment_finish_rejects_movable_key() {
    let response = Response {
        key_public: fixture("movable-key-public.bin"),
        certify_info: fixture("movable-certify-attest.bin"),
        signature: fixture("movable-certify-signature.bin"),
        ..Response::certified()
    };
    assert_eq!(
        response.finish(challenge()).err(),
        Some(TpmError::ObjectAttribute {
            key: "session key",
            attribute: "fixedTPM",
            expected: true
        })
    );
}

#[test]
fn enrollment_finish_rejects_key_swapped_after_certification() {
    let swapped = Response {
        key_public: fixture("movable-key-public.bin"),
        ..Response::certified()
    };
    assert_eq!(
        swapped.finish(challenge()).err(),
        Some(TpmError::CertifiedNameMismatch)
    );

    // The certified key with one public byte changed is another key.
    let mut key_public = fixture("session-key-public.bin");
    let last = key_public.len() - 1;
    key_public[last] ^= 0x01;
    let changed = Response {
        key_public,
        ..Response::certified()
    };
    assert_eq!(
        changed.finish(challenge()).err(),
        Some(TpmError::CertifiedNameMismatch)
    );
}

#[test]
fn enrollment_finish_rejects_malformed_or_altered_attest() {
    let with_attest = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut response = Response::certified();
        edit(&mut response.certify_info);
        response.finish(challenge()).err()
    };
    assert_eq!(
        with_attest(&|attest| attest[0] = 0),
        Some(TpmError::WrongMagic(0x0054_4347))
    );
    assert_eq!(
        with_attest(&|attest| attest[5] = 0x18),
        Some(TpmError::WrongAttestationType(0x8018))
    );
    assert_eq!(
        with_attest(&|attest| attest.push(0)),
        Some(TpmError::TrailingBytes("TPMS_ATTEST"))
    );
    // A changed byte of extraData keeps the structure valid but breaks the AK signature.
    let nonce_at = attest_nonce_offset();
    assert_eq!(
        with_attest(&|attest| attest[nonce_at] ^= 1),
        Some(TpmError::BadSignature)
    );
}

/// Offset of the first extraData byte in the fixture TPMS_ATTEST.
fn attest_nonce_offset() -> usize {
    let attest = fixture("certify-attest.bin");
    // magic (4), type (2), qualifiedSigner (2 + n), extraData size (2).
    let signer_len = usize::from(u16::from_be_bytes([attest[6], attest[7]]));
    8 + signer_len + 2
}

#[test]
fn enrollment_finish_rejects_signature_by_other_ak() {
    let mut other_ak = challenge();
    other_ak.ak_public = fixture("ak-rsa-public.bin");
    assert_eq!(
        Response::certified().finish(other_ak).err(),
        Some(TpmError::BadSignature)
    );
}

#[test]
fn enrollment_finish_never_panics_on_hostile_evidence() {
    let certified = Response::certified();
    let fields: [fn(&mut Response) -> &mut Vec<u8>; 3] = [
        |response| &mut response.key_public,
        |response| &mut response.certify_info,
        |response| &mut response.signature,
    ];
    for field in fields {
        let len = field(&mut Response::certified()).len();
        for cut in 0..len {
            let mut response = Response::certified();
            field(&mut response).truncate(cut);
            assert!(response.finish(challenge()).is_err());
        }
        for index in 0..len {
            let mut response = Response::certified();
            field(&mut response)[index] ^= 0x80;
            assert!(response.finish(challenge()).is_err(), "byte {index}");
        }
    }
    assert!(certified.finish(challenge()).is_ok());
}
