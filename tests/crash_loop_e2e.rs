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

mod common;

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
// The bank: transfers that write a receipt in the same transaction
// ---------------------------------------------------------------------------------------------

fn account(i: usize) -> String {
    format!("{}/cl/acct/{i:02}", PREFIXES[i % 3])
}

fn receipt(w: usize, i: u64) -> String {
    format!("{}/cl/rcpt/{w}/{i:07}", PREFIXES[(i % 3) as usize])
}

fn receipt_value(from: usize, to: usize, amount: i64) -> Vec<u8> {
    format!("{from}:{to}:{amount}").into_bytes()
}

/// `(from, to, amount)` of a receipt's value.
fn parse_receipt(key: &str, v: &[u8]) -> Result<(usize, usize, i64), String> {
    let s = String::from_utf8_lossy(v);
    let parts: Vec<&str> = s.split(':').collect();
    let parsed = match parts.as_slice() {
        [f, t, a] => f
            .parse()
            .ok()
            .zip(t.parse().ok())
            .zip(a.parse().ok())
            .map(|((f, t), a)| (f, t, a)),
        _ => None,
    };
    match parsed {
        Some((f, t, a)) if f < ACCOUNTS && t < ACCOUNTS => Ok((f, t, a)),
        _ => Err(format!("receipt {key} has a malformed value {s:?}")),
    }
}

fn parse_balance(key: &str, v: &[u8]) -> Result<i64, String> {
    String::from_utf8_lossy(v)
        .parse()
        .map_err(|_| format!("account {key} holds {:?}", String::from_utf8_lossy(v)))
}

fn txn_options(pessimistic: bool) -> TransactionOptions {
    let opts = if pessimistic {
        TransactionOptions::new_pessimistic()
    } else {
        TransactionOptions::new_optimistic()
    };
    // A transaction whose commit failed is left as it is (see `transfer`); never panic on drop.
    opts.drop_check(CheckLevel::None)
}

/// One transfer of `amount` from `from` to `to` plus its receipt, in one transaction.
///
/// A transaction whose commit returned an error is not rolled back: its primary may already be
/// committed, and rolling back the other keys would make it half-visible through no fault of
/// the server. Its locks are left to the lock sweeper (and to the readers that meet them).
async fn transfer(
    client: &TransactionClient,
    pessimistic: bool,
    (from, to, amount): (usize, usize, i64),
    receipt: (String, Vec<u8>),
) -> Outcome {
    let mut txn = match client.begin_with_options(txn_options(pessimistic)).await {
        Ok(t) => t,
        Err(_) => return Outcome::Aborted,
    };
    let body = async {
        let (a, b) = if pessimistic {
            (
                txn.get_for_update(account(from)).await?,
                txn.get_for_update(account(to)).await?,
            )
        } else {
            (txn.get(account(from)).await?, txn.get(account(to)).await?)
        };
        let (Some(a), Some(b)) = (a, b) else {
            // Reported by the checker; here just do not transfer.
            return Ok(false);
        };
        let (Ok(a), Ok(b)) = (parse_balance(&account(from), &a), parse_balance(&account(to), &b)) else {
            return Ok(false);
        };
        if a < amount {
            return Ok(false);
        }
        txn.put(account(from), (a - amount).to_string()).await?;
        txn.put(account(to), (b + amount).to_string()).await?;
        txn.put(receipt.0.clone(), receipt.1.clone()).await?;
        Ok::<bool, tikv_client::Error>(true)
    }
    .await;
    match body {
        Ok(true) => match txn.commit().await {
            Ok(_) => Outcome::Acked,
            Err(e) => Outcome::Unknown(format!("{e:?}")),
        },
        Ok(false) | Err(_) => {
            // Nothing was prewritten: a failed rollback only leaves (pessimistic) locks behind.
            let _ = txn.rollback().await;
            Outcome::Aborted
        }
    }
}

/// How long one transaction may take before the writer gives up on it (its outcome is then
/// unknown, as for any client that times out; the all-or-nothing checks cover it). Without this,
/// a client stuck on an orphaned lock (tikv-client 0.4 cannot always resolve one) kept a writer
/// from ever stopping.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

async fn within_txn_timeout(txn: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(TXN_TIMEOUT, txn)
        .await
        .unwrap_or_else(|_| Outcome::Unknown(format!("no answer within {TXN_TIMEOUT:?}")))
}

