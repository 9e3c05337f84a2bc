//! Agent tokens on a TPM-enrolled device, end to end over HTTPS with swtpm: the owner enrolls
//! the device with `devbound device enroll`, registers two agents that require `tpm`, and
//! approves their device grants, which bind to the device's TPM-held session key. The first
//! agent calls the example API and hands off to the second, which calls it too; then the
//! owner revokes the device and both are refused on their next request.

#![cfg(feature = "tpm")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::sync::Arc;

use devbound::client::device::DeviceState;
use devbound::client::tpm::{self, TpmSigner};
use devbound::client::{AgentClient, ExchangeParams};
use devbound::clock::SystemClock;
use devbound::crypto::base64url;
use devbound::http::routes;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use support::agents::{AgentWorld, act_chain};
use support::devices::{TPM_LOCK, create_code, server_trusting, swtpm};

const BINARY: &str = env!("CARGO_BIN_EXE_devbound");

#[tokio::test(flavor = "multi_thread")]
async fn agents_on_tpm_device_delegate_then_device_revocation_stops_both() {
    let Some((tcti, trust)) = swtpm() else {
        return;
    };
    let _tpm = TPM_LOCK.lock().await;
    let world = AgentWorld::with_server(server_trusting(trust).await).await;
    let api = world.api.origin.clone();

    // The owner creates an enrollment code; the device enrolls with its TPM.
    let code = create_code(&world.server, &world.owner, "agent box").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.pem");
    std::fs::write(&cert, &world.server.cert_pem).unwrap();
    let state_dir = dir.path().join("device");
    let enrolled = Command::new(BINARY)
        .args([
            "device",
            "enroll",
            "--server",
            world.server.url(),
            "--tcti",
            &tcti,
        ])
        .args(["--code", &code, "--ca-cert"])
        .arg(&cert)
        .arg("--state-dir")
        .arg(&state_dir)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap();
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let device = DeviceState::load(&state_dir).unwrap();

    // The agents sign with the device's TPM-held session key.
    let public = base64url::decode(&device.key_public).unwrap();
    let private = base64url::decode(&device.key_private).unwrap();
    let mut context = tpm::open(&tcti).unwrap();
    let key = tpm::load_session_key(&mut context, &public, &private).unwrap();
    let signer = Arc::new(TpmSigner::new(context, key, &public).unwrap());
    let agent_on_device = |id: &str| {
        let mut agent = AgentClient::new(
            world.http(),
            world.server.url(),
            id,
            signer.clone(),
            Arc::new(SystemClock),
        );
        agent.session_id = Some(device.session_id.clone());
        agent
    };

    let planner_id = world
        .register_agent("planner", &["files.read", "files.write"], &[&api], "tpm")
        .await;
    let reader_id = world
        .register_agent("reader", &["files.read"], &[&api], "tpm")
        .await;
    let mut planner = agent_on_device(&planner_id);
    let mut reader = agent_on_device(&reader_id);
    world.login(&mut planner).await;
    world.login(&mut reader).await;
    planner.refresh_session().await.unwrap();

    let token = planner.token(&[&api], Some("files.read")).await.unwrap();
    let (status, body) = world.call_tool(&planner, &token.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acr"], "tpm");

    let handoff = planner
        .exchange(&ExchangeParams {
            subject_token: &token.access_token,
            may_act: Some(&reader_id),
            ..ExchangeParams::default()
        })
        .await
        .unwrap();
    let reader_grant = reader.grant_token.clone().unwrap();
    let delegated = reader
        .exchange(&ExchangeParams {
            subject_token: &handoff.access_token,
            actor_token: Some(&reader_grant),
            ..ExchangeParams::default()
        })
        .await
        .unwrap();
    let (status, body) = world.call_tool(&reader, &delegated.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        act_chain(&body),
        vec![reader_id.clone(), planner_id.clone()]
    );

    // The owner revokes the device: the next request of each agent is refused.
    let revoked = world
        .http()
        .delete(world.url(&routes::with_id(routes::API_DEVICE, &device.device_id)))
        .header(COOKIE, world.owner.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, _) = world.call_tool(&planner, &token.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "planner still accepted");
    let (status, _) = world.call_tool(&reader, &delegated.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "reader still accepted");
    assert!(
        reader.token(&[&api], None).await.is_err(),
        "reader still gets tokens"
    );

    drop((planner, reader));
    if let Ok(signer) = Arc::try_unwrap(signer) {
        signer.close();
    }
}
