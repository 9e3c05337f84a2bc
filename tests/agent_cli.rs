//! The `devbound agent` commands against a running service: an operator registers an agent,
//! the agent logs in through the device grant while its owner approves, gets a token and
//! calls the example API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::Value;
use support::agents::{AgentWorld, OWNER};

const BINARY: &str = env!("CARGO_BIN_EXE_devbound");

fn devbound(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "devbound failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

// The spawned commands block this thread while the in-process server handles their requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cli_logs_in_gets_token_and_calls_api() {
    let world = AgentWorld::start_with_clock(false).await;
    let data_dir = world.server.server.tls.cert.parent().unwrap().to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("agent.json");
    let api_cert = work.path().join("api.pem");
    std::fs::write(&api_cert, &world.api.cert_pem).unwrap();
    let api = world.api.origin.clone();

    let added = devbound(
        &[
            "agent",
            "add",
            "cli-agent",
            "--owner",
            OWNER,
            "--scope",
            "files.read",
            "--audience",
            &api,
            "--require",
            "software",
        ],
        &data_dir,
    );
    let agent: Value = serde_json::from_str(&stdout_of(&added)).unwrap();
    let agent_id = agent["id"].as_str().unwrap().to_owned();
    let listed = stdout_of(&devbound(&["agent", "list"], &data_dir));
    assert!(
        listed.contains(&agent_id) && listed.contains(OWNER),
        "{listed}"
    );

    // Login blocks until the owner approves the code it prints.
    let mut login = Command::new(BINARY)
        .args(["agent", "login", "--agent", &agent_id, "--state"])
        .arg(&state)
        .arg("--data-dir")
        .arg(&data_dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = login.stderr.take().unwrap();
    // Read stderr to its end on a thread, so that the command never writes to a closed pipe.
    let (code_sender, code_receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut output = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("enter the code") {
                let code = line.rsplit(' ').next().unwrap().to_owned();
                code_sender.send(code).unwrap();
            }
            output.push_str(&line);
            output.push('\n');
        }
        output
    });
    let code = tokio::task::spawn_blocking(move || code_receiver.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(world.decide(&code, "approve").await, StatusCode::OK);
    let status = tokio::task::spawn_blocking(move || login.wait().unwrap())
        .await
        .unwrap();
    let output = reader.join().unwrap();
    assert!(status.success(), "login failed: {output}");

    let state_arg = state.to_str().unwrap();
    let token = devbound(
        &[
            "agent",
            "token",
            "--audience",
            &api,
            "--scope",
            "files.read",
            "--state",
            state_arg,
        ],
        &data_dir,
    );
    let token: Value = serde_json::from_str(&stdout_of(&token)).unwrap();
    assert_eq!(token["token_type"], "DPoP");
    let access_token = token["access_token"].as_str().unwrap();

    let called = devbound(
        &[
            "agent",
            "call",
            &world.api.tool_url(),
            "--token",
            access_token,
            "--api-ca-cert",
            api_cert.to_str().unwrap(),
            "--state",
            state_arg,
        ],
        &data_dir,
    );
    let body: Value = serde_json::from_str(stdout_of(&called).trim()).unwrap();
    assert_eq!(body["client_id"], agent_id.as_str());

    // Suspended by the operator, the agent gets no token.
    stdout_of(&devbound(&["agent", "suspend", &agent_id], &data_dir));
    let refused = devbound(
        &["agent", "token", "--audience", &api, "--state", state_arg],
        &data_dir,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_grant"));
}
