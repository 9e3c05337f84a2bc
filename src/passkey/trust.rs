//! The operator's attestation trust list: root CA certificates from a directory, an optional
//! AAGUID allow-list, and roots from a FIDO Metadata Service (MDS3) BLOB read from a local file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openssl::x509::X509;
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
    /// and the roots of the models listed in `metadata_blob`.
    pub fn load(
        ca_dir: Option<&Path>,
        aaguids: &[String],
        metadata_blob: Option<&Path>,
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
            anchors.add_metadata(path, &allowed)?;
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

    fn add_metadata(&mut self, path: &Path, allowed: &[Uuid]) -> Result<(), TrustError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| TrustError::Read(path.to_path_buf(), error))?;
        let entries = parse_metadata_blob(text.trim())
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
        let bytes = std::fs::read(&path).map_err(|error| TrustError::Read(path.clone(), error))?;
        let parsed = if bytes.starts_with(b"-----") {
            X509::stack_from_pem(&bytes)
                .ok()
                .filter(|list| !list.is_empty())
        } else {
            X509::from_der(&bytes)
                .ok()
                .map(|certificate| vec![certificate])
        };
        certificates.extend(parsed.ok_or(TrustError::Certificate(path))?);
    }
    Ok(certificates)
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

/// Reads the FIDO2 entries of an MDS3 BLOB (a JWS in compact form): models with an AAGUID
/// that no status report revokes.
///
/// NOTE: the BLOB's JWS signature is not verified. The operator is responsible for the file:
/// download it from the FIDO Alliance over HTTPS and check its signature before use.
pub fn parse_metadata_blob(jws: &str) -> Result<Vec<MetadataEntry>, String> {
    let mut parts = jws.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS of three parts".into());
    };
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
