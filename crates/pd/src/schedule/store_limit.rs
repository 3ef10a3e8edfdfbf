//! Per-store limits on how fast peers are added to and removed from a store (PD's `store
//! limit`, version v1).
//!
//! Each store has one token bucket per type (`add-peer`, `remove-peer`). The rate is given in
//! regions per minute (default 15, `[schedule] store-limit` per store, `POST
//! /pd/api/v1/store/{id}/limit`); a region costs 1000 tokens, or 200 if it is at most
//! [`SMALL_REGION_THRESHOLD`] MiB, so small regions move five times faster (75 per minute at
//! the default). The bucket refills at `rate / 60 × 1000` tokens per second and holds
//! `max(1000, rate / 60 × 1000)`. A rate of 0 means no limit, as in PD.
//!
//! An operator made by a scheduler or checker is admitted only if every store it adds a peer
//! to / removes a peer from has the tokens, and then takes them all. Administrator operators
//! are not limited.
//!
//! Invariants: tokens never exceed the capacity nor go negative; the clock is passed in (tests
//! use a fake one).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use super::operator::{OpStep, Operator};

/// PD's default rate, regions per minute.
pub const DEFAULT_STORE_LIMIT: f64 = 15.0;
/// Regions of at most this many MiB are "small" (PD's `SmallRegionThreshold`).
pub const SMALL_REGION_THRESHOLD: i64 = 20;
const REGION_COST: f64 = 1000.0;
const SMALL_REGION_COST: f64 = 200.0;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitType {
    AddPeer,
    RemovePeer,
}

impl LimitType {
    pub const ALL: [LimitType; 2] = [LimitType::AddPeer, LimitType::RemovePeer];

