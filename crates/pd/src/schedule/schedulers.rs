//! The scheduler registry: which schedulers run (PD's `GET/POST /pd/api/v1/schedulers`,
//! `DELETE /pd/api/v1/schedulers/{name}`), and when each runs next.
//!
//! By default `balance-region-scheduler`, `balance-leader-scheduler` and
//! `balance-hot-region-scheduler` run (PD's defaults). Once the list is changed at runtime it
//! is persisted (`pd/schedulers`) and wins at the next start, like the runtime configuration.
//!
//! Each scheduler has an interval: after a round that made an operator it runs again after the
//! minimum interval; after an idle round the interval grows by 1.3× up to a maximum (PD's
//! exponential back-off: 10 ms..5 s for balance schedulers, 1 s..20 s for hot regions; Atoll's
//! minimum is the coordinator's 100 ms tick).
//!
//! Invariants: only known names are enabled; the list has no duplicates; a change is persisted
//! before it is visible.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::storage::MetaStorage;

pub const BALANCE_LEADER: &str = super::balance_leader::NAME;
pub const BALANCE_REGION: &str = super::balance_region::NAME;
pub const BALANCE_HOT_REGION: &str = "balance-hot-region-scheduler";

/// Every scheduler Atoll has, in the order they run.
pub const KNOWN: [&str; 3] = [BALANCE_REGION, BALANCE_LEADER, BALANCE_HOT_REGION];

/// Growth of an idle scheduler's interval (PD's `ScheduleIntervalFactor`).
const GROWTH: f64 = 1.3;

/// The interval bounds of `name`.
fn bounds(name: &str, tick: Duration) -> (Duration, Duration) {
    if name == BALANCE_HOT_REGION {
        (Duration::from_secs(1).max(tick), Duration::from_secs(20))
    } else {
        (tick, Duration::from_secs(5))
    }
}

/// Why a change of the list was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("scheduler {0} not found")]
    Unknown(String),
    #[error("scheduler {0} already exists")]
    Exists(String),
    #[error("scheduler {0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    next: Instant,
    interval: Duration,
}

/// The enabled schedulers and their timing.
pub struct Schedulers {
    storage: MetaStorage,
    enabled: RwLock<Vec<String>>,
    timing: Mutex<HashMap<String, Timing>>,
}

/// PD's scheduler names also come without the `-scheduler` suffix in some tools.
fn canonical(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == name || k.strip_suffix("-scheduler") == Some(name))
}

impl Schedulers {
    /// The persisted list if there is one, else the defaults.
    pub fn load(storage: MetaStorage) -> Result<Schedulers> {
        let enabled = match storage.load_schedulers()? {
            Some(json) => {
                let names: Vec<String> = serde_json::from_slice(&json).map_err(|e| Error::Corrupted {
                    key: "pd/schedulers".into(),
                    reason: e.to_string(),
                })?;
                names
                    .iter()
                    .filter_map(|n| canonical(n))
                    .map(str::to_string)
                    .collect()
            }
            None => KNOWN.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Schedulers {
            storage,
            enabled: RwLock::new(enabled),
            timing: Mutex::new(HashMap::new()),
        })
    }

    /// The running schedulers, in run order.
    pub fn list(&self) -> Vec<String> {
        let enabled = self.enabled.read();
        KNOWN
            .iter()
            .filter(|k| enabled.iter().any(|e| e == *k))
            .map(|s| s.to_string())
            .collect()
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled.read().iter().any(|e| e == name)
    }

    fn save(&self, names: &[String]) -> Result<()> {
        let json = serde_json::to_vec(names).map_err(|e| Error::Config(e.to_string()))?;
        self.storage.save_schedulers(&json)
    }

    /// Starts scheduler `name`.
    pub fn add(&self, name: &str) -> std::result::Result<(), SchedulerError> {
        let Some(name) = canonical(name) else {
            return Err(SchedulerError::Unknown(name.to_string()));
        };
        let mut enabled = self.enabled.write();
        if enabled.iter().any(|e| e == name) {
            return Err(SchedulerError::Exists(name.to_string()));
        }
        let mut next = enabled.clone();
        next.push(name.to_string());
        self.save(&next)?;
        *enabled = next;
        self.timing.lock().remove(name);
        tracing::info!(scheduler = name, "scheduler added");
        Ok(())
    }

