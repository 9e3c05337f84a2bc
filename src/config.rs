//! Service configuration from flags, environment variables and an optional TOML file.
//!
//! Precedence: a flag or its environment variable, then the file, then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::Algorithm;
use crate::dbsc::{BoundCookie, CookieError, Policy, SameSite};
use crate::passkey::{AttestationMode, CounterPolicy, PasskeySettings, TrustAnchors, TrustError};

pub const DEFAULT_DATA_DIR: &str = "devbound-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_COOKIE_NAME: &str = "__Host-devbound";
/// Bound cookies should live 5 to 10 minutes: Chromium refreshes about 2 minutes before expiry
/// and signs at most 6 times in 9 minutes per site.
pub const DEFAULT_COOKIE_TTL: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// The TPM trust directory's name inside the data directory, when not configured.
pub const DEFAULT_TPM_TRUST_DIR: &str = "tpm-trust";
pub const REGISTER_PATH: &str = "/dbsc/register";
pub const REFRESH_PATH: &str = "/dbsc/refresh";

/// Options of `devbound serve`. Each can also be set in the TOML file under the same name.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeOptions {
    /// TOML file with any of the options below (kebab-case keys).
    #[arg(long, env = "DEVBOUND_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Directory for the database, the TLS certificate and the admin token
    /// [default: devbound-data]
    #[arg(long, env = "DEVBOUND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address and port to listen on for HTTPS [default: 127.0.0.1:8443]
    #[arg(long, env = "DEVBOUND_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// External origin browsers use, such as https://login.example.com, when devbound runs
    /// behind a proxy [default: https://localhost:<listen port>]
    #[arg(long, env = "DEVBOUND_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Name of the bound session cookie [default: __Host-devbound]
    #[arg(long, env = "DEVBOUND_COOKIE_NAME")]
    pub cookie_name: Option<String>,

    /// Domain attribute of the cookie; not allowed with a __Host- name [default: none]
    #[arg(long, env = "DEVBOUND_COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,

    /// Lifetime of the bound cookie, such as 10m; the browser must prove possession of its key
    /// again before it ends [default: 10m]
    #[arg(long, env = "DEVBOUND_COOKIE_TTL")]
    pub cookie_ttl: Option<String>,

    /// Lifetime of a session from sign-in, such as 30d [default: 30d]
    #[arg(long, env = "DEVBOUND_SESSION_TTL")]
    pub session_ttl: Option<String>,

    /// Lifetime of a DBSC challenge sent at sign-in or with a refresh 403, such as 5m. A
    /// challenge sent ahead with a renewed cookie lives as long as the cookie [default: 5m]
    #[arg(long, env = "DEVBOUND_CHALLENGE_TTL")]
    pub challenge_ttl: Option<String>,

    /// Signature algorithms offered for session keys, comma-separated [default: ES256,RS256]
    #[arg(long, env = "DEVBOUND_ALGORITHMS", value_delimiter = ',')]
    pub algorithms: Option<Vec<String>>,

    /// Upper bound of the database's page cache in MiB [default: a quarter of the memory
    /// available to the service, at least 1024]
    #[arg(long, env = "DEVBOUND_CACHE_MB")]
    pub cache_mb: Option<u64>,

    /// PEM certificate chain for HTTPS; without it a self-signed certificate is created in the
    /// data directory
    #[arg(long, env = "DEVBOUND_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, env = "DEVBOUND_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Whether the sign-in page offers and accepts passwords beside passkeys [default: true]
    #[arg(long, env = "DEVBOUND_PASSWORD_SIGN_IN", action = clap::ArgAction::Set)]
    pub password_sign_in: Option<bool>,

    /// WebAuthn RP ID: the public URL's host or a registrable suffix of it
    /// [default: the public URL's host]
    #[arg(long, env = "DEVBOUND_PASSKEY_RP_ID")]
    pub passkey_rp_id: Option<String>,

    /// Passkey attestation policy: `any` accepts every authenticator, `trusted` only those
    /// whose attestation chains to the trust list [default: any]
    #[arg(long, env = "DEVBOUND_PASSKEY_ATTESTATION")]
    pub passkey_attestation: Option<String>,

    /// Directory of trusted attestation root certificates (.pem, .crt or .der files)
    #[arg(long, env = "DEVBOUND_PASSKEY_TRUSTED_CA_DIR")]
    pub passkey_trusted_ca_dir: Option<PathBuf>,

    /// Trusted authenticator AAGUIDs, comma-separated; limits the roots to these models
    #[arg(long, env = "DEVBOUND_PASSKEY_TRUSTED_AAGUIDS", value_delimiter = ',')]
    pub passkey_trusted_aaguids: Option<Vec<String>>,

    /// FIDO Metadata Service (MDS3) BLOB file whose models' roots are trusted
    #[arg(
        long,
        env = "DEVBOUND_PASSKEY_METADATA_BLOB",
        requires = "passkey_metadata_root"
    )]
    pub passkey_metadata_blob: Option<PathBuf>,

    /// PEM or DER root certificate the metadata BLOB's signature must chain to (for the FIDO
    /// Metadata Service, the root the FIDO Alliance publishes)
    #[arg(long, env = "DEVBOUND_PASSKEY_METADATA_ROOT")]
    pub passkey_metadata_root: Option<PathBuf>,

    /// Policy for a signature counter that did not advance: `reject` the sign-in, or `record`
    /// it and give the session software assurance [default: reject]
    #[arg(long, env = "DEVBOUND_PASSKEY_COUNTER")]
    pub passkey_counter: Option<String>,

    /// How long a passkey proof keeps a passkey-bound session fresh, such as 12h [default: 12h]
    #[arg(long, env = "DEVBOUND_PASSKEY_FRESHNESS")]
    pub passkey_freshness: Option<String>,

    /// Maximum age of the passkey proof that sensitive actions demand, such as 5m
    /// [default: 5m]
    #[arg(long, env = "DEVBOUND_PASSKEY_STEP_UP_MAX_AGE")]
    pub passkey_step_up_max_age: Option<String>,

    /// Passkey sign-ins that may start per minute, across all clients. Each start stores a
    /// ceremony without any credentials, so this bounds what a flood can store. Beyond it the
    /// options request gets 429 [default: 6000]
    #[arg(long, env = "DEVBOUND_PASSKEY_SIGN_IN_RATE")]
    pub passkey_sign_in_rate: Option<u32>,
    /// Directory of PEM files with the TPM vendors' root (and intermediate) certificates that
    /// EK certificates must chain to; without any, every TPM enrollment is refused
    /// [default: <data dir>/tpm-trust]
    #[arg(long, env = "DEVBOUND_TPM_TRUST_DIR")]
    pub tpm_trust_dir: Option<PathBuf>,

    /// Whether a device that fails a TPM check (untrusted or missing EK certificate, an AK or
    /// key without the required attributes, a wrong secret or certification) may still enroll
    /// at assurance software instead of being refused [default: false]
    #[arg(long, env = "DEVBOUND_TPM_SOFTWARE_FALLBACK")]
    pub tpm_software_fallback: Option<bool>,
}

