//! devbound's own P-256 signing keys (ES256, RFC 7518 §3.4), held by aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    ParsedPublicKey,
};
use serde_json::{Value, json};

use super::base64url;
use super::jwk::{Jwk, PublicKey};
use super::jws::Algorithm;

/// A failure to create, load or use a signing key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("P-256 key generation failed")]
    Generate,
    #[error("stored signing key `{0}` is not a valid P-256 PKCS#8 key")]
    InvalidKey(String),
    #[error("ECDSA signing failed")]
    Sign,
}

/// A P-256 private key with its key id. The key id is the RFC 7638 thumbprint of the public
/// key, so that a published JWKS entry and the key are tied together.
pub struct SigningKey {
    pub kid: String,
    pair: EcdsaKeyPair,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key and returns it with its PKCS#8 v1 encoding for storage.
    pub fn generate() -> Result<(Self, Vec<u8>), SigningError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| SigningError::Generate)?;
        let bytes = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(&bytes)?, bytes))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SigningError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| SigningError::InvalidKey("-".into()))?;
        let point = pair.public_key().as_ref();
        // An uncompressed SEC 1 point: 0x04, then x and y of 32 bytes each.
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err(SigningError::InvalidKey("-".into()));
        };
        let jwk = Jwk::Ec {
            crv: "P-256".into(),
            x: base64url::encode(x),
            y: base64url::encode(y),
        };
        Ok(Self {
            kid: jwk.thumbprint(),
            pair,
            jwk,
        })
    }

    /// Returns the public key as a JWKS entry (RFC 7517 §4) with its `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let Jwk::Ec { crv, x, y } = &self.jwk else {
            return Value::Null;
        };
        json!({ "kty": "EC", "crv": crv, "x": x, "y": y, "kid": self.kid, "alg": "ES256", "use": "sig" })
    }

    /// Returns the key that verifies this key's signatures.
    pub fn verification_key(&self) -> Result<PublicKey, SigningError> {
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .map_err(|_| SigningError::InvalidKey(self.kid.clone()))?;
        Ok(PublicKey {
            alg: Algorithm::Es256,
            key,
        })
    }

    /// Signs a compact JWS with this key: the header gets `alg: ES256` and this key's `kid`.
    pub fn sign_jws(
        &self,
        typ: &str,
        claims: &impl serde::Serialize,
    ) -> Result<String, SigningError> {
        let header = json!({ "alg": "ES256", "typ": typ, "kid": self.kid });
        let claims = serde_json::to_vec(claims).map_err(|_| SigningError::Sign)?;
        let signing_input = format!(
            "{}.{}",
            base64url::encode(header.to_string()),
            base64url::encode(claims)
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| SigningError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            base64url::encode(signature.as_ref())
        ))
    }
}
