//! DPoP proofs (RFC 9449 §4): verification and `htu` normalisation. Spent proofs are
//! remembered by [`super::replay`].

use serde::Deserialize;

use crate::clock::UnixTime;
use crate::crypto::{Algorithm, CompactJws, Jwk, base64url, secret::sha256};
use crate::store::BoundKey;

/// `typ` of a DPoP proof (RFC 9449 §4.2).
pub const PROOF_TYPE: &str = "dpop+jwt";
/// The header a proof travels in.
pub const HEADER: &str = "DPoP";
/// Signature algorithms accepted for proofs, also published in the metadata.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];
/// How far a proof's `iat` may be from the server's clock, in seconds, either way.
pub const IAT_WINDOW: u64 = 60;
/// Maximum `jti` length accepted. RFC 9449 §4.2 requires at least 96 bits of randomness in it.
const MAX_JTI_LEN: usize = 128;

/// A reason to reject a DPoP proof. Each maps to `invalid_dpop_proof`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("proof is not a valid JWS: {0}")]
    Jws(#[from] crate::crypto::JoseError),
    #[error("proof header has no `jwk`")]
    MissingJwk,
    #[error("`jti` is missing, empty or too long")]
    BadJti,
    #[error("`htm` {0:?} is not the request method")]
    WrongMethod(String),
    #[error("`htu` {0:?} is not the request URL")]
    WrongUrl(String),
    #[error("`iat` is {0} s away from the server's clock")]
    IatOutOfWindow(i128),
    #[error("`ath` is missing")]
    MissingAth,
    #[error("`ath` does not match the access token")]
    WrongAth,
}

/// A verified proof: the thumbprint of the key that signed it and its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 SHA-256 thumbprint of the proof's `jwk`.
    pub jkt: String,
    /// The proof's public key and the algorithm it signed with.
    pub key: BoundKey,
    pub jti: String,
    pub iat: UnixTime,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// The request a proof must match: the request's method and external URL, and the access token
/// it accompanies at a resource server.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request URL as clients reach it, without query or fragment.
    pub url: &'a str,
    pub access_token: Option<&'a str>,
}

/// Verifies a DPoP proof against the request (RFC 9449 §4.3). The caller checks that exactly
/// one `DPoP` header was sent and spends the proof in a [`super::replay::ReplayCache`].
pub fn verify(proof: &str, expected: Expected<'_>, now: UnixTime) -> Result<DpopProof, DpopError> {
    // §4.3 steps 2-6: a well-formed JWS typed `dpop+jwt` with an asymmetric algorithm.
    let jws = CompactJws::parse(proof, &ALGORITHMS)?;
    jws.require_type(PROOF_TYPE)?;

    // §4.3 step 7: the key is the proof's `jwk`, which must not contain a private member.
    let value = jws.header.jwk.as_ref().ok_or(DpopError::MissingJwk)?;
    let (jwk, key) =
        Jwk::from_value_with_key(value).map_err(|error| DpopError::Jws(error.into()))?;
    jwk.check_algorithm(jws.alg)
        .map_err(|error| DpopError::Jws(error.into()))?;
    let claims: ProofClaims = jws.verify(&key)?;

    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(DpopError::BadJti);
    }
    // §4.3 step 8: `htm` matches the method exactly.
    if claims.htm != expected.method {
        return Err(DpopError::WrongMethod(claims.htm));
    }
    // §4.3 step 9: `htu` matches the URL, ignoring query and fragment, after normalisation.
    // Clients mostly send the URL exactly as expected, which needs no parsing. An expected
    // URL that is not `https` matches nothing, as it does after normalisation.
    let same_url = (claims.htu == expected.url && expected.url.starts_with("https://"))
        || normalize_htu(&claims.htu)
            .zip(normalize_htu(expected.url))
            .is_some_and(|(claimed, wanted)| claimed == wanted);
    if !same_url {
        return Err(DpopError::WrongUrl(claims.htu));
    }
    // §4.3 step 11: `iat` within an acceptable window.
    let offset = i128::from(claims.iat) - i128::from(now);
    if offset.unsigned_abs() > u128::from(IAT_WINDOW) {
        return Err(DpopError::IatOutOfWindow(offset));
    }
    // §4.3 step 10: at a resource, `ath` is the hash of the access token.
    if let Some(token) = expected.access_token {
        let ath = claims.ath.ok_or(DpopError::MissingAth)?;
        if ath != base64url::encode(sha256(token.as_bytes())) {
            return Err(DpopError::WrongAth);
        }
    }
    Ok(DpopProof {
        jkt: jwk.thumbprint(),
        key: BoundKey { alg: jws.alg, jwk },
        jti: claims.jti,
        iat: u64::try_from(claims.iat).unwrap_or(0),
    })
}

