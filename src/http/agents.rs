//! Agent registry pages, JSON API and admin API, and the page where an owner approves an
//! agent's device authorization request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use super::admin::check_admin;
use super::api::api_session;
use super::pages::{forbidden_origin, internal_error, signed_in};
use super::views::{escape, page, utc};
use super::{AppState, auth, routes, step_up};
use crate::agent::{self, AgentError, ChangedBy, NewAgent};
use crate::audit::Event;
use crate::oauth::{OAuthError, device_grant};
use crate::store::{AgentRecord, AgentState, Assurance, DeviceGrantStatus};

/// An agent as an owner registers it through the JSON API.
#[derive(Debug, Deserialize)]
pub struct NewAgentJson {
    name: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "default_assurance")]
    required_assurance: Assurance,
    /// The owner's user name; only the admin API reads it.
    owner: Option<String>,
}

/// The registration form on the agents page: audiences and scopes separated by white space.
#[derive(Debug, Deserialize)]
pub struct NewAgentForm {
    name: String,
    audiences: String,
    scopes: String,
    required_assurance: Assurance,
}

#[derive(Debug, Deserialize)]
pub struct StateChange {
    state: AgentState,
}

#[derive(Debug, Deserialize)]
pub struct UserCodeQuery {
    user_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DeviceDecision {
    user_code: String,
    decision: String,
}

fn default_assurance() -> Assurance {
    Assurance::Tpm
}

impl From<NewAgentJson> for NewAgent {
    fn from(json: NewAgentJson) -> Self {
        Self {
            name: json.name,
            audiences: json.audiences,
            scopes: json.scopes,
            required_assurance: json.required_assurance,
        }
    }
}

// JSON API for owners.

pub async fn api_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = match api_session(&state, &headers, state.clock.now()) {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.store.list_agents(Some(&current.user.id)) {
        Ok(agents) => Json(json!({ "agents": agents })).into_response(),
        Err(error) => agent_error(AgentError::Store(error)),
    }
}

pub async fn api_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewAgentJson>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match owner_request(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Json(new)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body is not a valid agent",
        );
    };
    let by = ChangedBy::Owner(&current.user.id);
    match register(&state, &current.user.id, new.into(), by).await {
        Ok(agent) => (StatusCode::CREATED, Json(agent)).into_response(),
        Err(error) => agent_error(error),
    }
}

pub async fn api_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let current = match api_session(&state, &headers, state.clock.now()) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let found = agent::find_managed(
        state.store.as_ref(),
        &id,
        ChangedBy::Owner(&current.user.id),
    )
    .and_then(|agent| {
        let changes = state.store.list_agent_changes(&agent.id)?;
        Ok(json!({ "agent": agent, "changes": changes }))
    });
    match found {
        Ok(view) => Json(view).into_response(),
        Err(error) => agent_error(error),
    }
}

pub async fn api_set_state(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<StateChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let now = state.clock.now();
    let current = match owner_request(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Json(change)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body needs a state",
        );
    };
    change_state(
        &state,
        &id,
        change.state,
        ChangedBy::Owner(&current.user.id),
    )
    .await
}

pub async fn api_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = state.clock.now();
    let current = match owner_request(&state, &headers, now) {
        Ok(current) => current,
        Err(response) => return response,
    };
    change_state(
        &state,
        &id,
        AgentState::Revoked,
        ChangedBy::Owner(&current.user.id),
    )
    .await
}

// Admin API for operators.

pub async fn admin_list(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let listed = state.store.list_agents(None).and_then(|agents| {
        agents
            .into_iter()
            .map(|agent| {
                let owner = state.store.find_user(&agent.owner_id)?;
                let owner_name = owner.map_or_else(|| "-".to_owned(), |user| user.name);
                Ok(json!({ "agent": agent, "owner_name": owner_name }))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    match listed {
        Ok(agents) => Json(json!({ "agents": agents })).into_response(),
        Err(error) => agent_error(AgentError::Store(error)),
    }
}

pub async fn admin_create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<NewAgentJson>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let Ok(Json(new)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body is not a valid agent",
        );
    };
    let owner = match new
        .owner
        .as_deref()
        .map(|name| state.store.find_user_by_name(name))
    {
        Some(Ok(Some(owner))) => owner,
        Some(Err(error)) => return agent_error(AgentError::Store(error)),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "owner is not a known user name",
            );
        }
    };
    match register(&state, &owner.id, new.into(), ChangedBy::Operator).await {
        Ok(agent) => (StatusCode::CREATED, Json(agent)).into_response(),
        Err(error) => agent_error(error),
    }
}

pub async fn admin_set_state(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<StateChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let Ok(Json(change)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body needs a state",
        );
    };
    change_state(&state, &id, change.state, ChangedBy::Operator).await
}

/// Creates a new token signing key; the previous one stays published until its tokens expire.
pub async fn admin_rotate_keys(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_admin(&state, peer, &headers) {
        return response;
    }
    let now = state.clock.now();
    match state.oauth.keys.rotate(state.store.as_ref(), now) {
        Ok(kid) => {
            tracing::info!(target: "security", %kid, "access-token signing key rotated");
            Json(json!({ "kid": kid })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "signing key rotation failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "key rotation failed",
            )
        }
    }
}

