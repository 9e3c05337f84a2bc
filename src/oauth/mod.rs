//! OAuth 2.0 for agents: the device authorization grant (RFC 8628), token exchange
//! (RFC 8693) issuing JWT access tokens (RFC 9068) bound with DPoP (RFC 9449), and the gate
//! every issuance passes.
//!
//! Functions here take the store, the time and the key ring as arguments; the HTTP layer
//! parses requests and maps [`OAuthError`] to RFC 6749 §5.2 error responses.

pub mod access_token;
pub mod device_grant;
pub mod dpop;
mod error;
pub mod gate;
pub mod introspection;
pub mod keys;
pub mod replay;
pub mod resource;
pub mod token_exchange;

pub use error::{ErrorCode, OAuthError};
pub use keys::KeyRing;

/// `grant_type` of token exchange (RFC 8693 §2.1).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `grant_type` of the device authorization grant (RFC 8628 §3.4).
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Token type identifiers (RFC 8693 §3).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TOKEN_TYPE_REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// `typ` of a JWT access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Lifetime of a token issued by token exchange, in seconds.
pub const ACCESS_TOKEN_TTL: u64 = 300;
/// Lifetime of the token the device grant issues, in seconds. Its audience is devbound itself,
/// so it is only good for token exchange, which checks the session behind it every time.
pub const GRANT_TOKEN_TTL: u64 = 12 * 3600;

/// The settings the token endpoint depends on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer identifier (RFC 8414 §2): devbound's external origin.
    pub issuer: String,
    /// The maximum time since an agent session's last proof of possession at which it still
    /// gets tokens, in seconds.
    pub proof_window: u64,
}

impl Settings {
    /// The URL a path on this service has for DPoP `htu` checks and metadata.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
