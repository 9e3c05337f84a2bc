//! Shared helpers for the integration tests.

pub mod chromium;
pub mod dbsc;
pub mod devices;
pub mod server;
