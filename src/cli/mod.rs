//! The `devbound` command line.

mod agent;
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
    /// Register and manage agents as an operator, or act as an agent: log in through the
    /// device grant, get DPoP-bound tokens and call protected URLs.
    #[command(subcommand)]
    Agent(AgentCommand),
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
        /// User name: letters, digits, `.`, `_`, `-` or `@`, at most 64, and not `.` or `..`
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
        /// User name: letters, digits, `.`, `_`, `-` or `@`, at most 64, and not `.` or `..`
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Disable an account: it can no longer sign in, its sessions are revoked at once, and its
    /// agents' tokens stop working. Its passkeys, devices and agents are kept.
    Disable {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Enable a disabled account again. Sessions revoked when it was disabled stay revoked.
    Enable {
        name: String,
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
        /// Session id, as shown by `devbound session list`. Ids are base64url, so one may start
        /// with `-`
        #[arg(allow_hyphen_values = true)]
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
        #[arg(allow_hyphen_values = true)]
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
    if !matches!(cli.command, Command::Serve(_)) {
        serve::init_logging("warn");
    }
    let result = match cli.command {
        Command::Serve(options) => serve::run(*options).await,
        Command::User(command) => operator::user(command).await,
        Command::Session(command) => operator::session(command).await,
        Command::Device(command) => device::run(command).await,
        Command::Audit(command) => operator::audit(command).await,
        Command::Agent(command) => agent::run(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("devbound: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where an agent command finds devbound and its saved login.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentConnection {
    /// File holding the agent's session key, session and grant token (written by `login`)
    #[arg(long, default_value = "devbound-agent.json")]
    pub state: PathBuf,
    /// devbound's URL [default: from the data directory's server.json]
    #[arg(long)]
    pub url: Option<String>,
    /// PEM certificate to trust for --url [default: from the data directory's server.json]
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent for a user, as an operator.
    Add {
        /// Agent name: letters, digits, `.`, `_` or `-`, at most 64
        name: String,
        /// User name of the agent's owner
        #[arg(long)]
        owner: String,
        /// Scope the agent may request; repeat for several
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// https URI of an API the agent may reach; repeat for several
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// Lowest session assurance its tokens need: software, passkey or tpm
        #[arg(long, default_value = "tpm")]
        require: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List every agent with its owner and state.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Suspend an agent: its tokens are inactive until it is resumed.
    Suspend {
        /// Agent id, as shown by `devbound agent list`
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Resume a suspended agent.
    Resume {
        /// Agent id, as shown by `devbound agent list`
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke an agent for good.
    Revoke {
        /// Agent id, as shown by `devbound agent list`
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Log in as an agent: show a code for the owner to approve at /device, then save the
    /// grant bound to a new session key.
    Login {
        /// The agent's id, as `agent add` or the agents page shows it
        #[arg(long, allow_hyphen_values = true)]
        agent: String,
        /// Scope to ask the owner for [default: all the agent may request]
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        connection: AgentConnection,
    },
    /// Print a DPoP-bound access token for an API, after proving the session is fresh.
    Token {
        /// https URI of the API; repeat for several
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// Space-separated scope [default: all the grant allows]
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        connection: AgentConnection,
    },
    /// Call a protected URL with a token and a fresh DPoP proof, and print the response.
    Call {
        /// The protected URL
        #[arg(value_name = "URL")]
        target: String,
        /// The access token from `agent token`
        #[arg(long)]
        token: String,
        /// HTTP method
        #[arg(long, default_value = "GET")]
        method: String,
        /// PEM certificate to trust for the API, in addition to devbound's
        #[arg(long)]
        api_ca_cert: Option<PathBuf>,
        #[command(flatten)]
        connection: AgentConnection,
    },
}
