//! Starting and stopping the HTTPS service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsConfig;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{AppState, router};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::Secret;
use crate::passkey::{RelyingParty, RelyingPartyError};
use crate::store::{SledStore, Store, StoreError};
use crate::tls::{self, TlsError, TlsFiles};
use crate::tpm::{EnrollmentPolicy, TrustStore};

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const SERVER_FILE: &str = "server.json";

/// How long shutdown waits for requests in flight.
const GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How often expired registration challenges are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Sessions are swept every this many challenge sweeps (hourly): a sweep reads every session,
/// and an expired session is already refused when it is read.
const SESSION_SWEEP_EVERY: u32 = 60;
/// How long an ended session stays listed before it is deleted, in seconds.
const ENDED_SESSION_RETENTION: u64 = 7 * 24 * 3600;

/// A failure to start the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot load TLS certificate: {0}")]
    TlsConfig(std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("passkeys: {0}")]
    Passkeys(#[from] RelyingPartyError),
}

/// The address of a running service, written to the data directory for the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub url: String,
    pub cert: PathBuf,
    /// The origin browsers use (`--public-url`), for links made while the service is stopped.
    /// Files written before this field existed lack it.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// A started service.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub tls: TlsFiles,
    pub info: ServerInfo,
    pub state: AppState,
    store: SledStore,
    handle: Handle,
    task: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
}

/// Opens the store, prepares TLS and starts serving HTTPS in the background.
pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> Result<RunningServer, ServeError> {
    create_private_dir(&config.data_dir)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let store = SledStore::open_with_cache(&config.data_dir, config.cache_bytes)?;
    tracing::info!(
        dir = %config.data_dir.display(),
        cache_mb = config.cache_bytes / (1024 * 1024),
        "opened the database"
    );
    let admin_token = load_or_create_admin_token(&config.data_dir)?;
    // The certificate exists before the port accepts connections.
    let tls = tls::load_or_create(
        config.tls.as_ref(),
        &config.data_dir,
        &certificate_hosts(&config),
    )?;
    let rustls_config = RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(ServeError::TlsConfig)?;
    // The token signing keys exist before the port accepts connections too: creating the first
    // one takes a key generation and a write.
    let keys = crate::oauth::KeyRing::default();
    keys.load_or_create(&store, clock.now())
        .map_err(|error| ServeError::Store(StoreError::Database(error.to_string())))?;
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|error| ServeError::Bind(config.listen, error))?;
    let addr = listener
        .local_addr()
        .map_err(|error| ServeError::Bind(config.listen, error))?;
    if !config.public_url_set {
        config.policy.origin = format!("https://localhost:{}", addr.port());
    }

    let info = write_server_info(&config.data_dir, addr, &tls, &config.policy.origin)?;

    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let passkeys = RelyingParty::new(config.passkeys.clone(), &config.policy.origin)?;
    let mut state = AppState::new(shared, config.policy.clone(), clock, admin_token, passkeys)
        .with_enrollment(enrollment_policy(&config))
        .with_software_fallback(config.tpm_software_fallback);
    state.oauth = Arc::new(super::OAuthState {
        keys,
        replay: crate::oauth::replay::ReplayCache::new(state.clock.now()),
        settings: state.oauth.settings.clone(),
    });
    let handle = Handle::new();
    listener
        .set_nonblocking(true)
        .map_err(|error| ServeError::Bind(addr, error))?;
    // Without TCP_NODELAY, a response written in two parts waits for the client's delayed ACK
    // of the first, 40 ms or more on Linux.
    let server = axum_server::from_tcp_rustls(listener, rustls_config)
        .map(|acceptor| acceptor.acceptor(NoDelayAcceptor))
        .handle(handle.clone())
        .serve(router(state.clone()).into_make_service_with_connect_info::<SocketAddr>());

    Ok(RunningServer {
        addr,
        tls,
        info,
        sweeper: tokio::spawn(sweep(state.clone())),
        state,
        store,
        handle,
        task: tokio::spawn(server),
    })
}

impl RunningServer {
    /// Returns the origin browsers and clients use.
    pub fn url(&self) -> &str {
        &self.state.policy.origin
    }

    pub fn store(&self) -> &SledStore {
        &self.store
    }

