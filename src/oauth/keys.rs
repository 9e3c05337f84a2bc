//! The key ring that signs access tokens, and its JWKS (RFC 7517 §5) with rotation.
//!
//! The newest key signs. A replaced key stays published until every token it signed has
//! expired, which is [`super::GRANT_TOKEN_TTL`] after it was replaced.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::GRANT_TOKEN_TTL;
use crate::clock::UnixTime;
use crate::crypto::base64url;
use crate::crypto::signing::{SigningError, SigningKey};
use crate::crypto::{CompactJws, JoseError, PublicKey};
use crate::store::{SigningKeyRecord, Store, StoreError};

/// A failure to load or rotate the signing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("no signing key is loaded")]
    Empty,
}

/// A loaded key: the signer, its verifier and when it was replaced.
#[derive(Debug)]
struct LoadedKey {
    signer: SigningKey,
    verifier: PublicKey,
    retired_at: Option<UnixTime>,
}

/// The service's access-token signing keys, oldest first.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Vec<Arc<LoadedKey>>>,
}

impl KeyRing {
    /// Loads the stored keys, creating the first one if there is none.
    pub fn load_or_create(&self, store: &dyn Store, now: UnixTime) -> Result<(), KeyRingError> {
        let mut records = store.list_signing_keys()?;
        if records.is_empty() {
            records.push(create_key(store, now)?);
        }
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            loaded.push(Arc::new(load(&record)?));
        }
        self.replace(loaded);
        Ok(())
    }

    /// Creates a new signing key and retires the current one, which stays published.
    pub fn rotate(&self, store: &dyn Store, now: UnixTime) -> Result<String, KeyRingError> {
        let mut records = store.list_signing_keys()?;
        for record in records
            .iter_mut()
            .filter(|record| record.retired_at.is_none())
        {
            record.retired_at = Some(now);
            store.insert_signing_key(record)?;
        }
        let created = create_key(store, now)?;
        let kid = created.kid.clone();
        records.push(created);
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            loaded.push(Arc::new(load(&record)?));
        }
        self.replace(loaded);
        Ok(kid)
    }

    /// Signs `claims` as a JWS of type `typ` with the newest key.
    pub fn sign(&self, typ: &str, claims: &impl serde::Serialize) -> Result<String, KeyRingError> {
        let key = self.current().ok_or(KeyRingError::Empty)?;
        Ok(key.signer.sign_jws(typ, claims)?)
    }

    /// Returns the published keys (RFC 7517 §5): the current key and every replaced key whose
    /// tokens may still be unexpired at `now`.
    pub fn jwks(&self, now: UnixTime) -> Value {
        let keys: Vec<Value> = self
            .published(now)
            .iter()
            .map(|key| key.signer.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Verifies a JWS signed by one of the published keys, found by the header's `kid` only.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        jws: &CompactJws<'_>,
        now: UnixTime,
    ) -> Result<T, JoseError> {
        let kid = jws.header.kid.as_deref().unwrap_or_default();
        let key = self
            .published(now)
            .into_iter()
            .find(|key| key.signer.kid == kid)
            .ok_or(JoseError::BadSignature)?;
        jws.verify(&key.verifier)
    }

    fn published(&self, now: UnixTime) -> Vec<Arc<LoadedKey>> {
        let Ok(keys) = self.keys.read() else {
            return Vec::new();
        };
        keys.iter()
            .filter(|key| key.retired_at.is_none_or(|at| now < at + GRANT_TOKEN_TTL))
            .cloned()
            .collect()
    }

    fn current(&self) -> Option<Arc<LoadedKey>> {
        let keys = self.keys.read().ok()?;
        keys.iter()
            .rev()
            .find(|key| key.retired_at.is_none())
            .cloned()
    }

    fn replace(&self, loaded: Vec<Arc<LoadedKey>>) {
        if let Ok(mut keys) = self.keys.write() {
            *keys = loaded;
        }
    }
}

fn create_key(store: &dyn Store, now: UnixTime) -> Result<SigningKeyRecord, KeyRingError> {
    let (key, pkcs8) = SigningKey::generate()?;
    let record = SigningKeyRecord {
        kid: key.kid.clone(),
        pkcs8: base64url::encode(pkcs8),
        created_at: now,
        retired_at: None,
    };
    store.insert_signing_key(&record)?;
    tracing::info!(target: "security", kid = %record.kid, "created access-token signing key");
    Ok(record)
}

fn load(record: &SigningKeyRecord) -> Result<LoadedKey, KeyRingError> {
    let invalid = || SigningError::InvalidKey(record.kid.clone());
    let pkcs8 = base64url::decode(&record.pkcs8).map_err(|_| invalid())?;
    let signer = SigningKey::from_pkcs8(&pkcs8).map_err(|_| invalid())?;
    let verifier = signer.verification_key()?;
    Ok(LoadedKey {
        signer,
        verifier,
        retired_at: record.retired_at,
    })
}
