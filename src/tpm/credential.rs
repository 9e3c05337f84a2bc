//! MakeCredential in software (TPM 2.0 Library Specification, Part 1 §24 "Credential
//! Protection"): wraps a secret so that only the TPM holding the EK, and only for an object with
//! the given Name, can recover it with TPM2_ActivateCredential.
//!
//! Only an RSA EK with name algorithm SHA-256 and AES-128-CFB as its symmetric algorithm (the
//! default EK template) is supported. An ECC EK would need an ECDH-derived seed instead of
//! RSA-OAEP and is rejected with [`TpmError::UnsupportedEk`].

use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::der;
use super::error::TpmError;
use super::public::{ObjectAttributes, PublicKey, TpmPublic, alg, rsa_exponent};

/// Size of the seed and of the largest credential: the SHA-256 digest size, because a TPM
/// rejects a credential longer than the digest of the EK's name algorithm.
pub const MAX_CREDENTIAL_BYTES: usize = 32;
const SEED_BYTES: usize = 32;

/// The OAEP label for the seed (Part 1 §24.4), NUL terminator included.
const IDENTITY_LABEL: &[u8] = b"IDENTITY\0";

/// The two inputs of TPM2_ActivateCredential that the server sends to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdCredential {
    /// The buffer of a TPM2B_ID_OBJECT: `u16(32) || outerHMAC || encIdentity`.
    pub credential_blob: Vec<u8>,
    /// The buffer of a TPM2B_ENCRYPTED_SECRET: the seed encrypted to the EK with RSA-OAEP.
    pub encrypted_secret: Vec<u8>,
}

/// Wraps `credential` for the object called `name` on the TPM that contains `ek`.
pub fn make_credential(
    ek: &TpmPublic,
    name: &[u8],
    credential: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<IdCredential, TpmError> {
    let encrypting_key = oaep_key(ek)?;
    let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
    rng.fill_bytes(seed.as_mut());

    let credential_blob = protect_credential(seed.as_ref(), name, credential)?;
    let mut encrypted_secret = vec![0u8; encrypting_key.ciphertext_size()];
    let written = encrypting_key
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            seed.as_ref(),
            &mut encrypted_secret,
            Some(IDENTITY_LABEL),
        )
        .map_err(|_| TpmError::Internal("RSA-OAEP encryption of the seed failed"))?
        .len();
    encrypted_secret.truncate(written);

    Ok(IdCredential {
        credential_blob,
        encrypted_secret,
    })
}

/// Checks that an EK suits MakeCredential and returns its RSA-OAEP key.
fn oaep_key(ek: &TpmPublic) -> Result<OaepPublicEncryptingKey, TpmError> {
    let PublicKey::Rsa {
        symmetric,
        exponent,
        modulus,
        ..
    } = &ek.key
    else {
        return Err(TpmError::UnsupportedEk(
            "only RSA EKs are supported for MakeCredential",
        ));
    };
    if ek.name_alg != alg::SHA256 {
        return Err(TpmError::UnsupportedEk("EK name algorithm is not SHA-256"));
    }
    if (symmetric.algorithm, symmetric.key_bits, symmetric.mode) != (alg::AES, 128, alg::CFB) {
        return Err(TpmError::UnsupportedEk(
            "EK symmetric algorithm is not AES-128-CFB",
        ));
    }
    // ActivateCredential only works with a storage key: restricted and decrypt, never sign.
    ek.attributes.check(
        "EK",
        &[
            (ObjectAttributes::RESTRICTED, "restricted", true),
            (ObjectAttributes::DECRYPT, "decrypt", true),
            (ObjectAttributes::SIGN, "sign", false),
        ],
    )?;

    let spki = der::rsa_subject_public_key_info(modulus, &rsa_exponent(*exponent));
    let key = PublicEncryptingKey::from_der(&spki)
        .map_err(|_| TpmError::UnsupportedEk("EK RSA public key is invalid or too small"))?;
    OaepPublicEncryptingKey::new(key)
        .map_err(|_| TpmError::Internal("RSA-OAEP key construction failed"))
}

