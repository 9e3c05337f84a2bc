//! Typed records and the verbs of their lifecycle.
//!
//! [`Store`] is what the layers above use; [`SledStore`] is the embedded default. Nothing above
//! this module may assume sled, so that a shared database can stand in later.

mod agents;
mod audit_file;
mod passkey_records;
mod records;
mod session_row;
mod sled_store;
#[cfg(test)]
mod tests;

pub use agents::{
    AccessTokenClaims, Actor, AgentChange, AgentRecord, AgentState, Confirmation,
    DeviceGrantRecord, DeviceGrantStatus, MayAct, SigningKeyRecord, TokenLineage, TokenRecord,
};
pub use passkey_records::{AttestationTrust, CeremonyPurpose, CeremonyRecord, PasskeyRecord};

pub use records::{
    Assurance, AuditEntry, BoundKey, DeviceRecord, EnrollmentCode, PendingChallenge,
    PendingEnrollment, RegistrationChallenge, Revocation, SessionRecord, SessionState, UserRecord,
};
pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore};

use std::future::Future;
use std::pin::Pin;

/// A record as read from the store, with the bytes it was read from, so that an update can be
/// made conditional on the record being unchanged since.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub record: T,
    version: Vec<u8>,
}

/// A failed store operation. None of these is the peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("record `{0}` is corrupt: {1}")]
    Corrupt(String, String),
    #[error("the database in {0} is in use by another process (is `devbound serve` running?)")]
    Locked(String),
}

/// The outcome of a conditional update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Applied,
    /// Another request changed the record first; nothing was written.
    Conflict,
}

