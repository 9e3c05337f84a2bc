//! Device endpoints. The owner has pages and an API for enrollment codes, device lists and
//! revocation, a device makes the two enrollment requests, and operators have a device API.
//! `GET /api/attested` is a route that demands a session at assurance `tpm`.

use std::net::SocketAddr;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::admin::{SessionFilter, check_admin};
use super::api::{api_error, api_error_store, api_session};
use super::auth::CurrentSession;
use super::pages::{forbidden_origin, internal_error, signed_in};
use super::routes;
use super::views::{escape, page, utc};
use crate::audit::Event;
use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::dbsc::headers;
use crate::device::{self, wire};
use crate::store::{Assurance, DeviceRecord, PendingEnrollment, StoreError, Versioned};
use crate::tpm::{self, EnrollmentRequest, EnrollmentResponse, TpmError};

/// A device as its owner and operators see it: evidence digests, never key material.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub assurance: &'static str,
    pub ek_certificate_sha256: Option<String>,
    pub ak_name: String,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
    pub revoked_by: Option<String>,
}

impl DeviceView {
    pub fn new(device: &DeviceRecord) -> Self {
        Self {
            id: device.id.clone(),
            owner_id: device.owner_id.clone(),
            name: device.name.clone(),
            assurance: device.assurance.name(),
            ek_certificate_sha256: device.ek_certificate_sha256.map(hex::encode),
            ak_name: hex::encode(&device.ak_name),
            created_at: device.created_at,
            revoked_at: device.revoked.as_ref().map(|revoked| revoked.at),
            revoked_by: device.revoked.as_ref().map(|revoked| revoked.by.clone()),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NewCode {
    name: String,
}

// ---- The owner's pages --------------------------------------------------------------------

/// Lists the user's devices, with a form to create an enrollment code.
pub async fn devices_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "devices") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let devices = match state.store.list_devices(Some(&current.user.id)) {
        Ok(devices) => devices,
        Err(error) => return internal_error("devices", &error),
    };
    let mut rows = String::new();
    for device in &devices {
        let action = if device.is_revoked() {
            "revoked".to_owned()
        } else {
            format!(
                r#"<form method="post" action="{}"><button>Revoke</button></form>"#,
                escape(&routes::with_id(routes::DEVICE_REVOKE, &device.id))
            )
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{action}</td></tr>\n",
            escape(&device.name),
            escape(&device.id),
            device.assurance.name(),
            utc(device.created_at),
        ));
    }
    let body = format!(
        r#"<table><tr><th>Name</th><th>Device</th><th>Assurance</th><th>Enrolled</th><th></th></tr>
{rows}</table>
<h2>Enroll a device</h2>
<form method="post" action="{codes}">
<label>Device name <input name="name" required maxlength="{max}"></label>
<button type="submit">Create enrollment code</button></form>
<p><a href="{app}">Back</a></p>"#,
        codes = routes::DEVICE_CODES,
        max = device::MAX_NAME_CHARS,
        app = routes::APP,
    );
    no_store(Html(page("Your devices", &body)))
}

/// Creates a one-time enrollment code and shows it once, with the command that uses it.
pub async fn create_code_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<NewCode>, FormRejection>,
) -> Response {
    if !super::auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "device_code");
    }
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "device_code") {
        Ok(current) => current,
        Err(response) => return response,
    };
    if let Err(response) = step_up_if_passkey(&state, &current, now, StepUpAnswer::Page) {
        return response;
    }
    let name = form.map(|Form(form)| form.name).unwrap_or_default();
    let (code, expires_at) = match create_code(&state, &current, &name, now).await {
        Ok(created) => created,
        Err(CodeFailure::Invalid(error)) => {
            let body = format!(
                r#"<p class="notice">{}</p><p><a href="{}">Back</a></p>"#,
                escape(&error.to_string()),
                routes::DEVICES
            );
            return (
                StatusCode::BAD_REQUEST,
                Html(page("Enroll a device", &body)),
            )
                .into_response();
        }
        Err(CodeFailure::Store(error)) => return internal_error("device_code", &error),
    };
    let body = format!(
        r#"<p>Run this on the device within 10 minutes (until {expires}). The code works once.</p>
<pre id="enroll-command">devbound device enroll --server {origin} --tcti device:/dev/tpmrm0 --code {code}</pre>
<p><a href="{devices}">Your devices</a></p>"#,
        expires = utc(expires_at),
        origin = escape(&state.policy.origin),
        code = escape(&code),
        devices = routes::DEVICES,
    );
    no_store(Html(page("Enroll a device", &body)))
}

