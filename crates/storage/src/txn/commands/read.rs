//! Snapshot reads: KvGet, KvBatchGet, KvScan, KvScanLock.

use atoll_proto::kvrpcpb;
use txn_types::TimeStamp;

use super::{check_keys_in_region, stored_keys, TxnStorage};
use crate::api_keys::{self, KeyMode};
use crate::kv::Engine;
use crate::mvcc::{self, check_lock_for_read, lock_info, MvccReader, ReadOptions};
use crate::read_stats::ReadFlow;
use crate::{Error, Result};

/// One key of a read result: its value, or the key error (a lock) that hides it.
pub type KvItem = (Vec<u8>, Result<Vec<u8>>);

/// The flow of the items that carry a value (a locked key returns none).
fn flow_of(items: &[KvItem]) -> ReadFlow {
    ReadFlow::of_pairs(
        items
            .iter()
            .filter_map(|(k, v)| v.as_ref().ok().map(|v| (k.as_slice(), v.as_slice()))),
    )
}

fn read_options(ctx: &kvrpcpb::Context, version: u64) -> ReadOptions {
    ReadOptions {
        ts: TimeStamp::new(version),
        bypass_locks: ctx.resolved_locks.clone(),
        access_locks: ctx.committed_locks.clone(),
    }
}

impl<E: Engine> TxnStorage<E> {
    /// Fails if an in-flight async-commit/1PC prewrite holds a memory lock on `key` that
    /// blocks a read at `opts.ts`. The max read ts must be raised first, and the snapshot
    /// taken after: a memory lock released after this check belongs to a write the snapshot
    /// sees (see concurrency_manager.rs).
    fn check_memory_lock(&self, key: &[u8], opts: &ReadOptions) -> Result<()> {
        self.cm.read_key_check(key, |lock| {
            check_lock_for_read(key, lock.clone(), opts).map(|_| ())
        })
    }

    /// KvGet: the value of `key` at `version`.
    pub async fn get(&self, ctx: &kvrpcpb::Context, key: &[u8], version: u64) -> Result<Option<Vec<u8>>> {
        let _timer = crate::metrics::SchedulerTimer::new("get");
        let stored = api_keys::stored_key(ctx, KeyMode::Txn, key)?;
        let opts = read_options(ctx, version);
        self.cm.update_max_ts(opts.ts);
        self.check_memory_lock(&stored, &opts)?;
        let snap = self.snapshot(ctx).await?;
        api_keys::check_in_region(&snap.region, &stored)?;
        let value = mvcc::point_get(&snap.snapshot, &stored, &opts)?;
        let flow = ReadFlow::of_pairs(value.as_deref().map(|v| (key, v)));
        self.read_stats
            .record_request(snap.region.id, flow, &stored, &stored);
        Ok(value)
    }

    /// KvBatchGet: pairs of the keys that exist, or carry a lock error, in request order.
    pub async fn batch_get(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        version: u64,
    ) -> Result<Vec<KvItem>> {
        let _timer = crate::metrics::SchedulerTimer::new("batch_get");
        let stored = stored_keys(ctx, keys)?;
        let opts = read_options(ctx, version);
        self.cm.update_max_ts(opts.ts);
        // Memory locks before the snapshot, one answer per key.
        let memory: Vec<Result<()>> = stored.iter().map(|s| self.check_memory_lock(s, &opts)).collect();
        let snap = self.snapshot(ctx).await?;
        check_keys_in_region::<E>(&snap, &stored)?;
        let mut out = Vec::with_capacity(keys.len());
        for ((key, s), memory) in keys.iter().zip(&stored).zip(memory) {
            let item = match memory {
                Err(e @ Error::Txn(_)) => Err(e),
                Err(e) => return Err(e),
                Ok(()) => match mvcc::point_get(&snap.snapshot, s, &opts) {
                    Ok(None) => continue,
                    Ok(Some(v)) => Ok(v),
                    Err(e @ Error::Txn(_)) => Err(e),
                    Err(e) => return Err(e),
                },
            };
            out.push((key.clone(), item));
        }
        match (stored.iter().min(), stored.iter().max()) {
            (Some(first), Some(last)) => {
                self.read_stats
                    .record_request(snap.region.id, flow_of(&out), first, last)
            }
            _ => self.read_stats.record(snap.region.id, flow_of(&out)),
        }
        Ok(out)
    }

