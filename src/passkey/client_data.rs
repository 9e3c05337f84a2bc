//! Checks of `clientDataJSON` that devbound makes before webauthn-rs-core sees the response.
//!
//! WebAuthn Level 3 §5.8.1 (CollectedClientData) and §7.1/§7.2 step "verify C.origin": the
//! client data is parsed as JSON, never matched against a template, so extra members and any
//! member order are accepted. The challenge must be the exact base64url (no padding) encoding
//! the browser produces, because webauthn-rs-core's base64 type also decodes padded and `+/`
//! forms.

use serde_json::{Map, Value};

use crate::crypto::base64url;
use crate::crypto::secret::constant_time_eq;

/// `type` of a registration's client data.
pub const TYPE_CREATE: &str = "webauthn.create";
/// `type` of an authentication's client data.
pub const TYPE_GET: &str = "webauthn.get";

/// A client data check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientDataError {
    #[error("clientDataJSON is not a JSON object")]
    NotAnObject,
    #[error("member `{0}` is missing or not a string")]
    MissingMember(&'static str),
    #[error("type is {0:?}, expected {1:?}")]
    WrongType(String, &'static str),
    #[error("challenge is not unpadded base64url")]
    ChallengeEncoding,
    #[error("challenge does not match the one devbound issued")]
    WrongChallenge,
    #[error("origin {0:?} is not devbound's origin")]
    WrongOrigin(String),
    #[error("crossOrigin is not a boolean")]
    CrossOriginType,
    #[error("cross-origin request from top origin {0:?}, which may not embed devbound")]
    CrossOriginNotAllowed(String),
}

/// What the client data must contain.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub type_: &'static str,
    /// The challenge devbound issued, base64url without padding.
    pub challenge: &'a str,
    /// devbound's origin, such as `https://login.example.com`.
    pub origin: &'a str,
    /// Top-level origins allowed to embed devbound in a cross-origin iframe.
    pub embedding_origins: &'a [String],
}

/// Parses `clientDataJSON` and applies the checks above.
pub fn check(client_data_json: &[u8], expected: &Expected<'_>) -> Result<(), ClientDataError> {
    let value: Value =
        serde_json::from_slice(client_data_json).map_err(|_| ClientDataError::NotAnObject)?;
    let members = value.as_object().ok_or(ClientDataError::NotAnObject)?;

    let type_ = string_member(members, "type")?;
    if type_ != expected.type_ {
        return Err(ClientDataError::WrongType(type_.to_owned(), expected.type_));
    }
    check_challenge(string_member(members, "challenge")?, expected.challenge)?;

    let origin = string_member(members, "origin")?;
    if origin != expected.origin {
        return Err(ClientDataError::WrongOrigin(origin.to_owned()));
    }
    check_cross_origin(members, expected)
}

fn string_member<'v>(
    members: &'v Map<String, Value>,
    name: &'static str,
) -> Result<&'v str, ClientDataError> {
    members
        .get(name)
        .and_then(Value::as_str)
        .ok_or(ClientDataError::MissingMember(name))
}

fn check_challenge(received: &str, issued: &str) -> Result<(), ClientDataError> {
    // WebAuthn §5.8.1: `challenge` is the base64url encoding of the challenge; the strict
    // decoder rejects padding, the `+/` alphabet and non-canonical trailing bits.
    let received = base64url::decode(received).map_err(|_| ClientDataError::ChallengeEncoding)?;
    let issued = base64url::decode(issued).map_err(|_| ClientDataError::WrongChallenge)?;
    if !constant_time_eq(&received, &issued) {
        return Err(ClientDataError::WrongChallenge);
    }
    Ok(())
}

/// WebAuthn Level 3 §5.8.1: `crossOrigin` is true when the ceremony ran in a cross-origin
/// iframe, and `topOrigin` then names the embedding page. Only listed embedders are accepted.
fn check_cross_origin(
    members: &Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<(), ClientDataError> {
    let cross_origin = match members.get("crossOrigin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(ClientDataError::CrossOriginType),
    };
    let top_origin = members.get("topOrigin").and_then(Value::as_str);
    if !cross_origin {
        // A `topOrigin` other than devbound's own in a same-origin ceremony is inconsistent.
        return match top_origin {
            Some(top) if top != expected.origin => {
                Err(ClientDataError::CrossOriginNotAllowed(top.to_owned()))
            }
            _ => Ok(()),
        };
    }
    match top_origin {
        Some(top)
            if expected
                .embedding_origins
                .iter()
                .any(|allowed| allowed == top) =>
        {
            Ok(())
        }
        Some(top) => Err(ClientDataError::CrossOriginNotAllowed(top.to_owned())),
        None => Err(ClientDataError::CrossOriginNotAllowed(String::new())),
    }
}
