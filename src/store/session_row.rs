//! The on-disk form of a session: a format byte, then the fields in postcard's compact binary
//! encoding.
//!
//! Every refresh reads and rewrites its session, and sled copies the whole leaf that contains
//! it on each write. JSON made a session about 760 bytes, and this form makes it about 290 for
//! an ES256 key, so a leaf of the same sessions is about two fifths the size in memory and on
//! disk.
//!
//! Sessions written as JSON by earlier versions start with `{` and are still read. They are
//! rewritten in this form at their next change.

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::records::{Assurance, BoundKey, PendingChallenge, SessionRecord, SessionState};
use super::sled_store::decode;
use crate::crypto::{Algorithm, Jwk};

/// The first byte of a session in this form. JSON never starts with it.
const FORMAT_V1: u8 = 1;
const JSON_OBJECT: u8 = b'{';

/// The fields of a [`SessionRecord`] in the order they are stored. Adding, removing or reordering
/// a field needs a new format byte, because postcard writes neither field names nor lengths.
#[derive(Serialize, Deserialize)]
struct Row<'a> {
    id: &'a str,
    user_id: &'a str,
    state: StateRow<'a>,
    created_at: u64,
    expires_at: u64,
    authorization_digest: Option<[u8; 32]>,
    key: Option<KeyRow<'a>>,
    assurance: u8,
    challenge: Option<(&'a str, u64)>,
    credential_digest: Option<[u8; 32]>,
    credential_expires_at: u64,
    previous_credential_digest: Option<[u8; 32]>,
    previous_credential_expires_at: u64,
    last_proof_at: Option<u64>,
    refresh_count: u64,
    passkey_id: Option<&'a str>,
    passkey_proof_at: Option<u64>,
    device_id: Option<&'a str>,
}

/// postcard stores a variant by its index, so new variants go at the end.
#[derive(Serialize, Deserialize)]
enum StateRow<'a> {
    Pending,
    Bound,
    SignedOut { at: u64 },
    Revoked { at: u64, by: &'a str },
}

#[derive(Serialize, Deserialize)]
enum KeyRow<'a> {
    Es256 {
        crv: &'a str,
        x: &'a str,
        y: &'a str,
    },
    Rs256 {
        n: &'a str,
        e: &'a str,
    },
}

pub(super) fn encode_session(session: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    let row = Row {
        key: session.key.as_ref().map(key_row).transpose()?,
        ..row_of(session)
    };
    postcard::to_extend(&row, vec![FORMAT_V1])
        .map_err(|error| StoreError::Database(format!("failed to encode session: {error}")))
}

/// Builds the row of a session without its key, which [`key_row`] may reject.
fn row_of(session: &SessionRecord) -> Row<'_> {
    Row {
        id: &session.id,
        user_id: &session.user_id,
        state: match &session.state {
            SessionState::Pending => StateRow::Pending,
            SessionState::Bound => StateRow::Bound,
            SessionState::SignedOut { at } => StateRow::SignedOut { at: *at },
            SessionState::Revoked { at, by } => StateRow::Revoked { at: *at, by },
        },
        created_at: session.created_at,
        expires_at: session.expires_at,
        authorization_digest: session.authorization_digest,
        key: None,
        assurance: assurance_code(session.assurance),
        challenge: session
            .challenge
            .as_ref()
            .map(|challenge| (challenge.value.as_str(), challenge.expires_at)),
        credential_digest: session.credential_digest,
        credential_expires_at: session.credential_expires_at,
        previous_credential_digest: session.previous_credential_digest,
        previous_credential_expires_at: session.previous_credential_expires_at,
        last_proof_at: session.last_proof_at,
        refresh_count: session.refresh_count,
        passkey_id: session.passkey_id.as_deref(),
        passkey_proof_at: session.passkey_proof_at,
        device_id: session.device_id.as_deref(),
    }
}

