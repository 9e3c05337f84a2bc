//! The token exchange benchmark: RFC 8693 exchanges with a DPoP proof each, over HTTPS on
//! loopback, against a `devbound serve` child process seeded with one agent, one bound
//! software session per connection and a grant token for each.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::EcdsaKeyPair;
use devbound::clock::{Clock, SystemClock};
use devbound::crypto::base64url;
use devbound::http::routes;
use devbound::oauth::{self, KeyRing, access_token, token_exchange::normalize_resource};
use devbound::store::{
    AccessTokenClaims, AgentRecord, AgentState, Assurance, Confirmation, SledStore, Store,
    TokenLineage, UserRecord,
};

use super::{ClientSession, Options, bound_session, cpu_ticks, percentiles_ms, public_jwk};

/// The audience the agent exchanges its grant for.
const API: &str = "https://api.bench.example";
const AGENT_ID: &str = "bench-agent";
const USER_ID: &str = "bench-user";

/// Seeds, starts the server, warms up, measures, and prints one table row.
pub async fn run(
    options: &Options,
    binary: &Path,
    key: &Arc<EcdsaKeyPair>,
    verify_us: f64,
) -> Result<(), String> {
    println!(
        "target: server CPU per exchange at most {:.1} µs (three times aws-lc-rs)",
        3.0 * verify_us
    );
    println!();
    println!(
        "| exchanges/s | p50 latency | p99 latency | server CPU per exchange | against the target |"
    );
    println!("|---:|---:|---:|---:|---:|");

    let dir = super::data_dir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| error.to_string())?
        .port();
    let origin = format!("https://localhost:{port}");
    let grants = seed(dir.path(), &origin, key, options.concurrency)?;

    // A proof window longer than the run, so that no session goes stale while it is measured.
    let extra = ["--cookie-ttl", "2h"];
    let mut server = super::start_server(binary, dir.path(), port, options.pin, &extra).await?;
    let cert = std::fs::read(dir.path().join("tls-cert.pem")).map_err(|error| error.to_string())?;

    let warm_up = options.warm_up.unwrap_or(options.requests / 10);
    drive(&origin, &cert, key, &grants, warm_up, "w").await?;
    let cpu_before = cpu_ticks(server.id())?;
    let started = Instant::now();
    let mut latencies = drive(&origin, &cert, key, &grants, options.requests, "m").await?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks(server.id())?;
    let _ = server.kill();
    let _ = server.wait();

    let (p50, p99) = percentiles_ms(&mut latencies);
    let measured = latencies.len() as f64;
    let cpu_us = (cpu_after - cpu_before) as f64 / 100.0 * 1e6 / measured;
    println!(
        "| {:.0} | {p50:.2} ms | {p99:.2} ms | {cpu_us:.1} µs | {:.2} × |",
        measured / elapsed.as_secs_f64(),
        cpu_us / (3.0 * verify_us)
    );
    Ok(())
}

