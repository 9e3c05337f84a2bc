//! `devbound serve`.

use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use crate::clock::SystemClock;
use crate::config::ServeOptions;
use crate::http;

pub async fn run(options: ServeOptions) -> Result<(), String> {
    init_logging("info");
    let config = options
        .merge_file()
        .and_then(ServeOptions::resolve)
        .map_err(|error| error.to_string())?;
    if config.policy.cookie_ttl < 180 {
        tracing::warn!(
            cookie_ttl = config.policy.cookie_ttl,
            "cookie lifetime is under 3 minutes; browsers will refresh on nearly every request"
        );
    }

    let mut server = http::start(config.clone(), Arc::new(SystemClock))
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(
        url = server.url(),
        listen = %server.addr,
        data_dir = %config.data_dir.display(),
        "devbound is serving"
    );
    if server.tls.self_signed {
        tracing::info!(
            cert = %server.tls.cert.display(),
            spki_sha256 = %server.tls.spki_sha256,
            "using a self-signed certificate; for a test browser pass --ignore-certificate-errors-spki-list with this hash"
        );
    }
    println!("devbound listening on {}", server.url());
    println!("TLS certificate SPKI SHA-256: {}", server.tls.spki_sha256);

    server.wait_for(shutdown_signal()).await;
    tracing::info!("shutting down: finishing requests in flight");
    server
        .shutdown()
        .await
        .map_err(|error| format!("flushing the database at shutdown failed: {error}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Logs to standard error; `RUST_LOG` overrides the default level, and
/// `RUST_LOG=security=debug` shows every refresh. The service logs from `info`, other commands
/// only warnings, such as a repair of the audit log when they open the database.
pub(super) fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
