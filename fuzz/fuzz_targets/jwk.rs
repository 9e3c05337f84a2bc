//! Fuzzes `Jwk::from_value` with arbitrary JSON, then `thumbprint` and `parse_key` on every key
//! it accepts.

#![no_main]

use devbound::crypto::{Algorithm, Jwk, base64url};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(jwk) = Jwk::from_value(&value) else {
        return;
    };

    check_members(&jwk);
    check_thumbprint(&jwk);
    check_key(&jwk);

    // A key goes into the store through serde and must come back out equal and still valid.
    let stored = serde_json::to_value(&jwk).expect("a Jwk serializes");
    assert_eq!(
        Jwk::from_value(&stored).as_ref(),
        Ok(&jwk),
        "stored form re-validates"
    );
    let loaded: Jwk = serde_json::from_value(stored).expect("stored form deserializes");
    assert_eq!(loaded.thumbprint(), jwk.thumbprint());
});

/// Checks the size and encoding of each member of an accepted key.
fn check_members(jwk: &Jwk) {
    match jwk {
        Jwk::Ec { crv, x, y } => {
            assert_eq!(crv, "P-256");
            assert_eq!(decoded_len(x), 32, "x is not a 32-byte field element");
            assert_eq!(decoded_len(y), 32, "y is not a 32-byte field element");
        }
        Jwk::Rsa { n, e } => {
            let modulus = base64url::decode(n).expect("n is base64url");
            assert!(
                (256..=512).contains(&modulus.len()),
                "modulus of {} bytes",
                modulus.len()
            );
            assert_ne!(
                modulus.first(),
                Some(&0),
                "modulus has a leading zero octet"
            );
            let exponent = base64url::decode(e).expect("e is base64url");
            assert_ne!(
                exponent.first(),
                Some(&0),
                "exponent has a leading zero octet"
            );

            // RFC 8017 §3.1: n is a product of odd primes, and e is odd and at least 3.
            assert!(
                modulus.last().is_some_and(|byte| byte % 2 == 1),
                "modulus is even"
            );
            let exponent_at_least_3 = exponent.len() > 1 || exponent.first() >= Some(&3);
            assert!(exponent_at_least_3, "exponent {exponent:?} is below 3");
            assert!(
                exponent.last().is_some_and(|byte| byte % 2 == 1),
                "exponent is even"
            );
        }
    }
}

/// RFC 7638 §3: a SHA-256 thumbprint is 32 bytes, 43 characters of unpadded base64url.
fn check_thumbprint(jwk: &Jwk) {
    let thumbprint = jwk.thumbprint();
    assert_eq!(thumbprint.len(), 43);
    assert_eq!(decoded_len(&thumbprint), 32);
}

/// Checks that the key parses and that its type allows exactly one algorithm.
fn check_key(jwk: &Jwk) {
    let key = jwk
        .parse_key()
        .expect("from_value accepted a key that parse_key rejects");
    assert_eq!(jwk.check_algorithm(key.alg), Ok(()));
    let other = match key.alg {
        Algorithm::Es256 => Algorithm::Rs256,
        Algorithm::Rs256 => Algorithm::Es256,
    };
    assert!(jwk.check_algorithm(other).is_err());
}

fn decoded_len(text: &str) -> usize {
    base64url::decode(text).map_or(0, |bytes| bytes.len())
}
