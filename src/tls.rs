//! The service's TLS certificate: configured, or self-signed in the data directory.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::secret::sha256;

pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";

/// A failure to load or create the certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(String),
    #[error("private key in {0} is not a PEM PKCS#8 key: {1}")]
    Key(PathBuf, String),
}

/// Certificate and key files, and the SHA-256 of the key's SubjectPublicKeyInfo in base64:
/// what Chromium's `--ignore-certificate-errors-spki-list` takes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub spki_sha256: String,
    pub self_signed: bool,
}

/// Returns the configured certificate, or the self-signed one in `data_dir`, creating it for
/// `hosts` (plus localhost and the loopback addresses) on first start.
pub fn load_or_create(
    configured: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
    hosts: &[String],
) -> Result<TlsFiles, TlsError> {
    if let Some((cert, key)) = configured {
        return Ok(TlsFiles {
            spki_sha256: spki_sha256(key)?,
            cert: cert.clone(),
            key: key.clone(),
            self_signed: false,
        });
    }

    let cert = data_dir.join(CERT_FILE);
    let key = data_dir.join(KEY_FILE);
    if !cert.exists() || !key.exists() {
        create_self_signed(&cert, &key, hosts)?;
    }
    Ok(TlsFiles {
        spki_sha256: spki_sha256(&key)?,
        cert,
        key,
        self_signed: true,
    })
}

fn create_self_signed(cert: &Path, key: &Path, hosts: &[String]) -> Result<(), TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|error| TlsError::Generate(error.to_string()))?;

    write_private(key, generated.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem()).map_err(|error| TlsError::Io(cert.into(), error))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| TlsError::Io(path.into(), error))?;
    file.write_all(contents)
        .map_err(|error| TlsError::Io(path.into(), error))
}

fn spki_sha256(key: &Path) -> Result<String, TlsError> {
    let pem = std::fs::read_to_string(key).map_err(|error| TlsError::Io(key.into(), error))?;
    let key_pair = rcgen::KeyPair::from_pem(&pem)
        .map_err(|error| TlsError::Key(key.into(), error.to_string()))?;
    Ok(STANDARD.encode(sha256(&key_pair.public_key_der())))
}
