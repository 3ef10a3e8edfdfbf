//! Scale-out and scale-in against the real binaries: tiny split thresholds make dozens of
//! regions on three nodes; a fourth node joins while tikv-client writes and reads, and PD's
//! balance schedulers bring its region and leader counts to the mean; deleting that store
//! drains it to Tombstone (the node stops by itself) with every key readable. With zone labels
//! and `location-labels = ["zone"]`, every region keeps one replica per zone as nodes go and
//! come.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http_delete, wait_until, Cluster, ClusterConfig};
use tikv_client::RawClient;

/// Tiny split thresholds and fast heartbeats (TiKV's client tests run this way). The nodes
/// share one disk: each is given its own capacity, so that PD's region scores compare the
/// stores' data rather than the shared disk's free space.
const KV_CONFIG: &str = "[raftstore]
capacity = \"100GiB\"
pd-heartbeat-tick-interval = \"1s\"
pd-store-heartbeat-tick-interval = \"1s\"
split-region-check-tick-interval = \"500ms\"
region-split-check-diff = \"1B\"
[coprocessor]
region-split-keys = 7
region-max-keys = 10
";

fn key(i: usize) -> Vec<u8> {
    format!("load/{i:05}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:05}-{}", "v".repeat(200)).into_bytes()
}

/// PD's stores, by store id: (address, state name, labels, region count, leader count).
struct StoreRow {
    address: String,
    state: String,
    labels: BTreeMap<String, String>,
    regions: f64,
    leaders: f64,
}

async fn stores(cluster: &Cluster) -> BTreeMap<u64, StoreRow> {
    let v = cluster.pd_get("/pd/api/v1/stores").await.expect("PD stores");
    let mut out = BTreeMap::new();
    for s in v["stores"].as_array().cloned().unwrap_or_default() {
        let store = &s["store"];
        let labels = store["labels"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        (
                            l["key"].as_str().unwrap_or_default().to_owned(),
                            l["value"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            store["id"].as_u64().unwrap_or(0),
            StoreRow {
                address: store["address"].as_str().unwrap_or_default().to_owned(),
                state: store["state_name"].as_str().unwrap_or_default().to_owned(),
                labels,
                regions: s["status"]["region_count"].as_f64().unwrap_or(0.0),
                leaders: s["status"]["leader_count"].as_f64().unwrap_or(0.0),
            },
        );
    }
    out
}

async fn store_id_of(cluster: &Cluster, node: usize) -> u64 {
    let addr = cluster.kv_addr(node);
    stores(cluster)
        .await
        .into_iter()
        .find(|(_, s)| s.address == addr)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("PD does not list node {node} ({addr})"))
}

/// Whether every Up store's region and leader counts are within 10% of the Up stores' mean.
fn balanced(stores: &BTreeMap<u64, StoreRow>) -> bool {
    let up: Vec<&StoreRow> = stores.values().filter(|s| s.state == "Up").collect();
    let n = up.len() as f64;
    let mean_regions = up.iter().map(|s| s.regions).sum::<f64>() / n;
    let mean_leaders = up.iter().map(|s| s.leaders).sum::<f64>() / n;
    up.iter().all(|s| {
        (s.regions - mean_regions).abs() <= mean_regions * 0.1
            && (s.leaders - mean_leaders).abs() <= mean_leaders * 0.1
    })
}

/// Store ids of each region's peers, from PD.
async fn region_stores(cluster: &Cluster) -> Vec<(u64, Vec<u64>)> {
    cluster
        .pd_regions()
        .await
        .iter()
        .map(|r| {
            let stores = r["peers"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["store_id"].as_u64()).collect())
                .unwrap_or_default();
            (r["id"].as_u64().unwrap_or(0), stores)
        })
        .collect()
}

/// Writes `load/…` keys until PD lists at least `regions` regions, each with three peers.
async fn load(cluster: &Cluster, raw: &RawClient, keys: usize, regions: usize) {
    for i in 0..keys {
        raw.put(key(i), value(i)).await.expect("load put");
    }
    // Generous: under CI load (other e2e tests beside this one on 2 cores) PD's replica moves
    // over six nodes can take longer than a minute.
    wait_until(
        Duration::from_secs(180),
        &format!("PD lists {regions} regions with 3 peers each"),
        || async {
            let rs = region_stores(cluster).await;
            rs.len() >= regions && rs.iter().all(|(_, s)| s.len() == 3)
        },
    )
    .await;
}

/// Every loaded key still reads back its value.
async fn check_loaded(raw: &RawClient, keys: usize) {
    let all: Vec<Vec<u8>> = (0..keys).map(key).collect();
    for chunk in all.chunks(200) {
        let got = raw.batch_get(chunk.to_vec()).await.expect("batch get");
        assert_eq!(got.len(), chunk.len(), "keys missing");
        for p in got {
            let k: Vec<u8> = p.key().clone().into();
            let i: usize = String::from_utf8_lossy(&k[5..]).parse().expect("key index");
            assert_eq!(p.value(), &value(i), "value of {}", String::from_utf8_lossy(&k));
        }
    }
}

