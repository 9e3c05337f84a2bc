//! Spent DPoP proofs (RFC 9449 §11.1), kept in memory until their `iat` window has closed.
//!
//! A proof is accepted once. Its replay key is the thumbprint of the key that signed it and its
//! `jti`, never the proof bytes: `(r, n − s)` is a second valid ECDSA signature of every proof.
//! The cache lives as long as the process, so it also refuses proofs whose `iat` precedes the
//! process start: a proof spent before a restart cannot be spent again after it.
//!
//! An entry is dropped once its `iat` is outside the window, at most `2 × IAT_WINDOW + 1`
//! seconds after it was spent. Memory is bounded only by the rate of verified proofs times that
//! time, about 100 bytes an entry: the token endpoint verifies each proof's signature before
//! spending it, so the rate is at most what the CPU can verify.
//!
//! NOTE: the rule at restart misses two kinds of proof: one dated ahead of the clock (the window
//! allows 60 seconds), and one made in the second of the restart and spent just before it.
//! Either can be spent once more after a restart. Server nonces (RFC 9449 §8) would close this.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use super::dpop::{DpopProof, IAT_WINDOW};
use crate::clock::UnixTime;
use crate::crypto::secret::sha256;

/// A reason a proof is rejected by the replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the proof was already used")]
    Replayed,
    #[error("the proof was made before the server started; make a new one")]
    BeforeStart,
}

/// The proofs spent since this process started.
#[derive(Debug)]
pub struct ReplayCache {
    started_at: UnixTime,
    spent: Mutex<Spent>,
}

#[derive(Debug, Default)]
struct Spent {
    keys: HashSet<ReplayKey>,
    /// The same keys by the second they expire in. A verified proof's `iat` is within
    /// `IAT_WINDOW` of the clock, so there are at most `2 × IAT_WINDOW + 1` buckets.
    by_expiry: BTreeMap<UnixTime, Vec<ReplayKey>>,
}

/// SHA-256 of the proof key's thumbprint, a dot and the `jti`. A thumbprint is base64url, so
/// the dot cannot be part of it and no two pairs share a key.
type ReplayKey = [u8; 32];

impl ReplayCache {
    /// Creates an empty cache for a process that started at `started_at`.
    pub fn new(started_at: UnixTime) -> Self {
        Self {
            started_at,
            spent: Mutex::default(),
        }
    }

    /// Records `proof` as spent at `now`, or returns the reason it is rejected.
    ///
    /// The proof must already be verified, so its `iat` is within the window of `now`.
    pub fn spend(&self, proof: &DpopProof, now: UnixTime) -> Result<(), ReplayError> {
        if proof.iat < self.started_at {
            return Err(ReplayError::BeforeStart);
        }
        // A poisoned lock rejects every proof rather than forget which were spent.
        let mut spent = self.spent.lock().map_err(|_| ReplayError::Replayed)?;
        spent.expire(now);

        let key = replay_key(proof);
        if !spent.keys.insert(key) {
            return Err(ReplayError::Replayed);
        }
        // From this time on, `iat` is outside the window and verification rejects the proof.
        let expires_at = proof.iat + IAT_WINDOW + 1;
        spent.by_expiry.entry(expires_at).or_default().push(key);
        Ok(())
    }

    /// Returns the number of spent proofs remembered.
    pub fn len(&self) -> usize {
        self.spent.lock().map_or(0, |spent| spent.keys.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Spent {
    fn expire(&mut self, now: UnixTime) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() > now {
                break;
            }
            for key in entry.remove() {
                self.keys.remove(&key);
            }
        }
    }
}

fn replay_key(proof: &DpopProof) -> ReplayKey {
    sha256(
        [proof.jkt.as_bytes(), b".", proof.jti.as_bytes()]
            .concat()
            .as_slice(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::{Algorithm, Jwk};
    use crate::store::BoundKey;

    const START: UnixTime = 1_000;

    fn proof(jkt: &str, jti: &str, iat: UnixTime) -> DpopProof {
        let jwk = Jwk::from_value(&serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
            "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE",
        }))
        .unwrap();
        DpopProof {
            jkt: jkt.into(),
            key: BoundKey {
                alg: Algorithm::Es256,
                jwk,
            },
            jti: jti.into(),
            iat,
        }
    }

    #[test]
    fn spend_accepts_proof_once_per_key() {
        let cache = ReplayCache::new(START);
        let first = proof("key-a", "j1", START + 5);

        assert_eq!(cache.spend(&first, START + 5), Ok(()));
        assert_eq!(cache.spend(&first, START + 6), Err(ReplayError::Replayed));
        // The same jti under another key is another proof.
        assert_eq!(
            cache.spend(&proof("key-b", "j1", START + 5), START + 6),
            Ok(())
        );
        // A jti that only looks like a shifted pair is not confused with it.
        assert_eq!(
            cache.spend(&proof("key-a.j1", "", START + 5), START + 6),
            Ok(())
        );
    }

    #[test]
    fn spend_rejects_proof_before_start() {
        let cache = ReplayCache::new(START);

        let early = proof("key-a", "j1", START - 1);
        assert_eq!(cache.spend(&early, START), Err(ReplayError::BeforeStart));
        assert_eq!(cache.spend(&proof("key-a", "j2", START), START), Ok(()));
    }

    #[test]
    fn spend_forgets_proof_after_window() {
        let cache = ReplayCache::new(START);
        // An `iat` ahead of the clock keeps its entry longer.
        let ahead = proof("key-a", "ahead", START + IAT_WINDOW);
        let now = proof("key-a", "now", START);
        cache.spend(&ahead, START).unwrap();
        cache.spend(&now, START).unwrap();

        let last_second_of_now = START + IAT_WINDOW;
        assert_eq!(
            cache.spend(&now, last_second_of_now),
            Err(ReplayError::Replayed)
        );
        cache
            .spend(
                &proof("key-a", "tick", last_second_of_now + 1),
                last_second_of_now + 1,
            )
            .unwrap();
        assert_eq!(cache.len(), 2, "`now` expired, `ahead` and `tick` remain");

        let last_second_of_ahead = START + 2 * IAT_WINDOW;
        assert_eq!(
            cache.spend(&ahead, last_second_of_ahead),
            Err(ReplayError::Replayed)
        );
        cache
            .spend(
                &proof("key-a", "late", START + 3 * IAT_WINDOW),
                START + 3 * IAT_WINDOW,
            )
            .unwrap();
        assert_eq!(cache.len(), 1, "only the newest proof is remembered");
    }
}
