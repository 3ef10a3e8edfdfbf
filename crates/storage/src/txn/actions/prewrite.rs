use engine_traits::Snapshot;
use txn_types::{Lock, LockType, TimeStamp, WriteType, SHORT_VALUE_MAX_LEN};

use super::{raw, txn_err};
use crate::mvcc::{lock_info, ConflictReason, MvccReader, MvccTxn, TxnCommitRecord, TxnError};
use crate::Result;

/// What a prewrite mutation does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationOp {
    Put(Vec<u8>),
    Delete,
    /// Lock the key without changing it (a read the transaction depends on).
    Lock,
    /// Put, requiring that the key does not exist.
    Insert(Vec<u8>),
    /// Only check that the key does not exist; writes nothing.
    CheckNotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// Encoded key.
    pub key: Vec<u8>,
    pub op: MutationOp,
}

/// The transaction-wide part of a prewrite request.
#[derive(Debug, Clone, Default)]
pub struct TxnProps {
    pub start_ts: TimeStamp,
    /// User key of the primary.
    pub primary: Vec<u8>,
    pub lock_ttl: u64,
    pub txn_size: u64,
    /// Non-zero for a pessimistic transaction.
    pub for_update_ts: TimeStamp,
    pub min_commit_ts: TimeStamp,
    pub max_commit_ts: TimeStamp,
    pub use_async_commit: bool,
    /// Secondaries recorded in the primary's lock (async commit).
    pub secondaries: Vec<Vec<u8>>,
    pub try_one_pc: bool,
    pub skip_constraint_check: bool,
}

impl TxnProps {
    pub fn is_pessimistic(&self) -> bool {
        !self.for_update_ts.is_zero()
    }
}

/// The result of prewriting one key.
#[derive(Debug, Clone, PartialEq)]
pub enum PrewriteOutcome {
    /// The lock that was (or, for 1PC, would be) written; `None` when nothing is locked
    /// (`CheckNotExists`, or a duplicate prewrite).
    Locked(Option<Lock>),
    /// The key was already prewritten by this transaction (a retried request).
    Duplicate(Lock),
}

/// Prewrites `m` for the transaction `props`. `pessimistic_check`: the key must hold this
/// transaction's pessimistic lock (pessimistic transactions). `constraint_check`: check
/// `Insert`/`CheckNotExists` even on a pessimistically locked key.
///
/// Values too long to inline go into `txn` now; the lock itself is returned, to be written by
/// [`finish_prewrite`] once the whole request is checked (async commit and 1PC need the
/// request's commit-ts floor first).
pub fn prewrite<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    props: &TxnProps,
    m: &Mutation,
    pessimistic_check: bool,
    constraint_check: bool,
) -> Result<PrewriteOutcome> {
    let key = &m.key;
    let start_ts = props.start_ts;
    let mut had_pessimistic_lock = false;
    if let Some(lock) = reader.load_lock(key)? {
        if lock.ts != start_ts {
            return Err(txn_err(TxnError::KeyIsLocked(Box::new(lock_info(
                &raw(key)?,
                &lock,
            )))));
        }
        if lock.lock_type != LockType::Pessimistic {
            return Ok(PrewriteOutcome::Duplicate(lock));
        }
        had_pessimistic_lock = true;
    } else if pessimistic_check {
        // The pessimistic lock is gone: rolled back (e.g. resolved as expired) or never taken.
        return Err(match reader.get_txn_commit_record(key, start_ts)? {
            TxnCommitRecord::SingleRecord { write, .. } if write.write_type != WriteType::Rollback => {
                // Committed already (a retried prewrite after commit): nothing to do.
                return Ok(PrewriteOutcome::Locked(None));
            }
            r if r.is_rolled_back() => txn_err(TxnError::PessimisticLockRolledBack {
                start_ts,
                key: raw(key)?,
            }),
            _ => txn_err(TxnError::PessimisticLockNotFound {
                start_ts,
                key: raw(key)?,
            }),
        });
    }

    if !had_pessimistic_lock {
        check_conflict(reader, key, props)?;
    }
    let is_insert = matches!(m.op, MutationOp::Insert(_) | MutationOp::CheckNotExists);
    if is_insert && !props.skip_constraint_check && (!had_pessimistic_lock || constraint_check) {
        if let Some((_, w)) = reader.get_write(key, TimeStamp::max())? {
            if w.write_type == WriteType::Put {
                return Err(txn_err(TxnError::AlreadyExist { key: raw(key)? }));
            }
        }
    }

    let (lock_type, value) = match &m.op {
        MutationOp::Put(v) | MutationOp::Insert(v) => (LockType::Put, Some(v)),
        MutationOp::Delete => (LockType::Delete, None),
        MutationOp::Lock => (LockType::Lock, None),
        MutationOp::CheckNotExists => {
            return Ok(PrewriteOutcome::Locked(None));
        }
    };
    let mut lock = Lock::new(lock_type, props.primary.clone(), start_ts, props.lock_ttl);
    lock.for_update_ts = props.for_update_ts;
    lock.txn_size = props.txn_size;
    lock.min_commit_ts = props.min_commit_ts;
    if let Some(v) = value {
        if v.len() <= SHORT_VALUE_MAX_LEN {
            lock.short_value = Some(v.clone());
        } else {
            txn.put_value(key, start_ts, v.clone());
        }
    }
    if props.use_async_commit {
        lock.use_async_commit = true;
        if raw(key)? == props.primary {
            lock.secondaries = props.secondaries.clone();
        }
    }
    Ok(PrewriteOutcome::Locked(Some(lock)))
}

