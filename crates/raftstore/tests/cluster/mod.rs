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

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// What a filter decides for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// Deliver after this long (several delays: the longest wins).
    Delay(Duration),
}

/// Looks at every message sent between stores. `from_store` is the sending store.
pub trait Filter: Send + Sync + 'static {
    fn verdict(&self, from_store: u64, env: &RaftEnvelope) -> Verdict;
}

impl<F> Filter for F
where
    F: Fn(u64, &RaftEnvelope) -> Verdict + Send + Sync + 'static,
{
    fn verdict(&self, from_store: u64, env: &RaftEnvelope) -> Verdict {
        self(from_store, env)
    }
}

pub type FilterRef = Arc<dyn Filter>;

/// Drops every message between a store of `a` and a store of `b` (both ways).
pub fn partition(a: &[u64], b: &[u64]) -> FilterRef {
    let (a, b) = (a.to_vec(), b.to_vec());
    Arc::new(move |from: u64, env: &RaftEnvelope| {
        let to = env.to_peer.store_id;
        let cut = (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to));
        if cut {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
}

/// Drops every message from or to `store`.
pub fn isolate(store: u64) -> FilterRef {
    Arc::new(move |from: u64, env: &RaftEnvelope| {
        if (from == store) != (env.to_peer.store_id == store) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
}

/// Drops every message of `region`.
pub fn drop_region(region: u64) -> FilterRef {
    Arc::new(move |_: u64, env: &RaftEnvelope| {
        if env.region_id == region {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
}

/// Delays every message of `region` by `delay`.
pub fn delay_region(region: u64, delay: Duration) -> FilterRef {
    Arc::new(move |_: u64, env: &RaftEnvelope| {
        if env.region_id == region {
            Verdict::Delay(delay)
        } else {
            Verdict::Pass
        }
    })
}

/// Drops every Raft message of type `ty` (tombstone notices are not Raft messages).
pub fn drop_type(ty: MessageType) -> FilterRef {
    Arc::new(move |_: u64, env: &RaftEnvelope| {
        if !env.is_tombstone && env.message.get_msg_type() == ty {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
}

/// Drops messages of type `ty` addressed to `store` only.
pub fn drop_type_to(ty: MessageType, store: u64) -> FilterRef {
    Arc::new(move |_: u64, env: &RaftEnvelope| {
        if !env.is_tombstone && env.to_peer.store_id == store && env.message.get_msg_type() == ty {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })
}

/// A lossy, jittery network: drops `drop_percent`% of the messages and delays the others by
/// up to `max_delay` (so messages of one connection may arrive out of order). Seeded.
pub fn lossy(seed: u64, drop_percent: u64, max_delay: Duration) -> FilterRef {
    let state = AtomicU64::new(seed.max(1));
    Arc::new(move |_: u64, _: &RaftEnvelope| {
        // xorshift64*, advanced atomically so concurrent senders draw different numbers.
        let mut x = state.load(Ordering::Relaxed);
        loop {
            let mut n = x;
            n ^= n >> 12;
            n ^= n << 25;
            n ^= n >> 27;
            match state.compare_exchange_weak(x, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    x = n.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    break;
                }
                Err(cur) => x = cur,
            }
        }
        if x % 100 < drop_percent {
            Verdict::Drop
        } else {
            let micros = max_delay.as_micros() as u64;
            if micros == 0 {
                Verdict::Pass
            } else {
                Verdict::Delay(Duration::from_micros((x >> 8) % micros))
            }
        }
    })
}

/// Envelopes copied by a [`capture`] filter, with their sending store.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<(u64, RaftEnvelope)>>>);

impl Captured {
    pub fn take(&self) -> Vec<(u64, RaftEnvelope)> {
        std::mem::take(&mut *self.0.lock().expect("capture lock"))
    }

    pub fn snapshot(&self) -> Vec<(u64, RaftEnvelope)> {
        self.0.lock().expect("capture lock").clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("capture lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies every message matching `pred` (and lets it pass).
pub fn capture<P>(pred: P) -> (FilterRef, Captured)
where
    P: Fn(u64, &RaftEnvelope) -> bool + Send + Sync + 'static,
{
    let captured = Captured::default();
    let sink = captured.clone();
    let filter = Arc::new(move |from: u64, env: &RaftEnvelope| {
        if pred(from, env) {
            sink.0.lock().expect("capture lock").push((from, env.clone()));
        }
        Verdict::Pass
    });
    (filter, captured)
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// Counters kept by the network.
#[derive(Debug, Clone, Default)]
pub struct NetStats {
    /// Envelopes handed to the transport, by (sending store, region).
    pub sent: HashMap<(u64, u64), u64>,
    /// Envelopes dropped by a filter.
    pub dropped: u64,
    /// Snapshots delivered, by receiving store.
    pub snapshots_received: HashMap<u64, u64>,
    /// Snapshot transfers that failed (file missing, receiver down, corrupted copy).
    pub snapshots_failed: u64,
}

struct Delayed {
    at: Instant,
    from: u64,
    env: RaftEnvelope,
}

/// The in-memory network between the stores of one cluster.
pub struct Net {
    routers: RwLock<HashMap<u64, StoreRouter>>,
    snap_mgrs: RwLock<HashMap<u64, SnapManager>>,
    filters: RwLock<Vec<(u64, FilterRef)>>,
    next_filter: AtomicU64,
    delayed_tx: Sender<Delayed>,
    snap_tx: Sender<(u64, RaftEnvelope)>,
    /// Which store each store-loop thread runs (learned from the thread's transport calls).
    threads: Mutex<HashMap<ThreadId, u64>>,
    stats: Mutex<NetStats>,
    /// The next this many snapshot transfers arrive corrupted (one byte flipped).
    corrupt_snapshots: AtomicU64,
}

/// Identifies a filter added to the network, to remove it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterId(u64);

impl Net {
    fn new() -> Arc<Net> {
        let (delayed_tx, delayed_rx) = crossbeam_channel::unbounded();
        let (snap_tx, snap_rx) = crossbeam_channel::unbounded();
        let net = Arc::new(Net {
            routers: RwLock::default(),
            snap_mgrs: RwLock::default(),
            filters: RwLock::default(),
            next_filter: AtomicU64::new(1),
            delayed_tx,
            snap_tx,
            threads: Mutex::default(),
            stats: Mutex::default(),
            corrupt_snapshots: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&net);
        std::thread::Builder::new()
            .name("net-delay".into())
            .spawn(move || run_delayed(weak, delayed_rx))
            .expect("spawn delay thread");
        let weak = Arc::downgrade(&net);
        std::thread::Builder::new()
            .name("net-snap".into())
            .spawn(move || run_snapshots(weak, snap_rx))
            .expect("spawn snapshot thread");
        net
    }

    pub fn router(&self, store: u64) -> Option<StoreRouter> {
        self.routers.read().expect("routers lock").get(&store).cloned()
    }

    fn snap_mgr(&self, store: u64) -> Option<SnapManager> {
        self.snap_mgrs.read().expect("snap lock").get(&store).cloned()
    }

    pub fn add_filter(&self, f: FilterRef) -> FilterId {
        let id = self.next_filter.fetch_add(1, Ordering::Relaxed);
        self.filters.write().expect("filters lock").push((id, f));
        FilterId(id)
    }

    pub fn remove_filter(&self, id: FilterId) {
        self.filters
            .write()
            .expect("filters lock")
            .retain(|(i, _)| *i != id.0);
    }

    pub fn clear_filters(&self) {
        self.filters.write().expect("filters lock").clear();
    }

    /// Makes the next `n` snapshot transfers arrive with one byte flipped.
    pub fn corrupt_next_snapshots(&self, n: u64) {
        self.corrupt_snapshots.store(n, Ordering::SeqCst);
    }

    pub fn stats(&self) -> NetStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Envelopes `store` has sent for `region` so far.
    pub fn sent_by(&self, store: u64, region: u64) -> u64 {
        self.stats
            .lock()
            .expect("stats lock")
            .sent
            .get(&(store, region))
            .copied()
            .unwrap_or(0)
    }

    pub fn snapshots_received(&self, store: u64) -> u64 {
        self.stats
            .lock()
            .expect("stats lock")
            .snapshots_received
            .get(&store)
            .copied()
            .unwrap_or(0)
    }

    /// The store whose loop (or one of its writer threads, named `<role>-<store id>`) runs on
    /// the calling thread, if any.
    pub fn current_store(&self) -> Option<u64> {
        let registered = self
            .threads
            .lock()
            .expect("threads lock")
            .get(&std::thread::current().id())
            .copied();
        registered.or_else(|| {
            let name = std::thread::current().name()?.to_owned();
            let (role, id) = name.rsplit_once('-')?;
            matches!(role, "raftstore" | "apply-writer" | "raft-log-writer")
                .then(|| id.parse().ok())
                .flatten()
        })
    }

    fn register_thread(&self, store: u64) {
        self.threads
            .lock()
            .expect("threads lock")
            .insert(std::thread::current().id(), store);
    }

    /// Runs the filters on a message `from` sent, then delivers, delays or drops it.
    fn route(&self, from: u64, env: RaftEnvelope) {
        *self
            .stats
            .lock()
            .expect("stats lock")
            .sent
            .entry((from, env.region_id))
            .or_default() += 1;
        let filters: Vec<FilterRef> = self
            .filters
            .read()
            .expect("filters lock")
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        let mut delay = Duration::ZERO;
        for f in filters {
            match f.verdict(from, &env) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.stats.lock().expect("stats lock").dropped += 1;
                    if !env.is_tombstone && env.message.get_msg_type() == MessageType::MsgSnapshot {
                        // A real transport learns that a snapshot did not get through.
                        if let Some(r) = self.router(from) {
                            let _ = r.report_snapshot(env.region_id, env.to_peer.id, false);
                        }
                    }
                    return;
                }
                Verdict::Delay(d) => delay = delay.max(d),
            }
        }
        if delay.is_zero() {
            self.deliver(from, env);
        } else {
            let _ = self.delayed_tx.send(Delayed {
                at: Instant::now() + delay,
                from,
                env,
            });
        }
    }

    /// Hands a message that passed the filters to its store (snapshots go through the
    /// transfer thread first). A message to a store that is down is reported unreachable.
    fn deliver(&self, from: u64, env: RaftEnvelope) {
        if !env.is_tombstone && env.message.get_msg_type() == MessageType::MsgSnapshot {
            let _ = self.snap_tx.send((from, env));
            return;
        }
        let (region_id, to_peer, tombstone) = (env.region_id, env.to_peer.id, env.is_tombstone);
        let delivered = self
            .router(env.to_peer.store_id)
            .is_some_and(|r| r.send_raft(env).is_ok());
        if !delivered && !tombstone {
            if let Some(r) = self.router(from) {
                let _ = r.report_unreachable(region_id, to_peer);
            }
        }
    }

    /// Moves a snapshot's file from the sender's directory to the receiver's, delivers the
    /// message, and tells the sender how it went.
    fn transfer_snapshot(&self, from: u64, env: RaftEnvelope) {
        let (region_id, to_store, to_peer) = (env.region_id, env.to_peer.store_id, env.to_peer.id);
        let result = (|| -> Result<(), String> {
            let snap = env.message.get_snapshot();
            let meta = SnapMeta::decode(&snap.data).map_err(|e| e.to_string())?;
            let key = SnapKey {
                region_id,
                term: snap.get_metadata().term,
                index: snap.get_metadata().index,
            };
            let src = self.snap_mgr(from).ok_or("sender has no snapshot directory")?;
            let dst = self
                .snap_mgr(to_store)
                .ok_or("receiver has no snapshot directory")?;
            let router = self.router(to_store).ok_or("receiver is down")?;
            std::fs::copy(src.gen_path(&key), dst.recv_tmp_path(&key)).map_err(|e| e.to_string())?;
            let corrupt = self
                .corrupt_snapshots
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if corrupt {
                let path = dst.recv_tmp_path(&key);
                let mut bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            }
            dst.finish_receive(&key, &meta).map_err(|e| e.to_string())?;
            router.send_raft(env.clone()).map_err(|e| e.to_string())
        })();
        {
            let mut stats = self.stats.lock().expect("stats lock");
            match &result {
                Ok(()) => *stats.snapshots_received.entry(to_store).or_default() += 1,
                Err(_) => stats.snapshots_failed += 1,
            }
        }
        if let Some(r) = self.router(from) {
            let _ = r.report_snapshot(region_id, to_peer, result.is_ok());
        }
    }
}

fn run_delayed(net: Weak<Net>, rx: Receiver<Delayed>) {
    // Ordered by due time, then arrival.
    let mut queue: BTreeMap<(Instant, u64), (u64, RaftEnvelope)> = BTreeMap::new();
    let mut seq = 0u64;
    loop {
        let wait = queue
            .keys()
            .next()
            .map(|(at, _)| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(d) => {
                seq += 1;
                queue.insert((d.at, seq), (d.from, d.env));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(entry) = queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, env) = entry.remove();
            let Some(net) = net.upgrade() else {
                return;
            };
            net.deliver(from, env);
        }
    }
}

fn run_snapshots(net: Weak<Net>, rx: Receiver<(u64, RaftEnvelope)>) {
    while let Ok((from, env)) = rx.recv() {
        let Some(net) = net.upgrade() else {
            return;
        };
        net.transfer_snapshot(from, env);
    }
}

/// One store's side of the network.
pub struct ClusterTransport {
    store_id: u64,
    net: Arc<Net>,
    registered: bool,
}

impl ClusterTransport {
    fn register(&mut self) {
        if !self.registered {
            self.net.register_thread(self.store_id);
            self.registered = true;
        }
    }
}

impl Transport for ClusterTransport {
    fn send(&mut self, msg: RaftEnvelope) {
        self.register();
        self.net.route(self.store_id, msg);
    }

    fn flush(&mut self) {
        // Called on every loop iteration: the store's thread is known from its first one.
        self.register();
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Why one attempt at a request did not succeed.
#[derive(Debug, Clone)]
pub enum Failure {
    Raft(Error),
    Timeout,
    StoreDown,
}

pub type Outcome<T> = std::result::Result<T, Failure>;

async fn attempt<T>(timeout: Duration, f: impl Future<Output = raftstore::Result<T>>) -> Outcome<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Error::ShuttingDown)) => Err(Failure::StoreDown),
        Ok(Err(e)) => Err(Failure::Raft(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

fn header_of(region: &metapb::Region) -> CmdHeader {
    let epoch = region.region_epoch.unwrap_or_default();
    CmdHeader {
        region_id: region.id,
        peer_id: 0,
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        ..Default::default()
    }
}

/// Polls `pred` until it holds; fails the test with `desc` after `timeout`.
pub async fn wait_until(desc: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {desc}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_until`] with an async predicate.
pub async fn wait_for<F, Fut>(desc: &str, timeout: Duration, mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if pred().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {desc}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Membership of a region as comparable (peer id, store id, role) triples, sorted.
pub fn members(region: &metapb::Region) -> Vec<(u64, u64, PeerRole)> {
    let mut m: Vec<_> = region
        .peers
        .iter()
        .map(|p| {
            (
                p.id,
                p.store_id,
                PeerRole::try_from(p.role).unwrap_or(PeerRole::Voter),
            )
        })
        .collect();
    m.sort_unstable();
    m
}

/// Talks to the stores of a cluster: finds leaders, writes, reads, changes membership.
#[derive(Clone)]
pub struct Client {
    pub net: Arc<Net>,
    next_peer_id: Arc<AtomicU64>,
}

impl Client {
    /// A fresh peer id on `store` (ids are never reused).
    pub fn alloc_peer(&self, store: u64) -> metapb::Peer {
        metapb::Peer {
            id: self.next_peer_id.fetch_add(1, Ordering::Relaxed),
            store_id: store,
            ..Default::default()
        }
    }

    pub fn router(&self, store: u64) -> Option<StoreRouter> {
        self.net.router(store)
    }

    /// Stores whose loop is registered as running.
    pub fn running_stores(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .net
            .routers
            .read()
            .expect("routers lock")
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// The initialized regions of `store`; `None` if it is down or does not answer.
    pub async fn region_infos(&self, store: u64) -> Option<Vec<RegionInfo>> {
        let router = self.router(store)?;
        attempt(ATTEMPT_TIMEOUT, router.region_infos()).await.ok()
    }

    pub async fn region_info(&self, store: u64, region: u64) -> Option<RegionInfo> {
        self.region_infos(store)
            .await?
            .into_iter()
            .find(|i| i.region.id == region)
    }

    /// The store whose peer leads `region` in the highest term, with its view of the region.
    pub async fn leader(&self, region: u64) -> Option<(u64, RegionInfo)> {
        let mut best: Option<(u64, RegionInfo)> = None;
        for store in self.running_stores() {
            if let Some(info) = self.region_info(store, region).await {
                if info.is_leader && best.as_ref().is_none_or(|(_, b)| info.term > b.term) {
                    best = Some((store, info));
                }
            }
        }
        best
    }

    /// Waits until `region` has a leader and returns its store.
    pub async fn leader_of(&self, region: u64) -> u64 {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            if let Some((store, _)) = self.leader(region).await {
                return store;
            }
            assert!(Instant::now() < deadline, "region {region} has no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One write of `modifies` to `store`'s peer of `region`, with that peer's epoch.
    pub async fn write_on(
        &self,
        store: u64,
        region: u64,
        modifies: Vec<Modify>,
        timeout: Duration,
    ) -> Outcome<()> {
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        let info = self
            .region_info(store, region)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(region)))?;
        attempt(timeout, router.write(header_of(&info.region), modifies)).await
    }

    /// One linearizable read of `key` from `store`'s peer of `region`.
    pub async fn read_on(
        &self,
        store: u64,
        region: u64,
        key: &[u8],
        timeout: Duration,
    ) -> Outcome<Option<Vec<u8>>> {
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        let info = self
            .region_info(store, region)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(region)))?;
        let resp = attempt(timeout, router.read(header_of(&info.region))).await?;
        resp.snapshot
            .get_cf(CF_DEFAULT, &data_key(key))
            .map_err(|e| Failure::Raft(Error::Engine(e.to_string())))
    }

    /// One follower (replica) read of `key` from `store`'s peer of `region`: the peer asks the
    /// leader for a read index and answers once it applied up to it.
    pub async fn replica_read_on(
        &self,
        store: u64,
        region: u64,
        key: &[u8],
        timeout: Duration,
    ) -> Outcome<Option<Vec<u8>>> {
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        let info = self
            .region_info(store, region)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(region)))?;
        let header = CmdHeader {
            replica_read: true,
            ..header_of(&info.region)
        };
        let resp = attempt(timeout, router.read(header)).await?;
        resp.snapshot
            .get_cf(CF_DEFAULT, &data_key(key))
            .map_err(|e| Failure::Raft(Error::Engine(e.to_string())))
    }

    /// One write to the current leader.
    pub async fn try_write(&self, modifies: Vec<Modify>) -> Outcome<()> {
        self.try_write_in(REGION, modifies).await
    }

    /// One write to the current leader of `region`.
    pub async fn try_write_in(&self, region: u64, modifies: Vec<Modify>) -> Outcome<()> {
        let Some((store, _)) = self.leader(region).await else {
            return Err(Failure::Raft(Error::NotLeader {
                region_id: region,
                leader: None,
            }));
        };
        self.write_on(store, region, modifies, ATTEMPT_TIMEOUT).await
    }

    /// Writes until acknowledged (retrying leader changes, epoch changes and timeouts).
    pub async fn must_write(&self, modifies: Vec<Modify>) {
        self.must_write_in(REGION, modifies).await
    }

    /// [`Client::must_write`] to `region`.
    pub async fn must_write_in(&self, region: u64, modifies: Vec<Modify>) {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let last = match self.try_write_in(region, modifies.clone()).await {
                Ok(()) => return,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "write never acknowledged; last error {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_write(vec![put(key, value)]).await
    }

    /// Linearizable read through the current leader, retried until it is answered.
    pub async fn must_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let last = match self.leader(REGION).await {
                Some((store, _)) => match self.read_on(store, REGION, key, ATTEMPT_TIMEOUT).await {
                    Ok(v) => return v,
                    Err(e) => format!("{e:?}"),
                },
                None => "no leader".to_owned(),
            };
            assert!(
                Instant::now() < deadline,
                "read never answered; last error {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One membership change proposed to the current leader with its current epoch.
    pub async fn change_peer(&self, region: u64, changes: Vec<PeerChange>) -> Outcome<()> {
        let Some((store, info)) = self.leader(region).await else {
            return Err(Failure::Raft(Error::NotLeader {
                region_id: region,
                leader: None,
            }));
        };
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        attempt(
            ATTEMPT_TIMEOUT,
            router.change_peer(header_of(&info.region), changes),
        )
        .await
    }

    /// Retries a membership change until it is applied. A retry of a change that was applied
    /// meanwhile is answered at once (the region already is as asked).
    pub async fn must_change_peer(&self, region: u64, changes: Vec<PeerChange>) {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let last = match self.change_peer(region, changes.clone()).await {
                Ok(()) => return,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "conf change {changes:?} never applied; last error {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader's view of `region`.
    pub async fn leader_region(&self, region: u64) -> metapb::Region {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            if let Some((_, info)) = self.leader(region).await {
                return info.region;
            }
            assert!(Instant::now() < deadline, "region {region} has no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The peer of `region` on `store`, as the leader knows it.
    pub async fn peer_on(&self, region: u64, store: u64) -> Option<metapb::Peer> {
        self.leader_region(region)
            .await
            .peers
            .into_iter()
            .find(|p| p.store_id == store)
    }

    /// Waits until `store` holds an initialized peer of `region` for which `pred` holds.
    pub async fn wait_region_on(
        &self,
        store: u64,
        region: u64,
        desc: &str,
        pred: impl Fn(&RegionInfo) -> bool,
    ) -> RegionInfo {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            if let Some(info) = self.region_info(store, region).await {
                if pred(&info) {
                    return info;
                }
            }
            assert!(
                Instant::now() < deadline,
                "store {store} never had region {region} with {desc}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `store` no longer holds a peer of `region`.
    pub async fn wait_region_gone(&self, store: u64, region: u64) {
        wait_for(
            &format!("store {store} drops region {region}"),
            MUST_TIMEOUT,
            || async { self.region_info(store, region).await.is_none() },
        )
        .await
    }

    /// Adds a learner on `store` and waits until it was created there from the leader's
    /// messages and initialized (by snapshot).
    pub async fn must_add_learner(&self, region: u64, store: u64) -> metapb::Peer {
        let peer = match self.peer_on(region, store).await {
            Some(p) => p,
            None => self.alloc_peer(store),
        };
        self.must_change_peer(region, vec![PeerChange::AddLearner(peer)])
            .await;
        self.wait_region_on(store, region, "the new learner initialized", |i| {
            i.region.peers.iter().any(|p| p.id == peer.id)
        })
        .await;
        peer
    }

    /// Adds a voter on `store`: first as a learner that catches up, then promoted.
    pub async fn must_add_peer(&self, region: u64, store: u64) -> metapb::Peer {
        let peer = self.must_add_learner(region, store).await;
        self.must_change_peer(region, vec![PeerChange::AddVoter(peer)])
            .await;
        peer
    }

    /// Removes the peer of `region` on `store` (which must not lead it).
    pub async fn must_remove_peer(&self, region: u64, store: u64) -> metapb::Peer {
        let peer = self
            .peer_on(region, store)
            .await
            .unwrap_or_else(|| panic!("store {store} has no peer of region {region}"));
        self.must_change_peer(region, vec![PeerChange::Remove(peer)])
            .await;
        peer
    }

    /// Moves leadership of `region` to its peer on `store`, retrying the transfer (raft-rs
    /// abandons one that does not finish within an election timeout).
    pub async fn must_transfer_leader(&self, region: u64, store: u64) {
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            let (leader, info) = match self.leader(region).await {
                Some(l) => l,
                None => {
                    assert!(Instant::now() < deadline, "region {region} has no leader");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if leader == store {
                return;
            }
            let target = info
                .region
                .peers
                .iter()
                .find(|p| p.store_id == store)
                .copied()
                .unwrap_or_else(|| panic!("store {store} has no peer of region {region}"));
            if let Some(router) = self.router(leader) {
                let _ = attempt(
                    ATTEMPT_TIMEOUT,
                    router.transfer_leader(header_of(&info.region), target),
                )
                .await;
            }
            // Give the transfer up to a few election timeouts to finish before asking again.
            let until = Instant::now() + Duration::from_millis(800);
            while Instant::now() < until {
                if let Some((now, _)) = self.leader(region).await {
                    if now == store {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                Instant::now() < deadline,
                "leadership of region {region} never moved to store {store}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent writer
// ---------------------------------------------------------------------------------------------

/// Acknowledged (key, value) pairs.
pub type Acked = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes `prefix` + sequence number keys one after another, retrying each until it is
/// acknowledged; remembers what was acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(client: Client, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let prefix = prefix.to_owned();
        let task = {
            let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}{i:06}").into_bytes();
                    let value = format!("value-{i}").into_bytes();
                    match client.try_write(vec![put(&key, &value)]).await {
                        Ok(()) => {
                            acked.lock().expect("acked lock").push((key, value));
                            i += 1;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            errors,
            task,
        }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Waits until `more` writes beyond those acknowledged now are acknowledged.
    pub async fn wait_more(&self, more: usize) {
        let target = self.acked_count() + more;
        wait_until(
            &format!("the writer has {target} acknowledged writes"),
            MUST_TIMEOUT,
            || self.acked_count() >= target,
        )
        .await
    }

    /// Stops the writer and returns every acknowledged (key, value).
    pub async fn stop(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task");
        std::mem::take(&mut *self.acked.lock().expect("acked lock"))
    }
}

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
        slot.events = Some(rx);
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
