//! Operator commands: `devbound user ...` and `devbound session ...`.
//!
//! sled allows one process per database, so these commands open the database directly only
//! when the service is stopped. While it runs they call its admin API on loopback with the
//! admin token from the data directory.

use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};

use super::{AuditCommand, DataDir, ListFilter, SessionCommand, UserCommand};
use crate::account;
use crate::audit::{self, Event};
use crate::clock::{Clock, SystemClock};
use crate::dbsc;
use crate::http::routes;
use crate::http::{
    ADMIN_TOKEN_FILE, InviteView, SERVER_FILE, ServerInfo, SessionView, create_invite,
    set_user_disabled,
};
use crate::store::{AuditEntry, SessionState, SledStore, Store, StoreError, Update};

pub(super) enum Backend {
    Direct(SledStore),
    Remote {
        http: reqwest::Client,
        url: String,
        token: String,
    },
}

pub async fn user(command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Add { name, data, .. } => {
            let password = read_password()?;
            add_user(&open_or_create(&data)?, &name, &password).await
        }
        UserCommand::Invite { name, data } => {
            let invite = invite_user(&open_or_create(&data)?, &data, &name).await?;
            println!("{}", invite.url);
            eprintln!(
                "devbound: send this link to {}; it works once, until {}",
                invite.user,
                crate::http::utc(invite.expires_at)
            );
            Ok(())
        }
        UserCommand::List { data } => {
            let users = match open(&data)? {
                Backend::Direct(store) => {
                    let users = store.list_users().map_err(|error| error.to_string())?;
                    users
                        .into_iter()
                        .map(|user| {
                            json!({
                                "id": user.id,
                                "name": user.name,
                                "created_at": user.created_at,
                                "disabled_at": user.disabled_at,
                            })
                        })
                        .collect()
                }
                remote => remote_call(&remote, reqwest::Method::GET, routes::ADMIN_USERS, None)
                    .await?["users"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            };
            for user in users {
                let state = if user["disabled_at"].is_u64() {
                    "disabled"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{state}",
                    user["name"].as_str().unwrap_or("-"),
                    user["id"].as_str().unwrap_or("-")
                );
            }
            Ok(())
        }
        UserCommand::Disable { name, data } => {
            let ended = change_user(&open(&data)?, &name, true).await?;
            let sessions = if ended == 1 { "session" } else { "sessions" };
            println!("disabled user {name}; revoked {ended} live {sessions}");
            Ok(())
        }
        UserCommand::Enable { name, data } => {
            change_user(&open(&data)?, &name, false).await?;
            println!("enabled user {name}");
            Ok(())
        }
    }
}

/// Disables or enables a user, directly in the database or through the running service.
/// Returns the number of live sessions that disabling revoked.
async fn change_user(backend: &Backend, name: &str, disabled: bool) -> Result<u64, String> {
    match backend {
        Backend::Direct(store) => {
            let change = set_user_disabled(store, name, disabled, SystemClock.now())
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no user named {name:?}"))?;
            let action = if disabled {
                "user.disable"
            } else {
                "user.enable"
            };
            append_audit(
                store,
                &Event::allowed("operator", action, format!("user:{}", change.user.id)),
            )?;
            store.flush_now().map_err(|error| error.to_string())?;
            if let Some((session, error)) = change.failed_sessions.first() {
                return Err(format!(
                    "user {name} is disabled, but {} sessions could not be revoked \
                     (session {session}: {error}); run the command again",
                    change.failed_sessions.len()
                ));
            }
            Ok(change.ended_sessions as u64)
        }
        remote => {
            let route = if disabled {
                routes::ADMIN_USER_DISABLE
            } else {
                routes::ADMIN_USER_ENABLE
            };
            let path = routes::with_id(route, name);
            let body = remote_call(remote, reqwest::Method::POST, &path, None).await?;
            Ok(body["ended_sessions"].as_u64().unwrap_or(0))
        }
    }
}

pub async fn session(command: SessionCommand) -> Result<(), String> {
    match command {
        SessionCommand::List(ListFilter { user, json, data }) => {
            let sessions = list_sessions(&open(&data)?, user.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&sessions).unwrap_or_default()
                );
            } else {
                print_sessions(&sessions);
            }
            Ok(())
        }
        SessionCommand::Revoke { id, data } => {
            let backend = open(&data)?;
            revoke_session(&backend, &id).await?;
            println!("revoked session {id}");
            Ok(())
        }
    }
}

fn read_password() -> Result<String, String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|error| format!("cannot read the password from standard input: {error}"))?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_owned())
}

