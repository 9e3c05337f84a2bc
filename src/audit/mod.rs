//! The audit log: every security decision, appended to a hash chain.
//!
//! Each entry commits to the one before it, so an entry that is edited, removed or reordered
//! after the fact breaks the chain at that point and [`verify`] names where. The log shows
//! tampering. It cannot stop someone who can rewrite the whole database from rewriting the whole
//! chain, so operators should copy the latest hash elsewhere (`devbound audit verify` prints it).
//!
//! The hash input is a fixed binary layout rather than JSON, so that it does not depend on how a
//! serializer orders or escapes fields.

pub mod limit;

use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::store::AuditEntry;

/// Domain separation for the entry hash, with a version for a future layout.
const HASH_CONTEXT: &[u8] = b"devbound audit entry v1";

/// The hash that the first entry links to.
pub const GENESIS: [u8; 32] = [0; 32];

/// Whether a decision let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
        }
    }
}

/// A decision to record: who did what to which record, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The user, operator, device or agent that asked (`operator`, `user:ID`, `session:ID`, ...).
    pub actor: String,
    /// The requested operation, as a dotted name (`session.bind`, `session.revoke`, `token.exchange`).
    pub action: &'static str,
    /// The record it concerned (`session:ID`, `user:ID`, ...).
    pub target: String,
    pub outcome: Outcome,
    /// The refusal reason or other short detail; never a secret.
    pub detail: String,
}

impl Event {
    pub fn allowed(
        actor: impl Into<String>,
        action: &'static str,
        target: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: target.into(),
            outcome: Outcome::Allowed,
            detail: String::new(),
        }
    }

    pub fn refused(
        actor: impl Into<String>,
        action: &'static str,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            outcome: Outcome::Refused,
            detail: reason.into(),
            ..Self::allowed(actor, action, target)
        }
    }

    /// Checks whether the actor is an unidentified peer (`peer`, `device` or `user:-`) and the
    /// target names no user, so the audit log's refusal cap applies. A wrong password for an
    /// existing account targets that user and is always recorded.
    pub fn is_anonymous(&self) -> bool {
        let names_user = self.target.starts_with("user:") && self.target != "user:-";
        matches!(self.actor.as_str(), "peer" | "device" | "user:-") && !names_user
    }
}

/// Builds the entry that follows `previous` (or starts the log) for `event` at `at`.
pub fn seal(previous: Option<&AuditEntry>, at: UnixTime, event: &Event) -> AuditEntry {
    let (seq, prev_hash) = match previous {
        Some(entry) => (entry.seq + 1, entry.hash.clone()),
        None => (0, base64url::encode(GENESIS)),
    };
    let mut entry = AuditEntry {
        seq,
        at,
        actor: event.actor.clone(),
        action: event.action.to_owned(),
        target: event.target.clone(),
        outcome: event.outcome.name().to_owned(),
        detail: event.detail.clone(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = base64url::encode(entry_hash(&entry));
    entry
}

/// The first point at which a chain is not intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {found} follows entry {previous}: entries are missing or out of order")]
    Gap { previous: u64, found: u64 },
    #[error("entry {0} does not link to the hash of the entry before it")]
    BrokenLink(u64),
    #[error("entry {0} does not match its own hash: it was changed after it was written")]
    Altered(u64),
}

/// Checks a run of consecutive entries, oldest first, and returns the last one.
///
/// `previous` is the entry before the run, or `None` when the run starts the log.
pub fn verify<'a>(
    previous: Option<&'a AuditEntry>,
    entries: impl IntoIterator<Item = &'a AuditEntry>,
) -> Result<Option<&'a AuditEntry>, ChainError> {
    let mut last = previous;
    for entry in entries {
        let (expected_seq, expected_link) = match last {
            Some(before) => (before.seq + 1, before.hash.clone()),
            None => (0, base64url::encode(GENESIS)),
        };
        if entry.seq != expected_seq {
            return Err(ChainError::Gap {
                previous: last.map_or(0, |before| before.seq),
                found: entry.seq,
            });
        }
        if entry.prev_hash != expected_link {
            return Err(ChainError::BrokenLink(entry.seq));
        }
        if entry.hash != base64url::encode(entry_hash(entry)) {
            return Err(ChainError::Altered(entry.seq));
        }
        last = Some(entry);
    }
    Ok(last)
}

/// SHA-256 over the context, then every field in order, each string with its length in front
/// so that no two different entries share an input.
fn entry_hash(entry: &AuditEntry) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(HASH_CONTEXT);
    hash.update(entry.seq.to_be_bytes());
    hash.update(entry.at.to_be_bytes());
    for field in [
        &entry.actor,
        &entry.action,
        &entry.target,
        &entry.outcome,
        &entry.detail,
        &entry.prev_hash,
    ] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_refusal_naming_a_user_is_kept() {
        let unknown = Event::refused("peer", "session.sign_in", "password", "bad_credentials");
        let known = Event::refused("peer", "session.sign_in", "user:u1", "bad_credentials");
        let unnamed = Event::refused("user:-", "session.sign_in", "user:-", "bad_credentials");
        let operator = Event::refused("operator", "session.revoke", "session:s1", "unknown");

        assert!(unknown.is_anonymous());
        assert!(!known.is_anonymous());
        assert!(unnamed.is_anonymous());
        assert!(!operator.is_anonymous());
    }

    fn chain(events: usize) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for index in 0..events {
            let event = Event::allowed("operator", "session.revoke", format!("session:{index}"));
            let entry = seal(entries.last(), 1_000 + index as u64, &event);
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn chain_untouched_verifies() {
        let entries = chain(5);

        let last = verify(None, &entries).unwrap();

        assert_eq!(last.map(|entry| entry.seq), Some(4));
    }

    #[test]
    fn chain_run_verifies_from_predecessor() {
        let entries = chain(5);

        let last = verify(Some(&entries[1]), &entries[2..]).unwrap();

        assert_eq!(last.map(|entry| entry.seq), Some(4));
    }

    #[test]
    fn chain_edited_field_is_found() {
        let mut entries = chain(4);
        entries[2].outcome = "refused".into();

        assert_eq!(verify(None, &entries), Err(ChainError::Altered(2)));
    }

    #[test]
    fn chain_rehashed_edit_breaks_next_link() {
        let mut entries = chain(4);
        entries[1].target = "session:other".into();
        entries[1].hash = base64url::encode(entry_hash(&entries[1]));

        assert_eq!(verify(None, &entries), Err(ChainError::BrokenLink(2)));
    }

    #[test]
    fn chain_removed_entry_is_found() {
        let mut entries = chain(4);
        entries.remove(1);

        assert_eq!(
            verify(None, &entries),
            Err(ChainError::Gap {
                previous: 0,
                found: 2
            })
        );
    }

    #[test]
    fn hash_fields_cannot_shift() {
        let first = seal(None, 1, &Event::refused("ab", "x", "c", ""));
        let mut shifted = first.clone();
        shifted.actor = "a".into();
        shifted.target = "bc".into();

        assert_ne!(entry_hash(&first), entry_hash(&shifted));
    }
}