/// The form of a step-up demand: a redirect for pages, a JSON error for the API.
#[derive(Debug, Clone, Copy)]
enum StepUpAnswer {
    Page,
    Json,
}

/// Demands a recent passkey proof before an enrollment code is made, from anyone who has a
/// passkey. An account without one cannot step up; the operator who wants every enrollment
/// confirmed by a passkey turns password sign-in off.
fn step_up_if_passkey(
    state: &AppState,
    current: &CurrentSession,
    now: u64,
    answer: StepUpAnswer,
) -> Result<(), Response> {
    let passkeys = state
        .store
        .list_passkeys(&current.user.id)
        .map_err(|error| internal_error("device_code", &error))?;
    if passkeys.is_empty() {
        return Ok(());
    }
    match answer {
        StepUpAnswer::Page => {
            super::step_up::require_page(state, current, None, routes::DEVICES, now)
        }
        StepUpAnswer::Json => {
            super::step_up::require_json(state, current, None, routes::DEVICES, now)
        }
    }
}

pub async fn revoke_device_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !super::auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "device_revoke");
    }
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "device_revoke") {
        Ok(current) => current,
        Err(response) => return response,
    };
    match revoke_own(&state, &current, &id, now).await {
        Ok(_) => Redirect::to(routes::DEVICES).into_response(),
        Err(response) => response,
    }
}

// ---- The owner's API ----------------------------------------------------------------------

pub async fn api_list_devices(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match api_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    list_response(&state, Some(&current.user.id))
}

pub async fn api_create_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewCode>, JsonRejection>,
) -> Response {
    if !super::auth::same_origin(&state, &headers) {
        return api_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "request came from another origin",
        );
    }
    let now = state.clock.now();
    let current = match api_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    if let Err(response) = step_up_if_passkey(&state, &current, now, StepUpAnswer::Json) {
        return response;
    }
    let Ok(Json(body)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be JSON with a device name",
        );
    };
    match create_code(&state, &current, &body.name, now).await {
        Ok((code, expires_at)) => (
            StatusCode::CREATED,
            [(CACHE_CONTROL, "no-store")],
            Json(
                json!({ "code": code, "device_name": body.name.trim(), "expires_at": expires_at }),
            ),
        )
            .into_response(),
        Err(CodeFailure::Invalid(_)) => api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "device name must be 1 to 64 printable characters",
        ),
        Err(CodeFailure::Store(error)) => api_error_store(&error),
    }
}

pub async fn api_revoke_device(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !super::auth::same_origin(&state, &headers) {
        return api_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "request came from another origin",
        );
    }
    let now = state.clock.now();
    let current = match api_session(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    match revoke_own(&state, &current, &id, now).await {
        Ok(device) => Json(DeviceView::new(&device)).into_response(),
        Err(response) => response,
    }
}

/// Answers only for a session at assurance `tpm`: an example of a route that demands it.
pub async fn api_attested(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let current = match require_assurance(&state, &headers, now, Assurance::Tpm) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let session = &current.session.record;
    Json(json!({
        "user": current.user.name,
        "session": session.id,
        "device_id": session.device_id,
        "assurance": session.assurance.name(),
    }))
    .into_response()
}

