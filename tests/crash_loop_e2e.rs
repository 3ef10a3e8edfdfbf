//! Crash loop against the real binaries: a 3-node cluster and PD, `kill -9` of one process at a
//! time (a node most cycles, PD every fifth), a short downtime, a restart from the same data
//! directory, and the next cycle once everything serves again — while `tikv-client` writes raw
//! keys and transactions the whole time.
//!
//! What must hold at the end (and, for the bank, in every snapshot taken on the way):
//! - every acknowledged raw write reads back with its value; a write that returned an error may
//!   be absent, but if present it has the value written; nothing never written appears;
//! - every committed transaction is fully visible, a transaction whose commit failed is all or
//!   nothing, one that never reached commit is invisible;
//! - the bank's accounts always add up, and each balance is exactly what the visible transfer
//!   receipts (written in the same transactions) say it must be;
//! - every process is running and a fresh client can write and read.
//!
//! `ATOLL_CRASH_CYCLES` sets the number of cycles (default 20; `make crash-loop` runs 100),
//! `ATOLL_CRASH_SEED` the seed of every random choice (victim, downtime, transfers).
//! Writers never retry a key whose write failed: every attempt writes keys of its own, so an
//! ambiguous outcome can never be confused with a later acknowledged one.

#[path = "crash_loop/bank.rs"]
mod bank;
#[path = "crash_loop/checks.rs"]
mod checks;
mod common;
#[path = "crash_loop/txn.rs"]
mod txn;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{wait_ok, wait_until, Cluster, ClusterConfig, PRESPLIT_REGIONS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;
use tikv_client::transaction::ResolveLocksOptions;
use tikv_client::{CheckLevel, RawClient, Snapshot, TransactionClient, TransactionOptions};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use bank::*;
use checks::*;
use txn::*;

const DEFAULT_CYCLES: u32 = 20;
const DEFAULT_SEED: u64 = 0xA7011;
/// Every `PD_EVERY`-th cycle kills PD instead of a node.
const PD_EVERY: u32 = 5;
/// Downtime of a killed process, milliseconds (seeded).
const DOWNTIME_MS: std::ops::RangeInclusive<u64> = 1000..=3000;
/// Bound for the cluster to serve again after a restart, and for the end checks' reads.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a writer to finish its last operation once told to stop.
const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(180);

/// Region heartbeats every second, so that PD's view (leaders, pending peers) is fresh.
const FAST_HEARTBEATS: &str =
    "[raftstore]\npd-heartbeat-tick-interval = \"1s\"\npd-store-heartbeat-tick-interval = \"1s\"\n";

/// API V1 key prefixes in three different regions of a fresh cluster (regions 1, 3 and 5).
const PREFIXES: [&str; 3] = ["a", "s", "y"];

const ACCOUNTS: usize = 9;
const INITIAL: i64 = 1000;
const GROUP_KEYS: usize = 4;
const RAW_BATCH: usize = 8;
/// Transactional writers: bank workers `0..BANK_WORKERS`, then the group writer.
const BANK_WORKERS: usize = 2;
const GROUP_WRITER: usize = BANK_WORKERS;
const TXN_WRITERS: usize = BANK_WORKERS + 1;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn key_string(k: tikv_client::Key) -> String {
    String::from_utf8_lossy(&Vec::<u8>::from(k)).into_owned()
}

// ---------------------------------------------------------------------------------------------
// What the writers did
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The client got success.
    Acked,
    /// The write (or commit) returned an error: it may or may not have happened.
    Unknown(String),
    /// A transaction that failed before its commit started: nothing of it was written.
    Aborted,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Acked => "acknowledged",
            Outcome::Unknown(_) => "unknown-outcome",
            Outcome::Aborted => "aborted",
        }
    }
}

/// One attempt of a writer: the pairs it wrote together, and how it ended.
#[derive(Debug, Clone)]
struct Record {
    writer: String,
    /// The cycle during which the attempt started (0: before the first kill).
    cycle: u32,
    pairs: Vec<(String, Vec<u8>)>,
    outcome: Outcome,
}

/// State shared by the loop, the writers and the checker.
struct Shared {
    seed: u64,
    cycle: AtomicU32,
    stop: AtomicBool,
    raw_acks: AtomicU64,
    txn_acks: AtomicU64,
    /// Attempts started by each transactional writer (`TXN_WRITERS`), for the lock sweeper.
    txn_attempts: Vec<AtomicU64>,
    /// The first consistency violation a background task saw.
    violation: Mutex<Option<String>>,
}

