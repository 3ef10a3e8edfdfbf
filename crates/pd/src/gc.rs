//! GC safe point and service safe points (PD v8 "safe point v1" semantics).
//!
//! Invariants: the GC safe point never moves back; a service safe point is only accepted if it
//! is not below the current minimum; `gc_worker`'s entry always exists (created at 0, or at the
//! minimum of the other services) and never expires.
//!
//! Advancing without an outside driver ([`GcManager::advance`], used by `gc_driver` and the HTTP
//! API): PD itself plays TiDB's GC worker. A target is held back by every unexpired service safe
//! point but `gc_worker`'s own, then, if it is ahead of the GC safe point, becomes both
//! `gc_worker`'s service safe point and the GC safe point, under one lock, so a service can not
//! register a safe point below it in between. The decisions are the pure functions
//! [`retention_safe_point`], [`next_safe_point`], [`clamp_forward`] and [`check_requested`].

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::Result;
use crate::storage::{MetaStorage, ServiceSafePoint};
use crate::tso::LOGICAL_BITS;

/// The service id TiDB's GC worker uses.
pub const GC_WORKER_SERVICE_ID: &str = "gc_worker";

/// The timestamp `retention` before `now_ts` (logical 0); `None` if that is before the epoch.
pub fn retention_safe_point(now_ts: u64, retention: Duration) -> Option<u64> {
    let physical = now_ts >> LOGICAL_BITS;
    let ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    let back = physical.checked_sub(ms)?;
    back.checked_mul(1 << LOGICAL_BITS)
}

/// `target` held back by the minimum service safe point, if that is ahead of `current`.
pub fn clamp_forward(target: u64, current: u64, service_min: Option<u64>) -> Option<u64> {
    let target = service_min.map_or(target, |m| m.min(target));
    (target > current).then_some(target)
}

/// The automatic advance: where the GC safe point should move at `now_ts` with `retention`
/// (zero disables it), given the `current` GC safe point and the minimum unexpired service safe
/// point (`gc_worker`'s excluded). `None`: stay.
pub fn next_safe_point(
    now_ts: u64,
    retention: Duration,
    current: u64,
    service_min: Option<u64>,
) -> Option<u64> {
    if retention.is_zero() {
        return None;
    }
    clamp_forward(retention_safe_point(now_ts, retention)?, current, service_min)
}

/// Whether an explicitly requested safe point is acceptable: not behind the `current` GC safe
/// point and not ahead of the timestamp oracle's `now_ts`.
pub fn check_requested(requested: u64, now_ts: u64, current: u64) -> std::result::Result<(), GcAdvanceError> {
    if requested < current {
        return Err(GcAdvanceError::MovesBack { requested, current });
    }
    if requested > now_ts {
        return Err(GcAdvanceError::InFuture {
            requested,
            now: now_ts,
        });
    }
    Ok(())
}

/// With `strict`, a target behind the `current` GC safe point is an error.
fn check_strict(target: u64, current: u64, strict: bool) -> std::result::Result<(), GcAdvanceError> {
    if strict && target < current {
        return Err(GcAdvanceError::MovesBack {
            requested: target,
            current,
        });
    }
    Ok(())
}

/// Why a requested advance of the GC safe point was refused.
#[derive(Debug, thiserror::Error)]
pub enum GcAdvanceError {
    /// The GC safe point never moves back.
    #[error("gc safe point {requested} is behind the current gc safe point {current}; it never moves back")]
    MovesBack { requested: u64, current: u64 },
    /// Nothing may be collected that a transaction could still read.
    #[error("gc safe point {requested} is ahead of the current timestamp {now}")]
    InFuture { requested: u64, now: u64 },
    /// Storage or the timestamp oracle failed.
    #[error(transparent)]
    Internal(#[from] crate::error::Error),
    /// Some lock at or below the new safe point could not be resolved, so it was not
    /// published (retryable).
    #[error("locks at or below gc safe point {safe_point} could not be resolved, the gc safe point did not move: {source}")]
    LocksUnresolved {
        safe_point: u64,
        source: crate::gc_resolver::ResolveLocksError,
    },
}

/// The result of [`GcManager::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The target asked for.
    pub requested: u64,
    /// The GC safe point before.
    pub previous: u64,
    /// The GC safe point after (equal to `previous` if it did not move).
    pub safe_point: u64,
    /// The service safe point that held the target back, if one did.
    pub blocked_by: Option<ServiceSafePoint>,
}

