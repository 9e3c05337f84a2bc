//! Measures TPM device enrollment and TPM-signed refreshes against a TPM (swtpm in the
//! figures in BENCHMARKS.md), with the real server over HTTPS on loopback in this process.
//!
//! It reports three figures. The first is the wall time of a whole `device enroll`: EK and AK
//! creation, two HTTPS requests, ActivateCredential, session key creation and Certify, and the
//! DBSC registration. The second is the wall time per DBSC refresh whose proof the TPM signs.
//! The third is the server's CPU time for the enrollment checks alone (`start_enrollment` and
//! `finish_enrollment` over real evidence from the TPM), read from
//! `/proc/thread-self/schedstat`.
//!
//! `cargo build --release --features tpm &&
//!  target/release/devbound-tpm-bench --tcti swtpm:host=127.0.0.1,port=2321 --trust-dir DIR`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use devbound::client::device::{self, DeviceSession};
use devbound::client::{DbscClient, SessionKey, https_client, tpm};
use devbound::clock::{Clock, SystemClock};
use devbound::config::ServeOptions;
use devbound::crypto::Algorithm;
use devbound::http::routes;
use devbound::tpm::{
    EnrollmentPolicy, EnrollmentRequest, EnrollmentResponse, TrustStore, finish_enrollment,
    start_enrollment,
};
use reqwest::header::COOKIE;

/// Benchmark of TPM enrollment and TPM-signed refreshes.
#[derive(Debug, Parser)]
struct Options {
    /// The TPM, such as swtpm:host=127.0.0.1,port=2321
    #[arg(long, env = "DEVBOUND_SWTPM_TCTI")]
    tcti: String,
    /// Directory of the PEM roots the TPM's EK certificate chains to
    #[arg(long, env = "DEVBOUND_SWTPM_TRUST_DIR")]
    trust_dir: PathBuf,
    /// Complete enrollments to time
    #[arg(long, default_value_t = 10)]
    enrollments: usize,
    /// TPM-signed refreshes to time
    #[arg(long, default_value_t = 1000)]
    refreshes: u32,
    /// Repetitions of each server-side enrollment check
    #[arg(long, default_value_t = 200)]
    checks: u32,
}

const PASSWORD: &str = "bench password";

#[tokio::main]
async fn main() -> Result<(), String> {
    let options = Options::parse();
    let data = tempfile::tempdir().map_err(|error| error.to_string())?;
    let serve = ServeOptions {
        data_dir: Some(data.path().to_path_buf()),
        listen: Some(([127, 0, 0, 1], 0).into()),
        tpm_trust_dir: Some(options.trust_dir.clone()),
        ..ServeOptions::default()
    };
    let config = serve.resolve().map_err(|error| error.to_string())?;
    let server = devbound::http::start(config, Arc::new(SystemClock))
        .await
        .map_err(|error| error.to_string())?;
    let cert = std::fs::read_to_string(&server.tls.cert).map_err(|error| error.to_string())?;
    let user = devbound::account::new_user(
        "bench",
        PASSWORD,
        SystemClock.now(),
        &mut rand::thread_rng(),
    )
    .map_err(|error| error.to_string())?;
    devbound::store::Store::insert_user(server.store(), &user)
        .map_err(|error| error.to_string())?;
    let http = https_client(cert.as_bytes()).map_err(|error| error.to_string())?;
    let mut owner = DbscClient::new(
        http.clone(),
        server.url(),
        SessionKey::generate(Algorithm::Es256)?,
    );
    owner
        .sign_in_and_register("bench", PASSWORD)
        .await
        .map_err(|error| error.to_string())?;

    let states = tempfile::tempdir().map_err(|error| error.to_string())?;
    let mut enrollment_times = Vec::new();
    for index in 0..options.enrollments {
        let code = create_code(&http, &owner).await?;
        let dir = states.path().join(index.to_string());
        let started = Instant::now();
        device::enroll(server.url(), &cert, &options.tcti, &code, &dir)
            .await
            .map_err(|error| error.to_string())?;
        enrollment_times.push(started.elapsed());
    }
    report(
        "complete enrollment (client wall time)",
        &mut enrollment_times,
    );

    let last = states
        .path()
        .join((options.enrollments.max(1) - 1).to_string());
    let mut session =
        DeviceSession::open(&last, &options.tcti).map_err(|error| error.to_string())?;
    let mut refresh_times = Vec::new();
    for _ in 0..options.refreshes {
        let started = Instant::now();
        session.refresh().await.map_err(|error| error.to_string())?;
        refresh_times.push(started.elapsed());
    }
    session.close(&last).map_err(|error| error.to_string())?;
    report("TPM-signed refresh (client wall time)", &mut refresh_times);

    server_checks(&options)?;
    server.shutdown().await.map_err(|error| error.to_string())
}

