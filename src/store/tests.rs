//! Store verbs for devices, enrollment codes and started enrollments, on a real sled database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{
    Assurance, DeviceRecord, EnrollmentCode, PendingEnrollment, Revocation, SessionRecord,
    SledStore, Store, Update,
};
use crate::crypto::Jwk;
use crate::tpm::EnrollmentChallenge;

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 1 << 20).unwrap();
    (dir, store)
}

/// Opens the store in `dir`, waiting while a store closed a moment ago still holds it: sled's
/// background threads can keep the database file, and its lock, open briefly after the last
/// handle is dropped.
fn open_after_close(dir: &std::path::Path) -> Result<SledStore, super::StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open_with_cache(dir, 1 << 20) {
            Err(super::StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened,
        }
    }
}

/// Opens the database directly, as an earlier version would, with the same wait.
fn open_raw_after_close(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir.join("db")) {
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened.unwrap(),
        }
    }
}

fn device(id: &str, owner: &str, created_at: u64) -> DeviceRecord {
    let jwk = Jwk::from_value(&serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
        "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE",
    }))
    .unwrap();
    DeviceRecord {
        id: id.into(),
        owner_id: owner.into(),
        name: "laptop".into(),
        assurance: Assurance::Tpm,
        ek_certificate_sha256: Some([7; 32]),
        ak_name: vec![0, 0x0b, 1, 2, 3],
        session_key: jwk,
        created_at,
        revoked: None,
    }
}

#[test]
fn devices_are_listed_by_owner_and_updated_only_if_unchanged() {
    let (_dir, store) = open();
    assert!(store.insert_device(&device("d1", "alice", 10)).unwrap());
    assert!(store.insert_device(&device("d2", "alice", 20)).unwrap());
    assert!(store.insert_device(&device("d3", "bob", 30)).unwrap());
    assert!(!store.insert_device(&device("d1", "bob", 40)).unwrap());

    let alice: Vec<String> = store
        .list_devices(Some("alice"))
        .unwrap()
        .into_iter()
        .map(|device| device.id)
        .collect();
    assert_eq!(alice, ["d2", "d1"]);
    assert_eq!(store.list_devices(None).unwrap().len(), 3);
    assert_eq!(
        store.find_device("d1").unwrap().unwrap().record.owner_id,
        "alice"
    );

    let current = store.find_device("d1").unwrap().unwrap();
    let mut revoked = current.record.clone();
    revoked.revoked = Some(Revocation {
        at: 50,
        by: "owner".into(),
    });
    assert_eq!(
        store.update_device(&current, &revoked).unwrap(),
        Update::Applied
    );
    // A second writer holding the old version loses.
    assert_eq!(
        store.update_device(&current, &revoked).unwrap(),
        Update::Conflict
    );
    assert!(
        store
            .find_device("d1")
            .unwrap()
            .unwrap()
            .record
            .is_revoked()
    );
}

