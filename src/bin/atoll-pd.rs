//! `atoll-pd`: the placement driver. Flags follow what TiUP passes to pd-server.

use std::path::PathBuf;

use clap::Parser;
use pd::PdConfig;

#[derive(Parser, Debug)]
#[command(name = "atoll-pd", version, about = "Atoll placement driver (PD-compatible)")]
struct Args {
    /// This member's name.
    #[arg(long = "name")]
    name: Option<String>,
    /// URLs to listen on for gRPC and HTTP, e.g. http://127.0.0.1:2379.
    #[arg(long = "client-urls")]
    client_urls: Option<String>,
    /// URLs clients should use (defaults to --client-urls).
    #[arg(long = "advertise-client-urls")]
    advertise_client_urls: Option<String>,
    #[arg(long = "peer-urls")]
    peer_urls: Option<String>,
    #[arg(long = "advertise-peer-urls")]
    advertise_peer_urls: Option<String>,
    /// Where metadata is stored (defaults to default.<name>).
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// TOML config file (PD's kebab-case keys).
    #[arg(long = "config")]
    config: Option<PathBuf>,
    #[arg(long = "log-file")]
    log_file: Option<PathBuf>,
    #[arg(long = "log-level", short = 'L', default_value = "info")]
    log_level: String,
}

fn build_config(args: &Args) -> anyhow::Result<PdConfig> {
    let mut cfg = match &args.config {
        Some(path) => PdConfig::from_file(path)?,
        None => PdConfig::default(),
    };
    if let Some(v) = &args.name {
        cfg.name = v.clone();
    }
    if let Some(v) = &args.client_urls {
        cfg.client_urls = v.clone();
    }
    if let Some(v) = &args.advertise_client_urls {
        cfg.advertise_client_urls = v.clone();
    }
    if let Some(v) = &args.peer_urls {
        cfg.peer_urls = v.clone();
    }
    if let Some(v) = &args.advertise_peer_urls {
        cfg.advertise_peer_urls = v.clone();
    }
    if let Some(v) = &args.data_dir {
        cfg.data_dir = v.clone();
    }
    cfg.adjust()?;
    Ok(cfg)
}

// jemalloc, as TiKV and PD-side tooling use: less fragmentation under many small allocations.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logging first, so that config warnings (unknown keys) are visible.
    atoll_runtime::init_logging(args.log_file.as_deref(), &args.log_level)?;
    let cfg = build_config(&args)?;
    tracing::info!(?cfg, "starting atoll-pd");
    if let Err(e) = pd::run(cfg, atoll_runtime::shutdown_signal()).await {
        tracing::error!(error = %e, "atoll-pd failed");
        return Err(e.into());
    }
    Ok(())
}