/// Builds the credential blob from the seed (Part 1 §24.4 and §24.5): the credential is
/// encrypted with a key derived from the seed and the Name, then protected by an HMAC.
pub(crate) fn protect_credential(
    seed: &[u8],
    name: &[u8],
    credential: &[u8],
) -> Result<Vec<u8>, TpmError> {
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return Err(TpmError::CredentialTooLong(credential.len()));
    }
    let symmetric_key = kdfa(seed, b"STORAGE", name, 128)?;
    let hmac_key = kdfa(seed, b"INTEGRITY", &[], 256)?;

    // encIdentity: the TPM2B_DIGEST of the credential, encrypted with AES-128-CFB and a zero IV.
    let mut enc_identity = Zeroizing::new(Vec::with_capacity(2 + credential.len()));
    enc_identity.extend_from_slice(&(credential.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(credential);
    let cipher_key = UnboundCipherKey::new(&AES_128, &symmetric_key)
        .map_err(|_| TpmError::Internal("AES-128 key construction failed"))?;
    EncryptingKey::cfb128(cipher_key)
        .and_then(|key| {
            key.less_safe_encrypt(
                &mut enc_identity,
                EncryptionContext::Iv128([0u8; 16].into()),
            )
        })
        .map_err(|_| TpmError::Internal("AES-128-CFB encryption failed"))?;

    let integrity_key = hmac::Key::new(hmac::HMAC_SHA256, &hmac_key);
    let mut context = hmac::Context::with_key(&integrity_key);
    context.update(&enc_identity);
    context.update(name);
    let outer_hmac = context.sign();

    let mut blob = Vec::with_capacity(2 + outer_hmac.as_ref().len() + enc_identity.len());
    blob.extend_from_slice(&(outer_hmac.as_ref().len() as u16).to_be_bytes());
    blob.extend_from_slice(outer_hmac.as_ref());
    blob.extend_from_slice(&enc_identity);
    Ok(blob)
}

/// KDFa with HMAC-SHA256 (Part 1 §11.4.10.2, SP 800-108 counter mode): each block is
/// `HMAC(key, u32(i) || label || 0x00 || contextU || contextV || u32(bits))`. Here contextV is
/// always empty.
fn kdfa(
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    bits: u32,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let len = usize::try_from(bits / 8).map_err(|_| TpmError::Internal("KDFa size overflow"))?;
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut context = hmac::Context::with_key(&hmac_key);
        context.update(&counter.to_be_bytes());
        context.update(label);
        context.update(&[0]);
        context.update(context_u);
        context.update(&bits.to_be_bytes());
        out.extend_from_slice(context.sign().as_ref());
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::test_support::{fixture, hex_fixture};
    use rand::SeedableRng;

    #[test]
    fn protect_credential_matches_vector_activated_on_swtpm() {
        let vector = hex_fixture("makecredential-vector.txt");
        assert_eq!(vector["name"], fixture("ak-ecc-name.bin"));
        let blob = protect_credential(&vector["seed"], &vector["name"], &vector["credential"]);
        assert_eq!(blob.unwrap(), vector["credential_blob"]);

        // make_credential draws the seed first, so the same generator gives the same blob.
        let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
        let made = make_credential(&ek, &vector["name"], &vector["credential"], &mut rng);
        assert_eq!(made.unwrap().credential_blob, vector["credential_blob"]);
    }

    #[test]
    fn make_credential_encrypts_a_seed_to_the_ek() {
        let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
        let name = fixture("ak-ecc-name.bin");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let credential = make_credential(&ek, &name, &[0x5a; 32], &mut rng).unwrap();
        assert_eq!(credential.encrypted_secret.len(), 256);
        // u16(32) || 32-byte HMAC || encrypted u16(32) || 32-byte credential.
        assert_eq!(credential.credential_blob.len(), 2 + 32 + 2 + 32);
        assert_eq!(credential.credential_blob[..2], [0x00, 0x20]);
    }

    #[test]
    fn make_credential_rejects_credential_longer_than_digest() {
        let ek = TpmPublic::from_tpm2b(&fixture("swtpm-ek-public.bin")).unwrap();
        let name = fixture("ak-ecc-name.bin");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            make_credential(&ek, &name, &[1; 33], &mut rng),
            Err(TpmError::CredentialTooLong(33))
        );
    }

    #[test]
    fn make_credential_rejects_non_storage_ek() {
        let name = fixture("ak-ecc-name.bin");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let ecc = TpmPublic::from_tpm2b(&fixture("ak-ecc-public.bin")).unwrap();
        assert!(matches!(
            make_credential(&ecc, &name, &[1; 32], &mut rng),
            Err(TpmError::UnsupportedEk(_))
        ));
        // The RSA AK is restricted and signs, and has no symmetric algorithm.
        let rsa_ak = TpmPublic::from_tpm2b(&fixture("ak-rsa-public.bin")).unwrap();
        assert!(make_credential(&rsa_ak, &name, &[1; 32], &mut rng).is_err());
    }
}
