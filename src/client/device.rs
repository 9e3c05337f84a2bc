//! The enrolled device: enrollment over HTTPS with a TPM, and the device's DBSC session, whose
//! every proof the TPM signs (cargo feature `tpm`).
//!
//! The state directory keeps `device.json`: the server, its certificate, the device and
//! session ids, the cached challenge, and the session key as TPM blobs. The private blob is
//! wrapped by the TPM's storage key, so nothing secret is written in the clear. The session
//! cookie is kept in memory only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::dbsc::{ClientError, DbscClient, RefreshOutcome};
use super::tpm::{self, TpmClientError, TpmSigner};
use crate::crypto::base64url;
use crate::dbsc::headers;
use crate::device::wire;
use crate::http::routes;

/// The state file in the state directory.
pub const STATE_FILE: &str = "device.json";

/// A failed device command.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Tpm(#[from] TpmClientError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("server refused enrollment: {0}")]
    Refused(String),
    #[error("state directory {0}: {1}")]
    State(PathBuf, String),
    #[error("the server ended this device's session (revoked or expired); enroll again")]
    Ended,
}

/// The contents of `device.json`. None of it is secret, because the private key blob is usable
/// only inside the TPM that wrapped it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceState {
    pub server: String,
    /// PEM certificate(s) the server's TLS certificate must chain to.
    pub server_ca_pem: String,
    pub device_id: String,
    pub assurance: String,
    pub session_id: String,
    /// The challenge the server sent ahead for the next refresh.
    pub challenge: Option<String>,
    /// TPM2B_PUBLIC of the session key, base64url.
    pub key_public: String,
    /// TPM2B_PRIVATE of the session key, wrapped by the TPM's storage key, base64url.
    pub key_private: String,
}

impl DeviceState {
    pub fn load(dir: &Path) -> Result<Self, DeviceError> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|error| DeviceError::State(path.clone(), error.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|error| DeviceError::State(path, error.to_string()))
    }

    /// Writes the state atomically (a temporary file renamed over the old one), mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), DeviceError> {
        let state_error =
            |error: &dyn std::fmt::Display| DeviceError::State(dir.to_owned(), error.to_string());
        std::fs::create_dir_all(dir).map_err(|error| state_error(&error))?;
        let json = serde_json::to_vec_pretty(self).map_err(|error| state_error(&error))?;
        let temporary = dir.join(format!("{STATE_FILE}.tmp"));
        crate::tls::write_private(&temporary, &json).map_err(|error| state_error(&error))?;
        std::fs::rename(&temporary, dir.join(STATE_FILE)).map_err(|error| state_error(&error))
    }
}