/// Authenticates the request and demands a session at `required` or stronger. A weaker session
/// gets 403 `insufficient_assurance`, naming what the route requires and what it has.
pub fn require_assurance(
    state: &AppState,
    headers: &HeaderMap,
    now: UnixTime,
    required: Assurance,
) -> Result<CurrentSession, Response> {
    let current = api_session(state, headers, now)?;
    if device::meets(&current.session.record, required) {
        return Ok(current);
    }
    let has = current.session.record.assurance;
    tracing::info!(
        target: "security",
        session = %current.session.record.id,
        required = required.name(),
        has = has.name(),
        "request refused: session assurance too low"
    );
    state.metrics.refuse("assurance", "insufficient_assurance");
    state.audit(&Event::refused(
        format!("session:{}", current.session.record.id),
        "route.require_assurance",
        format!("user:{}", current.user.id),
        format!("requires {}, has {}", required.name(), has.name()),
    ));
    Err((
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": "insufficient_assurance",
            "error_description": format!(
                "this route requires a session at assurance {}; this session is {}",
                required.name(),
                has.name()
            ),
            "required": required.name(),
            "assurance": has.name(),
        })),
    )
        .into_response())
}

// ---- Enrollment, called by the device -----------------------------------------------------

/// Checks the one-time code, the EK certificate, the EK and the AK, and answers with
/// MakeCredential's output and a nonce for TPM2_Certify.
pub async fn enroll_start(
    State(state): State<AppState>,
    body: Result<Json<wire::StartRequest>, JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let Ok(Json(body)) = body else {
        return enrollment_bad_request(&state, "start", "malformed_body");
    };
    let ek_certificate = match body.ek_certificate.as_deref().map(decode) {
        None => None,
        Some(Some(der)) => Some(der),
        Some(None) => return enrollment_bad_request(&state, "start", "malformed_encoding"),
    };
    let (Some(ek_public), Some(ak_public)) = (decode(&body.ek_public), decode(&body.ak_public))
    else {
        return enrollment_bad_request(&state, "start", "malformed_encoding");
    };

    let code = match state
        .store
        .consume_enrollment_code(&device::code_sha256(&body.code), now)
    {
        Ok(Some(code)) => code,
        Ok(None) => {
            tracing::info!(target: "security", "device enrollment refused: unknown, used or expired code");
            state.metrics.refuse("enrollment", "invalid_code");
            state.audit(&Event::refused(
                "device",
                "device.enroll",
                "code",
                "invalid_code",
            ));
            return api_error(
                StatusCode::UNAUTHORIZED,
                "invalid_code",
                "the enrollment code is unknown, used or expired; create a new one",
            );
        }
        Err(error) => return api_error_store(&error),
    };
    if let Some(refused) = reject_disabled_owner(&state, "start", &code.user_id) {
        return refused;
    }

    let request = EnrollmentRequest {
        ek_certificate: ek_certificate.as_deref(),
        ek_public: &ek_public,
        ak_public: &ak_public,
    };
    let (started, untrusted) = match start_or_fall_back(&state, request, now) {
        Ok(started) => started,
        Err(error) => return enrollment_refused(&state, "start", &code.user_id, &error),
    };
    let pending = PendingEnrollment {
        challenge: started.challenge,
        user_id: code.user_id,
        device_name: code.device_name,
        untrusted,
    };
    if let Err(error) =
        store_and_sync(&state, |store| store.insert_pending_enrollment(&pending)).await
    {
        return api_error_store(&error);
    }
    tracing::info!(
        target: "security",
        user = %pending.user_id,
        ak_name = %hex::encode(&pending.challenge.ak_name),
        untrusted = pending.untrusted.as_deref().unwrap_or("-"),
        "device enrollment started; credential issued"
    );
    let response = wire::StartResponse {
        challenge_id: pending.challenge.id.clone(),
        credential_blob: base64url::encode(&started.credential.credential_blob),
        encrypted_secret: base64url::encode(&started.credential.encrypted_secret),
        certify_nonce: base64url::encode(&pending.challenge.certify_nonce),
    };
    no_store(Json(response))
}

