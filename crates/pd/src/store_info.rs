//! What PD knows about one store: its metadata, its latest stats and heartbeat time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoll_proto::{metapb, pdpb};

/// A store without a heartbeat for longer than this is shown as `Disconnected` (PD's value).
pub const STORE_DISCONNECT_DURATION: Duration = Duration::from_secs(20);

/// A store as seen by PD.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreInfo {
    pub meta: metapb::Store,
    /// The latest stats from a store heartbeat.
    pub stats: Option<pdpb::StoreStats>,
    /// When PD (this process) first learned of the store; counts as the last heartbeat until
    /// a real one arrives, so a just-registered store is not shown as down.
    pub known_since: SystemTime,
    /// When the store's `last_heartbeat` was last persisted.
    pub last_persisted_heartbeat: Option<SystemTime>,
    /// Leader and region weights (`POST /pd/api/v1/store/{id}/weight`); 1 unless changed.
    pub weight: StoreWeight,
}

/// A store's scheduling weights: its share of leaders and of region data is proportional to
/// them (PD's `leader-weight` / `region-weight`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoreWeight {
    pub leader: f64,
    pub region: f64,
}

impl Default for StoreWeight {
    fn default() -> Self {
        StoreWeight {
            leader: 1.0,
            region: 1.0,
        }
    }
}

/// How the HTTP API names a store's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStateName {
    Up,
    Offline,
    Tombstone,
    Disconnected,
    Down,
}

impl StoreStateName {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreStateName::Up => "Up",
            StoreStateName::Offline => "Offline",
            StoreStateName::Tombstone => "Tombstone",
            StoreStateName::Disconnected => "Disconnected",
            StoreStateName::Down => "Down",
        }
    }
}

pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl StoreInfo {
    pub fn new(meta: metapb::Store, now: SystemTime) -> StoreInfo {
        StoreInfo {
            meta,
            stats: None,
            known_since: now,
            last_persisted_heartbeat: None,
            weight: StoreWeight::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn state(&self) -> metapb::StoreState {
        metapb::StoreState::try_from(self.meta.state).unwrap_or(metapb::StoreState::Up)
    }

    /// Being removed (`DELETE /pd/api/v1/store/{id}`): its replicas are moved away.
    pub fn is_offline(&self) -> bool {
        self.state() == metapb::StoreState::Offline
    }

    pub fn is_tombstone(&self) -> bool {
        self.state() == metapb::StoreState::Tombstone
            || self.meta.node_state == metapb::NodeState::Removed as i32
    }

    /// The last heartbeat, if the store ever sent one.
    pub fn last_heartbeat(&self) -> Option<SystemTime> {
        (self.meta.last_heartbeat > 0)
            .then(|| UNIX_EPOCH + Duration::from_nanos(self.meta.last_heartbeat as u64))
    }

    /// Time since the last heartbeat (or since PD learned of the store).
    pub fn down_time(&self, now: SystemTime) -> Duration {
        let since = self
            .last_heartbeat()
            .unwrap_or(self.known_since)
            .max(self.known_since);
        now.duration_since(since).unwrap_or_default()
    }

    /// Records a store heartbeat.
    pub fn heartbeat(&mut self, stats: pdpb::StoreStats, now: SystemTime) {
        self.meta.last_heartbeat = unix_nanos(now);
        self.stats = Some(stats);
    }

    /// The state name PD's HTTP API shows: an `Up` store that misses heartbeats is
    /// `Disconnected`, then `Down` after `max_down_time`.
    pub fn state_name(&self, now: SystemTime, max_down_time: Duration) -> StoreStateName {
        match self.state() {
            metapb::StoreState::Offline => StoreStateName::Offline,
            metapb::StoreState::Tombstone => StoreStateName::Tombstone,
            metapb::StoreState::Up => {
                let down = self.down_time(now);
                if down > max_down_time {
                    StoreStateName::Down
                } else if down > STORE_DISCONNECT_DURATION {
                    StoreStateName::Disconnected
                } else {
                    StoreStateName::Up
                }
            }
        }
    }

    /// Uptime from the store's reported start time to its last heartbeat.
    pub fn uptime(&self) -> Option<Duration> {
        let start = self
            .stats
            .as_ref()
            .map(|s| u64::from(s.start_time))
            .filter(|s| *s > 0)?;
        let start = UNIX_EPOCH + Duration::from_secs(start);
        self.last_heartbeat()?.duration_since(start).ok()
    }

    /// The value of label `key`, if the store has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.meta
            .labels
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.value.as_str())
    }

    /// Capacity and available bytes from the latest heartbeat (0 when unknown).
    pub fn space(&self) -> (u64, u64) {
        self.stats.as_ref().map_or((0, 0), |s| (s.capacity, s.available))
    }

    /// Merges `labels` into the store's labels (same key: the new value wins).
    pub fn merge_labels(&mut self, labels: &[metapb::StoreLabel]) {
        for l in labels {
            match self.meta.labels.iter_mut().find(|x| x.key == l.key) {
                Some(x) => x.value = l.value.clone(),
                None => self.meta.labels.push(l.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_name_follows_heartbeats() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut s = StoreInfo::new(
            metapb::Store {
                id: 1,
                ..Default::default()
            },
            t0,
        );
        let max_down = Duration::from_secs(30 * 60);
        assert_eq!(
            s.state_name(t0 + Duration::from_secs(5), max_down),
            StoreStateName::Up
        );
        assert_eq!(
            s.state_name(t0 + Duration::from_secs(25), max_down),
            StoreStateName::Disconnected
        );
        s.heartbeat(
            pdpb::StoreStats {
                store_id: 1,
                ..Default::default()
            },
            t0 + Duration::from_secs(30),
        );
        assert_eq!(
            s.state_name(t0 + Duration::from_secs(35), max_down),
            StoreStateName::Up
        );
        assert_eq!(
            s.state_name(t0 + Duration::from_secs(31 * 60 + 30), max_down),
            StoreStateName::Down
        );
        s.meta.state = metapb::StoreState::Offline as i32;
        assert_eq!(s.state_name(t0, max_down), StoreStateName::Offline);
    }
}
