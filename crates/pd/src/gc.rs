//! GC safe point and service safe points (PD v8 "safe point v1" semantics).
//!
//! Invariants: the GC safe point never moves back; a service safe point is only accepted if it
//! is not below the current minimum; `gc_worker`'s entry always exists (created at 0, or at the
//! minimum of the other services) and never expires.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::error::Result;
use crate::storage::{MetaStorage, ServiceSafePoint};

/// The service id TiDB's GC worker uses.
pub const GC_WORKER_SERVICE_ID: &str = "gc_worker";

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