/// Opens the service's state in `data`. Only `user add` may create a new data directory, and
/// it prints a note when it does, because a mistyped `--data-dir` would otherwise leave the user in a database the
/// service never reads.
fn open_or_create(data: &DataDir) -> Result<Backend, String> {
    use std::os::unix::fs::DirBuilderExt;

    let dir = &data.data_dir;
    if !dir.join("db").exists() {
        // Owner-only, as `serve` creates it, because the database contains password hashes.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        eprintln!(
            "devbound: created a new database in {}; start the service with --data-dir {0}",
            dir.display()
        );
    }
    connect(dir)
}

pub(super) fn open(data: &DataDir) -> Result<Backend, String> {
    let dir = &data.data_dir;
    if !dir.join("db").exists() {
        return Err(format!(
            "no devbound database in {}; pass the --data-dir the service uses",
            dir.display()
        ));
    }
    connect(dir)
}

/// Opens the database directly, or reaches the running service that has it open.
fn connect(dir: &Path) -> Result<Backend, String> {
    match SledStore::open(dir) {
        Ok(store) => Ok(Backend::Direct(store)),
        Err(StoreError::Locked(_)) => remote(dir),
        Err(error) => Err(error.to_string()),
    }
}

fn remote(dir: &Path) -> Result<Backend, String> {
    let info_path = dir.join(SERVER_FILE);
    let info: ServerInfo = std::fs::read(&info_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            format!(
                "the database is in use but {} is missing or invalid",
                info_path.display()
            )
        })?;
    let token = std::fs::read_to_string(dir.join(ADMIN_TOKEN_FILE))
        .map_err(|error| format!("cannot read the admin token in {}: {error}", dir.display()))?;
    let cert = std::fs::read(&info.cert)
        .map_err(|error| format!("cannot read {}: {error}", info.cert.display()))?;
    let http = crate::client::https_client(&cert).map_err(|error| error.to_string())?;
    Ok(Backend::Remote {
        http,
        url: info.url,
        token: token.trim().to_owned(),
    })
}

pub(super) async fn remote_call(
    backend: &Backend,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let Backend::Remote { http, url, token } = backend else {
        return Err("not connected to a running service".into());
    };
    let mut request = http
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("cannot reach devbound at {url}: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(body["error_description"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned())
    }
}

/// Creates an invitation directly in the database, or through the running service.
async fn invite_user(backend: &Backend, data: &DataDir, name: &str) -> Result<InviteView, String> {
    match backend {
        Backend::Direct(store) => {
            // The service is stopped; the link uses the public origin it last served on.
            let origin = std::fs::read(data.data_dir.join(SERVER_FILE))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<ServerInfo>(&bytes).ok())
                .map_or_else(
                    || "https://localhost:8443".to_owned(),
                    |info| info.public_url.unwrap_or(info.url),
                );
            let invite = create_invite(store, name, &origin, SystemClock.now())
                .await
                .map_err(|error| error.to_string())??;
            store.flush_now().map_err(|error| error.to_string())?;
            Ok(invite)
        }
        remote => {
            let path = routes::with_id(routes::ADMIN_USER_INVITE, name);
            let body = remote_call(remote, reqwest::Method::POST, &path, None).await?;
            serde_json::from_value(body).map_err(|error| format!("unexpected answer: {error}"))
        }
    }
}

async fn add_user(backend: &Backend, name: &str, password: &str) -> Result<(), String> {
    match backend {
        Backend::Direct(store) => {
            let user =
                account::new_user(name, password, SystemClock.now(), &mut rand::thread_rng())
                    .map_err(|error| error.to_string())?;
            if !store
                .insert_user(&user)
                .map_err(|error| error.to_string())?
            {
                return Err(format!("a user named {name:?} exists already"));
            }
            append_audit(
                store,
                &Event::allowed("operator", "user.create", format!("user:{}", user.id)),
            )?;
            store.flush_now().map_err(|error| error.to_string())?;
        }
        remote => {
            let body = json!({ "name": name, "password": password });
            remote_call(
                remote,
                reqwest::Method::POST,
                routes::ADMIN_USERS,
                Some(body),
            )
            .await?;
        }
    }
    println!("created user {name}");
    Ok(())
}

/// Finds the id of the user named `name`, if a name is given.
pub(super) fn user_id_by_name(
    store: &SledStore,
    name: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(name) = name else {
        return Ok(None);
    };
    let user = store
        .find_user_by_name(name)
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("no user named {name:?}"))?;
    Ok(Some(user.id))
}

