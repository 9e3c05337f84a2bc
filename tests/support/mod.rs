//! Shared helpers for the integration tests.

pub mod chromium;
pub mod dbsc;
pub mod devices;
pub mod passkeys;
pub mod server;
pub mod webauthn;
