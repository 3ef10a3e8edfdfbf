//! The key-space heatmap's history: how much was written and read, per key range, per minute,
//! over the last hour (the dashboard's Key heatmap, like TiDB's Key Visualizer).
//!
//! Data come from region heartbeats: each reports the bytes and keys written and read in the
//! region since its previous report, over an interval of `interval_secs` ending now. A report
//! is spread over the time buckets that interval overlaps (in proportion to the overlap, so a
//! total is never lost nor counted twice), and added to the row of the region's key range in
//! each bucket.
//!
//! Bounded memory: at most [`HeatmapConfig::buckets`] buckets are kept (a ring: recording into a
//! newer bucket evicts those that fell out of the window), and a bucket holds at most
//! `2 × max_rows` rows: when it grows beyond that, adjacent rows (in key order) are merged into
//! `max_rows` rows covering the union of their ranges, their loads summed.
//!
//! Idle regions (a report with no load) get a zero row too, so the key axis covers every range
//! reported in the window, busy or not.
//!
//! Reading ([`Heatmap::view`]) maps the buckets of a window onto one common key axis: every
//! distinct row boundary cuts the key space into segments; a row's load is spread evenly over
//! the segments it covers (remainders to the first ones, so sums are exact); if there are more
//! segments than asked for, consecutive segments are grouped into equal-sized rows.
//!
//! Time is given by the caller ([`Heatmap::record`] and [`Heatmap::view`] take `now` in unix
//! seconds), so the structure is deterministic; [`HeatmapRecorder`] adds a clock and a lock.
//!
//! Keys are kept as PD sees them (region boundaries); an empty end key means +infinity.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// What a heatmap cell is coloured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    WrittenBytes,
    ReadBytes,
    WrittenKeys,
    ReadKeys,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::WrittenBytes,
        Metric::ReadBytes,
        Metric::WrittenKeys,
        Metric::ReadKeys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::WrittenBytes => "written_bytes",
            Metric::ReadBytes => "read_bytes",
            Metric::WrittenKeys => "written_keys",
            Metric::ReadKeys => "read_keys",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Load counted in one key range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub written_bytes: u64,
    pub read_bytes: u64,
    pub written_keys: u64,
    pub read_keys: u64,
}

impl Load {
    pub fn get(&self, m: Metric) -> u64 {
        match m {
            Metric::WrittenBytes => self.written_bytes,
            Metric::ReadBytes => self.read_bytes,
            Metric::WrittenKeys => self.written_keys,
            Metric::ReadKeys => self.read_keys,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Load::default()
    }

    fn add(&mut self, o: &Load) {
        self.written_bytes = self.written_bytes.saturating_add(o.written_bytes);
        self.read_bytes = self.read_bytes.saturating_add(o.read_bytes);
        self.written_keys = self.written_keys.saturating_add(o.written_keys);
        self.read_keys = self.read_keys.saturating_add(o.read_keys);
    }

    /// `self × num / den` per field (`den > 0`), rounded down.
    fn scale(&self, num: u64, den: u64) -> Load {
        let f = |v: u64| (u128::from(v) * u128::from(num) / u128::from(den)) as u64;
        Load {
            written_bytes: f(self.written_bytes),
            read_bytes: f(self.read_bytes),
            written_keys: f(self.written_keys),
            read_keys: f(self.read_keys),
        }
    }

    fn sub(&self, o: &Load) -> Load {
        Load {
            written_bytes: self.written_bytes.saturating_sub(o.written_bytes),
            read_bytes: self.read_bytes.saturating_sub(o.read_bytes),
            written_keys: self.written_keys.saturating_sub(o.written_keys),
            read_keys: self.read_keys.saturating_sub(o.read_keys),
        }
    }
}

/// Sizes of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeatmapConfig {
    /// Width of a time bucket (a heatmap column).
    pub bucket_secs: u64,
    /// Buckets kept (the longest window).
    pub buckets: usize,
    /// Rows a bucket is merged down to when it holds more than twice as many.
    pub max_rows: usize,
}

impl Default for HeatmapConfig {
    /// One-minute columns for an hour, at most 256 rows per column (512 before merging).
    fn default() -> Self {
        HeatmapConfig {
            bucket_secs: 60,
            buckets: 60,
            max_rows: 256,
        }
    }
}

/// Load of one key range in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// Empty = +infinity.
    end: Vec<u8>,
    load: Load,
}

/// One time bucket: rows keyed by (start key, end key).
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// `start_secs / bucket_secs`.
    index: u64,
    rows: BTreeMap<(Vec<u8>, Vec<u8>), Load>,
}

/// `a < b` for end keys, where empty is +infinity.
fn end_max(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() || b.is_empty() {
        Vec::new()
    } else {
        a.max(b).to_vec()
    }
}

