//! `atoll ctl`: read the cluster's state through PD's HTTP JSON API and print it pretty.
//! A non-2xx answer prints the body on stderr and exits with status 1.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::cli::http::{self, Endpoint};

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CtlArgs {
    /// PD endpoint, `HOST:PORT` or `http://HOST:PORT`.
    #[arg(long, global = true, env = "ATOLL_PD", default_value = "127.0.0.1:2379")]
    pub pd: String,
    /// Seconds to wait for PD's answer.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum CtlCommand {
    /// All stores with their state and statistics.
    Stores,
    /// One store.
    Store {
        /// Store id.
        id: u64,
    },
    /// All regions with their peers and leaders.
    Regions,
    /// One region.
    Region {
        /// Region id.
        id: u64,
    },
    /// PD members and the current leader.
    Members,
    /// Health of each PD member.
    Health,
    /// PD's configuration (replication, schedule, …).
    Config,
    /// Cluster id and bootstrap state.
    Cluster,
}

/// The PD API path answering `cmd`.
pub fn api_path(cmd: CtlCommand) -> String {
    match cmd {
        CtlCommand::Stores => "/pd/api/v1/stores".to_string(),
        CtlCommand::Store { id } => format!("/pd/api/v1/store/{id}"),
        CtlCommand::Regions => "/pd/api/v1/regions".to_string(),
        CtlCommand::Region { id } => format!("/pd/api/v1/region/id/{id}"),
        CtlCommand::Members => "/pd/api/v1/members".to_string(),
        CtlCommand::Health => "/pd/api/v1/health".to_string(),
        CtlCommand::Config => "/pd/api/v1/config".to_string(),
        CtlCommand::Cluster => "/pd/api/v1/cluster".to_string(),
    }
}

/// The body pretty-printed if it is JSON, else as text.
pub fn pretty(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()),
        Err(_) => String::from_utf8_lossy(body).trim_end().to_string(),
    }
}

pub async fn run(args: CtlArgs) -> Result<ExitCode> {
    let endpoint = Endpoint::parse(&args.pd).context("--pd")?;
    let path = api_path(args.command);
    let response = http::get(&endpoint, &path, Duration::from_secs(args.timeout))
        .await
        .with_context(|| format!("GET http://{endpoint}{path}"))?;
    if response.is_success() {
        println!("{}", pretty(&response.body));
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "GET http://{endpoint}{path}: {} {}",
            response.status, response.reason
        );
        if let Some(location) = response.header("location") {
            eprintln!("(redirected to {location}; point --pd there)");
        }
        let body = pretty(&response.body);
        if !body.is_empty() {
            eprintln!("{body}");
        }
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(api_path(CtlCommand::Stores), "/pd/api/v1/stores");
        assert_eq!(api_path(CtlCommand::Store { id: 4 }), "/pd/api/v1/store/4");
        assert_eq!(api_path(CtlCommand::Regions), "/pd/api/v1/regions");
        assert_eq!(api_path(CtlCommand::Region { id: 2 }), "/pd/api/v1/region/id/2");
        assert_eq!(api_path(CtlCommand::Members), "/pd/api/v1/members");
        assert_eq!(api_path(CtlCommand::Health), "/pd/api/v1/health");
        assert_eq!(api_path(CtlCommand::Config), "/pd/api/v1/config");
        assert_eq!(api_path(CtlCommand::Cluster), "/pd/api/v1/cluster");
    }

    #[test]
    fn pretty_json_and_text() {
        assert_eq!(pretty(br#"{"count":1}"#), "{\n  \"count\": 1\n}");
        assert_eq!(pretty(b"region not found\n"), "region not found");
        assert_eq!(pretty(b""), "");
    }
}
