//! The split checker: a worker thread that scans a region's data (off the store loop) to
//! measure it and to find where it should split.
//!
//! The store loop sends a region's leader here every `split-region-check-tick-interval` when
//! the region got at least `region-split-check-diff` bytes of writes since its last check (and
//! once after it became leader). The scan walks the `default`, `lock` and `write` column
//! families merged in key order, counting bytes (keys and values) and keys (entries of
//! `default` and `write`, as MVCC versions count in TiKV). Split keys never cut between the
//! versions of one key ([`crate::split::split_point`]).
//!
//! - Threshold check: once the region is over `region-max-size` or `region-max-keys`, a split
//!   key is placed every `region-split-size` bytes or `region-split-keys` keys, at most
//!   `batch-split-limit` of them.
//! - Half check (PD's `SplitRegion` with the scan or approximate policy): one key at the middle
//!   of the region by size.
//!
//! The result (keys, size, key count) goes back to the store loop, which asks PD for ids only if
//! the region's epoch is still the one checked.

use std::thread::JoinHandle;
use std::time::Duration;

use atoll_proto::metapb;
use crossbeam_channel::{Receiver, Sender};
use engine_traits::{EngineIterator, IterBounds, Iterable, KvEngine, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key, origin_key};

use crate::router::{Msg, Router};
use crate::split::split_point;
use crate::{Error, Result};

/// Thresholds and pacing of splits, with TiKV's names and defaults.
#[derive(Debug, Clone)]
pub struct SplitConfig {
    /// `coprocessor.region-max-size`: a region larger than this splits.
    pub region_max_size: u64,
    /// `coprocessor.region-split-size`: the size of the pieces it splits into.
    pub region_split_size: u64,
    /// `coprocessor.region-max-keys`.
    pub region_max_keys: u64,
    /// `coprocessor.region-split-keys`.
    pub region_split_keys: u64,
    /// `coprocessor.batch-split-limit`: at most this many keys per split.
    pub batch_split_limit: u64,
    /// `raftstore.split-region-check-tick-interval`.
    pub check_interval: Duration,
    /// `raftstore.region-split-check-diff`: bytes written since the last check that make a
    /// region worth checking again.
    pub check_diff: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            region_max_size: 144 << 20,
            region_split_size: 96 << 20,
            region_max_keys: 1_440_000,
            region_split_keys: 960_000,
            batch_split_limit: 10,
            check_interval: Duration::from_secs(10),
            check_diff: 6 << 20,
        }
    }
}

/// What the check looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckPolicy {
    /// Split only past the max thresholds, into pieces of the split thresholds.
    Thresholds,
    /// One key in the middle (by size), whatever the region's size.
    Half,
}

