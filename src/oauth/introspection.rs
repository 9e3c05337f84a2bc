//! Token introspection (RFC 7662) and revocation (RFC 7009).

use serde_json::{Value, json};

use super::{OAuthError, access_token, gate};
use crate::clock::UnixTime;
use crate::store::{Store, StoreError};

/// Returns the introspection response for `token` (RFC 7662 §2.2): its claims, `act` and
/// `cnf` included, while it and everything it was issued under are active, and only
/// `{"active": false}` otherwise. The reason for an inactive token goes to the log only.
pub fn introspect(store: &dyn Store, token: &str, now: UnixTime) -> Result<Value, StoreError> {
    let record = match access_token::find_issued(store, token) {
        Ok(record) => record,
        Err(OAuthError::Store(error)) => return Err(error),
        Err(_) => return Ok(inactive()),
    };
    match gate::check_token(store, &record, now) {
        Ok(()) => {}
        Err(OAuthError::Store(error)) => return Err(error),
        Err(reason) => {
            tracing::info!(
                target: "security",
                jti = %record.claims.jti,
                condition = reason.condition(),
                "introspection: token inactive"
            );
            return Ok(inactive());
        }
    }
    let mut response = serde_json::to_value(&record.claims).unwrap_or_else(|_| json!({}));
    if let Value::Object(members) = &mut response {
        members.insert("active".into(), Value::Bool(true));
        members.insert("token_type".into(), Value::String("DPoP".into()));
    }
    Ok(response)
}

/// Revokes `token` if devbound issued it (RFC 7009 §2.1). Tokens exchanged from it become
/// inactive too, because each lists it among its ancestors. An unknown token is not an
/// error (RFC 7009 §2.2).
pub fn revoke(store: &dyn Store, token: &str, now: UnixTime) -> Result<Option<String>, StoreError> {
    match access_token::find_issued(store, token) {
        Ok(record) => {
            store.revoke_token(&record.claims.jti, now)?;
            Ok(Some(record.claims.jti))
        }
        Err(OAuthError::Store(error)) => Err(error),
        Err(_) => Ok(None),
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}
