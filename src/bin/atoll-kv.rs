//! `atoll-kv`: a storage node. Flags follow what TiKV tooling passes to tikv-server.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use server::config::{Config, ReadableSize};

#[derive(Parser, Debug)]
#[command(name = "atoll-kv", version = server::VERSION, about = "Atoll storage node (TiKV-compatible)")]
struct Args {
    /// Address to listen on for gRPC.
    #[arg(long = "addr", short = 'A')]
    addr: Option<String>,
    /// Address clients and other stores use to reach this node.
    #[arg(long = "advertise-addr")]
    advertise_addr: Option<String>,
    /// Address of the status HTTP server (/metrics, /status).
    #[arg(long = "status-addr")]
    status_addr: Option<String>,
    #[arg(long = "advertise-status-addr")]
    advertise_status_addr: Option<String>,
    /// PD endpoints, comma separated.
    #[arg(long = "pd-endpoints", alias = "pd", value_delimiter = ',')]
    pd_endpoints: Vec<String>,
    #[arg(long = "data-dir", short = 's')]
    data_dir: Option<String>,
    /// TOML config file (TiKV sections, kebab-case).
    #[arg(long = "config", short = 'C')]
    config: Option<PathBuf>,
    #[arg(long = "log-file", short = 'f')]
    log_file: Option<PathBuf>,
    #[arg(long = "log-level", short = 'L')]
    log_level: Option<String>,
    /// Store labels, e.g. zone=z1,host=h1.
    #[arg(long = "labels")]
    labels: Option<String>,
    /// Capacity reported to PD, e.g. 10GB (0 = disk size).
    #[arg(long = "capacity")]
    capacity: Option<String>,
}

fn build_config(args: &Args) -> anyhow::Result<(Config, Vec<String>)> {
    let (mut cfg, unknown) = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).map_err(anyhow::Error::msg)?
        }
        None => (Config::default(), vec![]),
    };
    if let Some(v) = &args.addr {
        cfg.server.addr = v.clone();
    }
    if let Some(v) = &args.advertise_addr {
        cfg.server.advertise_addr = v.clone();
    }
    if let Some(v) = &args.status_addr {
        cfg.server.status_addr = v.clone();
    }
    if let Some(v) = &args.advertise_status_addr {
        cfg.server.advertise_status_addr = v.clone();
    }
    if !args.pd_endpoints.is_empty() {
        cfg.pd.endpoints = args.pd_endpoints.clone();
    }
    if let Some(v) = &args.data_dir {
        cfg.storage.data_dir = v.clone();
    }
    if let Some(v) = &args.labels {
        cfg.server
            .labels
            .extend(Config::parse_labels(v).map_err(anyhow::Error::msg)?);
    }
    if let Some(v) = &args.capacity {
        cfg.raftstore.capacity = ReadableSize::parse(v).map_err(anyhow::Error::msg)?;
    }
    if let Some(v) = &args.log_file {
        cfg.log.file.filename = v.display().to_string();
    }
    if let Some(v) = &args.log_level {
        cfg.log.level = v.clone();
    }
    Ok((cfg, unknown))
}

// jemalloc, as TiKV and PD-side tooling use: less fragmentation under many small allocations.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (cfg, unknown) = build_config(&args)?;
    let log_file = (!cfg.log.file.filename.is_empty()).then(|| PathBuf::from(&cfg.log.file.filename));
    atoll_runtime::init_logging(log_file.as_deref(), &cfg.log.level)?;
    for key in unknown {
        tracing::warn!(key, "unknown configuration key ignored");
    }
    tracing::info!(version = server::VERSION, ?cfg, "starting atoll-kv");
    if let Err(e) = server::run(cfg, atoll_runtime::shutdown_signal()).await {
        tracing::error!(error = %e, "atoll-kv failed");
        return Err(e.into());
    }
    Ok(())
}
