//! Measures complete DBSC refreshes over HTTPS on loopback against a `devbound serve` child
//! process, with a given number of stored sessions.
//!
//! For each session count it seeds a fresh data directory with that many bound sessions, starts
//! the server, drives single-request refreshes (each signs the challenge pre-issued by the last
//! response) from concurrent keep-alive connections, and reports refreshes per second, client
//! latency percentiles and the server's CPU time per refresh read from `/proc/PID/stat`. It also
//! measures one P-256 signature verification with aws-lc-rs and with the `p256` crate, the
//! yardsticks the CPU figure is compared with.
//!
//! By default the server runs on CPU 0 and the load generator on CPU 1, so that the figure is
//! the server's own work rather than the cost of two processes preempting each other.
//!
//! With `--mode exchange` it measures RFC 8693 token exchanges instead: each request carries a
//! fresh DPoP proof and a devbound-issued grant token, passes the agent gate and gets a new
//! DPoP-bound access token signed by the server.
//!
//! `cargo build --release && target/release/devbound-bench --sessions 1000,100000`
//! `target/release/devbound-bench --mode exchange --requests 20000`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use clap::Parser;
use devbound::crypto::{Algorithm, Jwk, base64url};

#[path = "devbound-bench/exchange.rs"]
mod exchange;
use devbound::dbsc::headers;
use devbound::http::routes;
use devbound::store::{
    Assurance, BoundKey, PendingChallenge, SessionRecord, SessionState, SledStore, Store,
    UserRecord,
};

/// Benchmark of DBSC refreshes over HTTPS on loopback.
#[derive(Debug, Parser)]
struct Options {
    /// Stored session counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    sessions: Vec<usize>,
    /// Refreshes measured per session count, after the warm-up
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Refreshes before measuring starts, in session order [default: the session count or a
    /// tenth of --requests, whichever is more]. The default reads every session once, so that
    /// the figures are for a warm cache, as in a server that has been running. 0 measures a
    /// server that has just started
    #[arg(long)]
    warm_up: Option<usize>,
    /// Concurrent keep-alive connections
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The `devbound` binary to start [default: next to this one]
    #[arg(long)]
    server: Option<PathBuf>,
    /// Share all CPUs between the server and this load generator. By default the server runs on
    /// CPU 0 and the load generator on CPU 1 (with `taskset`), so they do not preempt each other
    #[arg(long = "no-pin", action = clap::ArgAction::SetFalse)]
    pin: bool,
    /// What to measure: DBSC refreshes, or token exchanges with DPoP
    #[arg(long, value_enum, default_value = "refresh")]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Refresh,
    Exchange,
}

/// A seeded session as the benchmark client knows it.
struct ClientSession {
    id: String,
    challenge: String,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let options = Options::parse();
    let server_binary = match &options.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|error| error.to_string())?
            .with_file_name("devbound"),
    };
    let key = Arc::new(
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "keygen failed")?,
    );

    if options.pin {
        pin_to_cpu(std::process::id(), 1)?;
    }
    let verify_us = report_verification_baseline(&key)?;
    if options.mode == Mode::Exchange {
        return exchange::run(&options, &server_binary, &key, verify_us).await;
    }
    println!();
    println!(
        "| stored sessions | refreshes/s | p50 latency | p99 latency | server CPU per refresh \
         | against the target | server memory | disk writes per refresh |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &count in &options.sessions {
        let figures = run(&options, &server_binary, &key, count).await?;
        println!(
            "| {count} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs | {:.2} × | {} MiB | {:.1} KiB |",
            figures.rate,
            figures.p50_ms,
            figures.p99_ms,
            figures.cpu_us,
            figures.cpu_us / (2.0 * verify_us),
            figures.resident_mib,
            figures.disk_kib
        );
    }
    Ok(())
}

struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
    /// The server's resident memory at the end of the run.
    resident_mib: u64,
    /// Bytes the server caused to be written to disk, per refresh.
    disk_kib: f64,
}