/// The result of a whole prewrite request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrewriteResult {
    /// Async commit: the transaction may commit at or after this (0 when not async commit).
    pub min_commit_ts: TimeStamp,
    /// 1PC: the transaction is committed at this timestamp (0 when not committed).
    pub one_pc_commit_ts: TimeStamp,
}

/// Writes the locks `prewrite` returned (encoded key, lock). For async commit and 1PC the
/// commit timestamp floor comes from `max_ts`, the largest timestamp any read of these keys
/// may have used (read after the keys were locked in memory); 1PC then writes commit records
/// instead of locks. If that floor exceeds `props.max_commit_ts` the request falls back to
/// ordinary two-phase commit (both results 0), as TiKV does.
pub fn finish_prewrite(
    txn: &mut MvccTxn,
    props: &TxnProps,
    mut locks: Vec<(Vec<u8>, Lock)>,
    max_ts: TimeStamp,
) -> PrewriteResult {
    if !props.use_async_commit && !props.try_one_pc {
        for (key, lock) in &locks {
            txn.put_lock(key, lock);
        }
        return PrewriteResult::default();
    }
    let min_commit_ts = [
        props.min_commit_ts,
        max_ts.next(),
        props.start_ts.next(),
        props.for_update_ts.next(),
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    if !props.max_commit_ts.is_zero() && min_commit_ts > props.max_commit_ts {
        for (key, lock) in &mut locks {
            lock.use_async_commit = false;
            lock.secondaries.clear();
            txn.put_lock(key, lock);
        }
        return PrewriteResult::default();
    }
    if props.try_one_pc {
        for (key, lock) in &locks {
            let write_type = WriteType::from_lock_type(lock.lock_type).unwrap_or(WriteType::Lock);
            let write = txn_types::Write::new(write_type, props.start_ts, lock.short_value.clone());
            txn.put_write(key, min_commit_ts, &write);
            if props.is_pessimistic() {
                txn.unlock_key(key);
            }
        }
        return PrewriteResult {
            min_commit_ts: TimeStamp::zero(),
            one_pc_commit_ts: min_commit_ts,
        };
    }
    for (key, lock) in &mut locks {
        lock.min_commit_ts = min_commit_ts;
        txn.put_lock(key, lock);
    }
    PrewriteResult {
        min_commit_ts,
        one_pc_commit_ts: TimeStamp::zero(),
    }
}

/// Optimistic write-conflict check: nothing may have committed on `key` after `start_ts`, and
/// the transaction must not have been rolled back there.
fn check_conflict<S: Snapshot>(reader: &MvccReader<'_, S>, key: &[u8], props: &TxnProps) -> Result<()> {
    let start_ts = props.start_ts;
    if let Some((commit_ts, write)) = reader.seek_write(key, TimeStamp::max())? {
        if commit_ts > start_ts {
            return Err(txn_err(TxnError::WriteConflict {
                start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: raw(key)?,
                primary: props.primary.clone(),
                reason: ConflictReason::Optimistic,
            }));
        }
        if commit_ts == start_ts
            && ((write.write_type == WriteType::Rollback && write.start_ts == start_ts)
                || write.has_overlapped_rollback)
        {
            return Err(txn_err(TxnError::WriteConflict {
                start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: raw(key)?,
                primary: props.primary.clone(),
                reason: ConflictReason::SelfRolledBack,
            }));
        }
    }
    Ok(())
}
