#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Hostile JWS proofs sent over HTTPS to the DBSC registration and refresh endpoints of a
//! running server: forged and malleable signatures, algorithm confusion, keys named by the token
//! itself, and malformed input. Every one must be rejected with the status Chromium expects
//! (400 for registration, 403 with a new challenge for refresh) and never a 5xx.

mod support;

use devbound::client::{DbscClient, RefreshOutcome, SessionKey};
use devbound::crypto::{Algorithm, Jwk, base64url};
use devbound::dbsc::proof::PROOF_TYPE;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use support::dbsc::{
    ALGORITHMS, Pending, assert_refresh_rejected, assert_registration_rejected, compact,
    generate_key, hs256, outstanding_challenge, post_refresh, post_refresh_bytes,
    post_register_bytes, public_key_bytes, refresh_header, registration_claims,
    registration_header, sign, sign_in_pending, signature_of, stored, with_signature,
};
use support::jose::{forged_es256_signatures, high_s_twin};
use support::server::TestServer;

/// RS256 signatures that must never verify: all zero, empty, truncated, one bit flipped.
fn forged_rs256_signatures(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut flipped = valid.to_vec();
    flipped[0] ^= 1;
    vec![
        ("all zero", vec![0u8; valid.len()]),
        ("empty", Vec::new()),
        ("truncated", valid[..valid.len() - 1].to_vec()),
        ("one bit flipped", flipped),
    ]
}

fn forged_signatures(alg: Algorithm, valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    match alg {
        Algorithm::Es256 => forged_es256_signatures(valid),
        Algorithm::Rs256 => forged_rs256_signatures(valid),
    }
}

/// Asserts that `twin` is a valid signature of `token`'s signing input by `key`, so that a test
/// built on it tests replay detection and not signature verification.
fn assert_valid_es256(key: &SessionKey, token: &str, twin: &[u8]) {
    let SessionKey::Es256(signing) = key else {
        panic!("not an ES256 key");
    };
    let verifying: &VerifyingKey = signing.verifying_key();
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let twin = Signature::from_slice(twin).unwrap();
    assert!(verifying.verify(signing_input.as_bytes(), &twin).is_ok());
}

/// Signs `message` with the RSA `key` under RSASSA-PSS with SHA-256, the PS256 algorithm.
fn pss_signature(key: &SessionKey, message: &[u8]) -> Vec<u8> {
    let SessionKey::Rs256(pair) = key else {
        panic!("not an RSA key");
    };
    let mut signature = vec![0u8; pair.public_modulus_len()];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    pair.sign(
        &aws_lc_rs::signature::RSA_PSS_SHA256,
        &rng,
        message,
        &mut signature,
    )
    .unwrap();
    signature
}

/// Signs `header` and `claims` with `key` as PS256, whatever `alg` the header names.
fn sign_pss(key: &SessionKey, header: &Value, claims: &Value) -> String {
    let unsigned = compact(header, claims, &[]);
    let signing_input = unsigned.trim_end_matches('.');
    let signature = pss_signature(key, signing_input.as_bytes());
    with_signature(&unsigned, &signature)
}

/// Binds a session for a new user and returns its client and session id.
async fn bound(server: &TestServer, name: &str, alg: Algorithm) -> (DbscClient, String) {
    let client = server.bound_client(name, alg).await;
    let id = client.session_id.clone().unwrap();
    (client, id)
}

/// Sends `proof` as a refresh of session `id` and asserts it was rejected.
async fn assert_refresh_proof_rejected(server: &TestServer, id: &str, proof: &str) {
    let before = stored(server, id);
    let response = post_refresh(server, id, Some(proof)).await;
    assert_refresh_rejected(server, &response, &before);
}

/// Sends `proof` as the registration of `pending` and asserts it was rejected.
async fn assert_registration_proof_rejected(server: &TestServer, pending: &Pending, proof: &str) {
    let response = pending.register(proof).await;
    assert_registration_rejected(server, pending, response).await;
}