// Pages for owners.

pub async fn agents_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = match signed_in(&state, &headers, state.clock.now(), "agents") {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.store.list_agents(Some(&current.user.id)) {
        Ok(agents) => page_response("Your agents", &agents_body(&agents)),
        Err(error) => internal_error("agents", &error),
    }
}

pub async fn create_agent_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<NewAgentForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "agents");
    }
    let current = match signed_in(&state, &headers, state.clock.now(), "agents") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return notice_page(StatusCode::BAD_REQUEST, "The agent form is incomplete.");
    };
    let new = NewAgent {
        name: form.name,
        audiences: form
            .audiences
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        scopes: form.scopes.split_whitespace().map(str::to_owned).collect(),
        required_assurance: form.required_assurance,
    };
    match register(
        &state,
        &current.user.id,
        new,
        ChangedBy::Owner(&current.user.id),
    )
    .await
    {
        Ok(_) => Redirect::to(routes::AGENTS).into_response(),
        Err(AgentError::Store(error)) => internal_error("agents", &error),
        Err(error) => notice_page(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

pub async fn agent_state_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<StateChange>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "agents");
    }
    let current = match signed_in(&state, &headers, state.clock.now(), "agents") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Form(change)) = form else {
        return notice_page(StatusCode::BAD_REQUEST, "The form needs a state.");
    };
    let response = change_state(
        &state,
        &id,
        change.state,
        ChangedBy::Owner(&current.user.id),
    )
    .await;
    if response.status().is_success() {
        return Redirect::to(routes::AGENTS).into_response();
    }
    response
}

/// `GET /device`: the owner enters or confirms an agent's user code.
pub async fn device_page(
    State(state): State<AppState>,
    Query(query): Query<UserCodeQuery>,
    headers: HeaderMap,
) -> Response {
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "device") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Some(typed) = query.user_code.filter(|code| !code.is_empty()) else {
        return page_response("Connect an agent", &user_code_form(""));
    };
    if let Err(response) = require_owner_step_up(&state, &current, &typed, now) {
        return response;
    }
    let found =
        device_grant::find_by_user_code(state.store.as_ref(), &typed, now).and_then(|grant| {
            let agent = state
                .store
                .find_agent(&grant.record.agent_id)?
                .filter(|agent| agent.owner_id == current.user.id)
                .ok_or(OAuthError::NotOwner)?;
            Ok((grant.record, agent))
        });
    match found {
        Ok((grant, agent)) if grant.status == DeviceGrantStatus::Pending => page_response(
            "Connect an agent",
            &confirm_body(&typed, &agent, &grant.scope),
        ),
        Ok(_) | Err(_) => notice_page(
            StatusCode::NOT_FOUND,
            "This code is unknown, expired or already used, or belongs to an agent you do not own.",
        ),
    }
}

/// `POST /device`: the owner approves or denies an agent's request.
pub async fn device_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<DeviceDecision>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !auth::same_origin(&state, &headers) {
        return forbidden_origin(&state, "device");
    }
    let now = state.clock.now();
    let current = match signed_in(&state, &headers, now, "device") {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return notice_page(
            StatusCode::BAD_REQUEST,
            "The form needs a user code and a decision.",
        );
    };
    if let Err(response) = require_owner_step_up(&state, &current, &form.user_code, now) {
        return response;
    }
    let approve = form.decision == "approve";
    let decided = device_grant::decide(
        state.store.as_ref(),
        &form.user_code,
        &current.user.id,
        approve,
        now,
    );
    match decided {
        Ok(grant) => {
            if let Err(error) = state.store.sync().await {
                return internal_error("device", &error);
            }
            tracing::info!(
                target: "security",
                agent = %grant.agent_id,
                user = %current.user.id,
                approved = approve,
                "owner decided an agent's device authorization"
            );
            let action = if approve {
                "device_grant.approve"
            } else {
                "device_grant.deny"
            };
            state.audit(&Event::allowed(
                format!("user:{}", current.user.id),
                action,
                format!("agent:{}", grant.agent_id),
            ));
            let message = if approve {
                "Approved. The agent can now get its token."
            } else {
                "Denied. The agent will not get a token."
            };
            page_response(
                "Connect an agent",
                &format!("<p class=\"ok\">{message}</p>"),
            )
        }
        Err(OAuthError::Store(error)) => internal_error("device", &error),
        Err(error) => {
            tracing::info!(target: "security", user = %current.user.id, condition = error.condition(), "device decision rejected");
            notice_page(
                StatusCode::NOT_FOUND,
                "This code is unknown, expired or already used, or belongs to an agent you do not own.",
            )
        }
    }
}

// Shared steps.