impl Bucket {
    fn add(&mut self, start: &[u8], end: &[u8], load: &Load, max_rows: usize) {
        self.rows
            .entry((start.to_vec(), end.to_vec()))
            .or_default()
            .add(load);
        if self.rows.len() > 2 * max_rows.max(1) {
            self.compact(max_rows.max(1));
        }
    }

    /// Merges runs of adjacent rows (in key order) so that at most `target` remain.
    fn compact(&mut self, target: usize) {
        let n = self.rows.len();
        if n <= target {
            return;
        }
        let group = n.div_ceil(target);
        let rows = std::mem::take(&mut self.rows);
        let mut merged: Option<(Vec<u8>, Row)> = None;
        let mut in_group = 0;
        for ((start, end), load) in rows {
            match merged.as_mut() {
                Some((_, row)) if in_group < group => {
                    row.end = end_max(&row.end, &end);
                    row.load.add(&load);
                    in_group += 1;
                }
                _ => {
                    if let Some((s, row)) = merged.take() {
                        self.rows.entry((s, row.end)).or_default().add(&row.load);
                    }
                    merged = Some((start, Row { end, load }));
                    in_group = 1;
                }
            }
        }
        if let Some((s, row)) = merged {
            self.rows.entry((s, row.end)).or_default().add(&row.load);
        }
    }
}

/// The history: a ring of buckets, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Heatmap {
    cfg: HeatmapConfig,
    buckets: VecDeque<Bucket>,
}

/// A window of the history on a common key axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeatmapView {
    /// Start (unix seconds) of each column, oldest first; every bucket of the window has one,
    /// empty or not.
    pub times: Vec<u64>,
    /// Row boundaries, `rows + 1` of them in key order (none if there is no data); the last
    /// one may be empty, meaning +infinity.
    pub keys: Vec<Vec<u8>>,
    /// `values[column][row]`: the metric summed over the cell.
    pub values: Vec<Vec<u64>>,
}

impl HeatmapView {
    pub fn max(&self) -> u64 {
        self.values.iter().flatten().copied().max().unwrap_or(0)
    }
}

impl Heatmap {
    pub fn new(cfg: HeatmapConfig) -> Heatmap {
        let cfg = HeatmapConfig {
            bucket_secs: cfg.bucket_secs.max(1),
            buckets: cfg.buckets.max(1),
            max_rows: cfg.max_rows.max(1),
        };
        Heatmap {
            cfg,
            buckets: VecDeque::new(),
        }
    }

    pub fn config(&self) -> HeatmapConfig {
        self.cfg
    }

    /// Buckets held (for tests and bounds).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Rows held in all buckets.
    pub fn row_count(&self) -> usize {
        self.buckets.iter().map(|b| b.rows.len()).sum()
    }

    /// Drops buckets that fell out of the window ending at bucket `newest`.
    fn evict(&mut self, newest: u64) {
        let keep = self.cfg.buckets as u64;
        while self.buckets.front().is_some_and(|b| b.index + keep <= newest) {
            self.buckets.pop_front();
        }
    }

    fn bucket_mut(&mut self, index: u64) -> &mut Bucket {
        let pos = match self.buckets.binary_search_by_key(&index, |b| b.index) {
            Ok(pos) => pos,
            Err(pos) => {
                self.buckets.insert(
                    pos,
                    Bucket {
                        index,
                        rows: BTreeMap::new(),
                    },
                );
                pos
            }
        };
        &mut self.buckets[pos]
    }

    /// Adds the load of key range `[start, end)` counted over the `interval_secs` before `now`
    /// (unix seconds). An interval of 0 counts the load at `now`. The part of the interval
    /// older than the window is dropped.
    pub fn record(&mut self, now: u64, interval_secs: u64, start: &[u8], end: &[u8], load: Load) {
        let bs = self.cfg.bucket_secs;
        let newest = now / bs;
        self.evict(newest);
        // Buckets older than the window of the newest one held (the clock may step back) are
        // not created.
        let head = self.buckets.back().map_or(newest, |b| b.index.max(newest));
        let oldest_kept = (head + 1).saturating_sub(self.cfg.buckets as u64);
        let max_rows = self.cfg.max_rows;
        // An idle range still gets a (zero) row now, so that the key axis shows it.
        if interval_secs == 0 || load.is_zero() {
            if newest >= oldest_kept {
                self.bucket_mut(newest).add(start, end, &load, max_rows);
            }
            return;
        }
        // The interval is (now - interval_secs, now]; one second is counted in the bucket of
        // its end, so the interval is the seconds now-interval+1 ..= now.
        let from = now.saturating_sub(interval_secs - 1);
        let mut given = Load::default();
        let mut counted = 0u64;
        let mut b = from / bs;
        if b < oldest_kept {
            // Skip (and drop) the part before the window at once.
            counted = (oldest_kept * bs).saturating_sub(from).min(interval_secs);
            given = load.scale(counted, interval_secs);
            b = oldest_kept;
        }
        while b <= newest {
            let lo = from.max(b * bs);
            let hi = now.min(b * bs + bs - 1);
            counted += hi - lo + 1;
            // Cumulative shares: the last bucket gets exactly what is left.
            let upto = if b == newest {
                load
            } else {
                load.scale(counted.min(interval_secs), interval_secs)
            };
            let share = upto.sub(&given);
            given = upto;
            if !share.is_zero() {
                self.bucket_mut(b).add(start, end, &share, max_rows);
            }
            b += 1;
        }
    }

