//! Pages for passkeys: sign-in with passkey autofill, the passkey list and the step-up prompt.
//! Every value put into HTML is escaped; values put into scripts are JSON.

use serde_json::Value;

use super::routes;
use super::views::{escape, page, utc};
use crate::store::{AttestationTrust, PasskeyRecord};

/// The browser side of the ceremonies. It uses the WebAuthn Level 3 JSON helpers
/// (`parseCreationOptionsFromJSON`, `parseRequestOptionsFromJSON`, `toJSON`).
const SCRIPT: &str = r#"<script>
const devbound = {
  async post(url, body) {
    const response = await fetch(url, { method: 'POST', credentials: 'include',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { throw new Error(data.message || 'The request failed. Try again.'); }
    return data;
  },
  show(text) { const el = document.getElementById('passkey-message'); if (el) { el.textContent = text; el.hidden = false; } },
  async signIn(conditional, signal) {
    const started = await devbound.post(SIGN_IN_OPTIONS, { conditional });
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(started.publicKey);
    const options = { publicKey, signal };
    if (conditional) { options.mediation = 'conditional'; }
    const credential = await navigator.credentials.get(options);
    // A form navigation, so that the response's DBSC registration header reaches the browser.
    const form = document.createElement('form');
    form.method = 'post';
    form.action = SIGN_IN;
    form.hidden = true;
    for (const [name, value] of [['ceremony', started.ceremony], ['credential', JSON.stringify(credential.toJSON())]]) {
      const input = document.createElement('input');
      input.type = 'hidden'; input.name = name; input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
  },
  async register(name) {
    const started = await devbound.post(REGISTER_OPTIONS, { name });
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(started.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    return devbound.post(REGISTER, { ceremony: started.ceremony, credential: credential.toJSON() });
  },
  async enroll(invite, name) {
    const started = await devbound.post(ENROLL_OPTIONS, { invite, name });
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(started.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    const done = await devbound.post(ENROLL, { ceremony: started.ceremony, credential: credential.toJSON() });
    location.assign(done.redirect);
  },
  async stepUp(returnTo) {
    const started = await devbound.post(STEP_UP_OPTIONS, {});
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(started.publicKey);
    const credential = await navigator.credentials.get({ publicKey });
    const done = await devbound.post(STEP_UP, { ceremony: started.ceremony, credential: credential.toJSON(), return_to: returnTo });
    location.assign(done.redirect);
  },
};
</script>"#;

fn script() -> String {
    let constants = format!(
        "<script>const SIGN_IN_OPTIONS = {}, SIGN_IN = {}, REGISTER_OPTIONS = {}, REGISTER = {}, STEP_UP_OPTIONS = {}, STEP_UP = {}, ENROLL_OPTIONS = {}, ENROLL = {};</script>\n",
        Value::from(routes::PASSKEY_SIGN_IN_OPTIONS),
        Value::from(routes::PASSKEY_SIGN_IN),
        Value::from(routes::PASSKEY_REGISTER_OPTIONS),
        Value::from(routes::PASSKEY_REGISTER),
        Value::from(routes::STEP_UP_OPTIONS),
        Value::from(routes::STEP_UP),
        Value::from(routes::ENROLL_OPTIONS),
        Value::from(routes::ENROLL),
    );
    constants + SCRIPT
}

/// Renders the sign-in page: a passkey button, passkey autofill in the user name field, and the
/// password form when the operator allows passwords.
pub fn login_page(notice: &str, password_sign_in: bool) -> String {
    let password_form = if password_sign_in {
        // The user name field also offers passkeys in its autofill.
        format!(
            r#"<h2>Or sign in with a password</h2>
<form id="password-sign-in" method="post" action="{action}">
<label>User name <input name="username" autocomplete="username webauthn" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in with password</button></form>"#,
            action = routes::LOGIN
        )
    } else {
        r#"<p>Your organisation signs in with passkeys only.</p>
<label>User name <input id="passkey-username" autocomplete="username webauthn"></label>"#
            .to_owned()
    };
    let body = format!(
        r#"{notice}<p class="notice" id="passkey-message" hidden></p>
<p><button id="passkey-sign-in" type="button">Sign in with a passkey</button></p>
{password_form}
{script}
<script>
let autofill = new AbortController();
if (window.PublicKeyCredential && PublicKeyCredential.isConditionalMediationAvailable) {{
  PublicKeyCredential.isConditionalMediationAvailable().then(available => {{
    if (available) {{ devbound.signIn(true, autofill.signal).catch(() => {{}}); }}
  }});
}}
document.getElementById('passkey-sign-in').addEventListener('click', () => {{
  autofill.abort();
  autofill = new AbortController();
  devbound.signIn(false, autofill.signal).catch(error => devbound.show(error.message));
}});
</script>"#,
        script = script(),
    );
    page("Sign in", &body)
}

/// Renders the passkey list with rename and remove forms, and a form to add one.
pub fn passkeys_page(passkeys: &[PasskeyRecord], notice: &str) -> String {
    let mut rows = String::new();
    for passkey in passkeys {
        rows.push_str(&passkey_row(passkey));
    }
    if passkeys.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">You have no passkeys yet.</td></tr>\n");
    }
    let body = format!(
        r#"{notice}<p class="notice" id="passkey-message" hidden></p>
<table id="passkeys"><tr><th>Name</th><th>Authenticator</th><th>Assurance</th><th>Added / last used</th><th></th></tr>
{rows}</table>
<h2>Add a passkey</h2>
<form id="add-passkey"><label>Name <input name="name" maxlength="64" required placeholder="Work laptop"></label>
<button type="submit">Add passkey</button></form>
<p><a href="{app}">Back</a></p>
{script}
<script>
document.getElementById('add-passkey').addEventListener('submit', event => {{
  event.preventDefault();
  devbound.register(event.target.name.value)
    .then(() => location.reload())
    .catch(error => devbound.show(error.message));
}});
</script>"#,
        app = routes::APP,
        script = script(),
    );
    page("Your passkeys", &body)
}

fn passkey_row(passkey: &PasskeyRecord) -> String {
    let authenticator = passkey
        .authenticator
        .clone()
        .unwrap_or_else(|| "Unknown authenticator".to_owned());
    let trust = match &passkey.trust {
        AttestationTrust::Trusted { .. } => "approved model",
        AttestationTrust::Untrusted => "model not on the approved list",
        AttestationTrust::SelfSigned | AttestationTrust::None => "model not attested",
    };
    let warning = if passkey.clone_warning_at.is_some() {
        r#"<br><strong>Flagged: its signature counter went backwards</strong>"#
    } else {
        ""
    };
    let last_used = passkey.last_used_at.map_or_else(|| "never".to_owned(), utc);
    format!(
        r#"<tr data-passkey="{id}"><td>{name}</td><td>{authenticator}<br><small>{trust} · AAGUID <code>{aaguid}</code> · {format}</small>{warning}</td><td>{assurance}</td><td>{created}<br>{last_used}</td>
<td><form method="post" action="{rename}"><input name="name" value="{name}" maxlength="64" aria-label="New name"><button>Rename</button></form>
<form method="post" action="{remove}"><button>Remove</button></form></td></tr>
"#,
        id = escape(&passkey.id),
        name = escape(&passkey.name),
        authenticator = escape(&authenticator),
        aaguid = escape(&passkey.aaguid),
        format = escape(&passkey.attestation_format),
        assurance = passkey.assurance.name(),
        created = utc(passkey.created_at),
        rename = escape(&routes::with_id(routes::PASSKEY_RENAME, &passkey.id)),
        remove = escape(&routes::with_id(routes::PASSKEY_REMOVE, &passkey.id)),
    )
}

/// Renders the page that requests a fresh passkey proof and then returns to `return_to`.
pub fn step_up_page(return_to: &str, reason: &str) -> String {
    let body = format!(
        r#"<p>{reason}</p><p class="notice" id="passkey-message" hidden></p>
<p><button id="step-up" type="button">Confirm with your passkey</button></p>
<p><a href="{app}">Cancel</a></p>
{script}
<script>
document.getElementById('step-up').addEventListener('click', () => {{
  devbound.stepUp({return_to}).catch(error => devbound.show(error.message));
}});
</script>"#,
        reason = escape(reason),
        app = routes::APP,
        return_to = Value::from(return_to),
        script = script(),
    );
    page("Confirm it's you", &body)
}

/// Renders the page an invitation link opens, where a person names and creates a first passkey.
pub fn enroll_page(invite: &str) -> String {
    let body = format!(
        r#"<p>Your administrator invited you to devbound. Create a passkey on this device to sign in from now on.</p>
<p class="notice" id="passkey-message" hidden></p>
<form id="enroll"><label>Name for this passkey <input name="name" maxlength="64" required placeholder="Work laptop"></label>
<button type="submit">Create passkey</button></form>
{script}
<script>
document.getElementById('enroll').addEventListener('submit', event => {{
  event.preventDefault();
  devbound.enroll({invite}, event.target.name.value).catch(error => devbound.show(error.message));
}});
</script>"#,
        invite = Value::from(invite),
        script = script(),
    );
    page("Create your passkey", &body)
}
