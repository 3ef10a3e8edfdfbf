//! Read flow per region: how many keys and bytes this node's reads returned for each region
//! since the last time someone took the counts (the PD worker, for the `keys_read` /
//! `bytes_read` of region heartbeats, which PD's hot-read statistics use).
//!
//! Counting is per request, not per key: a read sums what it returns and records the sum once
//! (one short lock of one of [`SHARDS`] maps, chosen by region id). Bytes are key plus value of
//! every pair returned (key only for key-only scans); keys not found or hidden by a lock are
//! not counted. A read is counted on the node that served it, leader or follower.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Number of independently locked maps.
pub const SHARDS: usize = 16;

/// Keys and bytes read from one region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadFlow {
    pub keys: u64,
    pub bytes: u64,
}

impl ReadFlow {
    /// The flow of returning `pairs` (key, value).
    pub fn of_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> ReadFlow {
        let mut flow = ReadFlow::default();
        for (k, v) in pairs {
            flow.keys += 1;
            flow.bytes += (k.len() + v.len()) as u64;
        }
        flow
    }

    fn add(&mut self, other: ReadFlow) {
        self.keys = self.keys.saturating_add(other.keys);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Shared per-region read counters; clones share the counts.
#[derive(Clone)]
pub struct ReadStats {
    shards: Arc<[Mutex<HashMap<u64, ReadFlow>>]>,
}

impl Default for ReadStats {
    fn default() -> ReadStats {
        ReadStats::new()
    }
}

impl ReadStats {
    pub fn new() -> ReadStats {
        ReadStats {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, region_id: u64) -> &Mutex<HashMap<u64, ReadFlow>> {
        &self.shards[(region_id % SHARDS as u64) as usize]
    }

    /// Adds one request's flow to `region_id` (nothing for an empty flow).
    pub fn record(&self, region_id: u64, flow: ReadFlow) {
        if flow == ReadFlow::default() {
            return;
        }
        self.shard(region_id)
            .lock()
            .entry(region_id)
            .or_default()
            .add(flow);
    }

    /// The flow of `region_id` since it was last taken, and resets it.
    pub fn take(&self, region_id: u64) -> ReadFlow {
        self.shard(region_id)
            .lock()
            .remove(&region_id)
            .unwrap_or_default()
    }

    /// Every region's flow since it was last taken, and resets them all.
    pub fn take_all(&self) -> HashMap<u64, ReadFlow> {
        let mut all = HashMap::new();
        for shard in self.shards.iter() {
            all.extend(std::mem::take(&mut *shard.lock()));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_of_pairs_counts_keys_and_key_plus_value_bytes() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"ab".to_vec(), b"xyz".to_vec()), (b"c".to_vec(), vec![])];
        let flow = ReadFlow::of_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        assert_eq!(flow, ReadFlow { keys: 2, bytes: 6 });
        assert_eq!(ReadFlow::of_pairs(std::iter::empty()), ReadFlow::default());
    }

    #[test]
    fn records_sum_per_region_and_take_resets() {
        let stats = ReadStats::new();
        let shared = stats.clone();
        shared.record(1, ReadFlow { keys: 2, bytes: 10 });
        shared.record(1, ReadFlow { keys: 1, bytes: 5 });
        shared.record(17, ReadFlow { keys: 4, bytes: 40 }); // same shard as region 1
        shared.record(2, ReadFlow::default()); // nothing read: no entry
        assert_eq!(stats.take(1), ReadFlow { keys: 3, bytes: 15 });
        assert_eq!(stats.take(1), ReadFlow::default());
        shared.record(3, ReadFlow { keys: 1, bytes: 1 });
        let all = stats.take_all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&17], ReadFlow { keys: 4, bytes: 40 });
        assert_eq!(all[&3], ReadFlow { keys: 1, bytes: 1 });
        assert!(stats.take_all().is_empty());
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let stats = ReadStats::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = stats.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        s.record(i % 5, ReadFlow { keys: 1, bytes: 3 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let all = stats.take_all();
        assert_eq!(all.values().map(|f| f.keys).sum::<u64>(), 4000);
        assert_eq!(
            all[&0],
            ReadFlow {
                keys: 800,
                bytes: 2400
            }
        );
    }
}
