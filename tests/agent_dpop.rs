//! Hostile DPoP proofs and access tokens over HTTPS: at the token endpoint and at the example
//! API, which verifies tokens with devbound's JWKS. Forged and malleable signatures, keys
//! named by the token, algorithm confusion, `htu`/`htm` matching and key binding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use devbound::client::{AgentClient, sign_jws};
use devbound::crypto::{Secret, base64url};
use devbound::http::routes;
use devbound::oauth;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use support::agents::{AgentWorld, oauth_error};
use support::dbsc::{compact, hs256, signature_of, with_signature};
use support::jose::{forged_es256_signatures, high_s_twin};

const API_SCOPE: &str = "files.read";

/// Starts a world with one logged-in agent that may reach the example API.
async fn world_with_agent() -> (AgentWorld, AgentClient) {
    let world = AgentWorld::start().await;
    let api = world.api.origin.clone();
    let agent = world.logged_in_agent("prober", &[API_SCOPE], &[&api]).await;
    (world, agent)
}

/// Signs a DPoP proof by `agent`'s key, with `edit` applied to its header and claims.
fn proof(
    agent: &AgentClient,
    method: &str,
    url: &str,
    edit: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let key = agent.key();
    let mut header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk() });
    let mut claims = json!({
        "jti": Secret::generate(&mut rand::thread_rng(), 16).expose(),
        "htm": method,
        "htu": url,
        "iat": agent.clock().now(),
    });
    edit(&mut header, &mut claims);
    sign_jws(key, &header, &claims).unwrap()
}

