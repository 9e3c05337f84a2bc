//! `devbound agent ...`: the operator's registry commands, and the agent's own commands that
//! log in through the device grant, get DPoP-bound tokens and call protected URLs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::operator::{Backend, open, remote_call};
use super::{AgentCommand, AgentConnection, DataDir};
use crate::agent::{self, ChangedBy, NewAgent};
use crate::client::{AgentClient, SessionKey, https_client};
use crate::clock::{Clock, SystemClock};
use crate::crypto::base64url;
use crate::http::{SERVER_FILE, ServerInfo, routes};
use crate::store::{AgentState, Assurance, Store};

/// The login that `devbound agent login` saves for later commands. The file is readable only
/// by its owner because it contains the session key and the grant token.
#[derive(Serialize, Deserialize)]
struct SavedAgent {
    server: String,
    ca_cert: PathBuf,
    agent_id: String,
    /// The ES256 session key's private scalar, base64url.
    key: String,
    session_id: Option<String>,
    grant_token: Option<String>,
}

pub async fn run(command: AgentCommand) -> Result<(), String> {
    match command {
        AgentCommand::Add {
            name,
            owner,
            scopes,
            audiences,
            require,
            data,
        } => {
            let new = NewAgent {
                name,
                audiences,
                scopes,
                required_assurance: parse_assurance(&require)?,
            };
            let agent = add(&data, &owner, new).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&agent).unwrap_or_default()
            );
            Ok(())
        }
        AgentCommand::List { data } => list(&data).await,
        AgentCommand::Suspend { id, data } => set_state(&data, &id, AgentState::Suspended).await,
        AgentCommand::Resume { id, data } => set_state(&data, &id, AgentState::Active).await,
        AgentCommand::Revoke { id, data } => set_state(&data, &id, AgentState::Revoked).await,
        AgentCommand::Login {
            agent,
            scope,
            connection,
        } => login(&connection, &agent, scope.as_deref()).await,
        AgentCommand::Token {
            audiences,
            scope,
            connection,
        } => token(&connection, &audiences, scope.as_deref()).await,
        AgentCommand::Call {
            target,
            token,
            method,
            api_ca_cert,
            connection,
        } => {
            call(
                &connection,
                &target,
                &token,
                &method,
                api_ca_cert.as_deref(),
            )
            .await
        }
    }
}

async fn add(data: &DataDir, owner: &str, new: NewAgent) -> Result<Value, String> {
    match open(data)? {
        Backend::Direct(store) => {
            let owner = store
                .find_user_by_name(owner)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no user named {owner}"))?;
            let now = SystemClock.now();
            let agent = agent::register(
                &store,
                &owner.id,
                new,
                ChangedBy::Operator,
                now,
                &mut rand::thread_rng(),
            )
            .map_err(|error| error.to_string())?;
            store.flush_now().map_err(|error| error.to_string())?;
            serde_json::to_value(agent).map_err(|error| error.to_string())
        }
        remote => {
            let body = json!({
                "owner": owner,
                "name": new.name,
                "scopes": new.scopes,
                "audiences": new.audiences,
                "required_assurance": new.required_assurance,
            });
            remote_call(
                &remote,
                reqwest::Method::POST,
                routes::ADMIN_AGENTS,
                Some(body),
            )
            .await
        }
    }
}