/// Consumes the challenge, checks the activated secret and the certification, records the
/// device and offers a DBSC registration that only the certified key can complete.
pub async fn enroll_finish(
    State(state): State<AppState>,
    body: Result<Json<wire::FinishRequest>, JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let Ok(Json(body)) = body else {
        return enrollment_bad_request(&state, "finish", "malformed_body");
    };
    let (Some(secret), Some(key_public), Some(certify_info), Some(signature)) = (
        decode(&body.activated_secret),
        decode(&body.key_public),
        decode(&body.certify_info),
        decode(&body.signature),
    ) else {
        return enrollment_bad_request(&state, "finish", "malformed_encoding");
    };

    // The challenge is spent by this request whatever its outcome: a second answer is refused.
    let pending = match state.store.consume_pending_enrollment(&body.challenge_id) {
        Ok(pending) => pending,
        Err(error) => return api_error_store(&error),
    };
    let user_id = pending
        .as_ref()
        .map_or("-", |p| p.user_id.as_str())
        .to_owned();
    let response = EnrollmentResponse {
        activated_secret: &secret,
        key_public: &key_public,
        certify_info: &certify_info,
        signature: &signature,
    };
    let enrollment = tpm::finish_enrollment(
        pending.as_ref().map(|pending| pending.challenge.clone()),
        response,
        now,
    );
    let Some(pending) = pending else {
        let error = enrollment.err().unwrap_or(TpmError::UnknownChallenge);
        return enrollment_refused(&state, "finish", &user_id, &error);
    };
    if let Some(refused) = reject_disabled_owner(&state, "finish", &user_id) {
        return refused;
    }

    let (device, sign_in) = {
        let mut rng = rand::thread_rng();
        let device = match device_for(&state, &pending, enrollment, &key_public, now, &mut rng) {
            Ok(device) => device,
            Err(error) => return enrollment_refused(&state, "finish", &user_id, &error),
        };
        let sign_in = device::begin_device_session(&state.policy, &device, now, &mut rng);
        (device, sign_in)
    };
    let Ok(sign_in) = sign_in else {
        return api_error_store(&StoreError::Database("registration header".into()));
    };
    let stored = store_and_sync(&state, |store| {
        if !store.insert_device(&device)? {
            return Err(StoreError::Database("device id collision".into()));
        }
        store.insert_session(&sign_in.session)?;
        store.insert_challenge(&sign_in.challenge)
    })
    .await;
    if let Err(error) = stored {
        return api_error_store(&error);
    }
    tracing::info!(
        target: "security",
        device = %device.id,
        user = %device.owner_id,
        assurance = device.assurance.name(),
        ak_name = %hex::encode(&device.ak_name),
        session = %sign_in.session.id,
        "device enrolled; DBSC registration offered for its session key"
    );
    state.audit(&Event::allowed(
        format!("user:{}", device.owner_id),
        "device.enroll",
        format!("device:{}", device.id),
    ));
    state
        .metrics
        .registrations
        .get_or_create(&crate::metrics::Outcome {
            outcome: "device_enrolled",
        })
        .inc();
    let Ok(registration) = HeaderValue::from_str(&sign_in.registration_header) else {
        return api_error_store(&StoreError::Database("registration header".into()));
    };
    (
        [
            (HeaderName::from_static(headers::REGISTRATION), registration),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(wire::FinishResponse {
            device_id: device.id,
            assurance: device.assurance.name().to_owned(),
        }),
    )
        .into_response()
}

/// Runs the `tpm` checks of the start request. When they fail and policy allows, starts an
/// enrollment that can only end at `software`, and returns the reason it is untrusted.
fn start_or_fall_back(
    state: &AppState,
    request: EnrollmentRequest<'_>,
    now: UnixTime,
) -> Result<(tpm::EnrollmentStart, Option<String>), TpmError> {
    let mut rng = rand::thread_rng();
    let error = match tpm::start_enrollment(&state.enrollment, request, now, &mut rng) {
        Ok(started) => return Ok((started, None)),
        Err(error) => error,
    };
    if !(state.software_fallback && error.is_evidence()) {
        return Err(error);
    }
    // MakeCredential needs an RSA EK and a parseable AK; without them the device is refused.
    let started = tpm::start_untrusted_enrollment(&state.enrollment, request, now, &mut rng)
        .map_err(|_| error.clone())?;
    Ok((started, Some(error.reason().to_owned())))
}

/// Builds the device record a finished enrollment yields: `tpm` only if every check of both
/// requests passed, `software` if one failed and policy allows it, and otherwise the error.
fn device_for(
    state: &AppState,
    pending: &PendingEnrollment,
    enrollment: Result<tpm::TpmEnrollment, TpmError>,
    key_public: &[u8],
    now: UnixTime,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<DeviceRecord, TpmError> {
    let (session_key, reason) = match enrollment {
        Ok(enrollment) if pending.untrusted.is_none() => {
            return Ok(device::enrolled_device(pending, enrollment, now, rng));
        }
        Ok(enrollment) => (enrollment.session_key, pending.untrusted.clone()),
        Err(error) if state.software_fallback && error.is_evidence() => {
            // The key must still be a P-256 key: the DBSC registration proves possession of it.
            let key = tpm::TpmPublic::from_tpm2b(key_public)
                .and_then(|public| public.p256_jwk())
                .map_err(|_| error.clone())?;
            (key, Some(error.reason().to_owned()))
        }
        Err(error) => return Err(error),
    };
    tracing::info!(
        target: "security",
        user = %pending.user_id,
        reason = reason.as_deref().unwrap_or("-"),
        "device failed a TPM check; enrolling it at assurance software as configured"
    );
    Ok(device::software_device(pending, session_key, now, rng))
}

// ---- The operator's API -------------------------------------------------------------------

pub async fn admin_list_devices(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(filter): Query<SessionFilter>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let owner_id = match filter
        .user
        .as_deref()
        .map(|name| state.store.find_user_by_name(name))
    {
        None => None,
        Some(Ok(Some(user))) => Some(user.id),
        Some(Ok(None)) => return api_error(StatusCode::NOT_FOUND, "not_found", "no such user"),
        Some(Err(error)) => return api_error_store(&error),
    };
    list_response(&state, owner_id.as_deref())
}

pub async fn admin_revoke_device(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let now = state.clock.now();
    let device = match state.store.find_device(&id) {
        Ok(Some(device)) => device,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, "not_found", "no such device"),
        Err(error) => return api_error_store(&error),
    };
    match revoke_device(&state, device, "operator", now).await {
        Ok(device) => Json(DeviceView::new(&device)).into_response(),
        Err(error) => api_error_store(&error),
    }
}

// ---- Shared steps -------------------------------------------------------------------------

/// Checks whether a session belongs to a device that is revoked or gone; refresh ends such a
/// session.
pub fn device_revoked(state: &AppState, device_id: &str) -> Result<bool, StoreError> {
    Ok(state
        .store
        .find_device(device_id)?
        .is_none_or(|device| device.record.is_revoked()))
}

/// Finds the device a registered session claims, for [`device::bind_to_device`].
pub fn session_device(
    state: &AppState,
    device_id: Option<&str>,
) -> Result<Option<DeviceRecord>, StoreError> {
    match device_id {
        Some(id) => Ok(state.store.find_device(id)?.map(|device| device.record)),
        None => Ok(None),
    }
}

enum CodeFailure {
    Invalid(device::DeviceError),
    Store(StoreError),
}

async fn create_code(
    state: &AppState,
    current: &CurrentSession,
    name: &str,
    now: UnixTime,
) -> Result<(String, UnixTime), CodeFailure> {
    let new = {
        let mut rng = rand::thread_rng();
        device::new_enrollment_code(&current.user.id, name, now, &mut rng)
    }
    .map_err(CodeFailure::Invalid)?;
    store_and_sync(state, |store| store.insert_enrollment_code(&new.record))
        .await
        .map_err(CodeFailure::Store)?;
    tracing::info!(
        target: "security",
        user = %current.user.id,
        session = %current.session.record.id,
        "device enrollment code created"
    );
    state.audit(&Event::allowed(
        format!("session:{}", current.session.record.id),
        "device.enrollment_code",
        format!("user:{}", current.user.id),
    ));
    Ok((new.code.expose().to_owned(), new.record.expires_at))
}

/// Revokes one of the signed-in user's devices. Another user's device is reported as not
/// found, so that device ids cannot be probed.
async fn revoke_own(
    state: &AppState,
    current: &CurrentSession,
    id: &str,
    now: UnixTime,
) -> Result<DeviceRecord, Response> {
    let device = state
        .store
        .find_device(id)
        .map_err(|error| api_error_store(&error))?
        .filter(|device| device.record.owner_id == current.user.id)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, "not_found", "no such device"))?;
    revoke_device(state, device, "owner", now)
        .await
        .map_err(|error| api_error_store(&error))
}

