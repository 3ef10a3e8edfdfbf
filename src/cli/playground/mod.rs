//! `atoll playground`: one `atoll-pd` and N `atoll-kv` on this machine, started, waited for
//! until the cluster serves (PD healthy, every node Up, a region with a leader), and stopped
//! cleanly on Ctrl-C / SIGTERM / SIGHUP or as soon as one of them dies.

pub mod layout;
pub mod procs;
pub mod ready;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::cli::http::{self, Endpoint};
use layout::{kv_args, pd_args, pd_config_toml, Layout, LayoutOptions};
use procs::{Exited, Procs, Spec};

/// How often readiness is probed and children are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Per-request limit while probing PD.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct PlaygroundArgs {
    /// PD client port (its peer port is this + 1).
    #[arg(long, default_value_t = 2379)]
    pub pd_port: u16,
    /// Number of storage nodes.
    #[arg(long, default_value_t = 3)]
    pub kv_count: usize,
    /// gRPC port of the first node; node i listens on base + i - 1.
    #[arg(long, default_value_t = 20160)]
    pub kv_base_port: u16,
    /// Status (HTTP /metrics) port of the first node; node i on base + i - 1.
    #[arg(long, default_value_t = 20180)]
    pub status_base_port: u16,
    /// Where PD and the nodes keep their data and logs; kept across runs unless --clean.
    #[arg(long, default_value = "./data/playground")]
    pub data_dir: PathBuf,
    /// Remove the data directory before starting.
    #[arg(long)]
    pub clean: bool,
    /// Address every process listens on and advertises.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Directory holding atoll-pd and atoll-kv [default: the directory of this executable].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Seconds to wait for the cluster to become ready before giving up.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
}

impl PlaygroundArgs {
    pub fn layout_options(&self, data_dir: PathBuf) -> LayoutOptions {
        LayoutOptions {
            host: self.host.clone(),
            pd_port: self.pd_port,
            kv_count: self.kv_count,
            kv_base_port: self.kv_base_port,
            status_base_port: self.status_base_port,
            data_dir,
        }
    }
}

/// Why the playground stopped.
enum Stop {
    Signal(&'static str),
    ChildExited(Exited),
    Failed(anyhow::Error),
}

pub async fn run(args: PlaygroundArgs) -> Result<ExitCode> {
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let layout = Layout::compute(&args.layout_options(data_dir))?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => default_bin_dir()?,
    };
    let pd_bin = find_binary(&bin_dir, "atoll-pd")?;
    let kv_bin = find_binary(&bin_dir, "atoll-kv")?;

    prepare_data_dir(&layout.data_dir, args.clean)?;
    check_ports_free(&args.host, &layout)?;

    // Register the signal handlers before anything is started.
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let shutdown = async {
        tokio::select! {
            r = tokio::signal::ctrl_c() => match r {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            },
            _ = sigterm.recv() => "SIGTERM",
            _ = sighup.recv() => "SIGHUP",
        }
    };

    let mut procs = Procs::new();
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let stop = tokio::select! {
        stop = supervise(&mut procs, &layout, &pd_bin, &kv_bin, ready_timeout) => stop,
        name = shutdown => Stop::Signal(name),
    };

    let code = match stop {
        Stop::Signal(name) => {
            eprintln!("\n{name} received, stopping the playground");
            ExitCode::SUCCESS
        }
        Stop::ChildExited(exited) => {
            report_exit(&exited);
            eprintln!("stopping the rest of the playground");
            ExitCode::FAILURE
        }
        Stop::Failed(e) => {
            eprintln!("atoll playground: {e:#}");
            eprintln!(
                "stopping the playground; logs are in {}",
                layout.data_dir.display()
            );
            ExitCode::FAILURE
        }
    };
    procs.stop_all().await;
    eprintln!("playground stopped; data kept in {}", layout.data_dir.display());
    Ok(code)
}

