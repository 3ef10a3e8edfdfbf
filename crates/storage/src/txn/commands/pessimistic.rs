//! KvPessimisticLock (with lock waiting and deadlock detection) and KVPessimisticRollback.

use std::time::{Duration, Instant};

use atoll_proto::kvrpcpb;
use txn_types::{mvcc_key, TimeStamp};

use super::{check_keys_in_region, stored_keys, TxnStorage};
use crate::kv::Engine;
use crate::mvcc::{MvccReader, MvccTxn, TxnError};
use crate::txn::actions::{self, PessimisticLockOptions, PessimisticLockResult};
use crate::{Error, Result};

/// Longest a pessimistic lock request waits for another transaction's lock, whatever it asks:
/// well under the 2 s a client gives one request, so it gets the lock error back in time to
/// resolve the lock itself.
pub const MAX_LOCK_WAIT: Duration = Duration::from_millis(1000);

/// A KvPessimisticLock request, decoded.
#[derive(Debug, Clone, Default)]
pub struct PessimisticLockRequest {
    pub keys: Vec<Vec<u8>>,
    /// Per key: fail if the key exists.
    pub should_not_exist: Vec<bool>,
    pub options: PessimisticLockOptions,
    /// Milliseconds; 0: the default (`MAX_LOCK_WAIT`), negative: do not wait.
    pub wait_timeout_ms: i64,
}

fn lock_hash(key: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl<E: Engine> TxnStorage<E> {
    /// Locks every key for the transaction, or none. Waits (bounded) for other transactions'
    /// locks to go away; a wait that would close a cycle of waiters fails with a deadlock.
    pub async fn pessimistic_lock(
        &self,
        ctx: &kvrpcpb::Context,
        req: &PessimisticLockRequest,
    ) -> Result<Vec<PessimisticLockResult>> {
        let _timer = crate::metrics::SchedulerTimer::new("pessimistic_lock");
        for k in &req.keys {
            crate::api_keys::check_size(k)?;
        }
        let keys = stored_keys(ctx, &req.keys)?;
        let opts = &req.options;
        if opts.for_update_ts < opts.start_ts {
            return Err(Error::InvalidInput(format!(
                "for_update_ts {} is less than start_ts {}",
                opts.for_update_ts, opts.start_ts
            )));
        }
        let wait = match req.wait_timeout_ms {
            t if t < 0 => Duration::ZERO,
            0 => MAX_LOCK_WAIT,
            t => Duration::from_millis(t as u64).min(MAX_LOCK_WAIT),
        };
        let deadline = Instant::now() + wait;
        // Reads of the locked keys' values happen at the latest ts: keep async commit honest.
        self.cm.update_max_ts(opts.for_update_ts);
        loop {
            let guard = self.latches.acquire(keys.iter().map(|k| k.as_slice())).await;
            let snap = self.snapshot(ctx).await?;
            check_keys_in_region::<E>(&snap, &keys)?;
            let reader = MvccReader::new(&snap.snapshot);
            let mut txn = MvccTxn::new();
            let mut results = Vec::with_capacity(keys.len());
            let mut blocked = None;
            for (i, key) in keys.iter().enumerate() {
                let mut key_opts = opts.clone();
                key_opts.should_not_exist = req.should_not_exist.get(i).copied().unwrap_or(false);
                match actions::acquire_pessimistic_lock(&mut txn, &reader, key, &key_opts) {
                    Ok(r) => results.push(r),
                    Err(e) => {
                        blocked = Some((key.clone(), e));
                        break;
                    }
                }
            }
            let Some((key, err)) = blocked else {
                self.write(&snap.write_context(ctx), txn).await?;
                return Ok(results);
            };
            let lock_ts = match &err {
                Error::Txn(t) => match &**t {
                    TxnError::KeyIsLocked(info) => info.lock_version,
                    _ => return Err(err),
                },
                _ => return Err(err),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(err);
            }
            // Register while still holding the latch, so the lock's release cannot be missed.
            let waiter = match self
                .lock_waits
                .register(&key, opts.start_ts.into_inner(), lock_ts)
            {
                Ok(w) => w,
                Err(d) => {
                    return Err(Error::Txn(Box::new(TxnError::Deadlock {
                        start_ts: opts.start_ts,
                        lock_ts: TimeStamp::new(d.lock_ts),
                        lock_key: mvcc_key::decode(&key)?,
                        deadlock_key_hash: lock_hash(&key),
                    })))
                }
            };
            drop(guard);
            if !waiter.wait(deadline - now).await {
                return Err(err);
            }
        }
    }

    /// KVPessimisticRollback: removes the transaction's pessimistic locks on `keys`.
    pub async fn pessimistic_rollback(
        &self,
        ctx: &kvrpcpb::Context,
        keys: &[Vec<u8>],
        start_ts: u64,
        for_update_ts: u64,
    ) -> Result<()> {
        let _timer = crate::metrics::SchedulerTimer::new("pessimistic_rollback");
        let keys = stored_keys(ctx, keys)?;
        let (start_ts, for_update_ts) = (TimeStamp::new(start_ts), TimeStamp::new(for_update_ts));
        self.run_actions(ctx, &keys, |txn, reader| {
            for k in &keys {
                actions::pessimistic_rollback(txn, reader, k, start_ts, for_update_ts)?;
            }
            Ok(())
        })
        .await
    }
}
