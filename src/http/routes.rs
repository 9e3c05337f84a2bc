//! Route paths, in one place for the router, the pages, the client and the tests.

pub const ROOT: &str = "/";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
pub const APP: &str = "/app";
pub const SESSIONS: &str = "/sessions";
pub const SESSION_REVOKE: &str = "/sessions/{id}/revoke";
pub const REGISTER: &str = crate::config::REGISTER_PATH;
pub const REFRESH: &str = crate::config::REFRESH_PATH;
pub const API_SESSIONS: &str = "/api/sessions";
pub const API_SESSION: &str = "/api/sessions/{id}";
pub const ADMIN_USERS: &str = "/admin/users";
pub const ADMIN_SESSIONS: &str = "/admin/sessions";
pub const ADMIN_SESSION_REVOKE: &str = "/admin/sessions/{id}/revoke";
pub const PASSKEY_SIGN_IN_OPTIONS: &str = "/login/passkey/options";
pub const PASSKEY_SIGN_IN: &str = "/login/passkey";
pub const PASSKEYS: &str = "/passkeys";
pub const PASSKEY_REGISTER_OPTIONS: &str = "/passkeys/register/options";
pub const PASSKEY_REGISTER: &str = "/passkeys/register";
pub const PASSKEY_RENAME: &str = "/passkeys/{id}/rename";
pub const PASSKEY_REMOVE: &str = "/passkeys/{id}/remove";
pub const STEP_UP: &str = "/passkeys/step-up";
pub const STEP_UP_OPTIONS: &str = "/passkeys/step-up/options";
pub const API_PASSKEYS: &str = "/api/passkeys";
pub const ENROLL: &str = "/passkeys/enroll";
pub const ENROLL_OPTIONS: &str = "/passkeys/enroll/options";
pub const ADMIN_USER_INVITE: &str = "/admin/users/{id}/invite";
pub const ADMIN_USER_DISABLE: &str = "/admin/users/{id}/disable";
pub const ADMIN_USER_ENABLE: &str = "/admin/users/{id}/enable";
pub const ADMIN_AUDIT: &str = "/admin/audit";
pub const DEVICES: &str = "/devices";
pub const DEVICE_CODES: &str = "/devices/codes";
pub const DEVICE_REVOKE: &str = "/devices/{id}/revoke";
pub const API_DEVICES: &str = "/api/devices";
pub const API_DEVICE: &str = "/api/devices/{id}";
pub const API_DEVICE_CODES: &str = "/api/devices/codes";
pub const API_ENROLL_START: &str = "/api/devices/enroll/start";
pub const API_ENROLL_FINISH: &str = "/api/devices/enroll/finish";
/// A route that only a session at assurance `tpm` may use.
pub const API_ATTESTED: &str = "/api/attested";
pub const ADMIN_DEVICES: &str = "/admin/devices";
pub const ADMIN_DEVICE_REVOKE: &str = "/admin/devices/{id}/revoke";
pub const HEALTHZ: &str = "/healthz";
pub const METRICS: &str = "/metrics";

// Agents and OAuth.
pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
pub const OAUTH_TOKEN: &str = "/oauth/token";
pub const OAUTH_DEVICE_AUTHORIZATION: &str = "/oauth/device_authorization";
pub const OAUTH_INTROSPECT: &str = "/oauth/introspect";
pub const OAUTH_REVOKE: &str = "/oauth/revoke";
pub const OAUTH_JWKS: &str = "/oauth/jwks";
pub const DEVICE: &str = "/device";
pub const AGENTS: &str = "/agents";
pub const AGENT_STATE: &str = "/agents/{id}/state";
pub const API_AGENTS: &str = "/api/agents";
pub const API_AGENT: &str = "/api/agents/{id}";
pub const ADMIN_AGENTS: &str = "/admin/agents";
pub const ADMIN_AGENT_STATE: &str = "/admin/agents/{id}/state";
pub const ADMIN_KEYS_ROTATE: &str = "/admin/keys/rotate";

/// Fills the `{id}` segment of a route.
pub fn with_id(route: &str, id: &str) -> String {
    route.replace("{id}", id)
}
