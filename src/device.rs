//! Enrolled devices: one-time enrollment codes, device records built from verified TPM
//! evidence, the binding of a device's sessions to its certified key, and revocation.
//!
//! A device enrolls on behalf of a signed-in user. The user creates a code, and the device
//! presents it once with its TPM evidence ([`crate::tpm::start_enrollment`]). A finished
//! enrollment ([`crate::tpm::finish_enrollment`]) yields a device record and a pending DBSC
//! session whose registration must use the certified key. The session then has the device's
//! assurance.

use rand::{CryptoRng, RngCore};

use crate::clock::UnixTime;
use crate::crypto::secret::sha256;
use crate::crypto::{Jwk, Secret};
use crate::dbsc::{DbscError, Policy, SignIn, begin_sign_in, end_session, headers::HeaderError};
use crate::store::{
    Assurance, DeviceRecord, EnrollmentCode, PendingEnrollment, Revocation, SessionRecord,
    SessionState, Store, StoreError, Update,
};
use crate::tpm::TpmEnrollment;

/// Random bytes in an enrollment code and in a device id.
pub const CODE_BYTES: usize = 16;
/// Lifetime of an enrollment code: long enough to type it on the device, short enough that a
/// forgotten one is soon useless.
pub const CODE_TTL: u64 = 10 * 60;
/// Maximum length of a device name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A reason a device request is refused before any TPM evidence is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device name must be 1 to {MAX_NAME_CHARS} printable characters")]
    InvalidName,
}

/// A new enrollment code: the value to show the user once, and the record to store.
#[derive(Debug)]
pub struct NewCode {
    pub code: Secret,
    pub record: EnrollmentCode,
}

