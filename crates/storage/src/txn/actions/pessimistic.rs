use engine_traits::Snapshot;
use txn_types::{Lock, LockType, TimeStamp};

use super::{raw, txn_err};
use crate::mvcc::{lock_info, ConflictReason, MvccReader, MvccTxn, TxnError};
use crate::Result;

#[derive(Debug, Clone, Default)]
pub struct PessimisticLockOptions {
    pub start_ts: TimeStamp,
    pub for_update_ts: TimeStamp,
    /// User key of the primary.
    pub primary: Vec<u8>,
    pub lock_ttl: u64,
    pub min_commit_ts: TimeStamp,
    /// Fail with AlreadyExist if the key exists (an Insert in a pessimistic transaction).
    pub should_not_exist: bool,
    pub need_value: bool,
    pub need_check_existence: bool,
    /// Lock only keys that exist (requires `need_value`).
    pub lock_only_if_exists: bool,
}

/// What a pessimistic lock saw on its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PessimisticLockResult {
    /// The latest committed value (when asked for).
    pub value: Option<Vec<u8>>,
    pub exists: bool,
}

/// KvPessimisticLock for one key: locks `key` for the transaction unless someone committed a
/// change after `for_update_ts` (the client retries with a newer one) or another transaction
/// holds a lock (the caller may wait for it).
pub fn acquire_pessimistic_lock<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    opts: &PessimisticLockOptions,
) -> Result<PessimisticLockResult> {
    let start_ts = opts.start_ts;
    let read_value = |reader: &MvccReader<'_, S>| -> Result<PessimisticLockResult> {
        let value = reader.get(key, TimeStamp::max())?;
        Ok(PessimisticLockResult {
            exists: value.is_some(),
            value: if opts.need_value { value } else { None },
        })
    };
    if let Some(mut lock) = reader.load_lock(key)? {
        if lock.ts != start_ts {
            return Err(txn_err(TxnError::KeyIsLocked(Box::new(lock_info(
                &raw(key)?,
                &lock,
            )))));
        }
        let result = read_value(reader)?;
        if lock.lock_type == LockType::Pessimistic && lock.for_update_ts < opts.for_update_ts {
            lock.for_update_ts = opts.for_update_ts;
            lock.ttl = lock.ttl.max(opts.lock_ttl);
            txn.put_lock(key, &lock);
        }
        return Ok(result);
    }
    if let Some((commit_ts, write)) = reader.seek_write(key, TimeStamp::max())? {
        if commit_ts > opts.for_update_ts {
            return Err(txn_err(TxnError::WriteConflict {
                start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: raw(key)?,
                primary: opts.primary.clone(),
                reason: ConflictReason::PessimisticRetry,
            }));
        }
        if commit_ts >= start_ts && reader.get_txn_commit_record(key, start_ts)?.is_rolled_back() {
            return Err(txn_err(TxnError::PessimisticLockRolledBack {
                start_ts,
                key: raw(key)?,
            }));
        }
    }
    let result = read_value(reader)?;
    if opts.should_not_exist && result.exists {
        return Err(txn_err(TxnError::AlreadyExist { key: raw(key)? }));
    }
    if opts.lock_only_if_exists && !result.exists {
        return Ok(result);
    }
    let mut lock = Lock::new(
        LockType::Pessimistic,
        opts.primary.clone(),
        start_ts,
        opts.lock_ttl,
    );
    lock.for_update_ts = opts.for_update_ts;
    lock.min_commit_ts = opts.min_commit_ts;
    txn.put_lock(key, &lock);
    Ok(result)
}

/// KVPessimisticRollback for one key: removes the transaction's pessimistic lock if it was
/// taken at or before `for_update_ts`; anything else is left alone. Returns whether a lock
/// was removed.
pub fn pessimistic_rollback<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
    for_update_ts: TimeStamp,
) -> Result<bool> {
    match reader.load_lock(key)? {
        Some(lock)
            if lock.ts == start_ts
                && lock.lock_type == LockType::Pessimistic
                && (for_update_ts.is_zero() || lock.for_update_ts <= for_update_ts) =>
        {
            txn.unlock_key(key);
            Ok(true)
        }
        _ => Ok(false),
    }
}