impl Shared {
    fn cycle(&self) -> u32 {
        self.cycle.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn report(&self, msg: String) {
        let mut v = self.violation.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_none() {
            eprintln!("VIOLATION: {msg}");
            *v = Some(msg);
        }
    }

    fn violation(&self) -> Option<String> {
        self.violation.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Pause after a failed operation, so a writer does not spin against a node that is down.
async fn backoff() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------------------------------------
// Raw writers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

struct RawWriter {
    name: &'static str,
    api: Api,
    prefix: &'static str,
    /// Keys per attempt: 1 is a `put`, more a `batch_put` (all in one region).
    batch: usize,
}

const RAW_WRITERS: [RawWriter; 3] = [
    RawWriter {
        name: "raw-v1-put",
        api: Api::V1,
        prefix: "a",
        batch: 1,
    },
    RawWriter {
        name: "raw-v1-batch",
        api: Api::V1,
        prefix: "y",
        batch: RAW_BATCH,
    },
    RawWriter {
        name: "raw-v2-put",
        api: Api::V2,
        prefix: "v2",
        batch: 1,
    },
];

fn raw_key(w: &RawWriter, i: u64, j: usize) -> String {
    format!("{}/cl/raw/{}/{i:07}/{j}", w.prefix, w.name)
}

fn raw_pairs(w: &RawWriter, i: u64, cycle: u32) -> Vec<(String, Vec<u8>)> {
    (0..w.batch)
        .map(|j| {
            let k = raw_key(w, i, j);
            let v = format!("{}#{i}#{j}#c{cycle}", w.name).into_bytes();
            (k, v)
        })
        .collect()
}

/// Writes attempt after attempt (each to keys of its own) until stopped.
fn spawn_raw_writer(
    w: &'static RawWriter,
    client: RawClient,
    shared: Arc<Shared>,
) -> JoinHandle<Vec<Record>> {
    tokio::spawn(async move {
        let mut records = Vec::new();
        let mut i = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            let pairs = raw_pairs(w, i, cycle);
            let result = if w.batch == 1 {
                let (k, v) = pairs[0].clone();
                client.put(k, v).await
            } else {
                client.batch_put(pairs.clone()).await
            };
            let outcome = match result {
                Ok(()) => {
                    shared.raw_acks.fetch_add(1, Ordering::SeqCst);
                    Outcome::Acked
                }
                Err(e) => Outcome::Unknown(format!("{e:?}")),
            };
            let failed = outcome != Outcome::Acked;
            records.push(Record {
                writer: w.name.to_owned(),
                cycle,
                pairs,
                outcome,
            });
            i += 1;
            if failed {
                backoff().await;
            }
        }
        records
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting for the cluster
// ---------------------------------------------------------------------------------------------

fn peer_stores(region: &Json) -> Vec<u64> {
    let mut v: Vec<u64> = region["peers"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["store_id"].as_u64()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v.dedup();
    v
}

/// Every region has three replicas on three stores, a leader, and no peer PD calls pending.
async fn fully_replicated(cluster: &Cluster) -> bool {
    let regions = cluster.pd_regions().await;
    regions.len() >= PRESPLIT_REGIONS
        && regions.iter().all(|r| {
            peer_stores(r).len() == 3
                && r["leader"]["id"].as_u64().unwrap_or(0) != 0
                && r["pending_peers"].as_array().is_none_or(|p| p.is_empty())
        })
}

/// PD lists node `i` as `Up` with a start time after `killed_at` (unix seconds): the restarted
/// process registered itself.
async fn store_restarted(cluster: &Cluster, i: usize, killed_at: i64) -> bool {
    let Ok(stores) = cluster.pd_get("/pd/api/v1/stores").await else {
        return false;
    };
    let addr = cluster.kv_addr(i);
    stores["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["store"])
        .find(|s| s["address"].as_str() == Some(addr.as_str()))
        .is_some_and(|s| {
            s["state_name"].as_str() == Some("Up") && s["start_timestamp"].as_i64().unwrap_or(0) > killed_at
        })
}

/// Prints where the loop was if the test panics (before the harness prints the log tails).
struct FailureContext {
    seed: u64,
    cycles: u32,
    step: Cell<String>,
}

impl Drop for FailureContext {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash loop FAILED (seed {}, {} cycles; rerun with ATOLL_CRASH_SEED={} \
                 ATOLL_CRASH_CYCLES={}); last step: {}",
                self.seed,
                self.cycles,
                self.seed,
                self.cycles,
                self.step.take()
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Victim {
    Pd,
    Kv(usize),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_kill_9_nodes_and_pd_under_raw_and_txn_writes() {
    let cycles: u32 = env_or("ATOLL_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed: u64 = env_or("ATOLL_CRASH_SEED", DEFAULT_SEED);
    eprintln!("crash loop: seed {seed}, {cycles} cycles (ATOLL_CRASH_SEED / ATOLL_CRASH_CYCLES)");
    let ctx = FailureContext {
        seed,
        cycles,
        step: Cell::new("starting the cluster".into()),
    };
    let started = Instant::now();

    let mut cluster = Cluster::start_with(
        3,
        ClusterConfig {
            kv: FAST_HEARTBEATS.into(),
            ..Default::default()
        },
    )
    .await;
    // Declared after the cluster: dropped first, so the context precedes the log tails.
    let ctx = ctx;
    wait_until(
        RECOVER_TIMEOUT,
        "every region has three caught-up replicas",
        || fully_replicated(&cluster),
    )
    .await;

    let txn = cluster.txn_v1().await;
    let init: Vec<(String, String)> = (0..ACCOUNTS).map(|i| (account(i), INITIAL.to_string())).collect();
    wait_ok(RECOVER_TIMEOUT, "the bank's accounts are created", || {
        let (txn, init) = (txn.clone(), init.clone());
        async move {
            let mut t = txn.begin_with_options(txn_options(false)).await?;
            for (k, v) in init {
                t.put(k, v).await?;
            }
            t.commit().await
        }
    })
    .await;

    let shared = Arc::new(Shared {
        seed,
        cycle: AtomicU32::new(0),
        stop: AtomicBool::new(false),
        raw_acks: AtomicU64::new(0),
        txn_acks: AtomicU64::new(0),
        txn_attempts: (0..TXN_WRITERS).map(|_| AtomicU64::new(0)).collect(),
        violation: Mutex::new(None),
    });
    let mut raw_handles = Vec::new();
    for w in &RAW_WRITERS {
        let client = match w.api {
            Api::V1 => cluster.raw_v1().await,
            Api::V2 => cluster.raw_v2().await,
        };
        raw_handles.push((w, spawn_raw_writer(w, client, shared.clone())));
    }
    let mut bank_handles = Vec::new();
    for w in 0..BANK_WORKERS {
        bank_handles.push(spawn_bank_worker(w, cluster.txn_v1().await, shared.clone()));
    }
    let group_handle = spawn_group_writer(cluster.txn_v1().await, shared.clone());
    let checker = spawn_checker(cluster.txn_v1().await, shared.clone());
    let sweeper = spawn_sweeper(cluster.txn_v1().await, shared.clone());

    // Writers make progress: after the start and after every restart.
    let progress = |what: String| {
        let shared = shared.clone();
        let (raw0, txn0) = (
            shared.raw_acks.load(Ordering::SeqCst),
            shared.txn_acks.load(Ordering::SeqCst),
        );
        async move {
            wait_until(RECOVER_TIMEOUT, &what, || {
                let shared = shared.clone();
                async move {
                    shared.raw_acks.load(Ordering::SeqCst) >= raw0 + 20
                        && shared.txn_acks.load(Ordering::SeqCst) >= txn0 + 3
                }
            })
            .await
        }
    };
    progress(format!(
        "seed {seed}: writers make progress before the first kill"
    ))
    .await;
    eprintln!(
        "crash loop: cluster and writers up after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut rng = StdRng::seed_from_u64(seed);
    let loop_started = Instant::now();
    for c in 1..=cycles {
        let cycle_started = Instant::now();
        shared.cycle.store(c, Ordering::SeqCst);
        if let Some(v) = shared.violation() {
            panic!("{v}");
        }
        let victim = if c % PD_EVERY == 0 {
            Victim::Pd
        } else {
            Victim::Kv(rng.gen_range(0..cluster.kv_count()))
        };
        let down = Duration::from_millis(rng.gen_range(DOWNTIME_MS));
        let at = format!("seed {seed}, cycle {c}/{cycles}, victim {victim:?}, down {down:?}");
        ctx.step.set(format!("{at}: kill -9"));
        match victim {
            Victim::Kv(i) => {
                let killed_at = unix_secs();
                cluster.kill_kv(i);
                // The deliberate downtime of the killed node.
                tokio::time::sleep(down).await;
                ctx.step.set(format!("{at}: restarting kv-{i}"));
                cluster.restart_kv(i).await;
                ctx.step.set(format!("{at}: kv-{i} registers with PD again"));
                wait_until(
                    RECOVER_TIMEOUT,
                    &format!("{at}: PD lists restarted kv-{i} as Up"),
                    || store_restarted(&cluster, i, killed_at),
                )
                .await;
            }
            Victim::Pd => {
                cluster.stop_pd(); // SIGKILL
                tokio::time::sleep(down).await;
                ctx.step.set(format!("{at}: restarting PD"));
                cluster.restart_pd().await;
            }
        }
        ctx.step.set(format!("{at}: waiting until the cluster serves"));
        wait_until(
            RECOVER_TIMEOUT,
            &format!("{at}: every region has a leader and three caught-up replicas"),
            || fully_replicated(&cluster),
        )
        .await;
        progress(format!("{at}: writers make progress after the restart")).await;
        eprintln!(
            "cycle {c}/{cycles}: {victim:?} down {down:?}, serving again after {:.1}s \
             (raw acks {}, txn acks {})",
            cycle_started.elapsed().as_secs_f64(),
            shared.raw_acks.load(Ordering::SeqCst),
            shared.txn_acks.load(Ordering::SeqCst),
        );
    }
    let loop_time = loop_started.elapsed();

    ctx.step
        .set(format!("seed {seed}: stopping the writers after {cycles} cycles"));
    shared.stop.store(true, Ordering::SeqCst);
    let mut raw_records = Vec::new();
    for (w, h) in raw_handles {
        raw_records.push((w, join_writer(h, w.name, seed).await));
    }
    let mut bank_records = Vec::new();
    for (w, h) in bank_handles.into_iter().enumerate() {
        bank_records.extend(join_writer(h, &format!("bank worker {w}"), seed).await);
    }
    let group_records = join_writer(group_handle, "group writer", seed).await;
    let snapshots = join_writer(checker, "checker", seed).await;
    let mut swept = join_writer(sweeper, "lock sweeper", seed).await;
    if let Some(v) = shared.violation() {
        panic!("{v}");
    }

    ctx.step.set(format!("seed {seed}: end checks"));
    for i in 0..cluster.kv_count() {
        assert!(
            cluster.kv_running(i),
            "seed {seed}: kv-{i} is not running at the end"
        );
    }
    assert!(cluster.pd_running(), "seed {seed}: PD is not running at the end");
    cluster.wait_ready().await;

    let raw_v1 = cluster.raw_v1().await;
    let raw_v2 = cluster.raw_v2().await;
    for (w, records) in &raw_records {
        eprintln!("{}: {}", w.name, summary(records));
        let client = match w.api {
            Api::V1 => &raw_v1,
            Api::V2 => &raw_v2,
        };
        verify_raw(client, w, records, seed).await;
    }
    eprintln!(
        "bank: {}; {snapshots} snapshots checked during the loop",
        summary(&bank_records)
    );
    eprintln!("groups: {}", summary(&group_records));
    let fresh_txn = cluster.txn_v1().await;
    // Every transaction is over now: resolve the locks the interrupted ones left.
    swept += wait_ok(RECOVER_TIMEOUT, "the final lock sweep", || async {
        let ts = fresh_txn
            .current_timestamp()
            .await
            .map_err(|e| format!("{e:?}"))?;
        sweep_locks(&fresh_txn, &ts).await
    })
    .await;
    eprintln!("lock sweeper: {swept} orphaned locks resolved");
    verify_txns(&fresh_txn, &bank_records, &group_records, seed).await;

    // A fresh client writes and reads, raw and transactional.
    ctx.step.set(format!("seed {seed}: final write and read"));
    raw_v1
        .put("s/cl/final".to_owned(), b"final".to_vec())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: final raw put: {e:?}"));
    assert_eq!(
        raw_v1.get("s/cl/final".to_owned()).await.expect("final raw get"),
        Some(b"final".to_vec()),
        "seed {seed}: final raw write not readable"
    );
    let mut t = fresh_txn
        .begin_optimistic()
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: final begin: {e:?}"));
    for p in PREFIXES {
        t.put(format!("{p}/cl/final"), b"final".to_vec())
            .await
            .expect("buffered put");
    }
    t.commit()
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: final commit: {e:?}"));
    let ts = fresh_txn.current_timestamp().await.expect("tso");
    let mut snap = fresh_txn.snapshot(ts, TransactionOptions::new_optimistic());
    let got = snap
        .batch_get(PREFIXES.map(|p| format!("{p}/cl/final")))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: final snapshot read: {e:?}"))
        .count();
    assert_eq!(
        got,
        PREFIXES.len(),
        "seed {seed}: final transaction not fully readable"
    );

    eprintln!(
        "crash loop passed: seed {seed}, {cycles} cycles in {:.1}s ({:.1}s in all)",
        loop_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