/// Sends a token exchange of the agent's grant token with `proofs` as its DPoP headers.
async fn exchange_with(
    world: &AgentWorld,
    agent: &AgentClient,
    path: &str,
    proofs: &[String],
) -> reqwest::Response {
    let grant = agent.grant_token.clone().unwrap();
    let mut request = world.http().post(world.url(path)).form(&[
        ("grant_type", oauth::GRANT_TOKEN_EXCHANGE),
        ("subject_token", grant.as_str()),
        ("subject_token_type", oauth::TOKEN_TYPE_ACCESS_TOKEN),
    ]);
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

async fn assert_proof_refused(world: &AgentWorld, agent: &AgentClient, proof: String, case: &str) {
    let response = exchange_with(world, agent, routes::OAUTH_TOKEN, &[proof]).await;
    let (status, error) = oauth_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
    assert_eq!(error, "invalid_dpop_proof", "{case}");
}

/// Calls the example tool with raw `Authorization` and `DPoP` header values.
async fn call_raw(
    world: &AgentWorld,
    authorization: &[String],
    proofs: &[String],
) -> reqwest::Response {
    let mut request = world.http().get(world.api.tool_url());
    for value in authorization {
        request = request.header(AUTHORIZATION, value);
    }
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

async fn assert_call_refused(
    world: &AgentWorld,
    authorization: &[String],
    proofs: &[String],
    case: &str,
) {
    let response = call_raw(world, authorization, proofs).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(challenge.starts_with("DPoP "), "{case}: {challenge}");
}

fn ath(token: &str) -> String {
    base64url::encode(devbound::crypto::secret::sha256(token.as_bytes()))
}

/// Loads the server's current signing key pair, for tokens that differ from real ones only in the
/// ways under test.
fn server_key(world: &AgentWorld) -> (EcdsaKeyPair, String) {
    let record = world
        .server
        .store()
        .list_signing_keys()
        .unwrap()
        .pop()
        .unwrap();
    let pkcs8 = base64url::decode(&record.pkcs8).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
    (pair, record.kid)
}

/// Re-signs `token`'s claims with the server's key under `header`.
fn resign(world: &AgentWorld, token: &str, header: &Value) -> String {
    let (pair, _) = server_key(world);
    let payload = token.split('.').nth(1).unwrap();
    let signing_input = format!("{}.{payload}", base64url::encode(header.to_string()));
    let signature = pair
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", base64url::encode(signature.as_ref()))
}

#[tokio::test]
async fn htu_and_htm_match_after_normalisation() {
    let (world, agent) = world_with_agent().await;
    let base = world.server.url().to_owned();
    let upper = base
        .replace("localhost", "LOCALHOST")
        .replace("https", "HTTPS");
    let token_url = format!("{base}{}", routes::OAUTH_TOKEN);

    for htu in [
        token_url.clone(),
        format!("{upper}{}", routes::OAUTH_TOKEN),
        format!("{token_url}#f"),
        format!("{token_url}?x=1"),
        format!("{base}/oauth/%74oken"),
    ] {
        let proof = proof(&agent, "POST", &htu, |_, _| {});
        let path = format!("{}?x=1", routes::OAUTH_TOKEN);
        let response = exchange_with(&world, &agent, &path, &[proof]).await;
        assert_eq!(response.status(), StatusCode::OK, "htu {htu}");
    }

    let http = token_url.replacen("https", "http", 1);
    for (htm, htu) in [
        ("POST", format!("{token_url}/")),
        ("POST", format!("{base}/OAuth/token")),
        ("POST", routes::OAUTH_TOKEN.to_owned()),
        ("POST", http),
        ("post", token_url.clone()),
        ("GET", token_url.clone()),
    ] {
        let proof = proof(&agent, htm, &htu, |_, _| {});
        assert_proof_refused(&world, &agent, proof, &format!("{htm} {htu}")).await;
    }
}

#[tokio::test]
async fn token_endpoint_rejects_malformed_and_replayed_proofs() {
    let (world, agent) = world_with_agent().await;
    let url = world.url(routes::OAUTH_TOKEN);

    let private = proof(&agent, "POST", &url, |header, _| {
        header["jwk"]["d"] = json!(base64url::encode([7u8; 32]));
    });
    assert_proof_refused(&world, &agent, private, "jwk with d").await;
    let jwt = proof(&agent, "POST", &url, |header, _| {
        header["typ"] = json!("JWT")
    });
    assert_proof_refused(&world, &agent, jwt, "typ JWT").await;
    let old = proof(&agent, "POST", &url, |_, claims| {
        claims["iat"] = json!(claims["iat"].as_u64().unwrap() - 120);
    });
    assert_proof_refused(&world, &agent, old, "iat two minutes old").await;
    let string_iat = proof(&agent, "POST", &url, |_, claims| {
        claims["iat"] = json!(claims["iat"].to_string());
    });
    assert_proof_refused(&world, &agent, string_iat, "iat as a string").await;

    // Two DPoP headers, and no DPoP header at all.
    let one = proof(&agent, "POST", &url, |_, _| {});
    let two = proof(&agent, "POST", &url, |_, _| {});
    let response = exchange_with(&world, &agent, routes::OAUTH_TOKEN, &[one, two]).await;
    assert_eq!(oauth_error(response).await.1, "invalid_dpop_proof");
    let response = exchange_with(&world, &agent, routes::OAUTH_TOKEN, &[]).await;
    assert_eq!(oauth_error(response).await.1, "invalid_dpop_proof");

    // J1: a proof is single-use by its claims; its high-S twin is the same proof.
    let used = proof(&agent, "POST", &url, |_, _| {});
    let twin = with_signature(&used, &high_s_twin(&signature_of(&used)));
    let response = exchange_with(
        &world,
        &agent,
        routes::OAUTH_TOKEN,
        std::slice::from_ref(&used),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_proof_refused(&world, &agent, used, "replayed proof").await;
    assert_proof_refused(&world, &agent, twin, "high-S twin of a used proof").await;
}

/// Spent proofs are kept in memory and a restart clears them. So a proof whose `iat` is before
/// the server started may have been spent already, and is rejected though in its window.
#[tokio::test]
async fn token_endpoint_rejects_proof_before_start() {
    let (world, agent) = world_with_agent().await;
    let url = world.url(routes::OAUTH_TOKEN);
    let before_start = proof(&agent, "POST", &url, |_, claims| {
        claims["iat"] = json!(claims["iat"].as_u64().unwrap() - 30);
    });

    let response = exchange_with(&world, &agent, routes::OAUTH_TOKEN, &[before_start]).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_dpop_proof");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("before the server started"),
        "{description}"
    );

    let current = proof(&agent, "POST", &url, |_, _| {});
    let response = exchange_with(&world, &agent, routes::OAUTH_TOKEN, &[current]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_rejects_forged_and_confused_proofs() {
    let (world, agent) = world_with_agent().await;
    let url = world.url(routes::OAUTH_TOKEN);

    // J1: signatures that must never verify.
    let valid = proof(&agent, "POST", &url, |_, _| {});
    for (case, signature) in forged_es256_signatures(&signature_of(&valid)) {
        assert_proof_refused(&world, &agent, with_signature(&valid, &signature), case).await;
    }

    // J3: algorithm names that are not offered, or that do not match the EC key.
    for alg in ["none", "None", "NONE", "HS256", "PS256", "ES384", "RS256"] {
        let forged = proof(&agent, "POST", &url, |header, _| header["alg"] = json!(alg));
        assert_proof_refused(&world, &agent, forged, alg).await;
    }
    let header = json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": agent.key().public_jwk() });
    let claims = json!({ "jti": "h1", "htm": "POST", "htu": url, "iat": agent.clock().now() });
    let hmac = hs256(
        agent.key().public_jwk().to_string().as_bytes(),
        &header,
        &claims,
    );
    assert_proof_refused(&world, &agent, hmac, "HS256 keyed with the public JWK").await;

    // J2: a key fetched from a URL is never used.
    for member in ["jku", "x5u"] {
        let forged = proof(&agent, "POST", &url, |header, _| {
            header[member] = json!("https://attacker.example/keys");
        });
        assert_proof_refused(&world, &agent, forged, member).await;
    }
    let unsigned = compact(
        &json!({ "typ": "dpop+jwt", "alg": "none", "jwk": agent.key().public_jwk() }),
        &claims,
        &[],
    );
    assert_proof_refused(&world, &agent, unsigned, "unsigned").await;
}

#[tokio::test]
async fn resource_accepts_only_dpop_bound_use() {
    let (world, agent) = world_with_agent().await;
    let api = world.api.origin.clone();
    let token = agent.token(&[&api], None).await.unwrap().access_token;
    let tool = world.api.tool_url();
    let dpop = format!("DPoP {token}");
    let good = || {
        proof(&agent, "GET", &tool, |_, claims| {
            claims["ath"] = json!(ath(&token))
        })
    };

    let response = call_raw(&world, std::slice::from_ref(&dpop), &[good()]).await;
    assert_eq!(response.status(), StatusCode::OK, "the honest call");

    // P2: a proof by another key.
    let other = world.agent_client(&agent.agent_id);
    let foreign = proof(&other, "GET", &tool, |_, claims| {
        claims["ath"] = json!(ath(&token))
    });
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        &[foreign],
        "proof by another key",
    )
    .await;
    // Wrong and missing ath.
    let wrong_ath = proof(&agent, "GET", &tool, |_, claims| {
        claims["ath"] = json!(ath("other"))
    });
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        &[wrong_ath],
        "wrong ath",
    )
    .await;
    let no_ath = proof(&agent, "GET", &tool, |_, _| {});
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        &[no_ath],
        "missing ath",
    )
    .await;
    // A private key member in the proof's jwk.
    let private = proof(&agent, "GET", &tool, |header, claims| {
        header["jwk"]["d"] = json!(base64url::encode([7u8; 32]));
        claims["ath"] = json!(ath(&token));
    });
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        &[private],
        "jwk with d",
    )
    .await;
    // Bearer, with or without a proof: a DPoP-bound token never falls back.
    let bearer = format!("Bearer {token}");
    assert_call_refused(
        &world,
        std::slice::from_ref(&bearer),
        &[],
        "Bearer without proof",
    )
    .await;
    assert_call_refused(&world, &[bearer], &[good()], "Bearer with proof").await;
    // Two DPoP headers, typ JWT, and the access token itself as the proof.
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        &[good(), good()],
        "two DPoP headers",
    )
    .await;
    let jwt = proof(&agent, "GET", &tool, |header, claims| {
        header["typ"] = json!("JWT");
        claims["ath"] = json!(ath(&token));
    });
    assert_call_refused(&world, std::slice::from_ref(&dpop), &[jwt], "typ JWT").await;
    assert_call_refused(
        &world,
        std::slice::from_ref(&dpop),
        std::slice::from_ref(&token),
        "token as proof",
    )
    .await;
    // No proof at all, and a replayed one.
    assert_call_refused(&world, std::slice::from_ref(&dpop), &[], "no proof").await;
    let once = good();
    let response = call_raw(
        &world,
        std::slice::from_ref(&dpop),
        std::slice::from_ref(&once),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_call_refused(&world, &[dpop], &[once], "replayed proof").await;
}