/// An invalid configuration value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is invalid: {1}")]
    Parse(PathBuf, String),
    #[error("{option}: {value:?} is not a duration such as 90s, 10m or 30d")]
    Duration { option: &'static str, value: String },
    #[error("{option} must be at least {min} seconds")]
    TooShort { option: &'static str, min: u64 },
    #[error("algorithm {0:?} is not supported; use ES256 and/or RS256")]
    Algorithm(String),
    #[error("public URL {0:?} must be an https:// origin with no path, query or fragment")]
    PublicUrl(String),
    #[error("cookie: {0}")]
    Cookie(#[from] CookieError),
    #[error("{option}: {value:?} is not one of {allowed}")]
    Choice {
        option: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("passkey trust list: {0}")]
    Trust(#[from] TrustError),
}

/// The resolved configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub policy: Policy,
    /// Whether the origin was configured; otherwise it follows the port actually bound.
    pub public_url_set: bool,
    /// Page cache of the database, in bytes.
    pub cache_bytes: u64,
    pub passkeys: PasskeySettings,
    /// PEM files of the TPM vendor roots that EK certificates must chain to.
    pub tpm_trust_dir: PathBuf,
    /// Whether a device failing a TPM check enrolls at `software` instead of being refused.
    pub tpm_software_fallback: bool,
}

impl ServeOptions {
    /// Fills unset options from the TOML file named by `--config`, if any.
    pub fn merge_file(mut self) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|error| ConfigError::Read(path.clone(), error))?;
        let file: ServeOptions = toml::from_str(&text)
            .map_err(|error| ConfigError::Parse(path.clone(), error.to_string()))?;

        self.data_dir = self.data_dir.or(file.data_dir);
        self.listen = self.listen.or(file.listen);
        self.public_url = self.public_url.or(file.public_url);
        self.cookie_name = self.cookie_name.or(file.cookie_name);
        self.cookie_domain = self.cookie_domain.or(file.cookie_domain);
        self.cookie_ttl = self.cookie_ttl.or(file.cookie_ttl);
        self.session_ttl = self.session_ttl.or(file.session_ttl);
        self.challenge_ttl = self.challenge_ttl.or(file.challenge_ttl);
        self.algorithms = self.algorithms.or(file.algorithms);
        self.cache_mb = self.cache_mb.or(file.cache_mb);
        self.tls_cert = self.tls_cert.or(file.tls_cert);
        self.tls_key = self.tls_key.or(file.tls_key);
        self.password_sign_in = self.password_sign_in.or(file.password_sign_in);
        self.passkey_rp_id = self.passkey_rp_id.or(file.passkey_rp_id);
        self.passkey_attestation = self.passkey_attestation.or(file.passkey_attestation);
        self.passkey_trusted_ca_dir = self.passkey_trusted_ca_dir.or(file.passkey_trusted_ca_dir);
        self.passkey_trusted_aaguids = self
            .passkey_trusted_aaguids
            .or(file.passkey_trusted_aaguids);
        self.passkey_metadata_blob = self.passkey_metadata_blob.or(file.passkey_metadata_blob);
        self.passkey_metadata_root = self.passkey_metadata_root.or(file.passkey_metadata_root);
        self.passkey_counter = self.passkey_counter.or(file.passkey_counter);
        self.passkey_freshness = self.passkey_freshness.or(file.passkey_freshness);
        self.passkey_step_up_max_age = self
            .passkey_step_up_max_age
            .or(file.passkey_step_up_max_age);
        self.passkey_sign_in_rate = self.passkey_sign_in_rate.or(file.passkey_sign_in_rate);
        self.tpm_trust_dir = self.tpm_trust_dir.or(file.tpm_trust_dir);
        self.tpm_software_fallback = self.tpm_software_fallback.or(file.tpm_software_fallback);
        Ok(self)
    }

    /// Applies defaults and validates every value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let origin = match &self.public_url {
            Some(url) => parse_origin(url)?,
            None => format!("https://localhost:{}", listen.port()),
        };
        let cookie = BoundCookie::new(
            self.cookie_name.as_deref().unwrap_or(DEFAULT_COOKIE_NAME),
            self.cookie_domain.as_deref(),
            SameSite::Lax,
        )?;

        let policy = Policy {
            origin,
            register_path: REGISTER_PATH.into(),
            refresh_path: REFRESH_PATH.into(),
            cookie,
            cookie_ttl: duration(
                "--cookie-ttl",
                self.cookie_ttl.as_deref(),
                DEFAULT_COOKIE_TTL,
                1,
            )?,
            session_ttl: duration(
                "--session-ttl",
                self.session_ttl.as_deref(),
                DEFAULT_SESSION_TTL,
                60,
            )?,
            challenge_ttl: duration(
                "--challenge-ttl",
                self.challenge_ttl.as_deref(),
                DEFAULT_CHALLENGE_TTL,
                5,
            )?,
            algorithms: algorithms(self.algorithms.as_deref())?,
        };
        let passkeys = self.passkey_settings(policy.challenge_ttl)?;
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Config {
            tpm_software_fallback: self.tpm_software_fallback.unwrap_or(false),
            tpm_trust_dir: self
                .tpm_trust_dir
                .unwrap_or_else(|| data_dir.join(DEFAULT_TPM_TRUST_DIR)),
            data_dir,
            listen,
            tls: self.tls_cert.zip(self.tls_key),
            policy,
            public_url_set: self.public_url.is_some(),
            cache_bytes: self.cache_mb.map_or_else(
                || default_cache_bytes(available_memory()),
                |mb| mb.saturating_mul(1024 * 1024),
            ),
            passkeys,
        })
    }

    /// Resolves the passkey options and loads the attestation trust list.
    fn passkey_settings(&self, ceremony_ttl: u64) -> Result<PasskeySettings, ConfigError> {
        let defaults = PasskeySettings::default();
        let attestation = match self.passkey_attestation.as_deref() {
            None => AttestationMode::Any,
            Some(name) => AttestationMode::from_name(name).ok_or(ConfigError::Choice {
                option: "--passkey-attestation",
                value: name.to_owned(),
                allowed: "any, trusted",
            })?,
        };
        let counter = match self.passkey_counter.as_deref() {
            None => CounterPolicy::Reject,
            Some(name) => CounterPolicy::from_name(name).ok_or(ConfigError::Choice {
                option: "--passkey-counter",
                value: name.to_owned(),
                allowed: "reject, record",
            })?,
        };
        let trust = TrustAnchors::load(
            self.passkey_trusted_ca_dir.as_deref(),
            self.passkey_trusted_aaguids.as_deref().unwrap_or_default(),
            self.passkey_metadata_blob.as_deref(),
            self.passkey_metadata_root.as_deref(),
        )?;
        if attestation == AttestationMode::Trusted && trust.is_empty() {
            return Err(ConfigError::Trust(TrustError::NoRoots));
        }
        Ok(PasskeySettings {
            rp_id: self.passkey_rp_id.clone(),
            attestation,
            trust,
            counter,
            freshness: duration(
                "--passkey-freshness",
                self.passkey_freshness.as_deref(),
                Duration::from_secs(defaults.freshness),
                60,
            )?,
            step_up_max_age: duration(
                "--passkey-step-up-max-age",
                self.passkey_step_up_max_age.as_deref(),
                Duration::from_secs(defaults.step_up_max_age),
                1,
            )?,
            ceremony_ttl,
            password_sign_in: self.password_sign_in.unwrap_or(true),
            sign_in_rate: self.passkey_sign_in_rate.unwrap_or(defaults.sign_in_rate),
        })
    }
}

