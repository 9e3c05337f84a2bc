//! Compact JWS (RFC 7515 §7.1) parsing and signature verification.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::base64url;
use super::jwk::{Jwk, JwkError, PublicKey};

/// Maximum length of an accepted compact JWS, in bytes. An RS256 proof with a 4096-bit `jwk` is under 2 KiB.
pub const MAX_JWS_LEN: usize = 8 * 1024;

/// The signature algorithms devbound accepts anywhere. Each key type allows exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "RS256")]
    Rs256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// Maps a JOSE `alg` name, case-sensitively (RFC 7515 §4.1.1), to a supported algorithm.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A reason to reject a JWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("JWS is longer than {MAX_JWS_LEN} bytes")]
    TooLong,
    #[error("JWS does not have three dot-separated parts")]
    NotCompact,
    #[error("JWS part `{0}` is not valid base64url")]
    Encoding(&'static str),
    #[error("JWS header is not a valid JSON object: {0}")]
    Header(String),
    #[error("JWS payload is not a valid JSON object: {0}")]
    Payload(String),
    #[error("algorithm `{0}` is not accepted here")]
    UnsupportedAlgorithm(String),
    #[error("header member `{0}` is not allowed")]
    ForbiddenHeader(&'static str),
    #[error("header `typ` is {found:?}, expected `{expected}`")]
    WrongType {
        found: Option<String>,
        expected: &'static str,
    },
    #[error("header `jwk` is invalid: {0}")]
    Jwk(#[from] JwkError),
    #[error("signature is not valid for the key")]
    BadSignature,
}

/// The protected header members devbound reads. `kid` is kept for verifiers that look a key up
/// by id in a set devbound owns; DBSC proofs ignore it. Members that would make devbound fetch
/// or chain a key (`jku`, `x5u`, `x5c`) or demand unknown processing (`crit`) are rejected by
/// [`CompactJws::parse`].
#[derive(Debug, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    pub typ: Option<String>,
    pub jwk: Option<serde_json::Value>,
    pub kid: Option<String>,
    jku: Option<serde_json::Value>,
    x5u: Option<serde_json::Value>,
    x5c: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

/// A parsed but not yet verified compact JWS.
#[derive(Debug)]
pub struct CompactJws<'a> {
    pub header: JoseHeader,
    pub alg: Algorithm,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Splits and decodes a compact JWS, and checks its header against `accepted` algorithms.
    pub fn parse(token: &'a str, accepted: &[Algorithm]) -> Result<Self, JoseError> {
        if token.len() > MAX_JWS_LEN {
            return Err(JoseError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::NotCompact);
        };

        let header_bytes =
            base64url::decode(header_b64).map_err(|_| JoseError::Encoding("header"))?;
        let header: JoseHeader = from_json(&header_bytes).map_err(JoseError::Header)?;
        let alg = check_header(&header, accepted)?;

        let payload = base64url::decode(payload_b64).map_err(|_| JoseError::Encoding("payload"))?;
        let signature =
            base64url::decode(signature_b64).map_err(|_| JoseError::Encoding("signature"))?;

        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self {
            header,
            alg,
            signing_input,
            payload,
            signature,
        })
    }

    /// Requires the header `typ` to be `expected` (RFC 8725 §3.11 explicit typing). Media type
    /// names are compared case-insensitively (RFC 7515 §4.1.9).
    pub fn require_type(&self, expected: &'static str) -> Result<(), JoseError> {
        match self.header.typ.as_deref() {
            Some(found) if found.eq_ignore_ascii_case(expected) => Ok(()),
            found => Err(JoseError::WrongType {
                found: found.map(str::to_owned),
                expected,
            }),
        }
    }

    /// Parses the embedded `jwk` header member, which only registration and DPoP proofs carry.
    pub fn embedded_jwk(&self) -> Result<Option<Jwk>, JoseError> {
        self.header
            .jwk
            .as_ref()
            .map(|value| Jwk::from_value(value).map_err(JoseError::from))
            .transpose()
    }

    /// Verifies the signature with `key`, whose type fixes the algorithm, and returns the
    /// decoded claims.
    pub fn verify<T: DeserializeOwned>(&self, key: &PublicKey) -> Result<T, JoseError> {
        // RFC 8725 §3.1: the algorithm is that of the key, and the header must agree with it.
        if key.alg != self.alg {
            return Err(JoseError::UnsupportedAlgorithm(self.alg.name().to_owned()));
        }
        key.key
            .verify_sig(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JoseError::BadSignature)?;
        from_json(&self.payload).map_err(JoseError::Payload)
    }
}

