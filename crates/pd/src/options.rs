//! The configuration that can change while PD runs: `[schedule]` and `[replication]`.
//!
//! PD's HTTP API (`POST /pd/api/v1/config`, `/config/schedule`, `/config/replicate`) changes
//! these sections at runtime. Like PD, a runtime change is persisted (`pd/config`, JSON with
//! kebab-case keys) and a persisted configuration wins over the config file at the next start:
//! the file only seeds a PD that was never reconfigured at runtime.
//!
//! Invariants: readers always see a whole, validated section (never a half-applied update);
//! an update is persisted before it becomes visible; `max-replicas` is at least 1.

use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{ReplicationConfig, ScheduleConfig};
use crate::error::{Error, Result};
use crate::storage::MetaStorage;

/// What is persisted under `pd/config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct Persisted {
    schedule: ScheduleConfig,
    replication: ReplicationConfig,
}

/// The live `[schedule]` and `[replication]` sections.
pub struct PersistOptions {
    storage: MetaStorage,
    schedule: RwLock<ScheduleConfig>,
    replication: RwLock<ReplicationConfig>,
    /// Serializes updates (read-modify-persist-publish).
    update: Mutex<()>,
}

/// Which section a runtime update targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Schedule,
    Replication,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Schedule => "schedule",
            Section::Replication => "replication",
        }
    }
}

fn validate_replication(r: &ReplicationConfig) -> std::result::Result<(), String> {
    if r.max_replicas == 0 {
        return Err("max-replicas must be at least 1".into());
    }
    if r.max_replicas > 5 * 1024 {
        return Err(format!("max-replicas {} is not sensible", r.max_replicas));
    }
    if !r.isolation_level.is_empty()
        && !r
            .location_labels
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&r.isolation_level))
    {
        return Err(format!(
            "isolation-level {} must be one of location-labels {:?}",
            r.isolation_level, r.location_labels
        ));
    }
    Ok(())
}

fn validate_schedule(s: &ScheduleConfig) -> std::result::Result<(), String> {
    if s.max_store_down_time.0.is_zero() {
        return Err("max-store-down-time must be positive".into());
    }
    if s.patrol_region_interval.0.is_zero() {
        return Err("patrol-region-interval must be positive".into());
    }
    if s.tolerant_size_ratio.is_nan() || s.tolerant_size_ratio < 0.0 {
        return Err("tolerant-size-ratio must not be negative".into());
    }
    if !matches!(s.leader_schedule_policy.as_str(), "count" | "size") {
        return Err(format!(
            "leader-schedule-policy {} is neither count nor size",
            s.leader_schedule_policy
        ));
    }
    for (store, l) in &s.store_limit {
        let bad = |v: f64| v.is_nan() || v < 0.0;
        if store.parse::<u64>().is_err() || bad(l.add_peer) || bad(l.remove_peer) {
            return Err(format!("invalid store-limit for store {store}"));
        }
    }
    Ok(())
}

/// Converts `new` to the JSON type of `old` where PD's clients send another spelling: pd-ctl
/// sends booleans as `"true"`, numbers as JSON floats, lists as comma-separated strings.
fn coerce(
    key: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> std::result::Result<serde_json::Value, String> {
    use serde_json::Value;
    let bad = || format!("invalid value {new} for {key}");
    Ok(match (old, new) {
        (Value::Bool(_), Value::String(s)) => Value::Bool(s.parse::<bool>().map_err(|_| bad())?),
        (Value::Number(o), Value::Number(n)) if o.is_u64() || o.is_i64() => {
            match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Value::from(u),
                (None, Some(i), _) => Value::from(i),
                (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => return Err(bad()),
            }
        }
        (Value::Number(o), Value::String(s)) if o.is_u64() || o.is_i64() => {
            Value::from(s.trim().parse::<i64>().map_err(|_| bad())?)
        }
        (Value::Number(_), Value::String(s)) => Value::from(s.trim().parse::<f64>().map_err(|_| bad())?),
        (Value::Array(_), Value::String(s)) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_string()))
                .collect(),
        ),
        (Value::String(_), Value::Number(n)) => Value::String(n.to_string()),
        _ => new.clone(),
    })
}

/// `current` with the kebab-case `updates` applied; every key must exist in the section.
pub fn apply_update<T: Serialize + DeserializeOwned>(
    section: Section,
    current: &T,
    updates: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<T, String> {
    let mut value = serde_json::to_value(current).map_err(|e| e.to_string())?;
    let Some(obj) = value.as_object_mut() else {
        return Err(format!("{} is not an object", section.name()));
    };
    for (key, new) in updates {
        let Some(old) = obj.get(key) else {
            return Err(format!("config item {key} not found in {}", section.name()));
        };
        let coerced = coerce(key, old, new)?;
        obj.insert(key.clone(), coerced);
    }
    serde_json::from_value(value).map_err(|e| format!("invalid {} config: {e}", section.name()))
}

/// Whether `key` (kebab-case) is an item of `section`.
pub fn section_has_key(section: Section, key: &str) -> bool {
    let value = match section {
        Section::Schedule => serde_json::to_value(ScheduleConfig::default()),
        Section::Replication => serde_json::to_value(ReplicationConfig::default()),
    };
    value
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key(key)))
        == Some(true)
}