impl Advance {
    pub fn advanced(&self) -> bool {
        self.safe_point > self.previous
    }
}

struct State {
    safe_point: u64,
    services: BTreeMap<String, ServiceSafePoint>,
}

/// Owns the GC safe point and the service safe points.
pub struct GcManager {
    storage: MetaStorage,
    state: Mutex<State>,
}

/// The result of [`GcManager::update_service_safe_point`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUpdate {
    /// The minimum service safe point after the update.
    pub min: ServiceSafePoint,
    /// Whether the request's safe point was stored.
    pub updated: bool,
}

impl GcManager {
    pub fn new(storage: MetaStorage) -> Result<GcManager> {
        let safe_point = storage.load_gc_safe_point()?;
        let services = storage
            .load_service_safe_points()?
            .into_iter()
            .map(|s| (s.service_id.clone(), s))
            .collect();
        Ok(GcManager {
            storage,
            state: Mutex::new(State { safe_point, services }),
        })
    }

    pub fn safe_point(&self) -> u64 {
        self.state.lock().safe_point
    }

    /// Moves the GC safe point to `new` if that is forward; returns the resulting safe point.
    pub fn update_safe_point(&self, new: u64) -> Result<u64> {
        let mut st = self.state.lock();
        if new > st.safe_point {
            self.storage.save_gc_safe_point(new)?;
            tracing::info!(safe_point = new, "updated gc safe point");
            st.safe_point = new;
        } else if new < st.safe_point {
            tracing::warn!(old = st.safe_point, new, "refused to move gc safe point back");
        }
        Ok(st.safe_point)
    }

    /// Every service safe point (expired ones included until the next update prunes them).
    pub fn service_safe_points(&self) -> Vec<ServiceSafePoint> {
        self.state.lock().services.values().cloned().collect()
    }

    /// Sets (ttl > 0) or removes (ttl <= 0) `service_id`'s safe point; `now` is unix seconds.
    pub fn update_service_safe_point(
        &self,
        service_id: &str,
        safe_point: u64,
        ttl: i64,
        now: i64,
    ) -> Result<ServiceUpdate> {
        let mut st = self.state.lock();
        if ttl <= 0 && st.services.remove(service_id).is_some() {
            self.storage
                .remove_service_safe_points(&[service_id.to_string()])?;
        }
        let mut min = self.load_min(&mut st, now)?;
        if ttl <= 0 || safe_point < min.safe_point {
            return Ok(ServiceUpdate { min, updated: false });
        }
        let expired_at = if i64::MAX - now <= ttl {
            i64::MAX
        } else {
            now + ttl
        };
        let ssp = ServiceSafePoint {
            service_id: service_id.to_string(),
            expired_at,
            safe_point,
        };
        self.storage.save_service_safe_point(&ssp)?;
        st.services.insert(ssp.service_id.clone(), ssp);
        if service_id == min.service_id {
            min = self.load_min(&mut st, now)?;
        }
        Ok(ServiceUpdate { min, updated: true })
    }

    /// Where [`GcManager::advance`] would move the GC safe point now (`None`: it would stay),
    /// without moving it: the safe point below which locks must be resolved first.
    pub fn plan_advance(
        &self,
        target: u64,
        strict: bool,
        now: i64,
    ) -> std::result::Result<Option<u64>, GcAdvanceError> {
        let mut st = self.state.lock();
        let previous = st.safe_point;
        check_strict(target, previous, strict)?;
        self.load_min(&mut st, now)?;
        let holder = Self::holder(&st);
        Ok(clamp_forward(target, previous, holder.map(|h| h.safe_point)))
    }

