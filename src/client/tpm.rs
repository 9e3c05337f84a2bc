//! The device side of TPM enrollment and TPM-signed DBSC proofs, with tss-esapi 7.7 (cargo
//! feature `tpm`).
//!
//! Enrollment (see `crate::tpm` for the server's checks): read the RSA-2048 EK certificate
//! from NV index 0x01c00002, create the EK from the default template and an ECDSA P-256 AK in
//! the endorsement hierarchy, recover the server's secret with TPM2_ActivateCredential, create
//! a P-256 session key under an ECC storage key in the owner hierarchy, and certify it with the
//! AK over the server's nonce. The session key is kept as its TPM2B_PRIVATE blob, which only
//! this TPM can load, and its TPM2B_PUBLIC.
//!
//! swtpm has 3 transient object slots and no resource manager, so every object is flushed as
//! soon as it is no longer needed; at most 3 are loaded at once.

use std::str::FromStr;
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tss_esapi::abstraction::{DefaultKey, ak, ek};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, PublicAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, EccPoint, EccScheme, EncryptedSecret, HashScheme, HashcheckTicket, IdObject,
    KeyDerivationFunctionScheme, Private, Public, PublicBuffer, PublicBuilder,
    PublicEccParametersBuilder, Signature, SignatureScheme, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, TctiNameConf};

use super::key::ProofSigner;
use crate::crypto::Algorithm;
use crate::tpm::TpmPublic;

/// A failed TPM operation on the device.
#[derive(Debug, thiserror::Error)]
pub enum TpmClientError {
    #[error("TCTI {0:?} is not valid: {1}")]
    Tcti(String, String),
    #[error("TPM command {0} failed: {1}")]
    Command(&'static str, tss_esapi::Error),
    #[error("{0}")]
    Invalid(String),
}

fn command(name: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmClientError {
    move |error| TpmClientError::Command(name, error)
}

/// Opens a TPM through a TCTI string such as `swtpm:host=127.0.0.1,port=2321` or
/// `device:/dev/tpmrm0`.
pub fn open(tcti: &str) -> Result<Context, TpmClientError> {
    let conf = TctiNameConf::from_str(tcti)
        .map_err(|error| TpmClientError::Tcti(tcti.to_owned(), error.to_string()))?;
    Context::new(conf).map_err(command("open"))
}

/// The evidence the device sends to start enrollment, and the loaded EK and AK that finish it.
#[derive(Debug)]
pub struct Attestation {
    pub ek_certificate: Option<Vec<u8>>,
    /// TPM2B_PUBLIC of the EK.
    pub ek_public: Vec<u8>,
    /// TPM2B_PUBLIC of the AK.
    pub ak_public: Vec<u8>,
    ek: KeyHandle,
    ak: KeyHandle,
}

/// A session key created in the TPM and certified by the AK.
#[derive(Debug)]
pub struct CertifiedKey {
    /// TPM2B_PUBLIC of the key.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE: the key wrapped by the storage key; only this TPM can load it.
    pub private: Vec<u8>,
    /// TPMS_ATTEST from TPM2_Certify.
    pub certify_info: Vec<u8>,
    /// TPMT_SIGNATURE from TPM2_Certify.
    pub signature: Vec<u8>,
}

/// Reads the EK certificate, creates the EK and an AK, and leaves both loaded.
pub fn attest(context: &mut Context) -> Result<Attestation, TpmClientError> {
    // A TPM without an EK certificate in NV still enrolls nowhere: the server refuses it.
    let ek_certificate = ek::retrieve_ek_pubcert(context, rsa_2048()).ok();
    let ek = ek::create_ek_object(context, AsymmetricAlgorithm::Rsa, DefaultKey)
        .map_err(command("CreatePrimary(EK)"))?;
    let ek_public = public_bytes(context, ek)?;
    let created = ak::create_ak(
        context,
        ek,
        HashingAlgorithm::Sha256,
        SignatureSchemeAlgorithm::EcDsa,
        None,
        DefaultKey,
    )
    .map_err(command("Create(AK)"))?;
    let ak = ak::load_ak(context, ek, None, created.out_private, created.out_public)
        .map_err(command("Load(AK)"))?;
    let ak_public = public_bytes(context, ak)?;
    Ok(Attestation {
        ek_certificate,
        ek_public,
        ak_public,
        ek,
        ak,
    })
}

impl Attestation {
    /// Flushes the EK and the AK, when enrollment stops before they are used.
    pub fn flush(self, context: &mut Context) {
        let _ = context.flush_context(self.ek.into());
        let _ = context.flush_context(self.ak.into());
    }
}

/// Recovers the server's secret with TPM2_ActivateCredential, then flushes the EK. The EK is
/// authorized by PolicySecret on the endorsement hierarchy (TCG EK Credential Profile).
pub fn activate_credential(
    context: &mut Context,
    attestation: &Attestation,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, TpmClientError> {
    let id_object = IdObject::try_from(credential_blob.to_vec())
        .map_err(|_| TpmClientError::Invalid("credential blob is too long".into()))?;
    let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
        .map_err(|_| TpmClientError::Invalid("encrypted secret is too long".into()))?;

    let policy = context
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(command("StartAuthSession"))?
        .ok_or_else(|| TpmClientError::Invalid("TPM returned no session".into()))?;
    let (attributes, mask) = SessionAttributesBuilder::new().build();
    let result = context
        .tr_sess_set_attributes(policy, attributes, mask)
        .map_err(command("SessionAttributes"))
        .and_then(|()| {
            let policy_session = PolicySession::try_from(policy)
                .map_err(|_| TpmClientError::Invalid("not a policy session".into()))?;
            context
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.policy_secret(
                        policy_session,
                        tss_esapi::handles::AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(command("PolicySecret"))?;
            context
                .execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |ctx| {
                    ctx.activate_credential(attestation.ak, attestation.ek, id_object, secret)
                })
                .map_err(command("ActivateCredential"))
        });
    let _ = context.flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
        policy,
    )));
    let _ = context.flush_context(attestation.ek.into());
    Ok(result?.value().to_vec())
}

