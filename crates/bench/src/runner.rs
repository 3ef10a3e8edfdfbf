//! The load phase and the run phase: `threads` workers (tokio tasks, each one client in a
//! closed loop) drive a [`Driver`], record every sample, and a progress task prints ops/s and
//! p99 of the last interval.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::Driver;
use crate::stats::{rate, LatencyHistogram, Outcome, Recorder, Sample};
use crate::workload::{OpGenerator, Records, ValuePool, WorkloadSpec};
use crate::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Load,
    Run,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Run => "run",
        }
    }
}

/// What both phases share.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Names the target in output, e.g. `atoll raw v2` or `etcd`.
    pub label: String,
    pub spec: WorkloadSpec,
    pub threads: usize,
    pub value_size: usize,
    pub seed: u64,
    /// Print a progress line this often; `None` for silence.
    pub progress: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub records: u64,
    /// Records per request (raw batch put) or per transaction.
    pub batch: usize,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop after this many units in total (a unit is one op, or one transaction).
    pub operations: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Ops per unit: 1 in raw mode; N ops per transaction in txn mode.
    pub ops_per_unit: usize,
}

/// The outcome of one phase.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub label: String,
    pub phase: Phase,
    pub workload: String,
    pub threads: usize,
    pub elapsed: Duration,
    pub stats: Recorder,
}

/// What a worker shares with the progress printer.
#[derive(Default)]
struct WorkerStats {
    total: Recorder,
    interval: LatencyHistogram,
    interval_ops: u64,
    interval_errors: u64,
}

type Shared = Arc<Mutex<WorkerStats>>;

fn lock(s: &Shared) -> MutexGuard<'_, WorkerStats> {
    // A worker that panicked mid-record leaves usable counters; keep going.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl WorkerStats {
    fn record(&mut self, samples: &[Sample]) {
        for s in samples {
            self.total.record(s);
            if s.kind.is_workload_op() {
                match s.outcome {
                    Outcome::Ok | Outcome::NotFound => {
                        self.interval.record(s.latency);
                        self.interval_ops += 1;
                    }
                    Outcome::Error(_) => self.interval_errors += 1,
                }
            } else if s.kind == crate::stats::OpKind::Begin || s.kind == crate::stats::OpKind::Commit {
                if let Outcome::Error(_) = s.outcome {
                    self.interval_errors += 1;
                }
            }
        }
    }
}

/// Prints a progress line per interval: to a terminal in place, elsewhere one line each.
struct Progress {
    tty: bool,
    title: String,
    started: Instant,
}

