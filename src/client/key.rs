//! Session keys held by the software client, and JWS signing with them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use crate::crypto::{Algorithm, base64url};

/// What the DBSC client signs proofs with: a key in memory ([`SessionKey`]) or, with the `tpm`
/// feature, a key that never leaves a TPM.
pub trait ProofSigner {
    fn algorithm(&self) -> Algorithm;
    /// Returns the public key as a JWK object, for the registration proof's header.
    fn public_jwk(&self) -> Value;
    /// Signs `message` and returns the JWS signature bytes (RFC 7518 §3.4: `r || s`, each 32
    /// bytes, for ES256).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

impl ProofSigner for SessionKey {
    fn algorithm(&self) -> Algorithm {
        SessionKey::algorithm(self)
    }

    fn public_jwk(&self) -> Value {
        SessionKey::public_jwk(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        SessionKey::sign(self, message)
    }
}

/// A private key for one of the algorithms DBSC offers.
pub enum SessionKey {
    Es256(Box<SigningKey>),
    Rs256(Box<RsaKeyPair>),
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({})", self.algorithm())
    }
}

impl SessionKey {
    /// Generates a key for `alg` from the operating system's random number generator.
    pub fn generate(alg: Algorithm) -> Result<Self, String> {
        match alg {
            Algorithm::Es256 => Ok(Self::Es256(Box::new(SigningKey::random(
                &mut rand::rngs::OsRng,
            )))),
            Algorithm::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map(|key| Self::Rs256(Box::new(key)))
                .map_err(|_| "RSA key generation failed".to_owned()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::Es256,
            Self::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// Returns the public key as a JWK object.
    pub fn public_jwk(&self) -> Value {
        match self {
            Self::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": base64url::encode(point.x().map(|x| x.to_vec()).unwrap_or_default()),
                    "y": base64url::encode(point.y().map(|y| y.to_vec()).unwrap_or_default()),
                })
            }
            Self::Rs256(key) => {
                let public = key.public_key();
                json!({
                    "kty": "RSA",
                    "n": base64url::encode(public.modulus().big_endian_without_leading_zero()),
                    "e": base64url::encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
        }
    }

    /// Signs `message` and returns the JWS signature bytes (`r || s` for ES256).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Es256(key) => {
                let signature: Signature = key.sign(message);
                Ok(signature.to_bytes().to_vec())
            }
            Self::Rs256(key) => {
                let mut signature = vec![0u8; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| "RSA signing failed".to_owned())?;
                Ok(signature)
            }
        }
    }
}

/// Signs a compact JWS over the given header and claims.
pub fn sign_jws<S: ProofSigner + ?Sized>(
    key: &S,
    header: &Value,
    claims: &Value,
) -> Result<String, String> {
    let signing_input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    );
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", base64url::encode(signature)))
}