#[tokio::test]
async fn resource_rejects_forged_access_tokens() {
    let (world, agent) = world_with_agent().await;
    let api = world.api.origin.clone();
    let token = agent.token(&[&api], None).await.unwrap().access_token;
    let tool = world.api.tool_url();
    let (pair, kid) = server_key(&world);
    let call = |forged: String| {
        let proof = proof(&agent, "GET", &tool, |_, claims| {
            claims["ath"] = json!(ath(&forged))
        });
        (vec![format!("DPoP {forged}")], vec![proof])
    };

    // J1: signatures that must never verify.
    for (case, signature) in forged_es256_signatures(&signature_of(&token)) {
        let (authorization, proofs) = call(with_signature(&token, &signature));
        assert_call_refused(&world, &authorization, &proofs, case).await;
    }

    // J2: a key in the token next to the real kid, a key URL, and hostile kids.
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = attacker.public_key().as_ref().to_vec();
    let attacker_jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": base64url::encode(&point[1..33]), "y": base64url::encode(&point[33..]),
    });
    let headers = [
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": kid, "jwk": attacker_jwk }),
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": kid, "jku": "https://attacker.example/jwks" }),
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": kid, "x5u": "https://attacker.example/cert" }),
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": "../../dev/null" }),
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": "k1' OR '1'='1" }),
        json!({ "typ": "at+jwt", "alg": "ES256" }),
        json!({ "typ": "at+jwt", "alg": "ES256", "kid": kid, "crit": ["exp"] }),
        json!({ "typ": "JWT", "alg": "ES256", "kid": kid }),
    ];
    for header in headers {
        let (authorization, proofs) = call(resign(&world, &token, &header));
        assert_call_refused(&world, &authorization, &proofs, &header.to_string()).await;
    }

    // J3: the server's own signature under other algorithm names, and HS256 keyed with the
    // server's public key.
    for alg in ["none", "None", "NONE", "HS256", "PS256", "ES384", "RS256"] {
        let header = json!({ "typ": "at+jwt", "alg": alg, "kid": kid });
        let (authorization, proofs) = call(resign(&world, &token, &header));
        assert_call_refused(&world, &authorization, &proofs, alg).await;
    }
    let claims: Value =
        serde_json::from_slice(&base64url::decode(token.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    let header = json!({ "typ": "at+jwt", "alg": "HS256", "kid": kid });
    let jwks = world
        .http()
        .get(world.url(routes::OAUTH_JWKS))
        .send()
        .await
        .unwrap();
    let jwks: Value = jwks.json().await.unwrap();
    for secret in [
        pair.public_key().as_ref().to_vec(),
        jwks["keys"][0].to_string().into_bytes(),
    ] {
        let (authorization, proofs) = call(hs256(&secret, &header, &claims));
        assert_call_refused(&world, &authorization, &proofs, "HS256 with public key").await;
    }

    // A re-signed twin is valid at the resource but unknown at the token endpoint, which
    // accepts only the exact bytes it issued.
    let twin = resign(
        &world,
        &token,
        &json!({ "typ": "at+jwt", "alg": "ES256", "kid": kid }),
    );
    let response = agent
        .exchange_response(&devbound::client::ExchangeParams {
            subject_token: &twin,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(oauth_error(response).await.1, "invalid_grant");
}
