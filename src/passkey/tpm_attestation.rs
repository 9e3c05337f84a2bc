//! The `tpm` attestation statement format (WebAuthn Level 3 §8.3), verified by devbound.
//!
//! webauthn-rs-core 0.5.4 rejects every `tpm` statement: its `only_hash_from_type` returns an
//! error for every algorithm, and its TPM vendor table compares hex digits case-sensitively.
//! devbound therefore verifies this format itself and hands webauthn-rs-core the rest of the
//! ceremony (see `registration`).

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde::Deserialize;
use serde_cbor_2::Value as Cbor;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Version};

use super::tpm_san::{self, TpmSanError};

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
const TPM_ALG_RSA: u16 = 0x0001;
const TPM_ALG_SHA256: u16 = 0x000B;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_ECDSA: u16 = 0x0018;
const TPM_ALG_ECC: u16 = 0x0023;
const TPM_ECC_NIST_P256: u16 = 0x0003;
const COSE_ES256: i128 = -7;
const COSE_RS256: i128 = -257;
/// tcg-kp-AIKCertificate (TCG EK Credential Profile §2.2.1.5).
const OID_AIK_CERTIFICATE: &str = "2.23.133.8.3";
/// id-fido-gen-ce-aaguid.
const OID_FIDO_AAGUID: &str = "1.3.6.1.4.1.45724.1.1.4";

