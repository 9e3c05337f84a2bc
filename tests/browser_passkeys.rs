//! Passkeys end to end in a real headless Chromium with the DevTools `WebAuthn` virtual
//! authenticator (CTAP2, internal transport, resident keys, user verification): register a
//! passkey, sign in with it, get a DBSC-bound session that refreshes, and remove the passkey.
//!
//! Needs Debian's `chromium` (`scripts/install-chromium.sh`); `DEVBOUND_CHROMIUM` names another
//! binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use devbound::config::ServeOptions;
use devbound::http::routes;
use serde_json::{Value, json};
use support::chromium::{CdpSession, Chromium};
use support::server::{PASSWORD, TestServer};

const DBSC_EVENT: &str = "Network.deviceBoundSessionEventOccurred";
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Cookie lifetime for the test: short, so that a request after it needs a refresh.
const COOKIE_TTL_SECONDS: u64 = 2;

fn is_creation(params: &Value) -> bool {
    params.get("creationEventDetails").is_some() && params["succeeded"] == true
}

fn is_refresh(params: &Value) -> bool {
    params["refreshEventDetails"]["refreshResult"] == "Refreshed" && params["succeeded"] == true
}

/// Adds a CTAP2 platform authenticator with resident keys and user verification that responds
/// without a person present.
async fn add_virtual_authenticator(page: &CdpSession) -> String {
    page.send("WebAuthn.enable", json!({ "enableUI": false }))
        .await
        .unwrap();
    let added = page
        .send(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "ctap2Version": "ctap2_1",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        )
        .await
        .unwrap();
    added["authenticatorId"].as_str().unwrap().to_owned()
}

async fn text_of(page: &CdpSession, selector: &str) -> String {
    let expression = format!(
        "document.querySelector({}).textContent",
        Value::from(selector)
    );
    page.evaluate(&expression)
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn password_sign_in(page: &CdpSession, origin: &str) {
    page.navigate(&format!("{origin}/login")).await.unwrap();
    let script = format!(
        "const form = document.getElementById('password-sign-in'); \
         form.username.value = 'alice'; form.password.value = {password}; form.submit();",
        password = Value::from(PASSWORD),
    );
    page.evaluate(&script).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_registers_and_signs_in_with_passkey() {
    let options = ServeOptions {
        cookie_ttl: Some(format!("{COOKIE_TTL_SECONDS}s")),
        ..ServeOptions::default()
    };
    let server = TestServer::start(options, false).await;
    server.add_user("alice");
    let origin = server.url().to_owned();
    let user = server.store().find_user_by_name("alice").unwrap().unwrap();

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
    let authenticator_id = add_virtual_authenticator(&page).await;

    // A password sign-in, then the first passkey from the passkeys page.
    password_sign_in(&page, &origin).await;
    page.wait_for_event(DBSC_EVENT, EVENT_TIMEOUT, is_creation)
        .await
        .unwrap();
    page.navigate(&format!("{origin}{}", routes::PASSKEYS))
        .await
        .unwrap();
    let registered = page
        .evaluate("devbound.register('Chromium virtual key')")
        .await
        .unwrap();
    assert_eq!(registered["name"], "Chromium virtual key", "{registered}");
    let passkeys = server.store().list_passkeys(&user.id).unwrap();
    assert_eq!(passkeys.len(), 1);
    let passkey_id = passkeys[0].id.clone();
    let held = page
        .send(
            "WebAuthn.getCredentials",
            json!({ "authenticatorId": authenticator_id }),
        )
        .await
        .unwrap();
    assert_eq!(
        held["credentials"][0]["isResidentCredential"], true,
        "{held}"
    );

    // Sign out, then sign in with the passkey: no user name, no password.
    let signed_out = page
        .evaluate("fetch('/logout', { method: 'POST', credentials: 'include' }).then(r => r.ok)")
        .await
        .unwrap();
    assert_eq!(signed_out, true);
    page.navigate(&format!("{origin}/login")).await.unwrap();
    // Passkey autofill may already have signed in and navigated away; then the click fails.
    let _ = page
        .evaluate("document.getElementById('passkey-sign-in').click()")
        .await;

    // The passkey session is offered DBSC registration and gets bound.
    let created = page
        .wait_for_event(DBSC_EVENT, EVENT_TIMEOUT, is_creation)
        .await
        .unwrap();
    let session_id = created["sessionId"].as_str().unwrap().to_owned();
    let session = server
        .store()
        .find_session(&session_id)
        .unwrap()
        .unwrap()
        .record;
    assert!(session.is_bound(), "DBSC did not bind the passkey session");
    assert_eq!(session.passkey_id.as_deref(), Some(passkey_id.as_str()));

    // The bound session refreshes once its cookie expires.
    tokio::time::sleep(Duration::from_secs(COOKIE_TTL_SECONDS + 1)).await;
    assert_eq!(page.fetch_status(routes::APP).await.unwrap(), 200);
    page.wait_for_event(DBSC_EVENT, EVENT_TIMEOUT, is_refresh)
        .await
        .unwrap();

    // The page shows the binding and the passkey that proved it.
    page.navigate(&format!("{origin}{}", routes::APP))
        .await
        .unwrap();
    assert_eq!(text_of(&page, "#binding").await, "bound");
    assert_eq!(text_of(&page, "#assurance").await, "software");
    assert!(
        text_of(&page, "#passkey")
            .await
            .starts_with("Chromium virtual key, proved"),
        "{}",
        text_of(&page, "#passkey").await
    );

    // Remove the passkey; the sign-in proof is recent enough for this step-up check.
    let remove = routes::with_id(routes::PASSKEY_REMOVE, &passkey_id);
    let removed = page
        .evaluate(&format!(
            "fetch({}, {{ method: 'POST', credentials: 'include' }}).then(r => r.url)",
            Value::from(remove)
        ))
        .await
        .unwrap();
    assert!(
        removed.as_str().unwrap().ends_with(routes::PASSKEYS),
        "{removed}"
    );
    assert!(server.store().list_passkeys(&user.id).unwrap().is_empty());
}

/// Passkey autofill: with a passkey on the authenticator, opening `/login` starts a conditional
/// request, and the virtual authenticator answers it without a click.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_autofill_offers_passkey_on_login() {
    let server = TestServer::start(ServeOptions::default(), false).await;
    server.add_user("alice");
    let origin = server.url().to_owned();
    let user = server.store().find_user_by_name("alice").unwrap().unwrap();
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
    add_virtual_authenticator(&page).await;
    password_sign_in(&page, &origin).await;
    page.wait_for_event(DBSC_EVENT, EVENT_TIMEOUT, is_creation)
        .await
        .unwrap();
    page.navigate(&format!("{origin}{}", routes::PASSKEYS))
        .await
        .unwrap();
    page.evaluate("devbound.register('autofill key')")
        .await
        .unwrap();
    let passkey_id = server.store().list_passkeys(&user.id).unwrap()[0]
        .id
        .clone();
    page.evaluate("fetch('/logout', { method: 'POST', credentials: 'include' }).then(r => r.ok)")
        .await
        .unwrap();

    page.navigate(&format!("{origin}/login")).await.unwrap();
    let available = page
        .evaluate("PublicKeyCredential.isConditionalMediationAvailable()")
        .await
        .unwrap();
    assert_eq!(available, true);
    let created = page
        .wait_for_event(DBSC_EVENT, EVENT_TIMEOUT, is_creation)
        .await
        .unwrap();
    let session_id = created["sessionId"].as_str().unwrap();
    let session = server
        .store()
        .find_session(session_id)
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(session.passkey_id.as_deref(), Some(passkey_id.as_str()));
}
