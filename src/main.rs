use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    devbound::cli::run(devbound::cli::Cli::parse()).await
}
