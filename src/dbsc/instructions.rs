//! The session instructions: the JSON body of registration and refresh responses.
//!
//! Field names are the DBSC specification's. `session_identifier` is always a JSON string and
//! never changes for a session, because Chromium terminates a session whose identifier changes.

use serde::{Deserialize, Serialize};

use super::cookie::BoundCookie;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInstructions {
    pub session_identifier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    #[serde(rename = "continue", default = "continue_default")]
    pub continue_: bool,
}

fn continue_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Must be `false` when the host is an IP address.
    pub include_site: bool,
    #[serde(default)]
    pub scope_specification: Vec<ScopeRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRule {
    #[serde(rename = "type")]
    pub kind: String,
    pub domain: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub attributes: String,
}

impl SessionInstructions {
    /// Instructions for a live session, bound to `cookie`.
    pub fn live(session_id: &str, refresh_url: &str, origin: &str, cookie: &BoundCookie) -> Self {
        Self {
            session_identifier: session_id.to_owned(),
            refresh_url: Some(refresh_url.to_owned()),
            scope: Some(Scope {
                origin: Some(origin.to_owned()),
                include_site: false,
                scope_specification: Vec::new(),
            }),
            credentials: vec![Credential {
                kind: "cookie".into(),
                name: cookie.name().to_owned(),
                attributes: cookie.attributes(),
            }],
            continue_: true,
        }
    }

    /// Instructions that end the session in the browser.
    pub fn terminate(session_id: &str) -> Self {
        Self {
            session_identifier: session_id.to_owned(),
            refresh_url: None,
            scope: None,
            credentials: Vec::new(),
            continue_: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbsc::SameSite;

    #[test]
    fn live_instructions_golden_json() {
        let cookie = BoundCookie::new("__Host-devbound", None, SameSite::Lax).unwrap();
        let json = serde_json::to_string(&SessionInstructions::live(
            "s1",
            "https://localhost:8443/dbsc/refresh",
            "https://localhost:8443",
            &cookie,
        ))
        .unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"session_identifier":"s1","refresh_url":"https://localhost:8443/dbsc/refresh","#,
                r#""scope":{"origin":"https://localhost:8443","include_site":false,"scope_specification":[]},"#,
                r#""credentials":[{"type":"cookie","name":"__Host-devbound","#,
                r#""attributes":"Path=/; Secure; HttpOnly; SameSite=Lax"}],"continue":true}"#
            )
        );
    }

    #[test]
    fn terminate_instructions_golden_json() {
        let json = serde_json::to_string(&SessionInstructions::terminate("s1")).unwrap();
        assert_eq!(json, r#"{"session_identifier":"s1","continue":false}"#);
    }
}
