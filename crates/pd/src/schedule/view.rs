//! The cluster as the schedulers and checkers see it: a snapshot of the stores (state,
//! location, weights, space, region and leader counts and sizes, pending operators' influence,
//! store-limit tokens) and of the regions, taken once per scheduling round.
//!
//! Schedulers are pure functions of a [`ScheduleView`]; they update the view's influence as
//! they make operators so that one round does not pile every move on the same pair of stores.
//!
//! Invariant: a region's size counts at least 1 MiB here (PD's approximate size of a small or
//! just-created region), so that counts and sizes agree on tiny regions.

use std::collections::{BTreeMap, HashSet};

use atoll_proto::metapb;

use super::operator::{OpStep, Operator};
use super::placement;
use super::score;
use super::store_limit::{self, LimitType};
use crate::region_info::RegionInfo;
use crate::store_info::{StoreStateName, StoreWeight};

/// The effect of pending operators on a store (PD's `StoreInfluence`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Influence {
    pub region_count: f64,
    pub region_size: f64,
    pub leader_count: f64,
    pub leader_size: f64,
}

/// One store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreView {
    pub id: u64,
    pub state: StoreStateName,
    /// Values of `location-labels`, in order.
    pub location: Vec<String>,
    pub weight: StoreWeight,
    pub capacity: u64,
    pub available: u64,
    pub region_count: usize,
    pub leader_count: usize,
    /// MiB.
    pub region_size: f64,
    pub leader_size: f64,
    pub pending_peers: usize,
    pub influence: Influence,
    /// Store-limit tokens left (`f64::INFINITY` = unlimited).
    pub add_tokens: f64,
    pub remove_tokens: f64,
}

impl StoreView {
    /// A store with nothing on it, Up, unlimited, without labels (tests and fresh stores).
    pub fn new(id: u64, state: StoreStateName) -> StoreView {
        StoreView {
            id,
            state,
            location: Vec::new(),
            weight: StoreWeight::default(),
            capacity: 0,
            available: 0,
            region_count: 0,
            leader_count: 0,
            region_size: 0.0,
            leader_size: 0.0,
            pending_peers: 0,
            influence: Influence::default(),
            add_tokens: f64::INFINITY,
            remove_tokens: f64::INFINITY,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == StoreStateName::Up
    }

    /// Leader score by count or size policy, with `delta` added.
    pub fn leader_score(&self, by_size: bool, delta: f64) -> f64 {
        let base = if by_size {
            self.leader_size
        } else {
            self.leader_count as f64
        };
        score::leader_score(base, self.weight.leader, delta)
    }

    /// Region score with `delta` MiB added.
    pub fn region_score(&self, low_space_ratio: f64, delta: f64) -> f64 {
        score::region_score(
            self.region_size,
            self.capacity,
            self.available,
            low_space_ratio,
            self.weight.region,
            delta,
        )
    }

    pub fn tokens(&self, typ: LimitType) -> f64 {
        match typ {
            LimitType::AddPeer => self.add_tokens,
            LimitType::RemovePeer => self.remove_tokens,
        }
    }
}

/// The region's size as scheduling counts it (at least 1 MiB).
pub fn region_size(r: &RegionInfo) -> f64 {
    r.approximate_size.max(1) as f64
}

/// The snapshot a scheduling round works on.
#[derive(Debug, Clone, Default)]
pub struct ScheduleView {
    pub stores: BTreeMap<u64, StoreView>,
    /// Every region, in key order.
    pub regions: Vec<RegionInfo>,
    /// Regions that have an operator (or got one in this round).
    pub busy: HashSet<u64>,
    /// The isolation level as an index into the locations.
    pub isolation: Option<usize>,
}

fn role(p: &metapb::Peer) -> metapb::PeerRole {
    metapb::PeerRole::try_from(p.role).unwrap_or(metapb::PeerRole::Voter)
}

impl ScheduleView {
    /// Fills each store's counts and sizes from `regions` (replacing what was there).
    pub fn count_regions(&mut self) {
        for s in self.stores.values_mut() {
            s.region_count = 0;
            s.leader_count = 0;
            s.region_size = 0.0;
            s.leader_size = 0.0;
            s.pending_peers = 0;
        }
        for r in &self.regions {
            let size = region_size(r);
            for p in &r.meta.peers {
                if let Some(s) = self.stores.get_mut(&p.store_id) {
                    s.region_count += 1;
                    s.region_size += size;
                    if r.pending_peers.iter().any(|x| x.id == p.id) {
                        s.pending_peers += 1;
                    }
                }
            }
            if let Some(s) = r.leader.and_then(|l| self.stores.get_mut(&l.store_id)) {
                s.leader_count += 1;
                s.leader_size += size;
            }
        }
    }

