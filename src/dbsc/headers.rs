//! The DBSC HTTP headers, as RFC 9651 structured fields.
//!
//! Chromium 156 sends `Secure-Session-Response` and `Sec-Secure-Session-Id` as bare values
//! rather than quoted sf-strings, so both forms are accepted for those two.

use sfv::{BareItem, InnerList, Item, ListEntry, Parameters, Parser, SerializeValue};

use crate::crypto::Algorithm;

pub const REGISTRATION: &str = "secure-session-registration";
pub const RESPONSE: &str = "secure-session-response";
pub const SESSION_ID: &str = "sec-secure-session-id";
pub const CHALLENGE: &str = "secure-session-challenge";
pub const SKIPPED: &str = "secure-session-skipped";

/// Maximum length of a parsed header value, in bytes.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// A DBSC header that could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header `{0}` is longer than {MAX_HEADER_LEN} bytes")]
    TooLong(&'static str),
    #[error("header `{0}` is not a valid structured field: {1}")]
    Syntax(&'static str, &'static str),
    #[error("header `{0}` does not have the expected shape")]
    Shape(&'static str),
    #[error("value cannot be written as a structured-field string")]
    Unrepresentable,
}

/// One registration offered to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationOffer {
    pub algorithms: Vec<String>,
    pub path: String,
    pub challenge: String,
    pub authorization: Option<String>,
}

/// A `Secure-Session-Skipped` entry: why the browser did not refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: String,
    pub session_identifier: Option<String>,
}

/// Builds `Secure-Session-Registration`: one inner list of algorithm tokens with `path`,
/// `challenge` and `authorization` parameters.
pub fn registration(
    algorithms: &[Algorithm],
    path: &str,
    challenge: &str,
    authorization: &str,
) -> Result<String, HeaderError> {
    let tokens = algorithms
        .iter()
        .map(|alg| Item::new(BareItem::Token(alg.name().to_owned())))
        .collect();
    let mut params = Parameters::new();
    params.insert("path".into(), BareItem::String(path.to_owned()));
    params.insert("challenge".into(), BareItem::String(challenge.to_owned()));
    params.insert(
        "authorization".into(),
        BareItem::String(authorization.to_owned()),
    );

    let list = vec![ListEntry::InnerList(InnerList::with_params(tokens, params))];
    list.serialize_value()
        .map_err(|_| HeaderError::Unrepresentable)
}

/// Builds `Secure-Session-Challenge: "<challenge>";id="<session>"`. Chromium terminates the
/// session if a refresh 403 carries a challenge without `id`, so the id is always written.
pub fn challenge(challenge: &str, session_id: &str) -> Result<String, HeaderError> {
    let mut params = Parameters::new();
    params.insert("id".into(), BareItem::String(session_id.to_owned()));
    let list = vec![ListEntry::Item(Item::with_params(
        BareItem::String(challenge.to_owned()),
        params,
    ))];
    list.serialize_value()
        .map_err(|_| HeaderError::Unrepresentable)
}

/// Parses a header that carries one string, quoted (sf-string) or bare as Chromium sends it.
pub fn parse_string_or_bare(name: &'static str, value: &[u8]) -> Result<String, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong(name));
    }
    let trimmed = value.trim_ascii();
    if trimmed.first() == Some(&b'"') {
        let item = Parser::parse_item(trimmed).map_err(|error| HeaderError::Syntax(name, error))?;
        return match item.bare_item {
            BareItem::String(text) => Ok(text),
            _ => Err(HeaderError::Shape(name)),
        };
    }

    // A bare value is what Chromium sends: base64url text, and `.` between JWS parts.
    let bare = trimmed
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~'));
    if trimmed.is_empty() || !bare {
        return Err(HeaderError::Shape(name));
    }
    Ok(String::from_utf8_lossy(trimmed).into_owned())
}

