//! Lock resolution and data removal: KvResolveLock, GC of a region, KvDeleteRange,
//! UnsafeDestroyRange.

use std::collections::HashMap;

use atoll_proto::kvrpcpb;
use engine_traits::{EngineIterator, IterBounds, Iterable, Modify, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key, origin_key};
use txn_types::{memcomparable, mvcc_key, LockType, TimeStamp};

use super::TxnStorage;
use crate::api_keys::{self, KeyMode};
use crate::kv::Engine;
use crate::mvcc::{MvccReader, MvccTxn};
use crate::txn::actions;
use crate::{Error, Result};

/// Keys handled per Raft proposal by lock resolution and GC.
const BATCH_KEYS: usize = 256;

/// What a GC pass over a region did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub keys_scanned: usize,
    pub versions_removed: usize,
}

impl<E: Engine> TxnStorage<E> {
    /// KvResolveLock: commits (commit ts > 0) or rolls back (0) the locks of the named
    /// transactions — on `keys` if given, else on every lock of those transactions in the
    /// region. `txns` maps start ts to commit ts.
    pub async fn resolve_lock(
        &self,
        ctx: &kvrpcpb::Context,
        txns: &HashMap<u64, u64>,
        keys: &[Vec<u8>],
    ) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("resolve_lock");
        if txns.is_empty() {
            return Err(Error::InvalidInput("resolve lock names no transaction".into()));
        }
        if let Some((start, commit)) = txns
            .iter()
            .find(|(start, commit)| **commit != 0 && **commit <= **start)
        {
            return Err(Error::InvalidInput(format!(
                "commit ts {commit} must be greater than start ts {start}"
            )));
        }
        if !keys.is_empty() {
            if txns.len() != 1 {
                return Err(Error::InvalidInput(
                    "resolve lock with keys names one transaction".into(),
                ));
            }
            let keys = super::stored_keys(ctx, keys)?;
            return self.resolve_keys(ctx, txns, keys).await;
        }
        loop {
            let snap = self.snapshot(ctx).await?;
            let region = &snap.region;
            let reader = MvccReader::new(&snap.snapshot);
            let locks = reader.scan_locks(
                Some(&region.start_key),
                (!region.end_key.is_empty()).then_some(region.end_key.as_slice()),
                |_, lock| txns.contains_key(&lock.ts.into_inner()),
                BATCH_KEYS,
            )?;
            let done = locks.len() < BATCH_KEYS;
            if !locks.is_empty() {
                self.resolve_keys(ctx, txns, locks.into_iter().map(|(k, _)| k).collect())
                    .await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn resolve_keys(
        &self,
        ctx: &kvrpcpb::Context,
        txns: &HashMap<u64, u64>,
        keys: Vec<Vec<u8>>,
    ) -> Result<()> {
        self.run_actions(ctx, &keys, |txn, reader| {
            for key in &keys {
                let lock = reader.load_lock(key)?;
                let owner = match (&lock, txns.len()) {
                    (Some(l), _) if txns.contains_key(&l.ts.into_inner()) => l.ts.into_inner(),
                    // Explicit keys without a matching lock: settle the one named transaction.
                    (_, 1) => *txns.keys().next().unwrap_or(&0),
                    _ => continue,
                };
                let start_ts = TimeStamp::new(owner);
                let commit_ts = TimeStamp::new(txns.get(&owner).copied().unwrap_or(0));
                let pessimistic = lock
                    .as_ref()
                    .is_some_and(|l| l.ts == start_ts && l.lock_type == LockType::Pessimistic);
                if commit_ts.is_zero() {
                    actions::rollback(txn, reader, key, start_ts)?;
                } else if pessimistic {
                    // A committed transaction never prewrote this key: just release it.
                    actions::pessimistic_rollback(txn, reader, key, start_ts, TimeStamp::zero())?;
                } else {
                    actions::commit(txn, reader, key, start_ts, commit_ts)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes versions no read at or after `safe_point` can see, in the addressed region.
    pub async fn gc_region(&self, ctx: &kvrpcpb::Context, safe_point: u64) -> Result<GcStats> {
        let _timer = crate::metrics::SchedulerTimer::new("gc_region");
        let safe_point = TimeStamp::new(safe_point);
        let mut stats = GcStats::default();
        let mut next: Option<Vec<u8>> = None;
        loop {
            let snap = self.snapshot(ctx).await?;
            let region = snap.region.clone();
            let lower = next.clone().unwrap_or_else(|| region.start_key.clone());
            let bounds = IterBounds::new(Some(data_key(&lower)), Some(data_end_key(&region.end_key)));
            let mut keys = vec![];
            {
                let mut it = snap.snapshot.iterator_cf(CF_WRITE, bounds)?;
                let mut valid = it.seek_to_first()?;
                while valid && keys.len() < BATCH_KEYS {
                    let versioned =
                        origin_key(it.key()).ok_or_else(|| Error::Corrupted("non-data key".into()))?;
                    let key = mvcc_key::split_ts(versioned)?.0.to_vec();
                    valid = it.seek(&data_key(&mvcc_key::versions_end(&key)))?;
                    keys.push(key);
                }
            }
            if keys.is_empty() {
                return Ok(stats);
            }
            stats.keys_scanned += keys.len();
            let full = keys.len() == BATCH_KEYS;
            next = keys.last().map(|k| mvcc_key::versions_end(k));
            stats.versions_removed += self
                .run_actions(ctx, &keys, |txn, reader| {
                    let mut removed = 0;
                    for key in &keys {
                        removed += actions::gc_key(txn, reader, key, safe_point)?;
                    }
                    Ok(removed)
                })
                .await?;
            if !full {
                return Ok(stats);
            }
        }
    }

    /// KvDeleteRange: deletes every version and lock of user keys in `[start, end)` within the
    /// addressed region, through Raft. `notify_only` deletes nothing.
    pub async fn delete_range(
        &self,
        ctx: &kvrpcpb::Context,
        start: &[u8],
        end: &[u8],
        notify_only: bool,
    ) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("delete_range");
        let bounds = api_keys::stored_bounds(ctx, KeyMode::Txn, start, end)?;
        if let (Some(s), Some(e)) = &bounds {
            if s >= e {
                return Err(Error::InvalidInput(
                    "delete range start must be less than end".into(),
                ));
            }
        }
        if notify_only {
            return Ok(());
        }
        let snap = self.snapshot(ctx).await?;
        let Some((start, end)) = api_keys::clamp_to_region(bounds, &snap.region) else {
            return Ok(());
        };
        let modifies = [CF_DEFAULT, CF_LOCK, CF_WRITE]
            .into_iter()
            .map(|cf| Modify::DeleteRange {
                cf,
                start: start.clone(),
                end: end.clone(),
            })
            .collect();
        let mut txn = MvccTxn::new();
        txn.modifies = modifies;
        self.write(ctx, txn).await
    }

    /// UnsafeDestroyRange: removes user keys `[start, end)` (data, versions and locks) from
    /// every region of this node, bypassing Raft.
    pub async fn unsafe_destroy_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("unsafe_destroy_range");
        if !end.is_empty() && start >= end {
            return Err(Error::InvalidInput(
                "destroy range start must be less than end".into(),
            ));
        }
        let start = memcomparable::encode_bytes(start);
        let end = if end.is_empty() {
            vec![]
        } else {
            memcomparable::encode_bytes(end)
        };
        self.engine.unsafe_destroy_range(&start, &end).await
    }
}
