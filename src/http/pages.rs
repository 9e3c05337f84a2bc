//! Pages a person uses: sign-in, sign-out, the protected app page and their sessions.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::{self, AuthError, CurrentSession};
use super::routes;
use super::views::{self, escape, page, utc};
use super::{passkey_views, step_up};
use crate::account::{self, AccountError};
use crate::audit::Event;
use crate::dbsc::{self, headers};
use crate::metrics::Outcome;
use crate::passkey::{Asserted, binding};
use crate::store::{SessionState, StoreError};

/// How long a sign-in waits for a free password check before it is turned away.
const PASSWORD_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    reason: Option<String>,
}

pub async fn root() -> Redirect {
    Redirect::to(routes::APP)
}

pub async fn login_form(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Html<String> {
    let notice = match query.reason.as_deref() {
        Some("unbound") => {
            r#"<p class="notice">Sign in again. This browser has no session bound to a device key: it may not support Device Bound Session Credentials, or its last refresh failed.</p>"#
        }
        Some("signed_out") => r#"<p class="notice">You have signed out.</p>"#,
        _ => "",
    };
    Html(login_page(&state, notice))
}

fn login_page(state: &AppState, notice: &str) -> String {
    passkey_views::login_page(notice, state.passkeys.settings.password_sign_in)
}

/// Checks the password and starts a pending session with a DBSC registration offer.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "login");
    }
    if !state.passkeys.settings.password_sign_in {
        tracing::info!(target: "security", "password sign-in rejected: passwords are turned off");
        state.metrics.refuse("login", "passwords_off");
        let notice = r#"<p class="notice">Your organisation signs in with passkeys only. Use "Sign in with a passkey".</p>"#;
        return (StatusCode::FORBIDDEN, Html(login_page(&state, notice))).into_response();
    }
    let Ok(Form(form)) = form else {
        state.metrics.refuse("login", "malformed_form");
        return (
            StatusCode::BAD_REQUEST,
            Html(login_page(
                &state,
                r#"<p class="notice">The sign-in form needs a user name and a password.</p>"#,
            )),
        )
            .into_response();
    };
    let now = state.clock.now();

    // A browser that already has a live bound session for this user is not offered a second
    // registration.
    if let Ok(current) = auth::authenticate(&state, &headers, now) {
        if current.user.name == form.username {
            return Redirect::to(routes::APP).into_response();
        }
    }

    let user = match check_password(&state, form).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    match start_session(&state, &user.id, now, None).await {
        Ok(response) => {
            state
                .metrics
                .sign_ins
                .get_or_create(&Outcome { outcome: "success" })
                .inc();
            response
        }
        Err(error) => internal_error("login", &error),
    }
}

async fn check_password(
    state: &AppState,
    form: LoginForm,
) -> Result<crate::store::UserRecord, Response> {
    let user = state
        .store
        .find_user_by_name(&form.username)
        .map_err(|error| internal_error("login", &error))?;
    let checked = user.clone();

    // Argon2 takes tens of milliseconds of CPU and 19 MiB; run a bounded number at a time, off
    // the async workers, and turn away sign-ins that cannot start within a few seconds.
    let permit = tokio::time::timeout(
        PASSWORD_CHECK_WAIT,
        state.password_checks.clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(_permit)) = permit else {
        tracing::info!(target: "security", "password sign-in rejected: too many in progress");
        state.metrics.refuse("login", "busy");
        let notice =
            r#"<p class="notice">Too many sign-ins are in progress. Try again in a moment.</p>"#;
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Html(login_page(state, notice)),
        )
            .into_response());
    };
    let verified = tokio::task::spawn_blocking(move || {
        account::verify_password(checked.as_ref(), &form.password)
    })
    .await;

    match (verified, user) {
        (Ok(Ok(())), Some(user)) => Ok(user),
        (Ok(Err(AccountError::Disabled)), Some(user)) => {
            tracing::info!(target: "security", user = %user.id, "password sign-in rejected: user disabled");
            state.audit(&Event::refused(
                "peer",
                "session.sign_in",
                format!("user:{}", user.id),
                "user_disabled",
            ));
            state.metrics.refuse("login", "user_disabled");
            let notice = r#"<p class="notice">This account is disabled. Ask your administrator to enable it.</p>"#;
            Err((StatusCode::FORBIDDEN, Html(login_page(state, notice))).into_response())
        }
        (Ok(Err(error)), user) => {
            tracing::info!(target: "security", reason = %error, "password sign-in rejected");
            // A wrong password for an existing account names it, so the entry is always kept.
            let target =
                user.map_or_else(|| "password".to_owned(), |user| format!("user:{}", user.id));
            state.audit(&Event::refused(
                "peer",
                "session.sign_in",
                target,
                "bad_credentials",
            ));
            state.metrics.refuse("login", "bad_credentials");
            state
                .metrics
                .sign_ins
                .get_or_create(&Outcome {
                    outcome: "rejected",
                })
                .inc();
            let notice = r#"<p class="notice">The user name or password is incorrect.</p>"#;
            Err((StatusCode::UNAUTHORIZED, Html(login_page(state, notice))).into_response())
        }
        _ => Err(internal_error(
            "login",
            &StoreError::Database("password check failed".into()),
        )),
    }
}

