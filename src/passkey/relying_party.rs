//! devbound as a WebAuthn Relying Party: its identity, the operator's policies and the
//! webauthn-rs-core instance that verifies ceremonies.

use std::time::Duration;

use rand::{CryptoRng, RngCore};
use url::Url;
use webauthn_rs_core::WebauthnCore;

use super::authenticator_data::CounterPolicy;
use super::trust::{AttestationMode, TrustAnchors};
use crate::clock::UnixTime;
use crate::crypto::Secret;
use crate::store::{CeremonyPurpose, CeremonyRecord};

/// Length of ceremony ids, in random bytes.
const CEREMONY_ID_BYTES: usize = 16;

/// The operator's passkey settings.
#[derive(Debug, Clone)]
pub struct PasskeySettings {
    /// RP ID (WebAuthn §5.1.2): the origin's host or a registrable suffix of it. `None` uses the
    /// origin's host.
    pub rp_id: Option<String>,
    pub attestation: AttestationMode,
    pub trust: TrustAnchors,
    pub counter: CounterPolicy,
    /// How long a passkey proof keeps a passkey-bound session at its passkey's assurance, in
    /// seconds.
    pub freshness: u64,
    /// Maximum age of the passkey proof that sensitive actions demand by default, in seconds.
    pub step_up_max_age: u64,
    /// Lifetime of a registration or authentication ceremony, in seconds.
    pub ceremony_ttl: u64,
    /// Whether the password form is offered and accepted.
    pub password_sign_in: bool,
    /// Passkey sign-ins that may start per minute, across all clients.
    pub sign_in_rate: u32,
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Self {
            rp_id: None,
            attestation: AttestationMode::Any,
            trust: TrustAnchors::default(),
            counter: CounterPolicy::Reject,
            freshness: 12 * 3600,
            step_up_max_age: 5 * 60,
            ceremony_ttl: 5 * 60,
            password_sign_in: true,
            // 100 a second. A flood then stores about 30,000 ceremonies (five minutes of starts),
            // plus the expired ones that wait up to a minute for the sweep.
            sign_in_rate: 6000,
        }
    }
}

/// A Relying Party that cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum RelyingPartyError {
    #[error("origin {0:?} is not a valid URL")]
    Origin(String),
    #[error("RP ID {rp_id:?} is neither the host of {origin} nor a suffix of it")]
    RpId { rp_id: String, origin: String },
    #[error(
        "passkey attestation `trusted` needs CA certificates (--passkey-trusted-ca-dir) or a metadata BLOB (--passkey-metadata-blob)"
    )]
    NoTrustedRoots,
}

/// devbound's Relying Party.
#[derive(Debug)]
pub struct RelyingParty {
    pub(super) core: WebauthnCore,
    pub origin: String,
    pub rp_id: String,
    pub settings: PasskeySettings,
}

impl RelyingParty {
    /// Builds the Relying Party for `origin`, such as `https://login.example.com`.
    pub fn new(settings: PasskeySettings, origin: &str) -> Result<Self, RelyingPartyError> {
        let url = Url::parse(origin).map_err(|_| RelyingPartyError::Origin(origin.to_owned()))?;
        let host = url
            .host_str()
            .ok_or_else(|| RelyingPartyError::Origin(origin.to_owned()))?
            .to_owned();
        let rp_id = settings.rp_id.clone().unwrap_or_else(|| host.clone());

        // WebAuthn §5.1.2: the RP ID must be the origin's effective domain or a registrable
        // suffix of it.
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            return Err(RelyingPartyError::RpId {
                rp_id,
                origin: origin.to_owned(),
            });
        }
        if settings.attestation == AttestationMode::Trusted && settings.trust.is_empty() {
            return Err(RelyingPartyError::NoTrustedRoots);
        }
        let timeout = Duration::from_secs(settings.ceremony_ttl);
        let core = WebauthnCore::new_unsafe_experts_only(
            "devbound",
            &rp_id,
            vec![url],
            timeout,
            Some(false),
            Some(false),
        );
        Ok(Self {
            core,
            origin: origin.trim_end_matches('/').to_owned(),
            rp_id,
            settings,
        })
    }

    /// Builds a ceremony record for library state and the challenge sent with it.
    pub(super) fn ceremony(
        &self,
        purpose: CeremonyPurpose,
        challenge: String,
        state: serde_json::Value,
        now: UnixTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> CeremonyRecord {
        CeremonyRecord {
            id: Secret::generate(rng, CEREMONY_ID_BYTES).expose().to_owned(),
            purpose,
            expires_at: now + self.settings.ceremony_ttl,
            challenge,
            state,
        }
    }
}