/// Demands a recent passkey proof from an owner who has a passkey before an agent may act for
/// them. An owner without one, signed in with a password where the operator allows it,
/// decides with the bound session alone.
fn require_owner_step_up(
    state: &AppState,
    current: &auth::CurrentSession,
    user_code: &str,
    now: u64,
) -> Result<(), Response> {
    let passkeys = state
        .store
        .list_passkeys(&current.user.id)
        .map_err(|error| internal_error("device", &error))?;
    if passkeys.is_empty() {
        return Ok(());
    }
    let code: String = url::form_urlencoded::byte_serialize(user_code.as_bytes()).collect();
    let return_to = format!("{}?user_code={code}", routes::DEVICE);
    step_up::require_page(state, current, None, &return_to, now)
}

async fn register(
    state: &AppState,
    owner_id: &str,
    new: NewAgent,
    by: ChangedBy<'_>,
) -> Result<AgentRecord, AgentError> {
    let now = state.clock.now();
    let agent = {
        let mut rng = rand::thread_rng();
        agent::register(state.store.as_ref(), owner_id, new, by, now, &mut rng)?
    };
    state.store.sync().await?;
    Ok(agent)
}

async fn change_state(state: &AppState, id: &str, next: AgentState, by: ChangedBy<'_>) -> Response {
    let now = state.clock.now();
    let changed = agent::set_state(state.store.as_ref(), id, next, by, now);
    let agent = match changed {
        Ok(agent) => agent,
        Err(error) => return agent_error(error),
    };
    if let Err(error) = state.store.sync().await {
        return agent_error(AgentError::Store(error));
    }
    Json(agent).into_response()
}

/// A signed-in owner's state-changing API request from devbound's own origin.
fn owner_request(
    state: &AppState,
    headers: &HeaderMap,
    now: u64,
) -> Result<auth::CurrentSession, Response> {
    if !auth::same_origin(state, headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "request came from another origin",
        ));
    }
    api_session(state, headers, now)
}

fn agent_error(error: AgentError) -> Response {
    let (status, code) = match &error {
        AgentError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        AgentError::NameTaken | AgentError::Revoked => (StatusCode::CONFLICT, "conflict"),
        AgentError::Store(store) => {
            tracing::error!(error = %store, "store failure in agent request");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            );
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_request"),
    };
    json_error(status, code, &error.to_string())
}

fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

fn page_response(title: &str, body: &str) -> Response {
    ([(CACHE_CONTROL, "no-store")], Html(page(title, body))).into_response()
}

fn notice_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<p class=\"notice\">{}</p><p><a href=\"{}\">Back</a></p>",
        escape(message),
        routes::AGENTS
    );
    (status, Html(page("Agents", &body))).into_response()
}

fn agents_body(agents: &[AgentRecord]) -> String {
    let mut rows = String::new();
    for agent in agents {
        let action = escape(&routes::with_id(routes::AGENT_STATE, &agent.id));
        let buttons = match agent.state {
            AgentState::Active => format!(
                r#"<form method="post" action="{action}"><button name="state" value="suspended">Suspend</button> <button name="state" value="revoked">Revoke</button></form>"#
            ),
            AgentState::Suspended => format!(
                r#"<form method="post" action="{action}"><button name="state" value="active">Resume</button> <button name="state" value="revoked">Revoke</button></form>"#
            ),
            AgentState::Revoked => String::new(),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{buttons}</td></tr>\n",
            escape(&agent.name),
            escape(&agent.id),
            escape(&agent.audiences.join(" ")),
            escape(&agent.scopes.join(" ")),
            agent.required_assurance.name(),
            agent.state.name(),
            utc(agent.created_at),
        ));
    }
    format!(
        r#"<table><tr><th>Name</th><th>Id</th><th>Audiences</th><th>Scopes</th><th>Requires</th><th>State</th><th>Created</th><th></th></tr>
{rows}</table>
<h2>Register an agent</h2>
<form method="post" action="{agents}">
<label>Name <input name="name" required></label>
<label>Audiences (https URIs, separated by spaces) <input name="audiences" required></label>
<label>Scopes (separated by spaces) <input name="scopes" required></label>
<label>Required assurance <select name="required_assurance"><option value="tpm">tpm</option><option value="passkey">passkey</option><option value="software">software</option></select></label>
<button type="submit">Register</button></form>
<p><a href="{device}">Connect an agent with a code</a> · <a href="{app}">Back</a></p>"#,
        agents = routes::AGENTS,
        device = routes::DEVICE,
        app = routes::APP,
    )
}

fn user_code_form(value: &str) -> String {
    format!(
        r#"<form method="get" action="{device}"><label>Code shown by the agent <input name="user_code" value="{value}" autocomplete="off" required autofocus></label><button type="submit">Continue</button></form>"#,
        device = routes::DEVICE,
        value = escape(value),
    )
}

fn confirm_body(user_code: &str, agent: &AgentRecord, scope: &[String]) -> String {
    format!(
        r#"<p>The agent <strong>{name}</strong> asks to act for you with scope <code>{scope}</code>, for <code>{audiences}</code>.</p>
<form method="post" action="{device}"><input type="hidden" name="user_code" value="{code}">
<button name="decision" value="approve">Approve</button> <button name="decision" value="deny">Deny</button></form>"#,
        name = escape(&agent.name),
        scope = escape(&scope.join(" ")),
        audiences = escape(&agent.audiences.join(" ")),
        device = routes::DEVICE,
        code = escape(user_code),
    )
}
