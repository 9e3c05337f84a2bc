//! Passkey registration (WebAuthn Level 3 §7.1) and the attestation trust decision.

use std::collections::BTreeMap;

use openssl::x509::X509;
use rand::{CryptoRng, RngCore};
use serde_cbor_2::Value as Cbor;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use webauthn_rs_core::attestation::verify_attestation_ca_chain;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AttestationFormat, AttestationMetadata,
    CreationChallengeResponse, Credential, ParsedAttestation, ParsedAttestationData,
    RegisterPublicKeyCredential, RegistrationState, UserVerificationPolicy,
};

use super::client_data::{self, Expected};
use super::relying_party::RelyingParty;
use super::trust::AttestationMode;
use super::trust::TrustAnchors;
use super::{PasskeyError, aaguid, tpm_attestation};
use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::store::{
    Assurance, AttestationTrust, CeremonyPurpose, CeremonyRecord, PasskeyRecord, UserRecord,
};

/// A ceremony that has started: the options for the browser and the record to store.
#[derive(Debug)]
pub struct Started<T> {
    pub options: T,
    pub ceremony: CeremonyRecord,
}

/// The parts of an attestation object devbound reads itself.
struct AttestationParts {
    fmt: String,
    aaguid: Uuid,
    statement: Cbor,
    auth_data: Vec<u8>,
}

