//! An in-process cluster of raftstore stores for replication tests.
//!
//! Every store runs its own store loop over its own RocksDB engines (KV and Raft) in a temporary
//! directory. Stores talk through [`Net`], an in-memory network that routes each outgoing
//! [`RaftEnvelope`] to the target store's router through a chain of [`Filter`]s (partition,
//! isolate, drop or delay one region's messages, drop one message type, capture). Snapshot
//! messages carry their file along: a transfer thread copies the sender's generated file into
//! the receiver's snapshot directory before the message is delivered, then reports the outcome
//! to the sender, as the server's transport does between nodes.
//!
//! [`Client`] (cheap to clone, usable from spawned tasks) talks to the stores: it finds the
//! leader, writes and reads with retries, and changes membership. [`Cluster`] owns the stores
//! (start, stop, restart over the same engines) and derefs to its client. Waits poll predicates
//! with deadlines; nothing sleeps to synchronize.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use atoll_proto::metapb::{self, PeerRole};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use engine_rocks::{RocksEngine, RocksSnapshot, RocksTuning};
use engine_traits::{Iterable, Modify, Peekable, ALL_CFS, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE};
use raft::eraftpb::MessageType;
use raftstore::keys::ApplyState;
use raftstore::{
    bootstrap_region, load_local_regions, spawn_store, CmdHeader, Error, LocalRegion, PeerChange,
    RaftEnvelope, RegionInfo, Router, SnapKey, SnapManager, SnapMeta, StoreConfig, StoreEvent, StoreHandle,
    Transport,
};
use tokio::sync::mpsc::UnboundedReceiver;
use txn_types::keys::{data_end_key, data_key};

pub type Engine = RocksEngine;
pub type Snap = RocksSnapshot;
pub type StoreRouter = Router<Snap>;

/// The region every cluster is bootstrapped with: the whole key space, one peer on store 1.
pub const REGION: u64 = 1;
/// The id of the bootstrap region's first peer (on store 1).
pub const FIRST_PEER: u64 = 101;
/// How long `must_*` helpers keep retrying before they fail the test.
pub const MUST_TIMEOUT: Duration = Duration::from_secs(25);
/// Timeout of one attempt of a write, read or membership change.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Store configuration for tests: 20 ms ticks (elections after 200-400 ms), no log GC to
/// speak of (tests that want snapshots lower the thresholds).
pub fn test_config() -> StoreConfig {
    StoreConfig {
        tick_interval: Duration::from_millis(20),
        election_tick: 10,
        heartbeat_tick: 2,
        log_gc_threshold: 10_000,
        log_gc_keep: 16,
        log_gc_count_limit: 100_000,
        max_peer_down: Duration::from_secs(600),
        ..Default::default()
    }
}

/// A configuration under which a follower that misses a few dozen entries must catch up by
/// snapshot.
pub fn snapshot_config() -> StoreConfig {
    StoreConfig {
        log_gc_threshold: 8,
        log_gc_keep: 2,
        log_gc_count_limit: 16,
        ..test_config()
    }
}

