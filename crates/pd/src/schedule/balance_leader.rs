//! `balance-leader-scheduler`: a pure function from a [`ScheduleView`] to transfer-leader
//! operators that even out leader scores (leader count, or size with `leader-schedule-policy =
//! "size"`, divided by the leader weight) over the Up stores.
//!
//! Per operator (PD's order): take the Up stores by score, highest first; for each, look at the
//! healthy regions it leads (key order from a rotating start) and hand one to the follower on
//! the lowest-scoring Up store, if the pair passes the tolerance check ([`super::score`]);
//! if no store can give a leader away, try the other way round: the lowest-scoring store
//! takes a leader from a region it follows. Each operator counts in the view's influence so
//! the next one of the same round sees it; at most `batch` operators per round.
//!
//! Invariants: only voters on Up stores receive leadership; a balanced cluster (every pair
//! within the tolerance) gets no operator; a moved leader never makes the pair worse than
//! before (the tolerance is at least half a leader on each side).

use super::builder;
use super::operator::{OpKind, Operator};
use super::score;
use super::view::{ScheduleView, StoreView};
use crate::region_info::RegionInfo;

/// The scheduler's name (PD's), also its operators' description.
pub const NAME: &str = "balance-leader-scheduler";
/// Operators per round (PD's `BalanceLeaderBatchSize`).
pub const BATCH: usize = 4;
/// Regions looked at per store before giving up on it (PD's retry limit).
const MAX_TRIES: usize = 64;

/// What the scheduler obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceLeaderConfig {
    /// `leader-schedule-policy = "size"`.
    pub by_size: bool,
    pub tolerant_size_ratio: f64,
    pub max_replicas: usize,
    /// At most this many operators.
    pub batch: usize,
    /// Index of the region to start looking from (rotates the choice between rounds).
    pub start: usize,
}

struct Balancer<'a> {
    view: &'a mut ScheduleView,
    cfg: BalanceLeaderConfig,
    tolerance: f64,
}

impl Balancer<'_> {
    fn score(&self, s: &StoreView, as_source: bool) -> f64 {
        let infl = if self.cfg.by_size {
            s.influence.leader_size
        } else {
            s.influence.leader_count
        };
        if as_source {
            s.leader_score(self.cfg.by_size, -infl.abs() - self.tolerance)
        } else {
            s.leader_score(self.cfg.by_size, infl.abs() + self.tolerance)
        }
    }

    fn plain_score(&self, s: &StoreView) -> f64 {
        let infl = if self.cfg.by_size {
            s.influence.leader_size
        } else {
            s.influence.leader_count
        };
        s.leader_score(self.cfg.by_size, infl)
    }

    fn should_balance(&self, source: u64, target: u64) -> bool {
        match (self.view.stores.get(&source), self.view.stores.get(&target)) {
            (Some(s), Some(t)) => self.score(s, true) > self.score(t, false),
            _ => false,
        }
    }

    /// Up stores by score (then id), ascending.
    fn stores_by_score(&self) -> Vec<u64> {
        let mut ids: Vec<(f64, u64)> = self
            .view
            .stores
            .values()
            .filter(|s| s.is_up())
            .map(|s| (self.plain_score(s), s.id))
            .collect();
        ids.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Healthy regions, from the rotating start, matching `pick`.
    fn regions(&self, pick: impl Fn(&RegionInfo) -> bool) -> Vec<usize> {
        let n = self.view.regions.len();
        (0..n)
            .map(|i| (i + self.cfg.start) % n)
            .filter(|i| {
                let r = &self.view.regions[*i];
                self.view.is_healthy(r, self.cfg.max_replicas) && pick(r)
            })
            .take(MAX_TRIES)
            .collect()
    }

    fn voter_stores(&self, r: &RegionInfo, except: u64) -> Vec<u64> {
        r.meta
            .peers
            .iter()
            .map(|p| p.store_id)
            .filter(|s| *s != except && self.view.stores.get(s).is_some_and(StoreView::is_up))
            .collect()
    }

    fn make(&mut self, idx: usize, target: u64) -> Option<Operator> {
        let region = &self.view.regions[idx];
        let op = builder::transfer_leader(NAME, OpKind::LEADER, region, target).ok()?;
        self.view.add_influence(&op);
        Some(op)
    }

    fn transfer_out(&mut self, source: u64) -> Option<Operator> {
        let led = self.regions(|r| r.leader.is_some_and(|l| l.store_id == source));
        for idx in led {
            let mut targets = self.voter_stores(&self.view.regions[idx], source);
            targets.sort_by(|a, b| {
                let (sa, sb) = (&self.view.stores[a], &self.view.stores[b]);
                self.plain_score(sa)
                    .total_cmp(&self.plain_score(sb))
                    .then(a.cmp(b))
            });
            if let Some(target) = targets.first().copied() {
                if self.should_balance(source, target) {
                    return self.make(idx, target);
                }
            }
        }
        None
    }

    fn transfer_in(&mut self, target: u64) -> Option<Operator> {
        let followed = self
            .regions(|r| r.peer_on_store(target).is_some() && r.leader.is_some_and(|l| l.store_id != target));
        for idx in followed {
            let source = self.view.regions[idx].leader.map_or(0, |l| l.store_id);
            if self.view.stores.get(&source).is_some_and(StoreView::is_up)
                && self.should_balance(source, target)
            {
                return self.make(idx, target);
            }
        }
        None
    }

    fn one(&mut self) -> Option<Operator> {
        let order = self.stores_by_score();
        for source in order.iter().rev() {
            if let Some(op) = self.transfer_out(*source) {
                return Some(op);
            }
        }
        for target in &order {
            if let Some(op) = self.transfer_in(*target) {
                return Some(op);
            }
        }
        None
    }
}

/// Up to `cfg.batch` transfer-leader operators (none if the leaders are balanced).
pub fn schedule(view: &mut ScheduleView, cfg: &BalanceLeaderConfig) -> Vec<Operator> {
    if view.regions.is_empty() {
        return Vec::new();
    }
    let tolerance = if cfg.by_size {
        let (max_regions, _) = view.max_counts();
        score::region_tolerance(cfg.tolerant_size_ratio, max_regions, view.average_region_size())
    } else {
        let (_, max_leaders) = view.max_counts();
        score::leader_tolerance(cfg.tolerant_size_ratio, max_leaders)
    };
    let mut b = Balancer {
        view,
        cfg: *cfg,
        tolerance,
    };
    let mut ops = Vec::new();
    while ops.len() < cfg.batch {
        match b.one() {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

#[cfg(test)]
#[path = "balance_leader_tests.rs"]
mod tests;
