//! The operator's attestation trust list: root CA certificates from a directory, an optional
//! AAGUID allow-list, and roots from a FIDO Metadata Service (MDS3) BLOB read from a local file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509StoreContext};
use serde::Deserialize;
use uuid::Uuid;
use webauthn_attestation_ca::{AttestationCaList, AttestationCaListBuilder};

use crate::crypto::base64url;

/// MDS3 status reports that mean an authenticator model must no longer be trusted
/// (FIDO Metadata Service v3.0, §3.1.4 AuthenticatorStatus).
const UNTRUSTED_STATUSES: &[&str] = &[
    "REVOKED",
    "USER_VERIFICATION_BYPASS",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
];

/// Whether registration requires a trusted attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttestationMode {
    /// Accept any authenticator. Only those whose attestation chains to the trust list get
    /// `passkey` assurance; the others get `software`.
    #[default]
    Any,
    /// Reject registration unless the attestation chains to the trust list.
    Trusted,
}

impl AttestationMode {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "any" => Some(Self::Any),
            "trusted" => Some(Self::Trusted),
            _ => None,
        }
    }
}

/// A trust list that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a PEM or DER X.509 certificate")]
    Certificate(PathBuf),
    #[error("AAGUID {0:?} is not a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8")]
    Aaguid(String),
    #[error("metadata BLOB {0}: {1}")]
    Metadata(PathBuf, String),
    #[error(
        "--passkey-metadata-blob needs --passkey-metadata-root, the root certificate its signature must chain to"
    )]
    MetadataRootMissing,
    #[error(
        "passkey attestation `trusted` needs CA certificates (--passkey-trusted-ca-dir) or a metadata BLOB (--passkey-metadata-blob)"
    )]
    NoRoots,
}

/// The loaded trust list.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    /// Roots in webauthn-rs-core's form; a root limited to AAGUIDs trusts only those models.
    pub cas: AttestationCaList,
    /// Authenticator model names from the metadata BLOB, by AAGUID.
    pub names: BTreeMap<Uuid, String>,
}

impl TrustAnchors {
    /// Loads every certificate in `ca_dir`, limited to `aaguids` when that list is not empty,
    /// and the roots of the models listed in `metadata_blob`, whose signature must chain to
    /// the root certificate in `metadata_root`.
    pub fn load(
        ca_dir: Option<&Path>,
        aaguids: &[String],
        metadata_blob: Option<&Path>,
        metadata_root: Option<&Path>,
    ) -> Result<Self, TrustError> {
        let allowed = aaguids
            .iter()
            .map(|text| Uuid::parse_str(text.trim()).map_err(|_| TrustError::Aaguid(text.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut anchors = Self::default();
        if let Some(dir) = ca_dir {
            for certificate in read_certificates(dir)? {
                anchors.add_root(&certificate, &allowed)?;
            }
        }
        if let Some(path) = metadata_blob {
            let root_path = metadata_root.ok_or(TrustError::MetadataRootMissing)?;
            let root = read_certificates_file(root_path)?
                .into_iter()
                .next()
                .ok_or_else(|| TrustError::Certificate(root_path.to_path_buf()))?;
            anchors.add_metadata(path, &allowed, &root)?;
        }
        Ok(anchors)
    }

    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// Adds a root: trusted for every model, or only for `allowed` AAGUIDs.
    pub fn add_root(&mut self, root: &X509, allowed: &[Uuid]) -> Result<(), TrustError> {
        let invalid = || TrustError::Certificate(PathBuf::from("<root>"));
        if allowed.is_empty() {
            let pem = root.to_pem().map_err(|_| invalid())?;
            let list = AttestationCaList::try_from(pem.as_slice()).map_err(|_| invalid())?;
            self.cas.union(&list);
            return Ok(());
        }
        let mut builder = AttestationCaListBuilder::new();
        for aaguid in allowed {
            let name = self.names.get(aaguid).cloned().unwrap_or_default();
            builder
                .insert_device_x509(root.clone(), *aaguid, name, BTreeMap::new())
                .map_err(|_| invalid())?;
        }
        self.cas.union(&builder.build());
        Ok(())
    }

    fn add_metadata(
        &mut self,
        path: &Path,
        allowed: &[Uuid],
        root: &X509,
    ) -> Result<(), TrustError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| TrustError::Read(path.to_path_buf(), error))?;
        let entries = parse_metadata_blob(text.trim(), root)
            .map_err(|reason| TrustError::Metadata(path.to_path_buf(), reason))?;
        for entry in entries {
            if !allowed.is_empty() && !allowed.contains(&entry.aaguid) {
                continue;
            }
            self.names.insert(entry.aaguid, entry.description.clone());
            let mut builder = AttestationCaListBuilder::new();
            for root in &entry.roots {
                let root = X509::from_der(root)
                    .map_err(|_| TrustError::Metadata(path.to_path_buf(), "invalid root".into()))?;
                builder
                    .insert_device_x509(
                        root,
                        entry.aaguid,
                        entry.description.clone(),
                        BTreeMap::new(),
                    )
                    .map_err(|error| TrustError::Metadata(path.to_path_buf(), error.to_string()))?;
            }
            self.cas.union(&builder.build());
        }
        Ok(())
    }
}

/// Reads the `.pem`, `.crt` and `.der` files of a directory, in name order.
fn read_certificates(dir: &Path) -> Result<Vec<X509>, TrustError> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| TrustError::Read(dir.to_path_buf(), error))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "pem" | "crt" | "der"))
        })
        .collect();
    paths.sort();

    let mut certificates = Vec::new();
    for path in paths {
        certificates.extend(read_certificates_file(&path)?);
    }
    Ok(certificates)
}