impl RelyingParty {
    /// Starts registering a passkey named `name` for `user`, excluding the ones it has.
    pub fn start_registration(
        &self,
        user: &UserRecord,
        name: &str,
        existing: &[PasskeyRecord],
        now: UnixTime,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Started<CreationChallengeResponse>, PasskeyError> {
        let exclude = existing
            .iter()
            .map(|passkey| passkey.credential.cred_id.clone())
            .collect();
        // Direct attestation, so that the AAGUID and the attestation chain reach devbound; a
        // discoverable credential, so that sign-in needs no user name.
        let builder = self
            .core
            .new_challenge_register_builder(user.id.as_bytes(), &user.name, &user.name)?
            .attestation(AttestationConveyancePreference::Direct)
            .user_verification_policy(UserVerificationPolicy::Required)
            .require_resident_key(true)
            .exclude_credentials(Some(exclude));
        let (options, state) = self.core.generate_challenge_register(builder)?;

        let challenge = base64url::encode(options.public_key.challenge.as_slice());
        let state = serde_json::to_value(&state)
            .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
        let purpose = CeremonyPurpose::Register {
            user_id: user.id.clone(),
            name: name.to_owned(),
        };
        Ok(Started {
            options,
            ceremony: self.ceremony(purpose, challenge, state, now, rng),
        })
    }

    /// Verifies the browser's response to a registration ceremony and returns the passkey to
    /// store. `ceremony` has been consumed from the store.
    pub fn finish_registration(
        &self,
        ceremony: &CeremonyRecord,
        response: &RegisterPublicKeyCredential,
        now: UnixTime,
    ) -> Result<PasskeyRecord, PasskeyError> {
        if ceremony.expires_at <= now {
            return Err(PasskeyError::UnknownCeremony);
        }
        let (CeremonyPurpose::Register { user_id, name }
        | CeremonyPurpose::Enroll { user_id, name, .. }) = &ceremony.purpose
        else {
            return Err(PasskeyError::WrongCeremony);
        };
        client_data::check(
            response.response.client_data_json.as_slice(),
            &Expected {
                type_: client_data::TYPE_CREATE,
                challenge: &ceremony.challenge,
                origin: &self.origin,
                embedding_origins: &[],
            },
        )?;
        let parts = read_attestation(response.response.attestation_object.as_slice())?;

        let state: RegistrationState = serde_json::from_value(ceremony.state.clone())
            .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
        let (credential, trust) = self.verify_with_policy(response, &state, &parts)?;
        Ok(self.passkey_record(user_id, name, &parts, credential, trust, now))
    }

    /// Verifies the response against the trust list, and under `any` also without it.
    fn verify_with_policy(
        &self,
        response: &RegisterPublicKeyCredential,
        state: &RegistrationState,
        parts: &AttestationParts,
    ) -> Result<(Credential, AttestationTrust), PasskeyError> {
        if parts.fmt == "tpm" {
            return self.verify_tpm_with_policy(response, state, parts);
        }
        let trust = &self.settings.trust;
        if !trust.is_empty() {
            match self
                .core
                .register_credential(response, state, Some(&trust.cas))
            {
                Ok(credential) => {
                    let root = trusted_root(&credential, trust);
                    return Ok((credential, AttestationTrust::Trusted { root }));
                }
                Err(error) if is_trust_failure(&error) => {
                    if self.settings.attestation == AttestationMode::Trusted {
                        return Err(PasskeyError::AuthenticatorNotApproved {
                            aaguid: parts.aaguid.to_string(),
                            reason: format!("{error:?}"),
                        });
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        let credential = self.core.register_credential(response, state, None)?;
        let trust = match credential.attestation.data {
            ParsedAttestationData::None => AttestationTrust::None,
            ParsedAttestationData::Self_ => AttestationTrust::SelfSigned,
            _ => AttestationTrust::Untrusted,
        };
        Ok((credential, trust))
    }

    /// Verifies a `tpm` statement with devbound's own verifier, then the rest of the ceremony
    /// with webauthn-rs-core on the same response carrying a `none` statement.
    fn verify_tpm_with_policy(
        &self,
        response: &RegisterPublicKeyCredential,
        state: &RegistrationState,
        parts: &AttestationParts,
    ) -> Result<(Credential, AttestationTrust), PasskeyError> {
        let credential_key = parts
            .auth_data
            .get(53..55)
            .map(|len| 55 + usize::from(u16::from_be_bytes([len[0], len[1]])))
            .and_then(|start| parts.auth_data.get(start..))
            .and_then(tpm_attestation::credential_key)
            .ok_or_else(|| PasskeyError::MalformedResponse("credential public key".into()))?;
        let client_data_hash: [u8; 32] =
            Sha256::digest(response.response.client_data_json.as_slice()).into();
        let verified = tpm_attestation::verify(
            &parts.statement,
            &parts.auth_data,
            &client_data_hash,
            &credential_key,
            parts.aaguid.as_bytes(),
        )?;

        let without_statement = with_none_statement(response, &parts.auth_data)?;
        let mut credential = self
            .core
            .register_credential(&without_statement, state, None)?;
        let chain = verified
            .chain
            .iter()
            .map(|der| X509::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| PasskeyError::MalformedResponse("x5c".into()))?;
        credential.attestation = ParsedAttestation {
            data: ParsedAttestationData::AttCa(chain),
            metadata: AttestationMetadata::Tpm {
                aaguid: parts.aaguid,
                firmware_version: verified.firmware_version,
            },
        };
        credential.attestation_format = AttestationFormat::Tpm;

        let trust = match trusted_ca(&credential, &self.settings.trust, &parts.aaguid) {
            Some(root) => AttestationTrust::Trusted { root },
            None if self.settings.attestation == AttestationMode::Trusted => {
                return Err(PasskeyError::AuthenticatorNotApproved {
                    aaguid: parts.aaguid.to_string(),
                    reason: "the AIK certificate does not chain to a trusted root".into(),
                });
            }
            None => AttestationTrust::Untrusted,
        };
        Ok((credential, trust))
    }

    fn passkey_record(
        &self,
        user_id: &str,
        name: &str,
        parts: &AttestationParts,
        credential: Credential,
        trust: AttestationTrust,
        now: UnixTime,
    ) -> PasskeyRecord {
        // `passkey` assurance needs a trusted attestation of a key that cannot leave its
        // authenticator: a backup-eligible (synced) key may live elsewhere too.
        let trusted = matches!(trust, AttestationTrust::Trusted { .. });
        let assurance = if trusted && !credential.backup_eligible {
            Assurance::Passkey
        } else {
            Assurance::Software
        };
        let authenticator = self
            .settings
            .trust
            .names
            .get(&parts.aaguid)
            .cloned()
            .filter(|name| !name.is_empty())
            .or_else(|| aaguid::known_name(&parts.aaguid).map(str::to_owned));
        PasskeyRecord {
            id: base64url::encode(credential.cred_id.as_slice()),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            aaguid: parts.aaguid.to_string(),
            authenticator,
            attestation_format: parts.fmt.clone(),
            trust,
            assurance,
            created_at: now,
            last_used_at: None,
            clone_warning_at: None,
            credential,
        }
    }
}

/// Errors that mean "verified, but not from a trusted authenticator".
fn is_trust_failure(error: &WebauthnError) -> bool {
    matches!(
        error,
        WebauthnError::AttestationNotVerifiable
            | WebauthnError::AttestationUntrustedAaguid
            | WebauthnError::AttestationFormatMissingAaguid
            | WebauthnError::AttestationChainNotTrusted(_)
            | WebauthnError::AttestationCertificateTrustStoreEmpty
    )
}

/// Names the trusted root that the credential's attestation chains to and that trusts its
/// AAGUID, if there is one.
fn trusted_ca(credential: &Credential, trust: &TrustAnchors, aaguid: &Uuid) -> Option<String> {
    if trust.is_empty() {
        return None;
    }
    let ca = verify_attestation_ca_chain(&credential.attestation.data, &trust.cas, false)
        .ok()
        .flatten()?;
    (ca.blanket_allow() || ca.aaguids().contains_key(aaguid)).then(|| subject_text(ca.ca()))
}

/// Replaces the attestation statement with `none`, keeping the authenticator data.
fn with_none_statement(
    response: &RegisterPublicKeyCredential,
    auth_data: &[u8],
) -> Result<RegisterPublicKeyCredential, PasskeyError> {
    let mut object = BTreeMap::new();
    object.insert(Cbor::Text("fmt".into()), Cbor::Text("none".into()));
    object.insert(Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new()));
    object.insert(
        Cbor::Text("authData".into()),
        Cbor::Bytes(auth_data.to_vec()),
    );
    let bytes = serde_cbor_2::to_vec(&Cbor::Map(object))
        .map_err(|error| PasskeyError::MalformedResponse(error.to_string()))?;
    let mut replaced = response.clone();
    replaced.response.attestation_object = bytes.into();
    Ok(replaced)
}

fn subject_text(certificate: &openssl::x509::X509Ref) -> String {
    certificate
        .subject_name()
        .entries()
        .map(|entry| String::from_utf8_lossy(entry.data().as_slice()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names the trusted root the credential's attestation chains to.
fn trusted_root(credential: &Credential, trust: &TrustAnchors) -> String {
    verify_attestation_ca_chain(&credential.attestation.data, &trust.cas, false)
        .ok()
        .flatten()
        .map(|ca| subject_text(ca.ca()))
        .unwrap_or_default()
}

/// Reads `fmt`, the AAGUID, `attStmt` and `authData` from an attestation object
/// (WebAuthn Level 3 §6.5: a CBOR map of `fmt`, `attStmt` and `authData`).
fn read_attestation(bytes: &[u8]) -> Result<AttestationParts, PasskeyError> {
    let malformed =
        |what: &str| PasskeyError::MalformedResponse(format!("attestationObject: {what}"));
    let value: Cbor = serde_cbor_2::from_slice(bytes).map_err(|_| malformed("not CBOR"))?;
    let Cbor::Map(map) = value else {
        return Err(malformed("not a map"));
    };
    let get = |key: &str| map.get(&Cbor::Text(key.to_owned()));
    let Some(Cbor::Text(fmt)) = get("fmt") else {
        return Err(malformed("fmt missing"));
    };
    let Some(Cbor::Bytes(auth_data)) = get("authData") else {
        return Err(malformed("authData missing"));
    };
    // authData: rpIdHash (32), flags (1), signCount (4), then the AAGUID (16) of the attested
    // credential data.
    let aaguid = auth_data
        .get(37..53)
        .and_then(|bytes| Uuid::from_slice(bytes).ok())
        .ok_or_else(|| malformed("no attested credential data"))?;
    let statement = get("attStmt").ok_or_else(|| malformed("attStmt missing"))?;
    Ok(AttestationParts {
        fmt: fmt.clone(),
        aaguid,
        statement: statement.clone(),
        auth_data: auth_data.clone(),
    })
}