async fn run(
    options: &Options,
    binary: &Path,
    key: &Arc<EcdsaKeyPair>,
    count: usize,
) -> Result<Figures, String> {
    let dir = data_dir()?;
    let seeded = Instant::now();
    let sessions = seed(dir.path(), key, count)?;
    eprintln!(
        "seeded {count} sessions in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| error.to_string())?
        .port();
    let mut server = start_server(binary, dir.path(), port, options.pin, &[]).await?;
    let cert = std::fs::read(dir.path().join("tls-cert.pem")).map_err(|error| error.to_string())?;
    let origin = format!("https://localhost:{port}");

    // Each worker owns a disjoint slice of the sessions, so no two requests race for a challenge.
    let mut slices: Vec<Vec<ClientSession>> =
        (0..options.concurrency).map(|_| Vec::new()).collect();
    for (index, session) in sessions.into_iter().enumerate() {
        slices[index % options.concurrency].push(session);
    }
    let warm_up = options
        .warm_up
        .unwrap_or_else(|| count.max(options.requests / 10));
    let (_, slices) = drive(&origin, &cert, key, slices, warm_up, Order::Sequential).await?;

    let cpu_before = cpu_ticks(server.id())?;
    let disk_before = disk_write_bytes(server.id())?;
    let started = Instant::now();
    let (mut latencies, _) =
        drive(&origin, &cert, key, slices, options.requests, Order::Random).await?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks(server.id())?;
    let resident_mib = resident_kib(server.id())? / 1024;
    let disk_bytes = disk_write_bytes(server.id())?.saturating_sub(disk_before);
    let _ = server.kill();
    let _ = server.wait();

    if latencies.is_empty() {
        return Err("no refresh was measured: --sessions and --requests must be above 0".into());
    }
    let measured = latencies.len() as f64;
    let (p50_ms, p99_ms) = percentiles_ms(&mut latencies);
    let ticks_per_second = 100.0;
    Ok(Figures {
        rate: measured / elapsed.as_secs_f64(),
        p50_ms,
        p99_ms,
        cpu_us: (cpu_after - cpu_before) as f64 / ticks_per_second * 1e6 / measured,
        resident_mib,
        disk_kib: disk_bytes as f64 / 1024.0 / measured,
    })
}

/// Creates a temporary data directory that only this user may read. tempfile leaves it to the
/// umask, and `devbound serve` warns about a directory that others may read.
fn data_dir() -> Result<tempfile::TempDir, String> {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|error| error.to_string())?;
    Ok(dir)
}

/// Writes `count` bound sessions of one user, all bound to `key`, each with a known challenge.
fn seed(dir: &Path, key: &EcdsaKeyPair, count: usize) -> Result<Vec<ClientSession>, String> {
    let store = SledStore::open(dir).map_err(|error| error.to_string())?;
    let now = devbound::clock::Clock::now(&devbound::clock::SystemClock);
    let user = UserRecord {
        id: "bench-user".into(),
        name: "bench".into(),
        password_hash: String::new(),
        created_at: now,
        disabled_at: None,
    };
    store
        .insert_user(&user)
        .map_err(|error| error.to_string())?;

    let jwk = public_jwk(key);
    let mut sessions = Vec::with_capacity(count);
    for index in 0..count {
        let session = ClientSession {
            id: format!("bench-{index:08}"),
            challenge: format!("seed-challenge-{index}"),
        };
        let record = bound_session(&session, &user.id, &jwk, now);
        store
            .insert_session(&record)
            .map_err(|error| error.to_string())?;
        sessions.push(session);
    }
    store.close().map_err(|error| error.to_string())?;
    drop(store);
    Ok(sessions)
}

/// The public half of `key` as a JWK.
fn public_jwk(key: &EcdsaKeyPair) -> Jwk {
    let point = key.public_key().as_ref();
    Jwk::Ec {
        crv: "P-256".into(),
        x: base64url::encode(&point[1..33]),
        y: base64url::encode(&point[33..65]),
    }
}