    /// Stops scheduler `name`.
    pub fn remove(&self, name: &str) -> std::result::Result<(), SchedulerError> {
        let Some(name) = canonical(name) else {
            return Err(SchedulerError::Unknown(name.to_string()));
        };
        let mut enabled = self.enabled.write();
        if !enabled.iter().any(|e| e == name) {
            return Err(SchedulerError::NotRunning(name.to_string()));
        }
        let next: Vec<String> = enabled.iter().filter(|e| *e != name).cloned().collect();
        self.save(&next)?;
        *enabled = next;
        tracing::info!(scheduler = name, "scheduler removed");
        Ok(())
    }

    /// The enabled schedulers due to run at `now`.
    pub fn due(&self, now: Instant) -> Vec<String> {
        let timing = self.timing.lock();
        self.list()
            .into_iter()
            .filter(|n| timing.get(n).is_none_or(|t| t.next <= now))
            .collect()
    }

    /// Records a round of `name` at `now`: back to the minimum interval if it made operators,
    /// else a longer one.
    pub fn ran(&self, name: &str, now: Instant, made_operators: bool, tick: Duration) {
        let (min, max) = bounds(name, tick);
        let mut timing = self.timing.lock();
        let interval = match timing.get(name) {
            _ if made_operators => min,
            Some(t) => t.interval.mul_f64(GROWTH).clamp(min, max),
            None => min,
        };
        timing.insert(
            name.to_string(),
            Timing {
                next: now + interval,
                interval,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;

    use super::*;

    #[test]
    fn list_add_remove_persist() {
        let engine = MemEngine::new();
        let s = Schedulers::load(MetaStorage::new(engine.clone())).unwrap();
        assert_eq!(s.list(), KNOWN.to_vec());
        s.remove("balance-leader-scheduler").unwrap();
        assert!(matches!(
            s.remove("balance-leader-scheduler"),
            Err(SchedulerError::NotRunning(_))
        ));
        assert!(matches!(
            s.add("evict-leader-scheduler"),
            Err(SchedulerError::Unknown(_))
        ));
        assert!(matches!(s.add("balance-region"), Err(SchedulerError::Exists(_))));
        assert!(!s.is_enabled(BALANCE_LEADER));
        // Persisted.
        let s2 = Schedulers::load(MetaStorage::new(engine.clone())).unwrap();
        assert_eq!(s2.list(), vec![BALANCE_REGION, BALANCE_HOT_REGION]);
        s2.add("balance-leader").unwrap();
        let s3 = Schedulers::load(MetaStorage::new(engine)).unwrap();
        assert_eq!(s3.list(), KNOWN.to_vec());
    }

    #[test]
    fn idle_schedulers_back_off() {
        let s = Schedulers::load(MetaStorage::new(MemEngine::new())).unwrap();
        let t0 = Instant::now();
        let tick = Duration::from_millis(100);
        assert_eq!(s.due(t0).len(), 3);
        s.ran(BALANCE_REGION, t0, false, tick);
        assert!(!s.due(t0).contains(&BALANCE_REGION.to_string()));
        assert!(s.due(t0 + tick).contains(&BALANCE_REGION.to_string()));
        let mut t = t0;
        for _ in 0..40 {
            s.ran(BALANCE_REGION, t, false, tick);
            t += Duration::from_secs(5);
        }
        // Capped at 5 s.
        s.ran(BALANCE_REGION, t, false, tick);
        assert!(!s
            .due(t + Duration::from_millis(4900))
            .contains(&BALANCE_REGION.to_string()));
        assert!(s
            .due(t + Duration::from_secs(5))
            .contains(&BALANCE_REGION.to_string()));
        // An operator brings it back to the tick.
        s.ran(BALANCE_REGION, t, true, tick);
        assert!(s.due(t + tick).contains(&BALANCE_REGION.to_string()));
        // Hot regions: at least 1 s.
        s.ran(BALANCE_HOT_REGION, t, true, tick);
        assert!(!s.due(t + tick).contains(&BALANCE_HOT_REGION.to_string()));
    }
}
