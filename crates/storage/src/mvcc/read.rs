//! Snapshot-isolated reads: which locks block a read at `ts`, point gets and range scans
//! (both directions) that see exactly the versions committed at or before `ts`.

use engine_traits::{EngineIterator, IterBounds, Snapshot, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key, origin_key};
use txn_types::{mvcc_key, Lock, LockType, TimeStamp, WriteType};

use super::errors::TxnError;
use super::reader::MvccReader;
use crate::{Error, Result};

/// The lock-related part of a read request's context.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub ts: TimeStamp,
    /// Transactions known to be rolled back or to commit after `ts`: their locks are ignored.
    pub bypass_locks: Vec<u64>,
    /// Transactions known to have committed: their locks are read as committed values.
    pub access_locks: Vec<u64>,
}

/// What a lock means for a read at `opts.ts`.
pub enum LockRead {
    /// The lock cannot affect the read.
    Ignore,
    /// The lock's transaction committed (per `access_locks`); read its value from the lock.
    Committed(Lock),
}

/// The LockInfo a client receives for `lock` on user key `raw_key`.
pub fn lock_info(raw_key: &[u8], lock: &Lock) -> atoll_proto::kvrpcpb::LockInfo {
    use atoll_proto::kvrpcpb::Op;
    atoll_proto::kvrpcpb::LockInfo {
        primary_lock: lock.primary.clone(),
        lock_version: lock.ts.into_inner(),
        key: raw_key.to_vec(),
        lock_ttl: lock.ttl,
        txn_size: lock.txn_size,
        lock_type: match lock.lock_type {
            LockType::Put => Op::Put,
            LockType::Delete => Op::Del,
            LockType::Lock => Op::Lock,
            LockType::Pessimistic => Op::PessimisticLock,
        } as i32,
        lock_for_update_ts: lock.for_update_ts.into_inner(),
        use_async_commit: lock.use_async_commit,
        min_commit_ts: lock.min_commit_ts.into_inner(),
        secondaries: lock.secondaries.clone(),
        ..Default::default()
    }
}

/// Decides whether `lock` on `key` (encoded) blocks a snapshot read at `opts.ts`.
pub fn check_lock_for_read(key: &[u8], lock: Lock, opts: &ReadOptions) -> Result<LockRead> {
    let ts = opts.ts;
    if lock.ts > ts || matches!(lock.lock_type, LockType::Lock | LockType::Pessimistic) {
        return Ok(LockRead::Ignore);
    }
    if opts.bypass_locks.contains(&lock.ts.into_inner()) {
        return Ok(LockRead::Ignore);
    }
    if opts.access_locks.contains(&lock.ts.into_inner()) {
        return Ok(LockRead::Committed(lock));
    }
    // The transaction promised to commit after the read.
    if lock.min_commit_ts > ts {
        return Ok(LockRead::Ignore);
    }
    let raw_key = mvcc_key::decode(key)?;
    // Reading "the latest" of a non-async-commit primary: its commit cannot be before this
    // read completes unless the lock is gone, so the committed value is the answer.
    if ts == TimeStamp::max() && raw_key == lock.primary && !lock.use_async_commit {
        return Ok(LockRead::Ignore);
    }
    Err(Error::Txn(Box::new(TxnError::KeyIsLocked(Box::new(lock_info(
        &raw_key, &lock,
    ))))))
}

fn value_of_committed_lock<S: Snapshot>(
    reader: &MvccReader<'_, S>,
    key: &[u8],
    lock: &Lock,
) -> Result<Option<Vec<u8>>> {
    match lock.lock_type {
        LockType::Put => match &lock.short_value {
            Some(v) => Ok(Some(v.clone())),
            None => reader
                .load_data(key, &txn_types::Write::new(WriteType::Put, lock.ts, None))
                .map(Some),
        },
        _ => Ok(None),
    }
}

