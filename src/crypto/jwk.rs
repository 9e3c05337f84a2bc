//! JSON Web Keys (RFC 7517) for the two key types DBSC and DPoP use: P-256 and RSA.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
};
use serde::{Deserialize, Serialize};

use super::base64url;
use super::jws::Algorithm;
use super::secret::sha256;

/// Smallest and largest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// A reason to reject a JWK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("JWK is not a JSON object with the expected members")]
    Malformed,
    #[error("JWK contains private key member `{0}`")]
    PrivateMember(&'static str),
    #[error("JWK key type `{0}` is not supported")]
    UnsupportedKeyType(String),
    #[error("JWK curve `{0}` is not supported; only P-256 is")]
    UnsupportedCurve(String),
    #[error("JWK member `{0}` is not valid base64url")]
    Encoding(&'static str),
    #[error("JWK coordinates are not a point on P-256")]
    InvalidPoint,
    #[error("RSA modulus of {0} bits is outside 2048..=4096")]
    RsaModulusSize(usize),
    #[error("RSA public key is invalid")]
    InvalidRsaKey,
    #[error("algorithm {alg} does not match a {kty} key")]
    AlgorithmMismatch { alg: Algorithm, kty: &'static str },
}

/// A public JWK as received: every member optional, so that private members can be detected.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
    q: Option<serde_json::Value>,
    dp: Option<serde_json::Value>,
    dq: Option<serde_json::Value>,
    qi: Option<serde_json::Value>,
    oth: Option<serde_json::Value>,
    k: Option<serde_json::Value>,
}

/// A validated public key in JWK form, as stored with a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum Jwk {
    #[serde(rename = "EC")]
    Ec { crv: String, x: String, y: String },
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

impl Jwk {
    /// Parses and validates a public JWK from its JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, JwkError> {
        Self::from_value_with_key(value).map(|(jwk, _)| jwk)
    }

    /// Parses and validates a public JWK, and returns it with its verification key, so that a
    /// caller who verifies with it at once does not parse the key twice.
    pub fn from_value_with_key(value: &serde_json::Value) -> Result<(Self, PublicKey), JwkError> {
        let raw = RawJwk::deserialize(value).map_err(|_| JwkError::Malformed)?;
        reject_private_members(&raw)?;

        let jwk = match raw.kty.as_deref() {
            Some("EC") => parse_ec(raw)?,
            Some("RSA") => parse_rsa(raw)?,
            Some(other) => return Err(JwkError::UnsupportedKeyType(other.to_owned())),
            None => return Err(JwkError::Malformed),
        };

        // Parsing here checks the point is on the curve or the modulus is usable.
        let key = jwk.parse_key()?;
        Ok((jwk, key))
    }

    pub fn key_type(&self) -> &'static str {
        match self {
            Self::Ec { .. } => "EC",
            Self::Rsa { .. } => "RSA",
        }
    }

    /// Checks that `alg` is the one algorithm this key may be used with.
    pub fn check_algorithm(&self, alg: Algorithm) -> Result<(), JwkError> {
        match (self, alg) {
            (Self::Ec { .. }, Algorithm::Es256) | (Self::Rsa { .. }, Algorithm::Rs256) => Ok(()),
            _ => Err(JwkError::AlgorithmMismatch {
                alg,
                kty: self.key_type(),
            }),
        }
    }

    /// Computes the JWK SHA-256 thumbprint (RFC 7638 §3): the required members in lexicographic order,
    /// with no white space, hashed and encoded as base64url.
    pub fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        base64url::encode(sha256(canonical.as_bytes()))
    }

    /// Builds the verification key for this JWK and the algorithm fixed by its type.
    pub fn parse_key(&self) -> Result<PublicKey, JwkError> {
        match self {
            Self::Ec { x, y, .. } => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend(decode_member(x, "x")?);
                point.extend(decode_member(y, "y")?);
                let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .map_err(|_| JwkError::InvalidPoint)?;
                Ok(PublicKey {
                    alg: Algorithm::Es256,
                    key,
                })
            }
            Self::Rsa { n, e } => {
                let components = RsaPublicKeyComponents {
                    n: decode_member(n, "n")?,
                    e: decode_member(e, "e")?,
                };
                let key = components
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .map_err(|_| JwkError::InvalidRsaKey)?;
                Ok(PublicKey {
                    alg: Algorithm::Rs256,
                    key,
                })
            }
        }
    }
}

/// A key ready to verify signatures, tied to the one algorithm its type allows.
pub struct PublicKey {
    pub alg: Algorithm,
    pub(super) key: ParsedPublicKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("alg", &self.alg).finish()
    }
}

