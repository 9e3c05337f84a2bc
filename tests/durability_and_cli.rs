//! The `devbound` binary as an operator runs it: acknowledged writes survive `kill -9`, and
//! the operator CLI works against a stopped and a running service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use devbound::client::{DbscClient, RefreshOutcome, SessionKey, https_client};
use devbound::crypto::Algorithm;
use devbound::http::routes;

const BINARY: &str = env!("CARGO_BIN_EXE_devbound");
const PASSWORD: &str = "durable password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn devbound(args: &[&str], data_dir: &Path, stdin: Option<&str>) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

struct Service {
    child: Child,
}

impl Service {
    async fn start(data_dir: &Path, port: u16) -> Self {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("devbound serve did not start listening on port {port}");
    }

    /// Sends SIGKILL: no shutdown code runs, so only durable writes survive.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(data_dir: &Path, port: u16, key: SessionKey) -> DbscClient {
    let cert = std::fs::read(data_dir.join("tls-cert.pem")).unwrap();
    DbscClient::new(
        https_client(&cert).unwrap(),
        &format!("https://localhost:{port}"),
        key,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let added = devbound(
        &["user", "add", "alice", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let port = free_port();
    let service = Service::start(dir.path(), port).await;
    let mut client = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Es256).unwrap(),
    );
    client
        .sign_in_and_register("alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        client.refresh().await.unwrap(),
        RefreshOutcome::Renewed { requests: 1 }
    );
    service.kill_9();

    // The cookie and the pre-issued challenge from the last refresh were acknowledged.
    let service = Service::start(dir.path(), port).await;
    assert_eq!(client.get(routes::APP).await.unwrap().status(), 200);
    assert_eq!(
        client.refresh().await.unwrap(),
        RefreshOutcome::Renewed { requests: 1 }
    );

    let signed_out = client.post(routes::LOGOUT).await.unwrap();
    assert_eq!(signed_out.status(), 303);
    service.kill_9();

    let _service = Service::start(dir.path(), port).await;
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_cli_lists_and_revokes_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let added = devbound(
        &["user", "add", "bob", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    assert!(added.status.success());
    let duplicate = devbound(
        &["user", "add", "bob", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    assert!(
        !duplicate.status.success(),
        "a second user named bob was created"
    );

    let port = free_port();
    let _service = Service::start(dir.path(), port).await;
    let mut client = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Rs256).unwrap(),
    );
    client.sign_in_and_register("bob", PASSWORD).await.unwrap();
    let session_id = client.session_id.clone().unwrap();

    let listed = devbound(
        &["session", "list", "--user", "bob", "--json"],
        dir.path(),
        None,
    );
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let sessions: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(sessions[0]["id"], session_id.as_str());
    assert_eq!(sessions[0]["state"], "bound");
    assert_eq!(sessions[0]["algorithm"], "RS256");

    let revoked = devbound(&["session", "revoke", &session_id], dir.path(), None);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );

    // The cookie is refused at once, and the next refresh ends the session in the client.
    assert_eq!(client.get(routes::APP).await.unwrap().status(), 303);
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);

    let added_live = devbound(
        &["user", "add", "carol", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    assert!(
        added_live.status.success(),
        "{}",
        String::from_utf8_lossy(&added_live.stderr)
    );
    let users = devbound(&["user", "list"], dir.path(), None);
    assert!(String::from_utf8_lossy(&users.stdout).contains("carol"));
}

#[test]
fn serve_help_explains_options() {
    let output = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--data-dir",
        "--listen",
        "--public-url",
        "--cookie-ttl",
        "--session-ttl",
        "--challenge-ttl",
        "--algorithms",
    ] {
        assert!(help.contains(option), "serve --help lacks {option}");
    }
}

#[test]
fn serve_rejects_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let output = devbound(&["serve", "--cookie-ttl", "soon"], dir.path(), None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--cookie-ttl"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_gracefully_and_metrics_count() {
    let dir = tempfile::tempdir().unwrap();
    let added = devbound(
        &["user", "add", "dave", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    assert!(added.status.success());
    let port = free_port();
    let mut service = Service::start(dir.path(), port).await;
    let mut client = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Es256).unwrap(),
    );
    client.sign_in_and_register("dave", PASSWORD).await.unwrap();
    client.refresh().await.unwrap();
    client.post_refresh("no-such-session", None).await.unwrap();

    let metrics = client
        .get(routes::METRICS)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"devbound_dbsc_registrations_total{outcome="bound"} 1"#,
        r#"devbound_dbsc_refreshes_total{outcome="renewed"} 1"#,
        r#"devbound_dbsc_refreshes_total{outcome="terminated"} 1"#,
        r#"devbound_sign_ins_total{outcome="success"} 1"#,
        "devbound_dbsc_refresh_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    assert_eq!(client.get(routes::HEALTHZ).await.unwrap().status(), 200);

    let terminated = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = service.child.wait().unwrap();
    assert!(
        status.success(),
        "devbound exited with {status} after SIGTERM"
    );

    // The database was closed cleanly: the CLI opens it directly now.
    let listed = devbound(&["session", "list", "--json"], dir.path(), None);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

#[test]
fn cli_rejects_data_dir_without_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");

    let listed = devbound(&["session", "list"], &missing, None);

    assert!(!listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stderr).contains("no devbound database"));
    assert!(
        !missing.exists(),
        "listing sessions created {}",
        missing.display()
    );
}
