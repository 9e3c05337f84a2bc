//! JOSE parsing and verification, key handling and secret values.
//!
//! Every signature devbound verifies goes through [`jws::verify`] with a key that comes from
//! server-side state, never from the token being verified, and with the algorithm fixed by that
//! key and context.

pub mod base64url;
pub mod jwk;
pub mod jws;
pub mod secret;
pub mod signing;

pub use jwk::{Jwk, JwkError, PublicKey};
pub use jws::{Algorithm, CompactJws, JoseError};
pub use secret::Secret;
