//! Verification of DBSC proof JWTs.
//!
//! Tolerance policy for the shapes older drafts used: the current Chromium shape (header
//! `alg`, `typ: "dbsc+jwt"`, and `jwk` on registration only; payload `jti` and, when offered,
//! `authorization`) is the only one accepted. A `typ` of `jwt` is rejected; a key in a `key`
//! payload claim is never used, so a registration without a `jwk` header fails; `iat` and `sub`
//! are ignored whatever their type; `aud`, when present, must be the endpoint URL.

use serde::Deserialize;
use serde_json::Value;

use super::error::DbscError;
use crate::crypto::{Algorithm, CompactJws};
use crate::store::BoundKey;

/// The `typ` header of every DBSC proof.
pub const PROOF_TYPE: &str = "dbsc+jwt";

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<Value>,
    authorization: Option<Value>,
    aud: Option<Value>,
}

/// A verified registration proof.
#[derive(Debug)]
pub struct RegistrationProof {
    pub key: BoundKey,
    pub challenge: String,
    pub authorization: Option<String>,
}

/// A verified refresh proof.
#[derive(Debug)]
pub struct RefreshProof {
    pub challenge: String,
}

/// Verifies a registration proof with the key it carries, for one of the `offered` algorithms.
pub fn verify_registration(
    token: &str,
    offered: &[Algorithm],
    endpoint: &str,
) -> Result<RegistrationProof, DbscError> {
    let jws = CompactJws::parse(token, offered)?;
    jws.require_type(PROOF_TYPE)?;

    let jwk = jws.embedded_jwk()?.ok_or(DbscError::MissingJwk)?;
    jwk.check_algorithm(jws.alg)
        .map_err(|error| DbscError::Jose(error.into()))?;
    let key = jwk
        .parse_key()
        .map_err(|error| DbscError::Jose(error.into()))?;
    let claims: ProofClaims = jws.verify(&key)?;

    check_audience(claims.aud.as_ref(), endpoint)?;
    let authorization = match claims.authorization {
        None => None,
        Some(Value::String(value)) => Some(value),
        Some(_) => return Err(DbscError::WrongAuthorization),
    };
    Ok(RegistrationProof {
        key: BoundKey { alg: jws.alg, jwk },
        challenge: jti(claims.jti)?,
        authorization,
    })
}

/// Verifies a refresh proof with the key stored at registration and nothing else.
pub fn verify_refresh(
    token: &str,
    stored: &BoundKey,
    endpoint: &str,
) -> Result<RefreshProof, DbscError> {
    let jws = CompactJws::parse(token, &[stored.alg])?;
    jws.require_type(PROOF_TYPE)?;

    // A refresh proof that brings its own key would let anyone holding the cookie rebind the
    // session to a key of their choosing.
    if jws.header.jwk.is_some() {
        return Err(DbscError::UnexpectedJwk);
    }
    let key = stored
        .jwk
        .parse_key()
        .map_err(|error| DbscError::Jose(error.into()))?;
    let claims: ProofClaims = jws.verify(&key)?;

    check_audience(claims.aud.as_ref(), endpoint)?;
    Ok(RefreshProof {
        challenge: jti(claims.jti)?,
    })
}

fn jti(value: Option<Value>) -> Result<String, DbscError> {
    match value {
        Some(Value::String(jti)) if !jti.is_empty() => Ok(jti),
        _ => Err(DbscError::MissingJti),
    }
}

/// Chromium adds `aud`, the full endpoint URL, only behind an optional feature, so it is not
/// required; when present it must name this endpoint.
fn check_audience(aud: Option<&Value>, endpoint: &str) -> Result<(), DbscError> {
    match aud {
        None => Ok(()),
        Some(Value::String(aud)) if aud == endpoint => Ok(()),
        Some(Value::Array(values)) if values.iter().any(|v| v.as_str() == Some(endpoint)) => Ok(()),
        Some(other) => Err(DbscError::WrongAudience(other.to_string())),
    }
}
