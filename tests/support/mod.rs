//! Shared helpers for the integration tests.

pub mod agents;
pub mod chromium;
pub mod dbsc;
pub mod devices;
pub mod jose;
pub mod passkeys;
pub mod server;
pub mod webauthn;
