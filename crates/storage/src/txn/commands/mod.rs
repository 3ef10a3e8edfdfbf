//! The transactional commands, one method per RPC. Each command: checks its keys (API
//! version, size, region), takes the latches of the keys it writes, takes a region snapshot,
//! runs per-key actions into one `MvccTxn`, and replicates the `Modify`s through the kv seam
//! in one Raft proposal. A command either writes all of its keys or none.

mod pessimistic;
mod read;
mod resolve;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use atoll_proto::kvrpcpb;
use engine_traits::{Modify, CF_LOCK};

use txn_types::TimeStamp;

use super::lock_wait::LockWaits;
use crate::api_keys::{self, KeyMode};
use crate::concurrency_manager::ConcurrencyManager;
use crate::kv::{Engine, RegionSnapshot};
use crate::latches::Latches;
use crate::metrics::COMMAND_DURATION;
use crate::mvcc::{MvccReader, MvccTxn};
use crate::read_stats::ReadStats;
use crate::Result;

pub use pessimistic::PessimisticLockRequest;
pub use read::KvItem;
pub use resolve::GcStats;
pub use write::{PrewriteRequest, PrewriteResponse, SecondaryLocksStatus};

/// A source of fresh timestamps (PD's TSO on a node).
pub trait TsSource: Send + Sync + 'static {
    /// A timestamp larger than every timestamp handed out before the call.
    fn now(&self) -> Pin<Box<dyn Future<Output = Result<TimeStamp>> + Send + '_>>;
}

/// Transactional storage over a kv seam.
#[derive(Clone)]
pub struct TxnStorage<E: Engine> {
    engine: E,
    latches: Latches,
    cm: ConcurrencyManager,
    lock_waits: LockWaits,
    ts_source: Arc<dyn TsSource>,
    read_stats: ReadStats,
}

impl<E: Engine> TxnStorage<E> {
    /// `ts_source` raises the max read ts before each async-commit or 1PC prewrite picks its
    /// commit-ts floor: reads served by an earlier leader of the region, on another node,
    /// never raised this node's max ts.
    pub fn new(engine: E, cm: ConcurrencyManager, ts_source: Arc<dyn TsSource>) -> TxnStorage<E> {
        TxnStorage {
            engine,
            latches: Latches::new(4096),
            cm,
            lock_waits: LockWaits::new(),
            ts_source,
            read_stats: ReadStats::new(),
        }
    }

    /// Counts the keys and bytes every snapshot read (KvGet, KvBatchGet, KvScan) returns, per
    /// region, into `stats`.
    pub fn with_read_stats(mut self, stats: ReadStats) -> TxnStorage<E> {
        self.read_stats = stats;
        self
    }

    pub fn read_stats(&self) -> &ReadStats {
        &self.read_stats
    }

    pub fn concurrency_manager(&self) -> &ConcurrencyManager {
        &self.cm
    }

    /// Pessimistic lock requests waiting for another transaction's lock now.
    pub fn lock_waiters(&self) -> usize {
        self.lock_waits.len()
    }

    async fn snapshot(&self, ctx: &kvrpcpb::Context) -> Result<RegionSnapshot<E::Snap>> {
        let t = Instant::now();
        // Transactional reads are served by the leader only: a follower's read would not raise
        // the leader's max_ts nor see its memory locks, which async commit relies on.
        let r = if ctx.replica_read {
            let mut leader_ctx = ctx.clone();
            leader_ctx.replica_read = false;
            self.engine.snapshot(&leader_ctx).await
        } else {
            self.engine.snapshot(ctx).await
        };
        COMMAND_DURATION
            .with_label_values(&["txn_snapshot"])
            .observe(t.elapsed().as_secs_f64());
        r
    }

    /// Replicates the command's writes and wakes whoever waits for a lock it removed.
    async fn write(&self, ctx: &kvrpcpb::Context, txn: MvccTxn) -> Result<()> {
        if txn.is_empty() {
            return Ok(());
        }
        let modifies = txn.into_modifies();
        let released: Vec<Vec<u8>> = modifies
            .iter()
            .filter_map(|m| match m {
                Modify::Delete { cf, key } if *cf == CF_LOCK => Some(key.clone()),
                _ => None,
            })
            .collect();
        let released_ranges: Vec<(Vec<u8>, Vec<u8>)> = modifies
            .iter()
            .filter_map(|m| match m {
                Modify::DeleteRange { cf, start, end } if *cf == CF_LOCK => {
                    Some((start.clone(), end.clone()))
                }
                _ => None,
            })
            .collect();
        let t = Instant::now();
        let r = self.engine.write(ctx, modifies).await;
        COMMAND_DURATION
            .with_label_values(&["txn_write"])
            .observe(t.elapsed().as_secs_f64());
        r?;
        self.lock_waits.wake(released.iter().map(|k| k.as_slice()));
        for (start, end) in &released_ranges {
            self.lock_waits.wake_range(start, end);
        }
        Ok(())
    }
}

impl<E: Engine> TxnStorage<E> {
    /// The common shape of a write command: takes the latches of `keys` (stored keys), a
    /// region snapshot, checks every key is in the region, runs `actions` on one `MvccTxn`
    /// and replicates what it wrote (nothing is written if `actions` fails).
    async fn run_actions<T>(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        actions: impl FnOnce(&mut MvccTxn, &MvccReader<'_, E::Snap>) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.latches.acquire(keys.iter().map(|k| k.as_slice())).await;
        let snap = self.snapshot(ctx).await?;
        check_keys_in_region::<E>(&snap, keys)?;
        let reader = MvccReader::new(&snap.snapshot);
        let mut txn = MvccTxn::new();
        let out = actions(&mut txn, &reader)?;
        self.write(&snap.write_context(ctx), txn).await?;
        Ok(out)
    }
}

/// Stored (encoded) keys of a transactional request's keys.
fn stored_keys(ctx: &kvrpcpb::Context, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    keys.iter()
        .map(|k| api_keys::stored_key(ctx, KeyMode::Txn, k))
        .collect()
}

fn check_keys_in_region<E: Engine>(snap: &RegionSnapshot<E::Snap>, keys: &[Vec<u8>]) -> Result<()> {
    for k in keys {
        api_keys::check_in_region(&snap.region, k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