/// Deserializes a JOSE header or JWT claims set, which must be UTF-8 JSON (RFC 7515 §5.2 step 3,
/// RFC 7519 §7.2 step 10). The text is checked as a whole first because
/// `serde_json::from_slice` does not check the UTF-8 of members that it skips.
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|error| error.to_string())?;
    serde_json::from_str(text).map_err(|error| error.to_string())
}

fn check_header(header: &JoseHeader, accepted: &[Algorithm]) -> Result<Algorithm, JoseError> {
    let alg = Algorithm::from_name(&header.alg)
        .filter(|alg| accepted.contains(alg))
        .ok_or_else(|| JoseError::UnsupportedAlgorithm(header.alg.clone()))?;

    // Keys come only from server-side state or from an embedded `jwk` that the caller checks.
    // A key fetched or chained from a URL or certificate in the token is never used.
    if header.jku.is_some() {
        return Err(JoseError::ForbiddenHeader("jku"));
    }
    if header.x5u.is_some() {
        return Err(JoseError::ForbiddenHeader("x5u"));
    }
    if header.x5c.is_some() {
        return Err(JoseError::ForbiddenHeader("x5c"));
    }

    // RFC 7515 §4.1.11: a recipient must reject `crit` extensions it does not understand, and
    // devbound understands none.
    if header.crit.is_some() {
        return Err(JoseError::ForbiddenHeader("crit"));
    }
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SessionKey;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            base64url::encode(header),
            base64url::encode(payload),
            base64url::encode([0u8; 64])
        )
    }

    #[test]
    fn parse_rejects_none_and_hmac_in_any_case() {
        for alg in ["none", "None", "NONE", "HS256", "PS256", "ES384", "es256"] {
            let jws = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            let result = CompactJws::parse(&jws, &[Algorithm::Es256, Algorithm::Rs256]);
            assert!(
                matches!(result, Err(JoseError::UnsupportedAlgorithm(_))),
                "{alg} was not rejected"
            );
        }
    }

    #[test]
    fn parse_rejects_key_references() {
        for member in ["jku", "x5u", "x5c", "crit"] {
            let jws = token(&format!(r#"{{"alg":"ES256","{member}":["x"]}}"#), "{}");
            let result = CompactJws::parse(&jws, &[Algorithm::Es256]);
            assert!(
                matches!(result, Err(JoseError::ForbiddenHeader(_))),
                "{member} was not rejected"
            );
        }
    }

    #[test]
    fn parse_rejects_wrong_part_count_and_duplicate_members() {
        assert_eq!(
            CompactJws::parse("a.b", &[Algorithm::Es256]).err(),
            Some(JoseError::NotCompact)
        );
        assert_eq!(
            CompactJws::parse("a.b.c.d", &[Algorithm::Es256]).err(),
            Some(JoseError::NotCompact)
        );
        let duplicate = token(r#"{"alg":"ES256","alg":"none"}"#, "{}");
        assert!(matches!(
            CompactJws::parse(&duplicate, &[Algorithm::Es256]),
            Err(JoseError::Header(_))
        ));
    }

    #[test]
    fn parse_rejects_header_that_is_not_utf8() {
        // 0xb4 is a UTF-8 continuation byte with no lead byte, inside a member parse skips.
        let header = b"{\"alg\":\"ES256\",\"x\":\"\xb4\"}";
        let jws = format!(
            "{}.{}.{}",
            base64url::encode(header),
            base64url::encode("{}"),
            base64url::encode([0u8; 64])
        );
        let result = CompactJws::parse(&jws, &[Algorithm::Es256]);
        assert!(matches!(result, Err(JoseError::Header(_))), "{result:?}");
    }

    #[test]
    fn verify_rejects_payload_that_is_not_utf8() {
        let signing_key = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let key = SessionKey::Es256(Box::new(signing_key));
        let public = Jwk::from_value(&key.public_jwk())
            .and_then(|jwk| jwk.parse_key())
            .unwrap();

        let payload = b"{\"jti\":\"c1\",\"x\":\"\xb4\"}";
        let signing_input = format!(
            "{}.{}",
            base64url::encode(r#"{"alg":"ES256"}"#),
            base64url::encode(payload)
        );
        let signature = key.sign(signing_input.as_bytes()).unwrap();
        let jws = format!("{signing_input}.{}", base64url::encode(signature));

        let parsed = CompactJws::parse(&jws, &[Algorithm::Es256]).unwrap();
        // `IgnoredAny` skips every member, as a claims struct skips the members it does not name.
        let result = parsed.verify::<serde::de::IgnoredAny>(&public);
        assert!(matches!(result, Err(JoseError::Payload(_))), "{result:?}");
    }
}
