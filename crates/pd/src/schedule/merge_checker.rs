//! The merge checker: a pure function from a small region and its neighbours to the two
//! operators that merge it into one of them (PD's merge checker).
//!
//! A region is merged when all hold:
//! * it is small: at most `max-merge-region-size` MiB and `max-merge-region-keys` keys;
//! * neither it nor the target was split (or first seen by PD) within `split-merge-interval`
//!   — so tiny split thresholds and merging do not fight;
//! * both are healthy (known leader, no pending or down peer, `max-replicas` voters) and have
//!   no operator;
//! * the two are not split apart at an API V2 keyspace boundary (the ranges made at bootstrap
//!   keep raw and transactional keys, and each keyspace, in regions of their own: PD keeps
//!   them apart with `merge_option = deny` label rules);
//! * the target is adjacent: the next region (the one starting at its end key), or the
//!   previous one unless `enable-one-way-merge`; of two candidates the smaller one wins (PD:
//!   prefer the previous region on a tie).
//!
//! The operators ([`builder::merge_region`]): the source first gets its peers onto the
//! target's stores (same stores, all voters), then is told to merge (`merge{target}` to its
//! leader); the target waits passively until it absorbed the source. Both are `merge` operators
//! and count against `merge-schedule-limit`.

use super::builder;
use super::operator::{OpKind, Operator};
use super::view::ScheduleView;
use crate::region_info::RegionInfo;

/// The operators' description (PD's).
pub const DESC: &str = "merge-region";

/// What the checker obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeConfig {
    /// MiB.
    pub max_merge_region_size: u64,
    pub max_merge_region_keys: u64,
    pub enable_one_way_merge: bool,
    pub max_replicas: usize,
}

fn is_small(r: &RegionInfo, cfg: &MergeConfig) -> bool {
    let size = u64::try_from(r.approximate_size.max(0)).unwrap_or(0);
    let keys = u64::try_from(r.approximate_keys.max(0)).unwrap_or(0);
    size <= cfg.max_merge_region_size && keys <= cfg.max_merge_region_keys
}

/// Whether `key` (a region boundary) is where an API V2 key range starts: a mode byte (`r`
/// raw, `x` transactional) and a 3-byte keyspace id, as is or memcomparable-encoded.
pub fn is_keyspace_boundary(key: &[u8]) -> bool {
    let mode = |b: u8| b == b'r' || b == b'x';
    match key.len() {
        4 => mode(key[0]),
        // One memcomparable group: 4 bytes, 4 bytes of padding, marker 0xFF - 4.
        9 => mode(key[0]) && key[4..8] == [0; 4] && key[8] == 0xFF - 4,
        _ => false,
    }
}

/// The (source, target) operators merging `region` into `prev` or `next`, if it should be.
/// `recently_split` tells whether a region was split (or first seen) within
/// `split-merge-interval`; `view.busy` holds the regions with an operator.
pub fn check(
    region: &RegionInfo,
    prev: Option<&RegionInfo>,
    next: Option<&RegionInfo>,
    view: &ScheduleView,
    cfg: &MergeConfig,
    recently_split: &dyn Fn(u64) -> bool,
    alloc_id: &mut dyn FnMut() -> Option<u64>,
) -> Option<(Operator, Operator)> {
    if !view.is_healthy(region, cfg.max_replicas) || !is_small(region, cfg) || recently_split(region.id()) {
        return None;
    }
    let usable = |r: &&RegionInfo| {
        view.is_healthy(r, cfg.max_replicas)
            && !recently_split(r.id())
            && r.meta
                .peers
                .iter()
                .all(|p| view.stores.get(&p.store_id).is_some_and(|s| s.is_up()))
    };
    let next = next.filter(|n| {
        n.start_key() == region.end_key()
            && !region.end_key().is_empty()
            && !is_keyspace_boundary(region.end_key())
    });
    let next = next.filter(usable);
    let prev = prev
        .filter(|_| !cfg.enable_one_way_merge)
        .filter(|p| {
            p.end_key() == region.start_key()
                && !region.start_key().is_empty()
                && !is_keyspace_boundary(region.start_key())
        })
        .filter(usable);
    let target = match (prev, next) {
        (Some(p), Some(n)) if n.approximate_size < p.approximate_size => n,
        (Some(p), _) => p,
        (None, Some(n)) => n,
        (None, None) => return None,
    };
    builder::merge_region(DESC, OpKind::MERGE, region, target, alloc_id)
        .map_err(|e| tracing::debug!(region = region.id(), error = %e, "merge checker skipped"))
        .ok()
}

#[cfg(test)]
#[path = "merge_checker_tests.rs"]
mod tests;
