//! The agent registry: agents as principals with one owner, the audiences and scopes they may
//! ever request, the assurance they require, and a state only their owner or an operator
//! changes. Every change is stored with who made it.

use rand::{CryptoRng, RngCore};

use crate::audit::{self, Event};
use crate::clock::UnixTime;
use crate::crypto::Secret;
use crate::oauth::token_exchange::normalize_resource;
use crate::store::{AgentChange, AgentRecord, AgentState, Assurance, Store, StoreError};

/// Random bytes in an agent id.
const AGENT_ID_BYTES: usize = 16;
/// Maximum length of an agent name, in characters.
const MAX_NAME_LEN: usize = 64;
/// Most audiences or scopes one agent may list.
const MAX_ENTRIES: usize = 32;

/// A rejected registry change.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent name must be 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` or `-`")]
    InvalidName,
    #[error("audience {0:?} is not an absolute https URI without fragment")]
    InvalidAudience(String),
    #[error("scope token {0:?} is not valid (RFC 6749 §3.3)")]
    InvalidScope(String),
    #[error("at most {MAX_ENTRIES} audiences and {MAX_ENTRIES} scopes are allowed")]
    TooManyEntries,
    #[error("the owner already has an agent with this name")]
    NameTaken,
    #[error("agent not found")]
    NotFound,
    #[error("a revoked agent cannot change state")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an owner registers.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub required_assurance: Assurance,
}

/// Who changes the registry: the owner (a user id) or an operator.
#[derive(Debug, Clone, Copy)]
pub enum ChangedBy<'a> {
    Owner(&'a str),
    Operator,
}

impl ChangedBy<'_> {
    fn label(self) -> String {
        match self {
            Self::Owner(user_id) => format!("user:{user_id}"),
            Self::Operator => "operator".into(),
        }
    }
}

/// Registers an agent owned by `owner_id`.
pub fn register(
    store: &dyn Store,
    owner_id: &str,
    new: NewAgent,
    by: ChangedBy<'_>,
    now: UnixTime,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<AgentRecord, AgentError> {
    check_name(&new.name)?;
    if new.audiences.len() > MAX_ENTRIES || new.scopes.len() > MAX_ENTRIES {
        return Err(AgentError::TooManyEntries);
    }
    let audiences = new
        .audiences
        .iter()
        .map(|value| {
            normalize_resource(value).ok_or_else(|| AgentError::InvalidAudience(value.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for scope in &new.scopes {
        check_scope_token(scope)?;
    }
    let agent = AgentRecord {
        id: Secret::generate(rng, AGENT_ID_BYTES).expose().to_owned(),
        name: new.name,
        owner_id: owner_id.to_owned(),
        audiences,
        scopes: new.scopes,
        required_assurance: new.required_assurance,
        state: AgentState::Active,
        created_at: now,
        updated_at: now,
    };
    if !store.insert_agent(&agent)? {
        return Err(AgentError::NameTaken);
    }
    record_change(store, &agent, by, "created", now)?;
    Ok(agent)
}

/// Finds an agent that `by` may manage: any agent for an operator, only their own for an
/// owner. Another owner's agent is reported as not found.
pub fn find_managed(
    store: &dyn Store,
    agent_id: &str,
    by: ChangedBy<'_>,
) -> Result<AgentRecord, AgentError> {
    let agent = store.find_agent(agent_id)?.ok_or(AgentError::NotFound)?;
    match by {
        ChangedBy::Owner(user_id) if agent.owner_id != user_id => Err(AgentError::NotFound),
        _ => Ok(agent),
    }
}

/// Moves an agent to `state`. Suspending makes its tokens inactive until it is resumed;
/// revoking is final.
pub fn set_state(
    store: &dyn Store,
    agent_id: &str,
    state: AgentState,
    by: ChangedBy<'_>,
    now: UnixTime,
) -> Result<AgentRecord, AgentError> {
    let mut agent = find_managed(store, agent_id, by)?;
    if agent.state == AgentState::Revoked {
        return Err(AgentError::Revoked);
    }
    let action = match (agent.state, state) {
        (_, AgentState::Revoked) => "revoked",
        (AgentState::Suspended, AgentState::Active) => "resumed",
        (_, AgentState::Suspended) => "suspended",
        (AgentState::Active | AgentState::Revoked, AgentState::Active) => return Ok(agent),
    };
    agent.state = state;
    agent.updated_at = now;
    store.update_agent(&agent)?;
    record_change(store, &agent, by, action, now)?;
    Ok(agent)
}

/// Stores the change with the agent and appends it to the audit log.
fn record_change(
    store: &dyn Store,
    agent: &AgentRecord,
    by: ChangedBy<'_>,
    action: &str,
    now: UnixTime,
) -> Result<(), StoreError> {
    let change = AgentChange {
        agent_id: agent.id.clone(),
        at: now,
        by: by.label(),
        action: action.to_owned(),
    };
    store.insert_agent_change(&change)?;
    let event = Event::allowed(
        change.by.clone(),
        agent_action(action),
        format!("agent:{}", agent.id),
    );
    store.append_audit(&mut |previous| audit::seal(previous, now, &event))?;
    tracing::info!(
        target: "security",
        agent = %agent.id,
        owner = %agent.owner_id,
        by = %change.by,
        action,
        "agent registry changed"
    );
    Ok(())
}

/// The audit action name of a registry change.
fn agent_action(action: &str) -> &'static str {
    match action {
        "created" => "agent.create",
        "suspended" => "agent.suspend",
        "resumed" => "agent.resume",
        _ => "agent.revoke",
    }
}

fn check_name(name: &str) -> Result<(), AgentError> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    valid.then_some(()).ok_or(AgentError::InvalidName)
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn check_scope_token(token: &str) -> Result<(), AgentError> {
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    valid
        .then_some(())
        .ok_or_else(|| AgentError::InvalidScope(token.to_owned()))
}

/// Parses a space-separated scope string into its tokens.
pub fn parse_scope(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}
