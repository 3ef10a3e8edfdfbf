use engine_traits::Snapshot;
use txn_types::{Lock, LockType, TimeStamp, Write};

use super::{lock_expired, raw, txn_err};
use crate::mvcc::{lock_info, MvccReader, MvccTxn, TxnCommitRecord, TxnError};
use crate::Result;

/// Removes `lock` (owned by the transaction being rolled back) and leaves a rollback record.
pub(crate) fn rollback_lock<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    lock: &Lock,
) -> Result<()> {
    if lock.lock_type == LockType::Put && lock.short_value.is_none() {
        txn.delete_value(key, lock.ts);
    }
    write_rollback_record(txn, reader, key, lock.ts)?;
    txn.unlock_key(key);
    Ok(())
}

/// Records that `start_ts` is rolled back on `key`, so that a late prewrite of it fails. If
/// another transaction committed at exactly `start_ts`, its record is marked instead.
fn write_rollback_record<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
) -> Result<()> {
    match reader.get_txn_commit_record(key, start_ts)? {
        TxnCommitRecord::None {
            overlapped_write: Some(mut write),
        } => {
            write.has_overlapped_rollback = true;
            txn.put_write(key, start_ts, &write);
        }
        TxnCommitRecord::None {
            overlapped_write: None,
        } => {
            txn.put_write(key, start_ts, &Write::new_rollback(start_ts));
        }
        // Already committed or rolled back: callers check before.
        _ => {}
    }
    Ok(())
}

/// Rolls back transaction `start_ts` on `key` (KvBatchRollback, ResolveLock with commit ts 0).
/// Succeeds if it is already rolled back; fails with `Committed` if it committed.
pub fn rollback<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
) -> Result<bool> {
    let lock = reader.load_lock(key)?;
    if let Some(lock) = &lock {
        if lock.ts == start_ts {
            rollback_lock(txn, reader, key, lock)?;
            return Ok(true);
        }
    }
    match reader.get_txn_commit_record(key, start_ts)? {
        record if record.is_rolled_back() => Ok(false),
        TxnCommitRecord::SingleRecord { commit_ts, .. } => Err(txn_err(TxnError::Committed {
            start_ts,
            commit_ts,
            key: raw(key)?,
        })),
        _ => {
            write_rollback_record(txn, reader, key, start_ts)?;
            // Another transaction's lock could later commit at exactly `start_ts` and overwrite
            // the rollback record: remember the rollback in that lock.
            if let Some(mut other) = lock {
                if other.ts < start_ts && !other.rollback_ts.contains(&start_ts) {
                    other.rollback_ts.push(start_ts);
                    txn.put_lock(key, &other);
                }
            }
            Ok(false)
        }
    }
}

/// KvCleanup: rolls back `start_ts` on `key` unless its lock is still alive at `current_ts`
/// (0: roll back regardless). Fails with `Committed` if the transaction committed.
pub fn cleanup<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
    current_ts: TimeStamp,
) -> Result<bool> {
    if let Some(lock) = reader.load_lock(key)? {
        if lock.ts == start_ts && !current_ts.is_zero() && !lock_expired(lock.ts, lock.ttl, current_ts) {
            return Err(txn_err(TxnError::KeyIsLocked(Box::new(lock_info(
                &raw(key)?,
                &lock,
            )))));
        }
    }
    rollback(txn, reader, key, start_ts)
}