/// Reads the PEM certificates, or the one DER certificate, of a file.
fn read_certificates_file(path: &Path) -> Result<Vec<X509>, TrustError> {
    let bytes = std::fs::read(path).map_err(|error| TrustError::Read(path.to_path_buf(), error))?;
    let parsed = if bytes.starts_with(b"-----") {
        X509::stack_from_pem(&bytes)
            .ok()
            .filter(|list| !list.is_empty())
    } else {
        X509::from_der(&bytes)
            .ok()
            .map(|certificate| vec![certificate])
    };
    parsed.ok_or_else(|| TrustError::Certificate(path.to_path_buf()))
}

/// One authenticator model from a metadata BLOB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataEntry {
    pub aaguid: Uuid,
    pub description: String,
    /// DER attestation root certificates.
    pub roots: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct BlobPayload {
    entries: Vec<BlobEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobEntry {
    aaguid: Option<String>,
    metadata_statement: Option<Statement>,
    #[serde(default)]
    status_reports: Vec<StatusReport>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    description: String,
    #[serde(default)]
    attestation_root_certificates: Vec<String>,
}

#[derive(Deserialize)]
struct StatusReport {
    status: String,
}

/// Verifies an MDS3 BLOB (a JWS in compact form) against `root` and reads its FIDO2 entries:
/// models with an AAGUID that no status report revokes.
pub fn parse_metadata_blob(jws: &str, root: &X509) -> Result<Vec<MetadataEntry>, String> {
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS of three parts".into());
    };
    verify_blob_signature(header, payload, signature, root)?;
    let payload = base64url::decode(payload).map_err(|_| "payload is not base64url")?;
    let payload: BlobPayload =
        serde_json::from_slice(&payload).map_err(|error| format!("payload: {error}"))?;

    let mut entries = Vec::new();
    for entry in payload.entries {
        let (Some(aaguid), Some(statement)) = (entry.aaguid, entry.metadata_statement) else {
            continue;
        };
        let revoked = entry
            .status_reports
            .iter()
            .any(|report| UNTRUSTED_STATUSES.contains(&report.status.as_str()));
        let Ok(aaguid) = Uuid::parse_str(&aaguid) else {
            continue;
        };
        if revoked {
            continue;
        }
        let roots = statement
            .attestation_root_certificates
            .iter()
            .filter_map(|text| standard_base64(text))
            .collect();
        entries.push(MetadataEntry {
            aaguid,
            description: statement.description,
            roots,
        });
    }
    Ok(entries)
}

/// Metadata statements carry certificates in standard base64 with padding.
fn standard_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[derive(Deserialize)]
struct BlobHeader {
    alg: String,
    x5c: Vec<String>,
}

/// FIDO Metadata Service v3.0 §3.3.4: the BLOB is signed by the first certificate of the
/// header's `x5c`, and that certificate chains to the FIDO root.
fn verify_blob_signature(
    header: &str,
    payload: &str,
    signature: &str,
    root: &X509,
) -> Result<(), String> {
    let parsed: BlobHeader = base64url::decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the JWS header is not base64url JSON with alg and x5c")?;
    let chain = parsed
        .x5c
        .iter()
        .map(|text| standard_base64(text).and_then(|der| X509::from_der(&der).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or("x5c contains an invalid certificate")?;
    let (leaf, intermediates) = chain.split_first().ok_or("x5c is empty")?;
    check_chain(leaf, intermediates, root)?;

    let algorithm: &'static dyn VerificationAlgorithm = match parsed.alg.as_str() {
        "RS256" => &RSA_PKCS1_2048_8192_SHA256,
        "ES256" => &ECDSA_P256_SHA256_FIXED,
        other => {
            return Err(format!(
                "alg {other:?} is not supported; use RS256 or ES256"
            ));
        }
    };
    let signature = base64url::decode(signature).map_err(|_| "signature is not base64url")?;
    let leaf_der = leaf.to_der().map_err(|error| error.to_string())?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&leaf_der)
        .map_err(|_| "the signing certificate is not valid DER")?;
    let key = certificate.public_key().subject_public_key.data.as_ref();
    // RFC 7515 §5.2: the signing input is the encoded header, a dot and the encoded payload.
    let signing_input = format!("{header}.{payload}");
    UnparsedPublicKey::new(algorithm, key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "the BLOB's signature does not verify".to_owned())
}

/// Verifies that `leaf` chains to `root` through `intermediates`, at the current system time.
fn check_chain(leaf: &X509, intermediates: &[X509], root: &X509) -> Result<(), String> {
    let failed = |error: openssl::error::ErrorStack| error.to_string();
    let mut store = X509StoreBuilder::new().map_err(failed)?;
    store.add_cert(root.clone()).map_err(failed)?;
    let store = store.build();
    let mut chain = Stack::new().map_err(failed)?;
    for certificate in intermediates {
        chain.push(certificate.clone()).map_err(failed)?;
    }
    let mut context = X509StoreContext::new().map_err(failed)?;
    let verified = context
        .init(&store, leaf, &chain, |context| context.verify_cert())
        .map_err(failed)?;
    if verified {
        Ok(())
    } else {
        Err("the BLOB's signing certificate does not chain to --passkey-metadata-root".into())
    }
}
