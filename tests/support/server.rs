//! An in-process devbound on a loopback port with a temporary data directory.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::sync::Arc;

use devbound::client::{DbscClient, SessionKey, https_client};
use devbound::clock::{Clock, ManualClock, SystemClock};
use devbound::config::ServeOptions;
use devbound::crypto::Algorithm;
use devbound::http::{RunningServer, start};
use devbound::store::Store;

pub const PASSWORD: &str = "correct horse battery";

/// A running server, its data directory and, if the test controls time, its clock.
pub struct TestServer {
    pub server: RunningServer,
    pub clock: Option<Arc<ManualClock>>,
    pub cert_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// 2026-12-04 00:00:00 UTC, the instant tests with a manual clock start at.
pub const TEST_EPOCH: u64 = 1_796_342_400;

impl TestServer {
    /// Starts a server on 127.0.0.1 with a free port and the options given.
    pub async fn start(options: ServeOptions, manual_clock: bool) -> Self {
        // RUST_LOG=debug shows the server's log in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let options = ServeOptions {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..options
        };
        let config = options.resolve().unwrap();
        let manual = manual_clock.then(|| Arc::new(ManualClock::new(TEST_EPOCH)));
        let clock: Arc<dyn Clock> = match &manual {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let server = start(config, clock).await.unwrap();
        let cert_pem = std::fs::read(&server.tls.cert).unwrap();
        Self {
            server,
            clock: manual,
            cert_pem,
            _dir: dir,
        }
    }

    /// Starts a server with default options and a manual clock.
    pub async fn default_manual() -> Self {
        Self::start(ServeOptions::default(), true).await
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Creates a user with [`PASSWORD`].
    pub fn add_user(&self, name: &str) {
        let now = self.server.state.clock.now();
        let user =
            devbound::account::new_user(name, PASSWORD, now, &mut rand::thread_rng()).unwrap();
        assert!(self.server.store().insert_user(&user).unwrap());
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, seconds: u64) {
        self.clock
            .as_ref()
            .expect("test server has no manual clock")
            .advance(seconds);
    }

    /// Creates a software DBSC client with a fresh key for `alg`.
    pub fn client(&self, alg: Algorithm) -> DbscClient {
        let http = https_client(&self.cert_pem).unwrap();
        DbscClient::new(http, self.url(), SessionKey::generate(alg).unwrap())
    }

    /// Creates user `name` and returns a client signed in with a registered session.
    pub async fn bound_client(&self, name: &str, alg: Algorithm) -> DbscClient {
        self.add_user(name);
        let mut client = self.client(alg);
        client.sign_in_and_register(name, PASSWORD).await.unwrap();
        client
    }

    pub fn store(&self) -> &dyn Store {
        self.server.store()
    }
}