    /// Adds the unfinished steps of `op` to the stores' influence (PD's `UnfinishedInfluence`)
    /// and marks its region busy.
    pub fn add_influence(&mut self, op: &Operator) {
        self.busy.insert(op.region_id());
        let size = op.approximate_size().max(1) as f64;
        for step in &op.steps()[op.current_step().min(op.steps().len())..] {
            match *step {
                OpStep::AddLearner { store_id, .. } => {
                    if let Some(s) = self.stores.get_mut(&store_id) {
                        s.influence.region_count += 1.0;
                        s.influence.region_size += size;
                    }
                }
                OpStep::RemovePeer { store_id } => {
                    if let Some(s) = self.stores.get_mut(&store_id) {
                        s.influence.region_count -= 1.0;
                        s.influence.region_size -= size;
                    }
                }
                OpStep::TransferLeader { from_store, to_store } => {
                    if let Some(s) = self.stores.get_mut(&from_store) {
                        s.influence.leader_count -= 1.0;
                        s.influence.leader_size -= size;
                    }
                    if let Some(s) = self.stores.get_mut(&to_store) {
                        s.influence.leader_count += 1.0;
                        s.influence.leader_size += size;
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes `op`'s store-limit costs from the view's tokens if all are there.
    pub fn take_tokens(&mut self, op: &Operator) -> bool {
        let mut need: BTreeMap<(u64, LimitType), f64> = BTreeMap::new();
        for (s, t, c) in store_limit::operator_costs(op) {
            *need.entry((s, t)).or_default() += c;
        }
        let ok = need
            .iter()
            .all(|((s, t), c)| self.stores.get(s).is_none_or(|st| st.tokens(*t) >= *c));
        if !ok {
            return false;
        }
        for ((s, t), c) in need {
            if let Some(st) = self.stores.get_mut(&s) {
                match t {
                    LimitType::AddPeer => st.add_tokens -= c,
                    LimitType::RemovePeer => st.remove_tokens -= c,
                }
            }
        }
        true
    }

    /// Locations of the stores of `region`'s peers, except those on `exclude`.
    pub fn peer_locations(&self, region: &RegionInfo, exclude: &[u64]) -> Vec<&[String]> {
        region
            .meta
            .peers
            .iter()
            .filter(|p| !exclude.contains(&p.store_id))
            .filter_map(|p| self.stores.get(&p.store_id))
            .map(|s| s.location.as_slice())
            .collect()
    }

    /// The distinct score `store` has (or would have) among `region`'s other peers, not
    /// counting the peers on `exclude`.
    pub fn distinct_score(&self, region: &RegionInfo, store: u64, exclude: &[u64]) -> f64 {
        let Some(s) = self.stores.get(&store) else {
            return 0.0;
        };
        let mut skip = exclude.to_vec();
        skip.push(store);
        placement::distinct_score(&self.peer_locations(region, &skip), &s.location)
    }

    /// Whether `store` keeps `region`'s peers (but those on `exclude`) isolated.
    pub fn is_isolated(&self, region: &RegionInfo, store: u64, exclude: &[u64]) -> bool {
        let Some(s) = self.stores.get(&store) else {
            return false;
        };
        let mut skip = exclude.to_vec();
        skip.push(store);
        placement::is_isolated(&self.peer_locations(region, &skip), &s.location, self.isolation)
    }

    /// A region every scheduler may touch: a known leader, no pending or down peer, no joint
    /// state, exactly `max_replicas` voters and no learner, no operator.
    pub fn is_healthy(&self, r: &RegionInfo, max_replicas: usize) -> bool {
        r.leader.is_some()
            && !self.busy.contains(&r.id())
            && r.pending_peers.is_empty()
            && r.down_peers.is_empty()
            && r.meta.peers.len() == max_replicas
            && r.meta.peers.iter().all(|p| role(p) == metapb::PeerRole::Voter)
    }

    /// The largest region and leader counts over the stores.
    pub fn max_counts(&self) -> (usize, usize) {
        let regions = self.stores.values().map(|s| s.region_count).max().unwrap_or(0);
        let leaders = self.stores.values().map(|s| s.leader_count).max().unwrap_or(0);
        (regions, leaders)
    }

    /// The average region size (MiB, at least 1).
    pub fn average_region_size(&self) -> f64 {
        if self.regions.is_empty() {
            return 1.0;
        }
        let total: f64 = self.regions.iter().map(region_size).sum();
        (total / self.regions.len() as f64).max(1.0)
    }
}
