//! Load-based split (TiKV's `AutoSplitController`, simplified): a region read more than
//! `[split] qps-threshold` requests or `byte-threshold` bytes per second, for `detect-times`
//! one-second windows in a row, is split at a key that divides its sampled requests evenly, so
//! PD can move half of the load to another store.
//!
//! Inputs are the load windows of [`storage::ReadStats`] (request count, bytes returned, a
//! reservoir of sampled request key ranges per region); the decision
//! ([`AutoSplitController::on_windows`], [`choose_split_key`]) is a pure function of them; the
//! split is asked of the store (`Router::split_region`), which checks leadership, epoch and key
//! range, and gets ids from PD.

use std::collections::HashMap;
use std::time::Duration;

use engine_rocks::RocksSnapshot;
use raftstore::{CmdHeader, Router};
use storage::read_stats::{KeySample, LoadWindow};
use storage::ReadStats;

use crate::config::SplitSection;

/// Where sampled requests fall relative to a candidate split key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sides {
    left: usize,
    right: usize,
    contained: usize,
}

fn sides(samples: &[KeySample], key: &[u8]) -> Sides {
    let mut s = Sides::default();
    for sample in samples {
        if sample.last.as_slice() < key {
            s.left += 1;
        } else if sample.start.as_slice() >= key {
            s.right += 1;
        } else {
            s.contained += 1;
        }
    }
    s
}

/// The sampled start key that best balances the sampled requests: the one minimizing
/// `|left - right| / (left + right)` (requests wholly left of the key vs. at or right of it),
/// among those with that score at most `balance_score` and at most `contained_score` of the
/// requests spanning the key (a split would cut them in two). Ties go to fewer spanning
/// requests, then to the smaller key. `None` when no key qualifies (e.g. one hot key).
pub fn choose_split_key(samples: &[KeySample], balance_score: f64, contained_score: f64) -> Option<Vec<u8>> {
    let mut candidates: Vec<&[u8]> = samples.iter().map(|s| s.start.as_slice()).collect();
    candidates.sort_unstable();
    candidates.dedup();
    let mut best: Option<(f64, usize, &[u8])> = None;
    for key in candidates {
        let s = sides(samples, key);
        let (sided, total) = (s.left + s.right, s.left + s.right + s.contained);
        if sided == 0 || s.left == 0 || s.right == 0 {
            continue;
        }
        let balance = s.left.abs_diff(s.right) as f64 / sided as f64;
        let contained = s.contained as f64 / total as f64;
        if balance > balance_score || contained > contained_score {
            continue;
        }
        let better = match best {
            None => true,
            Some((b, c, _)) => balance < b || (balance == b && s.contained < c),
        };
        if better {
            best = Some((balance, s.contained, key));
        }
    }
    best.map(|(_, _, key)| key.to_vec())
}

/// Per region: windows in a row over a threshold, and the samples gathered in them.
#[derive(Default)]
struct HotRegion {
    windows: u64,
    samples: Vec<KeySample>,
}

/// Decides which regions to split for their read load, one window at a time.
pub struct AutoSplitController {
    config: SplitSection,
    hot: HashMap<u64, HotRegion>,
}

impl AutoSplitController {
    pub fn new(config: SplitSection) -> AutoSplitController {
        AutoSplitController {
            config,
            hot: HashMap::new(),
        }
    }

    fn over_threshold(&self, w: &LoadWindow, secs: f64) -> bool {
        let qps = w.requests as f64 / secs;
        let bytes = w.bytes as f64 / secs;
        (self.config.qps_threshold > 0 && qps >= self.config.qps_threshold as f64)
            || (self.config.byte_threshold.0 > 0 && bytes >= self.config.byte_threshold.0 as f64)
    }

    /// Takes in one window of `secs` seconds (every region's load in it) and returns the
    /// regions to split now, with their split key. A region below the thresholds in a window
    /// starts over; one over them `detect-times` windows in a row is decided (split at the
    /// best sampled key, or not at all if none balances) and starts over too.
    pub fn on_windows(&mut self, windows: HashMap<u64, LoadWindow>, secs: f64) -> Vec<(u64, Vec<u8>)> {
        let secs = secs.max(f64::EPSILON);
        let mut decided = Vec::new();
        let hot_now: HashMap<u64, LoadWindow> = windows
            .into_iter()
            .filter(|(_, w)| self.over_threshold(w, secs))
            .collect();
        self.hot.retain(|id, _| hot_now.contains_key(id));
        for (id, w) in hot_now {
            let region = self.hot.entry(id).or_default();
            region.windows += 1;
            region.samples.extend(w.samples);
            if region.windows >= self.config.detect_times.max(1) {
                let region = self.hot.remove(&id).unwrap_or_default();
                if let Some(key) = choose_split_key(
                    &region.samples,
                    self.config.split_balance_score,
                    self.config.split_contained_score,
                ) {
                    decided.push((id, key));
                }
            }
        }
        decided.sort();
        decided
    }
}