/// Creates a P-256 signing key that cannot leave this TPM, and certifies it with the AK over
/// `nonce`. Flushes the AK and the storage key; returns the key loaded.
pub fn create_certified_key(
    context: &mut Context,
    attestation: Attestation,
    nonce: &[u8],
) -> Result<(CertifiedKey, KeyHandle), TpmClientError> {
    let result = certify_new_key(context, attestation.ak, nonce);
    let _ = context.flush_context(attestation.ak.into());
    result
}

fn certify_new_key(
    context: &mut Context,
    ak: KeyHandle,
    nonce: &[u8],
) -> Result<(CertifiedKey, KeyHandle), TpmClientError> {
    let srk = storage_key(context)?;
    let created = context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create(srk, session_key_template()?, None, None, None, None)
        })
        .map_err(command("Create(session key)"));
    let loaded = created.and_then(|created| {
        let key = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(srk, created.out_private.clone(), created.out_public.clone())
            })
            .map_err(command("Load(session key)"))?;
        Ok((created, key))
    });
    let _ = context.flush_context(srk.into());
    let (created, key) = loaded?;

    let qualifying = Data::try_from(nonce.to_vec())
        .map_err(|_| TpmClientError::Invalid("certify nonce is too long".into()))?;
    let certified = context
        .execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(AuthSession::Password),
                None,
            ),
            |ctx| ctx.certify(key.into(), ak, qualifying, SignatureScheme::Null),
        )
        .map_err(command("Certify"));
    let (attest, signature) = match certified {
        Ok(certified) => certified,
        Err(error) => {
            let _ = context.flush_context(key.into());
            return Err(error);
        }
    };
    let marshalled = (|| {
        Ok::<_, tss_esapi::Error>(CertifiedKey {
            public: PublicBuffer::try_from(created.out_public)?.marshall()?,
            private: created.out_private.value().to_vec(),
            certify_info: attest.marshall()?,
            signature: signature.marshall()?,
        })
    })()
    .map_err(command("marshal"));
    match marshalled {
        Ok(certified) => Ok((certified, key)),
        Err(error) => {
            let _ = context.flush_context(key.into());
            Err(error)
        }
    }
}

/// Loads a session key from its blobs under the storage key, which is re-created from its
/// template (a primary key is derived from the hierarchy seed, so it is the same each time).
pub fn load_session_key(
    context: &mut Context,
    public: &[u8],
    private: &[u8],
) -> Result<KeyHandle, TpmClientError> {
    let public = PublicBuffer::unmarshall(public)
        .and_then(Public::try_from)
        .map_err(command("unmarshal public"))?;
    let private = Private::try_from(private.to_vec())
        .map_err(|_| TpmClientError::Invalid("private blob is too long".into()))?;
    let srk = storage_key(context)?;
    let loaded = context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.load(srk, private, public)
        })
        .map_err(command("Load(session key)"));
    let _ = context.flush_context(srk.into());
    loaded
}

/// A DBSC proof signer whose key lives in the TPM: each ES256 signature is made by TPM2_Sign
/// over the SHA-256 of the signing input.
#[derive(Debug)]
pub struct TpmSigner {
    context: Mutex<Context>,
    key: KeyHandle,
    jwk: Value,
}

