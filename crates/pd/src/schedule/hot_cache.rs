//! Hot regions: the write and read rates of each region, from its leader's heartbeats
//! (`bytes_written`, `keys_written`, `bytes_read`, `keys_read` over the heartbeat's
//! `interval`), and how many heartbeats in a row it has been hot (PD's hot cache, simplified).
//!
//! A region is hot for a kind when its byte rate is at least 1 KiB/s (write) / 8 KiB/s (read)
//! or its key rate at least 32/s (write) / 128/s (read) — PD's minimum hot thresholds. Each
//! hot report raises its hot degree by one; a cold report lowers it and spends one of its two
//! "anti" counts; it leaves the cache when they are spent. The hot-region scheduler only acts
//! on regions whose degree reached `hot-region-cache-hits-threshold` (3).
//!
//! Invariant: a heartbeat without an interval (or a zero one) changes nothing.

use std::collections::HashMap;
use std::time::SystemTime;

use atoll_proto::metapb;
use parking_lot::Mutex;

use crate::region_info::RegionInfo;

/// Write or read load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HotKind {
    Write,
    Read,
}

impl HotKind {
    pub fn name(self) -> &'static str {
        match self {
            HotKind::Write => "write",
            HotKind::Read => "read",
        }
    }

    /// PD's minimum hot thresholds: (bytes/s, keys/s).
    fn thresholds(self) -> (f64, f64) {
        match self {
            HotKind::Write => (1024.0, 32.0),
            HotKind::Read => (8.0 * 1024.0, 128.0),
        }
    }
}

/// PD's `HotRegionAntiCount`.
const ANTI_COUNT: i64 = 2;

/// One hot region as the cache knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HotRegionStat {
    pub region_id: u64,
    pub byte_rate: f64,
    pub key_rate: f64,
    pub hot_degree: i64,
    pub anti_count: i64,
    /// The leader's store at the last report.
    pub leader_store: u64,
    /// (store, is learner) of every peer at the last report.
    pub peers: Vec<(u64, bool)>,
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    pub last_update: SystemTime,
}

/// Recent load of every hot region.
#[derive(Default)]
pub struct HotCache {
    entries: Mutex<HashMap<(HotKind, u64), HotRegionStat>>,
}

impl HotCache {
    pub fn new() -> HotCache {
        HotCache::default()
    }

    /// Takes in a region's latest heartbeat.
    pub fn observe(&self, region: &RegionInfo, now: SystemTime) {
        if region.interval_secs == 0 {
            return;
        }
        let secs = region.interval_secs as f64;
        let mut entries = self.entries.lock();
        for (kind, bytes, keys) in [
            (HotKind::Write, region.written_bytes, region.written_keys),
            (HotKind::Read, region.read_bytes, region.read_keys),
        ] {
            let (byte_rate, key_rate) = (bytes as f64 / secs, keys as f64 / secs);
            let (min_bytes, min_keys) = kind.thresholds();
            let hot = byte_rate >= min_bytes || key_rate >= min_keys;
            let key = (kind, region.id());
            let stat = HotRegionStat {
                region_id: region.id(),
                byte_rate,
                key_rate,
                hot_degree: 1,
                anti_count: ANTI_COUNT,
                leader_store: region.leader.map_or(0, |l| l.store_id),
                peers: region
                    .meta
                    .peers
                    .iter()
                    .map(|p| (p.store_id, p.role == metapb::PeerRole::Learner as i32))
                    .collect(),
                start_key: region.start_key().to_vec(),
                end_key: region.end_key().to_vec(),
                last_update: now,
            };
            match (entries.get_mut(&key), hot) {
                (Some(old), true) => {
                    let degree = old.hot_degree + 1;
                    *old = HotRegionStat {
                        hot_degree: degree,
                        ..stat
                    };
                }
                (Some(old), false) => {
                    old.anti_count -= 1;
                    old.hot_degree -= 1;
                    if old.anti_count <= 0 {
                        entries.remove(&key);
                    } else {
                        let (degree, anti) = (old.hot_degree, old.anti_count);
                        *old = HotRegionStat {
                            hot_degree: degree,
                            anti_count: anti,
                            ..stat
                        };
                    }
                }
                (None, true) => {
                    entries.insert(key, stat);
                }
                (None, false) => {}
            }
        }
    }

    /// Forgets a region (merged away).
    pub fn forget(&self, region_id: u64) {
        self.entries.lock().retain(|(_, id), _| *id != region_id);
    }

    /// Hot regions of `kind` with at least `min_degree`, by region id.
    pub fn hot_regions(&self, kind: HotKind, min_degree: u64) -> Vec<HotRegionStat> {
        let min = i64::try_from(min_degree).unwrap_or(i64::MAX);
        let mut out: Vec<HotRegionStat> = self
            .entries
            .lock()
            .iter()
            .filter(|((k, _), s)| *k == kind && s.hot_degree >= min)
            .map(|(_, s)| s.clone())
            .collect();
        out.sort_by_key(|s| s.region_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::{region, V};

    fn report(bytes: u64) -> RegionInfo {
        let mut r = region(2, &[(10, 1, V), (11, 2, V)], 1, (2, 1));
        r.written_bytes = bytes;
        r.written_keys = 1;
        r.interval_secs = 10;
        r
    }

    #[test]
    fn degree_grows_while_hot_and_fades() {
        let c = HotCache::new();
        let now = SystemTime::now();
        c.observe(&report(5 * 1024), now); // 512 B/s: cold.
        assert!(c.hot_regions(HotKind::Write, 0).is_empty());
        for _ in 0..3 {
            c.observe(&report(100 * 1024), now); // 10 KiB/s: hot.
        }
        let hot = c.hot_regions(HotKind::Write, 3);
        assert_eq!(hot.len(), 1);
        assert_eq!(hot[0].hot_degree, 3);
        assert_eq!(hot[0].byte_rate, 10240.0);
        assert_eq!(hot[0].peers, vec![(1, false), (2, false)]);
        assert!(c.hot_regions(HotKind::Read, 0).is_empty());
        // Two cold reports and it is gone.
        c.observe(&report(0), now);
        assert_eq!(c.hot_regions(HotKind::Write, 0)[0].hot_degree, 2);
        c.observe(&report(0), now);
        assert!(c.hot_regions(HotKind::Write, 0).is_empty());
        // No interval: ignored.
        let mut r = report(1 << 30);
        r.interval_secs = 0;
        c.observe(&r, now);
        assert!(c.hot_regions(HotKind::Write, 0).is_empty());
    }
}