/// Returns the page cache bound for when none is configured: a quarter of `available` bytes,
/// and at least sled's own default of 1 GiB.
///
/// sled counts each cached node at its size in the log rounded up to a power of two, so it
/// keeps far fewer bytes of nodes than its bound. At 1,000,000 sessions the server needs
/// about 1.1 GiB resident. With a bound of 1 GiB it evicts nodes and reads them back from disk
/// on refresh, so a refresh costs 12 to 17% more than at 100,000 sessions (`BENCHMARKS.md`).
/// The bound is a ceiling, not an allocation.
fn default_cache_bytes(available: Option<u64>) -> u64 {
    available.map_or(crate::store::DEFAULT_CACHE_BYTES, |bytes| {
        (bytes / 4).max(crate::store::DEFAULT_CACHE_BYTES)
    })
}

/// Returns the memory this process may use: the machine's (`MemTotal`), or the lowest limit
/// on its memory cgroup and that cgroup's parents if that is lower. `None` where neither can be
/// read.
fn available_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            let kib = meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))?;
            kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map(|kib| kib.saturating_mul(1024));
    let limit = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|cgroups| {
            cgroup_memory_limit(&cgroups, |path| std::fs::read_to_string(path).ok())
        });
    total.into_iter().chain(limit).min()
}

