//! The embedded default store: sled trees in the data directory.
//!
//! Records are JSON in named trees, except sessions ([`super::session_row`]). The audit log is
//! a file beside the database ([`super::audit_file`]). One dedicated thread syncs the audit log
//! and flushes the database once for every batch of waiting writers (group commit). sled
//! 0.34.7's `flush_async` can hang under concurrent callers, and one synchronous flush serves
//! every writer queued before it.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::audit_file::{AuditFile, AuditSync};
use super::session_row::{decode_session, encode_session};
use super::{
    AgentChange, AgentRecord, AuditEntry, CeremonyRecord, DeviceGrantRecord, DeviceRecord,
    EnrollmentCode, PasskeyRecord, PendingEnrollment, RegistrationChallenge, SessionRecord,
    SessionState, SigningKeyRecord, Store, StoreError, SyncFuture, TokenRecord, Update, UserRecord,
    Versioned,
};

const USERS: &str = "users";
const USER_NAMES: &str = "user_names";
const SESSIONS: &str = "sessions";
const USER_SESSIONS: &str = "user_sessions";
const CHALLENGES: &str = "registration_challenges";
const AUDIT: &str = "audit";
const DEVICES: &str = "devices";
const OWNER_DEVICES: &str = "owner_devices";
const ENROLLMENT_CODES: &str = "enrollment_codes";
const PENDING_ENROLLMENTS: &str = "pending_enrollments";
const PASSKEYS: &str = "passkeys";
const USER_PASSKEYS: &str = "user_passkeys";
const CEREMONIES: &str = "passkey_ceremonies";
const AGENTS: &str = "agents";
const AGENT_NAMES: &str = "agent_names";
const AGENT_CHANGES: &str = "agent_changes";
const DEVICE_GRANTS: &str = "device_grants";
const USER_CODES: &str = "user_codes";
const TOKENS: &str = "access_tokens";
const SIGNING_KEYS: &str = "signing_keys";

type SyncWaiter = oneshot::Sender<Result<(), String>>;

/// sled's default page cache size.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// How long the flush thread waits for more writers when the previous flush served several:
/// under load a write waits up to this much longer, and one flush serves more writers. A lone
/// writer is flushed at once.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(2000);
/// How often the flush thread syncs new audit entries when no writer requests a flush. sled
/// flushes its own buffers at the same interval by default.
const AUDIT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// sled-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    user_names: sled::Tree,
    sessions: sled::Tree,
    user_sessions: sled::Tree,
    challenges: sled::Tree,
    /// The audit log, held while an entry is appended: each entry needs the hash of the one
    /// before.
    audit: Arc<Mutex<AuditFile>>,
    audit_sync: Arc<AuditSync>,
    devices: sled::Tree,
    owner_devices: sled::Tree,
    enrollment_codes: sled::Tree,
    pending_enrollments: sled::Tree,
    passkeys: sled::Tree,
    user_passkeys: sled::Tree,
    ceremonies: sled::Tree,
    agent_trees: AgentTrees,
    flusher: Arc<Flusher>,
}

/// The trees of the agent area.
#[derive(Debug, Clone)]
struct AgentTrees {
    agents: sled::Tree,
    agent_names: sled::Tree,
    agent_changes: sled::Tree,
    device_grants: sled::Tree,
    user_codes: sled::Tree,
    tokens: sled::Tree,
    signing_keys: sled::Tree,
}

/// The flush thread and the queue to it.
#[derive(Debug)]
struct Flusher {
    queue: Mutex<Option<mpsc::Sender<SyncWaiter>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SledStore {
    /// Opens or creates the database under `dir` with sled's default cache of 1 GiB, and
    /// starts its flush thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the database with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        warn_if_shared(dir);
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|error| match error {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(dir.display().to_string())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked(dir.display().to_string())
                }
                other => database(other),
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(database);
        let mut audit = AuditFile::open(dir)?;
        audit.import_tree(&db, AUDIT)?;
        let audit_sync = Arc::new(audit.sync_handle()?);

        Ok(Self {
            users: tree(USERS)?,
            user_names: tree(USER_NAMES)?,
            sessions: tree(SESSIONS)?,
            user_sessions: tree(USER_SESSIONS)?,
            challenges: tree(CHALLENGES)?,
            audit: Arc::new(Mutex::new(audit)),
            audit_sync: audit_sync.clone(),
            devices: tree(DEVICES)?,
            owner_devices: tree(OWNER_DEVICES)?,
            enrollment_codes: tree(ENROLLMENT_CODES)?,
            pending_enrollments: tree(PENDING_ENROLLMENTS)?,
            passkeys: tree(PASSKEYS)?,
            user_passkeys: tree(USER_PASSKEYS)?,
            ceremonies: tree(CEREMONIES)?,
            agent_trees: AgentTrees {
                agents: tree(AGENTS)?,
                agent_names: tree(AGENT_NAMES)?,
                agent_changes: tree(AGENT_CHANGES)?,
                device_grants: tree(DEVICE_GRANTS)?,
                user_codes: tree(USER_CODES)?,
                tokens: tree(TOKENS)?,
                signing_keys: tree(SIGNING_KEYS)?,
            },
            flusher: start_flusher(db.clone(), audit_sync)?,
            db,
        })
    }
}