/// Starts a pending session for `user_id`, proved by `passkey` if it signed in with one, and
/// offers the browser a DBSC registration.
pub(super) async fn start_session(
    state: &AppState,
    user_id: &str,
    now: u64,
    passkey: Option<&Asserted>,
) -> Result<Response, StoreError> {
    let mut sign_in = {
        let mut rng = rand::thread_rng();
        dbsc::begin_sign_in(&state.policy, user_id, now, &mut rng)
    }
    .map_err(|error| StoreError::Database(error.to_string()))?;
    if let Some(asserted) = passkey {
        sign_in.session = binding::record_proof(&sign_in.session, asserted, now);
    }
    state.store.insert_session(&sign_in.session)?;
    state.store.insert_challenge(&sign_in.challenge)?;
    state.store.sync().await?;

    tracing::info!(
        target: "security",
        session = %sign_in.session.id,
        user = %user_id,
        passkey = sign_in.session.passkey_id.as_deref().unwrap_or("-"),
        "sign-in; DBSC registration offered"
    );
    state.audit(&Event::allowed(
        format!("user:{user_id}"),
        "session.sign_in",
        format!("session:{}", sign_in.session.id),
    ));
    let registration = HeaderValue::from_str(&sign_in.registration_header)
        .map_err(|error| StoreError::Database(error.to_string()))?;
    let body = page(
        "Signed in",
        &format!(
            r#"<meta http-equiv="refresh" content="2;url={app}">
<p>Binding this session to a key held by your browser…</p>
<p><a href="{app}">Continue</a></p>"#,
            app = routes::APP
        ),
    );
    Ok((
        [
            (HeaderName::from_static(headers::REGISTRATION), registration),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Html(body),
    )
        .into_response())
}

/// Shows the signed-in user and the binding state of this session.
pub async fn app(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "app") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let session = &current.session.record;
    let view = views::SessionView::new(session, Some(&session.id));
    let assurance = binding::effective_assurance(session, now, state.passkeys.settings.freshness);
    let passkey = passkey_summary(&state, session);
    let body = format!(
        r#"<p class="ok">Signed in as <strong>{user}</strong>.</p>
<table>
<tr><th>Session</th><td><code>{id}</code></td></tr>
<tr><th>Binding</th><td id="binding">{state}</td></tr>
<tr><th>Algorithm</th><td id="algorithm">{alg}</td></tr>
<tr><th>Assurance</th><td id="assurance">{assurance}</td></tr>
<tr><th>Device</th><td id="device"><code>{device}</code></td></tr>
<tr><th>Last proof</th><td id="last-proof">{last_proof}</td></tr>
<tr><th>Cookie expires</th><td id="cookie-expiry">{cookie_expiry}</td></tr>
<tr><th>Refreshes</th><td id="refreshes">{refreshes}</td></tr>
<tr><th>Passkey</th><td id="passkey">{passkey}</td></tr>
</table>
<p><a href="{sessions}">Your sessions</a> · <a href="{passkeys}">Your passkeys</a> · <a href="{devices}">Your devices</a></p>
<form method="post" action="{logout}"><button type="submit">Sign out</button></form>"#,
        user = escape(&current.user.name),
        id = escape(&session.id),
        state = view.state,
        alg = view.algorithm.unwrap_or("-"),
        assurance = assurance.name(),
        device = escape(view.device_id.as_deref().unwrap_or("-")),
        devices = routes::DEVICES,
        last_proof = view.last_proof_at.map_or_else(|| "-".to_owned(), utc),
        cookie_expiry = utc(session.credential_expires_at),
        refreshes = view.refresh_count,
        sessions = routes::SESSIONS,
        passkeys = routes::PASSKEYS,
        logout = routes::LOGOUT,
    );
    ([(CACHE_CONTROL, "no-store")], Html(page("devbound", &body))).into_response()
}

/// Describes the passkey that last proved the session, and when.
fn passkey_summary(state: &AppState, session: &crate::store::SessionRecord) -> String {
    let (Some(id), Some(proved_at)) = (&session.passkey_id, session.passkey_proof_at) else {
        return "none (signed in with a password)".to_owned();
    };
    let name = state
        .store
        .find_passkey(id)
        .ok()
        .flatten()
        .map_or_else(|| "a removed passkey".to_owned(), |passkey| passkey.name);
    format!("{}, proved {}", escape(&name), utc(proved_at))
}

