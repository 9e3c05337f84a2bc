//! Fuzzes `CompactJws::parse` and `verify` with raw tokens and with tokens signed by the
//! fixture keys (input layout in `devbound_fuzz::TokenInput`).

#![no_main]

use devbound::crypto::jws::MAX_JWS_LEN;
use devbound::crypto::{Algorithm, CompactJws, JoseError, base64url};
use devbound_fuzz::{Keys, SignedInput, TokenInput, keys, tamper};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const BOTH: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    match TokenInput::read(data) {
        Some(TokenInput::Raw(token)) => check_raw(token, keys),
        Some(TokenInput::Signed(input)) => check_signed(&input, keys),
        None => {}
    }
});

/// Checks that a token the harness did not sign verifies with no fixture key.
fn check_raw(token: &str, keys: &Keys) {
    let Some(jws) = parse_and_check(token, keys) else {
        return;
    };
    for key in keys.all().into_iter().filter(|key| key.alg() == jws.alg) {
        let result = jws.verify::<Value>(&key.public);
        assert_eq!(
            result.err(),
            Some(JoseError::BadSignature),
            "unsigned token verified"
        );
    }
}

/// Checks that a genuine signature verifies, a flipped signature bit does not, and another
/// P-256 key is rejected.
fn check_signed(input: &SignedInput, keys: &Keys) {
    let (token, signature) = input.sign(keys);
    let Some(jws) = parse_and_check(&token, keys) else {
        return;
    };
    let signer = keys.signer(input.alg);

    // A header that names the other algorithm leaves the signer's key unusable, which
    // `parse_and_check` has already checked.
    if jws.alg != input.alg {
        return;
    }

    let payload_is_json = serde_json::from_slice::<Value>(input.payload).is_ok();
    match jws.verify::<Value>(&signer.public) {
        Ok(_) => assert!(
            payload_is_json,
            "verify accepted a payload that is not JSON"
        ),
        Err(JoseError::Payload(_)) => assert!(!payload_is_json, "verify rejected a JSON payload"),
        Err(error) => panic!("genuine signature rejected: {error}"),
    }

    if input.alg == Algorithm::Es256 {
        let other = jws.verify::<Value>(&keys.p256_unused.public);
        assert_eq!(
            other.err(),
            Some(JoseError::BadSignature),
            "another P-256 key verified"
        );
    }

    let forged = tamper(&token, &signature);
    let Ok(forged) = CompactJws::parse(&forged, &BOTH) else {
        panic!("changing the signature made the token unparsable");
    };
    let result = forged.verify::<Value>(&signer.public);
    assert_eq!(
        result.err(),
        Some(JoseError::BadSignature),
        "tampered signature verified"
    );
}

/// Parses `token` and checks what holds for every token `parse` accepts.
fn parse_and_check<'a>(token: &'a str, keys: &Keys) -> Option<CompactJws<'a>> {
    let jws = match CompactJws::parse(token, &BOTH) {
        Ok(jws) => jws,
        Err(JoseError::TooLong) => {
            assert!(token.len() > MAX_JWS_LEN);
            return None;
        }
        Err(_) => return None,
    };
    assert!(token.len() <= MAX_JWS_LEN);
    assert_eq!(
        token.matches('.').count(),
        2,
        "parse accepted a token without three parts"
    );
    assert_eq!(
        jws.alg.name(),
        jws.header.alg,
        "parsed `alg` differs from the header"
    );

    // RFC 7515 §5.2 step 3: the header is UTF-8 JSON, even in members that parse skips.
    let header_b64 = token.split('.').next().unwrap_or_default();
    let header = base64url::decode(header_b64).expect("accepted header is base64url");
    assert!(
        std::str::from_utf8(&header).is_ok(),
        "header that is not UTF-8 accepted"
    );

    // Only the header `alg` selects the algorithm, so accepting just that one changes nothing,
    // and accepting just the other one rejects the token.
    let other = match jws.alg {
        Algorithm::Es256 => Algorithm::Rs256,
        Algorithm::Rs256 => Algorithm::Es256,
    };
    assert!(CompactJws::parse(token, &[jws.alg]).is_ok());
    assert!(matches!(
        CompactJws::parse(token, &[other]),
        Err(JoseError::UnsupportedAlgorithm(_))
    ));

    // RFC 7515 §4.1.9: `typ` is a media type name, compared case-insensitively.
    let typed = jws.require_type("dbsc+jwt").is_ok();
    let typ = jws.header.typ.as_deref().unwrap_or_default();
    assert_eq!(typed, typ.eq_ignore_ascii_case("dbsc+jwt"), "`typ` {typ:?}");

    if let Ok(Some(jwk)) = jws.embedded_jwk() {
        assert_eq!(jwk.thumbprint().len(), 43);
    }

    // RFC 8725 §3.1: a key is used only with its own algorithm, whatever `alg` the header names.
    for key in keys.all().into_iter().filter(|key| key.alg() != jws.alg) {
        let result = jws.verify::<Value>(&key.public);
        assert!(
            matches!(result, Err(JoseError::UnsupportedAlgorithm(_))),
            "a {} key verified a {} token",
            key.alg(),
            jws.alg
        );
    }
    Some(jws)
}
