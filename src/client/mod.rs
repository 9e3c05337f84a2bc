//! Clients of devbound: a software DBSC client, and the operator's admin client.
//!
//! The DBSC client keeps its session key in memory. It drives the same endpoints a browser
//! does, and its proof builders are public so that tests can send proofs a browser never would.

mod agent;
mod dbsc;
#[cfg(feature = "tpm")]
pub mod device;
mod key;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use agent::{AgentClient, DeviceAuthorization, ExchangeParams, Poll, TokenResponse};
pub use dbsc::{ClientError, DbscClient, RefreshOutcome};
pub use key::{ProofSigner, SessionKey, sign_jws};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Builds an HTTPS client that trusts `root_pem` (such as devbound's self-signed certificate)
/// and does not follow redirects, so that callers see each response.
pub fn https_client(root_pem: &[u8]) -> Result<reqwest::Client, ClientError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem) {
        let cert =
            cert.map_err(|error| ClientError::Setup(format!("invalid certificate PEM: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| ClientError::Setup(format!("unusable certificate: {error}")))?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| ClientError::Setup(error.to_string()))
}
