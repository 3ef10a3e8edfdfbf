//! The max read timestamp and the in-memory lock table that make async commit and 1PC safe.
//!
//! An async-commit (or 1PC) prewrite picks the transaction's commit-ts floor from the largest
//! timestamp any read on this store has used. Every read first raises `max_ts` to its own
//! timestamp and then checks the memory lock table; a prewrite first puts its keys in the
//! table and then reads `max_ts`. Whatever the interleaving, either the read sees the lock or
//! the prewrite sees the read's timestamp, so no reader can miss a transaction that commits at
//! or before its timestamp. Memory locks live until the prewrite's write has been applied.
//!
//! `max_ts` is per node (a superset of every region's reads on it). Reads served by an earlier
//! leader of a region on another node never raised it, so when this node's peer becomes leader
//! of a region, the node raises `max_ts` from PD's TSO and records the region as synced for that
//! term (TiKV's "max ts synced"). Until then, an async-commit or 1PC prewrite of the region
//! raises it from PD's TSO itself, after locking its keys in memory (`TxnStorage::prewrite`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use txn_types::{Lock, TimeStamp};

#[derive(Clone, Default)]
pub struct ConcurrencyManager {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    max_ts: AtomicU64,
    /// Region id -> the leader term in which `max_ts` was raised from PD's TSO.
    synced: Mutex<std::collections::HashMap<u64, u64>>,
    /// Encoded key -> (lock, number of holders).
    locks: Mutex<BTreeMap<Vec<u8>, (Lock, usize)>>,
}

/// Keys held in the memory lock table; released on drop.
pub struct MemLockGuard {
    inner: Arc<Inner>,
    keys: Vec<Vec<u8>>,
}

impl ConcurrencyManager {
    pub fn new(initial_max_ts: TimeStamp) -> ConcurrencyManager {
        let cm = ConcurrencyManager::default();
        cm.update_max_ts(initial_max_ts);
        cm
    }

    pub fn max_ts(&self) -> TimeStamp {
        TimeStamp::new(self.inner.max_ts.load(Ordering::SeqCst))
    }

    /// Raises the max read ts to `ts` (`TimeStamp::max()`, "read the latest", is ignored).
    pub fn update_max_ts(&self, ts: TimeStamp) {
        if ts != TimeStamp::max() {
            self.inner.max_ts.fetch_max(ts.into_inner(), Ordering::SeqCst);
        }
    }

    /// Records that `max_ts` was raised from PD's TSO after this node's peer became leader of
    /// `region_id` in `term`.
    pub fn set_max_ts_synced(&self, region_id: u64, term: u64) {
        let mut synced = self.inner.synced.lock();
        let e = synced.entry(region_id).or_insert(term);
        *e = (*e).max(term);
    }

    /// Whether `max_ts` covers every read of `region_id` made before its leader's `term`.
    pub fn is_max_ts_synced(&self, region_id: u64, term: u64) -> bool {
        term != 0 && self.inner.synced.lock().get(&region_id) == Some(&term)
    }

    /// Puts `locks` (encoded key, lock) in the memory lock table.
    pub fn lock_keys(&self, locks: &[(Vec<u8>, Lock)]) -> MemLockGuard {
        let mut table = self.inner.locks.lock();
        for (key, lock) in locks {
            table
                .entry(key.clone())
                .and_modify(|e| {
                    e.0 = lock.clone();
                    e.1 += 1;
                })
                .or_insert_with(|| (lock.clone(), 1));
        }
        MemLockGuard {
            inner: self.inner.clone(),
            keys: locks.iter().map(|(k, _)| k.clone()).collect(),
        }
    }

    /// Calls `f` on the memory lock of `key`, if any.
    pub fn read_key_check<E>(&self, key: &[u8], f: impl FnOnce(&Lock) -> Result<(), E>) -> Result<(), E> {
        match self.inner.locks.lock().get(key) {
            Some((lock, _)) => f(lock),
            None => Ok(()),
        }
    }

    /// Calls `f` on every memory lock with a key in `[start, end)` (`end` empty: unbounded).
    pub fn read_range_check<E>(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], &Lock) -> Result<(), E>,
    ) -> Result<(), E> {
        if !end.is_empty() && start >= end {
            // An empty (or inverted) range holds no locks; `BTreeMap::range` would panic on it.
            return Ok(());
        }
        let table = self.inner.locks.lock();
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        for (k, (lock, _)) in table.range::<[u8], _>((Bound::Included(start), upper)) {
            f(k, lock)?;
        }
        Ok(())
    }
}

impl MemLockGuard {
    /// Replaces the memory locks' content (e.g. once `min_commit_ts` is known).
    pub fn update(&self, locks: &[(Vec<u8>, Lock)]) {
        let mut table = self.inner.locks.lock();
        for (key, lock) in locks {
            if let Some(e) = table.get_mut(key) {
                e.0 = lock.clone();
            }
        }
    }
}

impl Drop for MemLockGuard {
    fn drop(&mut self) {
        let mut table = self.inner.locks.lock();
        for key in &self.keys {
            if let Some(e) = table.get_mut(key) {
                e.1 -= 1;
                if e.1 == 0 {
                    table.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use txn_types::LockType;

    use super::*;

    #[test]
    fn max_ts_only_rises_and_locks_release_on_drop() {
        let cm = ConcurrencyManager::new(TimeStamp::new(10));
        cm.update_max_ts(TimeStamp::new(5));
        cm.update_max_ts(TimeStamp::max());
        assert_eq!(cm.max_ts(), TimeStamp::new(10));
        cm.update_max_ts(TimeStamp::new(20));
        assert_eq!(cm.max_ts(), TimeStamp::new(20));

        let lock = Lock::new(LockType::Put, b"p".to_vec(), TimeStamp::new(7), 100);
        let g1 = cm.lock_keys(&[(b"a".to_vec(), lock.clone()), (b"c".to_vec(), lock.clone())]);
        let g2 = cm.lock_keys(&[(b"a".to_vec(), lock.clone())]);
        let seen = |start: &[u8], end: &[u8]| {
            let mut keys = vec![];
            cm.read_range_check::<()>(start, end, |k, _| {
                keys.push(k.to_vec());
                Ok(())
            })
            .unwrap();
            keys
        };
        assert_eq!(seen(b"", b""), vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(seen(b"b", b"c"), Vec::<Vec<u8>>::new());
        assert_eq!(seen(b"d", b"a"), Vec::<Vec<u8>>::new(), "an inverted range");
        assert_eq!(seen(b"c", b"c"), Vec::<Vec<u8>>::new(), "an empty range");
        drop(g1);
        assert_eq!(seen(b"", b""), vec![b"a".to_vec()]);
        assert!(cm.read_key_check(b"a", |_| Err(())).is_err());
        drop(g2);
        assert!(cm.read_key_check(b"a", |_| Err(())).is_ok());
    }
}
