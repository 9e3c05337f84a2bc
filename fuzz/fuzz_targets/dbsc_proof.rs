//! Fuzzes `verify_registration` and `verify_refresh`, each refresh against every fixture key
//! as the stored key, with raw tokens and with proofs signed by a fixture key (input layout in
//! `devbound_fuzz::TokenInput`).

#![no_main]

use devbound::crypto::Algorithm;
use devbound::dbsc::proof::{verify_refresh, verify_registration};
use devbound::dbsc::{DbscError, RefreshProof, RegistrationProof};
use devbound_fuzz::{Keys, SignedInput, TokenInput, keys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const BOTH: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];
const REGISTER_URL: &str = "https://devbound.test/dbsc/register";
const REFRESH_URL: &str = "https://devbound.test/dbsc/refresh";

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    match TokenInput::read(data) {
        Some(TokenInput::Raw(token)) => check_raw(token, keys),
        Some(TokenInput::Signed(input)) => check_signed(&input, keys),
        None => {}
    }
});

struct Outcomes {
    registration: Result<RegistrationProof, DbscError>,
    /// One refresh result per key in `Keys::all`, with that key stored for the session.
    refreshes: [Result<RefreshProof, DbscError>; 3],
}

fn verify_all(token: &str, keys: &Keys) -> Outcomes {
    let registration = verify_registration(token, &BOTH, REGISTER_URL);
    let refreshes = keys
        .all()
        .map(|key| verify_refresh(token, &key.bound(), REFRESH_URL));

    // A registration proof must carry a `jwk` header and a refresh proof must not, so no token
    // is both.
    if registration.is_ok() {
        assert!(
            refreshes.iter().all(Result::is_err),
            "token is both kinds of proof"
        );
    }
    Outcomes {
        registration,
        refreshes,
    }
}

/// Checks that a token the harness did not sign is never a valid proof.
fn check_raw(token: &str, keys: &Keys) {
    let outcomes = verify_all(token, keys);
    assert!(
        outcomes.registration.is_err(),
        "unsigned registration proof verified"
    );
    for refresh in &outcomes.refreshes {
        assert!(refresh.is_err(), "unsigned refresh proof verified");
    }
}

/// Checks that a proof that verifies was signed by the key it is verified with, and that the
/// result carries the payload's claims.
fn check_signed(input: &SignedInput, keys: &Keys) {
    let (token, _) = input.sign(keys);
    let signer = keys.signer(input.alg);
    let outcomes = verify_all(&token, keys);

    // RFC 7519 §7.2 step 10: the claims set is UTF-8 JSON, even in members the proof ignores.
    let verified = outcomes.registration.is_ok() || outcomes.refreshes.iter().any(Result::is_ok);
    if verified {
        assert!(
            std::str::from_utf8(input.payload).is_ok(),
            "payload that is not UTF-8 verified"
        );
    }

    // `Value` rejects some JSON that a claims struct accepts, such as an unpaired surrogate
    // escape in a member the struct skips, so the claims are compared only when it reads them.
    let Ok(claims) = serde_json::from_slice::<Value>(input.payload) else {
        return;
    };
    if let Ok(proof) = &outcomes.registration {
        assert_eq!(proof.key, signer.bound(), "registration bound another key");
        assert_eq!(Some(proof.challenge.as_str()), string_claim(&claims, "jti"));
        assert!(!proof.challenge.is_empty());
        assert_eq!(
            proof.authorization.as_deref(),
            string_claim(&claims, "authorization")
        );
        assert!(audience_allows(&claims, REGISTER_URL));
    }

    for (stored, refresh) in keys.all().into_iter().zip(&outcomes.refreshes) {
        let Ok(proof) = refresh else {
            continue;
        };
        assert!(
            std::ptr::eq(stored, signer),
            "refresh verified with a key that did not sign"
        );
        assert_eq!(Some(proof.challenge.as_str()), string_claim(&claims, "jti"));
        assert!(!proof.challenge.is_empty());
        assert!(audience_allows(&claims, REFRESH_URL));
    }
}

fn string_claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// Returns whether the `aud` claim is absent or names the endpoint, alone or in an array.
/// Like serde reading an `Option`, this takes `"aud": null` as absent.
fn audience_allows(claims: &Value, url: &str) -> bool {
    match claims.get("aud") {
        None | Some(Value::Null) => true,
        Some(Value::String(aud)) => aud == url,
        Some(Value::Array(values)) => values.iter().any(|value| value.as_str() == Some(url)),
        Some(_) => false,
    }
}
