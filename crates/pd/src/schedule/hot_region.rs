//! `balance-hot-region-scheduler`: a pure function from a [`ScheduleView`] and the hot regions
//! ([`super::hot_cache`]) to operators that spread write and read load over the stores.
//!
//! Loads are byte rates summed per store over the hot regions: for writes every peer carries
//! the region's write load (each replica applies every write) and the leader also carries it as
//! leader load; for reads only the leader does. In order, it tries:
//! 1. `move-hot-write-peer`: a hot region's peer from the store with the highest write load to
//!    an Up store with a lower one (same target rules as balance-region: not holding the
//!    region, isolated, distinct score not lower, store-limit tokens);
//! 2. `move-hot-write-leader`: a hot region's leadership from the store with the highest
//!    leader write load to the follower store with the lowest one;
//! 3. `move-hot-read-leader`: the same for read load.
//!
//! A move of rate `r` from load `s` to load `t` happens only if `t + r ≤ s − r` (the two stores
//! do not swap places) and `s > 1.05 t` — so a spread load gets no operator and nothing moves
//! back and forth. The biggest region that fits moves first.

use std::collections::BTreeMap;

use super::builder;
use super::hot_cache::HotRegionStat;
use super::operator::{OpKind, Operator};
use super::store_limit::{self, LimitType};
use super::view::{region_size, ScheduleView, StoreView};
use crate::region_info::RegionInfo;

pub use super::hot_cache::HotKind;

/// PD's minimum ratio between a source's and a target's load.
const TOLERANCE: f64 = 1.05;

/// What the scheduler obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotRegionConfig {
    pub max_replicas: usize,
    /// At most this many operators.
    pub batch: usize,
}

struct Hot<'a> {
    view: &'a mut ScheduleView,
    cfg: HotRegionConfig,
    /// Load moved by this round's operators, by (dimension, store).
    moved: BTreeMap<(Dim, u64), f64>,
}

/// A load dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dim {
    WritePeer,
    WriteLeader,
    ReadLeader,
}

/// A hot region of the view with its rate.
struct HotRegion {
    idx: usize,
    rate: f64,
}

fn worth(source_load: f64, target_load: f64, rate: f64) -> bool {
    rate > 0.0 && target_load + rate <= source_load - rate && source_load > target_load * TOLERANCE
}

