//! The `devbound` command line.

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
    /// List accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List sessions, newest first.
    List {
        /// Only the sessions of this user name
        #[arg(long)]
        user: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
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