/// Decodes a session in either form. `key` names the record in a corruption error.
pub(super) fn decode_session(key: &[u8], bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let corrupt =
        |reason: String| StoreError::Corrupt(String::from_utf8_lossy(key).into_owned(), reason);
    match bytes.split_first() {
        Some((&FORMAT_V1, fields)) => {
            let (row, rest) = postcard::take_from_bytes::<Row>(fields)
                .map_err(|error| corrupt(error.to_string()))?;
            if !rest.is_empty() {
                return Err(corrupt(format!("{} bytes after the session", rest.len())));
            }
            session_from_row(row).map_err(corrupt)
        }
        Some((&JSON_OBJECT, _)) => decode(key, bytes),
        Some((format, _)) => Err(corrupt(format!("unknown session format {format}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

/// Encodes a session as JSON, the form of earlier versions, for tests of reading it.
#[cfg(test)]
pub(super) fn encode_session_json(session: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    super::sled_store::encode(session)
}

fn session_from_row(row: Row) -> Result<SessionRecord, String> {
    Ok(SessionRecord {
        id: row.id.to_owned(),
        user_id: row.user_id.to_owned(),
        state: match row.state {
            StateRow::Pending => SessionState::Pending,
            StateRow::Bound => SessionState::Bound,
            StateRow::SignedOut { at } => SessionState::SignedOut { at },
            StateRow::Revoked { at, by } => SessionState::Revoked {
                at,
                by: by.to_owned(),
            },
        },
        created_at: row.created_at,
        expires_at: row.expires_at,
        authorization_digest: row.authorization_digest,
        key: row.key.map(bound_key),
        assurance: assurance_from_code(row.assurance)?,
        challenge: row.challenge.map(|(value, expires_at)| PendingChallenge {
            value: value.to_owned(),
            expires_at,
        }),
        credential_digest: row.credential_digest,
        credential_expires_at: row.credential_expires_at,
        previous_credential_digest: row.previous_credential_digest,
        previous_credential_expires_at: row.previous_credential_expires_at,
        last_proof_at: row.last_proof_at,
        refresh_count: row.refresh_count,
        passkey_id: row.passkey_id.map(str::to_owned),
        passkey_proof_at: row.passkey_proof_at,
        device_id: row.device_id.map(str::to_owned),
    })
}

/// Converts a key to its row variant, which stores the algorithm too: each key type allows
/// exactly one ([`Algorithm`]).
fn key_row(key: &BoundKey) -> Result<KeyRow<'_>, StoreError> {
    match (key.alg, &key.jwk) {
        (Algorithm::Es256, Jwk::Ec { crv, x, y }) => Ok(KeyRow::Es256 { crv, x, y }),
        (Algorithm::Rs256, Jwk::Rsa { n, e }) => Ok(KeyRow::Rs256 { n, e }),
        (alg, _) => Err(StoreError::Database(format!(
            "session key does not match its algorithm {}",
            alg.name()
        ))),
    }
}

fn bound_key(row: KeyRow) -> BoundKey {
    match row {
        KeyRow::Es256 { crv, x, y } => BoundKey {
            alg: Algorithm::Es256,
            jwk: Jwk::Ec {
                crv: crv.to_owned(),
                x: x.to_owned(),
                y: y.to_owned(),
            },
        },
        KeyRow::Rs256 { n, e } => BoundKey {
            alg: Algorithm::Rs256,
            jwk: Jwk::Rsa {
                n: n.to_owned(),
                e: e.to_owned(),
            },
        },
    }
}

/// Fixed codes, so that reordering [`Assurance`] cannot change what is stored.
fn assurance_code(assurance: Assurance) -> u8 {
    match assurance {
        Assurance::Software => 0,
        Assurance::Passkey => 1,
        Assurance::Tpm => 2,
    }
}

fn assurance_from_code(code: u8) -> Result<Assurance, String> {
    match code {
        0 => Ok(Assurance::Software),
        1 => Ok(Assurance::Passkey),
        2 => Ok(Assurance::Tpm),
        other => Err(format!("unknown assurance code {other}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn bound_es256() -> SessionRecord {
        SessionRecord {
            id: "Ai0r8bC2dQkNnX7yT4pLmA".to_owned(),
            user_id: "Bq1s9cD3eRlOoY8zU5qMnB".to_owned(),
            state: SessionState::Bound,
            created_at: 1_764_900_000,
            expires_at: 1_765_504_800,
            authorization_digest: None,
            key: Some(BoundKey {
                alg: Algorithm::Es256,
                jwk: Jwk::Ec {
                    crv: "P-256".to_owned(),
                    x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".to_owned(),
                    y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".to_owned(),
                },
            }),
            assurance: Assurance::Software,
            challenge: Some(PendingChallenge {
                value: "W0p2nN1Zr6uT4sV8xY3bC5dE7fG9hJ2kL4mN6pQ8rS0".to_owned(),
                expires_at: 1_764_900_300,
            }),
            credential_digest: Some([7; 32]),
            credential_expires_at: 1_764_900_600,
            previous_credential_digest: Some([9; 32]),
            previous_credential_expires_at: 1_764_900_030,
            last_proof_at: Some(1_764_900_000),
            refresh_count: 41,
            passkey_id: None,
            passkey_proof_at: None,
            device_id: None,
        }
    }

    fn revoked_rs256() -> SessionRecord {
        SessionRecord {
            state: SessionState::Revoked {
                at: 1_764_900_100,
                by: "operator".to_owned(),
            },
            authorization_digest: Some([3; 32]),
            key: Some(BoundKey {
                alg: Algorithm::Rs256,
                jwk: Jwk::Rsa {
                    n: "n".repeat(342),
                    e: "AQAB".to_owned(),
                },
            }),
            assurance: Assurance::Tpm,
            challenge: None,
            previous_credential_digest: None,
            passkey_id: Some("cHJvb2Y".to_owned()),
            passkey_proof_at: Some(1_764_900_050),
            device_id: Some("dev-1".to_owned()),
            ..bound_es256()
        }
    }

    fn pending() -> SessionRecord {
        SessionRecord {
            state: SessionState::Pending,
            key: None,
            assurance: Assurance::Passkey,
            credential_digest: None,
            last_proof_at: None,
            ..bound_es256()
        }
    }

    #[test]
    fn every_state_and_key_round_trip() {
        let signed_out = SessionRecord {
            state: SessionState::SignedOut { at: 1_764_900_200 },
            ..bound_es256()
        };
        for session in [bound_es256(), revoked_rs256(), pending(), signed_out] {
            let bytes = encode_session(&session).unwrap();
            assert_eq!(bytes[0], FORMAT_V1);
            assert_eq!(decode_session(b"k", &bytes).unwrap(), session);
        }
    }

    #[test]
    fn compact_form_is_under_half_of_json() {
        let session = bound_es256();
        let compact = encode_session(&session).unwrap().len();
        let json = encode_session_json(&session).unwrap().len();
        assert!(compact < 300, "compact session is {compact} bytes");
        assert!(compact * 2 < json, "compact {compact} bytes, JSON {json}");
    }

    #[test]
    fn sessions_written_as_json_are_still_read() {
        for session in [bound_es256(), revoked_rs256(), pending()] {
            let json = encode_session_json(&session).unwrap();
            assert_eq!(decode_session(b"k", &json).unwrap(), session);
        }
    }

    #[test]
    fn damaged_records_are_corrupt() {
        let bytes = encode_session(&bound_es256()).unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        let mut unknown_format = bytes.clone();
        unknown_format[0] = 2;
        let session = bound_es256();
        let unknown_assurance = postcard::to_extend(
            &Row {
                assurance: 9,
                ..row_of(&session)
            },
            vec![FORMAT_V1],
        )
        .unwrap();

        let damaged = [
            Vec::new(),
            bytes[..bytes.len() - 1].to_vec(),
            bytes[..10].to_vec(),
            trailing,
            unknown_format,
            unknown_assurance,
        ];
        for record in damaged {
            assert!(
                matches!(
                    decode_session(b"k", &record),
                    Err(StoreError::Corrupt(key, _)) if key == "k"
                ),
                "{record:?}"
            );
        }
    }

    #[test]
    fn mismatched_key_algorithm_is_rejected() {
        let session = SessionRecord {
            key: Some(BoundKey {
                alg: Algorithm::Rs256,
                jwk: bound_es256().key.unwrap().jwk,
            }),
            ..bound_es256()
        };
        assert!(matches!(
            encode_session(&session),
            Err(StoreError::Database(_))
        ));
    }
}