    /// Stops accepting connections, lets requests in flight finish, and flushes the store.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        self.handle.graceful_shutdown(Some(GRACE_PERIOD));
        self.sweeper.abort();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "server task ended abnormally");
        }
        self.store.close()
    }

    /// Waits until the server stops by itself (it does not, unless its listener fails).
    pub async fn wait_for(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = shutdown => {}
            result = &mut self.task => {
                if let Ok(Err(error)) = result {
                    tracing::error!(%error, "HTTPS listener failed");
                }
            }
        }
    }
}

/// Loads the TPM vendor roots. A missing or empty directory leaves the trust store empty, so
/// that the service still starts and refuses every TPM enrollment.
fn enrollment_policy(config: &Config) -> EnrollmentPolicy {
    let trust_store = match TrustStore::load_dir(&config.tpm_trust_dir) {
        Ok(store) => {
            tracing::info!(
                dir = %config.tpm_trust_dir.display(),
                certificates = store.len(),
                "loaded TPM vendor roots"
            );
            store
        }
        Err(error) => {
            tracing::warn!(%error, "no TPM vendor roots; every TPM enrollment will be refused");
            TrustStore::default()
        }
    };
    EnrollmentPolicy {
        trust_store,
        challenge_ttl: config.policy.challenge_ttl,
    }
}

/// Names the self-signed certificate must cover: the public host and the listen address.
fn certificate_hosts(config: &Config) -> Vec<String> {
    let addr = config.listen;
    let mut hosts = Vec::new();
    let authority = config.policy.origin.trim_start_matches("https://");
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    hosts.push(host.trim_matches(['[', ']']).to_owned());
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    hosts
}

fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::DirBuilderExt;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| ServeError::DataDir(dir.into(), error))
}

fn load_or_create_admin_token(dir: &Path) -> Result<Secret, ServeError> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            return Ok(Secret::from_string(token));
        }
    }
    let token = Secret::generate(&mut rand::thread_rng(), 32);
    tls::write_private(&path, token.expose().as_bytes())?;
    Ok(token)
}

fn write_server_info(
    dir: &Path,
    addr: SocketAddr,
    tls: &TlsFiles,
    public_url: &str,
) -> Result<ServerInfo, ServeError> {
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let info = ServerInfo {
        url: format!("https://{host}:{}", addr.port()),
        cert: std::path::absolute(&tls.cert).unwrap_or_else(|_| tls.cert.clone()),
        public_url: Some(public_url.to_owned()),
    };
    let path = dir.join(SERVER_FILE);
    let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
    std::fs::write(&path, json).map_err(|error| ServeError::DataDir(path, error))?;
    Ok(info)
}

/// Deletes expired device grants and, when `hourly`, expired access tokens. A token never
/// outlives the token it was exchanged from, so deleting expired ones never drops a live
/// token's ancestor.
fn sweep_oauth(store: &dyn Store, now: u64, hourly: bool) -> Result<(), StoreError> {
    let grants = store.purge_device_grants(now)?;
    let tokens = if hourly { store.purge_tokens(now)? } else { 0 };
    if grants + tokens > 0 {
        tracing::debug!(grants, tokens, "deleted expired OAuth records");
    }
    Ok(())
}

/// Deletes expired registration challenges every minute and ended sessions every hour.
async fn sweep(state: AppState) {
    let start = tokio::time::Instant::now() + SWEEP_INTERVAL;
    let mut interval = tokio::time::interval_at(start, SWEEP_INTERVAL);
    for round in 1u32.. {
        interval.tick().await;
        let now = state.clock.now();
        let store = state.store.clone();
        let sweep_sessions = round % SESSION_SWEEP_EVERY == 0;
        let swept = tokio::task::spawn_blocking(move || {
            let challenges = store.purge_challenges(now)?
                + store.purge_enrollments(now)?
                + store.purge_ceremonies(now)?;
            sweep_oauth(store.as_ref(), now, sweep_sessions)?;
            let sessions = if sweep_sessions {
                store.purge_sessions(now, now.saturating_sub(ENDED_SESSION_RETENTION))?
            } else {
                0
            };
            Ok::<_, StoreError>((challenges, sessions))
        })
        .await;
        match swept {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((challenges, sessions))) => {
                tracing::info!(
                    challenges,
                    sessions,
                    "deleted expired challenges and sessions"
                );
            }
            Ok(Err(error)) => tracing::error!(%error, "sweeping expired records failed"),
            Err(error) => tracing::error!(%error, "sweep task failed"),
        }
    }
}