impl TpmSigner {
    /// Wraps a loaded session key. `public` is its TPM2B_PUBLIC.
    pub fn new(context: Context, key: KeyHandle, public: &[u8]) -> Result<Self, TpmClientError> {
        let jwk = TpmPublic::from_tpm2b(public)
            .and_then(|public| public.p256_jwk())
            .map_err(|error| TpmClientError::Invalid(format!("session key: {error}")))?;
        let jwk = serde_json::to_value(jwk)
            .map_err(|error| TpmClientError::Invalid(error.to_string()))?;
        Ok(Self {
            context: Mutex::new(context),
            key,
            jwk,
        })
    }

    /// Flushes the key from the TPM.
    pub fn close(self) {
        if let Ok(mut context) = self.context.into_inner() {
            let _ = context.flush_context(self.key.into());
        }
    }
}

impl ProofSigner for TpmSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Es256
    }

    fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let digest = Digest::try_from(Sha256::digest(message).to_vec())
            .map_err(|error| error.to_string())?;
        // A key that is not restricted signs any digest; the ticket is the NULL ticket.
        let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(|error| error.to_string())?;
        let mut context = self
            .context
            .lock()
            .map_err(|_| "TPM context lock poisoned".to_owned())?;
        let signature = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(self.key, digest, SignatureScheme::Null, validation)
            })
            .map_err(|error| format!("TPM2_Sign failed: {error}"))?;
        let Signature::EcDsa(ecdsa) = signature else {
            return Err("TPM returned a signature that is not ECDSA".into());
        };
        // RFC 7518 §3.4: R and S, each as a 32-byte big-endian integer. The TPM returns them
        // without leading zero bytes, so about 1 signature in 256 needs padding.
        let mut jws = left_pad(ecdsa.signature_r().value())?;
        jws.extend(left_pad(ecdsa.signature_s().value())?);
        Ok(jws)
    }
}

fn left_pad(value: &[u8]) -> Result<Vec<u8>, String> {
    let value = {
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        &value[start..]
    };
    if value.len() > 32 {
        return Err("ECDSA component longer than 32 bytes".into());
    }
    let mut padded = vec![0u8; 32 - value.len()];
    padded.extend_from_slice(value);
    Ok(padded)
}

fn rsa_2048() -> tss_esapi::abstraction::AsymmetricAlgorithmSelection {
    tss_esapi::abstraction::AsymmetricAlgorithmSelection::Rsa(
        tss_esapi::interface_types::key_bits::RsaKeyBits::Rsa2048,
    )
}

fn public_bytes(context: &mut Context, key: KeyHandle) -> Result<Vec<u8>, TpmClientError> {
    let (public, _, _) = context.read_public(key).map_err(command("ReadPublic"))?;
    PublicBuffer::try_from(public)
        .and_then(|buffer| buffer.marshall())
        .map_err(command("marshal public"))
}

/// Creates the ECC P-256 storage key in the owner hierarchy. ECC primary creation is fast even
/// on hardware TPMs, where an RSA primary can take seconds.
fn storage_key(context: &mut Context) -> Result<KeyHandle, TpmClientError> {
    let template = storage_key_template().map_err(command("storage key template"))?;
    context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map(|created| created.key_handle)
        .map_err(command("CreatePrimary(storage key)"))
}

fn storage_key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
        .with_ecc_scheme(EccScheme::Null)
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_decryption_key(true)
        .with_restricted(true)
        .build()?;
    ecc_public(attributes, parameters)
}

/// The session key: created inside the TPM (sensitiveDataOrigin), unable to leave it or its
/// parent (fixedTPM, fixedParent), signing only, ECDSA with SHA-256 on P-256.
fn session_key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .build()?;
    ecc_public(attributes, parameters)
}

/// A template for an ECC object with name algorithm SHA-256; the TPM fills in the point.
fn ecc_public(
    attributes: tss_esapi::attributes::ObjectAttributes,
    parameters: tss_esapi::structures::PublicEccParameters,
) -> tss_esapi::Result<Public> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

#[cfg(test)]
mod tests {
    use super::left_pad;

    #[test]
    fn short_ecdsa_components_are_left_padded() {
        assert_eq!(left_pad(&[1, 2]).unwrap().len(), 32);
        assert_eq!(left_pad(&[1, 2]).unwrap()[30..], [1, 2]);
        assert_eq!(left_pad(&[0; 33]).unwrap(), vec![0; 32]);
        assert!(left_pad(&[1; 33]).is_err());
    }
}