/// The value of `key` (encoded) at `opts.ts`, or the lock that blocks the read.
pub fn point_get<S: Snapshot>(snap: &S, key: &[u8], opts: &ReadOptions) -> Result<Option<Vec<u8>>> {
    let reader = MvccReader::new(snap);
    if let Some(lock) = reader.load_lock(key)? {
        if let LockRead::Committed(lock) = check_lock_for_read(key, lock, opts)? {
            return value_of_committed_lock(&reader, key, &lock);
        }
    }
    reader.get(key, opts.ts)
}

/// One result of a scan: an encoded key with its value, or the lock error for that key.
pub type ScanItem = (Vec<u8>, Result<Vec<u8>>);

/// Scans encoded keys in `[lower, upper)` (`upper` empty: unbounded) at `opts.ts`, in ascending order or (reverse)
/// descending, returning up to `limit` (0: no limit) visible keys; a key whose lock blocks the
/// read is returned with its error in place of a value (counts toward the limit).
pub fn scan<S: Snapshot>(
    snap: &S,
    lower: &[u8],
    upper: &[u8],
    limit: usize,
    key_only: bool,
    reverse: bool,
    opts: &ReadOptions,
) -> Result<Vec<ScanItem>> {
    let reader = MvccReader::new(snap);
    let bounds = || IterBounds::new(Some(data_key(lower)), Some(data_end_key(upper)));
    let mut writes = snap.iterator_cf(CF_WRITE, bounds())?;
    let mut locks = snap.iterator_cf(CF_LOCK, bounds())?;
    let (mut w_valid, mut l_valid) = if reverse {
        (writes.seek_to_last()?, locks.seek_to_last()?)
    } else {
        (writes.seek_to_first()?, locks.seek_to_first()?)
    };
    let mut out = vec![];
    while (w_valid || l_valid) && (limit == 0 || out.len() < limit) {
        let w_key = if w_valid {
            let versioned =
                origin_key(writes.key()).ok_or_else(|| Error::Corrupted("non-data key".into()))?;
            Some(mvcc_key::split_ts(versioned)?.0.to_vec())
        } else {
            None
        };
        let l_key = if l_valid {
            Some(
                origin_key(locks.key())
                    .ok_or_else(|| Error::Corrupted("non-data key".into()))?
                    .to_vec(),
            )
        } else {
            None
        };
        // The next user key in scan order.
        let key = match (&w_key, &l_key) {
            (Some(w), Some(l)) => {
                if (w <= l) != reverse || w == l {
                    w.clone()
                } else {
                    l.clone()
                }
            }
            (Some(w), None) => w.clone(),
            (None, Some(l)) => l.clone(),
            (None, None) => break,
        };
        let mut item = None;
        // Set when the lock decided the key (an error, or a committed lock's value or delete).
        let mut decided = false;
        if l_key.as_deref() == Some(key.as_slice()) {
            let lock = Lock::decode(locks.value())?;
            match check_lock_for_read(&key, lock, opts) {
                Ok(LockRead::Ignore) => {}
                Ok(LockRead::Committed(lock)) => {
                    decided = true;
                    item = value_of_committed_lock(&reader, &key, &lock).transpose();
                }
                Err(e) => {
                    decided = true;
                    item = Some(Err(e));
                }
            }
            l_valid = if reverse { locks.prev()? } else { locks.next()? };
        }
        if w_key.as_deref() == Some(key.as_slice()) {
            if !decided {
                if let Some((_, w)) = reader.get_write(&key, opts.ts)? {
                    if w.write_type == WriteType::Put {
                        item = Some(if key_only {
                            Ok(vec![])
                        } else {
                            reader.load_data(&key, &w)
                        });
                    }
                }
            }
            // Step past every version of this key.
            w_valid = if reverse {
                writes.seek_for_prev(&data_key(&key))?
            } else {
                writes.seek(&data_key(&mvcc_key::versions_end(&key)))?
            };
        }
        if let Some(item) = item {
            out.push((key, if key_only { item.map(|_| vec![]) } else { item }));
        }
    }
    Ok(out)
}
