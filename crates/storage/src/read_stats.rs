//! Read load per region, counted on the node that served each read (leader or follower):
//!
//! * the keys and bytes reads returned since the PD worker last took them (the `keys_read` /
//!   `bytes_read` of region heartbeats, which PD's hot-read statistics use);
//! * a load window (requests, bytes, and a reservoir of [`SAMPLES`] sampled request key
//!   ranges) since the load-split controller last took it, every second.
//!
//! Counting is per request, not per key: a read sums what it returns and records the sum once
//! (one short lock of one of [`SHARDS`] maps, chosen by region id; a key is copied only when
//! the reservoir keeps it). Bytes are key plus value of every pair returned (key only for
//! key-only scans); keys not found or hidden by a lock are not counted in the flow, but the
//! request counts in the load window.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Number of independently locked maps.
pub const SHARDS: usize = 16;
/// Request key ranges sampled per region and window (TiKV's `sample-num`).
pub const SAMPLES: usize = 20;

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

    fn is_empty(&self) -> bool {
        *self == ReadFlow::default()
    }
}

/// The stored keys one read request covered, `start..=last` (`start == last`: one key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySample {
    pub start: Vec<u8>,
    pub last: Vec<u8>,
}

/// A region's read load over one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadWindow {
    pub requests: u64,
    pub bytes: u64,
    /// Up to [`SAMPLES`] request key ranges, each request equally likely to be kept.
    pub samples: Vec<KeySample>,
}

impl LoadWindow {
    fn is_empty(&self) -> bool {
        self.requests == 0
    }
}

#[derive(Default)]
struct RegionReads {
    flow: ReadFlow,
    load: LoadWindow,
}

struct Shard {
    regions: HashMap<u64, RegionReads>,
    /// xorshift64 state for reservoir sampling.
    rng: u64,
}

impl Shard {
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// Shared per-region read counters; clones share the counts.
#[derive(Clone)]
pub struct ReadStats {
    shards: Arc<[Mutex<Shard>]>,
}

impl Default for ReadStats {
    fn default() -> ReadStats {
        ReadStats::new()
    }
}

impl ReadStats {
    pub fn new() -> ReadStats {
        ReadStats {
            shards: (0..SHARDS as u64)
                .map(|i| {
                    Mutex::new(Shard {
                        regions: HashMap::new(),
                        rng: 0x9E37_79B9_7F4A_7C15 ^ (i + 1),
                    })
                })
                .collect(),
        }
    }

    fn shard(&self, region_id: u64) -> &Mutex<Shard> {
        &self.shards[(region_id % SHARDS as u64) as usize]
    }

    /// Adds one request's returned flow to `region_id`, without a key sample.
    pub fn record(&self, region_id: u64, flow: ReadFlow) {
        if flow.is_empty() {
            return;
        }
        self.shard(region_id)
            .lock()
            .regions
            .entry(region_id)
            .or_default()
            .flow
            .add(flow);
    }

    /// Records one read request of `region_id`: what it returned, and the stored keys it
    /// covered, `start..=last` in either order, for load split.
    pub fn record_request(&self, region_id: u64, flow: ReadFlow, start: &[u8], last: &[u8]) {
        let mut shard = self.shard(region_id).lock();
        let random = shard.next_random();
        let reads = shard.regions.entry(region_id).or_default();
        reads.flow.add(flow);
        let load = &mut reads.load;
        load.requests += 1;
        load.bytes = load.bytes.saturating_add(flow.bytes);
        // Reservoir sampling: the n-th request replaces a kept one with probability SAMPLES/n.
        let slot = if load.samples.len() < SAMPLES {
            Some(load.samples.len())
        } else {
            let j = (random % load.requests) as usize;
            (j < SAMPLES).then_some(j)
        };
        if let Some(slot) = slot {
            let (start, last) = if start <= last {
                (start, last)
            } else {
                (last, start)
            };
            let sample = KeySample {
                start: start.to_vec(),
                last: last.to_vec(),
            };
            if slot == load.samples.len() {
                load.samples.push(sample);
            } else {
                load.samples[slot] = sample;
            }
        }
    }

    /// The flow of `region_id` since it was last taken, and resets it.
    pub fn take(&self, region_id: u64) -> ReadFlow {
        let mut shard = self.shard(region_id).lock();
        let Some(reads) = shard.regions.get_mut(&region_id) else {
            return ReadFlow::default();
        };
        let flow = std::mem::take(&mut reads.flow);
        if reads.load.is_empty() {
            shard.regions.remove(&region_id);
        }
        flow
    }

    /// Every region's flow since it was last taken, and resets them all.
    pub fn take_all(&self) -> HashMap<u64, ReadFlow> {
        let mut all = HashMap::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.regions.retain(|id, reads| {
                if !reads.flow.is_empty() {
                    all.insert(*id, std::mem::take(&mut reads.flow));
                }
                !reads.load.is_empty()
            });
        }
        all
    }

    /// Every region's load window since it was last taken, and starts new windows.
    pub fn take_load(&self) -> HashMap<u64, LoadWindow> {
        let mut all = HashMap::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.regions.retain(|id, reads| {
                if !reads.load.is_empty() {
                    all.insert(*id, std::mem::take(&mut reads.load));
                }
                !reads.flow.is_empty()
            });
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

    #[test]
    fn load_windows_count_requests_and_keep_a_bounded_sample() {
        let stats = ReadStats::new();
        for i in 0..1000u32 {
            let key = i.to_be_bytes();
            stats.record_request(5, ReadFlow { keys: 1, bytes: 2 }, &key, &key);
        }
        stats.record_request(6, ReadFlow::default(), b"b", b"a");
        // The flow and the load window are taken apart.
        assert_eq!(
            stats.take(5),
            ReadFlow {
                keys: 1000,
                bytes: 2000
            }
        );
        let load = stats.take_load();
        assert_eq!(load[&5].requests, 1000);
        assert_eq!(load[&5].bytes, 2000);
        assert_eq!(load[&5].samples.len(), SAMPLES);
        // Not just the first requests: the reservoir kept later ones too.
        assert!(load[&5]
            .samples
            .iter()
            .any(|s| s.start > 100u32.to_be_bytes().to_vec()));
        assert_eq!(
            load[&6].samples,
            vec![KeySample {
                start: b"a".to_vec(),
                last: b"b".to_vec()
            }]
        );
        assert!(stats.take_load().is_empty());
        assert!(stats.take_all().is_empty());
    }
}
