use atoll_proto::kvrpcpb;
use engine_traits::Snapshot;
use txn_types::{LockType, TimeStamp};

use super::cleanup::rollback_lock;
use super::{lock_expired, raw, txn_err};
use crate::mvcc::{lock_info, MvccReader, MvccTxn, TxnCommitRecord, TxnError};
use crate::Result;

/// What check-txn-status found (and did) for a transaction's primary.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnStatus {
    /// The transaction is alive: its primary lock (ttl > 0).
    Locked {
        ttl: u64,
        lock: Box<kvrpcpb::LockInfo>,
        action: kvrpcpb::Action,
    },
    Committed {
        commit_ts: TimeStamp,
    },
    RolledBack {
        action: kvrpcpb::Action,
    },
}

/// KvCheckTxnStatus on primary `key` of transaction `lock_ts`. A live lock reports a TTL of at
/// least 1 (clients read a zero TTL as "not locked").
#[allow(clippy::too_many_arguments)]
pub fn check_txn_status<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    lock_ts: TimeStamp,
    caller_start_ts: TimeStamp,
    current_ts: TimeStamp,
    rollback_if_not_exist: bool,
    force_sync_commit: bool,
    resolving_pessimistic_lock: bool,
    verify_is_primary: bool,
) -> Result<TxnStatus> {
    use kvrpcpb::Action;
    if let Some(mut lock) = reader.load_lock(key)? {
        if lock.ts == lock_ts {
            let raw_key = raw(key)?;
            if verify_is_primary && lock.primary != raw_key {
                return Err(txn_err(TxnError::PrimaryMismatch(Box::new(lock_info(
                    &raw_key, &lock,
                )))));
            }
            if lock.use_async_commit && !force_sync_commit {
                // The transaction's fate is decided by its secondaries, never by the TTL.
                return Ok(TxnStatus::Locked {
                    ttl: lock.ttl.max(1),
                    lock: Box::new(lock_info(&raw_key, &lock)),
                    action: Action::NoAction,
                });
            }
            if lock_expired(lock.ts, lock.ttl, current_ts) {
                if resolving_pessimistic_lock && lock.lock_type == LockType::Pessimistic {
                    txn.unlock_key(key);
                    return Ok(TxnStatus::RolledBack {
                        action: Action::TtlExpirePessimisticRollback,
                    });
                }
                rollback_lock(txn, reader, key, &lock)?;
                return Ok(TxnStatus::RolledBack {
                    action: Action::TtlExpireRollback,
                });
            }
            // Push the commit ts past the caller's snapshot so that the caller need not wait
            // (only locks that carry a min_commit_ts: their commit checks it).
            if !lock.min_commit_ts.is_zero()
                && caller_start_ts != TimeStamp::max()
                && lock.min_commit_ts <= caller_start_ts
            {
                lock.min_commit_ts = caller_start_ts.next();
                if lock.min_commit_ts < current_ts {
                    lock.min_commit_ts = current_ts;
                }
                txn.put_lock(key, &lock);
            }
            let action = if caller_start_ts == TimeStamp::max() || lock.min_commit_ts > caller_start_ts {
                Action::MinCommitTsPushed
            } else {
                Action::NoAction
            };
            return Ok(TxnStatus::Locked {
                ttl: lock.ttl.max(1),
                lock: Box::new(lock_info(&raw_key, &lock)),
                action,
            });
        }
    }
    match reader.get_txn_commit_record(key, lock_ts)? {
        TxnCommitRecord::SingleRecord { commit_ts, write }
            if write.write_type != txn_types::WriteType::Rollback =>
        {
            Ok(TxnStatus::Committed { commit_ts })
        }
        record if record.is_rolled_back() => Ok(TxnStatus::RolledBack {
            action: Action::NoAction,
        }),
        TxnCommitRecord::None { .. } => {
            if !rollback_if_not_exist {
                return Err(txn_err(TxnError::TxnNotFound {
                    start_ts: lock_ts,
                    key: raw(key)?,
                }));
            }
            if resolving_pessimistic_lock {
                return Ok(TxnStatus::RolledBack {
                    action: Action::LockNotExistDoNothing,
                });
            }
            // Leaves the rollback record (and marks another transaction's lock on the key
            // that could commit at exactly `lock_ts`).
            super::rollback(txn, reader, key, lock_ts)?;
            Ok(TxnStatus::RolledBack {
                action: Action::LockNotExistRollback,
            })
        }
        // Unreachable: the arms above cover committed, rolled back and absent.
        TxnCommitRecord::SingleRecord { .. } | TxnCommitRecord::OverlappedRollback { .. } => {
            Ok(TxnStatus::RolledBack {
                action: Action::NoAction,
            })
        }
    }
}

/// KvTxnHeartBeat: extends the primary lock's TTL to `advise_ttl` (never shortens it).
pub fn txn_heart_beat<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
    advise_ttl: u64,
) -> Result<u64> {
    match reader.load_lock(key)? {
        Some(mut lock) if lock.ts == start_ts => {
            if lock.ttl < advise_ttl {
                lock.ttl = advise_ttl;
                txn.put_lock(key, &lock);
            }
            Ok(lock.ttl)
        }
        _ => Err(txn_err(TxnError::TxnNotFound {
            start_ts,
            key: raw(key)?,
        })),
    }
}

/// The state of one secondary key of an async-commit transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum SecondaryStatus {
    Locked(Box<kvrpcpb::LockInfo>),
    Committed(TimeStamp),
    RolledBack,
}

/// KvCheckSecondaryLocks for one key: a prewritten lock stays; a missing lock is rolled back
/// (so the transaction can no longer commit there); a pessimistic lock is rolled back too.
pub fn check_secondary_lock<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    start_ts: TimeStamp,
) -> Result<SecondaryStatus> {
    if let Some(lock) = reader.load_lock(key)? {
        if lock.ts == start_ts {
            if lock.lock_type == LockType::Pessimistic {
                rollback_lock(txn, reader, key, &lock)?;
                return Ok(SecondaryStatus::RolledBack);
            }
            return Ok(SecondaryStatus::Locked(Box::new(lock_info(&raw(key)?, &lock))));
        }
    }
    match reader.get_txn_commit_record(key, start_ts)? {
        TxnCommitRecord::SingleRecord { commit_ts, write }
            if write.write_type != txn_types::WriteType::Rollback =>
        {
            Ok(SecondaryStatus::Committed(commit_ts))
        }
        record if record.is_rolled_back() => Ok(SecondaryStatus::RolledBack),
        _ => {
            super::rollback(txn, reader, key, start_ts)?;
            Ok(SecondaryStatus::RolledBack)
        }
    }
}