    /// KvScan within the addressed region. Forward: keys in `[start, end)` ascending; reverse:
    /// keys in `[end, start)` descending (TiKV's convention). Empty bounds are unbounded.
    #[allow(clippy::too_many_arguments)]
    pub async fn scan(
        &self,
        ctx: &kvrpcpb::Context,
        start: &[u8],
        end: &[u8],
        limit: u32,
        version: u64,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvItem>> {
        let _timer = crate::metrics::SchedulerTimer::new("scan");
        let (lower, upper) = if reverse { (end, start) } else { (start, end) };
        let bounds = api_keys::stored_bounds(ctx, KeyMode::Txn, lower, upper)?;
        let opts = read_options(ctx, version);
        self.cm.update_max_ts(opts.ts);
        // Memory locks before the snapshot (see check_memory_lock); only those in the region count.
        let mut memory_locked = vec![];
        let (mem_lower, mem_upper) = (
            bounds.0.clone().unwrap_or_default(),
            bounds.1.clone().unwrap_or_default(),
        );
        let collected: std::result::Result<(), std::convert::Infallible> =
            self.cm.read_range_check(&mem_lower, &mem_upper, |key, lock| {
                if let Err(e) = check_lock_for_read(key, lock.clone(), &opts) {
                    memory_locked.push((key.to_vec(), e));
                }
                Ok(())
            });
        let Ok(()) = collected;
        let snap = self.snapshot(ctx).await?;
        let Some((lower, upper)) = api_keys::clamp_to_region(bounds, &snap.region) else {
            return Ok(vec![]);
        };
        if limit == 0 {
            return Ok(vec![]);
        }
        if let Some((_, e)) = memory_locked
            .into_iter()
            .find(|(k, _)| txn_types::keys::in_range(k, &lower, &upper))
        {
            return Err(e);
        }
        let items = mvcc::scan(
            &snap.snapshot,
            &lower,
            &upper,
            limit as usize,
            key_only,
            reverse,
            &opts,
        )?;
        // The range the scan covered, in stored keys, for load split.
        let covered = items
            .first()
            .zip(items.last())
            .map(|((first, _), (last, _))| (first.clone(), last.clone()));
        let out = items
            .into_iter()
            .map(|(k, v)| Ok((api_keys::user_key(ctx, KeyMode::Txn, &k)?, v)))
            .collect::<Result<Vec<KvItem>>>()?;
        match covered {
            Some((first, last)) => {
                self.read_stats
                    .record_request(snap.region.id, flow_of(&out), &first, &last)
            }
            None => self.read_stats.record(snap.region.id, flow_of(&out)),
        }
        Ok(out)
    }

    /// KvScanLock: locks with start ts <= `max_version` in `[start, end)` of the region.
    pub async fn scan_lock(
        &self,
        ctx: &kvrpcpb::Context,
        max_version: u64,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<kvrpcpb::LockInfo>> {
        let _timer = crate::metrics::SchedulerTimer::new("scan_lock");
        let bounds = if api_keys::is_v2(ctx) && start.is_empty() && end.is_empty() {
            (None, None)
        } else {
            api_keys::stored_bounds(ctx, KeyMode::Txn, start, end)?
        };
        let snap = self.snapshot(ctx).await?;
        let Some((lower, upper)) = api_keys::clamp_to_region(bounds, &snap.region) else {
            return Ok(vec![]);
        };
        let reader = MvccReader::new(&snap.snapshot);
        let max = TimeStamp::new(max_version);
        let locks = reader.scan_locks(
            Some(&lower),
            (!upper.is_empty()).then_some(upper.as_slice()),
            |_, lock| lock.ts <= max,
            limit as usize,
        )?;
        locks
            .into_iter()
            .map(|(k, lock)| Ok(lock_info(&api_keys::user_key(ctx, KeyMode::Txn, &k)?, &lock)))
            .collect()
    }
}