/// A bound, software-assured session of `user_id` that proved possession of `jwk` at `now`.
fn bound_session(session: &ClientSession, user_id: &str, jwk: &Jwk, now: u64) -> SessionRecord {
    SessionRecord {
        id: session.id.clone(),
        user_id: user_id.to_owned(),
        state: SessionState::Bound,
        created_at: now,
        expires_at: now + 86_400,
        authorization_digest: None,
        key: Some(BoundKey {
            alg: Algorithm::Es256,
            jwk: jwk.clone(),
        }),
        assurance: Assurance::Software,
        challenge: Some(PendingChallenge {
            value: session.challenge.clone(),
            expires_at: now + 86_400,
        }),
        credential_digest: Some([0; 32]),
        credential_expires_at: now + 600,
        previous_credential_digest: None,
        previous_credential_expires_at: 0,
        last_proof_at: Some(now),
        refresh_count: 0,
        passkey_id: None,
        passkey_proof_at: None,
        device_id: None,
    }
}

/// Starts `devbound serve`. With `pin`, it starts under `taskset` on CPU 0, so that its async
/// runtime sizes itself for the one CPU it has.
async fn start_server(
    binary: &Path,
    dir: &Path,
    port: u16,
    pin: bool,
    extra_args: &[&str],
) -> Result<Child, String> {
    let mut command = if pin {
        let mut taskset = Command::new("taskset");
        taskset.args(["--cpu-list", "0"]).arg(binary);
        taskset
    } else {
        Command::new(binary)
    };
    let child = command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--challenge-ttl",
            "1h",
        ])
        .args(extra_args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("server did not start listening".into())
}

/// The order in which a task picks sessions from its slice.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Each session in turn, so that a warm-up as long as the slice reads every session.
    Sequential,
    /// Uniformly at random, so that the whole store is touched.
    Random,
}

/// Runs `total` refreshes spread over one task per slice; returns latencies and the slices
/// with their sessions' next challenges.
async fn drive(
    origin: &str,
    cert: &[u8],
    key: &Arc<EcdsaKeyPair>,
    slices: Vec<Vec<ClientSession>>,
    total: usize,
    order: Order,
) -> Result<(Vec<Duration>, Vec<Vec<ClientSession>>), String> {
    // Rounded up, so that a warm-up of the session count reads every session.
    let slices: Vec<_> = slices
        .into_iter()
        .filter(|slice| !slice.is_empty())
        .collect();
    let per_task = total.div_ceil(slices.len().max(1));
    let mut tasks = Vec::new();
    for slice in slices {
        let http = devbound::client::https_client(cert).map_err(|error| error.to_string())?;
        let (origin, key) = (origin.to_owned(), key.clone());
        tasks.push(tokio::spawn(async move {
            refresh_loop(http, origin, key, slice, per_task, order).await
        }));
    }

    let mut latencies = Vec::with_capacity(total);
    let mut slices = Vec::new();
    for task in tasks {
        let (task_latencies, slice) = task.await.map_err(|error| error.to_string())??;
        latencies.extend(task_latencies);
        slices.push(slice);
    }
    Ok((latencies, slices))
}

