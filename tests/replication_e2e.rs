//! Replication against the real binaries: every region gets three replicas, `kill -9` of a
//! node during concurrent raw and transactional writes loses no acknowledged write, the
//! restarted node catches up, and PD rebuilds a down store's replicas on another node.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_ok, wait_until, Cluster, ClusterConfig, PRESPLIT_REGIONS};
use serde_json::Value as Json;
use tikv_client::{RawClient, TransactionClient};

/// Test-friendly heartbeat intervals for the nodes.
const FAST_HEARTBEATS: &str =
    "[raftstore]\npd-heartbeat-tick-interval = \"1s\"\npd-store-heartbeat-tick-interval = \"1s\"\n";

/// Store ids of a region's peers (sorted), from PD's region JSON.
fn peer_stores(region: &Json) -> Vec<u64> {
    let mut v: Vec<u64> = region["peers"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["store_id"].as_u64()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn is_voter(peer: &Json) -> bool {
    peer["role_name"].as_str().is_none_or(|r| r == "Voter")
}

/// Waits until every region has `n` voters on `n` distinct stores, none of them pending, and
/// (when given) none on `excluded`.
async fn wait_replicated(cluster: &Cluster, n: usize, excluded: Option<u64>, timeout: Duration) {
    wait_until(
        timeout,
        &format!("every region has {n} caught-up voters"),
        || async {
            let regions = cluster.pd_regions().await;
            regions.len() >= PRESPLIT_REGIONS
                && regions.iter().all(|r| {
                    let stores = peer_stores(r);
                    let voters = r["peers"].as_array().is_some_and(|ps| ps.iter().all(is_voter));
                    let mut distinct = stores.clone();
                    distinct.dedup();
                    let pending = r["pending_peers"].as_array().is_some_and(|p| !p.is_empty());
                    stores.len() == n
                        && distinct.len() == n
                        && voters
                        && !pending
                        && excluded.is_none_or(|s| !stores.contains(&s))
                })
        },
    )
    .await;
}

/// PD's store id of node `i`.
async fn store_id(cluster: &Cluster, i: usize) -> u64 {
    let addr = cluster.kv_addr(i);
    let stores = cluster.pd_get("/pd/api/v1/stores").await.expect("stores");
    stores["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| &s["store"])
        .find(|s| s["address"].as_str() == Some(addr.as_str()))
        .and_then(|s| s["id"].as_u64())
        .unwrap_or_else(|| panic!("no store for {addr}: {stores}"))
}

/// The node index holding the most region leaders (the one whose loss hurts most).
async fn busiest_leader_node(cluster: &Cluster) -> usize {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in cluster.pd_regions().await {
        if let Some(s) = r["leader"]["store_id"].as_u64() {
            *counts.entry(s).or_default() += 1;
        }
    }
    let top = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(s, _)| *s)
        .unwrap_or(0);
    for i in 0..cluster.kv_count() {
        if store_id(cluster, i).await == top {
            return i;
        }
    }
    0
}

/// The (key, value) pairs one writer got acknowledged, in order.
#[derive(Default)]
struct AckLog(Mutex<Vec<(String, String)>>);

impl AckLog {
    fn push(&self, k: String, v: String) {
        self.0.lock().expect("log").push((k, v));
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().expect("log").clone()
    }
}

type Acked = Arc<AckLog>;

/// Runs `write(i, failures)` until `stop`: each call writes attempt `i` and returns the pairs
/// it got acknowledged, or `None` if it failed (then it is retried as the same `i`, with a new
/// value, after a short pause). Returns the acknowledged pairs in order and the failure count.
fn spawn_writer<F, Fut>(
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
    mut write: F,
) -> (Acked, tokio::task::JoinHandle<u64>)
where
    F: FnMut(u64, u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Vec<(String, String)>>> + Send,
{
    let log: Acked = Arc::default();
    let out = log.clone();
    let h = tokio::spawn(async move {
        let (mut i, mut failures) = (0u64, 0u64);
        while !stop.load(Ordering::SeqCst) {
            match write(i, failures).await {
                Some(pairs) => {
                    for (k, v) in pairs {
                        log.push(k, v);
                    }
                    acks.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                None => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        failures
    });
    (out, h)
}

/// Puts `prefix/N` keys one at a time until `stop`.
fn raw_writer(
    client: RawClient,
    prefix: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> (Acked, tokio::task::JoinHandle<u64>) {
    spawn_writer(stop, acks, move |i, failures| {
        let (client, k, v) = (
            client.clone(),
            format!("{prefix}/{i:06}"),
            format!("v{i}-{failures}"),
        );
        async move { client.put(k.clone(), v.clone()).await.ok().map(|()| vec![(k, v)]) }
    })
}

/// Commits optimistic transactions of two keys each until `stop`.
fn txn_writer(
    client: TransactionClient,
    prefix: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> (Acked, tokio::task::JoinHandle<u64>) {
    spawn_writer(stop, acks, move |i, failures| {
        let client = client.clone();
        let (k1, k2) = (format!("{prefix}/a{i:06}"), format!("{prefix}/b{i:06}"));
        let v = format!("t{i}-{failures}");
        async move {
            let attempt = async {
                let mut txn = client.begin_optimistic().await?;
                txn.put(k1.clone(), v.clone()).await?;
                txn.put(k2.clone(), v.clone()).await?;
                txn.commit().await?;
                Ok::<(), tikv_client::Error>(())
            };
            attempt.await.ok().map(|()| vec![(k1, v.clone()), (k2, v)])
        }
    })
}

async fn wait_acks(acks: &AtomicU64, at_least: u64, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while acks.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} acks",
            acks.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check_raw(client: &RawClient, log: &[(String, String)], what: &str) {
    for (k, v) in log {
        let got = wait_ok(Duration::from_secs(30), &format!("{what}: get {k}"), || {
            client.get(k.clone())
        })
        .await;
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "{what}: acknowledged {k} lost or wrong"
        );
    }
}

async fn check_txn(client: &TransactionClient, log: &[(String, String)], what: &str) {
    for (k, v) in log {
        let got = wait_ok(
            Duration::from_secs(30),
            &format!("{what}: txn get {k}"),
            || async {
                let mut snap = client.snapshot(client.current_timestamp().await?, Default::default());
                snap.get(k.clone()).await
            },
        )
        .await;
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "{what}: committed {k} lost or wrong"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_of_three_during_writes_loses_nothing_and_it_catches_up() {
    let mut cluster = Cluster::start_with(
        3,
        ClusterConfig {
            kv: FAST_HEARTBEATS.into(),
            ..Default::default()
        },
    )
    .await;
    wait_replicated(&cluster, 3, None, Duration::from_secs(60)).await;

    let raw = cluster.raw_v1().await;
    let txn = cluster.txn_v2().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for p in ["a/w1", "s/w2"] {
        writers.push(raw_writer(
            cluster.raw_v1().await,
            p.to_owned(),
            stop.clone(),
            acks.clone(),
        ));
    }
    let txn_acks = Arc::new(AtomicU64::new(0));
    let txn_w = txn_writer(
        cluster.txn_v2().await,
        "tw".to_owned(),
        stop.clone(),
        txn_acks.clone(),
    );

    wait_acks(&acks, 100, Duration::from_secs(30), "raw writes before the kill").await;
    wait_acks(
        &txn_acks,
        10,
        Duration::from_secs(30),
        "txn writes before the kill",
    )
    .await;
    let victim = busiest_leader_node(&cluster).await;
    cluster.kill_kv(victim);
    // The survivors elect leaders and the writers go on.
    let before = acks.load(Ordering::SeqCst);
    let before_txn = txn_acks.load(Ordering::SeqCst);
    wait_acks(
        &acks,
        before + 100,
        Duration::from_secs(40),
        "raw writes after the kill",
    )
    .await;
    wait_acks(
        &txn_acks,
        before_txn + 10,
        Duration::from_secs(40),
        "txn writes after the kill",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut raw_log = Vec::new();
    for (log, h) in writers {
        h.await.expect("raw writer");
        raw_log.extend(log.all());
    }
    txn_w.1.await.expect("txn writer");
    let txn_log = txn_w.0.all();
    check_raw(&raw, &raw_log, "after the kill").await;
    check_txn(&txn, &txn_log, "after the kill").await;

    // The killed node comes back and catches up; then losing another node still loses nothing
    // (the quorum left includes the node that caught up).
    cluster.restart_kv(victim).await;
    wait_replicated(&cluster, 3, None, Duration::from_secs(60)).await;
    let other = (victim + 1) % 3;
    cluster.kill_kv(other);
    check_raw(&raw, &raw_log, "after the restart and a second kill").await;
    check_txn(&txn, &txn_log, "after the restart and a second kill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_stores_replicas_are_rebuilt_on_a_fourth_node() {
    let mut cluster = Cluster::start_with(
        3,
        ClusterConfig {
            pd: "[schedule]\nmax-store-down-time = \"4s\"\n".into(),
            kv: FAST_HEARTBEATS.into(),
            ..Default::default()
        },
    )
    .await;
    wait_replicated(&cluster, 3, None, Duration::from_secs(60)).await;
    let raw = cluster.raw_v1().await;
    let keys: Vec<(String, String)> = (0..30)
        .map(|i| (format!("a/rebuild/{i:03}"), format!("v{i}")))
        .collect();
    for (k, v) in &keys {
        raw.put(k.clone(), v.clone()).await.expect("put");
    }
    let fourth = cluster.add_kv().await;
    let fourth_store = store_id(&cluster, fourth).await;
    let victim = 1;
    let victim_store = store_id(&cluster, victim).await;
    cluster.kill_kv(victim);
    wait_replicated(&cluster, 3, Some(victim_store), Duration::from_secs(90)).await;
    let regions = cluster.pd_regions().await;
    assert!(
        regions.iter().all(|r| peer_stores(r).contains(&fourth_store)),
        "every region moved its lost replica to the fourth node: {regions:?}"
    );
    check_raw(&raw, &keys, "after the rebuild").await;
    // The rebuilt replicas hold the data: lose one more of the original nodes.
    cluster.kill_kv(0);
    check_raw(&raw, &keys, "after losing a second original node").await;
}