fn reject_private_members(raw: &RawJwk) -> Result<(), JwkError> {
    let private = [
        ("d", raw.d.is_some()),
        ("p", raw.p.is_some()),
        ("q", raw.q.is_some()),
        ("dp", raw.dp.is_some()),
        ("dq", raw.dq.is_some()),
        ("qi", raw.qi.is_some()),
        ("oth", raw.oth.is_some()),
        ("k", raw.k.is_some()),
    ];
    match private.iter().find(|(_, present)| *present) {
        Some((name, _)) => Err(JwkError::PrivateMember(name)),
        None => Ok(()),
    }
}

fn parse_ec(raw: RawJwk) -> Result<Jwk, JwkError> {
    let crv = raw.crv.ok_or(JwkError::Malformed)?;
    if crv != "P-256" {
        return Err(JwkError::UnsupportedCurve(crv));
    }
    let (x, y) = (
        raw.x.ok_or(JwkError::Malformed)?,
        raw.y.ok_or(JwkError::Malformed)?,
    );

    // RFC 7518 §6.2.1.2: each coordinate is the full 32-byte field element.
    if decode_member(&x, "x")?.len() != 32 || decode_member(&y, "y")?.len() != 32 {
        return Err(JwkError::InvalidPoint);
    }
    Ok(Jwk::Ec { crv, x, y })
}

fn parse_rsa(raw: RawJwk) -> Result<Jwk, JwkError> {
    let (n, e) = (
        raw.n.ok_or(JwkError::Malformed)?,
        raw.e.ok_or(JwkError::Malformed)?,
    );
    let modulus = decode_member(&n, "n")?;

    // RFC 7518 §6.3.1.1: the modulus has no leading zero octets.
    if modulus.first() == Some(&0) {
        return Err(JwkError::InvalidRsaKey);
    }
    let bits = modulus.len() * 8;
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(JwkError::RsaModulusSize(bits));
    }

    // RFC 7518 §2: `e` is a Base64urlUInt, so it too has no leading zero octets. RFC 8017 §3.1:
    // n is a product of odd primes, and e is odd and at least 3. aws-lc-rs accepts any exponent,
    // and with e = 1 anyone can compute a valid signature from the public key alone.
    let exponent = decode_member(&e, "e")?;
    let minimal = exponent.first() != Some(&0);
    let at_least_3 = exponent.len() > 1 || exponent.first() >= Some(&3);
    if !minimal || !at_least_3 || !is_odd(&exponent) || !is_odd(&modulus) {
        return Err(JwkError::InvalidRsaKey);
    }
    Ok(Jwk::Rsa { n, e })
}

/// Checks whether a big-endian unsigned integer is odd.
fn is_odd(big_endian: &[u8]) -> bool {
    big_endian.last().is_some_and(|byte| byte % 2 == 1)
}

fn decode_member(value: &str, name: &'static str) -> Result<Vec<u8>, JwkError> {
    base64url::decode(value).map_err(|_| JwkError::Encoding(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // RFC 7638 §3.1 example key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let jwk = Jwk::Rsa {
            n: RFC7638_N.to_owned(),
            e: "AQAB".to_owned(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn from_value_rejects_private_member() {
        let value = json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "d": "AQAB"});
        assert_eq!(Jwk::from_value(&value), Err(JwkError::PrivateMember("d")));
    }

    #[test]
    fn from_value_rejects_point_off_curve() {
        let value = json!({"kty": "EC", "crv": "P-256", "x": base64url::encode([1u8; 32]),
            "y": base64url::encode([2u8; 32])});
        assert_eq!(Jwk::from_value(&value), Err(JwkError::InvalidPoint));
    }

    #[test]
    fn from_value_rejects_weak_rsa_exponents_and_even_modulus() {
        let rsa = |n: &str, e: &str| json!({"kty": "RSA", "n": n, "e": e});
        // 1 and 2, an even exponent (65536), and 65537 with a leading zero octet.
        for e in ["AQ", "Ag", "AQAA", "AAEAAQ"] {
            assert_eq!(
                Jwk::from_value(&rsa(RFC7638_N, e)),
                Err(JwkError::InvalidRsaKey),
                "e = {e}"
            );
        }

        let mut even = base64url::decode(RFC7638_N).unwrap();
        if let Some(last) = even.last_mut() {
            *last &= 0xfe;
        }
        let even = base64url::encode(even);
        assert_eq!(
            Jwk::from_value(&rsa(&even, "AQAB")),
            Err(JwkError::InvalidRsaKey)
        );
        assert!(Jwk::from_value(&rsa(RFC7638_N, "AQAB")).is_ok());
        assert!(Jwk::from_value(&rsa(RFC7638_N, "Aw")).is_ok(), "e = 3");
    }

    #[test]
    fn from_value_rejects_other_curves_and_short_rsa() {
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(
            Jwk::from_value(&p384),
            Err(JwkError::UnsupportedCurve("P-384".into()))
        );
        let short = json!({"kty": "RSA", "n": base64url::encode([0xc1u8; 128]), "e": "AQAB"});
        assert_eq!(Jwk::from_value(&short), Err(JwkError::RsaModulusSize(1024)));
    }
}
