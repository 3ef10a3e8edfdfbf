//! `atoll bench`: a thin front to the `atoll-bench` crate.
//!
//! - `atoll bench run`: YCSB workloads A–F, put, get against a TiKV-compatible cluster (raw or
//!   transactional, through PD) or etcd; load phase, run phase, live progress, final table,
//!   `--json FILE`.
//! - `atoll bench compare`: Atoll against etcd, workload by client count, one table.
//! - `atoll bench limits`: the machine's fsync rate and loopback gRPC round trip.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use atoll_bench::compare::{compare, CompareOptions};
use atoll_bench::driver::etcd::EtcdDriver;
use atoll_bench::driver::tikv::{ApiVersion, RawDriver, TxnDriver};
use atoll_bench::driver::Driver;
use atoll_bench::generator::{Distribution, KeyOrder};
use atoll_bench::report::PhaseReport;
use atoll_bench::runner::{self, CommonOptions, LoadOptions, RunOptions};
use atoll_bench::server_metrics::{self, Stage};
use atoll_bench::workload::{Records, WorkloadSpec, WORKLOAD_NAMES};
use atoll_bench::{limits, parse_duration};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load and/or run one workload against one target.
    Run(RunArgs),
    /// Atoll (raw) against etcd: every workload at every client count, side by side.
    Compare(CompareArgs),
    /// Measure the machine: fsyncs/s of a directory's disk, loopback gRPC round trip.
    Limits(LimitsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// tikv-client RawClient through PD.
    Raw,
    /// tikv-client TransactionClient through PD (optimistic, `--txn-ops` ops per transaction).
    Txn,
    /// etcd v3 KV API (Put/Range).
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    Load,
    Run,
    Both,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to drive.
    #[arg(long, value_enum, default_value = "raw")]
    pub target: Target,
    /// PD endpoints (comma-separated) for raw and txn.
    #[arg(
        long,
        env = "ATOLL_PD",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub pd: Vec<String>,
    /// etcd client endpoints (comma-separated) for `--target etcd`.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// TiKV API version: v2 (keyspace DEFAULT) or v1 (raw only).
    #[arg(long, default_value = "v2")]
    pub api: String,
    /// Workload: a, b, c, d, e, f (YCSB core), put, get.
    #[arg(short, long, default_value = "a")]
    pub workload: String,
    /// Override the workload's key distribution: uniform, zipfian, scrambled-zipfian, latest.
    #[arg(long)]
    pub distribution: Option<String>,
    /// Records loaded (and assumed present by the run phase).
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Key order: hashed (YCSB default) or ordered.
    #[arg(long, default_value = "hashed")]
    pub key_order: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Concurrent clients (each a closed loop).
    #[arg(short, long, default_value_t = 16)]
    pub threads: usize,
    /// Run for this long (e.g. 30s, 2m).
    #[arg(short, long)]
    pub duration: Option<String>,
    /// Run this many operations (transactions in txn mode) in total.
    #[arg(long)]
    pub operations: Option<u64>,
    /// Operations per transaction (txn target).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
    /// Which phases: load, run, both.
    #[arg(long, value_enum, default_value = "both")]
    pub phase: PhaseArg,
    /// Records per load request (raw batch put) or per load transaction.
    #[arg(long, default_value_t = 64)]
    pub load_batch: usize,
    /// Longest scan (workload e).
    #[arg(long, default_value_t = 100)]
    pub max_scan_len: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Progress line interval; 0 turns it off.
    #[arg(long, default_value = "1s")]
    pub progress: String,
    /// Per-request timeout of the clients.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Atoll's PD endpoints.
    #[arg(
        long,
        env = "ATOLL_PD",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub pd: Vec<String>,
    /// TiKV API version for Atoll (raw).
    #[arg(long, default_value = "v2")]
    pub api: String,
    /// etcd client endpoints.
    #[arg(long, required = true, value_delimiter = ',')]
    pub etcd: Vec<String>,
    #[arg(long, default_value = "put,get,a", value_delimiter = ',')]
    pub workloads: Vec<String>,
    #[arg(long, default_value = "1,16,128", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Length of each cell on each system.
    #[arg(short, long, default_value = "10s")]
    pub duration: String,
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    #[arg(long, default_value_t = 64)]
    pub load_batch: usize,
    #[arg(long, default_value_t = 16)]
    pub load_threads: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "0")]
    pub progress: String,
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Measure fsyncs/s in this directory (put it on the data disk) and loopback gRPC first.
    #[arg(long)]
    pub limits_dir: Option<PathBuf>,
    #[arg(long, default_value = "4s")]
    pub limits_duration: String,
    /// A line printed under the table (repeatable): setup facts such as replication.
    #[arg(long)]
    pub note: Vec<String>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// Directory on the disk to measure.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    #[arg(short, long, default_value = "4s")]
    pub duration: String,
    /// Requests in flight for the concurrent ping.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn duration(s: &str) -> Result<Duration> {
    parse_duration(s).map_err(|e| anyhow!(e))
}