/// Writes the owner, the agent, the signing key and one session and grant token per
/// connection; returns the grant tokens.
fn seed(
    dir: &Path,
    origin: &str,
    key: &EcdsaKeyPair,
    connections: usize,
) -> Result<Vec<String>, String> {
    let store = SledStore::open(dir).map_err(|error| error.to_string())?;
    let now = SystemClock.now();
    let user = UserRecord {
        id: USER_ID.into(),
        name: "bench".into(),
        password_hash: String::new(),
        created_at: now,
        disabled_at: None,
    };
    store
        .insert_user(&user)
        .map_err(|error| error.to_string())?;
    let agent = AgentRecord {
        id: AGENT_ID.into(),
        name: "bench-agent".into(),
        owner_id: USER_ID.into(),
        audiences: vec![normalize_resource(API).ok_or("bad audience")?],
        scopes: vec!["bench.read".into(), "bench.write".into()],
        required_assurance: Assurance::Software,
        state: AgentState::Active,
        created_at: now,
        updated_at: now,
    };
    store
        .insert_agent(&agent)
        .map_err(|error| error.to_string())?;
    let keys = KeyRing::default();
    keys.load_or_create(&store, now)
        .map_err(|error| error.to_string())?;

    let jwk = public_jwk(key);
    let mut grants = Vec::with_capacity(connections);
    for index in 0..connections {
        let session = ClientSession {
            id: format!("bench-agent-session-{index:04}"),
            challenge: format!("unused-{index}"),
        };
        store
            .insert_session(&bound_session(&session, USER_ID, &jwk, now))
            .map_err(|error| error.to_string())?;
        let claims = AccessTokenClaims {
            iss: origin.to_owned(),
            sub: USER_ID.into(),
            aud: vec![normalize_resource(origin).ok_or("bad origin")?],
            exp: now + oauth::GRANT_TOKEN_TTL,
            iat: now,
            jti: format!("bench-grant-{index:04}"),
            client_id: AGENT_ID.into(),
            scope: "bench.read bench.write".into(),
            act: None,
            may_act: None,
            cnf: Confirmation {
                jkt: jwk.thumbprint(),
            },
            acr: "software".into(),
        };
        let lineage = TokenLineage {
            sessions: vec![session.id.clone()],
            devices: Vec::new(),
            agents: vec![AGENT_ID.into()],
            ancestors: Vec::new(),
        };
        let token = access_token::issue(&store, &keys, claims, lineage)
            .map_err(|error| error.to_string())?;
        grants.push(token);
    }
    store.close().map_err(|error| error.to_string())?;
    Ok(grants)
}

/// Runs `total` exchanges spread over one task per grant token; returns their latencies.
async fn drive(
    origin: &str,
    cert: &[u8],
    key: &Arc<EcdsaKeyPair>,
    grants: &[String],
    total: usize,
    phase: &'static str,
) -> Result<Vec<Duration>, String> {
    let per_task = total / grants.len();
    let mut tasks = Vec::new();
    for (index, grant) in grants.iter().enumerate() {
        let http = devbound::client::https_client(cert).map_err(|error| error.to_string())?;
        let (origin, key, grant) = (origin.to_owned(), key.clone(), grant.clone());
        let jti_prefix = format!("{phase}{index}");
        tasks.push(tokio::spawn(async move {
            exchange_loop(http, origin, key, grant, jti_prefix, per_task).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.map_err(|error| error.to_string())??);
    }
    Ok(latencies)
}

async fn exchange_loop(
    http: reqwest::Client,
    origin: String,
    key: Arc<EcdsaKeyPair>,
    grant: String,
    jti_prefix: String,
    count: usize,
) -> Result<Vec<Duration>, String> {
    let url = format!("{origin}{}", routes::OAUTH_TOKEN);
    let jwk = serde_json::to_string(&public_jwk(&key)).map_err(|error| error.to_string())?;
    let header = base64url::encode(format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#));
    let rng = SystemRandom::new();
    let mut latencies = Vec::with_capacity(count);
    for round in 0..count {
        let claims = format!(
            r#"{{"jti":"{jti_prefix}-{round}","htm":"POST","htu":"{url}","iat":{}}}"#,
            SystemClock.now()
        );
        let signing_input = format!("{header}.{}", base64url::encode(claims));
        let signature = key
            .sign(&rng, signing_input.as_bytes())
            .map_err(|_| "signing failed")?;
        let proof = format!("{signing_input}.{}", base64url::encode(signature.as_ref()));

        let started = Instant::now();
        let response = http
            .post(&url)
            .header("DPoP", proof)
            .form(&[
                ("grant_type", oauth::GRANT_TOKEN_EXCHANGE),
                ("subject_token", grant.as_str()),
                ("subject_token_type", oauth::TOKEN_TYPE_ACCESS_TOKEN),
                ("resource", API),
                ("scope", "bench.read"),
            ])
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|error| error.to_string())?;
        latencies.push(started.elapsed());
        if status != 200 {
            return Err(format!(
                "exchange answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    Ok(latencies)
}