async fn list(data: &DataDir) -> Result<(), String> {
    let agents: Vec<Value> = match open(data)? {
        Backend::Direct(store) => store
            .list_agents(None)
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|agent| json!({ "agent": agent }))
            .collect(),
        remote => {
            remote_call(&remote, reqwest::Method::GET, routes::ADMIN_AGENTS, None).await?["agents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    for entry in agents {
        let agent = &entry["agent"];
        println!(
            "{}\t{}\t{}\towner {}\t{}",
            agent["id"].as_str().unwrap_or("-"),
            agent["name"].as_str().unwrap_or("-"),
            agent["state"].as_str().unwrap_or("-"),
            entry["owner_name"]
                .as_str()
                .or(agent["owner_id"].as_str())
                .unwrap_or("-"),
            agent["required_assurance"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

async fn set_state(data: &DataDir, id: &str, state: AgentState) -> Result<(), String> {
    match open(data)? {
        Backend::Direct(store) => {
            agent::set_state(&store, id, state, ChangedBy::Operator, SystemClock.now())
                .map_err(|error| error.to_string())?;
            store.flush_now().map_err(|error| error.to_string())?;
        }
        remote => {
            let path = routes::with_id(routes::ADMIN_AGENT_STATE, id);
            let body = json!({ "state": state });
            remote_call(&remote, reqwest::Method::POST, &path, Some(body)).await?;
        }
    }
    println!("agent {id} is now {}", state.name());
    Ok(())
}

async fn login(
    connection: &AgentConnection,
    agent_id: &str,
    scope: Option<&str>,
) -> Result<(), String> {
    let (server, ca_cert) = server_of(connection)?;
    let key = SessionKey::generate(crate::crypto::Algorithm::Es256)?;
    let scalar = match &key {
        SessionKey::Es256(signing) => base64url::encode(signing.to_bytes()),
        SessionKey::Rs256(_) => return Err("agent keys are ES256".into()),
    };
    let mut client = agent_client(&server, &[&ca_cert], agent_id, key)?;
    client
        .login(scope, |authorization| {
            eprintln!(
                "To let this agent act for you, open {} and enter the code {}",
                authorization.verification_uri, authorization.user_code
            );
        })
        .await
        .map_err(|error| error.to_string())?;
    let state = SavedAgent {
        server,
        ca_cert,
        agent_id: agent_id.to_owned(),
        key: scalar,
        session_id: client.session_id.clone(),
        grant_token: client.grant_token.clone(),
    };
    save_state(&connection.state, &state)?;
    eprintln!("logged in; saved to {}", connection.state.display());
    Ok(())
}

async fn token(
    connection: &AgentConnection,
    audiences: &[String],
    scope: Option<&str>,
) -> Result<(), String> {
    let mut client = load_client(connection, None)?;
    // Prove possession of the session key first, so that the session is fresh.
    client
        .refresh_session()
        .await
        .map_err(|error| error.to_string())?;
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let issued = client
        .token(&audiences, scope)
        .await
        .map_err(|error| error.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }))
        .unwrap_or_default()
    );
    Ok(())
}

async fn call(
    connection: &AgentConnection,
    url: &str,
    token: &str,
    method: &str,
    api_ca_cert: Option<&Path>,
) -> Result<(), String> {
    let client = load_client(connection, api_ca_cert)?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let response = client
        .call(method, url, token)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    Ok(())
}

/// Finds the service URL and certificate: from the flags, or the data directory's server file.
fn server_of(connection: &AgentConnection) -> Result<(String, PathBuf), String> {
    if let (Some(url), Some(cert)) = (&connection.url, &connection.ca_cert) {
        return Ok((url.clone(), cert.clone()));
    }
    let path = connection.data.data_dir.join(SERVER_FILE);
    let info: ServerInfo = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            format!(
                "{} is missing; pass --url and --ca-cert, or the service's --data-dir",
                path.display()
            )
        })?;
    Ok((
        connection.url.clone().unwrap_or(info.url),
        connection.ca_cert.clone().unwrap_or(info.cert),
    ))
}

fn agent_client(
    server: &str,
    ca_certs: &[&Path],
    agent_id: &str,
    key: SessionKey,
) -> Result<AgentClient, String> {
    let mut pem = Vec::new();
    for path in ca_certs {
        let cert = std::fs::read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        pem.extend_from_slice(&cert);
        pem.push(b'\n');
    }
    let http = https_client(&pem).map_err(|error| error.to_string())?;
    Ok(AgentClient::new(
        http,
        server,
        agent_id,
        key,
        Arc::new(SystemClock),
    ))
}

fn load_client(
    connection: &AgentConnection,
    extra_ca_cert: Option<&Path>,
) -> Result<AgentClient, String> {
    let path = &connection.state;
    let state: SavedAgent = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            format!(
                "{} is missing or invalid; run `devbound agent login` first",
                path.display()
            )
        })?;
    let scalar = base64url::decode(&state.key).map_err(|_| "the saved key is invalid")?;
    let signing =
        p256::ecdsa::SigningKey::from_slice(&scalar).map_err(|_| "the saved key is invalid")?;
    let key = SessionKey::Es256(Box::new(signing));
    let mut ca_certs = vec![state.ca_cert.as_path()];
    ca_certs.extend(extra_ca_cert);
    let mut client = agent_client(&state.server, &ca_certs, &state.agent_id, key)?;
    client.session_id = state.session_id;
    client.grant_token = state.grant_token;
    Ok(client)
}

fn save_state(path: &Path, state: &SavedAgent) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(state).map_err(|error| error.to_string())?;
    crate::tls::write_private(path, &json).map_err(|error| error.to_string())
}

fn parse_assurance(name: &str) -> Result<Assurance, String> {
    match name {
        "software" => Ok(Assurance::Software),
        "passkey" => Ok(Assurance::Passkey),
        "tpm" => Ok(Assurance::Tpm),
        other => Err(format!(
            "{other:?} is not an assurance level; use software, passkey or tpm"
        )),
    }
}
