//! What a protected resource checks on each request (RFC 9449 §7, RFC 9068 §4): a devbound
//! access token sent as `Authorization: DPoP`, verified with the published JWKS, and a DPoP
//! proof by the key the token is bound to.

use serde_json::Value;

use super::dpop::{self, DpopProof, Expected};
use super::{access_token, token_exchange::normalize_resource};
use crate::clock::UnixTime;
use crate::crypto::{Jwk, PublicKey};
use crate::store::AccessTokenClaims;

/// A reason a resource rejects a request, mapped to the `WWW-Authenticate` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("no `Authorization: DPoP` header")]
    MissingToken,
    #[error("token sent with the `{0}` scheme; a DPoP-bound token needs `DPoP`")]
    WrongScheme(String),
    #[error("more than one Authorization or DPoP header")]
    RepeatedHeader,
    #[error("access token is invalid: {0}")]
    InvalidToken(String),
    #[error("access token is not for this resource")]
    WrongAudience,
    #[error("access token has expired")]
    Expired,
    #[error("DPoP proof is missing")]
    MissingProof,
    #[error("DPoP proof is invalid: {0}")]
    InvalidProof(String),
    #[error("DPoP proof is not by the key the token is bound to")]
    KeyMismatch,
    #[error("DPoP proof was already used")]
    Replay,
    #[error("token is not active at the authorization server")]
    Inactive,
}

impl ResourceError {
    /// The `error` of the `WWW-Authenticate: DPoP` challenge (RFC 9449 §7.1, RFC 6750 §3.1).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingProof | Self::InvalidProof(_) | Self::KeyMismatch | Self::Replay => {
                "invalid_dpop_proof"
            }
            Self::RepeatedHeader => "invalid_request",
            _ => "invalid_token",
        }
    }

    /// The `WWW-Authenticate` value for a 401 response.
    pub fn challenge(&self) -> String {
        let algs = dpop::ALGORITHMS.map(|alg| alg.name()).join(" ");
        match self {
            Self::MissingToken => format!("DPoP algs=\"{algs}\""),
            _ => format!("DPoP error=\"{}\", algs=\"{algs}\"", self.code()),
        }
    }
}

/// The keys of a devbound JWKS, by `kid`.
#[derive(Debug, Default)]
pub struct Jwks {
    keys: Vec<(String, PublicKey)>,
}

impl Jwks {
    /// Parses a JWKS document, keeping only the P-256 signing keys with a `kid`.
    pub fn from_value(document: &Value) -> Self {
        let keys = document["keys"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|entry| {
                let kid = entry["kid"].as_str()?.to_owned();
                let mut public = entry.clone();
                if let Value::Object(members) = &mut public {
                    members.retain(|name, _| matches!(name.as_str(), "kty" | "crv" | "x" | "y"));
                }
                let key = Jwk::from_value(&public).ok()?;
                matches!(key, Jwk::Ec { .. }).then_some(())?;
                Some((kid, key.parse_key().ok()?))
            })
            .collect();
        Self { keys }
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|(known, _)| known == kid)
    }

    /// Verifies an access token: ES256 by the key its `kid` names in this set, issued by
    /// `issuer` for `audience`, and unexpired at `now`.
    pub fn verify_token(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, ResourceError> {
        let invalid =
            |error: crate::crypto::JoseError| ResourceError::InvalidToken(error.to_string());
        let jws = access_token::parse(token).map_err(invalid)?;
        let kid = jws.header.kid.as_deref().unwrap_or_default();
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| known == kid)
            .ok_or_else(|| ResourceError::InvalidToken("unknown kid".into()))?;
        let claims: AccessTokenClaims = jws.verify(key).map_err(invalid)?;
        if claims.iss != issuer {
            return Err(ResourceError::InvalidToken("wrong issuer".into()));
        }
        let audience = normalize_resource(audience);
        if !claims.aud.iter().any(|aud| Some(aud) == audience.as_ref()) {
            return Err(ResourceError::WrongAudience);
        }
        if now >= claims.exp {
            return Err(ResourceError::Expired);
        }
        Ok(claims)
    }
}

/// The headers of a request to a protected resource.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub authorization: &'a [&'a str],
    pub dpop: &'a [&'a str],
    pub method: &'a str,
    /// The resource's external URL for this request.
    pub url: &'a str,
}

/// Checks a request: one `Authorization: DPoP` token valid under `jwks`, and one proof by the
/// token's `cnf.jkt` key that covers the method, URL and token. A DPoP-bound token sent as
/// `Bearer` is rejected, never accepted without a proof (RFC 9449 §7.2).
pub fn check_request(
    request: Presented<'_>,
    jwks: &Jwks,
    issuer: &str,
    audience: &str,
    now: UnixTime,
) -> Result<(AccessTokenClaims, DpopProof), ResourceError> {
    let token = read_token(request.authorization)?;
    let claims = jwks.verify_token(token, issuer, audience, now)?;
    let proof = match request.dpop {
        [] => return Err(ResourceError::MissingProof),
        [proof] => proof,
        _ => return Err(ResourceError::RepeatedHeader),
    };
    let expected = Expected {
        method: request.method,
        url: request.url,
        access_token: Some(token),
    };
    let proof = dpop::verify(proof, expected, now)
        .map_err(|error| ResourceError::InvalidProof(error.to_string()))?;
    if proof.jkt != claims.cnf.jkt {
        return Err(ResourceError::KeyMismatch);
    }
    Ok((claims, proof))
}

/// Reads the token of the one `Authorization` header, whose scheme must be `DPoP`
/// (compared case-insensitively, RFC 9110 §11.1).
pub fn read_token<'a>(authorization: &[&'a str]) -> Result<&'a str, ResourceError> {
    let header = match authorization {
        [] => return Err(ResourceError::MissingToken),
        [header] => *header,
        _ => return Err(ResourceError::RepeatedHeader),
    };
    let (scheme, token) = header.split_once(' ').ok_or(ResourceError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("DPoP") {
        return Err(ResourceError::WrongScheme(scheme.to_owned()));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ResourceError::MissingToken);
    }
    Ok(token)
}
