//! The flags and signature counter of authenticator data (WebAuthn Level 3 §6.1), and
//! devbound's policies for the counter and the backup flags.

/// The fixed-length head of authenticator data: rpIdHash (32), flags (1), signCount (4).
const HEAD_LEN: usize = 37;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;

/// Authenticator data that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticatorDataError {
    #[error("authenticator data is {0} bytes, shorter than 37")]
    TooShort(usize),
    #[error("backup state (BS) is set without backup eligibility (BE)")]
    BackupStateWithoutEligibility,
}

/// The parts of authenticator data that devbound's policies read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatorFlags {
    pub rp_id_hash: [u8; 32],
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub sign_count: u32,
}

impl AuthenticatorFlags {
    /// Parses the head of authenticator data.
    pub fn parse(data: &[u8]) -> Result<Self, AuthenticatorDataError> {
        let head: &[u8; HEAD_LEN] = data
            .get(..HEAD_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or(AuthenticatorDataError::TooShort(data.len()))?;
        let mut rp_id_hash = [0u8; 32];
        rp_id_hash.copy_from_slice(&head[..32]);
        let flags = head[32];
        let parsed = Self {
            rp_id_hash,
            user_present: flags & FLAG_UP != 0,
            user_verified: flags & FLAG_UV != 0,
            backup_eligible: flags & FLAG_BE != 0,
            backup_state: flags & FLAG_BS != 0,
            sign_count: u32::from_be_bytes([head[33], head[34], head[35], head[36]]),
        };

        // WebAuthn Level 3 §6.1.3: BS may be set only if BE is set.
        if parsed.backup_state && !parsed.backup_eligible {
            return Err(AuthenticatorDataError::BackupStateWithoutEligibility);
        }
        Ok(parsed)
    }
}

/// What an assertion's signature counter says about the credential (WebAuthn Level 3 §7.2
/// step 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterCheck {
    /// Both counters are zero: the authenticator does not count (synced passkeys send 0).
    NotCounting,
    /// The received counter is greater than the stored one.
    Advanced,
    /// The received counter is not greater than the stored one although one of them is
    /// non-zero: a signal that the credential may have been cloned.
    PossibleClone,
}

/// Compares a stored and a received signature counter.
pub fn check_counter(stored: u32, received: u32) -> CounterCheck {
    if stored == 0 && received == 0 {
        CounterCheck::NotCounting
    } else if received > stored {
        CounterCheck::Advanced
    } else {
        CounterCheck::PossibleClone
    }
}

/// What devbound does with a [`CounterCheck::PossibleClone`] signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterPolicy {
    /// Reject the sign-in and flag the passkey. The default.
    #[default]
    Reject,
    /// Accept the sign-in, flag the passkey and give the session `software` assurance only.
    Record,
}

impl CounterPolicy {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reject" => Some(Self::Reject),
            "record" => Some(Self::Record),
            _ => None,
        }
    }
}