/// Enrolls this device's TPM with the server for the user who created `code`, registers the
/// device's DBSC session with the certified key, and saves the state in `state_dir`.
pub async fn enroll(
    server: &str,
    server_ca_pem: &str,
    tcti: &str,
    code: &str,
    state_dir: &Path,
) -> Result<DeviceState, DeviceError> {
    let http = super::https_client(server_ca_pem.as_bytes())?;
    let server = server.trim_end_matches('/').to_owned();
    let mut context = tpm::open(tcti)?;
    let attestation = tpm::attest(&mut context)?;

    let start = wire::StartRequest {
        code: code.to_owned(),
        ek_certificate: attestation.ek_certificate.as_deref().map(base64url::encode),
        ek_public: base64url::encode(&attestation.ek_public),
        ak_public: base64url::encode(&attestation.ak_public),
    };
    let started: Result<(wire::StartResponse, _), DeviceError> = post_json(
        &http,
        &format!("{server}{}", routes::API_ENROLL_START),
        &start,
    )
    .await;
    let started = match started {
        Ok((started, _)) => started,
        Err(error) => {
            attestation.flush(&mut context);
            return Err(error);
        }
    };
    let (Ok(blob), Ok(secret), Ok(nonce)) = (
        base64url::decode(&started.credential_blob),
        base64url::decode(&started.encrypted_secret),
        base64url::decode(&started.certify_nonce),
    ) else {
        attestation.flush(&mut context);
        return Err(ClientError::Protocol("enrollment challenge is not base64url".into()).into());
    };
    let activated = match tpm::activate_credential(&mut context, &attestation, &blob, &secret) {
        Ok(activated) => activated,
        Err(error) => {
            attestation.flush(&mut context);
            return Err(error.into());
        }
    };
    let (certified, key) = tpm::create_certified_key(&mut context, attestation, &nonce)?;
    let signer = TpmSigner::new(context, key, &certified.public)?;

    let finish = wire::FinishRequest {
        challenge_id: started.challenge_id,
        activated_secret: base64url::encode(&activated),
        key_public: base64url::encode(&certified.public),
        certify_info: base64url::encode(&certified.certify_info),
        signature: base64url::encode(&certified.signature),
    };
    let (finished, offer): (wire::FinishResponse, _) = match post_json(
        &http,
        &format!("{server}{}", routes::API_ENROLL_FINISH),
        &finish,
    )
    .await
    {
        Ok(finished) => finished,
        Err(error) => {
            signer.close();
            return Err(error);
        }
    };
    let Some(offer) = offer else {
        signer.close();
        return Err(ClientError::Protocol("enrollment offered no registration".into()).into());
    };

    let mut client = DbscClient::new(http, &server, signer);
    let registered = client.register(&offer).await;
    let (session_id, challenge) = (client.session_id.clone(), client.challenge.clone());
    close(client);
    let instructions = registered?;
    let state = DeviceState {
        server,
        server_ca_pem: server_ca_pem.to_owned(),
        device_id: finished.device_id,
        assurance: finished.assurance,
        session_id: session_id.unwrap_or(instructions.session_identifier),
        challenge,
        key_public: base64url::encode(&certified.public),
        key_private: base64url::encode(&certified.private),
    };
    state.save(state_dir)?;
    Ok(state)
}

/// A device session loaded from the state directory, with its key loaded in the TPM.
#[derive(Debug)]
pub struct DeviceSession {
    pub state: DeviceState,
    client: DbscClient<TpmSigner>,
}

/// The figures of a run of refreshes.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRun {
    pub refreshes: u32,
    pub requests: u32,
    pub elapsed: Duration,
}

impl DeviceSession {
    /// Loads the state and the session key.
    pub fn open(state_dir: &Path, tcti: &str) -> Result<Self, DeviceError> {
        let state = DeviceState::load(state_dir)?;
        let public = decode_state(state_dir, &state.key_public)?;
        let private = decode_state(state_dir, &state.key_private)?;
        let mut context = tpm::open(tcti)?;
        let key = tpm::load_session_key(&mut context, &public, &private)?;
        let signer = TpmSigner::new(context, key, &public)?;
        let http = super::https_client(state.server_ca_pem.as_bytes())?;
        let mut client = DbscClient::new(http, &state.server, signer);
        client.session_id = Some(state.session_id.clone());
        client.challenge = state.challenge.clone();
        Ok(Self { state, client })
    }

    /// Refreshes once: a TPM-signed proof of the cached or a fresh challenge.
    pub async fn refresh(&mut self) -> Result<u32, DeviceError> {
        match self.client.refresh().await? {
            RefreshOutcome::Renewed { requests } => Ok(requests),
            RefreshOutcome::Terminated => Err(DeviceError::Ended),
        }
    }

    /// Refreshes `count` times in a row and reports how long it took.
    pub async fn refresh_many(&mut self, count: u32) -> Result<RefreshRun, DeviceError> {
        let started = Instant::now();
        let mut requests = 0;
        for _ in 0..count {
            requests += self.refresh().await?;
        }
        Ok(RefreshRun {
            refreshes: count,
            requests,
            elapsed: started.elapsed(),
        })
    }

    /// GETs a path with the session's current cookie and returns the status and body.
    pub async fn get(&self, path: &str) -> Result<(StatusCode, String), DeviceError> {
        let response = self.client.get(path).await?;
        let status = response.status();
        Ok((status, response.text().await.map_err(ClientError::Http)?))
    }

