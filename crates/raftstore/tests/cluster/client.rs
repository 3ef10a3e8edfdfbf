//! Talking to the cluster's stores: finding leaders, single attempts and retrying requests,
//! membership changes, and a concurrent writer that records what was acknowledged.

use super::*;
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

pub(super) async fn attempt<T>(
    timeout: Duration,
    f: impl Future<Output = raftstore::Result<T>>,
) -> Outcome<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Error::ShuttingDown)) => Err(Failure::StoreDown),
        Ok(Err(e)) => Err(Failure::Raft(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

pub(super) fn header_of(region: &metapb::Region) -> CmdHeader {
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

/// Retries `attempt` every 20 ms until it succeeds and returns its value; fails the test with
/// `desc` and the last error after [`MUST_TIMEOUT`].
pub async fn retry_ok<T, E, F, Fut>(desc: &str, mut attempt: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let deadline = Instant::now() + MUST_TIMEOUT;
    loop {
        let last = match attempt().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "{desc}; last error {last:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    pub(super) next_peer_id: Arc<AtomicU64>,
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
        self.get_on(store, region, key, timeout, false).await
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
        self.get_on(store, region, key, timeout, true).await
    }

    async fn get_on(
        &self,
        store: u64,
        region: u64,
        key: &[u8],
        timeout: Duration,
        replica_read: bool,
    ) -> Outcome<Option<Vec<u8>>> {
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        let info = self
            .region_info(store, region)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(region)))?;
        let header = CmdHeader {
            replica_read,
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
        retry_ok("write never acknowledged", || {
            self.try_write_in(region, modifies.clone())
        })
        .await
    }

    pub async fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_write(vec![put(key, value)]).await
    }

    /// Linearizable read through the current leader, retried until it is answered.
    pub async fn must_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        retry_ok("read never answered", || async {
            match self.leader(REGION).await {
                Some((store, _)) => self.read_on(store, REGION, key, ATTEMPT_TIMEOUT).await,
                None => Err(Failure::Raft(Error::NotLeader {
                    region_id: REGION,
                    leader: None,
                })),
            }
        })
        .await
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
        let desc = format!("conf change {changes:?} never applied");
        retry_ok(&desc, || self.change_peer(region, changes.clone())).await
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
                    match client.try_write_key(&key, vec![put(&key, &value)]).await {
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