pub(crate) struct CheckTask {
    pub region: metapb::Region,
    pub policy: CheckPolicy,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckResult {
    pub split_keys: Vec<Vec<u8>>,
    /// Bytes and keys counted (only up to where the scan stopped when it stopped early).
    pub size: u64,
    pub keys: u64,
}

/// One entry of the region's data in key order: its range key, bytes, and whether it counts
/// as a key.
type Visit<'a> = dyn FnMut(&[u8], u64, bool) -> bool + 'a;

/// Walks `region`'s data in the three data column families merged in key order, calling
/// `f(range_key, bytes, counts_as_key)` until it returns `false`.
fn scan_region<S: Iterable>(snap: &S, region: &metapb::Region, f: &mut Visit<'_>) -> Result<()> {
    let bounds = IterBounds::new(
        Some(data_key(&region.start_key)),
        Some(data_end_key(&region.end_key)),
    );
    let cfs = [CF_DEFAULT, CF_LOCK, CF_WRITE];
    let mut iters = Vec::with_capacity(cfs.len());
    let mut valid = Vec::with_capacity(cfs.len());
    for cf in cfs {
        let mut it = snap.iterator_cf(cf, bounds.clone())?;
        valid.push(it.seek_to_first()?);
        iters.push(it);
    }
    loop {
        let mut min: Option<usize> = None;
        for (i, it) in iters.iter().enumerate() {
            if valid[i] && min.is_none_or(|m| it.key() < iters[m].key()) {
                min = Some(i);
            }
        }
        let Some(i) = min else { return Ok(()) };
        let it = &mut iters[i];
        let key = origin_key(it.key()).ok_or_else(|| Error::Engine("key without the data prefix".into()))?;
        let bytes = (it.key().len() + it.value().len()) as u64;
        if !f(key, bytes, cfs[i] != CF_LOCK) {
            return Ok(());
        }
        valid[i] = it.next()?;
    }
}

/// Finds split keys of `region` by the thresholds of `cfg`.
pub(crate) fn check_thresholds<S: Iterable>(
    snap: &S,
    region: &metapb::Region,
    cfg: &SplitConfig,
) -> Result<CheckResult> {
    let mut out = CheckResult::default();
    let (mut piece_size, mut piece_keys) = (0u64, 0u64);
    let mut want_split = false;
    let mut last_point: Vec<u8> = Vec::new();
    let limit = cfg.batch_split_limit.max(1) as usize;
    let over = |size: u64, keys: u64| size > cfg.region_max_size || keys > cfg.region_max_keys;
    scan_region(snap, region, &mut |key, bytes, is_key| {
        let point = split_point(key);
        if point != last_point.as_slice() {
            if want_split && point > region.start_key.as_slice() {
                out.split_keys.push(point.to_vec());
                piece_size = 0;
                piece_keys = 0;
                want_split = false;
                if out.split_keys.len() >= limit && over(out.size, out.keys) {
                    // Enough keys for this round, and the region must split: stop reading.
                    return false;
                }
            }
            last_point.clear();
            last_point.extend_from_slice(point);
        }
        out.size += bytes;
        piece_size += bytes;
        if is_key {
            out.keys += 1;
            piece_keys += 1;
        }
        if out.split_keys.len() < limit
            && (piece_size >= cfg.region_split_size || piece_keys >= cfg.region_split_keys)
        {
            want_split = true;
        }
        true
    })?;
    if !over(out.size, out.keys) {
        out.split_keys.clear();
    }
    Ok(out)
}

/// Finds the key in the middle of `region` by size (none if it holds a single key).
pub(crate) fn check_half<S: Iterable>(snap: &S, region: &metapb::Region) -> Result<CheckResult> {
    let mut out = CheckResult::default();
    scan_region(snap, region, &mut |_, bytes, is_key| {
        out.size += bytes;
        out.keys += u64::from(is_key);
        true
    })?;
    let half = out.size / 2;
    let mut seen = 0u64;
    let mut first: Option<Vec<u8>> = None;
    let mut split = None;
    scan_region(snap, region, &mut |key, bytes, _| {
        let point = split_point(key);
        if seen >= half && first.as_deref().is_some_and(|f| f != point) && point > region.start_key.as_slice()
        {
            split = Some(point.to_vec());
            return false;
        }
        if first.is_none() {
            first = Some(point.to_vec());
        }
        seen += bytes;
        true
    })?;
    out.split_keys.extend(split);
    Ok(out)
}

pub(crate) fn spawn<EK: KvEngine>(
    kv: EK,
    cfg: SplitConfig,
    router: Router<EK::Snap>,
) -> Result<(Sender<CheckTask>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = std::thread::Builder::new()
        .name("split-check".into())
        .spawn(move || run(kv, cfg, router, rx))
        .map_err(|e| Error::Engine(e.to_string()))?;
    Ok((tx, handle))
}

fn run<EK: KvEngine>(kv: EK, cfg: SplitConfig, router: Router<EK::Snap>, rx: Receiver<CheckTask>) {
    while let Ok(task) = rx.recv() {
        let snap = kv.snapshot();
        let result = match task.policy {
            CheckPolicy::Thresholds => check_thresholds(&snap, &task.region, &cfg),
            CheckPolicy::Half => check_half(&snap, &task.region),
        };
        if let Err(e) = &result {
            tracing::warn!(region_id = task.region.id, error = %e, "split check failed");
        }
        let msg = Msg::SplitChecked {
            region_id: task.region.id,
            epoch: task.region.region_epoch.unwrap_or_default(),
            result: result.ok(),
        };
        if router.send(msg).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_traits::{MemEngine, WriteBatch};
    use txn_types::{mvcc_key, TimeStamp};

    fn engine_with(keys: &[(&'static str, &[u8], usize)]) -> MemEngine {
        let e = MemEngine::default();
        let mut wb = WriteBatch::new();
        for (cf, k, vlen) in keys {
            wb.put_cf(cf, data_key(k), vec![b'v'; *vlen]);
        }
        e.write(&wb, false).expect("write");
        e
    }

    fn whole() -> metapb::Region {
        metapb::Region {
            id: 1,
            ..Default::default()
        }
    }

    fn cfg(split_keys: u64, max_keys: u64) -> SplitConfig {
        SplitConfig {
            region_split_keys: split_keys,
            region_max_keys: max_keys,
            ..Default::default()
        }
    }

    fn raw_keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("k{i:03}").into_bytes()).collect()
    }

    #[test]
    fn splits_only_past_the_max_into_pieces_of_the_split_size() {
        let keys = raw_keys(11);
        let entries: Vec<_> = keys.iter().map(|k| (CF_DEFAULT, k.as_slice(), 4)).collect();
        let e = engine_with(&entries);
        let r = check_thresholds(&e.snapshot(), &whole(), &cfg(7, 10)).expect("check");
        assert_eq!(r.split_keys, vec![b"k007".to_vec()]);
        assert_eq!(r.keys, 11);
        let r = check_thresholds(&e.snapshot(), &whole(), &cfg(7, 11)).expect("check");
        assert!(r.split_keys.is_empty(), "at the max, no split: {r:?}");
        // A batch is capped at the limit, and the scan may stop there.
        let keys = raw_keys(100);
        let entries: Vec<_> = keys.iter().map(|k| (CF_DEFAULT, k.as_slice(), 4)).collect();
        let e = engine_with(&entries);
        let c = SplitConfig {
            batch_split_limit: 3,
            ..cfg(7, 10)
        };
        let r = check_thresholds(&e.snapshot(), &whole(), &c).expect("check");
        assert_eq!(
            r.split_keys,
            vec![b"k007".to_vec(), b"k014".to_vec(), b"k021".to_vec()]
        );
    }

    #[test]
    fn by_size_too() {
        let keys = raw_keys(10);
        let entries: Vec<_> = keys.iter().map(|k| (CF_DEFAULT, k.as_slice(), 96)).collect();
        let e = engine_with(&entries);
        let c = SplitConfig {
            region_max_size: 500,
            region_split_size: 300,
            ..Default::default()
        };
        // Each entry is 101 bytes with its prefixed key: 3 make a piece.
        let r = check_thresholds(&e.snapshot(), &whole(), &c).expect("check");
        assert_eq!(
            r.split_keys,
            vec![b"k003".to_vec(), b"k006".to_vec(), b"k009".to_vec()]
        );
        assert_eq!(r.size, 1010);
    }

    #[test]
    fn versions_of_one_key_stay_together() {
        let a = mvcc_key::encode(b"a");
        let b = mvcc_key::encode(b"b");
        let mut entries = vec![];
        let versions: Vec<Vec<u8>> = (1..=5)
            .map(|ts| mvcc_key::append_ts(&a, TimeStamp::new(ts)))
            .chain((1..=5).map(|ts| mvcc_key::append_ts(&b, TimeStamp::new(ts))))
            .collect();
        for v in &versions {
            entries.push((CF_WRITE, v.as_slice(), 8));
        }
        entries.push((CF_LOCK, b.as_slice(), 8));
        let e = engine_with(&entries);
        let r = check_thresholds(&e.snapshot(), &whole(), &cfg(2, 3)).expect("check");
        assert_eq!(r.split_keys, vec![b.clone()], "cut only between keys, without ts");
        assert_eq!(r.keys, 10, "lock entries are not counted as keys");
        let half = check_half(&e.snapshot(), &whole()).expect("half");
        assert_eq!(half.split_keys, vec![b]);
    }

    #[test]
    fn respects_the_region_range_and_single_keys() {
        let keys = raw_keys(20);
        let entries: Vec<_> = keys.iter().map(|k| (CF_DEFAULT, k.as_slice(), 4)).collect();
        let e = engine_with(&entries);
        let region = metapb::Region {
            id: 1,
            start_key: b"k005".to_vec(),
            end_key: b"k015".to_vec(),
            ..Default::default()
        };
        let r = check_thresholds(&e.snapshot(), &region, &cfg(3, 5)).expect("check");
        assert_eq!(r.keys, 10);
        assert_eq!(
            r.split_keys,
            vec![b"k008".to_vec(), b"k011".to_vec(), b"k014".to_vec()]
        );
        let half = check_half(&e.snapshot(), &region).expect("half");
        assert_eq!(half.split_keys, vec![b"k010".to_vec()]);
        let single = engine_with(&[(CF_DEFAULT, b"only", 1000)]);
        assert!(check_half(&single.snapshot(), &whole())
            .expect("half")
            .split_keys
            .is_empty());
    }
}
