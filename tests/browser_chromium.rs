//! End to end in a real headless Chromium: password sign-in, DBSC registration, refreshes with
//! a short cookie lifetime, and sign-out, observed through the DevTools protocol.
//!
//! Needs Debian's `chromium` (`scripts/install-chromium.sh`); `DEVBOUND_CHROMIUM` names another
//! binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use devbound::config::ServeOptions;
use serde_json::{Value, json};
use support::chromium::{CdpSession, Chromium};
use support::server::{PASSWORD, TestServer};

const EVENT: &str = "Network.deviceBoundSessionEventOccurred";
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Cookie lifetime for the test: short, so that every request after it needs a refresh.
const COOKIE_TTL_SECONDS: u64 = 2;

/// Status of a same-origin fetch that does not follow redirects: a redirect reads as 302.
async fn status_without_redirect(page: &CdpSession, path: &str) -> u16 {
    let expression = format!(
        "fetch({}, {{ credentials: 'include', redirect: 'manual' }}) \
         .then(r => r.type === 'opaqueredirect' ? 302 : r.status)",
        Value::from(path)
    );
    let status = page.evaluate(&expression).await.unwrap();
    u16::try_from(status.as_u64().unwrap()).unwrap()
}

fn is_creation(params: &Value) -> bool {
    params.get("creationEventDetails").is_some()
}

fn is_refresh(params: &Value) -> bool {
    params["refreshEventDetails"]["refreshResult"] == "Refreshed" && params["succeeded"] == true
}

async fn sign_in(page: &CdpSession, origin: &str, user: &str) {
    page.navigate(&format!("{origin}/login")).await.unwrap();
    let script = format!(
        "document.querySelector('input[name=username]').value = {user}; \
         document.querySelector('input[name=password]').value = {password}; \
         document.querySelector('form').submit();",
        user = Value::from(user),
        password = Value::from(PASSWORD),
    );
    page.evaluate(&script).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_binds_refreshes_and_signs_out() {
    let options = ServeOptions {
        cookie_ttl: Some(format!("{COOKIE_TTL_SECONDS}s")),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, false).await;
    server.add_user("alice");
    let origin = server.url().to_owned();

    let chromium = Chromium::launch(&server.server.tls.spki_sha256)
        .await
        .unwrap();
    let page = chromium.open_page().await.unwrap();
    page.send(
        "Network.enableDeviceBoundSessions",
        json!({ "enable": true }),
    )
    .await
    .unwrap();

    // Sign-in offers registration; Chromium registers a key and gets the bound cookie.
    sign_in(&page, &origin, "alice").await;
    let created = page
        .wait_for_event(EVENT, EVENT_TIMEOUT, is_creation)
        .await
        .unwrap();
    assert_eq!(created["succeeded"], true, "registration failed: {created}");
    assert_eq!(
        created["creationEventDetails"]["fetchResult"], "Success",
        "{created}"
    );
    let session_id = created["sessionId"].as_str().unwrap().to_owned();
    let stored = server.store().find_session(&session_id).unwrap().unwrap();
    assert!(stored.record.is_bound(), "server did not bind the session");

    // Each request after the cookie expires waits for a refresh signed by the browser's key.
    let mut refreshes = 0;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(COOKIE_TTL_SECONDS + 1)).await;
        let status = status_without_redirect(&page, "/app").await;
        assert_eq!(status, 200, "/app refused in round {round}");
        page.wait_for_event(EVENT, EVENT_TIMEOUT, is_refresh)
            .await
            .unwrap();
        refreshes += 1;
    }
    assert!(refreshes >= 2);
    let stored = server.store().find_session(&session_id).unwrap().unwrap();
    assert!(
        stored.record.refresh_count >= 2,
        "server counted {} refreshes",
        stored.record.refresh_count
    );

    // The page shows the binding state.
    page.navigate(&format!("{origin}/app")).await.unwrap();
    let binding = page
        .evaluate("document.querySelector('#binding').textContent")
        .await
        .unwrap();
    assert_eq!(binding, "bound");
    let algorithm = page
        .evaluate("document.querySelector('#algorithm').textContent")
        .await
        .unwrap();
    assert_eq!(algorithm, "ES256");

    // Sign-out ends the session; /app is refused afterwards, and the refresh that the
    // missing cookie triggers makes the server end the session in the browser too.
    let signed_out = page
        .evaluate(
            "fetch('/logout', { method: 'POST', credentials: 'include', redirect: 'manual' }) \
             .then(r => r.type)",
        )
        .await
        .unwrap();
    assert_eq!(signed_out, "opaqueredirect");
    assert_eq!(status_without_redirect(&page, "/app").await, 302);
    assert_eq!(page.fetch_status("/api/sessions").await.unwrap(), 401);
    let stored = server.store().find_session(&session_id).unwrap().unwrap();
    assert_eq!(stored.record.state_name(), "signed_out");
    let terminated = page
        .wait_for_event(EVENT, EVENT_TIMEOUT, |params| {
            params.get("terminationEventDetails").is_some()
        })
        .await
        .unwrap();
    assert_eq!(
        terminated["terminationEventDetails"]["deletionReason"], "ServerRequested",
        "{terminated}"
    );
}