/// A `tpm` attestation statement that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmAttestationError {
    #[error("attStmt member `{0}` is missing or has the wrong type")]
    Member(&'static str),
    #[error("attStmt ver is not \"2.0\"")]
    Version,
    #[error("alg {0} is not supported; ES256 and RS256 are")]
    Algorithm(i128),
    #[error("pubArea is malformed: {0}")]
    PubArea(&'static str),
    #[error("pubArea does not contain the credential public key")]
    PubAreaMismatch,
    #[error("certInfo is malformed: {0}")]
    CertInfo(&'static str),
    #[error("certInfo.extraData is not the hash of authData and clientDataHash")]
    ExtraData,
    #[error("certInfo does not certify the pubArea's name")]
    Name,
    #[error("the AIK signature over certInfo does not verify")]
    Signature,
    #[error("AIK certificate: {0}")]
    Certificate(&'static str),
    #[error("AIK certificate: {0}")]
    DeviceAttributes(#[from] TpmSanError),
}

/// A verified `tpm` statement: the x5c chain (leaf first) and the firmware version.
#[derive(Debug, Clone)]
pub struct VerifiedTpm {
    pub chain: Vec<Vec<u8>>,
    pub firmware_version: u64,
}

/// The credential public key from the attested credential data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKey {
    P256 { x: Vec<u8>, y: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// Verifies a `tpm` attStmt (WebAuthn Level 3 §8.3.2) for `auth_data` and the client data hash.
pub fn verify(
    statement: &Cbor,
    auth_data: &[u8],
    client_data_hash: &[u8],
    credential_key: &CredentialKey,
    aaguid: &[u8; 16],
) -> Result<VerifiedTpm, TpmAttestationError> {
    let Cbor::Map(map) = statement else {
        return Err(TpmAttestationError::Member("attStmt"));
    };
    let member = |name: &'static str| {
        map.get(&Cbor::Text(name.into()))
            .ok_or(TpmAttestationError::Member(name))
    };
    let bytes = |name: &'static str| match member(name)? {
        Cbor::Bytes(bytes) => Ok(bytes.as_slice()),
        _ => Err(TpmAttestationError::Member(name)),
    };
    if member("ver")? != &Cbor::Text("2.0".into()) {
        return Err(TpmAttestationError::Version);
    }
    let Cbor::Integer(alg) = member("alg")? else {
        return Err(TpmAttestationError::Member("alg"));
    };
    let chain = match member("x5c")? {
        Cbor::Array(items) => items
            .iter()
            .map(|item| match item {
                Cbor::Bytes(der) => Ok(der.clone()),
                _ => Err(TpmAttestationError::Member("x5c")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(TpmAttestationError::Member("x5c")),
    };
    let aik = chain.first().ok_or(TpmAttestationError::Member("x5c"))?;

    let pub_area = bytes("pubArea")?;
    // §8.3.2: the key in pubArea's parameters and unique is the credential public key.
    if &parse_pub_area(pub_area)? != credential_key {
        return Err(TpmAttestationError::PubAreaMismatch);
    }
    let cert_info = bytes("certInfo")?;
    let firmware_version = check_cert_info(cert_info, pub_area, auth_data, client_data_hash)?;
    verify_signature(*alg, aik, cert_info, bytes("sig")?)?;
    check_aik_certificate(aik, aaguid)?;
    Ok(VerifiedTpm {
        chain,
        firmware_version,
    })
}

/// A big-endian reader over TPM structures.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }

    /// Reads a TPM2B: a u16 size and that many bytes.
    fn tpm2b(&mut self) -> Option<&'a [u8]> {
        let size = self.u16()?;
        self.take(usize::from(size))
    }

    /// Reads a scheme: an algorithm id, followed by a hash algorithm unless it is TPM_ALG_NULL.
    fn scheme(&mut self) -> Option<u16> {
        let alg = self.u16()?;
        if alg != TPM_ALG_NULL {
            self.u16()?;
        }
        Some(alg)
    }
}

/// Parses TPMT_PUBLIC (TPM 2.0 Part 2 §12.2.4). For ECC, `unique` is a TPMS_ECC_POINT: two
/// TPM2B values with no size in front of the pair.
fn parse_pub_area(bytes: &[u8]) -> Result<CredentialKey, TpmAttestationError> {
    let malformed = TpmAttestationError::PubArea;
    let mut reader = Reader(bytes);
    let type_ = reader.u16().ok_or(malformed("type"))?;
    if reader.u16() != Some(TPM_ALG_SHA256) {
        return Err(malformed("nameAlg is not SHA-256"));
    }
    reader.u32().ok_or(malformed("objectAttributes"))?;
    reader.tpm2b().ok_or(malformed("authPolicy"))?;
    if reader.u16() != Some(TPM_ALG_NULL) {
        return Err(malformed("symmetric is not TPM_ALG_NULL"));
    }
    let key = match type_ {
        TPM_ALG_ECC => {
            reader.scheme().ok_or(malformed("scheme"))?;
            if reader.u16() != Some(TPM_ECC_NIST_P256) {
                return Err(malformed("curveID is not NIST P-256"));
            }
            reader.scheme().ok_or(malformed("kdf"))?;
            let x = reader.tpm2b().ok_or(malformed("unique.x"))?.to_vec();
            let y = reader.tpm2b().ok_or(malformed("unique.y"))?.to_vec();
            CredentialKey::P256 { x, y }
        }
        TPM_ALG_RSA => {
            reader.scheme().ok_or(malformed("scheme"))?;
            reader.u16().ok_or(malformed("keyBits"))?;
            let exponent = reader.u32().ok_or(malformed("exponent"))?;
            // TPM 2.0 Part 2 §12.2.3.5: an exponent of 0 means 65537.
            let exponent = if exponent == 0 { 65_537 } else { exponent };
            let e = exponent
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            let n = reader.tpm2b().ok_or(malformed("unique"))?.to_vec();
            CredentialKey::Rsa { n, e }
        }
        _ => return Err(malformed("type is neither ECC nor RSA")),
    };
    if !reader.0.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(key)
}

/// Checks TPMS_ATTEST (TPM 2.0 Part 2 §10.12.8) and returns the firmware version.
fn check_cert_info(
    cert_info: &[u8],
    pub_area: &[u8],
    auth_data: &[u8],
    client_data_hash: &[u8],
) -> Result<u64, TpmAttestationError> {
    let malformed = TpmAttestationError::CertInfo;
    let mut reader = Reader(cert_info);
    if reader.u32() != Some(TPM_GENERATED_VALUE) {
        return Err(malformed("magic is not TPM_GENERATED_VALUE"));
    }
    if reader.u16() != Some(TPM_ST_ATTEST_CERTIFY) {
        return Err(malformed("type is not TPM_ST_ATTEST_CERTIFY"));
    }
    reader.tpm2b().ok_or(malformed("qualifiedSigner"))?;
    let extra_data = reader.tpm2b().ok_or(malformed("extraData"))?;
    reader.take(17).ok_or(malformed("clockInfo"))?;
    let firmware_version = reader.u64().ok_or(malformed("firmwareVersion"))?;
    let name = reader.tpm2b().ok_or(malformed("attested.name"))?;
    reader.tpm2b().ok_or(malformed("attested.qualifiedName"))?;

    // §8.3.2: extraData is the hash of attToBeSigned with the hash algorithm of `alg`; both
    // supported algorithms use SHA-256.
    let expected: [u8; 32] = Sha256::new()
        .chain_update(auth_data)
        .chain_update(client_data_hash)
        .finalize()
        .into();
    if extra_data != expected {
        return Err(TpmAttestationError::ExtraData);
    }
    // §8.3.2: attested.name is nameAlg followed by the hash of pubArea.
    let expected_name = [&TPM_ALG_SHA256.to_be_bytes()[..], &Sha256::digest(pub_area)].concat();
    if name != expected_name {
        return Err(TpmAttestationError::Name);
    }
    Ok(firmware_version)
}

/// Verifies `sig` over certInfo with the AIK certificate's key. The signature is the bare
/// signature (DER for ECDSA, as Windows sends it) or a TPMT_SIGNATURE.
fn verify_signature(
    alg: i128,
    aik: &[u8],
    message: &[u8],
    sig: &[u8],
) -> Result<(), TpmAttestationError> {
    let (_, certificate) =
        X509Certificate::from_der(aik).map_err(|_| TpmAttestationError::Certificate("not DER"))?;
    let key = certificate.public_key().subject_public_key.data.as_ref();
    let mut reader = Reader(sig);
    let ok = match (alg, reader.u16()) {
        (COSE_ES256, Some(TPM_ALG_ECDSA)) => {
            reader.u16();
            let r = reader.tpm2b().ok_or(TpmAttestationError::Signature)?;
            let s = reader.tpm2b().ok_or(TpmAttestationError::Signature)?;
            let fixed = [left_pad(r), left_pad(s)].concat();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
                .verify(message, &fixed)
                .is_ok()
        }
        (COSE_ES256, _) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
            .verify(message, sig)
            .is_ok(),
        (COSE_RS256, Some(TPM_ALG_RSASSA)) => {
            reader.u16();
            let bare = reader.tpm2b().ok_or(TpmAttestationError::Signature)?;
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
                .verify(message, bare)
                .is_ok()
        }
        (COSE_RS256, _) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
            .verify(message, sig)
            .is_ok(),
        (other, _) => return Err(TpmAttestationError::Algorithm(other)),
    };
    ok.then_some(()).ok_or(TpmAttestationError::Signature)
}

fn left_pad(scalar: &[u8]) -> Vec<u8> {
    let mut padded = vec![0u8; 32usize.saturating_sub(scalar.len())];
    padded.extend_from_slice(scalar);
    padded
}

/// WebAuthn Level 3 §8.3.1: the AIK certificate requirements.
fn check_aik_certificate(der: &[u8], aaguid: &[u8; 16]) -> Result<(), TpmAttestationError> {
    let invalid = TpmAttestationError::Certificate;
    let (_, certificate) = X509Certificate::from_der(der).map_err(|_| invalid("not DER"))?;
    if certificate.version() != X509Version::V3 {
        return Err(invalid("version is not 3"));
    }
    if certificate.subject().iter().count() != 0 {
        return Err(invalid("subject is not empty"));
    }
    tpm_san::check_aik_certificate(der)?;

    let mut aik_purpose = false;
    let mut not_ca = false;
    for extension in certificate.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(_) if !extension.critical => {
                return Err(invalid("subject alternative name is not critical"));
            }
            ParsedExtension::ExtendedKeyUsage(usage) => {
                aik_purpose = usage
                    .other
                    .iter()
                    .any(|oid| oid.to_id_string() == OID_AIK_CERTIFICATE);
            }
            ParsedExtension::BasicConstraints(constraints) => not_ca = !constraints.ca,
            _ if extension.oid.to_id_string() == OID_FIDO_AAGUID => {
                check_aaguid_extension(extension.value, extension.critical, aaguid)?;
            }
            _ => {}
        }
    }
    if !aik_purpose {
        return Err(invalid("extended key usage lacks tcg-kp-AIKCertificate"));
    }
    if !not_ca {
        return Err(invalid("basic constraints are missing or allow a CA"));
    }
    Ok(())
}

/// §8.3.1: id-fido-gen-ce-aaguid, if present, is not critical and equals the AAGUID.
fn check_aaguid_extension(
    value: &[u8],
    critical: bool,
    aaguid: &[u8; 16],
) -> Result<(), TpmAttestationError> {
    if critical {
        return Err(TpmAttestationError::Certificate(
            "AAGUID extension is critical",
        ));
    }
    // The extension value is an OCTET STRING of the 16 AAGUID bytes.
    let matches = value.len() == 18 && value[0] == 0x04 && value[1] == 16 && &value[2..] == aaguid;
    matches
        .then_some(())
        .ok_or(TpmAttestationError::Certificate(
            "AAGUID extension does not match authData",
        ))
}

/// Reads the credential public key (a COSE_Key, RFC 9052 §7) that follows the credential id.
pub fn credential_key(cose: &[u8]) -> Option<CredentialKey> {
    let mut deserializer = serde_cbor_2::Deserializer::from_slice(cose);
    let Cbor::Map(map) = Cbor::deserialize(&mut deserializer).ok()? else {
        return None;
    };
    let get = |label: i128| map.get(&Cbor::Integer(label));
    let bytes = |label: i128| match get(label) {
        Some(Cbor::Bytes(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    match get(1)? {
        // kty 2 (EC2) with crv 1 (P-256).
        Cbor::Integer(2) if get(-1) == Some(&Cbor::Integer(1)) => Some(CredentialKey::P256 {
            x: bytes(-2)?,
            y: bytes(-3)?,
        }),
        // kty 3 (RSA).
        Cbor::Integer(3) => Some(CredentialKey::Rsa {
            n: bytes(-1)?,
            e: bytes(-2)?,
        }),
        _ => None,
    }
}