#[tokio::test]
async fn registration_rejects_forged_signatures() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let valid = pending.proof(&registration_claims(&pending.offer));

        for (name, signature) in forged_signatures(alg, &signature_of(&valid)) {
            let response = pending.register(&with_signature(&valid, &signature)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{alg} {name}");
            assert_registration_rejected(&server, &pending, response).await;
        }
    }
}

#[tokio::test]
async fn refresh_rejects_forged_signatures() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let (client, id) = bound(&server, &format!("user-{alg}"), alg).await;
        for case in 0.. {
            // Each rejection replaces the challenge, so every forgery is built over the current one.
            let valid = client
                .refresh_proof(&outstanding_challenge(&server, &id))
                .unwrap();
            let forged = forged_signatures(alg, &signature_of(&valid))
                .into_iter()
                .nth(case);
            let Some((name, signature)) = forged else {
                break;
            };
            let before = stored(&server, &id);

            let proof = with_signature(&valid, &signature);
            let response = post_refresh(&server, &id, Some(&proof)).await;

            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{alg} {name}");
            assert_refresh_rejected(&server, &response, &before);
        }
    }
}

/// (r, n − s) is a second valid signature of every ES256 proof, so a replay check keyed on the
/// token bytes would let it through. Whichever of the two arrives first, only one binds.
#[tokio::test]
async fn high_s_twin_cannot_replay_registration() {
    let server = TestServer::default_manual().await;
    for (name, twin_first) in [("alice", true), ("bob", false)] {
        let pending = sign_in_pending(&server, name, Algorithm::Es256).await;
        let proof = pending.proof(&registration_claims(&pending.offer));
        let twin = high_s_twin(&signature_of(&proof));
        assert_valid_es256(pending.client.key(), &proof, &twin);
        let twin = with_signature(&proof, &twin);

        let (first, second) = if twin_first {
            (&twin, &proof)
        } else {
            (&proof, &twin)
        };
        let first = pending.register(first).await.status();
        let second = pending.register(second).await.status();

        // Exactly one binds, whether or not the server accepts high-S signatures at all.
        let statuses = [first, second];
        let bound = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(bound, 1, "{statuses:?}");
        assert!(statuses.contains(&StatusCode::BAD_REQUEST), "{statuses:?}");
    }
}

#[tokio::test]
async fn high_s_twin_cannot_replay_refresh() {
    let server = TestServer::default_manual().await;
    for (name, twin_first) in [("alice", true), ("bob", false)] {
        let (client, id) = bound(&server, name, Algorithm::Es256).await;
        let proof = client
            .refresh_proof(&outstanding_challenge(&server, &id))
            .unwrap();
        let twin = high_s_twin(&signature_of(&proof));
        assert_valid_es256(client.key(), &proof, &twin);
        let twin = with_signature(&proof, &twin);

        let (first, second) = if twin_first {
            (&twin, &proof)
        } else {
            (&proof, &twin)
        };
        let first = post_refresh(&server, &id, Some(first)).await.status();
        let before = stored(&server, &id);
        let second = post_refresh(&server, &id, Some(second)).await;

        // A twin sent first may be accepted or rejected, and a rejection spends the challenge too.
        if twin_first {
            assert!(
                first == StatusCode::OK || first == StatusCode::FORBIDDEN,
                "twin got {first}"
            );
        } else {
            assert_eq!(first, StatusCode::OK);
        }
        assert_refresh_rejected(&server, &second, &before);
    }
}