/// Returns the lowest memory limit on the cgroups named in `cgroups` (the contents of
/// `/proc/self/cgroup`) and their parents, reading each limit file with `read`.
///
/// A cgroup v2 line (`0::PATH`) is limited by `memory.max` under `/sys/fs/cgroup`, and a v1
/// memory controller line (`N:memory:PATH`) by `memory.limit_in_bytes` under
/// `/sys/fs/cgroup/memory`. A value that is not a number, such as v2's `max`, is no limit.
fn cgroup_memory_limit(cgroups: &str, read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let mut limits = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (root, file) = if controllers.is_empty() {
            (Path::new("/sys/fs/cgroup"), "memory.max")
        } else if controllers.split(',').any(|name| name == "memory") {
            (Path::new("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };

        let mut dir = root.join(path.trim_start_matches('/'));
        loop {
            limits.extend(read(&dir.join(file)).and_then(|value| value.trim().parse::<u64>().ok()));
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    limits.into_iter().min()
}

fn duration(
    option: &'static str,
    value: Option<&str>,
    default: Duration,
    min: u64,
) -> Result<u64, ConfigError> {
    let seconds = match value {
        Some(text) => humantime::parse_duration(text)
            .map_err(|_| ConfigError::Duration {
                option,
                value: text.to_owned(),
            })?
            .as_secs(),
        None => default.as_secs(),
    };
    if seconds < min {
        return Err(ConfigError::TooShort { option, min });
    }
    Ok(seconds)
}

fn algorithms(names: Option<&[String]>) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(names) = names else {
        return Ok(vec![Algorithm::Es256, Algorithm::Rs256]);
    };
    let mut algorithms = Vec::new();
    for name in names {
        let alg = Algorithm::from_name(name.trim())
            .ok_or_else(|| ConfigError::Algorithm(name.clone()))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::Algorithm(String::new()));
    }
    Ok(algorithms)
}

/// Normalises `https://Host:443/` to `https://host`: the origin as browsers serialise it.
fn parse_origin(url: &str) -> Result<String, ConfigError> {
    let invalid = || ConfigError::PublicUrl(url.to_owned());
    let rest = url.strip_prefix("https://").ok_or_else(invalid)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(invalid());
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(":443").unwrap_or(&authority);
    Ok(format!("https://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_normalised() {
        assert_eq!(
            parse_origin("https://Login.Example.COM:443/").unwrap(),
            "https://login.example.com"
        );
        assert_eq!(
            parse_origin("https://localhost:8443").unwrap(),
            "https://localhost:8443"
        );
        assert!(parse_origin("http://localhost").is_err());
        assert!(parse_origin("https://localhost/app").is_err());
        assert!(parse_origin("https://a?b").is_err());
    }

    #[test]
    fn defaults_resolve() {
        let config = ServeOptions::default().resolve().unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.policy.origin, "https://localhost:8443");
        assert_eq!(config.policy.cookie_ttl, 600);
        assert_eq!(
            config.tpm_trust_dir,
            PathBuf::from(DEFAULT_DATA_DIR).join(DEFAULT_TPM_TRUST_DIR)
        );
        assert_eq!(
            config.policy.algorithms,
            vec![Algorithm::Es256, Algorithm::Rs256]
        );
    }

    #[test]
    fn default_cache_is_quarter_of_memory() {
        const GIB: u64 = 1024 * 1024 * 1024;
        assert_eq!(default_cache_bytes(Some(24 * GIB)), 6 * GIB);
        assert_eq!(default_cache_bytes(Some(2 * GIB)), GIB);
        assert_eq!(default_cache_bytes(None), GIB);

        let configured = ServeOptions {
            cache_mb: Some(256),
            ..ServeOptions::default()
        };
        assert_eq!(configured.resolve().unwrap().cache_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn cgroup_limit_is_lowest_on_path() {
        let files = std::collections::HashMap::from([
            ("/sys/fs/cgroup/system.slice/memory.max", "8589934592\n"),
            (
                "/sys/fs/cgroup/system.slice/devbound.service/memory.max",
                "max\n",
            ),
            (
                "/sys/fs/cgroup/memory/jobs/memory.limit_in_bytes",
                "4294967296\n",
            ),
        ]);
        let read = |path: &Path| {
            files
                .get(path.to_str().unwrap_or_default())
                .map(|value| (*value).to_owned())
        };

        let v2 = "0::/system.slice/devbound.service\n";
        assert_eq!(cgroup_memory_limit(v2, read), Some(8_589_934_592));
        let v1 = "5:cpu,cpuacct:/jobs\n4:memory:/jobs/one\n";
        assert_eq!(cgroup_memory_limit(v1, read), Some(4_294_967_296));
        assert_eq!(cgroup_memory_limit("0::/\n", read), None);
        assert_eq!(cgroup_memory_limit("garbage", read), None);
    }

    #[test]
    fn durations_and_algorithms_are_validated() {
        let options = ServeOptions {
            cookie_ttl: Some("ten minutes".into()),
            ..ServeOptions::default()
        };
        assert!(matches!(
            options.resolve(),
            Err(ConfigError::Duration { .. })
        ));
        let options = ServeOptions {
            algorithms: Some(vec!["HS256".into()]),
            ..ServeOptions::default()
        };
        assert!(matches!(options.resolve(), Err(ConfigError::Algorithm(_))));
    }

    #[test]
    fn file_fills_unset_options_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devbound.toml");
        std::fs::write(
            &path,
            "cookie-ttl = \"7m\"\nlisten = \"127.0.0.1:9443\"\nalgorithms = [\"ES256\"]\ntpm-trust-dir = \"/etc/tpm-roots\"\n",
        )
        .unwrap();
        let options = ServeOptions {
            config: Some(path),
            listen: Some("127.0.0.1:7443".parse().unwrap()),
            ..ServeOptions::default()
        };
        let config = options.merge_file().unwrap().resolve().unwrap();
        assert_eq!(config.policy.cookie_ttl, 420);
        assert_eq!(config.listen.port(), 7443);
        assert_eq!(config.policy.algorithms, vec![Algorithm::Es256]);
        assert_eq!(config.tpm_trust_dir, PathBuf::from("/etc/tpm-roots"));
    }

    #[test]
    fn file_sets_passkey_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devbound.toml");
        std::fs::write(
            &path,
            "password-sign-in = false\npasskey-counter = \"record\"\npasskey-freshness = \"1h\"\n",
        )
        .unwrap();
        let options = ServeOptions {
            config: Some(path),
            ..ServeOptions::default()
        };
        let config = options.merge_file().unwrap().resolve().unwrap();
        assert!(!config.passkeys.password_sign_in);
        assert_eq!(config.passkeys.counter, CounterPolicy::Record);
        assert_eq!(config.passkeys.freshness, 3600);
        assert_eq!(config.passkeys.step_up_max_age, 300);
    }

    #[test]
    fn passkey_choices_are_validated() {
        let options = ServeOptions {
            passkey_attestation: Some("strict".into()),
            ..ServeOptions::default()
        };
        assert!(matches!(options.resolve(), Err(ConfigError::Choice { .. })));
        let options = ServeOptions {
            passkey_counter: Some("ignore".into()),
            ..ServeOptions::default()
        };
        assert!(matches!(options.resolve(), Err(ConfigError::Choice { .. })));
    }

    #[test]
    fn file_with_unknown_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devbound.toml");
        std::fs::write(&path, "cookie_ttl = \"7m\"\n").unwrap();
        let options = ServeOptions {
            config: Some(path),
            ..ServeOptions::default()
        };
        assert!(matches!(options.merge_file(), Err(ConfigError::Parse(..))));
    }
}