async fn create_code(http: &reqwest::Client, owner: &DbscClient) -> Result<String, String> {
    let response = http
        .post(owner.url(routes::API_DEVICE_CODES))
        .header(COOKIE, owner.cookie_header())
        .json(&serde_json::json!({ "name": "bench" }))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let body: serde_json::Value = response.json().await.map_err(|error| error.to_string())?;
    body["code"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no code in {body}"))
}

/// Collects real evidence from the TPM once, then times the server's pure checks over it.
fn server_checks(options: &Options) -> Result<(), String> {
    let policy = EnrollmentPolicy {
        trust_store: TrustStore::load_dir(&options.trust_dir).map_err(|error| error.to_string())?,
        challenge_ttl: 3600,
    };
    let now = SystemClock.now();
    let mut rng = rand::thread_rng();
    let mut context = tpm::open(&options.tcti).map_err(|error| error.to_string())?;
    let attestation = tpm::attest(&mut context).map_err(|error| error.to_string())?;
    let request = EnrollmentRequest {
        ek_certificate: attestation.ek_certificate.as_deref(),
        ek_public: &attestation.ek_public,
        ak_public: &attestation.ak_public,
    };
    let started = start_enrollment(&policy, request, now, &mut rng).map_err(|e| e.to_string())?;
    let secret = tpm::activate_credential(
        &mut context,
        &attestation,
        &started.credential.credential_blob,
        &started.credential.encrypted_secret,
    )
    .map_err(|error| error.to_string())?;
    let evidence = (
        attestation.ek_certificate.clone(),
        attestation.ek_public.clone(),
        attestation.ak_public.clone(),
    );
    let (certified, key) =
        tpm::create_certified_key(&mut context, attestation, &started.challenge.certify_nonce)
            .map_err(|error| error.to_string())?;
    let _ = context.flush_context(key.into());

    let request = EnrollmentRequest {
        ek_certificate: evidence.0.as_deref(),
        ek_public: &evidence.1,
        ak_public: &evidence.2,
    };
    let start_cpu = cpu_per_call(options.checks, || {
        start_enrollment(&policy, request, now, &mut rng)
            .map(drop)
            .map_err(|error| error.to_string())
    })?;
    let response = EnrollmentResponse {
        activated_secret: &secret,
        key_public: &certified.public,
        certify_info: &certified.certify_info,
        signature: &certified.signature,
    };
    let finish_cpu = cpu_per_call(options.checks, || {
        finish_enrollment(Some(started.challenge.clone()), response, now)
            .map(drop)
            .map_err(|error| error.to_string())
    })?;
    println!(
        "server CPU per enrollment check ({} runs each): start {:.1} µs (EK certificate chain, \
         EK and AK checks, MakeCredential), finish {:.1} µs (secret, TPMS_ATTEST, AK signature, \
         key checks), total {:.1} µs",
        options.checks,
        start_cpu.as_secs_f64() * 1e6,
        finish_cpu.as_secs_f64() * 1e6,
        (start_cpu + finish_cpu).as_secs_f64() * 1e6,
    );
    Ok(())
}

/// Runs `call` `runs` times on this thread and returns the thread's CPU time per call.
fn cpu_per_call(
    runs: u32,
    mut call: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let before = thread_cpu()?;
    for _ in 0..runs {
        call()?;
    }
    Ok((thread_cpu()? - before) / runs.max(1))
}

/// This thread's time on CPU: the first field of `/proc/thread-self/schedstat`, in ns.
fn thread_cpu() -> Result<Duration, String> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|error| format!("cannot read /proc/thread-self/schedstat: {error}"))?;
    let nanos = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or("unexpected /proc/thread-self/schedstat")?;
    Ok(Duration::from_nanos(nanos))
}

fn report(label: &str, times: &mut [Duration]) {
    times.sort();
    if times.is_empty() {
        return;
    }
    let at = |fraction: f64| {
        let index = ((times.len() - 1) as f64 * fraction).round() as usize;
        times[index].as_secs_f64() * 1000.0
    };
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1000.0 / times.len() as f64;
    println!(
        "{label}: n={} mean {mean:.2} ms, min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        at(0.0),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
