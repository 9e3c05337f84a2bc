//! Secret values: random, compared in constant time, wiped on drop, never printed.

use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::base64url;

/// A secret string such as a cookie credential, a challenge or an authorization value.
///
/// It has no `Debug` or `Display`, so it cannot reach a log line by accident.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// Generates `len` random bytes and encodes them as base64url.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng), len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        let secret = Self(base64url::encode(&bytes));
        bytes.zeroize();
        secret
    }

    pub fn from_string(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the secret, which is what the store keeps for credentials.
    pub fn digest(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn secret_debug_hides_value() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let secret = Secret::generate(&mut rng, 32);
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(secret.expose().len(), 43);
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
