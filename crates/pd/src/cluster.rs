//! The cluster's metadata: bootstrap state, cluster meta, stores and the region tree.
//!
//! Invariants: every change is persisted before it becomes visible (regions without fsync, see
//! [`MetaStorage::save_regions`]); the in-memory state is exactly what a restart would load,
//! plus runtime-only information (leaders, stats, heartbeat times).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use atoll_proto::{metapb, pdpb};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::id_alloc::IdAllocator;
use crate::region_info::RegionInfo;
use crate::region_tree::RegionTree;
use crate::storage::MetaStorage;
use crate::store_info::{unix_nanos, StoreInfo, StoreStateName};

mod stores;

pub use stores::StoreChangeError;

/// A store's heartbeat time is persisted at most this often.
const STORE_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

struct State {
    /// `Some` iff bootstrapped.
    meta: Option<metapb::Cluster>,
    stores: BTreeMap<u64, StoreInfo>,
    regions: RegionTree,
}

/// Per-store region statistics derived from the region tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreRegionStats {
    pub region_count: usize,
    pub leader_count: usize,
    pub learner_count: usize,
    pub pending_peer_count: usize,
    /// MiB.
    pub region_size: i64,
    /// MiB.
    pub leader_size: i64,
}

/// What a region heartbeat did to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The region was stored (new, changed, or refreshed).
    Applied,
    /// The report was older than PD's knowledge and was ignored.
    Stale,
    /// The report came from a tombstone store and was ignored.
    FromTombstone,
}

/// The cluster metadata owner.
pub struct Cluster {
    cluster_id: u64,
    /// `[replication] max-replicas`, which the cluster meta's `max_peer_count` follows.
    max_replicas: AtomicU32,
    storage: MetaStorage,
    id_alloc: Arc<IdAllocator>,
    state: RwLock<State>,
}

fn check_bootstrap_request(store: Option<&metapb::Store>, region: Option<&metapb::Region>) -> Result<()> {
    let store = store.ok_or_else(|| Error::InvalidRequest("missing store meta for bootstrap".into()))?;
    if store.id == 0 {
        return Err(Error::InvalidRequest("invalid zero store id".into()));
    }
    let region = region.ok_or_else(|| Error::InvalidRequest("missing region meta for bootstrap".into()))?;
    if region.id == 0 {
        return Err(Error::InvalidRequest("invalid zero region id".into()));
    }
    // PD also requires an empty end key and exactly one peer; Atoll nodes may bootstrap an
    // already pre-split first region, or with several peers, so only the start is checked.
    if !region.start_key.is_empty() {
        return Err(Error::InvalidRequest(
            "invalid first region key range, start key must be empty".into(),
        ));
    }
    if region.peers.is_empty() {
        return Err(Error::InvalidRequest("invalid first region peer count 0".into()));
    }
    if region.peers.iter().any(|p| p.id == 0) {
        return Err(Error::InvalidRequest("invalid zero peer id".into()));
    }
    if !region.peers.iter().any(|p| p.store_id == store.id) {
        return Err(Error::InvalidRequest(format!(
            "first region has no peer on store {}",
            store.id
        )));
    }
    Ok(())
}

/// PD's `checkSplitRegions`: adjacent, ordered, non-empty ranges.
fn check_split_regions(regions: &[metapb::Region]) -> Result<()> {
    if regions.len() <= 1 {
        return Err(Error::InvalidRequest("invalid split region".into()));
    }
    for w in regions.windows(2) {
        let (left, right) = (&w[0], &w[1]);
        if left.end_key != right.start_key || (!right.end_key.is_empty() && left.start_key >= right.end_key) {
            return Err(Error::InvalidRequest("invalid split region".into()));
        }
    }
    Ok(())
}

impl Cluster {
    /// Loads the cluster from `storage`.
    pub fn load(
        cluster_id: u64,
        max_replicas: u32,
        storage: MetaStorage,
        id_alloc: Arc<IdAllocator>,
        now: SystemTime,
    ) -> Result<Cluster> {
        let meta = storage.load_cluster_meta()?;
        let stores: BTreeMap<u64, StoreInfo> = storage
            .load_stores()?
            .into_iter()
            .map(|s| (s.id, StoreInfo::new(s, now)))
            .collect();
        let mut regions = RegionTree::new();
        for r in storage.load_regions()? {
            let info = RegionInfo::from_meta(r);
            // Persisted regions never overlap unless a crash lost a deletion: keep the newest.
            if regions.check(&info).is_ok() {
                regions.put(info);
            }
        }
        tracing::info!(
            bootstrapped = meta.is_some(),
            stores = stores.len(),
            regions = regions.len(),
            "loaded cluster metadata"
        );
        let cluster = Cluster {
            cluster_id,
            max_replicas: AtomicU32::new(max_replicas),
            storage,
            id_alloc,
            state: RwLock::new(State {
                meta,
                stores,
                regions,
            }),
        };
        cluster.load_weights()?;
        Ok(cluster)
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.state.read().meta.is_some()
    }