fn spawn_bank_worker(w: usize, client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<Vec<Record>> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(shared.seed ^ (0xBA4C << 8) ^ w as u64);
        let pessimistic = w % 2 == 1;
        let name = format!(
            "bank-{w}-{}",
            if pessimistic { "pessimistic" } else { "optimistic" }
        );
        let mut records = Vec::new();
        let mut i = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            shared.txn_attempts[w].fetch_add(1, Ordering::SeqCst);
            let from = rng.gen_range(0..ACCOUNTS);
            let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
            let amount = rng.gen_range(1..200);
            let r = (receipt(w, i), receipt_value(from, to, amount));
            let outcome =
                within_txn_timeout(transfer(&client, pessimistic, (from, to, amount), r.clone())).await;
            if outcome == Outcome::Acked {
                shared.txn_acks.fetch_add(1, Ordering::SeqCst);
            }
            let failed = outcome != Outcome::Acked;
            records.push(Record {
                writer: name.clone(),
                cycle,
                pairs: vec![r],
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

/// Balances and visible receipts at one snapshot.
struct BankView {
    balances: Vec<i64>,
    receipts: BTreeMap<String, Vec<u8>>,
}

async fn read_bank(snap: &mut Snapshot) -> Result<Result<BankView, String>, tikv_client::Error> {
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let got: HashMap<String, Vec<u8>> = snap
        .batch_get(keys.clone())
        .await?
        .map(|p| (key_string(p.0), p.1))
        .collect();
    let mut receipts = BTreeMap::new();
    for p in PREFIXES {
        let pairs = snap
            .scan(format!("{p}/cl/rcpt/")..format!("{p}/cl/rcpt0"), u32::MAX)
            .await?;
        receipts.extend(pairs.map(|p| (key_string(p.0), p.1)));
    }
    let mut balances = Vec::new();
    for k in &keys {
        match got.get(k) {
            Some(v) => match parse_balance(k, v) {
                Ok(b) => balances.push(b),
                Err(e) => return Ok(Err(e)),
            },
            None => return Ok(Err(format!("account {k} is missing"))),
        }
    }
    Ok(Ok(BankView { balances, receipts }))
}

/// The bank's invariants on one snapshot: each balance is the initial one plus the visible
/// receipts' transfers (so no transfer is half-visible), the total is constant, none negative.
fn check_bank(view: &BankView) -> Result<(), String> {
    let mut expected = vec![INITIAL; ACCOUNTS];
    for (k, v) in &view.receipts {
        let (from, to, amount) = parse_receipt(k, v)?;
        expected[from] -= amount;
        expected[to] += amount;
    }
    let total: i64 = view.balances.iter().sum();
    if total != INITIAL * ACCOUNTS as i64 {
        return Err(format!(
            "the total changed to {total}: balances {:?}",
            view.balances
        ));
    }
    if view.balances.iter().any(|b| *b < 0) {
        return Err(format!("a negative balance: {:?}", view.balances));
    }
    if view.balances != expected {
        let wrong: Vec<String> = (0..ACCOUNTS)
            .filter(|&i| view.balances[i] != expected[i])
            .map(|i| {
                format!(
                    "{} = {} but its {} visible receipts say {}",
                    account(i),
                    view.balances[i],
                    view.receipts.len(),
                    expected[i]
                )
            })
            .collect();
        return Err(format!(
            "balances disagree with the visible transfer receipts (a half-visible transfer): {}",
            wrong.join("; ")
        ));
    }
    Ok(())
}

/// Takes a snapshot every half second and checks the bank on it; reads that fail (a node or PD
/// is down, a lock cannot be resolved yet) are skipped. Returns the number of checked snapshots.
fn spawn_checker(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut checked = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            let read = async {
                let ts = client.current_timestamp().await?;
                let mut snap = client.snapshot(ts.clone(), TransactionOptions::new_optimistic());
                read_bank(&mut snap).await.map(|v| (ts, v))
            };
            if let Ok(Ok((ts, view))) = tokio::time::timeout(Duration::from_secs(20), read).await {
                let result = view.and_then(|v| check_bank(&v));
                if let Err(e) = result {
                    shared.report(format!(
                        "seed {}, cycle {cycle}: snapshot at ts {ts:?}: {e}",
                        shared.seed
                    ));
                    return checked;
                }
                checked += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        checked
    })
}

// ---------------------------------------------------------------------------------------------
// The lock sweeper
// ---------------------------------------------------------------------------------------------

/// Resolves every lock of this test's transactional keys at or below `safepoint` (rolling back
/// or committing each transaction as its primary says); returns how many it resolved.
async fn sweep_locks(
    client: &TransactionClient,
    safepoint: &tikv_client::Timestamp,
) -> Result<usize, String> {
    let mut resolved = 0;
    for p in PREFIXES {
        let r = client
            .cleanup_locks(
                format!("{p}/cl/")..format!("{p}/cl0"),
                safepoint,
                ResolveLocksOptions::default(),
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        if let Some(e) = r.key_error {
            return Err(format!("{e:?}"));
        }
        if let Some(e) = r.region_error {
            return Err(format!("{e:?}"));
        }
        resolved += r.resolved_locks;
    }
    Ok(resolved)
}

/// What a GC's lock resolution does, limited to transactions their writers are done with.
///
/// A transaction whose secondaries were prewritten but whose primary never was (its node died
/// in between) leaves locks that tikv-client 0.4's readers can never resolve: `CheckTxnStatus`
/// answers `TxnNotFound`, which the client should retry with `rollback_if_not_exist` once the
/// lock expired, but the error reaches it wrapped as `MultipleKeyErrors` and the retry never
/// happens (tikv/client-rust#543). `cleanup_locks` does resolve them, but it also rolls back
/// running transactions; so each round takes a timestamp, waits until every transactional
/// writer has begun a new attempt (all attempts that began before it are over: committed,
/// aborted or given up), and only then cleans up the locks at or below that timestamp.
/// Returns the number of resolved locks.
fn spawn_sweeper(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut resolved = 0;
        'rounds: while !shared.stopped() {
            let Ok(safepoint) = client.current_timestamp().await else {
                backoff().await;
                continue;
            };
            let started: Vec<u64> = shared
                .txn_attempts
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect();
            loop {
                if shared.stopped() {
                    // The final sweep runs after the writers have stopped.
                    break 'rounds;
                }
                let past = shared
                    .txn_attempts
                    .iter()
                    .zip(&started)
                    .all(|(a, s)| a.load(Ordering::SeqCst) > *s);
                if past {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(30), sweep_locks(&client, &safepoint)).await
            {
                resolved += n;
            }
            // One round a second is plenty.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        resolved
    })
}

// ---------------------------------------------------------------------------------------------
// Group transactions: N keys with the same value, three commit protocols
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Protocol {
    TwoPc,
    /// All keys in one region (tikv-client 0.4 asks every region for 1PC).
    OnePc,
}

// Async commit is left out: tikv-client 0.4 cannot resolve an async-commit transaction that a
// crash interrupted. Readers treat its locks as live forever, and `cleanup_locks` commits it at
// the other locks' min_commit_ts even when one secondary was never prewritten (it does not count
// the locks `CheckSecondaryLocks` returns), which would make it half-visible through the client.
fn protocol(i: u64) -> Protocol {
    match i % 2 {
        0 => Protocol::TwoPc,
        _ => Protocol::OnePc,
    }
}

fn group_pairs(i: u64, cycle: u32) -> Vec<(String, Vec<u8>)> {
    let proto = protocol(i);
    let value = format!("group#{i}#{proto:?}#c{cycle}").into_bytes();
    (0..GROUP_KEYS)
        .map(|j| {
            let prefix = match proto {
                Protocol::OnePc => PREFIXES[(i / 2 % 3) as usize],
                _ => PREFIXES[j % 3],
            };
            (format!("{prefix}/cl/grp/{i:07}/{j}"), value.clone())
        })
        .collect()
}

fn spawn_group_writer(client: TransactionClient, shared: Arc<Shared>) -> JoinHandle<Vec<Record>> {
    tokio::spawn(async move {
        let mut records = Vec::new();
        let mut i = 0u64;
        while !shared.stopped() {
            let cycle = shared.cycle();
            shared.txn_attempts[GROUP_WRITER].fetch_add(1, Ordering::SeqCst);
            let pairs = group_pairs(i, cycle);
            let opts = match protocol(i) {
                Protocol::TwoPc => txn_options(false),
                Protocol::OnePc => txn_options(false).try_one_pc(),
            };
            let outcome = within_txn_timeout(async {
                match client.begin_with_options(opts).await {
                    Err(_) => Outcome::Aborted,
                    Ok(mut txn) => {
                        let mut buffered = true;
                        for (k, v) in &pairs {
                            // Optimistic puts only fill the client's buffer.
                            buffered &= txn.put(k.clone(), v.clone()).await.is_ok();
                        }
                        if buffered {
                            match txn.commit().await {
                                Ok(_) => Outcome::Acked,
                                Err(e) => Outcome::Unknown(format!("{e:?}")),
                            }
                        } else {
                            let _ = txn.rollback().await;
                            Outcome::Aborted
                        }
                    }
                }
            })
            .await;
            if outcome == Outcome::Acked {
                shared.txn_acks.fetch_add(1, Ordering::SeqCst);
            }
            let failed = outcome != Outcome::Acked;
            records.push(Record {
                writer: format!("group-{:?}", protocol(i)),
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

// ---------------------------------------------------------------------------------------------
// The end checks
// ---------------------------------------------------------------------------------------------

/// The attempt that wrote a key and the value it wrote; `None`: the key was never written.
type Written<'a> = Option<(&'a Record, &'a Vec<u8>)>;

/// Every raw attempt against what the store holds now.
async fn verify_raw(client: &RawClient, w: &RawWriter, records: &[Record], seed: u64) {
    // Each key with the attempt that wrote it (and the value), or none: never written.
    let mut keys: Vec<(String, Written)> = Vec::new();
    for r in records {
        for (k, v) in &r.pairs {
            keys.push((k.clone(), Some((r, v))));
        }
    }
    // The attempt after the last one was never made.
    for j in 0..w.batch {
        keys.push((raw_key(w, records.len() as u64, j), None));
    }
    for chunk in keys.chunks(256) {
        let names: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let got: HashMap<String, Vec<u8>> = wait_ok(
            RECOVER_TIMEOUT,
            &format!("{}: batch_get of {} keys", w.name, names.len()),
            || client.batch_get(names.clone()),
        )
        .await
        .into_iter()
        .map(|p| (key_string(p.0), p.1))
        .collect();
        for (k, written) in chunk {
            let have = got.get(k);
            let Some((record, want)) = *written else {
                assert!(
                    have.is_none(),
                    "seed {seed}: {}: key {k} was never written but reads {have:?}",
                    w.name
                );
                continue;
            };
            let ok = match record.outcome {
                Outcome::Acked => have == Some(want),
                _ => have.is_none() || have == Some(want),
            };
            assert!(
                ok,
                "seed {seed}: {} raw write of {k} (cycle {}) {}: expected {:?}, read {:?}",
                w.name,
                record.cycle,
                match record.outcome {
                    Outcome::Acked => "was acknowledged but is lost or wrong",
                    _ => "failed, yet reads a value never written",
                },
                String::from_utf8_lossy(want),
                have.map(|v| String::from_utf8_lossy(v).into_owned()),
            );
        }
    }
}

/// Reads `keys` in one snapshot, in chunks.
async fn snapshot_get(
    snap: &mut Snapshot,
    keys: &[String],
) -> Result<HashMap<String, Vec<u8>>, tikv_client::Error> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(512) {
        out.extend(
            snap.batch_get(chunk.to_vec())
                .await?
                .map(|p| (key_string(p.0), p.1)),
        );
    }
    Ok(out)
}

/// Every transaction attempt against one snapshot: committed ones fully visible, unknown ones
/// all or nothing, aborted ones invisible; the bank balanced and matching its receipts.
async fn verify_txns(client: &TransactionClient, bank: &[Record], groups: &[Record], seed: u64) {
    let group_keys: Vec<String> = groups
        .iter()
        .flat_map(|r| r.pairs.iter().map(|(k, _)| k.clone()))
        .collect();
    let (view, group_view) = wait_ok(RECOVER_TIMEOUT, "a snapshot of every transaction", || {
        let group_keys = group_keys.clone();
        async move {
            let ts = client.current_timestamp().await?;
            let mut snap = client.snapshot(ts, TransactionOptions::new_optimistic());
            let view = read_bank(&mut snap).await?;
            let groups = snapshot_get(&mut snap, &group_keys).await?;
            Ok::<_, tikv_client::Error>((view, groups))
        }
    })
    .await;
    let view = view.unwrap_or_else(|e| panic!("seed {seed}: final snapshot: {e}"));

    // Receipts: one per transfer attempt, so each says whether that transfer is visible.
    let mut attempted: HashMap<&str, &Record> = HashMap::new();
    for r in bank {
        attempted.insert(r.pairs[0].0.as_str(), r);
    }
    for (k, v) in &view.receipts {
        let r = attempted
            .get(k.as_str())
            .unwrap_or_else(|| panic!("seed {seed}: receipt {k} is visible but no transfer wrote it"));
        assert!(
            matches!(r.outcome, Outcome::Acked | Outcome::Unknown(_)) && v == &r.pairs[0].1,
            "seed {seed}: {} transfer {k} (cycle {}) was {} yet its receipt reads {:?}",
            r.writer,
            r.cycle,
            r.outcome.name(),
            String::from_utf8_lossy(v)
        );
    }
    for r in bank.iter().filter(|r| r.outcome == Outcome::Acked) {
        let k = &r.pairs[0].0;
        assert!(
            view.receipts.contains_key(k),
            "seed {seed}: {} committed transfer {k} (cycle {}) is not visible",
            r.writer,
            r.cycle
        );
    }
    if let Err(e) = check_bank(&view) {
        panic!("seed {seed}: final bank state: {e}");
    }

    for r in groups {
        let present: Vec<&(String, Vec<u8>)> = r
            .pairs
            .iter()
            .filter(|(k, _)| group_view.contains_key(k))
            .collect();
        let wrong: Vec<&String> = r
            .pairs
            .iter()
            .filter(|(k, v)| group_view.get(k).is_some_and(|have| have != v))
            .map(|(k, _)| k)
            .collect();
        let all = present.len() == r.pairs.len();
        let ok = wrong.is_empty()
            && match r.outcome {
                Outcome::Acked => all,
                Outcome::Unknown(_) => all || present.is_empty(),
                Outcome::Aborted => present.is_empty(),
            };
        assert!(
            ok,
            "seed {seed}: {} transaction {:?} (cycle {}, {}{}) is {} of {} keys visible{}",
            r.writer,
            r.pairs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            r.cycle,
            r.outcome.name(),
            match &r.outcome {
                Outcome::Unknown(e) => format!(": {e}"),
                _ => String::new(),
            },
            present.len(),
            r.pairs.len(),
            if wrong.is_empty() {
                String::new()
            } else {
                format!(", wrong values at {wrong:?}")
            }
        );
    }
}

fn summary(records: &[Record]) -> String {
    let acked = records.iter().filter(|r| r.outcome == Outcome::Acked).count();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        if let Outcome::Unknown(e) = &r.outcome {
            *kinds.entry(error_kind(e)).or_default() += 1;
        }
    }
    let unknown: usize = kinds.values().sum();
    let aborted = records.len() - acked - unknown;
    format!("{acked} acknowledged, {unknown} unknown {kinds:?}, {aborted} aborted")
}

/// A short name for an error's kind: its variant and, for key errors, the field that is set.
fn error_kind(e: &str) -> String {
    let variant: String = e.chars().take_while(|c| c.is_alphanumeric()).collect();
    let field = [
        "locked: Some",
        "conflict: Some",
        "txn_not_found: Some",
        "commit_ts_expired: Some",
        "already_exist: Some",
        "deadlock: Some",
        "not_leader: Some",
        "epoch_not_match: Some",
        "region_not_found: Some",
        "server_is_busy: Some",
        "stale_command: Some",
        "retryable: \"",
        "abort: \"",
    ]
    .iter()
    .find(|f| {
        e.find(**f).is_some_and(|i| {
            // `retryable: ""` / `abort: ""` are empty, not set.
            !f.ends_with('"') || !e[i + f.len()..].starts_with('"')
        })
    })
    .map(|f| f.split(':').next().unwrap_or_default().to_owned());
    match field {
        Some(f) => format!("{variant}/{f}"),
        None => variant,
    }
}

async fn join_writer<T>(h: JoinHandle<T>, what: &str, seed: u64) -> T {
    tokio::time::timeout(WRITER_STOP_TIMEOUT, h)
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: {what} did not stop within {WRITER_STOP_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("seed {seed}: {what} panicked: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

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