fn progress(s: &str) -> Result<Option<Duration>> {
    let d = duration(s)?;
    Ok((!d.is_zero()).then_some(d))
}

fn api(s: &str) -> Result<ApiVersion> {
    ApiVersion::parse(s).ok_or_else(|| anyhow!("bad --api {s:?} (v1 or v2)"))
}

/// Sets the returned flag on Ctrl-C so workers stop and the results so far are reported.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping and reporting what ran");
            flag.store(true, Ordering::Release);
        }
    });
    stop
}

fn write_json(path: &PathBuf, value: serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(&value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.command {
        BenchCommand::Run(a) => run_workload(a).await,
        BenchCommand::Compare(a) => run_compare(a).await,
        BenchCommand::Limits(a) => run_limits(a).await,
    }
}

fn workload_spec(a: &RunArgs) -> Result<WorkloadSpec> {
    let mut spec = WorkloadSpec::named(&a.workload).ok_or_else(|| {
        anyhow!(
            "unknown workload {:?}; one of {}",
            a.workload,
            WORKLOAD_NAMES.join(", ")
        )
    })?;
    if let Some(d) = &a.distribution {
        spec.distribution = Distribution::parse(d).ok_or_else(|| anyhow!("unknown distribution {d:?}"))?;
    }
    spec.max_scan_len = a.max_scan_len;
    Ok(spec)
}

async fn run_workload(a: RunArgs) -> Result<ExitCode> {
    let spec = workload_spec(&a)?;
    let order = KeyOrder::parse(&a.key_order).ok_or_else(|| anyhow!("bad --key-order {:?}", a.key_order))?;
    let timeout = duration(&a.timeout)?;
    let run_opts = RunOptions {
        operations: a.operations,
        duration: a.duration.as_deref().map(duration).transpose()?,
        ops_per_unit: if a.target == Target::Txn {
            a.txn_ops.max(1)
        } else {
            1
        },
    };
    if a.phase != PhaseArg::Load && run_opts.operations.is_none() && run_opts.duration.is_none() {
        bail!("the run phase needs --duration or --operations");
    }
    let api = api(&a.api)?;
    // The nodes' status addresses, to read their stage histograms around the run phase.
    let status = match (a.target, a.pd.first()) {
        (Target::Raw | Target::Txn, Some(pd)) => server_metrics::store_status_addrs(pd, timeout)
            .await
            .unwrap_or_else(|e| {
                eprintln!("no server stage breakdown: {e}");
                vec![]
            }),
        _ => vec![],
    };
    let (label, (reports, stages)) = match a.target {
        Target::Raw => {
            let label = format!("raw {:?}", api).to_lowercase();
            let d = RawDriver::connect(&a.pd, api, timeout).await?;
            let r = phases(Arc::new(d), &label, spec, order, &a, &run_opts, &status).await?;
            (label, r)
        }
        Target::Txn => {
            let label = format!("txn {:?} {} op/txn", api, run_opts.ops_per_unit).to_lowercase();
            let d = TxnDriver::connect(&a.pd, api, timeout).await?;
            let r = phases(Arc::new(d), &label, spec, order, &a, &run_opts, &status).await?;
            (label, r)
        }
        Target::Etcd => {
            let d = EtcdDriver::connect(&a.etcd, timeout).await?;
            let r = phases(Arc::new(d), "etcd", spec, order, &a, &run_opts, &[]).await?;
            ("etcd".to_owned(), r)
        }
    };
    let mut errors = 0;
    for r in &reports {
        println!("{}", r.table());
        errors += r.errors;
    }
    if !stages.is_empty() {
        println!(
            "server stages during the run (mean per event, all nodes): {}",
            server_metrics::one_line(&stages)
        );
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({ "target": label, "phases": reports, "server_stages": stages });
        write_json(path, doc)?;
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn phases<D: Driver>(
    driver: Arc<D>,
    label: &str,
    spec: WorkloadSpec,
    order: KeyOrder,
    a: &RunArgs,
    run_opts: &RunOptions,
    status: &[String],
) -> Result<(Vec<PhaseReport>, Vec<Stage>)> {
    let stop = stop_on_ctrl_c();
    let common = CommonOptions {
        label: label.to_owned(),
        spec,
        threads: a.threads.max(1),
        value_size: a.value_size,
        seed: a.seed,
        progress: progress(&a.progress)?,
    };
    let records = Arc::new(Records::new(a.records, order));
    let mut reports = Vec::new();
    if a.phase != PhaseArg::Run {
        let load = LoadOptions {
            records: a.records,
            batch: a.load_batch,
        };
        let r = runner::load(driver.clone(), records.clone(), &common, &load, stop.clone()).await?;
        reports.push(PhaseReport::new(&r));
    }
    let mut stages = vec![];
    if a.phase != PhaseArg::Load && !stop.load(Ordering::Acquire) {
        let timeout = Duration::from_secs(5);
        let before = if status.is_empty() {
            None
        } else {
            server_metrics::snapshot(status, timeout).await.ok()
        };
        let r = runner::run(driver, records, &common, run_opts, stop).await?;
        reports.push(PhaseReport::new(&r));
        if let Some(before) = before {
            if let Ok(after) = server_metrics::snapshot(status, timeout).await {
                stages = server_metrics::stages(&before, &after);
            }
        }
    }
    Ok((reports, stages))
}

async fn run_compare(a: CompareArgs) -> Result<ExitCode> {
    let opts = CompareOptions {
        pd: a.pd,
        api: api(&a.api)?,
        etcd: a.etcd,
        workloads: a.workloads,
        clients: a.clients,
        duration: duration(&a.duration)?,
        records: a.records,
        value_size: a.value_size,
        load_batch: a.load_batch,
        load_threads: a.load_threads,
        seed: a.seed,
        timeout: duration(&a.timeout)?,
        progress: progress(&a.progress)?,
        limits_dir: a.limits_dir,
        limits_duration: duration(&a.limits_duration)?,
        notes: a.note,
    };
    let c = compare(&opts, stop_on_ctrl_c()).await?;
    println!("{}", c.table());
    if let Some(path) = &a.json {
        write_json(path, serde_json::to_value(&c)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_limits(a: LimitsArgs) -> Result<ExitCode> {
    let l = limits::measure(&a.dir, duration(&a.duration)?, a.concurrency).await?;
    println!(
        "fsync ({} B appends + fdatasync in {}): {:.0}/s, p50 {} ms, p99 {} ms",
        l.fsync.write_bytes,
        l.fsync.dir.display(),
        l.fsync.fsyncs_per_sec,
        atoll_bench::report::ms(l.fsync.latency_us.p50_us),
        atoll_bench::report::ms(l.fsync.latency_us.p99_us)
    );
    println!(
        "loopback gRPC ping ({} B): p50 {} ms, p99 {} ms, {:.0}/s one at a time, {:.0}/s with {} in flight",
        l.grpc_ping.payload_bytes,
        atoll_bench::report::ms(l.grpc_ping.serial_latency_us.p50_us),
        atoll_bench::report::ms(l.grpc_ping.serial_latency_us.p99_us),
        l.grpc_ping.serial_per_sec,
        l.grpc_ping.concurrent_per_sec,
        l.grpc_ping.concurrency
    );
    if let Some(path) = &a.json {
        write_json(path, serde_json::to_value(&l)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