#[tokio::test]
async fn none_algorithm_is_rejected() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let (client, id) = bound(&server, "bob", Algorithm::Es256).await;

    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let mut header = registration_header(pending.client.key());
        header["alg"] = json!(alg);
        let claims = registration_claims(&pending.offer);
        let valid_signature = signature_of(&pending.proof(&claims));
        for signature in [Vec::new(), valid_signature] {
            let proof = compact(&header, &claims, &signature);
            assert_registration_proof_rejected(&server, &pending, &proof).await;
        }

        let header = json!({ "alg": alg, "typ": PROOF_TYPE });
        let claims = json!({ "jti": outstanding_challenge(&server, &id) });
        let proof = compact(&header, &claims, &[]);
        assert_refresh_proof_rejected(&server, &id, &proof).await;
    }
    let key = stored(&server, &id).key.unwrap();
    assert_eq!(
        key.jwk,
        Jwk::from_value(&client.key().public_jwk()).unwrap()
    );
}

/// HS256 keyed with the public key bytes verifies under a library that takes the algorithm
/// from the token and the HMAC secret from the stored public key.
#[tokio::test]
async fn hs256_keyed_with_public_key_is_rejected() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let (client, id) = bound(&server, &format!("bound-{alg}"), alg).await;

        let mut header = registration_header(pending.client.key());
        header["alg"] = json!("HS256");
        for secret in public_key_bytes(pending.client.key()) {
            let proof = hs256(&secret, &header, &registration_claims(&pending.offer));
            assert_registration_proof_rejected(&server, &pending, &proof).await;
        }

        let header = json!({ "alg": "HS256", "typ": PROOF_TYPE });
        for secret in public_key_bytes(client.key()) {
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            let proof = hs256(&secret, &header, &claims);
            assert_refresh_proof_rejected(&server, &id, &proof).await;
        }
    }
}

/// `PS256`, `ES384` and other names are not offered. Each proof carries a signature that the
/// session key really made, so only the `alg` name is wrong.
#[tokio::test]
async fn unoffered_algorithms_are_rejected() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let (client, id) = bound(&server, &format!("bound-{alg}"), alg).await;
        let declared: &[&str] = match alg {
            Algorithm::Es256 => &["ES384", "ES512", "es256", "ES256K", "EdDSA"],
            Algorithm::Rs256 => &["PS256", "RS384", "RS512", "rs256"],
        };

        for name in declared {
            let key = pending.client.key();
            let mut header = registration_header(key);
            header["alg"] = json!(name);
            let claims = registration_claims(&pending.offer);
            let proof = sign(key, &header, &claims);
            assert_registration_proof_rejected(&server, &pending, &proof).await;

            let header = json!({ "alg": name, "typ": PROOF_TYPE });
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            let proof = sign(client.key(), &header, &claims);
            assert_refresh_proof_rejected(&server, &id, &proof).await;
        }

        if alg == Algorithm::Rs256 {
            let mut header = registration_header(pending.client.key());
            header["alg"] = json!("PS256");
            let claims = registration_claims(&pending.offer);
            let proof = sign_pss(pending.client.key(), &header, &claims);
            assert_registration_proof_rejected(&server, &pending, &proof).await;

            let header = json!({ "alg": "PS256", "typ": PROOF_TYPE });
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            let proof = sign_pss(client.key(), &header, &claims);
            assert_refresh_proof_rejected(&server, &id, &proof).await;
        }
    }
}

/// The algorithm is fixed by the stored key: a valid signature by that key under the other
/// offered algorithm's name is rejected.
#[tokio::test]
async fn refresh_rejects_algorithm_other_than_stored_key() {
    let server = TestServer::default_manual().await;
    for (alg, declared) in [(Algorithm::Es256, "RS256"), (Algorithm::Rs256, "ES256")] {
        let (client, id) = bound(&server, &format!("user-{alg}"), alg).await;
        let header = json!({ "alg": declared, "typ": PROOF_TYPE });
        let claims = json!({ "jti": outstanding_challenge(&server, &id) });
        let proof = sign(client.key(), &header, &claims);

        assert_refresh_proof_rejected(&server, &id, &proof).await;
    }
}