/// Lists the user's sessions with a revoke button for each live one.
pub async fn sessions(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "sessions") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let sessions = match state.store.list_sessions(Some(&current.user.id)) {
        Ok(sessions) => sessions,
        Err(error) => return internal_error("sessions", &error),
    };

    let mut rows = String::new();
    for session in &sessions {
        let view = views::SessionView::new(session, Some(&current.session.record.id));
        let action = if session.is_live(now) && !view.current {
            format!(
                r#"<form method="post" action="{}"><button>Revoke</button></form>"#,
                escape(&routes::with_id(routes::SESSION_REVOKE, &session.id))
            )
        } else if view.current {
            "this browser".to_owned()
        } else {
            String::new()
        };
        let freshness = state.passkeys.settings.freshness;
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>\n",
            escape(&session.id),
            view.state,
            view.algorithm.unwrap_or("-"),
            binding::effective_assurance(session, now, freshness).name(),
            view.last_proof_at.map_or_else(|| "-".to_owned(), utc),
            session.passkey_proof_at.map_or_else(|| "-".to_owned(), utc),
            utc(session.created_at),
        ));
    }
    let body = format!(
        "<table><tr><th>Session</th><th>State</th><th>Algorithm</th><th>Assurance</th><th>Last proof</th><th>Passkey proof</th><th>Signed in</th><th></th></tr>\n{rows}</table>\n<p><a href=\"{}\">Back</a></p>",
        routes::APP
    );
    (
        [(CACHE_CONTROL, "no-store")],
        Html(page("Your sessions", &body)),
    )
        .into_response()
}

pub async fn revoke_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "revoke");
    }
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "revoke") {
        Ok(current) => current,
        Err(response) => return response,
    };
    match super::api::revoke_own(&state, &current, &id, now).await {
        Ok(_) => Redirect::to(routes::SESSIONS).into_response(),
        Err(response) => response,
    }
}

/// Ends this browser's session and clears its cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "logout");
    }
    let now = state.clock.now();
    let clear = [(SET_COOKIE, state.policy.cookie.clear())];
    let signed_out = Redirect::to(&format!("{}?reason=signed_out", routes::LOGIN));

    // Sign-out needs only the session's credential, current or just replaced, and not a fresh
    // one: a user whose cookie expired or whose browser skipped a refresh can still sign out.
    let session_id = match auth::session_for_sign_out(&state, &headers) {
        Ok(Some(session_id)) => session_id,
        Ok(None) => return (clear, signed_out).into_response(),
        Err(error) => return internal_error("logout", &error),
    };
    let ended = super::api::end_session(
        &state,
        &session_id,
        SessionState::SignedOut { at: now },
        now,
    )
    .await;
    match ended {
        Ok(Some(ended)) => {
            tracing::info!(target: "security", session = %ended.id, user = %ended.user_id, "signed out");
            state.audit(&Event::allowed(
                format!("user:{}", ended.user_id),
                "session.sign_out",
                format!("session:{}", ended.id),
            ));
            (clear, signed_out).into_response()
        }
        Ok(None) => (clear, signed_out).into_response(),
        Err(error) => internal_error("logout", &error),
    }
}

/// Returns the bound session of a page request, or a redirect to the sign-in page. A
/// passkey-bound session whose passkey proof is older than the freshness window is sent to the
/// step-up page first.
pub(super) fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
    endpoint: &'static str,
) -> Result<CurrentSession, Response> {
    match auth::authenticate(state, headers, now) {
        Ok(current) => {
            let freshness = state.passkeys.settings.freshness;
            if binding::needs_reproof(&current.session.record, now, freshness) {
                state.metrics.refuse(endpoint, "passkey_proof_expired");
                let return_to = match endpoint {
                    "sessions" => routes::SESSIONS,
                    "passkeys" => routes::PASSKEYS,
                    _ => routes::APP,
                };
                return Err(Redirect::to(&step_up::step_up_url(return_to)).into_response());
            }
            Ok(current)
        }
        Err(AuthError::Unauthenticated(reason)) => {
            tracing::debug!(target: "security", endpoint, reason = reason.reason(), "page request without a bound session");
            state.metrics.refuse(endpoint, reason.reason());
            let target = format!("{}?reason=unbound", routes::LOGIN);
            Err(Redirect::to(&target).into_response())
        }
        Err(AuthError::Store(error)) => Err(internal_error(endpoint, &error)),
    }
}

pub(super) fn forbidden_origin(state: &AppState, endpoint: &'static str) -> Response {
    tracing::info!(target: "security", endpoint, "cross-origin form post rejected");
    state.metrics.refuse(endpoint, "cross_origin");
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Forbidden",
            "<p>This form must be sent from devbound's own pages.</p>",
        )),
    )
        .into_response()
}

pub fn internal_error(endpoint: &'static str, error: &StoreError) -> Response {
    tracing::error!(endpoint, %error, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(page("Something went wrong", "<p>devbound could not complete this request. Try again; if it keeps failing, the operator can find the cause in the service log.</p>")),
    )
        .into_response()
}