    fn ensure_bootstrapped(st: &State) -> Result<()> {
        if st.meta.is_none() {
            return Err(Error::NotBootstrapped);
        }
        Ok(())
    }

    /// Bootstraps the cluster with its first store and region.
    pub fn bootstrap(&self, store: Option<&metapb::Store>, region: Option<&metapb::Region>) -> Result<()> {
        let mut st = self.state.write();
        if st.meta.is_some() {
            return Err(Error::AlreadyBootstrapped);
        }
        check_bootstrap_request(store, region)?;
        let (Some(store), Some(region)) = (store, region) else {
            return Err(Error::InvalidRequest("missing bootstrap meta".into()));
        };
        let meta = metapb::Cluster {
            id: self.cluster_id,
            max_peer_count: self.max_replicas.load(Ordering::Relaxed),
        };
        let now = SystemTime::now();
        let mut store = store.clone();
        if store.node_state == metapb::NodeState::Preparing as i32 {
            store.node_state = metapb::NodeState::Serving as i32;
        }
        self.storage
            .save_bootstrap(&meta, &store, region, unix_nanos(now) as u64)?;
        tracing::info!(
            cluster_id = self.cluster_id,
            store = store.id,
            region = region.id,
            "bootstrapped cluster"
        );
        st.stores.insert(store.id, StoreInfo::new(store, now));
        let info = RegionInfo::from_meta(region.clone());
        let out = st.regions.put(info);
        if !out.removed.is_empty() {
            let ids: Vec<u64> = out.removed.iter().map(|r| r.id()).collect();
            self.storage.save_regions(&[], &ids)?;
        }
        st.meta = Some(meta);
        Ok(())
    }

    pub fn cluster_meta(&self) -> Result<metapb::Cluster> {
        self.state.read().meta.ok_or(Error::NotBootstrapped)
    }

    /// The cluster meta, or what it will be once bootstrapped (for the HTTP API).
    pub fn cluster_meta_or_default(&self) -> metapb::Cluster {
        self.state.read().meta.unwrap_or(metapb::Cluster {
            id: self.cluster_id,
            max_peer_count: self.max_replicas.load(Ordering::Relaxed),
        })
    }

    /// Follows a change of `max-replicas`: the cluster meta's `max_peer_count` (persisted if
    /// bootstrapped) and the value a later bootstrap uses.
    pub fn set_max_replicas(&self, max_replicas: u32) -> Result<()> {
        let mut st = self.state.write();
        self.max_replicas.store(max_replicas, Ordering::Relaxed);
        if let Some(meta) = st.meta.as_mut() {
            if meta.max_peer_count != max_replicas {
                let updated = metapb::Cluster {
                    max_peer_count: max_replicas,
                    ..*meta
                };
                self.storage.save_cluster_meta(&updated)?;
                *meta = updated;
            }
        }
        Ok(())
    }

    pub fn put_cluster_meta(&self, meta: metapb::Cluster) -> Result<()> {
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        if meta.id != self.cluster_id {
            return Err(Error::InvalidRequest(format!(
                "invalid cluster {meta:?}, mismatch cluster id {}",
                self.cluster_id
            )));
        }
        self.storage.save_cluster_meta(&meta)?;
        st.meta = Some(meta);
        Ok(())
    }

    /// Registers or updates a store (PD's `PutMetaStore`).
    pub fn put_store(&self, store: &metapb::Store) -> Result<()> {
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        if let Some(s) = st.stores.get(&store.id) {
            if s.is_tombstone() {
                return Err(Error::StoreTombstone(store.id));
            }
        }
        if store.id == 0 {
            return Err(Error::InvalidRequest(format!("invalid put store {store:?}")));
        }
        for s in st.stores.values() {
            if s.is_tombstone() || s.meta.physically_destroyed || s.id() == store.id {
                continue;
            }
            let (addr, peer_addr) = (&s.meta.address, &s.meta.peer_address);
            if store.address == *addr || (!peer_addr.is_empty() && store.address == *peer_addr) {
                return Err(Error::InvalidRequest(format!(
                    "duplicated store address: {store:?}, already registered by {:?}",
                    s.meta
                )));
            }
            if !store.peer_address.is_empty()
                && (store.peer_address == *addr || store.peer_address == *peer_addr)
            {
                return Err(Error::InvalidRequest(format!(
                    "duplicated store peer address: {store:?}, already registered by {:?}",
                    s.meta
                )));
            }
        }
        let now = SystemTime::now();
        let updated = match st.stores.get(&store.id) {
            Some(old) => {
                let mut s = old.clone();
                s.meta.address = store.address.clone();
                s.meta.status_address = store.status_address.clone();
                s.meta.peer_address = store.peer_address.clone();
                s.meta.version = store.version.clone();
                s.meta.git_hash = store.git_hash.clone();
                s.meta.start_timestamp = store.start_timestamp;
                s.meta.deploy_path = store.deploy_path.clone();
                s.merge_labels(&store.labels);
                s
            }
            None => {
                let mut meta = store.clone();
                meta.state = metapb::StoreState::Up as i32;
                meta.node_state = metapb::NodeState::Serving as i32;
                StoreInfo::new(meta, now)
            }
        };
        self.storage.save_store(&updated.meta)?;
        tracing::info!(store = ?updated.meta, "put store ok");
        st.stores.insert(store.id, updated);
        Ok(())
    }

