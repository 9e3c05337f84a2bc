//! TPM enrollment against a running swtpm, driven through tpm2-tools.
//!
//! These tests run only when `DEVBOUND_SWTPM_TCTI` names a TPM, for example
//! `swtpm:host=127.0.0.1,port=2321` (`scripts/swtpm.sh tcti 2321` prints it). The full
//! enrollment test also needs `DEVBOUND_SWTPM_TRUST_DIR`, the `trust` directory that
//! `scripts/swtpm.sh provision DIR` writes. Without them each test prints why it skipped and
//! passes.
//! swtpm has 3 transient object slots and no resource manager, so every command is followed by
//! a flush, and the tests take a lock so that they use the TPM one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use devbound::tpm::{
    EnrollmentPolicy, EnrollmentRequest, EnrollmentResponse, TpmPublic, TrustStore,
    finish_enrollment, make_credential, start_enrollment,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

static TPM_LOCK: Mutex<()> = Mutex::new(());

/// Persistent handles the full enrollment test uses for the AK and the session key.
const AK_HANDLE: &str = "0x81000110";
const KEY_HANDLE: &str = "0x81000111";

struct Tpm {
    tcti: String,
    dir: tempfile::TempDir,
}

impl Tpm {
    fn from_env() -> Option<Self> {
        let tcti = std::env::var("DEVBOUND_SWTPM_TCTI").ok()?;
        if tcti.is_empty() {
            return None;
        }
        Some(Self {
            tcti,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(args[0]);
        command
            .args(&args[1..])
            .current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .env("TSS2_LOG", "all+NONE");
        command
    }

    /// Runs one tpm2-tools command, then flushes the transient objects it left loaded.
    fn run(&self, args: &[&str]) -> Vec<u8> {
        let output = self.command(args).output().unwrap();
        self.flush_transient();
        assert!(
            output.status.success(),
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Runs a command whose failure is expected in some states, such as evicting a handle that
    /// may be empty.
    fn run_allowing_failure(&self, args: &[&str]) {
        let _ = self.command(args).output().unwrap();
        self.flush_transient();
    }

    fn flush_transient(&self) {
        let _ = self
            .command(&["tpm2_flushcontext", "--transient-object"])
            .output()
            .unwrap();
    }

    fn create_ek_and_ak(&self) -> (Vec<u8>, Vec<u8>) {
        self.run(&[
            "tpm2_createek",
            "--ek-context=ek.ctx",
            "--key-algorithm=rsa",
            "--public=ek.pub",
            "--format=tss",
        ]);
        self.run(&[
            "tpm2_createak",
            "--ek-context=ek.ctx",
            "--ak-context=ak.ctx",
            "--key-algorithm=ecc",
            "--hash-algorithm=sha256",
            "--signing-algorithm=ecdsa",
            "--public=ak.pub",
            "--format=tss",
            "--ak-name=ak.name",
        ]);
        (self.read("ek.pub"), self.read("ak.pub"))
    }

    /// Runs TPM2_ActivateCredential on a credential in tpm2-tools' file format and returns the
    /// recovered secret. The EK is authorized by PolicySecret on the endorsement hierarchy.
    fn activate_credential(&self, credential_blob: &[u8], encrypted_secret: &[u8]) -> Vec<u8> {
        let mut file = 0xbadc_c0de_u32.to_be_bytes().to_vec();
        file.extend_from_slice(&1u32.to_be_bytes());
        file.extend_from_slice(&(credential_blob.len() as u16).to_be_bytes());
        file.extend_from_slice(credential_blob);
        file.extend_from_slice(&(encrypted_secret.len() as u16).to_be_bytes());
        file.extend_from_slice(encrypted_secret);
        std::fs::write(self.path("credential.in"), file).unwrap();

        self.run(&[
            "tpm2_startauthsession",
            "--policy-session",
            "--session=session.ctx",
        ]);
        self.run(&[
            "tpm2_policysecret",
            "--session=session.ctx",
            "--object-context=e",
        ]);
        self.run(&[
            "tpm2_activatecredential",
            "--credentialedkey-context=ak.ctx",
            "--credentialkey-context=ek.ctx",
            "--credentialkey-auth=session:session.ctx",
            "--credential-blob=credential.in",
            "--certinfo-data=secret.out",
        ]);
        self.run(&["tpm2_flushcontext", "session.ctx"]);
        self.read("secret.out")
    }
}

/// Skips a test whose TPM is not configured, unless `DEVBOUND_REQUIRE_SWTPM` is set (as
/// `scripts/test.sh` sets it), where a missing TPM is a failure.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("DEVBOUND_REQUIRE_SWTPM").is_none(),
        "DEVBOUND_REQUIRE_SWTPM is set but {reason}"
    );
    eprintln!("skipping: {reason}");
}

#[test]
fn make_credential_output_activates_on_swtpm() {
    let Some(tpm) = Tpm::from_env() else {
        return skip("DEVBOUND_SWTPM_TCTI is not set");
    };
    let _lock = TPM_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (ek_public, ak_public) = tpm.create_ek_and_ak();
    let ek = TpmPublic::from_tpm2b(&ek_public).unwrap();
    let ak = TpmPublic::from_tpm2b(&ak_public).unwrap();
    let name = ak.name().unwrap();
    assert_eq!(
        name,
        tpm.read("ak.name"),
        "AK Name computed as the TPM does"
    );

    let mut rng = StdRng::from_entropy();
    let secrets: [Vec<u8>; 4] = [
        (0..32).collect(),
        vec![0xa5; 32],
        vec![0x01],
        (100..116).collect(),
    ];
    for secret in secrets {
        let credential = make_credential(&ek, &name, &secret, &mut rng).unwrap();
        let recovered =
            tpm.activate_credential(&credential.credential_blob, &credential.encrypted_secret);
        assert_eq!(recovered, secret, "{}-byte secret", secret.len());
    }
}

#[test]
fn enrollment_with_swtpm_reaches_tpm_assurance() {
    let Some(tpm) = Tpm::from_env() else {
        return skip("DEVBOUND_SWTPM_TCTI is not set");
    };
    let Some(trust_dir) = std::env::var_os("DEVBOUND_SWTPM_TRUST_DIR") else {
        return skip("DEVBOUND_SWTPM_TRUST_DIR is not set");
    };
    let _lock = TPM_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let policy = EnrollmentPolicy {
        trust_store: TrustStore::load_dir(Path::new(&trust_dir)).unwrap(),
        challenge_ttl: 60,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut rng = StdRng::from_entropy();

    // Start: the EK certificate from NV, the EK and a fresh AK.
    let ek_certificate = read_ek_certificate(&tpm);
    let (ek_public, ak_public) = tpm.create_ek_and_ak();
    let request = EnrollmentRequest {
        ek_certificate: Some(&ek_certificate),
        ek_public: &ek_public,
        ak_public: &ak_public,
    };
    let started = start_enrollment(&policy, request, now, &mut rng).unwrap();

    // The client: ActivateCredential, then a session key certified by the AK with the nonce.
    let secret = tpm.activate_credential(
        &started.credential.credential_blob,
        &started.credential.encrypted_secret,
    );
    let (key_public, certify_info, signature) =
        certify_new_key(&tpm, &started.challenge.certify_nonce);

    let response = EnrollmentResponse {
        activated_secret: &secret,
        key_public: &key_public,
        certify_info: &certify_info,
        signature: &signature,
    };
    let expected_key = TpmPublic::from_tpm2b(&key_public)
        .unwrap()
        .p256_jwk()
        .unwrap();
    let enrolled = finish_enrollment(Some(started.challenge), response, now + 1).unwrap();
    assert_eq!(enrolled.session_key, expected_key);
    assert_eq!(enrolled.assurance().name(), "tpm");
}

fn read_ek_certificate(tpm: &Tpm) -> Vec<u8> {
    let public = String::from_utf8(tpm.run(&["tpm2_nvreadpublic", "0x01c00002"])).unwrap();
    let size = public
        .lines()
        .find_map(|line| line.trim().strip_prefix("size:"))
        .unwrap()
        .trim()
        .to_owned();
    tpm.run(&[
        "tpm2_nvread",
        "0x01c00002",
        &format!("--size={size}"),
        "--output=ek.der",
    ]);
    tpm.read("ek.der")
}

/// Creates a P-256 signing key under an ECC primary and has the AK certify it with `nonce` as
/// qualifyingData. tpm2_certify 5.4 cannot pass qualifyingData, so TPM2_Certify is sent raw
/// with tpm2_send, with both objects made persistent so that their handles are known.
fn certify_new_key(tpm: &Tpm, nonce: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    for handle in [AK_HANDLE, KEY_HANDLE] {
        tpm.run_allowing_failure(&[
            "tpm2_evictcontrol",
            "--hierarchy=o",
            &format!("--object-context={handle}"),
        ]);
    }
    tpm.run(&[
        "tpm2_createprimary",
        "--hierarchy=o",
        "--key-algorithm=ecc256",
        "--key-context=primary.ctx",
    ]);
    tpm.run(&[
        "tpm2_create",
        "--parent-context=primary.ctx",
        "--key-algorithm=ecc256:ecdsa-sha256",
        "--attributes=fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
        "--public=key.pub",
        "--private=key.priv",
    ]);
    tpm.run(&[
        "tpm2_load",
        "--parent-context=primary.ctx",
        "--public=key.pub",
        "--private=key.priv",
        "--key-context=key.ctx",
    ]);
    tpm.run(&[
        "tpm2_evictcontrol",
        "--hierarchy=o",
        "--object-context=key.ctx",
        KEY_HANDLE,
    ]);
    tpm.run(&[
        "tpm2_evictcontrol",
        "--hierarchy=o",
        "--object-context=ak.ctx",
        AK_HANDLE,
    ]);

    let command = certify_command(nonce);
    std::fs::write(tpm.path("certify.in"), command).unwrap();
    let response = tpm.command(&["tpm2_send", "--output=certify.out"]);
    let status = {
        let mut response = response;
        response
            .stdin(std::fs::File::open(tpm.path("certify.in")).unwrap())
            .status()
            .unwrap()
    };
    tpm.flush_transient();
    for handle in [AK_HANDLE, KEY_HANDLE] {
        tpm.run(&[
            "tpm2_evictcontrol",
            "--hierarchy=o",
            &format!("--object-context={handle}"),
        ]);
    }
    assert!(status.success(), "tpm2_send failed");

    let (certify_info, signature) = parse_certify_response(&tpm.read("certify.out"));
    (tpm.read("key.pub"), certify_info, signature)
}

/// TPM2_Certify (TPM 2.0 Part 3, command code 0x148) of KEY_HANDLE by AK_HANDLE, with two empty
/// password sessions and the AK's own scheme (TPM_ALG_NULL).
fn certify_command(nonce: &[u8]) -> Vec<u8> {
    let handle = |text: &str| u32::from_str_radix(&text[2..], 16).unwrap().to_be_bytes();
    let password_session = [0x40, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00];

    let mut body = Vec::new();
    body.extend_from_slice(&handle(KEY_HANDLE));
    body.extend_from_slice(&handle(AK_HANDLE));
    body.extend_from_slice(&18u32.to_be_bytes());
    body.extend_from_slice(&password_session);
    body.extend_from_slice(&password_session);
    body.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    body.extend_from_slice(nonce);
    body.extend_from_slice(&0x0010u16.to_be_bytes());

    let mut command = 0x8002u16.to_be_bytes().to_vec();
    command.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
    command.extend_from_slice(&0x148u32.to_be_bytes());
    command.extend_from_slice(&body);
    command
}

/// Splits a TPM2_Certify response into the TPMS_ATTEST and the TPMT_SIGNATURE.
fn parse_certify_response(response: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let code = u32::from_be_bytes(response[6..10].try_into().unwrap());
    assert_eq!(code, 0, "TPM2_Certify response code {code:#x}");
    let parameters = u32::from_be_bytes(response[10..14].try_into().unwrap()) as usize;
    let attest_len = usize::from(u16::from_be_bytes([response[14], response[15]]));
    let attest = response[16..16 + attest_len].to_vec();
    let signature = response[16 + attest_len..14 + parameters].to_vec();
    (attest, signature)
}