#[test]
fn an_enrollment_code_is_consumed_once_and_not_after_expiry() {
    let (_dir, store) = open();
    let code = |digest: u8, expires_at| EnrollmentCode {
        code_sha256: [digest; 32],
        user_id: "alice".into(),
        device_name: "laptop".into(),
        created_at: 0,
        expires_at,
    };
    store.insert_enrollment_code(&code(1, 100)).unwrap();
    store.insert_enrollment_code(&code(2, 100)).unwrap();

    assert!(
        store
            .consume_enrollment_code(&[1; 32], 99)
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .consume_enrollment_code(&[1; 32], 99)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .consume_enrollment_code(&[2; 32], 100)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .consume_enrollment_code(&[2; 32], 0)
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .consume_enrollment_code(&[3; 32], 0)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_started_enrollment_is_consumed_once_and_purged_after_expiry() {
    let (_dir, store) = open();
    let pending = |id: &str, expires_at| PendingEnrollment {
        challenge: EnrollmentChallenge {
            id: id.into(),
            secret_sha256: [0; 32],
            certify_nonce: vec![1; 32],
            ak_public: vec![2; 10],
            ak_name: vec![3; 34],
            ek_certificate_sha256: [4; 32],
            expires_at,
        },
        user_id: "alice".into(),
        device_name: "laptop".into(),
        untrusted: None,
    };
    store.insert_pending_enrollment(&pending("a", 100)).unwrap();
    store.insert_pending_enrollment(&pending("b", 100)).unwrap();
    assert_eq!(
        store.consume_pending_enrollment("a").unwrap(),
        Some(pending("a", 100))
    );
    assert_eq!(store.consume_pending_enrollment("a").unwrap(), None);

    assert_eq!(store.purge_enrollments(100).unwrap(), 1);
    assert_eq!(store.consume_pending_enrollment("b").unwrap(), None);
}

#[test]
fn a_session_stored_before_devices_existed_still_loads() {
    let old = serde_json::json!({
        "id": "s1", "user_id": "alice", "state": {"state": "pending"},
        "created_at": 1, "expires_at": 2, "authorization_digest": null, "key": null,
        "assurance": "software", "challenge": null, "credential_digest": null,
        "credential_expires_at": 0, "last_proof_at": null, "refresh_count": 0,
    });
    let session: SessionRecord = serde_json::from_value(old).unwrap();
    assert_eq!(session.device_id, None);
}

#[test]
fn json_session_on_disk_is_read_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let old = serde_json::json!({
        "id": "s1", "user_id": "alice", "state": {"state": "bound"},
        "created_at": 1, "expires_at": 4_000_000_000_u64, "authorization_digest": null,
        "key": null, "assurance": "software", "challenge": null, "credential_digest": null,
        "credential_expires_at": 0, "last_proof_at": null, "refresh_count": 3,
    });
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let sessions = db.open_tree("sessions").unwrap();
        sessions
            .insert("s1", serde_json::to_vec(&old).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let store = open_after_close(dir.path()).unwrap();

    let found = store.find_session("s1").unwrap().unwrap();
    assert_eq!(found.record.refresh_count, 3);
    let next = SessionRecord {
        refresh_count: 4,
        ..found.record.clone()
    };
    assert_eq!(
        store.update_session(&found, &next).unwrap(),
        Update::Applied
    );
    assert_eq!(
        store.update_session(&found, &next).unwrap(),
        Update::Conflict
    );

    let rewritten = store.find_session("s1").unwrap().unwrap();
    assert_eq!(rewritten.record, next);
    assert_ne!(rewritten.version.first(), Some(&b'{'));
}

#[test]
fn audit_chain_continues_after_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let event = crate::audit::Event::allowed("user:u1", "session.sign_out", "session:s1");
    let append = |store: &SledStore, at: u64| {
        store
            .append_audit(&mut |previous| crate::audit::seal(previous, at, &event))
            .unwrap()
    };

    let first = {
        let store = SledStore::open_with_cache(dir.path(), 1 << 20).unwrap();
        append(&store, 10);
        let first = append(&store, 11);
        store.close().unwrap();
        first
    };
    let store = open_after_close(dir.path()).unwrap();
    let next = append(&store, 12);

    assert_eq!(next.seq, first.seq + 1);
    assert_eq!(next.prev_hash, first.hash);
    let entries = store.list_audit(0, 10).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(crate::audit::verify(None, &entries), Ok(entries.last()));
}

fn sealed(previous: Option<&super::AuditEntry>, at: u64) -> super::AuditEntry {
    let event = crate::audit::Event::allowed("agent:a1", "token.exchange", format!("token:{at}"));
    crate::audit::seal(previous, at, &event)
}

fn seqs(entries: &[super::AuditEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

/// Creates a data directory whose audit log contains entries `0..count`, with the store closed.
fn closed_log(count: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_cache(dir.path(), 1 << 20).unwrap();
    for at in 0..count {
        store
            .append_audit(&mut |previous| sealed(previous, at))
            .unwrap();
    }
    store.close().unwrap();
    let path = dir.path().join("audit.jsonl");
    (dir, path)
}

/// Appends the entry sealed at `at`, then returns it and the whole log, which must verify as
/// one chain.
fn append_and_list(store: &SledStore, at: u64) -> (super::AuditEntry, Vec<super::AuditEntry>) {
    let next = store
        .append_audit(&mut |previous| sealed(previous, at))
        .unwrap();
    let all = store.list_audit(0, 10).unwrap();
    assert_eq!(crate::audit::verify(None, &all), Ok(all.last()));
    (next, all)
}

#[test]
fn audit_list_finds_entries_in_a_long_log() {
    let (_dir, store) = open();
    // About 300 bytes a line, so the file spans several bisection steps.
    for at in 0..3000 {
        store
            .append_audit(&mut |previous| sealed(previous, at))
            .unwrap();
    }

    assert_eq!(seqs(&store.list_audit(0, 3).unwrap()), [0, 1, 2]);
    assert_eq!(
        seqs(&store.list_audit(1234, 4).unwrap()),
        [1234, 1235, 1236, 1237]
    );
    assert_eq!(seqs(&store.list_audit(2998, 10).unwrap()), [2998, 2999]);
    assert!(store.list_audit(3000, 10).unwrap().is_empty());
    let all = store.list_audit(0, 5000).unwrap();
    assert_eq!(all.len(), 3000);
    assert_eq!(crate::audit::verify(None, &all), Ok(all.last()));
}

#[test]
fn audit_log_drops_a_partial_last_line() {
    let (dir, path) = closed_log(3);
    let complete = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, br#"{"seq":3,"at":3,"act"#).unwrap();
    drop(file);

    let store = open_after_close(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), complete);
    let (next, all) = append_and_list(&store, 4);
    assert_eq!(next.seq, 3);
    assert_eq!(seqs(&all), [0, 1, 2, 3]);
}

#[test]
fn audit_entries_move_from_the_database_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut previous = None;
    {
        // An earlier version kept each entry in the `audit` tree under its big-endian number.
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("audit").unwrap();
        for at in 0..3 {
            let entry = sealed(previous.as_ref(), at);
            tree.insert(entry.seq.to_be_bytes(), serde_json::to_vec(&entry).unwrap())
                .unwrap();
            previous = Some(entry);
        }
        db.flush().unwrap();
    }

    let store = open_after_close(dir.path()).unwrap();
    let (next, all) = append_and_list(&store, 3);
    assert_eq!(next.prev_hash, previous.unwrap().hash);
    assert_eq!(seqs(&all), [0, 1, 2, 3]);
    store.close().unwrap();
    drop(store);

    let db = open_raw_after_close(dir.path());
    assert!(
        !db.tree_names()
            .iter()
            .any(|name| name == b"audit".as_slice())
    );
}

#[test]
fn audit_list_finds_entries_after_long_lines() {
    let (_dir, store) = open();
    for (at, detail_len) in [(0, 70_000), (1, 130_000), (2, 10)] {
        store
            .append_audit(&mut |previous| {
                let event = crate::audit::Event::refused(
                    "peer",
                    "session.refresh",
                    "session:s1",
                    "x".repeat(detail_len),
                );
                crate::audit::seal(previous, at, &event)
            })
            .unwrap();
    }

    assert_eq!(seqs(&store.list_audit(2, 5).unwrap()), [2]);
    assert_eq!(seqs(&store.list_audit(1, 5).unwrap()), [1, 2]);
}

#[test]
fn audit_import_rejects_a_second_chain() {
    let (dir, _) = closed_log(1);
    {
        // A tree whose entry 1 follows another entry 0 than the file's.
        let db = open_raw_after_close(dir.path());
        let tree = db.open_tree("audit").unwrap();
        let other_first = sealed(None, 99);
        let second = sealed(Some(&other_first), 1);
        tree.insert(1_u64.to_be_bytes(), serde_json::to_vec(&second).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    let opened = open_after_close(dir.path());
    assert!(
        matches!(opened, Err(super::StoreError::Corrupt(..))),
        "{opened:?}"
    );
}

#[test]
fn audit_log_keeps_last_entry_without_newline() {
    let (dir, path) = closed_log(2);
    let size = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size - 1)
        .unwrap();

    let store = open_after_close(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let (next, all) = append_and_list(&store, 2);
    assert_eq!(next.seq, 2);
    assert_eq!(seqs(&all), [0, 1, 2]);
}

#[test]
fn audit_open_rejects_garbage_last_line() {
    let (dir, path) = closed_log(1);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"not an entry\n").unwrap();
    drop(file);

    let error = open_after_close(dir.path()).unwrap_err().to_string();
    assert!(error.contains("audit.jsonl"), "{error}");
    assert!(error.contains("move that line aside"), "{error}");
}