/// Clients overwriting and reading loaded keys until stopped; errors are kept.
struct Clients {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    ops: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    fn start(raw: RawClient, loaded: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let ops = Arc::new(AtomicU64::new(0));
        let mut tasks = vec![];
        for t in 0..2u64 {
            let (raw, stop, errors, ops) = (raw.clone(), stop.clone(), errors.clone(), ops.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Overwrites (the same value) and reads of loaded keys: the region count
                    // stays as loaded while the new node joins.
                    let i = (n * 7 + t as usize * 3) % loaded;
                    let result = if t == 0 {
                        raw.put(key(i), value(i)).await
                    } else {
                        match raw.get(key(i)).await {
                            Ok(Some(v)) if v == value(i) => Ok(()),
                            Ok(other) => {
                                errors
                                    .lock()
                                    .expect("errors")
                                    .push(format!("read {i}: {other:?}"));
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    };
                    match result {
                        Ok(()) => {
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.lock().expect("errors").push(e.to_string()),
                    }
                    n += 1;
                }
            }));
        }
        Clients {
            stop,
            errors,
            ops,
            tasks,
        }
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("client task");
        }
        let errors = std::mem::take(&mut *self.errors.lock().expect("errors"));
        (self.ops.load(Ordering::Relaxed), errors)
    }
}

/// Deletes node `node`'s store and waits until it is Tombstone and its process stopped.
async fn remove_store(cluster: &mut Cluster, node: usize) {
    let id = store_id_of(cluster, node).await;
    cluster.expect_removed(node);
    let (status, body) = http_delete(&cluster.pd_endpoint(), &format!("/pd/api/v1/store/{id}"))
        .await
        .expect("DELETE store");
    assert_eq!(status, 200, "DELETE store: {}", String::from_utf8_lossy(&body));
    wait_until(
        Duration::from_secs(180),
        &format!("store {id} drains to Tombstone"),
        || async {
            // PD's store list leaves tombstones out; the store itself still answers.
            cluster
                .pd_get(&format!("/pd/api/v1/store/{id}"))
                .await
                .is_ok_and(|s| s["store"]["state_name"].as_str() == Some("Tombstone"))
        },
    )
    .await;
    let exit = cluster.wait_kv_exit(node, Duration::from_secs(30)).await;
    assert!(!exit.success(), "a removed node exits with an error status");
    assert!(
        region_stores(cluster).await.iter().all(|(_, s)| !s.contains(&id)),
        "a region still has a peer on the removed store"
    );
}

/// A fourth node joins under load and gets its share of regions and leaders within two
/// minutes, with no client error; deleting its store drains it to Tombstone and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fourth_node_joins_under_load_gets_balanced_then_drains() {
    let mut cluster = Cluster::start_with(
        3,
        ClusterConfig {
            kv: KV_CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    let raw = cluster.raw_v2().await;
    const KEYS: usize = 420;
    load(&cluster, &raw, KEYS, 50).await;

    let clients = Clients::start(raw.clone(), KEYS);
    let node = cluster.add_kv().await;
    let new_id = store_id_of(&cluster, node).await;
    wait_until(
        Duration::from_secs(120),
        "the new store holds its share of regions and leaders (within 10% of the mean)",
        || async {
            let s = stores(&cluster).await;
            s.get(&new_id).is_some_and(|n| n.regions > 0.0) && balanced(&s)
        },
    )
    .await;
    let (ops, errors) = clients.stop().await;
    assert!(ops > 0, "the clients did nothing");
    assert!(
        errors.is_empty(),
        "clients saw errors: {:?}",
        &errors[..errors.len().min(5)]
    );
    check_loaded(&raw, KEYS).await;

    remove_store(&mut cluster, node).await;
    check_loaded(&raw, KEYS).await;
}

/// Whether every region has exactly one peer in each of the zones z1, z2, z3.
async fn one_per_zone(cluster: &Cluster) -> bool {
    let s = stores(cluster).await;
    region_stores(cluster).await.iter().all(|(_, peers)| {
        let mut zs: Vec<&str> = peers
            .iter()
            .filter_map(|id| s.get(id).and_then(|st| st.labels.get("zone")).map(String::as_str))
            .collect();
        zs.sort_unstable();
        zs == ["z1", "z2", "z3"]
    })
}

/// Six nodes in three zones with `location-labels = ["zone"]`: every region has one replica
/// per zone; after a node of one zone is removed and another added there, still.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_spread_over_zones_as_nodes_go_and_come() {
    let zones = ["z1", "z1", "z2", "z2", "z3", "z3"];
    let mut cluster = Cluster::start_with(
        6,
        ClusterConfig {
            pd: "[replication]\nlocation-labels = [\"zone\"]\n".into(),
            kv: KV_CONFIG.into(),
            kv_labels: zones
                .iter()
                .enumerate()
                .map(|(i, z)| format!("zone={z},host=h{i}"))
                .collect(),
        },
    )
    .await;
    let raw = cluster.raw_v2().await;
    const KEYS: usize = 150;
    load(&cluster, &raw, KEYS, 15).await;

    wait_until(
        Duration::from_secs(120),
        "every region has one replica per zone",
        || one_per_zone(&cluster),
    )
    .await;

    remove_store(&mut cluster, 0).await;
    wait_until(
        Duration::from_secs(60),
        "one replica per zone with one z1 node",
        || one_per_zone(&cluster),
    )
    .await;
    cluster.add_kv_with_labels("zone=z1,host=h6").await;
    let added = store_id_of(&cluster, 6).await;
    wait_until(
        Duration::from_secs(120),
        "the new z1 node takes replicas, one per zone kept",
        || async {
            let s = stores(&cluster).await;
            s.get(&added).is_some_and(|n| n.regions > 0.0) && one_per_zone(&cluster).await
        },
    )
    .await;
    check_loaded(&raw, KEYS).await;
}
