//! Local accounts: creation and password sign-in.
//!
//! Passwords are hashed with Argon2id (RFC 9106) at the `argon2` crate's default parameters,
//! and a sign-in for an unknown user still runs one hash, so response time does not reveal
//! which names exist.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::{CryptoRng, RngCore};

use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::store::UserRecord;

/// Longest accepted user name and password, in bytes.
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A failure to create an account or to sign in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error(
        "user name must be 1 to {MAX_NAME_LEN} characters of letters, digits, `.`, `_`, `-` or `@`, and not `.` or `..`"
    )]
    InvalidName,
    #[error("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_LEN} bytes long")]
    InvalidPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("user name or password is incorrect")]
    BadCredentials,
    #[error("the account is disabled")]
    Disabled,
}

/// Creates a user record with a freshly salted password hash.
pub fn new_user(
    name: &str,
    password: &str,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<UserRecord, AccountError> {
    validate_name(name)?;
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::InvalidPassword);
    }

    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    Ok(UserRecord {
        id: base64url::encode(id),
        name: name.to_owned(),
        password_hash: hash_password(password, rng)?,
        created_at: now,
        disabled_at: None,
    })
}

/// Creates a user who signs in with passkeys only. The record stores no password hash, so every
/// password sign-in for this user fails, after the usual Argon2 check of the decoy hash.
pub fn new_passkey_user(
    name: &str,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<UserRecord, AccountError> {
    validate_name(name)?;
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    Ok(UserRecord {
        id: base64url::encode(id),
        name: name.to_owned(),
        password_hash: String::new(),
        created_at: now,
        disabled_at: None,
    })
}

/// Checks a user name. `.` and `..` are rejected although their characters are allowed,
/// because in the admin API's paths (`/admin/users/{name}/...`) URL parsers remove them as
/// dot-segments (WHATWG URL standard, path parsing).
pub fn validate_name(name: &str) -> Result<(), AccountError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(AccountError::InvalidName)
    }
}

fn hash_password(
    password: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| AccountError::Hash(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AccountError::Hash(error.to_string()))
}

/// An Argon2id hash checked when the user is unknown or has no password, so that the response
/// takes as long as for a real user. It is public in this source, so it never signs anyone in.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$u6eLU3v2Fm4Sj0pSmH1bfzXh0kEn4mPSs9JPl+DXXbo";

/// Checks a password against `user`, or against a decoy hash when there is no such user or the
/// user has no password.
pub fn verify_password(user: Option<&UserRecord>, password: &str) -> Result<(), AccountError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::BadCredentials);
    }
    let user = user.filter(|user| has_password(user));
    let stored = user.map_or(DECOY_HASH, |user| user.password_hash.as_str());
    let hash = PasswordHash::new(stored).map_err(|error| AccountError::Hash(error.to_string()))?;
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok();
    match user {
        // Only a caller with the right password learns that the account is disabled.
        Some(user) if matches && user.disabled_at.is_some() => Err(AccountError::Disabled),
        Some(_) if matches => Ok(()),
        _ => Err(AccountError::BadCredentials),
    }
}

/// Checks whether `user` can sign in with a password. Passkey-only users created before they
/// stored an empty hash carry the decoy hash, which is public in this source and so must never
/// sign anyone in.
pub fn has_password(user: &UserRecord) -> bool {
    !user.password_hash.is_empty() && user.password_hash != DECOY_HASH
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn password_round_trip_and_rejection() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let user = new_user("alice", "correct horse", 0, &mut rng).unwrap();
        assert!(user.password_hash.starts_with("$argon2id$"));
        assert_eq!(verify_password(Some(&user), "correct horse"), Ok(()));
        assert_eq!(
            verify_password(Some(&user), "wrong horse"),
            Err(AccountError::BadCredentials)
        );
        assert_eq!(
            verify_password(None, "correct horse"),
            Err(AccountError::BadCredentials)
        );
    }

    #[test]
    fn new_user_validates_name_and_password() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        assert_eq!(
            new_user("a b", "long enough", 0, &mut rng).err(),
            Some(AccountError::InvalidName)
        );
        assert_eq!(
            new_user("bob", "short", 0, &mut rng).err(),
            Some(AccountError::InvalidPassword)
        );
        for dots in [".", ".."] {
            assert_eq!(
                new_user(dots, "long enough", 0, &mut rng).err(),
                Some(AccountError::InvalidName)
            );
        }
        assert!(new_user("a.b", "long enough", 0, &mut rng).is_ok());
    }

    #[test]
    fn disabled_user_is_told_only_with_password() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut user = new_user("dave", "correct horse", 0, &mut rng).unwrap();
        user.disabled_at = Some(10);

        assert_eq!(
            verify_password(Some(&user), "correct horse"),
            Err(AccountError::Disabled)
        );
        assert_eq!(
            verify_password(Some(&user), "wrong horse"),
            Err(AccountError::BadCredentials)
        );
    }

    #[test]
    fn passkey_user_has_no_password() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let user = new_passkey_user("bob", 0, &mut rng).unwrap();

        assert_eq!(user.password_hash, "");
        assert!(!has_password(&user));
        assert_eq!(
            verify_password(Some(&user), ""),
            Err(AccountError::BadCredentials)
        );
    }

    #[test]
    fn decoy_hash_never_signs_in() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut user = new_passkey_user("carol", 0, &mut rng).unwrap();
        // A passkey-only user stored by an earlier version carries the decoy hash.
        user.password_hash = DECOY_HASH.to_owned();

        assert!(!has_password(&user));
    }
}