pub type SyncFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Durable state for users, sessions and challenges.
///
/// Writes become durable only when the future from [`Store::sync`] completes; a handler awaits
/// it before it acknowledges anything that must survive a crash.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Inserts a user; returns `false` and writes nothing if the name is taken.
    fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    fn find_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    fn find_user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Replaces a stored user; the id and name never change.
    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Checks whether the user `id` exists and an operator disabled them.
    fn user_disabled(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.find_user(id)?.is_some_and(|user| user.is_disabled()))
    }
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    fn find_session(&self, id: &str) -> Result<Option<Versioned<SessionRecord>>, StoreError>;
    /// Replaces `current` with `next` only if the stored record is still `current`.
    fn update_session(
        &self,
        current: &Versioned<SessionRecord>,
        next: &SessionRecord,
    ) -> Result<Update, StoreError>;
    /// Lists sessions, of one user if `user_id` is given, newest first.
    fn list_sessions(&self, user_id: Option<&str>) -> Result<Vec<SessionRecord>, StoreError>;
    /// Deletes sessions that ended before `cutoff` and pending ones that expired.
    fn purge_sessions(&self, now: u64, cutoff: u64) -> Result<usize, StoreError>;

    fn insert_challenge(&self, challenge: &RegistrationChallenge) -> Result<(), StoreError>;
    fn find_challenge(&self, value: &str) -> Result<Option<RegistrationChallenge>, StoreError>;
    /// Removes a challenge and returns it, atomically, so that it is accepted at most once.
    fn consume_challenge(&self, value: &str) -> Result<Option<RegistrationChallenge>, StoreError>;
    fn purge_challenges(&self, now: u64) -> Result<usize, StoreError>;

    /// Makes every write so far durable.
    fn sync(&self) -> SyncFuture;

    // The audit log.

    /// Appends the entry that `seal` builds from the current last entry, so that concurrent
    /// appends still form one chain. Returns the appended entry.
    fn append_audit(
        &self,
        seal: &mut dyn FnMut(Option<&AuditEntry>) -> AuditEntry,
    ) -> Result<AuditEntry, StoreError>;
    /// Lists up to `limit` entries from sequence number `from`, oldest first.
    fn list_audit(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    // Devices: enrolled devices, one-time enrollment codes and started enrollments.

    /// Inserts a device; returns `false` and writes nothing if the id is taken.
    fn insert_device(&self, device: &DeviceRecord) -> Result<bool, StoreError>;
    fn find_device(&self, id: &str) -> Result<Option<Versioned<DeviceRecord>>, StoreError>;
    /// Replaces `current` with `next` only if the stored record is still `current`.
    fn update_device(
        &self,
        current: &Versioned<DeviceRecord>,
        next: &DeviceRecord,
    ) -> Result<Update, StoreError>;
    /// Lists devices, of one owner if `owner_id` is given, newest first.
    fn list_devices(&self, owner_id: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError>;

    fn insert_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError>;
    /// Removes the code with this SHA-256 and returns it, atomically, if it has not expired at
    /// `now`: each code starts at most one enrollment. An expired code is removed and `None`
    /// returned.
    fn consume_enrollment_code(
        &self,
        code_sha256: &[u8; 32],
        now: u64,
    ) -> Result<Option<EnrollmentCode>, StoreError>;

    fn insert_pending_enrollment(&self, pending: &PendingEnrollment) -> Result<(), StoreError>;
    /// Removes the started enrollment with this challenge id and returns it, atomically, so that
    /// each challenge is answered at most once. Expiry is checked by
    /// [`crate::tpm::finish_enrollment`], which must see an expired challenge to name it.
    fn consume_pending_enrollment(&self, id: &str)
    -> Result<Option<PendingEnrollment>, StoreError>;
    /// Deletes expired enrollment codes and started enrollments.
    fn purge_enrollments(&self, now: u64) -> Result<usize, StoreError>;
    // Passkeys.

    /// Inserts a passkey; returns `false` and writes nothing if its credential id is taken.
    fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<bool, StoreError>;
    fn find_passkey(&self, id: &str) -> Result<Option<PasskeyRecord>, StoreError>;
    /// Lists one user's passkeys, oldest first.
    fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError>;
    /// Replaces a stored passkey (after a sign-in or a rename).
    fn update_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError>;
    /// Deletes a passkey; returns `false` if it did not exist.
    fn delete_passkey(&self, id: &str) -> Result<bool, StoreError>;
    fn insert_ceremony(&self, ceremony: &CeremonyRecord) -> Result<(), StoreError>;
    /// Removes a ceremony and returns it, atomically, so that it completes at most once.
    fn consume_ceremony(&self, id: &str) -> Result<Option<CeremonyRecord>, StoreError>;
    fn purge_ceremonies(&self, now: u64) -> Result<usize, StoreError>;
    /// Reads a ceremony without consuming it (an invitation, until it is used).
    fn find_ceremony(&self, id: &str) -> Result<Option<CeremonyRecord>, StoreError>;

    // Agents, device authorization grants, access tokens, DPoP proofs and signing keys.

    /// Inserts an agent; returns `false` and writes nothing if its owner already has an agent
    /// of that name.
    fn insert_agent(&self, agent: &AgentRecord) -> Result<bool, StoreError>;
    fn find_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Replaces a stored agent; its owner and name never change.
    fn update_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    /// Lists agents, of one owner if `owner_id` is given, oldest first.
    fn list_agents(&self, owner_id: Option<&str>) -> Result<Vec<AgentRecord>, StoreError>;
    fn insert_agent_change(&self, change: &AgentChange) -> Result<(), StoreError>;
    /// Lists the changes to one agent, oldest first.
    fn list_agent_changes(&self, agent_id: &str) -> Result<Vec<AgentChange>, StoreError>;

    /// Inserts a device grant; returns `false` if its user code is taken.
    fn insert_device_grant(&self, grant: &DeviceGrantRecord) -> Result<bool, StoreError>;
    fn find_device_grant(
        &self,
        device_code_digest: &str,
    ) -> Result<Option<Versioned<DeviceGrantRecord>>, StoreError>;
    fn find_device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<Versioned<DeviceGrantRecord>>, StoreError>;
    /// Replaces `current` with `next` only if the stored grant is still `current`.
    fn update_device_grant(
        &self,
        current: &Versioned<DeviceGrantRecord>,
        next: &DeviceGrantRecord,
    ) -> Result<Update, StoreError>;
    /// Deletes grants that expired before `now`.
    fn purge_device_grants(&self, now: u64) -> Result<usize, StoreError>;

    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn find_token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks a token revoked at `at`; returns `false` if no token has that `jti`.
    fn revoke_token(&self, jti: &str, at: u64) -> Result<bool, StoreError>;
    /// Deletes tokens that expired before `cutoff`.
    fn purge_tokens(&self, cutoff: u64) -> Result<usize, StoreError>;

    fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Lists the token signing keys, oldest first.
    fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
}