impl PersistOptions {
    /// The persisted sections if PD was reconfigured at runtime before, else the file's.
    pub fn load(
        storage: MetaStorage,
        schedule: ScheduleConfig,
        replication: ReplicationConfig,
    ) -> Result<Self> {
        let (schedule, replication) = match storage.load_config()? {
            Some(json) => {
                let p: Persisted = serde_json::from_slice(&json).map_err(|e| Error::Corrupted {
                    key: "pd/config".into(),
                    reason: e.to_string(),
                })?;
                if p.schedule != schedule || p.replication != replication {
                    tracing::info!(
                        "using the schedule and replication configuration changed at runtime; \
                         the config file's values for them are ignored"
                    );
                }
                (p.schedule, p.replication)
            }
            None => (schedule, replication),
        };
        Ok(PersistOptions {
            storage,
            schedule: RwLock::new(schedule),
            replication: RwLock::new(replication),
            update: Mutex::new(()),
        })
    }

    pub fn schedule(&self) -> ScheduleConfig {
        self.schedule.read().clone()
    }

    pub fn replication(&self) -> ReplicationConfig {
        self.replication.read().clone()
    }

    pub fn max_replicas(&self) -> u64 {
        self.replication.read().max_replicas
    }

    /// Store `store`'s limit of `typ` in regions per minute (0 = unlimited).
    pub fn store_limit(&self, store: u64, typ: crate::schedule::store_limit::LimitType) -> f64 {
        use crate::schedule::store_limit::LimitType;
        let l = self
            .schedule
            .read()
            .store_limit
            .get(&store.to_string())
            .copied()
            .unwrap_or_default();
        match typ {
            LimitType::AddPeer => l.add_peer,
            LimitType::RemovePeer => l.remove_peer,
        }
    }

    pub fn max_store_down_time(&self) -> std::time::Duration {
        self.schedule.read().max_store_down_time.0
    }

    fn persist(&self, schedule: &ScheduleConfig, replication: &ReplicationConfig) -> Result<()> {
        let p = Persisted {
            schedule: schedule.clone(),
            replication: replication.clone(),
        };
        let json = serde_json::to_vec(&p).map_err(|e| Error::Config(e.to_string()))?;
        self.storage.save_config(&json)
    }

    /// Applies `updates` (kebab-case items per section) all at once: persisted, then published.
    /// `Err(InvalidRequest)` for a bad key or value, and then nothing changes.
    pub fn update(&self, updates: &[(Section, serde_json::Map<String, serde_json::Value>)]) -> Result<()> {
        let _guard = self.update.lock();
        let (mut schedule, mut replication) = (self.schedule(), self.replication());
        for (section, items) in updates {
            match section {
                Section::Schedule => {
                    schedule = apply_update(*section, &schedule, items).map_err(Error::InvalidRequest)?;
                }
                Section::Replication => {
                    replication =
                        apply_update(*section, &replication, items).map_err(Error::InvalidRequest)?;
                }
            }
        }
        validate_schedule(&schedule).map_err(Error::InvalidRequest)?;
        validate_replication(&replication).map_err(Error::InvalidRequest)?;
        self.persist(&schedule, &replication)?;
        tracing::info!(?updates, "configuration changed at runtime");
        *self.schedule.write() = schedule;
        *self.replication.write() = replication;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;
    use serde_json::json;

    use super::*;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn partial_updates_with_pd_ctl_spellings() {
        let engine = MemEngine::new();
        let o = PersistOptions::load(
            MetaStorage::new(engine.clone()),
            ScheduleConfig::default(),
            ReplicationConfig::default(),
        )
        .unwrap();
        o.update(&[(Section::Replication, map(json!({"max-replicas": 5.0})))])
            .unwrap();
        assert_eq!(o.max_replicas(), 5);
        o.update(&[(
            Section::Replication,
            map(json!({"location-labels": "zone,host", "strictly-match-label": "true"})),
        )])
        .unwrap();
        let r = o.replication();
        assert_eq!(r.location_labels, vec!["zone", "host"]);
        assert!(r.strictly_match_label);
        assert_eq!(r.max_replicas, 5);
        o.update(&[(
            Section::Schedule,
            map(json!({"max-store-down-time": "10m", "enable-make-up-replica": "false", "replica-schedule-limit": 8})),
        )])
        .unwrap();
        let s = o.schedule();
        assert_eq!(s.max_store_down_time.0.as_secs(), 600);
        assert!(!s.enable_make_up_replica);
        assert_eq!(s.replica_schedule_limit, 8);

        // Bad input changes nothing.
        for (section, bad) in [
            (Section::Replication, json!({"max-replicas": 0})),
            (Section::Replication, json!({"max-replicas": -1})),
            (Section::Replication, json!({"max-replicas": 1.5})),
            (Section::Replication, json!({"max-replica": 3})),
            (Section::Schedule, json!({"max-store-down-time": "soon"})),
            (Section::Schedule, json!({"enable-make-up-replica": "maybe"})),
        ] {
            assert!(o.update(&[(section, map(bad.clone()))]).is_err(), "{bad}");
        }
        assert_eq!(o.max_replicas(), 5);
        // All or nothing across sections.
        let both = [
            (Section::Schedule, map(json!({"replica-schedule-limit": 9}))),
            (Section::Replication, map(json!({"max-replicas": 0}))),
        ];
        assert!(o.update(&both).is_err());
        assert_eq!(o.schedule().replica_schedule_limit, 8);

        // Persisted: a restart with other file values keeps the runtime ones.
        let o2 = PersistOptions::load(
            MetaStorage::new(engine),
            ScheduleConfig::default(),
            ReplicationConfig {
                max_replicas: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(o2.max_replicas(), 5);
        assert!(!o2.schedule().enable_make_up_replica);
        assert!(section_has_key(Section::Replication, "max-replicas"));
        assert!(!section_has_key(Section::Schedule, "max-replicas"));
    }
}