pub fn put(key: &[u8], value: &[u8]) -> Modify {
    Modify::Put {
        cf: CF_DEFAULT,
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

mod client;
pub mod keyed;
mod net;

pub use client::*;
pub use net::*;

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

struct StoreSlot {
    kv: Engine,
    raft: Engine,
    snap_dir: PathBuf,
    handle: Option<StoreHandle<Snap>>,
    events: Option<UnboundedReceiver<StoreEvent>>,
}

/// `n` stores (ids 1..=n) in one process.
pub struct Cluster {
    client: Client,
    pub cfg: StoreConfig,
    /// Per-store configuration replacing `cfg` (store ids are filled in).
    pub store_cfgs: HashMap<u64, StoreConfig>,
    stores: BTreeMap<u64, StoreSlot>,
    fatal: Vec<(u64, String)>,
    // Last: the engines close before their directory goes.
    dir: tempfile::TempDir,
}

impl Deref for Cluster {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

fn open_engine(path: &std::path::Path, cfs: &[&str]) -> Engine {
    let tuning = RocksTuning {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 16 << 20,
        max_background_jobs: 1,
    };
    RocksEngine::open_with(path, cfs, &tuning).expect("open engine")
}

impl Cluster {
    /// Creates the engines of `n` stores (nothing is started).
    pub fn new(n: u64, cfg: StoreConfig) -> Cluster {
        // `RUST_LOG=info` shows the stores' logs with a test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let net = Net::new();
        let mut stores = BTreeMap::new();
        for id in 1..=n {
            let base = dir.path().join(format!("store-{id}"));
            let kv = open_engine(&base.join("db"), ALL_CFS);
            let raft = open_engine(&base.join("raft"), &[CF_DEFAULT]);
            let snap_dir = base.join("snap");
            let mgr = SnapManager::new(&snap_dir).expect("snap dir");
            net.snap_mgrs.write().expect("snap lock").insert(id, mgr);
            stores.insert(
                id,
                StoreSlot {
                    kv,
                    raft,
                    snap_dir,
                    handle: None,
                    events: None,
                },
            );
        }
        Cluster {
            client: Client {
                net,
                next_peer_id: Arc::new(AtomicU64::new(1001)),
            },
            cfg,
            store_cfgs: HashMap::new(),
            stores,
            fatal: vec![],
            dir,
        }
    }

    /// Writes region 1 (all keys, epoch 1/1) with its only peer on store 1.
    pub fn bootstrap(&self) {
        let region = metapb::Region {
            id: REGION,
            start_key: vec![],
            end_key: vec![],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer {
                id: FIRST_PEER,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = &self.stores[&1];
        bootstrap_region(&s.kv, &s.raft, &region).expect("bootstrap");
    }

    /// Writes regions `(id, start, end)` (epoch 1/1), each with its only peer (id `100 + id`)
    /// on store 1, instead of [`Cluster::bootstrap`]'s one region.
    pub fn bootstrap_regions(&self, regions: &[(u64, &[u8], &[u8])]) {
        let s = &self.stores[&1];
        for (id, start, end) in regions {
            let region = metapb::Region {
                id: *id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![metapb::Peer {
                    id: 100 + id,
                    store_id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            };
            bootstrap_region(&s.kv, &s.raft, &region).expect("bootstrap");
        }
    }

    /// Bootstraps, starts `n` stores and replicates region 1 to stores 1..=replicas.
    pub async fn run(n: u64, replicas: u64, cfg: StoreConfig) -> Cluster {
        let mut c = Cluster::new(n, cfg);
        c.bootstrap();
        c.start();
        c.leader_of(REGION).await;
        for store in 2..=replicas {
            c.must_add_peer(REGION, store).await;
        }
        c
    }

    pub fn start(&mut self) {
        let ids: Vec<u64> = self.stores.keys().copied().collect();
        for id in ids {
            self.start_store(id);
        }
    }

    pub fn store_ids(&self) -> Vec<u64> {
        self.stores.keys().copied().collect()
    }

    /// Starts `id`'s store loop over its engines and the regions persisted in them.
    pub fn start_store(&mut self, id: u64) {
        let slot = self.stores.get_mut(&id).expect("no such store");
        assert!(slot.handle.is_none(), "store {id} is running");
        let cfg = StoreConfig {
            store_id: id,
            ..self.store_cfgs.get(&id).unwrap_or(&self.cfg).clone()
        };
        let regions = load_local_regions(&slot.kv).expect("load regions");
        let snap_mgr = SnapManager::new(&slot.snap_dir).expect("snap dir");
        let transport = ClusterTransport {
            store_id: id,
            net: self.client.net.clone(),
            registered: false,
        };
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let (router, handle) = spawn_store(
            cfg,
            slot.kv.clone(),
            slot.raft.clone(),
            transport,
            regions,
            snap_mgr,
            events,
        )
        .expect("spawn store");
        slot.handle = Some(handle);
        slot.events = Some(keyed::spawn_event_pump(
            router.clone(),
            self.client.next_peer_id.clone(),
            rx,
        ));
        self.client
            .net
            .routers
            .write()
            .expect("routers lock")
            .insert(id, router);
    }

    /// Stops `id`'s store loop (also reaps one whose thread panicked).
    pub fn stop_store(&mut self, id: u64) {
        self.client.net.routers.write().expect("routers lock").remove(&id);
        let slot = self.stores.get_mut(&id).expect("no such store");
        if let Some(mut h) = slot.handle.take() {
            h.shutdown();
        }
        if let Some(mut rx) = slot.events.take() {
            while let Ok(ev) = rx.try_recv() {
                if let StoreEvent::Fatal(msg) = ev {
                    self.fatal.push((id, msg));
                }
            }
        }
    }

    pub fn restart_store(&mut self, id: u64) {
        self.stop_store(id);
        self.start_store(id);
    }

    /// Waits until `id`'s store loop is gone (e.g. its thread panicked at a failpoint).
    pub async fn wait_store_dead(&self, id: u64) {
        let router = self.router(id).expect("store not registered");
        wait_for(&format!("store {id} stops"), MUST_TIMEOUT, || {
            let router = router.clone();
            async move { matches!(router.region_infos().await, Err(Error::ShuttingDown)) }
        })
        .await
    }

    /// Every fatal event the stores reported so far (other events are dropped).
    pub fn fatal_events(&mut self) -> Vec<(u64, String)> {
        let ids: Vec<u64> = self.stores.keys().copied().collect();
        for id in ids {
            self.take_events(id);
        }
        self.fatal.clone()
    }

    /// The regions `store` reported as led by it (`LeaderChanged`) since the last call; fatal
    /// events are kept for [`Cluster::fatal_events`].
    pub fn take_events(&mut self, store: u64) -> Vec<RegionInfo> {
        let mut out = vec![];
        let slot = self.stores.get_mut(&store).expect("no such store");
        if let Some(rx) = slot.events.as_mut() {
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    StoreEvent::LeaderChanged(info) => out.push(*info),
                    StoreEvent::Fatal(msg) => self.fatal.push((store, msg)),
                    StoreEvent::AskSplit { .. } | StoreEvent::RegionSplit(_) => {}
                }
            }
        }
        out
    }

    pub fn add_filter(&self, f: FilterRef) -> FilterId {
        self.client.net.add_filter(f)
    }

    pub fn remove_filter(&self, id: FilterId) {
        self.client.net.remove_filter(id)
    }

    pub fn clear_filters(&self) {
        self.client.net.clear_filters()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn kv(&self, store: u64) -> &Engine {
        &self.stores[&store].kv
    }

    pub fn raft_engine(&self, store: u64) -> &Engine {
        &self.stores[&store].raft
    }

    pub fn snap_dir(&self, store: u64) -> PathBuf {
        self.stores[&store].snap_dir.clone()
    }

    pub fn base_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `key` as stored in `store`'s KV engine (whatever the store has applied).
    pub fn get_on_store(&self, store: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.kv(store)
            .get_cf(CF_DEFAULT, &data_key(key))
            .expect("engine get")
    }

    /// Waits until `store`'s engine holds every pair of `kvs`.
    pub async fn must_have_on_store(&self, store: u64, kvs: &[(Vec<u8>, Vec<u8>)]) {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let missing: Vec<String> = kvs
                .iter()
                .filter(|(k, v)| self.get_on_store(store, k).as_ref() != Some(v))
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "store {store} misses {} of {} keys, e.g. {:?}",
                missing.len(),
                kvs.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every store of `stores` holds every pair of `kvs`.
    pub async fn must_have_on_stores(&self, stores: &[u64], kvs: &[(Vec<u8>, Vec<u8>)]) {
        for s in stores {
            self.must_have_on_store(*s, kvs).await;
        }
    }

    /// Waits until `store` dropped its peer of `region` and persisted the region's tombstone.
    pub async fn wait_tombstone(&self, store: u64, region: u64) {
        self.wait_region_gone(store, region).await;
        wait_until(
            &format!("store {store} persisted a tombstone"),
            MUST_TIMEOUT,
            || {
                self.local_region(store, region)
                    .is_some_and(|r| r.state == raftstore::RegionState::Tombstone)
            },
        )
        .await
    }

    /// The persisted state of `region` on `store` (tombstones included).
    pub fn local_region(&self, store: u64, region: u64) -> Option<LocalRegion> {
        load_local_regions(self.kv(store))
            .expect("load regions")
            .into_iter()
            .find(|r| r.region.id == region)
    }

    pub fn apply_state(&self, store: u64, region: u64) -> Option<ApplyState> {
        self.kv(store)
            .get_cf(CF_RAFT, &raftstore::keys::apply_state_key(region))
            .expect("engine get")
            .and_then(|b| ApplyState::decode(&b))
    }

    /// Keys of `store`'s engine in the data range `[start, end)` of a region, over the data
    /// column families.
    pub fn data_key_count(&self, store: u64, start: &[u8], end: &[u8]) -> usize {
        let (lo, hi) = (data_key(start), data_end_key(end));
        let mut n = 0;
        for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
            self.kv(store)
                .scan_cf(cf, &lo, Some(&hi), |_, _| {
                    n += 1;
                    Ok(true)
                })
                .expect("scan");
        }
        n
    }

    /// Raft log entries `store` keeps for `region`.
    pub fn raft_log_len(&self, store: u64, region: u64) -> usize {
        let lo = raftstore::keys::raft_entry_key(region, 0);
        let hi = raftstore::keys::raft_entry_key(region, u64::MAX);
        let mut n = 0;
        self.raft_engine(store)
            .scan_cf(CF_DEFAULT, &lo, Some(&hi), |_, _| {
                n += 1;
                Ok(true)
            })
            .expect("scan");
        n
    }

    /// Checks every running store that holds `region` agrees on its membership `want`.
    pub async fn must_have_members(&self, stores: &[u64], region: u64, want: &[(u64, u64, PeerRole)]) {
        let mut want = want.to_vec();
        want.sort_unstable();
        for s in stores {
            let w = want.clone();
            self.wait_region_on(*s, region, &format!("members {want:?}"), move |i| {
                members(&i.region) == w
            })
            .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.client.net.clear_filters();
        let ids: Vec<u64> = self.stores.keys().copied().collect();
        for id in ids {
            self.stop_store(id);
        }
    }
}