#[tokio::test]
async fn refresh_rejects_key_reference_headers() {
    let server = TestServer::default_manual().await;
    let attacker = generate_key(Algorithm::Es256);
    let references = [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
    ];
    for alg in ALGORITHMS {
        let (client, id) = bound(&server, &format!("user-{alg}"), alg).await;
        for (member, value) in &references {
            for signer in [client.key(), &attacker] {
                let mut header = refresh_header(client.key());
                header[member] = value.clone();
                let claims = json!({ "jti": outstanding_challenge(&server, &id) });
                let proof = sign(signer, &header, &claims);
                assert_refresh_proof_rejected(&server, &id, &proof).await;
            }
        }
    }
}

#[tokio::test]
async fn refresh_rejects_kid_tricks() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let (client, id) = bound(&server, &format!("user-{alg}"), alg).await;
        let attacker = generate_key(alg);
        let attacker_header = refresh_header(&attacker);

        // A `kid` naming an empty file, with an HMAC keyed by its empty content.
        let header = json!({ "alg": "HS256", "typ": PROOF_TYPE, "kid": "../../dev/null" });
        let claims = json!({ "jti": outstanding_challenge(&server, &id) });
        assert_refresh_proof_rejected(&server, &id, &hs256(b"", &header, &claims)).await;

        for kid in ["../../dev/null", "k1' OR '1'='1", "k1"] {
            let mut header = attacker_header.clone();
            header["kid"] = json!(kid);
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            assert_refresh_proof_rejected(&server, &id, &sign(&attacker, &header, &claims)).await;

            header["jwk"] = attacker.public_jwk();
            let claims = json!({ "jti": outstanding_challenge(&server, &id) });
            assert_refresh_proof_rejected(&server, &id, &sign(&attacker, &header, &claims)).await;
        }
        let key = stored(&server, &id).key.unwrap();
        assert_eq!(
            key.jwk,
            Jwk::from_value(&client.key().public_jwk()).unwrap()
        );
    }
}

#[tokio::test]
async fn refresh_rejects_attacker_key_claim() {
    let server = TestServer::default_manual().await;
    let (client, id) = bound(&server, "alice", Algorithm::Es256).await;
    let attacker = generate_key(Algorithm::Es256);
    let claims =
        json!({ "jti": outstanding_challenge(&server, &id), "key": attacker.public_jwk() });

    let proof = sign(&attacker, &refresh_header(client.key()), &claims);

    assert_refresh_proof_rejected(&server, &id, &proof).await;
}

#[tokio::test]
async fn registration_rejects_key_reference_headers() {
    let server = TestServer::default_manual().await;
    let pending = sign_in_pending(&server, "alice", Algorithm::Es256).await;
    let references = [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
    ];
    for (member, value) in references {
        let mut header = registration_header(pending.client.key());
        header[member] = value;
        let proof = sign(
            pending.client.key(),
            &header,
            &registration_claims(&pending.offer),
        );
        assert_registration_proof_rejected(&server, &pending, &proof).await;
    }
}