/// Revokes a device and its live sessions, durably.
async fn revoke_device(
    state: &AppState,
    device: Versioned<DeviceRecord>,
    by: &str,
    now: UnixTime,
) -> Result<DeviceRecord, StoreError> {
    let revoked = device::revoke_stored(state.store.as_ref(), &device.record.id, by, now)?
        .ok_or_else(|| StoreError::Database("device disappeared".into()))?;
    state.store.sync().await?;
    tracing::info!(
        target: "security",
        device = %revoked.device.id,
        user = %revoked.device.owner_id,
        by,
        sessions = ?revoked.ended_sessions,
        "device revoked with its sessions"
    );
    state.audit(&Event::allowed(
        by.to_owned(),
        "device.revoke",
        format!("device:{}", revoked.device.id),
    ));
    Ok(revoked.device)
}

fn list_response(state: &AppState, owner_id: Option<&str>) -> Response {
    match state.store.list_devices(owner_id) {
        Ok(devices) => {
            let views: Vec<DeviceView> = devices.iter().map(DeviceView::new).collect();
            Json(json!({ "devices": views })).into_response()
        }
        Err(error) => api_error_store(&error),
    }
}

/// Rejects an enrollment step for a user an operator disabled after the code was made, or
/// returns `None` to go on.
fn reject_disabled_owner(state: &AppState, step: &'static str, user_id: &str) -> Option<Response> {
    match state.store.user_disabled(user_id) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(error) => return Some(api_error_store(&error)),
    }
    tracing::info!(target: "security", step, user = %user_id, "device enrollment rejected: user disabled");
    state.metrics.refuse("enrollment", "user_disabled");
    state.audit(&Event::refused(
        format!("user:{user_id}"),
        "device.enroll",
        step,
        "user_disabled",
    ));
    let body = json!({
        "error": "enrollment_refused",
        "reason": "user_disabled",
        "error_description": "the device's owner is disabled; ask an administrator to enable the account",
    });
    Some((StatusCode::FORBIDDEN, Json(body)).into_response())
}