/// Creates a one-time code with which one device may enroll on behalf of `user_id`.
pub fn new_enrollment_code(
    user_id: &str,
    device_name: &str,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<NewCode, DeviceError> {
    let name = device_name.trim();
    let printable = name.chars().all(|c| !c.is_control());
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !printable {
        return Err(DeviceError::InvalidName);
    }
    let code = Secret::generate(rng, CODE_BYTES);
    let record = EnrollmentCode {
        code_sha256: code_sha256(code.expose()),
        user_id: user_id.to_owned(),
        device_name: name.to_owned(),
        created_at: now,
        expires_at: now + CODE_TTL,
    };
    Ok(NewCode { code, record })
}

/// The store key of a code: its SHA-256, so that the code itself is never stored.
pub fn code_sha256(code: &str) -> [u8; 32] {
    sha256(code.as_bytes())
}

/// Builds the record of a device whose enrollment finished with verified TPM evidence.
pub fn enrolled_device(
    pending: &PendingEnrollment,
    enrollment: TpmEnrollment,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> DeviceRecord {
    let mut device = software_device(pending, enrollment.session_key.clone(), now, rng);
    device.assurance = enrollment.assurance();
    device.ek_certificate_sha256 = Some(enrollment.evidence.ek_certificate_sha256);
    device.ak_name = enrollment.evidence.ak_name;
    device
}

/// Builds the record of a device that failed the `tpm` checks and that policy lets enroll at
/// `software`: it has proved only that it holds `session_key`, at its DBSC registration.
pub fn software_device(
    pending: &PendingEnrollment,
    session_key: Jwk,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> DeviceRecord {
    DeviceRecord {
        id: Secret::generate(rng, CODE_BYTES).expose().to_owned(),
        owner_id: pending.user_id.clone(),
        name: pending.device_name.clone(),
        assurance: Assurance::Software,
        ek_certificate_sha256: None,
        ak_name: Vec::new(),
        session_key,
        created_at: now,
        revoked: None,
    }
}

/// Starts a pending DBSC session for a device, offered with a registration challenge like a
/// browser sign-in. Only the device's certified key can register it.
pub fn begin_device_session(
    policy: &Policy,
    device: &DeviceRecord,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<SignIn, HeaderError> {
    let mut sign_in = begin_sign_in(policy, &device.owner_id, now, rng)?;
    sign_in.session.device_id = Some(device.id.clone());
    Ok(sign_in)
}

/// Binds a registered session to its device: the key the registration proof was signed with
/// must be the key the device's TPM certified, and the session then carries the device's
/// assurance. A session with no device is returned unchanged.
pub fn bind_to_device(
    session: SessionRecord,
    device: Option<&DeviceRecord>,
) -> Result<SessionRecord, DbscError> {
    let Some(device_id) = &session.device_id else {
        return Ok(session);
    };
    let device = device
        .filter(|device| device.id == *device_id)
        .ok_or(DbscError::DeviceRevoked)?;
    if device.is_revoked() {
        return Err(DbscError::DeviceRevoked);
    }
    let key = session.key.as_ref().ok_or(DbscError::NotBound)?;
    if key.jwk != device.session_key {
        return Err(DbscError::DeviceKeyMismatch);
    }
    let mut bound = session;
    bound.assurance = device.assurance;
    Ok(bound)
}

/// Marks a device revoked by `by` (`owner` or `operator`).
pub fn revoke(device: &DeviceRecord, by: &str, now: UnixTime) -> DeviceRecord {
    let mut revoked = device.clone();
    revoked.revoked = Some(Revocation {
        at: now,
        by: by.to_owned(),
    });
    revoked
}

/// How often a revocation re-reads a record that another request changed first.
const MAX_UPDATE_ATTEMPTS: usize = 5;

/// A revoked device and the sessions its revocation ended.
#[derive(Debug)]
pub struct RevokedDevice {
    pub device: DeviceRecord,
    pub ended_sessions: Vec<String>,
}

/// Marks the device `id` revoked and revokes its live sessions, so that each ends at its next
/// refresh with `continue: false` and its cookie stops working. Returns `None` if there is no
/// such device. The caller makes the writes durable.
pub fn revoke_stored(
    store: &dyn Store,
    id: &str,
    by: &str,
    now: UnixTime,
) -> Result<Option<RevokedDevice>, StoreError> {
    let Some(device) = revoke_record(store, id, by, now)? else {
        return Ok(None);
    };
    let mut ended_sessions = Vec::new();
    for session in store.list_sessions(Some(&device.owner_id))? {
        if session.device_id.as_deref() == Some(device.id.as_str()) && session.is_live(now) {
            end_device_session(store, &session.id, by, now)?;
            ended_sessions.push(session.id);
        }
    }
    Ok(Some(RevokedDevice {
        device,
        ended_sessions,
    }))
}

fn revoke_record(
    store: &dyn Store,
    id: &str,
    by: &str,
    now: UnixTime,
) -> Result<Option<DeviceRecord>, StoreError> {
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let Some(current) = store.find_device(id)? else {
            return Ok(None);
        };
        if current.record.is_revoked() {
            return Ok(Some(current.record));
        }
        let next = revoke(&current.record, by, now);
        if store.update_device(&current, &next)? == Update::Applied {
            return Ok(Some(next));
        }
    }
    Err(StoreError::Database(format!(
        "device {id} kept changing while it was being revoked"
    )))
}

fn end_device_session(
    store: &dyn Store,
    id: &str,
    by: &str,
    now: UnixTime,
) -> Result<(), StoreError> {
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let Some(current) = store.find_session(id)? else {
            return Ok(());
        };
        if !current.record.is_live(now) {
            return Ok(());
        }
        let state = SessionState::Revoked {
            at: now,
            by: format!("device-revoked:{by}"),
        };
        let ended = end_session(&current.record, state);
        if store.update_session(&current, &ended)? == Update::Applied {
            return Ok(());
        }
    }
    Err(StoreError::Database(format!(
        "session {id} kept changing while it was being ended"
    )))
}

/// Checks that a session's assurance is at least `required`; a route that demands `tpm` calls
/// this for the request's session.
pub fn meets(session: &SessionRecord, required: Assurance) -> bool {
    session.is_bound() && session.assurance >= required
}

/// The JSON bodies of the enrollment endpoints. Binary TPM structures travel as base64url.
pub mod wire {
    use serde::{Deserialize, Serialize};

    /// `POST /api/devices/enroll/start`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct StartRequest {
        /// The one-time code the owner created.
        pub code: String,
        /// The EK certificate as read from NV, or absent if the TPM has none.
        pub ek_certificate: Option<String>,
        /// The EK's TPM2B_PUBLIC.
        pub ek_public: String,
        /// The AK's TPM2B_PUBLIC.
        pub ak_public: String,
    }

    /// The answer to [`StartRequest`]: MakeCredential's output and the certify nonce.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct StartResponse {
        pub challenge_id: String,
        /// TPM2B_ID_OBJECT buffer for TPM2_ActivateCredential.
        pub credential_blob: String,
        /// TPM2B_ENCRYPTED_SECRET buffer for TPM2_ActivateCredential.
        pub encrypted_secret: String,
        /// The qualifyingData for TPM2_Certify.
        pub certify_nonce: String,
    }

    /// `POST /api/devices/enroll/finish`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FinishRequest {
        pub challenge_id: String,
        /// The secret TPM2_ActivateCredential returned.
        pub activated_secret: String,
        /// The session key's TPM2B_PUBLIC.
        pub key_public: String,
        /// TPMS_ATTEST from TPM2_Certify.
        pub certify_info: String,
        /// TPMT_SIGNATURE from TPM2_Certify.
        pub signature: String,
    }

    /// The answer to [`FinishRequest`]. The response also carries a
    /// `Secure-Session-Registration` header for the device's session.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FinishResponse {
        pub device_id: String,
        pub assurance: String,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::crypto::Algorithm;
    use crate::store::BoundKey;

    fn jwk(x: &str) -> Jwk {
        Jwk::Ec {
            crv: "P-256".into(),
            x: x.into(),
            y: "y".into(),
        }
    }

    fn device() -> DeviceRecord {
        DeviceRecord {
            id: "d1".into(),
            owner_id: "alice".into(),
            name: "laptop".into(),
            assurance: Assurance::Tpm,
            ek_certificate_sha256: Some([1; 32]),
            ak_name: vec![0, 11],
            session_key: jwk("certified"),
            created_at: 0,
            revoked: None,
        }
    }

    fn registered(device_id: Option<&str>, key: &str) -> SessionRecord {
        SessionRecord {
            id: "s1".into(),
            user_id: "alice".into(),
            state: SessionState::Bound,
            created_at: 0,
            expires_at: 100,
            authorization_digest: None,
            key: Some(BoundKey {
                alg: Algorithm::Es256,
                jwk: jwk(key),
            }),
            assurance: Assurance::Software,
            challenge: None,
            credential_digest: None,
            credential_expires_at: 0,
            previous_credential_digest: None,
            previous_credential_expires_at: 0,
            last_proof_at: None,
            refresh_count: 0,
            passkey_id: None,
            passkey_proof_at: None,
            device_id: device_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_device_session_inherits_the_device_assurance() {
        let bound = bind_to_device(registered(Some("d1"), "certified"), Some(&device())).unwrap();
        assert_eq!(bound.assurance, Assurance::Tpm);
        assert!(meets(&bound, Assurance::Tpm));
    }

    #[test]
    fn a_device_session_registered_with_another_key_is_refused() {
        let result = bind_to_device(registered(Some("d1"), "swapped"), Some(&device()));
        assert_eq!(result, Err(DbscError::DeviceKeyMismatch));
    }

    #[test]
    fn a_revoked_or_missing_device_cannot_bind_a_session() {
        let revoked = revoke(&device(), "owner", 5);
        let session = registered(Some("d1"), "certified");
        assert_eq!(
            bind_to_device(session.clone(), Some(&revoked)),
            Err(DbscError::DeviceRevoked)
        );
        assert_eq!(bind_to_device(session, None), Err(DbscError::DeviceRevoked));
    }

    #[test]
    fn a_browser_session_stays_software() {
        let bound = bind_to_device(registered(None, "any"), None).unwrap();
        assert_eq!(bound.assurance, Assurance::Software);
        assert!(!meets(&bound, Assurance::Tpm));
    }

    #[test]
    fn codes_are_random_stored_as_digests_and_named() {
        let mut rng = StdRng::seed_from_u64(1);
        let new = new_enrollment_code("alice", " laptop ", 10, &mut rng).unwrap();
        assert_eq!(new.record.code_sha256, code_sha256(new.code.expose()));
        assert_eq!(new.record.device_name, "laptop");
        assert_eq!(new.record.expires_at, 10 + CODE_TTL);
        for name in ["", "a\nb", &"x".repeat(MAX_NAME_CHARS + 1)] {
            assert_eq!(
                new_enrollment_code("alice", name, 10, &mut rng).err(),
                Some(DeviceError::InvalidName)
            );
        }
    }
}
