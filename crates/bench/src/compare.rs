//! Atoll against etcd with the same workload shapes from the same tool, one after the other in
//! one run: both are loaded with the same records, then every (workload, client count) cell
//! runs on Atoll and right after on etcd, for the same duration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::etcd::EtcdDriver;
use crate::driver::tikv::{ApiVersion, RawDriver};
use crate::driver::Driver;
use crate::generator::KeyOrder;
use crate::limits::{self, Limits};
use crate::report::{ms, CompareCell, Comparison, PhaseReport};
use crate::runner::{self, CommonOptions, LoadOptions, RunOptions};
use crate::server_metrics;
use crate::workload::{Records, WorkloadSpec};
use crate::BenchError;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub pd: Vec<String>,
    pub api: ApiVersion,
    pub etcd: Vec<String>,
    pub workloads: Vec<String>,
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub records: u64,
    pub value_size: usize,
    pub load_batch: usize,
    pub load_threads: usize,
    pub seed: u64,
    pub timeout: Duration,
    pub progress: Option<Duration>,
    /// Measure the fsync rate here (the data disk) and the loopback gRPC round trip first.
    pub limits_dir: Option<PathBuf>,
    pub limits_duration: Duration,
    pub notes: Vec<String>,
}

fn spec(name: &str) -> Result<WorkloadSpec, BenchError> {
    WorkloadSpec::named(name).ok_or_else(|| BenchError::Config(format!("unknown workload {name:?}")))
}

async fn load_one<D: Driver>(
    driver: Arc<D>,
    label: &str,
    opts: &CompareOptions,
    stop: &Arc<AtomicBool>,
) -> Result<PhaseReport, BenchError> {
    let common = CommonOptions {
        label: label.to_owned(),
        spec: spec("put")?,
        threads: opts.load_threads,
        value_size: opts.value_size,
        seed: opts.seed,
        progress: opts.progress,
    };
    let records = Arc::new(Records::new(opts.records, KeyOrder::Hashed));
    let load = LoadOptions {
        records: opts.records,
        batch: opts.load_batch,
    };
    let r = runner::load(driver, records, &common, &load, stop.clone()).await?;
    Ok(PhaseReport::new(&r))
}

async fn run_one<D: Driver>(
    driver: Arc<D>,
    label: &str,
    workload: &WorkloadSpec,
    clients: usize,
    opts: &CompareOptions,
    stop: &Arc<AtomicBool>,
) -> Result<PhaseReport, BenchError> {
    let common = CommonOptions {
        label: label.to_owned(),
        spec: workload.clone(),
        threads: clients,
        value_size: opts.value_size,
        seed: opts.seed,
        progress: opts.progress,
    };
    let records = Arc::new(Records::new(opts.records, KeyOrder::Hashed));
    let run = RunOptions {
        operations: None,
        duration: Some(opts.duration),
        ops_per_unit: 1,
    };
    let r = runner::run(driver, records, &common, &run, stop.clone()).await?;
    Ok(PhaseReport::new(&r))
}

/// The nodes' histogram totals, or `None` (with a warning) when they cannot be read.
async fn snapshot(addrs: &[String], timeout: Duration) -> Option<BTreeMap<String, (f64, f64)>> {
    if addrs.is_empty() {
        return None;
    }
    match server_metrics::snapshot(addrs, timeout).await {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("reading the nodes' metrics: {e}");
            None
        }
    }
}

/// Runs the whole comparison; progress and each cell's one-line result go to stderr.
pub async fn compare(opts: &CompareOptions, stop: Arc<AtomicBool>) -> Result<Comparison, BenchError> {
    let workloads = opts
        .workloads
        .iter()
        .map(|w| spec(w))
        .collect::<Result<Vec<_>, _>>()?;
    let limits: Option<Limits> = match &opts.limits_dir {
        Some(dir) => {
            eprintln!("measuring machine limits ({dir:?}) ...");
            Some(limits::measure(dir, opts.limits_duration, 16).await?)
        }
        None => None,
    };
    let api = match opts.api {
        ApiVersion::V1 => "v1",
        ApiVersion::V2 => "v2",
    };
    let atoll_label = format!("atoll raw {api}");
    let atoll = Arc::new(RawDriver::connect(&opts.pd, opts.api, opts.timeout).await?);
    let etcd = Arc::new(EtcdDriver::connect(&opts.etcd, opts.timeout).await?);

    let loaded = load_one(atoll.clone(), &atoll_label, opts, &stop).await?;
    eprint!("{}", loaded.table());
    let loaded = load_one(etcd.clone(), "etcd", opts, &stop).await?;
    eprint!("{}", loaded.table());

    let status_addrs = match opts.pd.first() {
        Some(pd) => server_metrics::store_status_addrs(pd, opts.timeout)
            .await
            .unwrap_or_else(|e| {
                eprintln!("cannot find the stores' status addresses ({e}); no stage breakdown");
                vec![]
            }),
        None => vec![],
    };
    let mut cells = Vec::new();
    for w in &workloads {
        for &clients in &opts.clients {
            let before = snapshot(&status_addrs, opts.timeout).await;
            let a = run_one(atoll.clone(), &atoll_label, w, clients, opts, &stop).await?;
            let after = snapshot(&status_addrs, opts.timeout).await;
            let atoll_stages = match (before, after) {
                (Some(b), Some(a)) => server_metrics::stages(&b, &a),
                _ => vec![],
            };
            let e = run_one(etcd.clone(), "etcd", w, clients, opts, &stop).await?;
            let cell = CompareCell {
                workload: w.name.clone(),
                clients,
                atoll: a,
                etcd: e,
                atoll_stages,
            };
            eprintln!(
                "cell {} x {}: atoll {:.0} ops/s p99 {} ms ({} errors) | etcd {:.0} ops/s p99 {} ms ({} errors)",
                cell.workload,
                clients,
                cell.atoll.ops_per_sec,
                ms(cell.atoll.latency_us.p99_us),
                cell.atoll.errors,
                cell.etcd.ops_per_sec,
                ms(cell.etcd.latency_us.p99_us),
                cell.etcd.errors
            );
            if !cell.atoll_stages.is_empty() {
                eprintln!("  atoll stages: {}", server_metrics::one_line(&cell.atoll_stages));
            }
            cells.push(cell);
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
        }
    }
    Ok(Comparison {
        notes: opts.notes.clone(),
        limits,
        cells,
    })
}
