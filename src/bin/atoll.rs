//! `atoll`: the command line of the Atoll database (`atoll playground`, `atoll ctl …`).
//! The implementation lives in `src/cli/`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

#[path = "../cli/mod.rs"]
mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("atoll: {e:#}");
            ExitCode::FAILURE
        }
    }
}