/// Parses `Secure-Session-Skipped`: a list of reason tokens with `session_identifier`.
pub fn parse_skipped(value: &[u8]) -> Result<Vec<Skipped>, HeaderError> {
    let list = parse_list(SKIPPED, value)?;
    list.into_iter()
        .map(|entry| {
            let ListEntry::Item(item) = entry else {
                return Err(HeaderError::Shape(SKIPPED));
            };
            let reason = match item.bare_item {
                BareItem::Token(token) | BareItem::String(token) => token,
                _ => return Err(HeaderError::Shape(SKIPPED)),
            };
            let session_identifier = item
                .params
                .get("session_identifier")
                .and_then(|id| id.as_str().map(str::to_owned));
            Ok(Skipped {
                reason,
                session_identifier,
            })
        })
        .collect()
}

/// Parses `Secure-Session-Registration`, as a DBSC client does.
pub fn parse_registration(value: &[u8]) -> Result<Vec<RegistrationOffer>, HeaderError> {
    let list = parse_list(REGISTRATION, value)?;
    list.into_iter()
        .map(|entry| {
            let ListEntry::InnerList(inner) = entry else {
                return Err(HeaderError::Shape(REGISTRATION));
            };
            let algorithms = inner
                .items
                .iter()
                .filter_map(|item| item.bare_item.as_token().map(str::to_owned))
                .collect();
            let param = |key: &str| {
                inner
                    .params
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            Ok(RegistrationOffer {
                algorithms,
                path: param("path").ok_or(HeaderError::Shape(REGISTRATION))?,
                challenge: param("challenge").ok_or(HeaderError::Shape(REGISTRATION))?,
                authorization: param("authorization"),
            })
        })
        .collect()
}

/// Parses `Secure-Session-Challenge` into `(challenge, session id)` pairs, as a client does.
pub fn parse_challenges(value: &[u8]) -> Result<Vec<(String, Option<String>)>, HeaderError> {
    let list = parse_list(CHALLENGE, value)?;
    list.into_iter()
        .map(|entry| match entry {
            ListEntry::Item(Item {
                bare_item: BareItem::String(challenge),
                params,
            }) => Ok((
                challenge,
                params
                    .get("id")
                    .and_then(|id| id.as_str())
                    .map(str::to_owned),
            )),
            _ => Err(HeaderError::Shape(CHALLENGE)),
        })
        .collect()
}

fn parse_list(name: &'static str, value: &[u8]) -> Result<Vec<ListEntry>, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong(name));
    }
    Parser::parse_list(value).map_err(|error| HeaderError::Syntax(name, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_header_golden() {
        let header = registration(
            &[Algorithm::Es256, Algorithm::Rs256],
            "/dbsc/register",
            "c1",
            "a1",
        );
        assert_eq!(
            header.as_deref(),
            Ok(r#"(ES256 RS256);path="/dbsc/register";challenge="c1";authorization="a1""#)
        );
    }

    #[test]
    fn challenge_header_golden() {
        assert_eq!(challenge("c2", "s1").as_deref(), Ok(r#""c2";id="s1""#));
    }

    #[test]
    fn string_or_bare_accepts_both_forms() {
        assert_eq!(
            parse_string_or_bare(RESPONSE, b"eyJh.eyJq.sig-_"),
            Ok("eyJh.eyJq.sig-_".into())
        );
        assert_eq!(
            parse_string_or_bare(SESSION_ID, br#""abc""#),
            Ok("abc".into())
        );
        assert!(parse_string_or_bare(SESSION_ID, b"").is_err());
        assert!(parse_string_or_bare(SESSION_ID, b"a b").is_err());
        assert!(parse_string_or_bare(SESSION_ID, br#""unterminated"#).is_err());
        assert!(parse_string_or_bare(SESSION_ID, b"?1").is_err());
    }

    #[test]
    fn skipped_is_parsed_with_session_identifier() {
        let parsed = parse_skipped(br#"unreachable;session_identifier="s1""#);
        assert_eq!(
            parsed,
            Ok(vec![Skipped {
                reason: "unreachable".into(),
                session_identifier: Some("s1".into())
            }])
        );
    }

    #[test]
    fn registration_round_trips_through_client_parser() {
        let header = registration(&[Algorithm::Es256], "/r", "c", "a").unwrap_or_default();
        let offers = parse_registration(header.as_bytes());
        assert_eq!(
            offers,
            Ok(vec![RegistrationOffer {
                algorithms: vec!["ES256".into()],
                path: "/r".into(),
                challenge: "c".into(),
                authorization: Some("a".into()),
            }])
        );
    }
}
