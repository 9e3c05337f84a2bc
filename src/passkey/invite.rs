//! Invitations to register a first passkey, for people who have no password and no passkey
//! yet. An operator creates one; the link carries a single-use secret.

use rand::{CryptoRng, RngCore};

use super::relying_party::RelyingParty;
use super::{PasskeyError, Started};
use crate::clock::UnixTime;
use crate::crypto::Secret;
use crate::store::{CeremonyPurpose, CeremonyRecord, PasskeyRecord, UserRecord};
use webauthn_rs_core::proto::CreationChallengeResponse;

/// How long an invitation link works, in seconds.
pub const INVITE_TTL: u64 = 24 * 3600;
/// Length of the invitation secret, in random bytes.
const INVITE_BYTES: usize = 32;

/// Creates an invitation for `user_id`, valid for [`INVITE_TTL`].
pub fn new_invite(
    user_id: &str,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> CeremonyRecord {
    CeremonyRecord {
        id: Secret::generate(rng, INVITE_BYTES).expose().to_owned(),
        purpose: CeremonyPurpose::Invite {
            user_id: user_id.to_owned(),
        },
        expires_at: now + INVITE_TTL,
        challenge: String::new(),
        state: serde_json::Value::Null,
    }
}

impl RelyingParty {
    /// Starts registering the first passkey of the user an invitation was made for. The
    /// invitation stays in the store until the registration verifies.
    pub fn start_enrollment(
        &self,
        invite: &CeremonyRecord,
        user: &UserRecord,
        name: &str,
        existing: &[PasskeyRecord],
        now: UnixTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Started<CreationChallengeResponse>, PasskeyError> {
        let invited = matches!(
            &invite.purpose,
            CeremonyPurpose::Invite { user_id } if *user_id == user.id
        );
        if !invited {
            return Err(PasskeyError::WrongCeremony);
        }
        if invite.expires_at <= now {
            return Err(PasskeyError::UnknownCeremony);
        }
        let mut started = self.start_registration(user, name, existing, now, rng)?;
        started.ceremony.purpose = CeremonyPurpose::Enroll {
            user_id: user.id.clone(),
            name: name.to_owned(),
            invite: invite.id.clone(),
        };
        Ok(started)
    }
}
