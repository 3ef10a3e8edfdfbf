//! `balance-region-scheduler`: a pure function from a [`ScheduleView`] to operators that move
//! one peer each from a high region-score store to a low one (PD's region score: region size
//! amplified by shrinking available space, divided by the region weight; see [`super::score`]).
//!
//! Per operator: the Up stores by score, highest first, are sources; of a source's healthy
//! regions (followers first, then those it leads; key order from a rotating start) the first
//! that has a target moves there. A target is an Up store without a peer of the region, with
//! fewer than `max-pending-peer-count` pending peers, that keeps the region isolated and does
//! not lower its distinct score (the placement safeguard: balancing never makes placement
//! worse), the lowest-scoring one; the move happens only if the pair passes the tolerance check
//! with pending operators counted five times (PD's `influenceAmp`). Both stores must have
//! store-limit tokens for the region. The operator is `[AddLearner(target), PromoteLearner,
//! (TransferLeader to it when the source leads), RemovePeer(source)]`.
//!
//! Invariants: a balanced cluster (every source/target pair within the tolerance) gets no
//! operator; an operator never lowers the region's isolation; store limits are honoured.

use super::builder;
use super::operator::{OpKind, Operator};
use super::score::{self, INFLUENCE_AMP};
use super::store_limit::{self, LimitType};
use super::view::{region_size, ScheduleView, StoreView};

/// The scheduler's name (PD's), also its operators' description.
pub const NAME: &str = "balance-region-scheduler";
/// Regions looked at per source store in one try.
const MAX_TRIES: usize = 64;

/// What the scheduler obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceRegionConfig {
    pub tolerant_size_ratio: f64,
    pub low_space_ratio: f64,
    pub max_replicas: usize,
    pub max_pending_peer_count: usize,
    /// At most this many operators.
    pub batch: usize,
    /// Index of the region to start looking from.
    pub start: usize,
}

struct Balancer<'a> {
    view: &'a mut ScheduleView,
    cfg: BalanceRegionConfig,
    tolerance: f64,
}

impl Balancer<'_> {
    fn plain_score(&self, s: &StoreView) -> f64 {
        s.region_score(self.cfg.low_space_ratio, s.influence.region_size)
    }

    fn should_balance(&self, source: &StoreView, target: &StoreView) -> bool {
        let src = source.region_score(
            self.cfg.low_space_ratio,
            -source.influence.region_size.abs() * INFLUENCE_AMP - self.tolerance,
        );
        let dst = target.region_score(
            self.cfg.low_space_ratio,
            target.influence.region_size.abs() * INFLUENCE_AMP + self.tolerance,
        );
        src > dst
    }

    fn sources(&self) -> Vec<u64> {
        let mut ids: Vec<(f64, u64)> = self
            .view
            .stores
            .values()
            .filter(|s| s.is_up() && s.region_count > 0)
            .map(|s| (self.plain_score(s), s.id))
            .collect();
        // Highest score first; ties: lowest id.
        ids.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Healthy regions with a peer on `source`: followers first, then led ones.
    fn candidates(&self, source: u64) -> Vec<usize> {
        let n = self.view.regions.len();
        let on_source: Vec<usize> = (0..n)
            .map(|i| (i + self.cfg.start) % n)
            .filter(|i| {
                let r = &self.view.regions[*i];
                r.peer_on_store(source).is_some() && self.view.is_healthy(r, self.cfg.max_replicas)
            })
            .collect();
        let leads = |i: &usize| self.view.regions[*i].leader.is_some_and(|l| l.store_id == source);
        let mut out: Vec<usize> = on_source.iter().copied().filter(|i| !leads(i)).collect();
        out.extend(on_source.iter().copied().filter(leads));
        out.truncate(MAX_TRIES);
        out
    }

    /// The lowest-scoring acceptable target for moving region `idx` off `source`.
    fn target(&self, idx: usize, source: u64, cost: f64) -> Option<u64> {
        let region = &self.view.regions[idx];
        let source_distinct = self.view.distinct_score(region, source, &[]);
        self.view
            .stores
            .values()
            .filter(|t| t.is_up() && region.peer_on_store(t.id).is_none())
            .filter(|t| t.pending_peers < self.cfg.max_pending_peer_count)
            .filter(|t| t.tokens(LimitType::AddPeer) >= cost)
            .filter(|t| self.view.is_isolated(region, t.id, &[source]))
            .filter(|t| self.view.distinct_score(region, t.id, &[source]) >= source_distinct)
            .map(|t| (self.plain_score(t), t.id))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, id)| id)
    }

    fn one(&mut self, alloc_id: &mut dyn FnMut() -> Option<u64>) -> Option<Operator> {
        for source in self.sources() {
            for idx in self.candidates(source) {
                let region = &self.view.regions[idx];
                let cost = store_limit::step_cost(region_size(region) as i64);
                if self.view.stores[&source].tokens(LimitType::RemovePeer) < cost {
                    break;
                }
                let Some(target) = self.target(idx, source, cost) else {
                    continue;
                };
                if !self.should_balance(&self.view.stores[&source], &self.view.stores[&target]) {
                    // Another region of this source may have a lower target.
                    continue;
                }
                let peer_id = alloc_id()?;
                let op = builder::replace_peer(NAME, OpKind::REGION, region, source, target, peer_id).ok()?;
                if !self.view.take_tokens(&op) {
                    continue;
                }
                self.view.add_influence(&op);
                return Some(op);
            }
        }
        None
    }
}

/// Up to `cfg.batch` move-peer operators (none if the regions are balanced). `alloc_id` hands
/// out new peer ids.
pub fn schedule(
    view: &mut ScheduleView,
    cfg: &BalanceRegionConfig,
    alloc_id: &mut dyn FnMut() -> Option<u64>,
) -> Vec<Operator> {
    if view.regions.is_empty() {
        return Vec::new();
    }
    let (max_regions, _) = view.max_counts();
    let tolerance = score::region_tolerance(cfg.tolerant_size_ratio, max_regions, view.average_region_size());
    let mut b = Balancer {
        view,
        cfg: *cfg,
        tolerance,
    };
    let mut ops = Vec::new();
    while ops.len() < cfg.batch {
        match b.one(alloc_id) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

#[cfg(test)]
#[path = "balance_region_tests.rs"]
mod tests;