async fn refresh_loop(
    http: reqwest::Client,
    origin: String,
    key: Arc<EcdsaKeyPair>,
    mut sessions: Vec<ClientSession>,
    count: usize,
    order: Order,
) -> Result<(Vec<Duration>, Vec<ClientSession>), String> {
    let url = format!("{origin}{}", routes::REFRESH);
    let header = base64url::encode(r#"{"alg":"ES256","typ":"dbsc+jwt"}"#);
    let rng = SystemRandom::new();
    let mut latencies = Vec::with_capacity(count);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;

    for round in 0..count {
        let index = match order {
            Order::Sequential => round % sessions.len(),
            Order::Random => {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % sessions.len() as u64) as usize
            }
        };
        let session = &mut sessions[index];

        let signing_input = format!(
            "{header}.{}",
            base64url::encode(format!(r#"{{"jti":"{}"}}"#, session.challenge))
        );
        let signature = key
            .sign(&rng, signing_input.as_bytes())
            .map_err(|_| "signing failed")?;
        let proof = format!("{signing_input}.{}", base64url::encode(signature.as_ref()));

        let started = Instant::now();
        let response = http
            .post(&url)
            .header(headers::SESSION_ID, &session.id)
            .header(headers::RESPONSE, proof)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let next = response
            .headers()
            .get(headers::CHALLENGE)
            .and_then(|value| headers::parse_challenges(value.as_bytes()).ok())
            .and_then(|mut challenges| challenges.pop());
        let _ = response.bytes().await.map_err(|error| error.to_string())?;
        latencies.push(started.elapsed());

        if status != 200 {
            return Err(format!("refresh of {} answered {status}", session.id));
        }
        session.challenge = next.ok_or("refresh response had no next challenge")?.0;
    }
    Ok((latencies, sessions))
}

/// Restricts every thread of process `pid` to one CPU, with util-linux's `taskset`.
fn pin_to_cpu(pid: u32, cpu: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args([
            "--all-tasks",
            "--cpu-list",
            "--pid",
            &cpu.to_string(),
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run taskset (use --no-pin without it): {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset could not pin process {pid} to CPU {cpu}"))
    }
}

/// User plus system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|error| error.to_string())?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parse = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
    };
    match (parse(11), parse(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err("unreadable /proc stat".into()),
    }
}

/// Returns the bytes a process caused to be written to storage (`write_bytes` in
/// `/proc/PID/io`).
fn disk_write_bytes(pid: u32) -> Result<u64, String> {
    proc_number(pid, "io", "write_bytes:")
}

/// Returns the resident memory of a process (`VmRSS`), in KiB.
fn resident_kib(pid: u32) -> Result<u64, String> {
    proc_number(pid, "status", "VmRSS:")
}

/// Returns the number on the line of `/proc/PID/FILE` that starts with `key`, without its
/// `kB` unit if it has one.
fn proc_number(pid: u32, file: &str, key: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(|error| format!("{path}: {error}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path} has no number after {key}"))
}

/// Prints the single-core cost of one P-256 verification with aws-lc-rs and with `p256`, and
/// returns the aws-lc-rs figure in µs.
fn report_verification_baseline(key: &EcdsaKeyPair) -> Result<f64, String> {
    use p256::ecdsa::signature::Verifier;

    let message = b"devbound verification baseline";
    let signature = key
        .sign(&SystemRandom::new(), message)
        .map_err(|_| "signing failed")?;
    let public = key.public_key().as_ref().to_vec();
    let rounds = 2_000;

    let aws = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public);
    let started = Instant::now();
    for _ in 0..rounds {
        aws.verify(message, signature.as_ref())
            .map_err(|_| "aws-lc verify failed")?;
    }
    let aws_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);

    let verifying =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).map_err(|error| error.to_string())?;
    let parsed = p256::ecdsa::Signature::from_slice(signature.as_ref())
        .map_err(|error| error.to_string())?;
    let started = Instant::now();
    for _ in 0..rounds {
        verifying
            .verify(message, &parsed)
            .map_err(|error| error.to_string())?;
    }
    let p256_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);

    println!("one P-256 verification: aws-lc-rs {aws_us:.1} µs, p256 crate {p256_us:.1} µs");
    println!(
        "target: server CPU per refresh at most {:.1} µs (twice aws-lc-rs)",
        2.0 * aws_us
    );
    Ok(aws_us)
}

/// Lists `latencies` sorted, and returns the 50th and 99th percentiles in milliseconds.
fn percentiles_ms(latencies: &mut [Duration]) -> (f64, f64) {
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
    )
}