/// Normalises an `htu` for comparison (RFC 9449 §4.3 step 9, RFC 3986 §6.2.2): an absolute
/// `https` URL, host in lower case, the default port removed, percent-encoded unreserved
/// characters decoded, and query and fragment dropped. Path case and trailing slashes are
/// significant. Returns `None` for a relative or non-`https` URL.
pub fn normalize_htu(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    if url.scheme() != "https" || url.cannot_be_a_base() {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    Some(format!(
        "https://{host}{port}{}",
        decode_unreserved(url.path())
    ))
}

/// Decodes `%XX` escapes of unreserved characters and upper-cases the hex of the others
/// (RFC 3986 §6.2.2.1 and §6.2.2.2).
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                out.push(char::from(byte));
                index += 3;
            }
            Some(byte) => {
                out.push_str(&format!("%{byte:02X}"));
                index += 3;
            }
            None => {
                out.push(char::from(bytes[index]));
                index += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_URL: &str = "https://api.example.com/oauth/token";

    #[test]
    fn htu_equivalent_forms_match() {
        let expected = normalize_htu("https://api.example.com/oauth/token?x=1");
        for form in [
            TOKEN_URL,
            "https://API.Example.COM:443/oauth/token",
            "https://api.example.com/oauth/token#f",
            "https://api.example.com/oauth/%74oken",
        ] {
            assert_eq!(normalize_htu(form), expected, "{form}");
        }
    }

    fn signed_proof(htu: &str, iat: UnixTime) -> String {
        use crate::client::{SessionKey, sign_jws};

        let key = SessionKey::generate(Algorithm::Es256).unwrap();
        let header = serde_json::json!({
            "typ": PROOF_TYPE,
            "alg": "ES256",
            "jwk": key.public_jwk(),
        });
        let claims = serde_json::json!({
            "jti": "an-unpredictable-jti-value",
            "htm": "POST",
            "htu": htu,
            "iat": iat,
        });
        sign_jws(&key, &header, &claims).unwrap()
    }

    #[test]
    fn exact_htu_matches_only_https() {
        let expected = |url| Expected {
            method: "POST",
            url,
            access_token: None,
        };

        let proof = signed_proof(TOKEN_URL, 1_000);
        assert!(verify(&proof, expected(TOKEN_URL), 1_000).is_ok());

        let plain = "http://api.example.com/oauth/token";
        let proof = signed_proof(plain, 1_000);
        assert!(matches!(
            verify(&proof, expected(plain), 1_000),
            Err(DpopError::WrongUrl(_))
        ));
    }

    #[test]
    fn htu_different_forms_do_not_match() {
        let expected = normalize_htu(TOKEN_URL);
        for form in [
            "https://api.example.com/oauth/token/",
            "https://api.example.com/OAuth/token",
            "http://api.example.com/oauth/token",
            "https://api.example.com:8443/oauth/token",
        ] {
            assert_ne!(normalize_htu(form), expected, "{form}");
        }
        assert_eq!(normalize_htu("/oauth/token"), None);
        assert_eq!(normalize_htu("api.example.com/oauth/token"), None);
    }
}