/// Every second: takes the read load windows, and asks the store to split the regions the
/// controller picks (only those this store leads; the store re-checks everything).
pub async fn run(config: SplitSection, read_stats: ReadStats, router: Router<RocksSnapshot>) {
    let interval = Duration::from_secs(1);
    let mut controller = AutoSplitController::new(config);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        let decided = controller.on_windows(read_stats.take_load(), secs);
        if decided.is_empty() {
            continue;
        }
        let Ok(infos) = router.region_infos().await else {
            return;
        };
        for (region_id, key) in decided {
            let Some(info) = infos.iter().find(|i| i.region.id == region_id && i.is_leader) else {
                continue;
            };
            let epoch = info.region.region_epoch.unwrap_or_default();
            let header = CmdHeader {
                region_id,
                conf_ver: epoch.conf_ver,
                version: epoch.version,
                ..Default::default()
            };
            tracing::info!(region_id, "splitting a region for its read load");
            if router.split_region(header, vec![key]).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReadableSize;

    fn point(k: &[u8]) -> KeySample {
        KeySample {
            start: k.to_vec(),
            last: k.to_vec(),
        }
    }

    fn range(start: &[u8], last: &[u8]) -> KeySample {
        KeySample {
            start: start.to_vec(),
            last: last.to_vec(),
        }
    }

    #[test]
    fn the_key_in_the_middle_of_uniform_point_reads_is_chosen() {
        let samples: Vec<KeySample> = (b'a'..=b'h').map(|c| point(&[c])).collect();
        // Left of "e": a..d (4), right: e..h (4).
        assert_eq!(choose_split_key(&samples, 0.25, 0.5), Some(b"e".to_vec()));
    }

    #[test]
    fn skewed_reads_split_where_the_requests_balance() {
        let mut samples = vec![point(b"a"), point(b"b"), point(b"c")];
        samples.extend(std::iter::repeat_n(point(b"m"), 3));
        samples.extend([point(b"x"), point(b"y")]);
        // "m": 3 left, 5 right (0.25); "x": 6 left, 2 right (0.5).
        assert_eq!(choose_split_key(&samples, 0.25, 0.5), Some(b"m".to_vec()));
        assert_eq!(choose_split_key(&samples, 0.2, 0.5), None);
    }

    #[test]
    fn a_single_hot_key_or_spanning_scans_do_not_split() {
        let one_key = vec![point(b"k"); 20];
        assert_eq!(choose_split_key(&one_key, 0.25, 0.5), None);
        // Long scans from different starts to one end: no request lies wholly left of any
        // candidate, so no split helps.
        let scans = vec![
            range(b"a", b"z"),
            range(b"b", b"z"),
            range(b"c", b"z"),
            range(b"d", b"z"),
        ];
        assert_eq!(choose_split_key(&scans, 1.0, 0.5), None);
        // Short scans side by side split between them.
        let short = vec![
            range(b"a", b"b"),
            range(b"c", b"d"),
            range(b"e", b"f"),
            range(b"g", b"h"),
        ];
        assert_eq!(choose_split_key(&short, 0.25, 0.5), Some(b"e".to_vec()));
    }

    fn config(qps: u64, detect_times: u64) -> SplitSection {
        SplitSection {
            qps_threshold: qps,
            byte_threshold: ReadableSize(0),
            detect_times,
            ..Default::default()
        }
    }

    fn window(requests: u64, keys: &[&[u8]]) -> LoadWindow {
        LoadWindow {
            requests,
            bytes: 0,
            samples: keys.iter().map(|k| point(k)).collect(),
        }
    }

    #[test]
    fn a_region_is_split_after_detect_times_hot_windows_in_a_row() {
        let mut c = AutoSplitController::new(config(100, 3));
        let hot = || {
            HashMap::from([
                (7, window(150, &[b"a", b"b", b"c", b"d"])),
                (8, window(10, &[b"q"])),
            ])
        };
        assert!(c.on_windows(hot(), 1.0).is_empty());
        assert!(c.on_windows(hot(), 1.0).is_empty());
        assert_eq!(c.on_windows(hot(), 1.0), vec![(7, b"c".to_vec())]);
        // Decided: it starts over.
        assert!(c.on_windows(hot(), 1.0).is_empty());
        // A cold window in between resets the count.
        let mut c = AutoSplitController::new(config(100, 2));
        assert!(c.on_windows(hot(), 1.0).is_empty());
        assert!(c
            .on_windows(HashMap::from([(7, window(50, &[b"a"]))]), 1.0)
            .is_empty());
        assert!(c.on_windows(hot(), 1.0).is_empty());
        assert_eq!(c.on_windows(hot(), 1.0).len(), 1);
        // Rates are per second: 150 requests over 2 s is below 100 qps.
        let mut c = AutoSplitController::new(config(100, 1));
        assert!(c.on_windows(hot(), 2.0).is_empty());
    }

    #[test]
    fn byte_threshold_alone_makes_a_region_hot_and_zero_disables() {
        let mut c = AutoSplitController::new(SplitSection {
            qps_threshold: 0,
            byte_threshold: ReadableSize(1000),
            detect_times: 1,
            ..Default::default()
        });
        let mut w = window(1, &[b"a", b"b"]);
        w.bytes = 2000;
        assert_eq!(
            c.on_windows(HashMap::from([(1, w)]), 1.0),
            vec![(1, b"b".to_vec())]
        );
        let mut off = AutoSplitController::new(SplitSection {
            qps_threshold: 0,
            byte_threshold: ReadableSize(0),
            detect_times: 1,
            ..Default::default()
        });
        assert!(off
            .on_windows(HashMap::from([(1, window(1_000_000, &[b"a", b"b"]))]), 1.0)
            .is_empty());
    }
}
