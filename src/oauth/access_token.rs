//! JWT access tokens (RFC 9068): issuing them, and recognising ones devbound issued.

use rand::{CryptoRng, RngCore};
use serde::Deserialize;

use super::{ACCESS_TOKEN_TYPE, KeyRing, OAuthError};
use crate::clock::UnixTime;
use crate::crypto::secret::{constant_time_eq, sha256};
use crate::crypto::{Algorithm, CompactJws, JoseError, Secret, base64url};
use crate::store::{AccessTokenClaims, Store, TokenLineage, TokenRecord};

/// Maximum length of a compact access token accepted anywhere, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Random bytes in a token's `jti`, after its time prefix.
const JTI_RANDOM_BYTES: usize = 12;

/// Creates the `jti` of a token issued at `now`: the issue time in 10 hex digits, then 12
/// random bytes in base64url.
///
/// RFC 7519 §4.1.7 requires only that a `jti` not repeat, which the 96 random bits ensure. The
/// time prefix makes the store's keys grow with time, so a new record lands among the recent
/// ones, in nodes that are already in memory, instead of in a random leaf of the whole tree.
pub fn new_jti(now: UnixTime, rng: &mut (impl RngCore + CryptoRng)) -> String {
    format!(
        "{now:010x}{}",
        Secret::generate(rng, JTI_RANDOM_BYTES).expose()
    )
}

/// Signs `claims` with the current key and stores the token's record.
pub fn issue(
    store: &dyn Store,
    keys: &KeyRing,
    claims: AccessTokenClaims,
    lineage: TokenLineage,
) -> Result<String, OAuthError> {
    let token = keys
        .sign(ACCESS_TOKEN_TYPE, &claims)
        .map_err(|error| OAuthError::Signing(error.to_string()))?;
    store.insert_token(&TokenRecord {
        digest: digest(&token),
        claims,
        lineage,
        revoked_at: None,
    })?;
    Ok(token)
}

/// Finds the record of a token devbound issued. The presented bytes must be exactly the
/// issued token, so the stored claims are the token's claims and its signature needs no
/// second verification; any other token, including a re-signed twin, is unknown.
pub fn find_issued(store: &dyn Store, token: &str) -> Result<TokenRecord, OAuthError> {
    let jti = peek_jti(token).ok_or(OAuthError::UnknownToken)?;
    let record = store.find_token(&jti)?.ok_or(OAuthError::UnknownToken)?;
    if !constant_time_eq(digest(token).as_bytes(), record.digest.as_bytes()) {
        return Err(OAuthError::UnknownToken);
    }
    Ok(record)
}

/// Verifies a token's signature with the key ring and returns its claims: what a resource
/// server does with the JWKS. The algorithm is fixed to ES256, the key is found by `kid`
/// among devbound's own keys only, and a `jwk` in the header is rejected.
pub fn verify_signature(
    token: &str,
    keys: &KeyRing,
    now: UnixTime,
) -> Result<AccessTokenClaims, JoseError> {
    let jws = parse(token)?;
    keys.verify(&jws, now)
}

/// Parses an access token's JWS and checks its header (RFC 9068 §4): `typ` `at+jwt`, ES256,
/// a `kid`, and no key of its own.
pub fn parse(token: &str) -> Result<CompactJws<'_>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLong);
    }
    let jws = CompactJws::parse(token, &[Algorithm::Es256])?;
    jws.require_type(ACCESS_TOKEN_TYPE)?;
    if jws.header.jwk.is_some() {
        return Err(JoseError::ForbiddenHeader("jwk"));
    }
    if jws.header.kid.as_deref().is_none_or(str::is_empty) {
        return Err(JoseError::Header("missing kid".into()));
    }
    Ok(jws)
}

/// The base64url SHA-256 of a compact token, as stored in its record.
pub fn digest(token: &str) -> String {
    base64url::encode(sha256(token.as_bytes()))
}

#[derive(Deserialize)]
struct JtiOnly {
    jti: String,
}

/// Reads the `jti` of a compact JWT without verifying it, to find its record.
fn peek_jti(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64url::decode(payload).ok()?;
    serde_json::from_slice::<JtiOnly>(&bytes)
        .ok()
        .map(|claims| claims.jti)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_jti_sorts_by_time() {
        let mut rng = rand::thread_rng();
        let earlier = new_jti(1_764_892_800, &mut rng);
        let later = new_jti(1_764_892_801, &mut rng);
        let twin = new_jti(1_764_892_801, &mut rng);

        assert_eq!(&earlier[..10], "0069322080");
        assert_eq!(earlier.len(), 26);
        assert!(earlier < later);
        assert_ne!(later, twin);
        assert!(base64url::decode(&later[10..]).is_ok_and(|random| random.len() == 12));
    }
}