    /// Seconds the last cookie lives, as the server set it.
    pub fn cookie_max_age(&self) -> Option<u64> {
        self.client.cookie_max_age
    }

    /// Saves the cached challenge, flushes the key and returns the state.
    pub fn close(self, state_dir: &Path) -> Result<DeviceState, DeviceError> {
        let mut state = self.state;
        state.challenge = self.client.challenge.clone();
        close(self.client);
        state.save(state_dir)?;
        Ok(state)
    }
}

/// Keeps the device's session alive: refreshes when two thirds of the cookie's lifetime have
/// passed, and after a failure that may be temporary (no connection, a 5xx) retries with
/// exponential backoff from 1 s up to 60 s. Returns when the server ends the session, or after
/// `max_refreshes` successful refreshes if given.
pub async fn keep_alive(
    state_dir: &Path,
    tcti: &str,
    max_refreshes: Option<u64>,
    mut on_refresh: impl FnMut(u64, Option<u64>),
) -> Result<u64, DeviceError> {
    const FIRST_RETRY: Duration = Duration::from_secs(1);
    const LAST_RETRY: Duration = Duration::from_secs(60);
    let mut session = DeviceSession::open(state_dir, tcti)?;
    let mut refreshed = 0u64;
    let mut retry = FIRST_RETRY;
    loop {
        match session.refresh().await {
            Ok(_) => {
                refreshed += 1;
                retry = FIRST_RETRY;
                on_refresh(refreshed, session.cookie_max_age());
                session.state.challenge = session.client.challenge.clone();
                session.state.save(state_dir)?;
                if max_refreshes.is_some_and(|max| refreshed >= max) {
                    session.close(state_dir)?;
                    return Ok(refreshed);
                }
                let lifetime = session.cookie_max_age().unwrap_or(600).max(1);
                tokio::time::sleep(Duration::from_millis(lifetime * 2000 / 3)).await;
            }
            Err(DeviceError::Ended) => {
                let _ = session.close(state_dir);
                return Err(DeviceError::Ended);
            }
            Err(error) if temporary(&error) => {
                tracing::warn!(%error, retry_in = ?retry, "refresh failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
            }
            Err(error) => {
                let _ = session.close(state_dir);
                return Err(error);
            }
        }
    }
}

/// Checks whether a refresh failure may pass: the server is unreachable or failed inside.
fn temporary(error: &DeviceError) -> bool {
    match error {
        DeviceError::Client(ClientError::Http(_)) => true,
        DeviceError::Client(ClientError::Status { status, .. }) => status.is_server_error(),
        _ => false,
    }
}

fn close(client: DbscClient<TpmSigner>) {
    client.into_signer().close();
}

fn decode_state(dir: &Path, value: &str) -> Result<Vec<u8>, DeviceError> {
    base64url::decode(value)
        .map_err(|_| DeviceError::State(dir.to_owned(), "key blob is not base64url".into()))
}

/// POSTs JSON and decodes the JSON answer, with the registration offer if the response has one.
async fn post_json<Q: Serialize, R: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    body: &Q,
) -> Result<(R, Option<headers::RegistrationOffer>), DeviceError> {
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(ClientError::Http)?;
    let status = response.status();
    let offer = response
        .headers()
        .get(headers::REGISTRATION)
        .and_then(|value| headers::parse_registration(value.as_bytes()).ok())
        .and_then(|mut offers| (!offers.is_empty()).then(|| offers.remove(0)));
    let text = response.text().await.map_err(ClientError::Http)?;
    if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        return Err(DeviceError::Refused(text));
    }
    if !status.is_success() {
        return Err(ClientError::Status { status, body: text }.into());
    }
    let decoded = serde_json::from_str(&text)
        .map_err(|error| ClientError::Protocol(format!("enrollment response: {error}")))?;
    Ok((decoded, offer))
}