/// Starts everything, waits until ready, prints where things are, then watches the children.
/// Returns only when something went wrong (a child exited, or the cluster never got ready).
async fn supervise(
    procs: &mut Procs,
    layout: &Layout,
    pd_bin: &Path,
    kv_bin: &Path,
    ready_timeout: Duration,
) -> Stop {
    match start_and_wait(procs, layout, pd_bin, kv_bin, ready_timeout).await {
        Ok(None) => {}
        Ok(Some(exited)) => return Stop::ChildExited(exited),
        Err(e) => return Stop::Failed(e),
    }
    print_ready(layout);
    loop {
        match procs.check_exited() {
            Ok(Some(exited)) => return Stop::ChildExited(exited),
            Ok(None) => {}
            Err(e) => return Stop::Failed(e),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `Ok(Some(_))` when a child died while starting up.
async fn start_and_wait(
    procs: &mut Procs,
    layout: &Layout,
    pd_bin: &Path,
    kv_bin: &Path,
    ready_timeout: Duration,
) -> Result<Option<Exited>> {
    let deadline = Instant::now() + ready_timeout;
    let pd_endpoint = Endpoint::parse(&layout.pd.endpoint)?;

    eprintln!(
        "starting {} on {} (data in {})",
        layout.pd.name,
        layout.pd.endpoint,
        layout.data_dir.display()
    );
    std::fs::create_dir_all(&layout.pd.data_dir)
        .with_context(|| format!("creating {}", layout.pd.data_dir.display()))?;
    std::fs::write(&layout.pd.config_file, pd_config_toml(&layout.pd))
        .with_context(|| format!("writing {}", layout.pd.config_file.display()))?;
    procs.spawn(Spec {
        name: &layout.pd.name,
        tier: 0,
        program: pd_bin,
        args: pd_args(&layout.pd),
        log_file: &layout.pd.log_file,
        console_file: &layout.pd.console_file,
    })?;
    let ep = &pd_endpoint;
    let pd_ready = poll_until(
        procs,
        deadline,
        "PD to answer /pd/api/v1/health",
        move || async move {
            let r = http::get(ep, "/pd/api/v1/health", PROBE_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            if r.is_success() {
                Ok(())
            } else {
                Err(format!("health answered {} {}", r.status, r.reason))
            }
        },
    )
    .await?;
    if let Some(exited) = pd_ready {
        return Ok(Some(exited));
    }

    for kv in &layout.kvs {
        eprintln!("starting {} on {}", kv.name, kv.addr);
        std::fs::create_dir_all(&kv.data_dir)
            .with_context(|| format!("creating {}", kv.data_dir.display()))?;
        procs.spawn(Spec {
            name: &kv.name,
            tier: 1,
            program: kv_bin,
            args: kv_args(kv, &layout.pd.endpoint),
            log_file: &kv.log_file,
            console_file: &kv.console_file,
        })?;
    }

    let expected: Vec<String> = layout.kvs.iter().map(|k| k.addr.clone()).collect();
    let expected = &expected;
    let n = expected.len();
    let what = format!("{n} stores Up and a region leader");
    poll_until(procs, deadline, &what, move || async move {
        let stores = get_json(ep, "/pd/api/v1/stores").await?;
        let view = ready::stores_view(&stores, expected);
        if !view.all_up() {
            return Err(format!(
                "{}/{n} stores Up (waiting for {})",
                view.up.len(),
                view.not_up.join(", ")
            ));
        }
        let regions = get_json(ep, "/pd/api/v1/regions").await?;
        match ready::regions_with_leader(&regions) {
            (0, _) => Err(format!("{n}/{n} stores Up, no region reported yet")),
            (total, 0) => Err(format!(
                "{n}/{n} stores Up, {total} region(s), none with a leader yet"
            )),
            _ => Ok(()),
        }
    })
    .await
}

async fn get_json(endpoint: &Endpoint, path: &str) -> Result<serde_json::Value, String> {
    let r = http::get(endpoint, path, PROBE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !r.is_success() {
        return Err(format!("GET {path} answered {} {}", r.status, r.reason));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("GET {path}: invalid JSON: {e}"))
}

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, a child exits (`Ok(Some)`), or
/// `deadline` passes (an error naming the last reason for not being ready). Progress is printed
/// whenever that reason changes.
async fn poll_until<F, Fut>(
    procs: &mut Procs,
    deadline: Instant,
    what: &str,
    mut probe: F,
) -> Result<Option<Exited>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last_reason = String::new();
    loop {
        if let Some(exited) = procs.check_exited()? {
            return Ok(Some(exited));
        }
        match probe().await {
            Ok(()) => return Ok(None),
            Err(reason) => {
                if reason != last_reason {
                    eprintln!("  waiting for {what}: {reason}");
                    last_reason = reason;
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("gave up waiting for {what}: {last_reason} (raise --ready-timeout if the machine is slow)");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn print_ready(layout: &Layout) {
    let n = layout.kvs.len();
    println!();
    println!(
        "Atoll playground is ready: 1 PD, {n} node{}",
        if n == 1 { "" } else { "s" }
    );
    println!("  PD endpoint:  {}", layout.pd.endpoint);
    println!("  dashboard:    http://{}/dashboard", layout.pd.endpoint);
    println!(
        "  replicas:     max-replicas = {} (PD adds missing replicas in the background; \
         see `atoll ctl operator list`)",
        layout.pd.max_replicas
    );
    for kv in &layout.kvs {
        println!("  {:<12}  {:<22}  status {}", kv.name, kv.addr, kv.metrics_url());
    }
    println!("  data, logs:   {}", layout.data_dir.display());
    println!();
    println!(
        "Connect (Rust): tikv_client::RawClient::new(vec![\"{}\"]).await?  \
         (API V2: RawClient::new_with_config(.., Config::default().with_default_keyspace()))",
        layout.pd.endpoint
    );
    println!("Inspect:        atoll ctl --pd {} stores", layout.pd.endpoint);
    println!("Press Ctrl-C to stop.");
}

fn report_exit(exited: &Exited) {
    let pid = exited.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    eprintln!("{}{pid} exited unexpectedly ({})", exited.name, exited.status);
    for (what, path, from) in [
        ("console output", &exited.console_file, exited.console_start),
        ("log", &exited.log_file, exited.log_start),
    ] {
        match procs::tail(path, from, 20) {
            Ok(lines) if !lines.is_empty() => {
                eprintln!("--- last lines of its {what} ({}):", path.display());
                for line in lines {
                    eprintln!("    {line}");
                }
            }
            Ok(_) => eprintln!("--- its {what} ({}) is empty", path.display()),
            Err(e) => eprintln!("--- its {what} ({}) cannot be read: {e}", path.display()),
        }
    }
}

/// The directory of the running `atoll` executable, where cargo also puts the servers.
fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the atoll executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent directory", exe.display()))
}

fn find_binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{name} not found in {}; build it first (`cargo build --bins`) or pass --bin-dir",
            dir.display()
        )
    }
}

/// Whether a directory listing looks like a playground's (so `--clean` may delete it):
/// only `pd…` and `kv-…` entries, or nothing at all.
pub fn looks_like_playground_dir<S: AsRef<str>>(entries: &[S]) -> bool {
    entries.iter().all(|e| {
        let e = e.as_ref();
        e.starts_with("pd") || e.starts_with("kv-")
    })
}

fn prepare_data_dir(dir: &Path, clean: bool) -> Result<()> {
    if clean && dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        if !looks_like_playground_dir(&entries) {
            bail!(
                "refusing to --clean {}: it holds entries other than pd* and kv-* ({})",
                dir.display(),
                entries.join(", ")
            );
        }
        eprintln!("removing {}", dir.display());
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Fails early, with a readable message, when a port is taken (e.g. by another playground).
fn check_ports_free(host: &str, layout: &Layout) -> Result<()> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    for (port, who) in layout.ports() {
        if let Err(e) = std::net::TcpListener::bind((host, port)) {
            bail!("cannot listen on {host}:{port} for {who}: {e} (is another playground running?)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_only_touches_playground_dirs() {
        assert!(looks_like_playground_dir::<&str>(&[]));
        assert!(looks_like_playground_dir(&[
            "pd",
            "pd.log",
            "pd.console",
            "pd.toml",
            "kv-1",
            "kv-1.log",
            "kv-12.console"
        ]));
        assert!(!looks_like_playground_dir(&["pd", "Cargo.toml"]));
        assert!(!looks_like_playground_dir(&[".git"]));
    }

    #[test]
    fn clean_refuses_foreign_dirs_and_keeps_data_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pg");
        std::fs::create_dir_all(dir.join("kv-1")).unwrap();
        std::fs::write(dir.join("kv-1/data"), b"x").unwrap();
        // Without --clean the data stays.
        prepare_data_dir(&dir, false).unwrap();
        assert!(dir.join("kv-1/data").exists());
        // With --clean it goes.
        prepare_data_dir(&dir, true).unwrap();
        assert!(dir.exists());
        assert!(!dir.join("kv-1").exists());
        // A directory that is not a playground's is left alone.
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        assert!(prepare_data_dir(&dir, true).is_err());
        assert!(dir.join("notes.txt").exists());
    }

    #[test]
    fn missing_binaries_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let err = find_binary(tmp.path(), "atoll-pd").unwrap_err();
        assert!(err.to_string().contains("atoll-pd not found"), "{err}");
        std::fs::write(tmp.path().join("atoll-pd"), b"").unwrap();
        assert_eq!(
            find_binary(tmp.path(), "atoll-pd").unwrap(),
            tmp.path().join("atoll-pd")
        );
    }

    #[test]
    fn taken_ports_are_reported() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let opts = LayoutOptions {
            host: "127.0.0.1".into(),
            pd_port: port,
            kv_count: 1,
            kv_base_port: 1,
            status_base_port: 2,
            data_dir: PathBuf::from("/nonexistent"),
        };
        let layout = Layout::compute(&opts).unwrap();
        let err = check_ports_free("127.0.0.1", &layout).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{port} for pd-1 client")),
            "{err}"
        );
    }
}
