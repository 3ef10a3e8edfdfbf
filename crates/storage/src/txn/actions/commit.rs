use engine_traits::Snapshot;
use txn_types::{LockType, TimeStamp, Write, WriteType};

use super::{raw, txn_err};
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord, TxnError};
use crate::Result;

/// Commits transaction `start_ts` on `key` at `commit_ts`. Idempotent: a key already committed
/// by the transaction succeeds again. Returns whether a lock was released.
pub fn commit<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
    commit_ts: TimeStamp,
) -> Result<bool> {
    if let Some(lock) = reader.load_lock(key)? {
        if lock.ts == start_ts {
            if lock.lock_type == LockType::Pessimistic {
                // Only a prewritten lock can commit; the pessimistic lock was never prewritten.
                return Err(txn_err(TxnError::TxnLockNotFound {
                    start_ts,
                    commit_ts,
                    key: raw(key)?,
                }));
            }
            if commit_ts < lock.min_commit_ts {
                return Err(txn_err(TxnError::CommitTsExpired {
                    start_ts,
                    commit_ts,
                    key: raw(key)?,
                    min_commit_ts: lock.min_commit_ts,
                }));
            }
            let write_type = WriteType::from_lock_type(lock.lock_type).unwrap_or(WriteType::Lock);
            let mut write = Write::new(write_type, start_ts, lock.short_value.clone());
            write.has_overlapped_rollback = lock.rollback_ts.contains(&commit_ts);
            txn.put_write(key, commit_ts, &write);
            txn.unlock_key(key);
            return Ok(true);
        }
    }
    match reader.get_txn_commit_record(key, start_ts)? {
        TxnCommitRecord::SingleRecord { write, .. } if write.write_type != WriteType::Rollback => Ok(false),
        _ => Err(txn_err(TxnError::TxnLockNotFound {
            start_ts,
            commit_ts,
            key: raw(key)?,
        })),
    }
}