async fn list_sessions(backend: &Backend, user: Option<&str>) -> Result<Value, String> {
    match backend {
        Backend::Direct(store) => {
            let user_id = user_id_by_name(store, user)?;
            let sessions = store
                .list_sessions(user_id.as_deref())
                .map_err(|error| error.to_string())?;
            let views: Vec<SessionView> = sessions
                .iter()
                .map(|session| SessionView::new(session, None))
                .collect();
            Ok(json!(views))
        }
        remote => {
            let path = match user {
                Some(name) => format!("{}?user={name}", routes::ADMIN_SESSIONS),
                None => routes::ADMIN_SESSIONS.to_owned(),
            };
            Ok(remote_call(remote, reqwest::Method::GET, &path, None).await?["sessions"].take())
        }
    }
}

async fn revoke_session(backend: &Backend, id: &str) -> Result<(), String> {
    match backend {
        Backend::Direct(store) => {
            let session = store
                .find_session(id)
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no session {id:?}"))?;
            let now = SystemClock.now();
            let revoked = dbsc::end_session(
                &session.record,
                SessionState::Revoked {
                    at: now,
                    by: "operator".into(),
                },
            );
            if store
                .update_session(&session, &revoked)
                .map_err(|error| error.to_string())?
                == Update::Conflict
            {
                return Err("the session changed while revoking it; try again".into());
            }
            append_audit(
                store,
                &Event::allowed("operator", "session.revoke", format!("session:{id}")),
            )?;
            store.flush_now().map_err(|error| error.to_string())
        }
        remote => {
            let path = routes::with_id(routes::ADMIN_SESSION_REVOKE, id);
            remote_call(remote, reqwest::Method::POST, &path, None)
                .await
                .map(drop)
        }
    }
}

pub(super) fn append_audit(store: &SledStore, event: &Event) -> Result<(), String> {
    let now = SystemClock.now();
    store
        .append_audit(&mut |previous| audit::seal(previous, now, event))
        .map(drop)
        .map_err(|error| format!("cannot append to the audit log: {error}"))
}

/// How many audit entries one admin API page or store read carries.
const AUDIT_PAGE: usize = 1000;

pub async fn audit(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::List { limit, json, data } => {
            let backend = open(&data)?;
            let entries = read_audit(&backend, Some(limit)).await?;
            for entry in &entries {
                if json {
                    println!("{}", serde_json::to_string(entry).unwrap_or_default());
                } else {
                    let detail = if entry.detail.is_empty() {
                        "-"
                    } else {
                        &entry.detail
                    };
                    println!(
                        "{:>6} {} {:<8} {:<16} {:<28} {:<36} {detail}",
                        entry.seq,
                        crate::http::utc(entry.at),
                        entry.outcome,
                        entry.action,
                        entry.actor,
                        entry.target,
                    );
                }
            }
            Ok(())
        }
        AuditCommand::Verify { data } => {
            let backend = open(&data)?;
            let entries = read_audit(&backend, None).await?;
            match audit::verify(None, &entries).map_err(|error| error.to_string())? {
                Some(last) => println!(
                    "audit log intact: {} entries; latest entry {} has hash {}",
                    entries.len(),
                    last.seq,
                    last.hash
                ),
                None => println!("audit log is empty"),
            }
            Ok(())
        }
    }
}

/// Reads the audit log, oldest first; with `latest`, only that many of the newest entries.
async fn read_audit(backend: &Backend, latest: Option<usize>) -> Result<Vec<AuditEntry>, String> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    loop {
        let from = entries.last().map_or(0, |entry| entry.seq + 1);
        let page = match backend {
            Backend::Direct(store) => store
                .list_audit(from, AUDIT_PAGE)
                .map_err(|error| error.to_string())?,
            remote => {
                let path = format!("{}?from={from}&limit={AUDIT_PAGE}", routes::ADMIN_AUDIT);
                let body = remote_call(remote, reqwest::Method::GET, &path, None).await?;
                serde_json::from_value(body["entries"].clone())
                    .map_err(|error| format!("unexpected admin API answer: {error}"))?
            }
        };
        let done = page.len() < AUDIT_PAGE;
        entries.extend(page);
        if done {
            break;
        }
    }
    if let Some(latest) = latest {
        entries.drain(..entries.len().saturating_sub(latest));
    }
    Ok(entries)
}

fn print_sessions(sessions: &Value) {
    println!(
        "{:<24} {:<11} {:<6} {:<9} {:<22} USER ID",
        "SESSION", "STATE", "ALG", "ASSURANCE", "LAST PROOF"
    );
    for session in sessions.as_array().into_iter().flatten() {
        let last_proof = session["last_proof_at"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), crate::http::utc);
        println!(
            "{:<24} {:<11} {:<6} {:<9} {:<22} {}",
            session["id"].as_str().unwrap_or("-"),
            session["state"].as_str().unwrap_or("-"),
            session["algorithm"].as_str().unwrap_or("-"),
            session["assurance"].as_str().unwrap_or("-"),
            last_proof,
            session["user_id"].as_str().unwrap_or("-"),
        );
    }
}