/// Proof header values that are not a compact JWS, or whose parts do not decode to a JSON
/// object, in the bare form Chromium sends and as a structured-field string.
fn malformed_tokens() -> Vec<Vec<u8>> {
    let part = |text: &str| base64url::encode(text);
    let claims = part("{}");
    let signature = base64url::encode([0u8; 64]);
    let mut tokens: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"abc".to_vec(),
        b"a.b".to_vec(),
        b"a.b.c.d".to_vec(),
        b"..".to_vec(),
        b"...".to_vec(),
        b"!!!.e30.AA".to_vec(),
        b"\"!!!.e30.AA\"".to_vec(),
        b"\"e30=.e30.AA\"".to_vec(),
        b"\"+/8.e30.AA\"".to_vec(),
        b"\"e30.e30.AA==\"".to_vec(),
        b"\"unterminated".to_vec(),
        b"\"a\\\"b\"".to_vec(),
        b"?1".to_vec(),
        b"(a b)".to_vec(),
        b"e30.e30.AA, e30.e30.AA".to_vec(),
        vec![0xff, 0xfe, b'.', b'a', b'.', b'b'],
        vec![b'a'; 9000],
    ];
    let headers = [
        "not json".to_owned(),
        "[]".to_owned(),
        "\"ES256\"".to_owned(),
        "null".to_owned(),
        "{}".to_owned(),
        r#"{"alg":1}"#.to_owned(),
        r#"{"alg":null}"#.to_owned(),
        r#"{"alg":"ES256","alg":"none"}"#.to_owned(),
        r#"{"alg":"ES256","typ":"dbsc+jwt"}garbage"#.to_owned(),
        r#"{"alg":"ES256","typ":"dbsc+jwt","jwk":"not an object"}"#.to_owned(),
        r#"{"alg":"ES256","typ":"dbsc+jwt","jwk":{"kty":"EC"}}"#.to_owned(),
        format!(
            r#"{{"alg":"ES256","x":{}1{}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        ),
        "\u{feff}{\"alg\":\"ES256\"}".to_owned(),
    ];
    for header in headers {
        tokens.push(format!("{}.{claims}.{signature}", part(&header)).into_bytes());
    }
    let non_utf8 = base64url::encode([0xff, 0xfe, 0xfd]);
    tokens.push(format!("{non_utf8}.{claims}.{signature}").into_bytes());
    tokens
}

/// Tokens with a well-formed header and a valid signature by `key` over a payload that is not
/// a usable claims object.
fn signed_malformed_payloads(key: &SessionKey, header: &Value) -> Vec<String> {
    let encoded_header = base64url::encode(header.to_string());
    let payloads = [
        "not json",
        "[]",
        "null",
        "{}",
        r#"{"jti":1}"#,
        r#"{"jti":""}"#,
        r#"{"jti":"x"}x"#,
    ];
    payloads
        .iter()
        .map(|payload| {
            let signing_input = format!("{encoded_header}.{}", base64url::encode(payload));
            let signature = key.sign(signing_input.as_bytes()).unwrap();
            format!("{signing_input}.{}", base64url::encode(signature))
        })
        .collect()
}

#[tokio::test]
async fn malformed_refresh_proofs_get_new_challenge() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let (mut client, id) = bound(&server, &format!("user-{alg}"), alg).await;
        let mut tokens = malformed_tokens();
        let header = refresh_header(client.key());
        tokens.extend(
            signed_malformed_payloads(client.key(), &header)
                .into_iter()
                .map(String::into_bytes),
        );

        for token in &tokens {
            let before = stored(&server, &id);
            let response = post_refresh_bytes(&server, &id, token).await;
            let printable = String::from_utf8_lossy(&token[..token.len().min(80)]).into_owned();
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{alg} {printable}"
            );
            assert_refresh_rejected(&server, &response, &before);
        }

        // The server still refreshes the session with a proper proof.
        let outcome = client.refresh().await.unwrap();
        assert!(matches!(outcome, RefreshOutcome::Renewed { .. }));
    }
}

#[tokio::test]
async fn malformed_registration_proofs_are_bad_requests() {
    let server = TestServer::default_manual().await;
    for alg in ALGORITHMS {
        let pending = sign_in_pending(&server, &format!("user-{alg}"), alg).await;
        let mut tokens = malformed_tokens();
        let header = registration_header(pending.client.key());
        let signed = signed_malformed_payloads(pending.client.key(), &header);
        tokens.extend(signed.into_iter().map(String::into_bytes));

        for token in &tokens {
            let response = post_register_bytes(&server, token).await;
            let printable = String::from_utf8_lossy(&token[..token.len().min(80)]).into_owned();
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{alg} {printable}"
            );
            assert_registration_rejected(&server, &pending, response).await;
        }

        // The challenge was not spent: the proper proof still binds the session.
        let proof = pending.proof(&registration_claims(&pending.offer));
        assert_eq!(pending.register(&proof).await.status(), StatusCode::OK);
    }
}