fn enrollment_refused(
    state: &AppState,
    step: &'static str,
    user_id: &str,
    error: &TpmError,
) -> Response {
    if let TpmError::Internal(_) = error {
        tracing::error!(step, %error, "device enrollment failed inside the server");
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        );
    }
    tracing::info!(
        target: "security",
        step,
        user = %user_id,
        reason = error.reason(),
        %error,
        "device enrollment refused"
    );
    state.metrics.refuse("enrollment", error.reason());
    state.audit(&Event::refused(
        format!("user:{user_id}"),
        "device.enroll",
        step,
        error.reason(),
    ));
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": "enrollment_refused",
            "reason": error.reason(),
            "error_description": error.to_string(),
        })),
    )
        .into_response()
}

fn enrollment_bad_request(state: &AppState, step: &'static str, reason: &'static str) -> Response {
    tracing::info!(target: "security", step, reason, "device enrollment request malformed");
    state.metrics.refuse("enrollment", reason);
    api_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "body must be JSON with base64url TPM structures",
    )
}

fn decode(text: &str) -> Option<Vec<u8>> {
    base64url::decode(text).ok()
}

/// Runs store writes, then waits until they are durable.
async fn store_and_sync(
    state: &AppState,
    write: impl FnOnce(&dyn crate::store::Store) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    write(state.store.as_ref())?;
    state.store.sync().await
}

fn no_store(body: impl IntoResponse) -> Response {
    ([(CACHE_CONTROL, "no-store")], body).into_response()
}
