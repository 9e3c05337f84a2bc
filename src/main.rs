use clap::Parser;

// glibc's allocator took about 6% of the CPU time of a DBSC refresh in profiles of
// devbound-bench. mimalloc's thread-local free lists cost less for a request's many small
// allocations. It is built without asking for transparent huge pages (see `Cargo.toml`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    devbound::cli::run(devbound::cli::Cli::parse()).await
}