    /// Moves the GC safe point towards `target`, held back by the unexpired service safe points
    /// other than `gc_worker`'s, and sets `gc_worker`'s service safe point along (see the module
    /// doc). With `strict`, a `target` behind the GC safe point is an error instead of a no-op.
    /// `now` is unix seconds (for service safe point expiry).
    pub fn advance(
        &self,
        target: u64,
        strict: bool,
        now: i64,
    ) -> std::result::Result<Advance, GcAdvanceError> {
        self.advance_capped(target, u64::MAX, strict, now)
    }

    /// [`GcManager::advance`], never moving the GC safe point past `cap` (the safe point up to
    /// which locks were resolved; a service safe point may have expired since).
    pub fn advance_capped(
        &self,
        target: u64,
        cap: u64,
        strict: bool,
        now: i64,
    ) -> std::result::Result<Advance, GcAdvanceError> {
        let mut st = self.state.lock();
        let previous = st.safe_point;
        check_strict(target, previous, strict)?;
        self.load_min(&mut st, now)?;
        let holder = Self::holder(&st);
        let limit = holder.as_ref().map_or(cap, |h| h.safe_point.min(cap));
        if let Some(new) = clamp_forward(target, previous, Some(limit)) {
            let worker_behind = st
                .services
                .get(GC_WORKER_SERVICE_ID)
                .is_none_or(|w| w.safe_point < new);
            if worker_behind {
                let ssp = ServiceSafePoint {
                    service_id: GC_WORKER_SERVICE_ID.to_string(),
                    expired_at: i64::MAX,
                    safe_point: new,
                };
                self.storage.save_service_safe_point(&ssp)?;
                st.services.insert(ssp.service_id.clone(), ssp);
            }
            self.storage.save_gc_safe_point(new)?;
            st.safe_point = new;
            tracing::debug!(previous, safe_point = new, target, "advanced gc safe point");
        }
        Ok(Advance {
            requested: target,
            previous,
            safe_point: st.safe_point,
            blocked_by: holder.filter(|h| h.safe_point < target),
        })
    }

    /// The service holding the GC safe point back: the lowest but `gc_worker`.
    fn holder(st: &State) -> Option<ServiceSafePoint> {
        st.services
            .values()
            .filter(|s| s.service_id != GC_WORKER_SERVICE_ID)
            .min_by_key(|s| s.safe_point)
            .cloned()
    }

    /// Prunes expired entries and returns the minimum, creating `gc_worker`'s entry if missing.
    fn load_min(&self, st: &mut State, now: i64) -> Result<ServiceSafePoint> {
        if st.services.is_empty() {
            return self.init_gc_worker(st, 0);
        }
        let has_gc_worker = st.services.contains_key(GC_WORKER_SERVICE_ID);
        let expired: Vec<String> = st
            .services
            .values()
            .filter(|s| s.expired_at < now)
            .map(|s| s.service_id.clone())
            .collect();
        let min_including_expired = st.services.values().map(|s| s.safe_point).min().unwrap_or(0);
        if !expired.is_empty() {
            self.storage.remove_service_safe_points(&expired)?;
            for id in &expired {
                st.services.remove(id);
            }
        }
        let min = st.services.values().min_by_key(|s| s.safe_point).cloned();
        match min {
            None => self.init_gc_worker(st, 0),
            Some(_) if !has_gc_worker => self.init_gc_worker(st, min_including_expired),
            Some(m) => Ok(m),
        }
    }