    /// The last `columns` buckets up to the one holding `now`, on a common key axis of at most
    /// `max_rows` rows.
    pub fn view(&self, now: u64, columns: usize, metric: Metric, max_rows: usize) -> HeatmapView {
        let bs = self.cfg.bucket_secs;
        let newest = now / bs;
        let columns = columns.clamp(1, self.cfg.buckets) as u64;
        let first = (newest + 1).saturating_sub(columns);
        let times: Vec<u64> = (first..=newest).map(|b| b * bs).collect();
        let window: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.index >= first && b.index <= newest)
            .collect();

        // The fine axis: every boundary of every row (idle ones too: the axis is the key space
        // seen in the window, not only its busy part).
        let mut points: Vec<&[u8]> = Vec::new();
        let mut to_infinity = false;
        for b in &window {
            for (s, e) in b.rows.keys() {
                points.push(s);
                if e.is_empty() {
                    to_infinity = true;
                } else {
                    points.push(e);
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        let segments = if to_infinity {
            points.len()
        } else {
            points.len().saturating_sub(1)
        };
        if segments == 0 {
            return HeatmapView {
                values: vec![Vec::new(); times.len()],
                times,
                keys: Vec::new(),
            };
        }
        // Segment i is [points[i], points[i+1]) (the last one up to +infinity if to_infinity).
        let idx = |k: &[u8]| points.binary_search(&k).unwrap_or_else(|i| i);
        let rows = segments.min(max_rows.max(1));
        // Fine segment i belongs to row i * rows / segments (equal groups, in order).
        let row_of = |i: usize| i * rows / segments;
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(rows + 1);
        let mut last_row = usize::MAX;
        for (i, p) in points.iter().enumerate().take(segments) {
            if row_of(i) != last_row {
                keys.push(p.to_vec());
                last_row = row_of(i);
            }
        }
        keys.push(if to_infinity {
            Vec::new()
        } else {
            points[segments].to_vec()
        });

        let mut values = vec![vec![0u64; rows]; times.len()];
        for b in &window {
            let col = &mut values[(b.index - first) as usize];
            for ((s, e), load) in &b.rows {
                let v = load.get(metric);
                if v == 0 {
                    continue;
                }
                let lo = idx(s);
                let hi = if e.is_empty() { segments } else { idx(e) };
                let n = (hi.saturating_sub(lo)).max(1) as u64;
                let (base, extra) = (v / n, v % n);
                for (k, seg) in (lo..hi.max(lo + 1)).enumerate() {
                    let add = base + u64::from((k as u64) < extra);
                    let cell = &mut col[row_of(seg.min(segments - 1))];
                    *cell = cell.saturating_add(add);
                }
            }
        }
        HeatmapView { times, keys, values }
    }
}

/// Unix seconds now, from the wall clock.
pub fn wall_clock_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time source of a [`HeatmapRecorder`] (unix seconds).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The PD-wide heatmap: a locked [`Heatmap`] with a clock.
pub struct HeatmapRecorder {
    clock: Clock,
    map: Mutex<Heatmap>,
}

impl HeatmapRecorder {
    pub fn new(cfg: HeatmapConfig) -> HeatmapRecorder {
        Self::with_clock(cfg, Arc::new(wall_clock_secs))
    }

    pub fn with_clock(cfg: HeatmapConfig, clock: Clock) -> HeatmapRecorder {
        HeatmapRecorder {
            clock,
            map: Mutex::new(Heatmap::new(cfg)),
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn config(&self) -> HeatmapConfig {
        self.map.lock().config()
    }

    /// Takes in one region report.
    pub fn record(&self, interval_secs: u64, start: &[u8], end: &[u8], load: Load) {
        let now = self.now();
        self.map.lock().record(now, interval_secs, start, end, load);
    }

    /// Takes in a region's latest heartbeat (its load since the previous one).
    pub fn observe(&self, region: &crate::region_info::RegionInfo) {
        let load = Load {
            written_bytes: region.written_bytes,
            read_bytes: region.read_bytes,
            written_keys: region.written_keys,
            read_keys: region.read_keys,
        };
        self.record(region.interval_secs, region.start_key(), region.end_key(), load);
    }

    /// The last `columns` buckets up to now.
    pub fn view(&self, columns: usize, metric: Metric, max_rows: usize) -> HeatmapView {
        let now = self.now();
        self.map.lock().view(now, columns, metric, max_rows)
    }
}

#[cfg(test)]
#[path = "heatmap_tests.rs"]
mod tests;