    pub fn get_store(&self, id: u64) -> Result<StoreInfo> {
        let st = self.state.read();
        Self::ensure_bootstrapped(&st)?;
        st.stores.get(&id).cloned().ok_or(Error::StoreNotFound(id))
    }

    /// Every store's state name (as the HTTP API shows it) at `now`.
    pub fn store_states(&self, now: SystemTime, max_down_time: Duration) -> BTreeMap<u64, StoreStateName> {
        self.state
            .read()
            .stores
            .iter()
            .map(|(id, s)| (*id, s.state_name(now, max_down_time)))
            .collect()
    }

    /// Every store in id order.
    pub fn stores(&self) -> Vec<StoreInfo> {
        self.state.read().stores.values().cloned().collect()
    }

    pub fn store_metas(&self, exclude_tombstone: bool) -> Result<Vec<metapb::Store>> {
        let st = self.state.read();
        Self::ensure_bootstrapped(&st)?;
        Ok(st
            .stores
            .values()
            .filter(|s| !(exclude_tombstone && s.is_tombstone()))
            .map(|s| s.meta.clone())
            .collect())
    }

    /// Records a store heartbeat.
    pub fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<()> {
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        let id = stats.store_id;
        let Some(store) = st.stores.get_mut(&id) else {
            return Err(Error::InvalidRequest(format!("store {id} not found")));
        };
        if store.is_tombstone() {
            return Err(Error::StoreTombstone(id));
        }
        let now = SystemTime::now();
        store.heartbeat(stats, now);
        let persist = store
            .last_persisted_heartbeat
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= STORE_PERSIST_INTERVAL);
        if persist {
            self.storage.save_store(&store.meta)?;
            store.last_persisted_heartbeat = Some(now);
        }
        Ok(())
    }

    /// Applies a leader's region heartbeat to the tree.
    pub fn region_heartbeat(&self, req: &pdpb::RegionHeartbeatRequest) -> Result<HeartbeatOutcome> {
        let Some(leader) = req.leader else {
            return Err(Error::InvalidRequest(format!("invalid request leader, {req:?}")));
        };
        let region = RegionInfo::from_heartbeat(req);
        if region.id() == 0 {
            return Err(Error::InvalidRequest(format!("invalid request region, {req:?}")));
        }
        if region.meta.peers.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "invalid region {}, zero region peer count",
                region.id()
            )));
        }
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        if st.stores.get(&leader.store_id).is_some_and(|s| s.is_tombstone()) {
            return Ok(HeartbeatOutcome::FromTombstone);
        }
        self.apply_region(&mut st, region)
    }

    /// Checks, then stores `region`, persisting its meta if it changed.
    fn apply_region(&self, st: &mut State, mut region: RegionInfo) -> Result<HeartbeatOutcome> {
        if let Err(e) = st.regions.check(&region) {
            tracing::debug!(error = %e, "ignored stale region report");
            return Ok(HeartbeatOutcome::Stale);
        }
        let origin = st.regions.get(region.id()).cloned();
        if let Some(o) = &origin {
            region.inherit(o);
        }
        let meta_changed = origin.as_ref().is_none_or(|o| o.meta != region.meta);
        let overlapped: Vec<u64> = if origin.as_ref().is_none_or(|o| !o.same_range(&region)) {
            st.regions.overlaps(&region).iter().map(|r| r.id()).collect()
        } else {
            Vec::new()
        };
        if meta_changed || !overlapped.is_empty() {
            let put: Vec<&metapb::Region> = if meta_changed {
                vec![&region.meta]
            } else {
                Vec::new()
            };
            self.storage.save_regions(&put, &overlapped)?;
        }
        let out = st.regions.put(region);
        for r in &out.removed {
            tracing::debug!(region = r.id(), "region removed by an overlapping newer region");
        }
        Ok(HeartbeatOutcome::Applied)
    }

    fn read_bootstrapped(&self) -> Result<parking_lot::RwLockReadGuard<'_, State>> {
        let st = self.state.read();
        Self::ensure_bootstrapped(&st)?;
        Ok(st)
    }

    pub fn region_by_key(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        Ok(self.read_bootstrapped()?.regions.search(key).cloned())
    }

    pub fn prev_region_by_key(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        Ok(self.read_bootstrapped()?.regions.search_prev(key).cloned())
    }

    pub fn region_by_id(&self, id: u64) -> Result<Option<RegionInfo>> {
        Ok(self.read_bootstrapped()?.regions.get(id).cloned())
    }

    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: i32) -> Result<Vec<RegionInfo>> {
        Ok(self
            .read_bootstrapped()?
            .regions
            .scan(start, end, limit)
            .into_iter()
            .cloned()
            .collect())
    }

    /// Every region in key order (empty before bootstrap).
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.state.read().regions.iter().cloned().collect()
    }

    pub fn region_count(&self) -> usize {
        self.state.read().regions.len()
    }

    /// Region, leader, learner and pending-peer counts per store.
    pub fn store_region_stats(&self) -> HashMap<u64, StoreRegionStats> {
        let st = self.state.read();
        let mut out: HashMap<u64, StoreRegionStats> = HashMap::new();
        for r in st.regions.iter() {
            for p in &r.meta.peers {
                let e = out.entry(p.store_id).or_default();
                e.region_count += 1;
                e.region_size += r.approximate_size;
                if p.role == metapb::PeerRole::Learner as i32 {
                    e.learner_count += 1;
                }
                if r.pending_peers.iter().any(|x| x.id == p.id) {
                    e.pending_peer_count += 1;
                }
            }
            if let Some(l) = r.leader {
                let e = out.entry(l.store_id).or_default();
                e.leader_count += 1;
                e.leader_size += r.approximate_size;
            }
        }
        out
    }

    /// PD's `ValidRegion`: the region exists (by its start key) and the request's epoch is not
    /// older than PD's.
    fn validate_region(st: &State, region: &metapb::Region) -> Result<()> {
        let Some(cur) = st.regions.search(&region.start_key) else {
            return Err(Error::InvalidRequest(format!(
                "region not found, request region: {}",
                region.id
            )));
        };
        let (req, have) = (region.region_epoch.unwrap_or_default(), cur.epoch());
        if req.version < have.version || req.conf_ver < have.conf_ver {
            return Err(Error::InvalidRequest(format!(
                "invalid region epoch, request: {req:?}, current: {have:?}"
            )));
        }
        Ok(())
    }

    /// Allocates ids for splitting `region` in two: a region id and one peer id per peer.
    pub fn ask_split(&self, region: &metapb::Region) -> Result<(u64, Vec<u64>)> {
        Self::validate_region(&*self.read_bootstrapped()?, region)?;
        let new_region_id = self.id_alloc.alloc()?;
        let peer_ids = self.id_alloc.alloc_n(region.peers.len())?;
        tracing::info!(
            region = region.id,
            new_region_id,
            ?peer_ids,
            "alloc ids for region split"
        );
        Ok((new_region_id, peer_ids))
    }

    /// Allocates ids for splitting `region` into `count + 1` regions.
    pub fn ask_batch_split(&self, region: &metapb::Region, count: u32) -> Result<Vec<pdpb::SplitId>> {
        Self::validate_region(&*self.read_bootstrapped()?, region)?;
        let mut ids = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let new_region_id = self.id_alloc.alloc()?;
            let new_peer_ids = self.id_alloc.alloc_n(region.peers.len())?;
            ids.push(pdpb::SplitId {
                new_region_id,
                new_peer_ids,
            });
        }
        tracing::info!(region = region.id, ?ids, "alloc ids for region batch split");
        Ok(ids)
    }

    /// Applies a finished split reported by the leader, so routing sees the new regions before
    /// their first heartbeat. New regions inherit the leader's store from the parent.
    pub fn report_split(&self, regions: &[metapb::Region]) -> Result<()> {
        check_split_regions(regions)?;
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        let leader_store = regions
            .iter()
            .filter_map(|r| st.regions.get(r.id))
            .chain(regions.first().and_then(|r| st.regions.search(&r.start_key)))
            .find_map(|r| r.leader.map(|l| l.store_id));
        for meta in regions {
            let mut info = RegionInfo::from_meta(meta.clone());
            if let Some(store_id) = leader_store {
                info.leader = info.peer_on_store(store_id).copied();
            }
            self.apply_region(&mut st, info)?;
        }
        tracing::info!(count = regions.len(), "region split reported");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