    fn init_gc_worker(&self, st: &mut State, safe_point: u64) -> Result<ServiceSafePoint> {
        let ssp = ServiceSafePoint {
            service_id: GC_WORKER_SERVICE_ID.to_string(),
            expired_at: i64::MAX,
            safe_point,
        };
        self.storage.save_service_safe_point(&ssp)?;
        st.services.insert(ssp.service_id.clone(), ssp.clone());
        Ok(ssp)
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;

    use super::*;

    #[test]
    fn gc_safe_point_never_moves_back_and_persists() {
        let engine = MemEngine::new();
        let gc = GcManager::new(MetaStorage::new(engine.clone())).unwrap();
        assert_eq!(gc.safe_point(), 0);
        assert_eq!(gc.update_safe_point(100).unwrap(), 100);
        assert_eq!(gc.update_safe_point(50).unwrap(), 100);
        assert_eq!(gc.update_safe_point(120).unwrap(), 120);
        let gc = GcManager::new(MetaStorage::new(engine)).unwrap();
        assert_eq!(gc.safe_point(), 120);
        assert_eq!(gc.update_safe_point(1).unwrap(), 120);
    }

    const MS: u64 = 1 << LOGICAL_BITS;

    #[test]
    fn retention_decisions() {
        let now = 1_000_000 * MS + 77;
        let ten_s = Duration::from_secs(10);
        assert_eq!(retention_safe_point(now, ten_s), Some(990_000 * MS));
        assert_eq!(retention_safe_point(now, Duration::ZERO), Some(1_000_000 * MS));
        assert_eq!(retention_safe_point(now, Duration::from_secs(1001)), None);
        // Forward only.
        assert_eq!(next_safe_point(now, ten_s, 0, None), Some(990_000 * MS));
        assert_eq!(next_safe_point(now, ten_s, 990_000 * MS, None), None);
        assert_eq!(next_safe_point(now, ten_s, 995_000 * MS, None), None);
        // Held back by a service safe point, and never behind the current one.
        assert_eq!(next_safe_point(now, ten_s, 0, Some(500)), Some(500));
        assert_eq!(next_safe_point(now, ten_s, 600, Some(500)), None);
        assert_eq!(next_safe_point(now, ten_s, 0, Some(u64::MAX)), Some(990_000 * MS));
        // Zero retention disables; retention longer than the epoch does nothing.
        assert_eq!(next_safe_point(now, Duration::ZERO, 0, None), None);
        assert_eq!(next_safe_point(now, Duration::from_secs(u64::MAX), 0, None), None);
        assert_eq!(clamp_forward(10, 5, Some(7)), Some(7));
        assert_eq!(clamp_forward(10, 5, Some(3)), None);
    }

    #[test]
    fn requested_safe_point_checks() {
        assert!(check_requested(10, 100, 10).is_ok());
        assert!(check_requested(100, 100, 10).is_ok());
        assert!(matches!(
            check_requested(9, 100, 10),
            Err(GcAdvanceError::MovesBack {
                requested: 9,
                current: 10
            })
        ));
        assert!(matches!(
            check_requested(101, 100, 10),
            Err(GcAdvanceError::InFuture {
                requested: 101,
                now: 100
            })
        ));
    }

    #[test]
    fn advance_acts_as_gc_worker_and_respects_services() {
        let engine = MemEngine::new();
        let gc = GcManager::new(MetaStorage::new(engine.clone())).unwrap();
        let now = 1000;
        // No service: straight to the target; gc_worker follows.
        let a = gc.advance(100, false, now).unwrap();
        assert!(a.advanced());
        assert_eq!((a.previous, a.safe_point, a.blocked_by), (0, 100, None));
        let worker = |gc: &GcManager| {
            gc.service_safe_points()
                .into_iter()
                .find(|s| s.service_id == GC_WORKER_SERVICE_ID)
                .unwrap()
        };
        assert_eq!((worker(&gc).safe_point, worker(&gc).expired_at), (100, i64::MAX));
        // A service below gc_worker's safe point is refused; at or above it, accepted.
        assert!(!gc.update_service_safe_point("br", 50, 60, now).unwrap().updated);
        assert!(gc.update_service_safe_point("br", 150, 60, now).unwrap().updated);
        // br holds the advance back.
        let a = gc.advance(300, false, now).unwrap();
        assert_eq!((a.previous, a.safe_point), (100, 150));
        assert_eq!(a.blocked_by.as_ref().map(|b| b.service_id.as_str()), Some("br"));
        assert_eq!(worker(&gc).safe_point, 150);
        let a = gc.advance(300, false, now).unwrap();
        assert!(!a.advanced());
        // Behind: a no-op, or an error when strict.
        let a = gc.advance(120, false, now).unwrap();
        assert_eq!((a.safe_point, a.blocked_by), (150, None));
        assert!(matches!(
            gc.advance(120, true, now),
            Err(GcAdvanceError::MovesBack {
                requested: 120,
                current: 150
            })
        ));
        // br expires: nothing holds the target back any more.
        let a = gc.advance(300, true, now + 61).unwrap();
        assert_eq!((a.safe_point, a.blocked_by), (300, None));
        assert!(gc.service_safe_points().iter().all(|s| s.service_id != "br"));
        // gc_worker set higher by someone else is not moved back, nor does it hold PD back.
        gc.update_service_safe_point(GC_WORKER_SERVICE_ID, 1000, i64::MAX, now + 61)
            .unwrap();
        let a = gc.advance(400, false, now + 61).unwrap();
        assert_eq!(a.safe_point, 400);
        assert_eq!(worker(&gc).safe_point, 1000);
        // Persisted.
        let gc = GcManager::new(MetaStorage::new(engine)).unwrap();
        assert_eq!(gc.safe_point(), 400);
        assert_eq!(worker(&gc).safe_point, 1000);
    }

    #[test]
    fn plan_then_capped_advance() {
        let gc = GcManager::new(MetaStorage::new(MemEngine::new())).unwrap();
        let now = 1000;
        assert!(gc.update_service_safe_point("br", 150, 60, now).unwrap().updated);
        // Planning moves nothing; it names the held-back target.
        assert_eq!(gc.plan_advance(300, false, now).unwrap(), Some(150));
        assert_eq!(gc.plan_advance(100, false, now).unwrap(), Some(100));
        assert_eq!(gc.safe_point(), 0);
        assert_eq!(gc.plan_advance(120, true, now).unwrap(), Some(120));
        // br expired after the plan: the advance still stops at what was resolved.
        let a = gc.advance_capped(300, 150, false, now + 61).unwrap();
        assert_eq!(
            (a.requested, a.previous, a.safe_point, a.blocked_by),
            (300, 0, 150, None)
        );
        assert_eq!(gc.plan_advance(150, false, now + 61).unwrap(), None);
        assert!(matches!(
            gc.plan_advance(140, true, now + 61),
            Err(GcAdvanceError::MovesBack { .. })
        ));
        // Capped at 0: it stays.
        let a = gc.advance_capped(300, 0, false, now + 61).unwrap();
        assert!(!a.advanced());
        assert_eq!(gc.safe_point(), 150);
    }

    #[test]
    fn service_safe_points() {
        let gc = GcManager::new(MetaStorage::new(MemEngine::new())).unwrap();
        let now = 1000;
        // First service: gc_worker is created at 0 and stays the minimum.
        let u = gc.update_service_safe_point("br", 10, 60, now).unwrap();
        assert!(u.updated);
        assert_eq!(u.min.service_id, GC_WORKER_SERVICE_ID);
        assert_eq!(u.min.safe_point, 0);
        // gc_worker moves up; br becomes the minimum.
        let u = gc
            .update_service_safe_point(GC_WORKER_SERVICE_ID, 20, i64::MAX, now)
            .unwrap();
        assert!(u.updated);
        assert_eq!((u.min.service_id.as_str(), u.min.safe_point), ("br", 10));
        // Below the minimum: refused.
        let u = gc.update_service_safe_point("cdc", 5, 60, now).unwrap();
        assert!(!u.updated);
        assert_eq!(u.min.safe_point, 10);
        // br expires; the minimum is gc_worker again.
        let u = gc.update_service_safe_point("cdc", 30, 60, now + 61).unwrap();
        assert!(u.updated);
        assert_eq!(
            (u.min.service_id.as_str(), u.min.safe_point),
            (GC_WORKER_SERVICE_ID, 20)
        );
        // ttl <= 0 removes.
        gc.update_service_safe_point("cdc", 0, 0, now + 61).unwrap();
        let ids: Vec<String> = gc
            .service_safe_points()
            .into_iter()
            .map(|s| s.service_id)
            .collect();
        assert_eq!(ids, vec![GC_WORKER_SERVICE_ID.to_string()]);
    }
}