impl Progress {
    fn print(&self, workers: &[Shared], interval: Duration, total_ops: &mut u64, total_errors: &mut u64) {
        let mut h = LatencyHistogram::new();
        let (mut ops, mut errors) = (0, 0);
        for w in workers {
            let mut w = lock(w);
            h.merge(&w.interval);
            w.interval.reset();
            ops += w.interval_ops;
            errors += w.interval_errors;
            w.interval_ops = 0;
            w.interval_errors = 0;
        }
        *total_ops += ops;
        *total_errors += errors;
        let line = format!(
            "[{:>6.1}s] {}: {:>9.0} ops/s  p99 {:>8.2} ms  errors {} (total ops {}, errors {})",
            self.started.elapsed().as_secs_f64(),
            self.title,
            rate(ops, interval),
            h.quantile_us(0.99) as f64 / 1000.0,
            errors,
            total_ops,
            total_errors
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Spawns the progress printer; it stops when `done` is set.
fn spawn_progress(
    every: Option<Duration>,
    title: String,
    workers: Vec<Shared>,
    done: Arc<AtomicBool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = every.filter(|d| !d.is_zero())?;
    Some(tokio::spawn(async move {
        let p = Progress {
            tty: std::io::stderr().is_terminal(),
            title,
            started: Instant::now(),
        };
        let (mut total_ops, mut total_errors) = (0, 0);
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            if done.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            p.print(&workers, now - last, &mut total_ops, &mut total_errors);
            last = now;
        }
        p.finish();
    }))
}

/// Runs `threads` copies of `work`, each with its own stats, plus the progress printer; returns
/// the merged stats and the elapsed time.
async fn drive<F, Fut>(common: &CommonOptions, phase: Phase, work: F) -> Result<PhaseResult, BenchError>
where
    F: Fn(usize, Shared) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let threads = common.threads.max(1);
    let workers: Vec<Shared> = (0..threads).map(|_| Shared::default()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let title = format!("{} {} {}", common.label, common.spec.name, phase.name());
    let progress = spawn_progress(common.progress, title, workers.clone(), done.clone());
    let start = Instant::now();
    let handles: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| tokio::spawn(work(i, w.clone())))
        .collect();
    let mut panicked = None;
    for h in handles {
        if let Err(e) = h.await {
            panicked = Some(e.to_string());
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Release);
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    if let Some(msg) = panicked {
        return Err(BenchError::Transport(format!("a worker failed: {msg}")));
    }
    let mut stats = Recorder::default();
    for w in &workers {
        stats.merge(&lock(w).total);
    }
    Ok(PhaseResult {
        label: common.label.clone(),
        phase,
        workload: common.spec.name.clone(),
        threads,
        elapsed,
        stats,
    })
}

fn worker_seed(seed: u64, phase: Phase, worker: usize) -> u64 {
    let salt = match phase {
        Phase::Load => 0x4c4f_4144,
        Phase::Run => 0x5255_4e00,
    };
    seed ^ salt ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Inserts records `0..load.records` in batches of `load.batch`, spread over the workers.
pub async fn load<D: Driver>(
    driver: Arc<D>,
    records: Arc<Records>,
    common: &CommonOptions,
    load: &LoadOptions,
    stop: Arc<AtomicBool>,
) -> Result<PhaseResult, BenchError> {
    let batch = load.batch.max(1) as u64;
    let total = load.records;
    let chunks = total.div_ceil(batch);
    let next_chunk = Arc::new(AtomicU64::new(0));
    let values = ValuePool::new(common.value_size, common.seed);
    drive(common, Phase::Load, |i, stats| {
        let driver = driver.clone();
        let next_chunk = next_chunk.clone();
        let stop = stop.clone();
        let generator = OpGenerator::new(
            &common.spec,
            total,
            records.clone(),
            values.clone(),
            worker_seed(common.seed, Phase::Load, i),
        );
        async move {
            let Some(mut generator) = generator else {
                return;
            };
            let mut samples = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let chunk = next_chunk.fetch_add(1, Ordering::AcqRel);
                if chunk >= chunks {
                    break;
                }
                let range = chunk * batch..((chunk + 1) * batch).min(total);
                let unit = generator.load_ops(range);
                samples.clear();
                driver.execute(&unit, &mut samples).await;
                lock(&stats).record(&samples);
            }
        }
    })
    .await
}

/// Runs the workload until `run.operations` units are done or `run.duration` has passed (or
/// `stop` is set), whichever comes first.
pub async fn run<D: Driver>(
    driver: Arc<D>,
    records: Arc<Records>,
    common: &CommonOptions,
    run: &RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<PhaseResult, BenchError> {
    if run.operations.is_none() && run.duration.is_none() {
        return Err(BenchError::Config("give an operation count or a duration".into()));
    }
    let spec = &common.spec;
    // Zipfian choosers are sized for the records plus the inserts expected (as YCSB does).
    let expected_inserts = match run.operations {
        Some(n) => (n as f64 * run.ops_per_unit as f64 * spec.mix.insert * 2.0) as u64,
        None => 0,
    };
    let expected = records.inserted() + expected_inserts;
    if crate::workload::OpChooser::new(&spec.mix).is_none() {
        return Err(BenchError::Config(format!(
            "workload {} has no operations",
            spec.name
        )));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = run.duration.map(|d| Instant::now() + d);
    let values = ValuePool::new(common.value_size, common.seed.wrapping_add(1));
    let per_unit = run.ops_per_unit.max(1);
    drive(common, Phase::Run, |i, stats| {
        let driver = driver.clone();
        let records = records.clone();
        let issued = issued.clone();
        let stop = stop.clone();
        let budget = run.operations;
        let generator = OpGenerator::new(
            spec,
            expected,
            records.clone(),
            values.clone(),
            worker_seed(common.seed, Phase::Run, i),
        );
        async move {
            let Some(mut generator) = generator else {
                return;
            };
            let mut samples = Vec::new();
            let mut unit = Vec::with_capacity(per_unit);
            loop {
                if stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget.is_some_and(|max| issued.fetch_add(1, Ordering::AcqRel) >= max) {
                    break;
                }
                unit.clear();
                unit.extend((0..per_unit).map(|_| generator.next_op()));
                samples.clear();
                driver.execute(&unit, &mut samples).await;
                let failed = samples.iter().any(|s| matches!(s.outcome, Outcome::Error(_)));
                if !failed {
                    for op in &unit {
                        if let crate::workload::Op::Insert { record, .. } = op {
                            records.ack(*record);
                        }
                    }
                }
                lock(&stats).record(&samples);
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::generator::KeyOrder;
    use crate::stats::OpKind;
    use crate::workload::Op;

    /// An in-memory driver: no timing is asserted, only what was done.
    #[derive(Default)]
    struct MemDriver {
        data: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
        fail_updates: bool,
    }

    impl Driver for MemDriver {
        async fn execute(&self, unit: &[Op], out: &mut Vec<Sample>) {
            let mut data = self.data.lock().unwrap();
            if crate::driver::is_insert_batch(unit) {
                for op in unit {
                    if let Op::Insert { key, value, .. } = op {
                        data.insert(key.clone(), value.clone());
                    }
                }
                out.push(Sample {
                    kind: OpKind::BatchInsert,
                    latency: Duration::from_micros(10),
                    outcome: Outcome::Ok,
                });
                return;
            }
            for op in unit {
                let outcome = match op {
                    Op::Read { key } => match data.get(key) {
                        Some(_) => Outcome::Ok,
                        None => Outcome::NotFound,
                    },
                    Op::Update { .. } if self.fail_updates => Outcome::Error("refused".into()),
                    Op::Update { key, value } | Op::Insert { key, value, .. } => {
                        data.insert(key.clone(), value.clone());
                        Outcome::Ok
                    }
                    _ => Outcome::Ok,
                };
                out.push(Sample {
                    kind: crate::driver::kind_of(op),
                    latency: Duration::from_micros(100),
                    outcome,
                });
            }
        }
    }

    fn common(workload: &str, threads: usize) -> CommonOptions {
        CommonOptions {
            label: "mem".into(),
            spec: WorkloadSpec::named(workload).unwrap(),
            threads,
            value_size: 16,
            seed: 1,
            progress: None,
        }
    }

    #[tokio::test]
    async fn load_then_run_counts_every_op() {
        let driver = Arc::new(MemDriver::default());
        let records = Arc::new(Records::new(1000, KeyOrder::Hashed));
        let stop = Arc::new(AtomicBool::new(false));
        let c = common("a", 4);
        let loaded = load(
            driver.clone(),
            records.clone(),
            &c,
            &LoadOptions {
                records: 1000,
                batch: 64,
            },
            stop.clone(),
        )
        .await
        .unwrap();
        assert_eq!(driver.data.lock().unwrap().len(), 1000);
        // 1000 records in batches of 64: 16 batches.
        assert_eq!(loaded.stats.kinds[&OpKind::BatchInsert].latency.count(), 16);

        let r = run(
            driver.clone(),
            records,
            &c,
            &RunOptions {
                operations: Some(500),
                duration: None,
                ops_per_unit: 1,
            },
            stop,
        )
        .await
        .unwrap();
        assert_eq!(r.stats.workload_ops(), 500);
        assert_eq!(r.stats.errors(), 0);
        // Every read found its record: all were loaded.
        assert_eq!(r.stats.kinds[&OpKind::Read].not_found, 0);
        assert_eq!(r.threads, 4);
        assert_eq!(r.phase, Phase::Run);
    }

    #[tokio::test]
    async fn errors_are_counted_not_retried() {
        let driver = Arc::new(MemDriver {
            fail_updates: true,
            ..Default::default()
        });
        let records = Arc::new(Records::new(100, KeyOrder::Hashed));
        let r = run(
            driver,
            records,
            &common("put", 2),
            &RunOptions {
                operations: Some(50),
                duration: None,
                ops_per_unit: 2,
            },
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
        // 50 units of 2 ops, each failing once: 100 errors, no successes.
        assert_eq!(r.stats.errors(), 100);
        assert_eq!(r.stats.workload_ops(), 0);
        assert_eq!(r.stats.errors[&(OpKind::Update, "refused".to_owned())], 100);
    }

    #[tokio::test]
    async fn inserts_grow_the_readable_records() {
        let driver = Arc::new(MemDriver::default());
        let records = Arc::new(Records::new(0, KeyOrder::Ordered));
        let c = common("d", 1);
        load(
            driver.clone(),
            records.clone(),
            &c,
            &LoadOptions { records: 0, batch: 8 },
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
        let run_opts = RunOptions {
            operations: Some(2000),
            duration: None,
            ops_per_unit: 1,
        };
        let r = run(
            driver,
            records.clone(),
            &c,
            &run_opts,
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
        let inserts = r.stats.kinds[&OpKind::Insert].latency.count();
        assert!(inserts > 50);
        assert_eq!(records.inserted(), inserts);
    }

    #[tokio::test]
    async fn a_run_needs_a_limit() {
        let r = run(
            Arc::new(MemDriver::default()),
            Arc::new(Records::new(1, KeyOrder::Hashed)),
            &common("a", 1),
            &RunOptions {
                operations: None,
                duration: None,
                ops_per_unit: 1,
            },
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        assert!(matches!(r, Err(BenchError::Config(_))));
    }

    #[test]
    fn worker_seeds_differ() {
        let a = worker_seed(1, Phase::Run, 0);
        assert_ne!(a, worker_seed(1, Phase::Run, 1));
        assert_ne!(a, worker_seed(1, Phase::Load, 0));
        assert_eq!(a, worker_seed(1, Phase::Run, 0));
    }
}
