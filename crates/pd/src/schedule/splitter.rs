//! Splitting regions at given keys on request (`POST /pd/api/v1/regions/split`, and what
//! pdpb `SplitRegions` would call): PD's region splitter.
//!
//! The keys are range keys (the key space of region boundaries; memcomparable-encoded for
//! transactional keys). They are grouped by the region containing them; each region gets one
//! `SplitRegion` operator (policy `USEKEY`, kind `split`, description `region-splitter`) whose
//! step goes to its leader as `split_region{policy: USEKEY, keys}`. Then PD waits, polling its
//! region tree (fed by `ReportBatchSplit` and heartbeats), until every key starts a region or
//! the time is up. The answer is the percentage of keys that start a region and the ids of
//! those regions. A key that already starts a region counts as done at once (PD would count
//! it as not processed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use atoll_proto::pdpb;

use super::builder;
use super::coordinator;
use super::operator::OpKind;
use crate::context::PdContext;

/// The operators' description (PD's).
pub const DESC: &str = "region-splitter";
/// How often the region tree is looked at while waiting.
const POLL: Duration = Duration::from_millis(100);

/// What a split request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOutcome {
    /// Keys that start a region now, in percent of the keys asked for.
    pub processed_percentage: u64,
    /// Regions starting at a requested key.
    pub region_ids: Vec<u64>,
}

/// Starts the split operators for `keys`; returns how many keys could not be given to one.
fn start(ctx: &PdContext, keys: &[Vec<u8>]) -> usize {
    let mut groups: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut failed = 0;
    for key in keys {
        match ctx.cluster.region_by_key(key) {
            Ok(Some(r)) if r.start_key() == key.as_slice() => {}
            Ok(Some(r)) if r.leader.is_some() => groups.entry(r.id()).or_default().push(key.clone()),
            _ => failed += 1,
        }
    }
    for (region_id, keys) in groups {
        let n = keys.len();
        let op = match ctx.cluster.region_by_id(region_id) {
            Ok(Some(r)) => builder::split_region(DESC, OpKind::SPLIT, &r, pdpb::CheckPolicy::Usekey, keys),
            _ => Err("region gone".into()),
        };
        let added = op
            .map_err(|e| e.to_string())
            .and_then(|op| coordinator::add_operator(ctx, op).map_err(|e| e.to_string()));
        if let Err(e) = added {
            tracing::info!(region = region_id, error = %e, "split not started");
            failed += n;
        }
    }
    failed
}

/// Which keys start a region now, and those regions.
fn done(ctx: &PdContext, keys: &[Vec<u8>]) -> (usize, Vec<u64>) {
    let mut ids = Vec::new();
    for key in keys {
        if let Ok(Some(r)) = ctx.cluster.region_by_key(key) {
            if r.start_key() == key.as_slice() {
                ids.push(r.id());
            }
        }
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    (n, ids)
}

/// Splits at `keys`, waiting at most `wait` for the regions to show the splits.
pub async fn split_regions(ctx: &PdContext, keys: Vec<Vec<u8>>, wait: Duration) -> SplitOutcome {
    if keys.is_empty() {
        return SplitOutcome {
            processed_percentage: 0,
            region_ids: Vec::new(),
        };
    }
    start(ctx, &keys);
    let deadline = Instant::now() + wait;
    loop {
        let (n, ids) = done(ctx, &keys);
        if n == keys.len() || Instant::now() >= deadline {
            return SplitOutcome {
                processed_percentage: (n * 100 / keys.len()) as u64,
                region_ids: ids,
            };
        }
        tokio::time::sleep(POLL).await;
    }
}
