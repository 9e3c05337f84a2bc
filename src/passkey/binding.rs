//! Passkey-bound sessions: which passkey proved a session and when, the freshness window, and
//! the step-up check that sensitive actions call.

use super::authentication::Asserted;
use crate::clock::UnixTime;
use crate::store::{Assurance, SessionRecord};

/// A sensitive action needs a newer passkey proof than the session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepUpRequired {
    #[error("the session has never been proved by a passkey")]
    NoPasskeyProof,
    #[error("the last passkey proof is {age} seconds old; at most {max_age} is accepted")]
    ProofTooOld { age: u64, max_age: u64 },
}

/// Records that `asserted.passkey` proved possession for `session` at `now`.
///
/// The session's assurance becomes the proof's, except that a TPM-assured session keeps `tpm`.
pub fn record_proof(session: &SessionRecord, asserted: &Asserted, now: UnixTime) -> SessionRecord {
    let mut proved = session.clone();
    proved.passkey_id = Some(asserted.passkey.id.clone());
    proved.passkey_proof_at = Some(now);
    proved.assurance = if session.assurance == Assurance::Tpm {
        Assurance::Tpm
    } else {
        asserted.assurance.max(Assurance::Software)
    };
    proved
}

/// Returns the age of the session's last passkey proof at `now`, if it has one.
pub fn proof_age(session: &SessionRecord, now: UnixTime) -> Option<u64> {
    session
        .passkey_proof_at
        .map(|proved_at| now.saturating_sub(proved_at))
}

/// Checks that a passkey proved this session at most `max_age` seconds ago. Handlers of
/// sensitive actions call this and, on error, send the person to the step-up page.
pub fn require_recent_proof(
    session: &SessionRecord,
    now: UnixTime,
    max_age: u64,
) -> Result<(), StepUpRequired> {
    let age = proof_age(session, now).ok_or(StepUpRequired::NoPasskeyProof)?;
    if age > max_age {
        return Err(StepUpRequired::ProofTooOld { age, max_age });
    }
    Ok(())
}

/// Checks whether a passkey-bound session must prove possession again: its passkey proof is
/// older than the freshness window. Sessions never bound to a passkey are not affected.
pub fn needs_reproof(session: &SessionRecord, now: UnixTime, freshness: u64) -> bool {
    session.passkey_id.is_some() && proof_age(session, now).is_none_or(|age| age > freshness)
}

/// Returns the assurance the session has at `now`: a passkey-bound session whose proof is
/// older than the freshness window counts only as `software`, whatever it had.
pub fn effective_assurance(session: &SessionRecord, now: UnixTime, freshness: u64) -> Assurance {
    if session.assurance == Assurance::Passkey && needs_reproof(session, now, freshness) {
        Assurance::Software
    } else {
        session.assurance
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionState;

    fn session(assurance: Assurance, passkey_proof_at: Option<UnixTime>) -> SessionRecord {
        SessionRecord {
            id: "s1".into(),
            user_id: "alice".into(),
            state: SessionState::Bound,
            created_at: 0,
            expires_at: 10_000,
            authorization_digest: None,
            key: None,
            assurance,
            challenge: None,
            credential_digest: None,
            credential_expires_at: 0,
            previous_credential_digest: None,
            previous_credential_expires_at: 0,
            last_proof_at: None,
            refresh_count: 0,
            passkey_id: passkey_proof_at.map(|_| "credential".into()),
            passkey_proof_at,
            device_id: None,
        }
    }

    #[test]
    fn step_up_accepts_proof_up_to_max_age() {
        let proved = session(Assurance::Passkey, Some(1_000));
        assert_eq!(require_recent_proof(&proved, 1_300, 300), Ok(()));
        assert_eq!(
            require_recent_proof(&proved, 1_301, 300),
            Err(StepUpRequired::ProofTooOld {
                age: 301,
                max_age: 300
            })
        );
    }

    #[test]
    fn step_up_requires_a_passkey_proof() {
        let password = session(Assurance::Software, None);
        assert_eq!(
            require_recent_proof(&password, 1_000, 300),
            Err(StepUpRequired::NoPasskeyProof)
        );
    }

    #[test]
    fn stale_binding_counts_as_software() {
        let proved = session(Assurance::Passkey, Some(1_000));
        assert!(!needs_reproof(&proved, 1_600, 600));
        assert_eq!(effective_assurance(&proved, 1_600, 600), Assurance::Passkey);
        assert!(needs_reproof(&proved, 1_601, 600));
        assert_eq!(
            effective_assurance(&proved, 1_601, 600),
            Assurance::Software
        );
    }

    #[test]
    fn password_session_needs_no_reproof() {
        let password = session(Assurance::Software, None);
        assert!(!needs_reproof(&password, u64::MAX, 600));
    }
}