/// Warns when users other than the owner may read the data directory, which contains password
/// hashes and the audit log. `serve` creates it owner-only, but an operator may have made it.
fn warn_if_shared(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let Ok(metadata) = std::fs::metadata(dir) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            data_dir = %dir.display(),
            mode = format!("{mode:o}"),
            "other users may read the data directory; run `chmod 700` on it"
        );
    }
}

/// Starts the thread that flushes once for every batch of queued [`Store::sync`] calls.
fn start_flusher(db: sled::Db, audit: Arc<AuditSync>) -> Result<Arc<Flusher>, StoreError> {
    let (sender, receiver) = mpsc::channel::<SyncWaiter>();
    let thread = std::thread::Builder::new()
        .name("sled-flush".into())
        .spawn(move || flush_batches(&db, &audit, &receiver))
        .map_err(|error| StoreError::Database(format!("cannot start flush thread: {error}")))?;
    Ok(Arc::new(Flusher {
        queue: Mutex::new(Some(sender)),
        thread: Mutex::new(Some(thread)),
    }))
}

fn flush_batches(db: &sled::Db, audit: &AuditSync, receiver: &mpsc::Receiver<SyncWaiter>) {
    let mut previous_batch = 0;
    loop {
        let first = match receiver.recv_timeout(AUDIT_SYNC_INTERVAL) {
            Ok(waiter) => waiter,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Entries of requests that wait for no flush, such as token exchanges.
                if let Err(error) = audit.sync() {
                    tracing::error!(%error, "cannot sync the audit log");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Under load, wait briefly so that one flush serves more writers; a lone writer is
        // flushed at once.
        if previous_batch > 1 {
            std::thread::sleep(COMMIT_DELAY);
        }
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        previous_batch = batch.len();

        let result = flush(db, audit).map_err(|error| error.to_string());
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Syncs the audit log if it has new entries, then flushes the database, so the entries
/// written before an acknowledged change are on disk when it is acknowledged.
fn flush(db: &sled::Db, audit: &AuditSync) -> Result<(), StoreError> {
    audit
        .sync()
        .map_err(|error| StoreError::Database(format!("cannot sync the audit log: {error}")))?;
    db.flush().map(drop).map_err(database)
}

pub(super) fn database(error: sled::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

pub(super) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Database(error.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| {
        StoreError::Corrupt(String::from_utf8_lossy(key).into_owned(), error.to_string())
    })
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &str) -> Result<Option<T>, StoreError> {
    tree.get(key)
        .map_err(database)?
        .map(|bytes| decode(key.as_bytes(), &bytes))
        .transpose()
}

/// Reads a record with the bytes it was read from, for a later [`update_versioned`].
fn get_versioned<T>(
    tree: &sled::Tree,
    key: &str,
    decode: fn(&[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<Option<Versioned<T>>, StoreError> {
    let Some(bytes) = tree.get(key).map_err(database)? else {
        return Ok(None);
    };
    Ok(Some(Versioned {
        record: decode(key.as_bytes(), &bytes)?,
        version: bytes.to_vec(),
    }))
}

/// Writes `next` under `key` only if the stored bytes are still those `current` was read from.
fn update_versioned<T: Serialize>(
    tree: &sled::Tree,
    key: &str,
    current: &Versioned<T>,
    next: &T,
) -> Result<Update, StoreError> {
    swap_versioned(tree, key, current, encode(next)?)
}

/// Writes `next` under `key` only if the stored bytes are still those `current` was read from.
fn swap_versioned<T>(
    tree: &sled::Tree,
    key: &str,
    current: &Versioned<T>,
    next: Vec<u8>,
) -> Result<Update, StoreError> {
    let swapped = tree
        .compare_and_swap(key, Some(current.version.as_slice()), Some(next))
        .map_err(database)?;
    Ok(match swapped {
        Ok(()) => Update::Applied,
        Err(_) => Update::Conflict,
    })
}

/// Builds the index key of a user's session: user id, a zero byte, session id.
fn user_session_key(user_id: &str, session_id: &str) -> Vec<u8> {
    [user_id.as_bytes(), &[0], session_id.as_bytes()].concat()
}

impl Store for SledStore {
    fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let claimed = self
            .user_names
            .compare_and_swap(&user.name, None::<&[u8]>, Some(user.id.as_bytes()))
            .map_err(database)?;
        if claimed.is_err() {
            return Ok(false);
        }
        self.users
            .insert(&user.id, encode(user)?)
            .map_err(database)?;
        Ok(true)
    }

    fn find_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        get(&self.users, id)
    }

    fn find_user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        match self.user_names.get(name).map_err(database)? {
            Some(id) => self.find_user(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.users
            .insert(&user.id, encode(user)?)
            .map_err(database)?;
        Ok(())
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users
            .iter()
            .map(|entry| {
                let (key, value) = entry.map_err(database)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.user_sessions
            .insert(user_session_key(&session.user_id, &session.id), &[])
            .map_err(database)?;
        self.sessions
            .insert(&session.id, encode_session(session)?)
            .map_err(database)?;
        Ok(())
    }

    fn find_session(&self, id: &str) -> Result<Option<Versioned<SessionRecord>>, StoreError> {
        get_versioned(&self.sessions, id, decode_session)
    }

    fn update_session(
        &self,
        current: &Versioned<SessionRecord>,
        next: &SessionRecord,
    ) -> Result<Update, StoreError> {
        swap_versioned(
            &self.sessions,
            &current.record.id,
            current,
            encode_session(next)?,
        )
    }

    fn list_sessions(&self, user_id: Option<&str>) -> Result<Vec<SessionRecord>, StoreError> {
        let mut sessions = match user_id {
            Some(user_id) => self.list_user_sessions(user_id)?,
            None => self
                .sessions
                .iter()
                .map(|entry| {
                    let (key, value) = entry.map_err(database)?;
                    decode_session(&key, &value)
                })
                .collect::<Result<Vec<SessionRecord>, _>>()?,
        };
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(sessions)
    }

    fn purge_sessions(&self, now: u64, cutoff: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.sessions.iter() {
            let (key, value) = entry.map_err(database)?;
            let session = decode_session(&key, &value)?;
            let ended_at = match &session.state {
                SessionState::Pending | SessionState::Bound => session.expires_at,
                SessionState::SignedOut { at } | SessionState::Revoked { at, .. } => *at,
            };
            let abandoned = session.state == SessionState::Pending && session.expires_at <= now;
            if ended_at < cutoff || abandoned {
                self.sessions.remove(&key).map_err(database)?;
                self.user_sessions
                    .remove(user_session_key(&session.user_id, &session.id))
                    .map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn insert_challenge(&self, challenge: &RegistrationChallenge) -> Result<(), StoreError> {
        self.challenges
            .insert(&challenge.value, encode(challenge)?)
            .map_err(database)?;
        Ok(())
    }

    fn find_challenge(&self, value: &str) -> Result<Option<RegistrationChallenge>, StoreError> {
        get(&self.challenges, value)
    }

    fn consume_challenge(&self, value: &str) -> Result<Option<RegistrationChallenge>, StoreError> {
        self.challenges
            .remove(value)
            .map_err(database)?
            .map(|bytes| decode(value.as_bytes(), &bytes))
            .transpose()
    }

    fn purge_challenges(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.challenges.iter() {
            let (key, value) = entry.map_err(database)?;
            let challenge: RegistrationChallenge = decode(&key, &value)?;
            if challenge.expires_at <= now {
                self.challenges.remove(&key).map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn sync(&self) -> SyncFuture {
        let (sender, receiver) = oneshot::channel();
        let queued = match self.flusher.queue.lock() {
            Ok(queue) => queue
                .as_ref()
                .is_some_and(|queue| queue.send(sender).is_ok()),
            Err(_) => false,
        };
        Box::pin(async move {
            if !queued {
                return Err(StoreError::Database("flush thread has stopped".into()));
            }
            receiver
                .await
                .map_err(|_| StoreError::Database("flush thread has stopped".into()))?
                .map_err(StoreError::Database)
        })
    }

    fn append_audit(
        &self,
        seal: &mut dyn FnMut(Option<&AuditEntry>) -> AuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        self.audit
            .lock()
            .map_err(|_| StoreError::Database("an audit append panicked".into()))?
            .append(seal)
    }

    fn list_audit(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit
            .lock()
            .map_err(|_| StoreError::Database("an audit append panicked".into()))?
            .list(from, limit)
    }

    fn insert_device(&self, device: &DeviceRecord) -> Result<bool, StoreError> {
        let inserted = self
            .devices
            .compare_and_swap(&device.id, None::<&[u8]>, Some(encode(device)?))
            .map_err(database)?;
        if inserted.is_err() {
            return Ok(false);
        }
        self.owner_devices
            .insert(user_session_key(&device.owner_id, &device.id), &[])
            .map_err(database)?;
        Ok(true)
    }

    fn find_device(&self, id: &str) -> Result<Option<Versioned<DeviceRecord>>, StoreError> {
        get_versioned(&self.devices, id, decode)
    }

    fn update_device(
        &self,
        current: &Versioned<DeviceRecord>,
        next: &DeviceRecord,
    ) -> Result<Update, StoreError> {
        update_versioned(&self.devices, &current.record.id, current, next)
    }

    fn list_devices(&self, owner_id: Option<&str>) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut devices = Vec::new();
        match owner_id {
            Some(owner_id) => {
                let prefix = [owner_id.as_bytes(), &[0]].concat();
                for entry in self.owner_devices.scan_prefix(&prefix) {
                    let (key, _) = entry.map_err(database)?;
                    let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    if let Some(device) = self.find_device(&id)? {
                        devices.push(device.record);
                    }
                }
            }
            None => {
                for entry in self.devices.iter() {
                    let (key, value) = entry.map_err(database)?;
                    devices.push(decode(&key, &value)?);
                }
            }
        }
        devices
            .sort_by(|a: &DeviceRecord, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(devices)
    }

    fn insert_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        self.enrollment_codes
            .insert(code.code_sha256, encode(code)?)
            .map_err(database)?;
        Ok(())
    }

    fn consume_enrollment_code(
        &self,
        code_sha256: &[u8; 32],
        now: u64,
    ) -> Result<Option<EnrollmentCode>, StoreError> {
        let Some(bytes) = self
            .enrollment_codes
            .remove(code_sha256)
            .map_err(database)?
        else {
            return Ok(None);
        };
        let code: EnrollmentCode = decode(b"enrollment code", &bytes)?;
        Ok((now < code.expires_at).then_some(code))
    }

    fn insert_pending_enrollment(&self, pending: &PendingEnrollment) -> Result<(), StoreError> {
        self.pending_enrollments
            .insert(&pending.challenge.id, encode(pending)?)
            .map_err(database)?;
        Ok(())
    }

    fn consume_pending_enrollment(
        &self,
        id: &str,
    ) -> Result<Option<PendingEnrollment>, StoreError> {
        self.pending_enrollments
            .remove(id)
            .map_err(database)?
            .map(|bytes| decode(b"pending enrollment", &bytes))
            .transpose()
    }

    fn purge_enrollments(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.enrollment_codes.iter() {
            let (key, value) = entry.map_err(database)?;
            let code: EnrollmentCode = decode(b"enrollment code", &value)?;
            if code.expires_at <= now {
                self.enrollment_codes.remove(&key).map_err(database)?;
                purged += 1;
            }
        }
        for entry in self.pending_enrollments.iter() {
            let (key, value) = entry.map_err(database)?;
            let pending: PendingEnrollment = decode(b"pending enrollment", &value)?;
            if pending.challenge.expires_at <= now {
                self.pending_enrollments.remove(&key).map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    // Passkeys.

    fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<bool, StoreError> {
        let claimed = self
            .passkeys
            .compare_and_swap(&passkey.id, None::<&[u8]>, Some(encode(passkey)?))
            .map_err(database)?;
        if claimed.is_err() {
            return Ok(false);
        }
        self.user_passkeys
            .insert(user_session_key(&passkey.user_id, &passkey.id), &[])
            .map_err(database)?;
        Ok(true)
    }

    fn find_passkey(&self, id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        get(&self.passkeys, id)
    }

    fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let prefix = [user_id.as_bytes(), &[0]].concat();
        let mut passkeys = Vec::new();
        for entry in self.user_passkeys.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(database)?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(passkey) = self.find_passkey(&id)? {
                passkeys.push(passkey);
            }
        }
        passkeys.sort_by_key(|passkey: &PasskeyRecord| passkey.created_at);
        Ok(passkeys)
    }

    fn update_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        self.passkeys
            .insert(&passkey.id, encode(passkey)?)
            .map_err(database)?;
        Ok(())
    }

    fn delete_passkey(&self, id: &str) -> Result<bool, StoreError> {
        let Some(bytes) = self.passkeys.remove(id).map_err(database)? else {
            return Ok(false);
        };
        let passkey: PasskeyRecord = decode(id.as_bytes(), &bytes)?;
        self.user_passkeys
            .remove(user_session_key(&passkey.user_id, id))
            .map_err(database)?;
        Ok(true)
    }

    fn insert_ceremony(&self, ceremony: &CeremonyRecord) -> Result<(), StoreError> {
        self.ceremonies
            .insert(&ceremony.id, encode(ceremony)?)
            .map_err(database)?;
        Ok(())
    }

    fn consume_ceremony(&self, id: &str) -> Result<Option<CeremonyRecord>, StoreError> {
        self.ceremonies
            .remove(id)
            .map_err(database)?
            .map(|bytes| decode(id.as_bytes(), &bytes))
            .transpose()
    }

    fn purge_ceremonies(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.ceremonies.iter() {
            let (key, value) = entry.map_err(database)?;
            let ceremony: CeremonyRecord = decode(&key, &value)?;
            if ceremony.expires_at <= now {
                self.ceremonies.remove(&key).map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn find_ceremony(&self, id: &str) -> Result<Option<CeremonyRecord>, StoreError> {
        get(&self.ceremonies, id)
    }

    // Agents, device authorization grants, access tokens, DPoP proofs and signing keys.

    fn insert_agent(&self, agent: &AgentRecord) -> Result<bool, StoreError> {
        let trees = &self.agent_trees;
        let name_key = pair_key(&agent.owner_id, &agent.name);
        let claimed = trees
            .agent_names
            .compare_and_swap(name_key, None::<&[u8]>, Some(agent.id.as_bytes()))
            .map_err(database)?;
        if claimed.is_err() {
            return Ok(false);
        }
        trees
            .agents
            .insert(&agent.id, encode(agent)?)
            .map_err(database)?;
        Ok(true)
    }

    fn find_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        get(&self.agent_trees.agents, id)
    }

    fn update_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        self.agent_trees
            .agents
            .insert(&agent.id, encode(agent)?)
            .map_err(database)?;
        Ok(())
    }

    fn list_agents(&self, owner_id: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let mut agents: Vec<AgentRecord> = decode_all(&self.agent_trees.agents)?;
        agents.retain(|agent| owner_id.is_none_or(|owner| agent.owner_id == owner));
        agents.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(agents)
    }

    fn insert_agent_change(&self, change: &AgentChange) -> Result<(), StoreError> {
        let sequence = self.db.generate_id().map_err(database)?;
        let key = [
            change.agent_id.as_bytes(),
            &[0],
            &sequence.to_be_bytes()[..],
        ]
        .concat();
        self.agent_trees
            .agent_changes
            .insert(key, encode(change)?)
            .map_err(database)?;
        Ok(())
    }

    fn list_agent_changes(&self, agent_id: &str) -> Result<Vec<AgentChange>, StoreError> {
        let prefix = [agent_id.as_bytes(), &[0]].concat();
        self.agent_trees
            .agent_changes
            .scan_prefix(prefix)
            .map(|entry| {
                let (key, value) = entry.map_err(database)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn insert_device_grant(&self, grant: &DeviceGrantRecord) -> Result<bool, StoreError> {
        let trees = &self.agent_trees;
        let claimed = trees
            .user_codes
            .compare_and_swap(
                &grant.user_code,
                None::<&[u8]>,
                Some(grant.device_code_digest.as_bytes()),
            )
            .map_err(database)?;
        if claimed.is_err() {
            return Ok(false);
        }
        trees
            .device_grants
            .insert(&grant.device_code_digest, encode(grant)?)
            .map_err(database)?;
        Ok(true)
    }

    fn find_device_grant(
        &self,
        device_code_digest: &str,
    ) -> Result<Option<Versioned<DeviceGrantRecord>>, StoreError> {
        get_versioned(&self.agent_trees.device_grants, device_code_digest, decode)
    }

    fn find_device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<Versioned<DeviceGrantRecord>>, StoreError> {
        match self
            .agent_trees
            .user_codes
            .get(user_code)
            .map_err(database)?
        {
            Some(digest) => self.find_device_grant(&String::from_utf8_lossy(&digest)),
            None => Ok(None),
        }
    }

    fn update_device_grant(
        &self,
        current: &Versioned<DeviceGrantRecord>,
        next: &DeviceGrantRecord,
    ) -> Result<Update, StoreError> {
        let swapped = self
            .agent_trees
            .device_grants
            .compare_and_swap(
                &current.record.device_code_digest,
                Some(current.version.as_slice()),
                Some(encode(next)?),
            )
            .map_err(database)?;
        Ok(match swapped {
            Ok(()) => Update::Applied,
            Err(_) => Update::Conflict,
        })
    }

    fn purge_device_grants(&self, now: u64) -> Result<usize, StoreError> {
        let trees = &self.agent_trees;
        let mut purged = 0;
        for entry in trees.device_grants.iter() {
            let (key, value) = entry.map_err(database)?;
            let grant: DeviceGrantRecord = decode(&key, &value)?;
            if grant.expires_at <= now {
                trees.device_grants.remove(&key).map_err(database)?;
                trees
                    .user_codes
                    .remove(&grant.user_code)
                    .map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.agent_trees
            .tokens
            .insert(&token.claims.jti, encode(token)?)
            .map_err(database)?;
        Ok(())
    }

    fn find_token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        get(&self.agent_trees.tokens, jti)
    }

    fn revoke_token(&self, jti: &str, at: u64) -> Result<bool, StoreError> {
        let mut revoked = false;
        self.agent_trees
            .tokens
            .fetch_and_update(jti, |bytes| {
                let bytes = bytes?;
                let Ok(mut token) = serde_json::from_slice::<TokenRecord>(bytes) else {
                    return Some(bytes.to_vec());
                };
                revoked = true;
                token.revoked_at.get_or_insert(at);
                serde_json::to_vec(&token).ok()
            })
            .map_err(database)?;
        Ok(revoked)
    }

    fn purge_tokens(&self, cutoff: u64) -> Result<usize, StoreError> {
        let tokens = &self.agent_trees.tokens;
        let mut purged = 0;
        for entry in tokens.iter() {
            let (key, value) = entry.map_err(database)?;
            let token: TokenRecord = decode(&key, &value)?;
            if token.claims.exp < cutoff {
                tokens.remove(&key).map_err(database)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let index = [&key.created_at.to_be_bytes()[..], key.kid.as_bytes()].concat();
        self.agent_trees
            .signing_keys
            .insert(index, encode(key)?)
            .map_err(database)?;
        Ok(())
    }

    fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        decode_all(&self.agent_trees.signing_keys)
    }
}

/// Builds a two-part index key: the parts separated by a zero byte.
fn pair_key(first: &str, second: &str) -> Vec<u8> {
    [first.as_bytes(), &[0], second.as_bytes()].concat()
}

fn decode_all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (key, value) = entry.map_err(database)?;
            decode(&key, &value)
        })
        .collect()
}

impl SledStore {
    fn list_user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let prefix = [user_id.as_bytes(), &[0]].concat();
        let mut sessions = Vec::new();
        for entry in self.user_sessions.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(database)?;
            let session_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(session) = self.find_session(&session_id)? {
                sessions.push(session.record);
            }
        }
        Ok(sessions)
    }

    /// Number of stored sessions, for metrics and benchmarks.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Flushes synchronously; used at shutdown.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        flush(&self.db, &self.audit_sync)
    }

    /// Flushes, stops the flush thread and waits for it, so that once every clone of this
    /// store is dropped the database is closed and another process can open it.
    pub fn close(&self) -> Result<(), StoreError> {
        self.flush_now()?;
        if let Ok(mut queue) = self.flusher.queue.lock() {
            queue.take();
        }
        let thread = self
            .flusher
            .thread
            .lock()
            .ok()
            .and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        Ok(())
    }
}
