//! devbound binds sessions to the device that created them.
//!
//! Layers, outermost first: [`http`] (axum routers and extractors), the protocol modules
//! ([`dbsc`], [`account`], [`tpm`], [`audit`]), [`store`] (typed records over sled), and [`crypto`] (JOSE and keys).
//! Each layer calls only the ones below it. Protocol functions take the current time and a
//! random number generator as arguments, so tests run at fixed instants.

#![forbid(unsafe_code)]
// Handlers return a ready `Response` as their error; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]
#![warn(missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod account;
pub mod agent;
pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dbsc;
pub mod device;
pub mod example_api;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod passkey;
pub mod store;
pub mod tls;
pub mod tpm;