impl Hot<'_> {
    /// The view's healthy regions among `stats`, with their rates.
    fn hot(&self, stats: &[HotRegionStat]) -> Vec<HotRegion> {
        let rates: BTreeMap<u64, f64> = stats.iter().map(|s| (s.region_id, s.byte_rate)).collect();
        self.view
            .regions
            .iter()
            .enumerate()
            .filter_map(|(idx, r)| rates.get(&r.id()).map(|rate| HotRegion { idx, rate: *rate }))
            .collect()
    }

    fn region(&self, h: &HotRegion) -> &RegionInfo {
        &self.view.regions[h.idx]
    }

    fn up_stores(&self) -> Vec<u64> {
        self.view
            .stores
            .values()
            .filter(|s| s.is_up())
            .map(|s| s.id)
            .collect()
    }

    fn shift(&mut self, dim: Dim, from: u64, to: u64, rate: f64) {
        *self.moved.entry((dim, from)).or_default() -= rate;
        *self.moved.entry((dim, to)).or_default() += rate;
    }

    /// Load per Up store in `dim`: by every peer or by the leader.
    fn loads(&self, hot: &[HotRegion], dim: Dim) -> BTreeMap<u64, f64> {
        let by_peer = dim == Dim::WritePeer;
        let mut loads: BTreeMap<u64, f64> = self
            .up_stores()
            .into_iter()
            .map(|s| (s, self.moved.get(&(dim, s)).copied().unwrap_or(0.0)))
            .collect();
        for h in hot {
            let r = self.region(h);
            let stores: Vec<u64> = if by_peer {
                r.meta.peers.iter().map(|p| p.store_id).collect()
            } else {
                r.leader.iter().map(|l| l.store_id).collect()
            };
            for s in stores {
                if let Some(l) = loads.get_mut(&s) {
                    *l += h.rate;
                }
            }
        }
        loads
    }

    fn usable(&self, h: &HotRegion) -> bool {
        self.view.is_healthy(self.region(h), self.cfg.max_replicas)
    }

    fn move_peer(
        &mut self,
        hot: &[HotRegion],
        alloc_id: &mut dyn FnMut() -> Option<u64>,
    ) -> Option<Operator> {
        let loads = self.loads(hot, Dim::WritePeer);
        let (&source, &source_load) = loads
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))?;
        let mut candidates: Vec<&HotRegion> = hot
            .iter()
            .filter(|h| self.usable(h) && self.region(h).peer_on_store(source).is_some())
            .collect();
        candidates.sort_by(|a, b| b.rate.total_cmp(&a.rate));
        let mut targets: Vec<(f64, u64)> = loads
            .iter()
            .map(|(s, l)| (*l, *s))
            .filter(|(_, s)| *s != source)
            .collect();
        targets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for h in candidates {
            let region = self.region(h);
            let cost = store_limit::step_cost(region_size(region) as i64);
            if self.view.stores[&source].tokens(LimitType::RemovePeer) < cost {
                return None;
            }
            let source_distinct = self.view.distinct_score(region, source, &[]);
            let target = targets.iter().find(|(load, t)| {
                let ok_store = self.view.stores.get(t).is_some_and(|s: &StoreView| {
                    s.tokens(LimitType::AddPeer) >= cost && region.peer_on_store(*t).is_none()
                });
                ok_store
                    && worth(source_load, *load, h.rate)
                    && self.view.is_isolated(region, *t, &[source])
                    && self.view.distinct_score(region, *t, &[source]) >= source_distinct
            });
            let Some((_, target)) = target else {
                continue;
            };
            let (target, rate) = (*target, h.rate);
            let leads = region.leader.is_some_and(|l| l.store_id == source);
            let peer_id = alloc_id()?;
            let op = builder::replace_peer(
                "move-hot-write-peer",
                OpKind::HOT_REGION,
                region,
                source,
                target,
                peer_id,
            )
            .ok()?;
            if self.view.take_tokens(&op) {
                self.view.add_influence(&op);
                self.shift(Dim::WritePeer, source, target, rate);
                if leads {
                    self.shift(Dim::WriteLeader, source, target, rate);
                }
                return Some(op);
            }
        }
        None
    }

    fn move_leader(&mut self, hot: &[HotRegion], dim: Dim, desc: &str) -> Option<Operator> {
        let loads = self.loads(hot, dim);
        let (&source, &source_load) = loads
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))?;
        let mut candidates: Vec<&HotRegion> = hot
            .iter()
            .filter(|h| self.usable(h) && self.region(h).leader.is_some_and(|l| l.store_id == source))
            .collect();
        candidates.sort_by(|a, b| b.rate.total_cmp(&a.rate));
        for h in candidates {
            let region = self.region(h);
            let target = region
                .meta
                .peers
                .iter()
                .filter(|p| p.store_id != source)
                .filter_map(|p| loads.get(&p.store_id).map(|l| (*l, p.store_id)))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let Some((target_load, target)) = target else {
                continue;
            };
            if !worth(source_load, target_load, h.rate) {
                continue;
            }
            let op = builder::transfer_leader(desc, OpKind::HOT_REGION, region, target).ok()?;
            self.view.add_influence(&op);
            self.shift(dim, source, target, h.rate);
            return Some(op);
        }
        None
    }

    fn one(
        &mut self,
        write: &[HotRegion],
        read: &[HotRegion],
        alloc_id: &mut dyn FnMut() -> Option<u64>,
    ) -> Option<Operator> {
        if let Some(op) = self.move_peer(write, alloc_id) {
            return Some(op);
        }
        if let Some(op) = self.move_leader(write, Dim::WriteLeader, "move-hot-write-leader") {
            return Some(op);
        }
        self.move_leader(read, Dim::ReadLeader, "move-hot-read-leader")
    }
}

/// Up to `cfg.batch` operators spreading the hot regions' load (none if it is spread).
pub fn schedule(
    view: &mut ScheduleView,
    write: &[HotRegionStat],
    read: &[HotRegionStat],
    cfg: &HotRegionConfig,
    alloc_id: &mut dyn FnMut() -> Option<u64>,
) -> Vec<Operator> {
    let mut h = Hot {
        view,
        cfg: *cfg,
        moved: BTreeMap::new(),
    };
    let (write, read) = (h.hot(write), h.hot(read));
    let mut ops = Vec::new();
    while ops.len() < cfg.batch {
        match h.one(&write, &read, alloc_id) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

#[cfg(test)]
#[path = "hot_region_tests.rs"]
mod tests;
