//! W3C Device Bound Session Credentials: the rules of registration and refresh.
//!
//! The functions here work on store records and parsed headers, with the time and the random
//! number generator passed in; `http::dbsc` turns their results into responses.

pub mod cookie;
mod error;
pub mod headers;
pub mod instructions;
mod lifecycle;
pub mod proof;

pub use cookie::{BoundCookie, CookieError, SameSite};
pub use error::DbscError;
pub use instructions::SessionInstructions;
pub use lifecycle::{
    Issued, Policy, REPLACED_CREDENTIAL_GRACE, SignIn, begin_sign_in, check_refresh_proof,
    complete_registration, end_session, issue_challenge, outstanding_challenge, renew,
};
pub use proof::{RefreshProof, RegistrationProof};

/// Length of session identifiers, in random bytes.
pub const SESSION_ID_BYTES: usize = 16;
/// Length of challenges, cookie credentials and authorization values, in random bytes.
pub const SECRET_BYTES: usize = 32;