    pub fn name(self) -> &'static str {
        match self {
            LimitType::AddPeer => "add-peer",
            LimitType::RemovePeer => "remove-peer",
        }
    }

    pub fn parse(s: &str) -> Option<LimitType> {
        LimitType::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// The tokens one step on a region of `size_mib` costs.
pub fn step_cost(size_mib: i64) -> f64 {
    if size_mib > SMALL_REGION_THRESHOLD {
        REGION_COST
    } else {
        SMALL_REGION_COST
    }
}

/// What `op` costs per store and type.
pub fn operator_costs(op: &Operator) -> Vec<(u64, LimitType, f64)> {
    let cost = step_cost(op.approximate_size());
    op.steps()
        .iter()
        .filter_map(|s| match *s {
            OpStep::AddLearner { store_id, .. } => Some((store_id, LimitType::AddPeer, cost)),
            OpStep::RemovePeer { store_id } => Some((store_id, LimitType::RemovePeer, cost)),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate_per_min: f64,
    tokens: f64,
    at: Instant,
}

fn capacity(rate_per_min: f64) -> f64 {
    (rate_per_min / 60.0 * REGION_COST).max(REGION_COST)
}

impl Bucket {
    fn new(rate_per_min: f64, now: Instant) -> Bucket {
        Bucket {
            rate_per_min,
            tokens: capacity(rate_per_min),
            at: now,
        }
    }

    /// Refills up to `now` (a rate change keeps the tokens, capped to the new capacity).
    fn refill(&mut self, rate_per_min: f64, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens += secs * self.rate_per_min / 60.0 * REGION_COST;
        self.rate_per_min = rate_per_min;
        self.tokens = self.tokens.min(capacity(rate_per_min));
        self.at = self.at.max(now);
    }
}

/// The token buckets of every store.
#[derive(Default)]
pub struct StoreLimiter {
    buckets: Mutex<HashMap<(u64, LimitType), Bucket>>,
}

impl StoreLimiter {
    pub fn new() -> StoreLimiter {
        StoreLimiter::default()
    }

    /// Tokens `store` has for `typ` at `now` (`f64::INFINITY` when unlimited).
    pub fn available(&self, store: u64, typ: LimitType, rate_per_min: f64, now: Instant) -> f64 {
        if rate_per_min <= 0.0 {
            return f64::INFINITY;
        }
        let mut buckets = self.buckets.lock();
        let b = buckets
            .entry((store, typ))
            .or_insert_with(|| Bucket::new(rate_per_min, now));
        b.refill(rate_per_min, now);
        b.tokens
    }

    /// Takes every cost if all are available, else none; `rate` gives each store's rate.
    pub fn take(
        &self,
        costs: &[(u64, LimitType, f64)],
        rate: &dyn Fn(u64, LimitType) -> f64,
        now: Instant,
    ) -> bool {
        let mut buckets = self.buckets.lock();
        let mut need: HashMap<(u64, LimitType), f64> = HashMap::new();
        for (store, typ, cost) in costs {
            if rate(*store, *typ) > 0.0 {
                *need.entry((*store, *typ)).or_default() += cost;
            }
        }
        for ((store, typ), cost) in &need {
            let r = rate(*store, *typ);
            let b = buckets
                .entry((*store, *typ))
                .or_insert_with(|| Bucket::new(r, now));
            b.refill(r, now);
            if b.tokens < *cost {
                return false;
            }
        }
        for (key, cost) in need {
            if let Some(b) = buckets.get_mut(&key) {
                b.tokens -= cost;
            }
        }
        true
    }

    /// Forgets a store (removed for good).
    pub fn forget(&self, store: u64) {
        self.buckets.lock().retain(|(s, _), _| *s != store);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn small_regions_move_five_times_faster() {
        let l = StoreLimiter::new();
        let t0 = Instant::now();
        let rate = |_: u64, _: LimitType| DEFAULT_STORE_LIMIT;
        let small = [(4, LimitType::AddPeer, step_cost(1))];
        // A full bucket holds 1000 tokens: five small regions at once, then one per 0.8 s.
        for _ in 0..5 {
            assert!(l.take(&small, &rate, t0));
        }
        assert!(!l.take(&small, &rate, t0));
        assert!(!l.take(&small, &rate, t0 + Duration::from_millis(700)));
        assert!(l.take(&small, &rate, t0 + Duration::from_millis(800)));
        // Over a minute: 75 small regions (plus the burst).
        let mut taken = 0;
        for ms in (900..=60_800).step_by(100) {
            if l.take(&small, &rate, t0 + Duration::from_millis(ms)) {
                taken += 1;
            }
        }
        assert_eq!(taken, 75);
        // A big region costs a full bucket: 15 per minute.
        let l = StoreLimiter::new();
        let big = [(4, LimitType::AddPeer, step_cost(96))];
        assert!(l.take(&big, &rate, t0));
        assert!(!l.take(&big, &rate, t0 + Duration::from_secs(3)));
        assert!(l.take(&big, &rate, t0 + Duration::from_secs(4)));
    }

    #[test]
    fn all_or_nothing_and_unlimited() {
        let l = StoreLimiter::new();
        let t0 = Instant::now();
        let rate = |s: u64, _: LimitType| if s == 9 { 0.0 } else { 15.0 };
        let cost = step_cost(100);
        assert!(l.take(&[(1, LimitType::RemovePeer, cost)], &rate, t0));
        // Store 1 is out of remove tokens: store 2's add is not taken either.
        assert!(!l.take(
            &[(2, LimitType::AddPeer, cost), (1, LimitType::RemovePeer, cost)],
            &rate,
            t0
        ));
        assert_eq!(l.available(2, LimitType::AddPeer, 15.0, t0), 1000.0);
        // Rate 0: unlimited.
        for _ in 0..100 {
            assert!(l.take(&[(9, LimitType::AddPeer, cost)], &rate, t0));
        }
        assert_eq!(l.available(9, LimitType::AddPeer, 0.0, t0), f64::INFINITY);
        assert_eq!(LimitType::parse("remove-peer"), Some(LimitType::RemovePeer));
        assert_eq!(LimitType::parse("x"), None);
    }
}
