//! The `devbound` binary as an operator runs it: acknowledged writes survive `kill -9`, the
//! operator CLI works against a stopped and a running service, and the audit log shows edits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use devbound::client::{DbscClient, RefreshOutcome, SessionKey, https_client};
use devbound::crypto::Algorithm;
use devbound::http::routes;
use serde_json::Value;

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
        Self::start_with(data_dir, port, &[]).await
    }

    /// Starts `devbound serve` with `options` added to its command line.
    async fn start_with(data_dir: &Path, port: u16, options: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(options)
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

    /// Sends SIGTERM and checks that the service exits cleanly.
    fn terminate(mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(terminated.success());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "devbound exited with {status} after SIGTERM"
        );
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

/// `user add` may run before the service ever started. The directory it creates contains
/// password hashes, so only its owner may read it.
#[test]
fn user_add_creates_a_private_data_directory() {
    use std::os::unix::fs::PermissionsExt;

    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh");
    let added = devbound(
        &["user", "add", "erin", "--password-stdin"],
        &dir,
        Some(PASSWORD),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
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
    let service = Service::start(dir.path(), port).await;
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

    service.terminate();

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

/// Returns the standard output of a command that must have succeeded.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "devbound failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Reads `(action, outcome)` pairs from `devbound audit list --json`.
fn audit_actions(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let action = entry["action"].as_str().unwrap().to_owned();
            let outcome = entry["outcome"].as_str().unwrap().to_owned();
            (action, outcome)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_chains_and_finds_edit() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(&devbound(
        &["user", "add", "carol", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    ));
    let port = free_port();
    let service = Service::start(dir.path(), port).await;

    let mut owner = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Es256).unwrap(),
    );
    let session_id = owner
        .sign_in_and_register("carol", PASSWORD)
        .await
        .unwrap()
        .session_identifier;
    let mut intruder = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Es256).unwrap(),
    );
    assert!(intruder.sign_in("carol", "wrong password").await.is_err());
    succeeded(&devbound(
        &["session", "revoke", &session_id],
        dir.path(),
        None,
    ));

    // While the service runs, the CLI reads the log through the admin API.
    let listing = succeeded(&devbound(&["audit", "list", "--json"], dir.path(), None));
    let expected = [
        ("user.create", "allowed"),
        ("session.sign_in", "allowed"),
        ("session.bind", "allowed"),
        ("session.sign_in", "refused"),
        ("session.revoke", "allowed"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(action, outcome)| ((*action).to_owned(), (*outcome).to_owned()))
        .collect();
    assert_eq!(audit_actions(&listing), expected);
    assert!(!listing.contains(PASSWORD));
    let verified = succeeded(&devbound(&["audit", "verify"], dir.path(), None));
    assert!(
        verified.contains("audit log intact: 5 entries"),
        "{verified}"
    );
    service.terminate();

    // Rewrite the revocation's actor on disk, as someone covering their tracks would.
    {
        let path = dir.path().join("audit.jsonl");
        let log = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        let mut entry: Value = serde_json::from_str(&lines[4]).unwrap();
        entry["actor"] = Value::from("user:someone-else");
        lines[4] = entry.to_string();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let tampered = devbound(&["audit", "verify"], dir.path(), None);
    assert!(!tampered.status.success());
    let message = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        message.contains("entry 4 does not match its own hash"),
        "{message}"
    );
}

/// `user invite` prints a working invitation link with the service stopped and running.
#[tokio::test(flavor = "multi_thread")]
async fn operator_cli_invites_to_a_first_passkey() {
    let dir = tempfile::tempdir().unwrap();
    let stopped = devbound(&["user", "invite", "dave"], dir.path(), None);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let stopped_url = String::from_utf8_lossy(&stopped.stdout).trim().to_owned();
    assert!(
        stopped_url.contains("/passkeys/enroll?invite="),
        "{stopped_url}"
    );

    let port = free_port();
    let _service = Service::start(dir.path(), port).await;
    let running = devbound(&["user", "invite", "erin"], dir.path(), None);
    assert!(
        running.status.success(),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    let running_url = String::from_utf8_lossy(&running.stdout).trim().to_owned();
    assert!(
        running_url.starts_with(&format!("https://localhost:{port}/passkeys/enroll?invite=")),
        "{running_url}"
    );

    // Both invitations start a registration for their user.
    let cert = std::fs::read(dir.path().join("tls-cert.pem")).unwrap();
    let http = https_client(&cert).unwrap();
    for (user, url) in [("dave", &stopped_url), ("erin", &running_url)] {
        let invite = url.split("invite=").nth(1).unwrap();
        let response = http
            .post(format!(
                "https://localhost:{port}{}",
                routes::ENROLL_OPTIONS
            ))
            .json(&serde_json::json!({ "invite": invite, "name": "laptop" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "invitation for {user}");
        let options: Value = response.json().await.unwrap();
        assert_eq!(options["publicKey"]["user"]["name"], user);
    }
    let users = devbound(&["user", "list"], dir.path(), None);
    let listed = String::from_utf8_lossy(&users.stdout).into_owned();
    assert!(
        listed.contains("dave") && listed.contains("erin"),
        "{listed}"
    );
}

/// With the service stopped, `user invite` links to the `--public-url` it last served on, not
/// to its listen address.
#[tokio::test(flavor = "multi_thread")]
async fn stopped_invite_uses_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service = Service::start_with(
        dir.path(),
        port,
        &["--public-url", "https://login.example.test"],
    )
    .await;
    service.terminate();

    let stopped = devbound(&["user", "invite", "dave"], dir.path(), None);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let url = String::from_utf8_lossy(&stopped.stdout).trim().to_owned();
    assert!(
        url.starts_with("https://login.example.test/passkeys/enroll?invite="),
        "{url}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_cli_disables_and_enables_users() {
    let dir = tempfile::tempdir().unwrap();
    let added = devbound(
        &["user", "add", "dave", "--password-stdin"],
        dir.path(),
        Some(PASSWORD),
    );
    succeeded(&added);

    // While the service is stopped, the command writes to the database directly.
    let disabled = succeeded(&devbound(&["user", "disable", "dave"], dir.path(), None));
    assert_eq!(
        disabled.trim(),
        "disabled user dave; revoked 0 live sessions"
    );
    let users = succeeded(&devbound(&["user", "list"], dir.path(), None));
    assert!(users.trim_end().ends_with("\tdisabled"), "{users}");
    let unknown = devbound(&["user", "disable", "nobody"], dir.path(), None);
    assert!(!unknown.status.success());
    let invite = devbound(&["user", "invite", "dave"], dir.path(), None);
    assert!(!invite.status.success());
    assert!(String::from_utf8_lossy(&invite.stderr).contains("disabled"));

    let port = free_port();
    let _service = Service::start(dir.path(), port).await;
    let mut client = client(
        dir.path(),
        port,
        SessionKey::generate(Algorithm::Es256).unwrap(),
    );
    let rejected = client.sign_in("dave", PASSWORD).await;
    assert!(
        matches!(&rejected, Err(devbound::client::ClientError::Status { status, .. }) if *status == 403),
        "{rejected:?}"
    );

    // While it runs, the command goes through the admin API.
    succeeded(&devbound(&["user", "enable", "dave"], dir.path(), None));
    client.sign_in_and_register("dave", PASSWORD).await.unwrap();
    let disabled = succeeded(&devbound(&["user", "disable", "dave"], dir.path(), None));
    assert_eq!(
        disabled.trim(),
        "disabled user dave; revoked 1 live session"
    );
    assert_eq!(client.get(routes::APP).await.unwrap().status(), 303);
    assert_eq!(client.refresh().await.unwrap(), RefreshOutcome::Terminated);

    let listing = succeeded(&devbound(&["audit", "list", "--json"], dir.path(), None));
    let actions = audit_actions(&listing);
    let allowed = |action: &str| (action.to_owned(), "allowed".to_owned());
    assert!(actions.contains(&allowed("user.disable")), "{actions:?}");
    assert!(actions.contains(&allowed("user.enable")), "{actions:?}");
}
