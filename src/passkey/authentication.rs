//! Passkey authentication (WebAuthn Level 3 §7.2): sign-in with a discoverable credential and
//! proofs of possession for a signed-in session.

use rand::{CryptoRng, RngCore};
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AuthenticationState, Mediation, PublicKeyCredential, RequestChallengeResponse,
    UserVerificationPolicy,
};

use super::PasskeyError;
use super::authenticator_data::{AuthenticatorFlags, CounterCheck, CounterPolicy, check_counter};
use super::client_data::{self, Expected};
use super::registration::Started;
use super::relying_party::RelyingParty;
use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::crypto::secret::constant_time_eq;
use crate::store::{Assurance, CeremonyPurpose, CeremonyRecord, PasskeyRecord};

/// A verified assertion: the passkey with its counter, flags and last use updated.
#[derive(Debug)]
pub struct Asserted {
    pub passkey: PasskeyRecord,
    pub counter: CounterCheck,
    /// The credential was registered as device-bound and now reports backup eligibility.
    pub backup_eligibility_gained: bool,
    /// The assurance this proof gives a session.
    pub assurance: Assurance,
}

impl RelyingParty {
    /// Starts an authentication ceremony. An empty `allowed` list asks for a discoverable
    /// credential; `conditional` asks the browser to offer passkeys in the user name field's
    /// autofill (WebAuthn Level 3 §5.1.4, mediation `conditional`).
    pub fn start_authentication(
        &self,
        purpose: CeremonyPurpose,
        allowed: &[PasskeyRecord],
        conditional: bool,
        now: UnixTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Started<RequestChallengeResponse>, PasskeyError> {
        let credentials = allowed
            .iter()
            .map(|passkey| passkey.credential.clone())
            .collect();
        // A credential registered as device-bound that turns backup-eligible is accepted, and
        // loses `passkey` assurance (see `finish_authentication`).
        let builder = self
            .core
            .new_challenge_authenticate_builder(
                credentials,
                Some(UserVerificationPolicy::Required),
            )?
            .allow_backup_eligible_upgrade(true);
        let (mut options, state) = self.core.generate_challenge_authenticate(builder)?;
        if conditional {
            options.mediation = Some(Mediation::Conditional);
        }

        let challenge = base64url::encode(options.public_key.challenge.as_slice());
        let state = serde_json::to_value(&state)
            .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
        Ok(Started {
            options,
            ceremony: self.ceremony(purpose, challenge, state, now, rng),
        })
    }

    /// Verifies an assertion by `passkey`, which the caller found by the response's credential
    /// id. `ceremony` has been consumed from the store.
    pub fn finish_authentication(
        &self,
        ceremony: &CeremonyRecord,
        response: &PublicKeyCredential,
        passkey: &PasskeyRecord,
        now: UnixTime,
    ) -> Result<Asserted, PasskeyError> {
        if ceremony.expires_at <= now {
            return Err(PasskeyError::UnknownCeremony);
        }
        client_data::check(
            response.response.client_data_json.as_slice(),
            &Expected {
                type_: client_data::TYPE_GET,
                challenge: &ceremony.challenge,
                origin: &self.origin,
                embedding_origins: &[],
            },
        )?;
        let flags = AuthenticatorFlags::parse(response.response.authenticator_data.as_slice())?;
        check_user_handle(ceremony, response, passkey)?;

        let mut state: AuthenticationState = serde_json::from_value(ceremony.state.clone())
            .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
        state.set_allowed_credentials(vec![passkey.credential.clone()]);
        let counter = check_counter(passkey.credential.counter, flags.sign_count);
        match self.core.authenticate_credential(response, &state) {
            Ok(_) => {}
            // webauthn-rs-core reports a counter that did not advance only after the signature
            // and every other check have passed, so under `record` the assertion is valid.
            Err(WebauthnError::CredentialPossibleCompromise)
                if self.settings.counter == CounterPolicy::Record => {}
            Err(WebauthnError::CredentialPossibleCompromise) => {
                return Err(PasskeyError::PossibleClone {
                    stored: passkey.credential.counter,
                    received: flags.sign_count,
                });
            }
            Err(error) => return Err(error.into()),
        }
        Ok(updated(passkey, &flags, counter, now))
    }
}

/// WebAuthn Level 3 §7.2 step 6: a discoverable sign-in must carry a user handle, and any user
/// handle must be the credential owner's.
fn check_user_handle(
    ceremony: &CeremonyRecord,
    response: &PublicKeyCredential,
    passkey: &PasskeyRecord,
) -> Result<(), PasskeyError> {
    match (response.get_user_unique_id(), &ceremony.purpose) {
        (Some(handle), _) if constant_time_eq(handle, passkey.user_id.as_bytes()) => Ok(()),
        (Some(_), _) => Err(PasskeyError::UserHandleMismatch),
        (None, CeremonyPurpose::SignIn) => Err(PasskeyError::UserHandleMismatch),
        (None, _) => Ok(()),
    }
}

/// Applies the counter and backup-flag policies to the stored passkey.
fn updated(
    passkey: &PasskeyRecord,
    flags: &AuthenticatorFlags,
    counter: CounterCheck,
    now: UnixTime,
) -> Asserted {
    let mut passkey = passkey.clone();
    let gained = !passkey.credential.backup_eligible && flags.backup_eligible;
    if gained {
        // Backup-flag policy: a device-bound credential that becomes backup-eligible (as
        // Apple's platform authenticator does when iCloud Keychain is turned on) keeps
        // working, but its key may now exist outside the attested authenticator, so it drops
        // to `software` assurance for good.
        passkey.credential.backup_eligible = true;
        passkey.assurance = Assurance::Software;
    }
    passkey.credential.backup_state = flags.backup_state;
    passkey.credential.counter = passkey.credential.counter.max(flags.sign_count);
    passkey.last_used_at = Some(now);

    let mut assurance = passkey.assurance;
    if counter == CounterCheck::PossibleClone {
        passkey.clone_warning_at = Some(now);
        assurance = Assurance::Software;
    }
    Asserted {
        passkey,
        counter,
        backup_eligibility_gained: gained,
        assurance,
    }
}
