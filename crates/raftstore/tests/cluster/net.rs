//! The in-memory network between the cluster's stores: filters (partition, isolate, drop,
//! delay, capture, lossy), delivery and delayed delivery, snapshot file transfer, and the
//! per-store [`Transport`].

use super::*;
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
    pub(super) routers: RwLock<HashMap<u64, StoreRouter>>,
    pub(super) snap_mgrs: RwLock<HashMap<u64, SnapManager>>,
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
    pub(super) fn new() -> Arc<Net> {
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
    pub(super) store_id: u64,
    pub(super) net: Arc<Net>,
    pub(super) registered: bool,
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
