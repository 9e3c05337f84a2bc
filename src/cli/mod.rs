//! The `devbound` command line.

mod device;
mod operator;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DEFAULT_DATA_DIR, ServeOptions};

/// devbound: sessions bound to the device that created them.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS service (creates its data directory and a self-signed certificate on first
    /// start).
    Serve(Box<ServeOptions>),
    /// Manage local accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// List and revoke sessions as an operator.
    #[command(subcommand)]
    Session(SessionCommand),
    /// List and revoke enrolled devices as an operator; with the `tpm` feature, enroll this
    /// machine's TPM and keep its session alive.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Read and check the hash-chained audit log of security decisions.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// The location of the service's state for operator commands. They open the database directly when the
/// service is stopped, and use its admin API (with the token in the data directory) when it
/// runs.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDir {
    /// The service's data directory
    #[arg(long, env = "DEVBOUND_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a local account; the password is read from standard input.
    Add {
        /// User name: letters, digits, `.`, `_`, `-` or `@`, at most 64
        name: String,
        /// Read the password from standard input (the only way to pass it)
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Print a single-use link, valid for 24 hours, with which a person registers a first
    /// passkey without a password. Creates a passkey-only account if NAME does not exist.
    Invite {
        /// User name: letters, digits, `.`, `_`, `-` or `@`, at most 64
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
}

/// What an operator's list shows, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ListFilter {
    /// Only the records of this user name
    #[arg(long)]
    pub user: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List sessions, newest first.
    List(ListFilter),
    /// Revoke a session: its cookie stops working at once and its next refresh ends it in the
    /// browser.
    Revoke {
        /// Session id, as shown by `devbound session list`
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List enrolled devices, newest first.
    List(ListFilter),
    /// Revoke a device: its sessions end at their next refresh and it cannot register new ones.
    Revoke {
        /// Device id, as shown by `devbound device list`
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Enroll this machine's TPM for the user who created the one-time code.
    #[cfg(feature = "tpm")]
    Enroll {
        /// The devbound origin, such as https://login.example.com
        #[arg(long)]
        server: String,
        /// TPM to use: device:/dev/tpmrm0, or swtpm:host=127.0.0.1,port=2321
        #[arg(long, env = "DEVBOUND_TCTI", default_value = "device:/dev/tpmrm0")]
        tcti: String,
        /// The one-time enrollment code; read from standard input if omitted. Codes are
        /// base64url, so one may start with `-`
        #[arg(long, allow_hyphen_values = true)]
        code: Option<String>,
        /// PEM certificate the server's TLS certificate must chain to (for devbound's own
        /// self-signed certificate, the tls-cert.pem in its data directory)
        #[arg(long)]
        ca_cert: PathBuf,
        #[command(flatten)]
        state_dir: StateDir,
    },
    /// Refresh the device's session with TPM-signed proofs.
    #[cfg(feature = "tpm")]
    Refresh {
        #[arg(long, env = "DEVBOUND_TCTI", default_value = "device:/dev/tpmrm0")]
        tcti: String,
        #[command(flatten)]
        state_dir: StateDir,
        /// Refresh this many times in a row, and print the time per refresh
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Afterwards GET this path with the fresh cookie and print the answer
        #[arg(long)]
        get: Option<String>,
    },
    /// Keep the device's session alive: refresh before the cookie expires, and retry with
    /// backoff while the server is unreachable.
    #[cfg(feature = "tpm")]
    KeepAlive {
        #[arg(long, env = "DEVBOUND_TCTI", default_value = "device:/dev/tpmrm0")]
        tcti: String,
        #[command(flatten)]
        state_dir: StateDir,
        /// Stop after this many refreshes
        #[arg(long)]
        max_refreshes: Option<u64>,
    },
}

/// Where the device keeps its state (TPM key blobs and session ids; nothing secret).
#[cfg(feature = "tpm")]
#[derive(Debug, Clone, clap::Args)]
pub struct StateDir {
    /// The device's state directory
    #[arg(
        long = "state-dir",
        env = "DEVBOUND_DEVICE_STATE",
        default_value = "devbound-device"
    )]
    pub path: PathBuf,
}

#[cfg(feature = "tpm")]
impl std::ops::Deref for StateDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest audit entries, oldest first.
    List {
        /// How many of the newest entries to print
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print one JSON object per line
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Check every link of the hash chain and print the latest hash. Keep that hash somewhere
    /// else: a later run that does not reach it means the log was rewritten.
    Verify {
        #[command(flatten)]
        data: DataDir,
    },
}

/// Runs a parsed command and returns the process exit code.
pub async fn run(cli: Cli) -> std::process::ExitCode {
    let result = match cli.command {
        Command::Serve(options) => serve::run(*options).await,
        Command::User(command) => operator::user(command).await,
        Command::Session(command) => operator::session(command).await,
        Command::Device(command) => device::run(command).await,
        Command::Audit(command) => operator::audit(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("devbound: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
