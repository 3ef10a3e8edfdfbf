//! Waiting for locks, for pessimistic lock requests, and deadlock detection between waiters.
//!
//! A pessimistic lock request that meets another transaction's lock registers here (while it
//! still holds the key's latch, so the release cannot slip in between) and waits until a
//! command removes a lock on that key, or until its timeout. Each registration adds an edge
//! "waiter txn -> lock owner txn" to a wait-for graph; an edge that would close a cycle is
//! refused as a deadlock. Detection is per node: transactions waiting on each other across
//! nodes are still bounded by the wait timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct LockWaits {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Encoded key -> waiters (id, wake-up).
    waiters: HashMap<Vec<u8>, Vec<(u64, Arc<Notify>)>>,
    /// Wait-for edges: waiter id -> (waiter txn, owner txn).
    edges: HashMap<u64, (u64, u64)>,
}

/// Why a wait was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlock {
    /// The start ts of the transaction whose lock closes the cycle.
    pub lock_ts: u64,
}

/// One registered waiter; leaves the graph when dropped.
pub struct Waiter {
    waits: LockWaits,
    id: u64,
    key: Vec<u8>,
    notify: Arc<Notify>,
}

impl State {
    /// Whether txn `from` waits (transitively) for txn `to`.
    fn reaches(&self, from: u64, to: u64) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::HashSet::new();
        while let Some(t) = stack.pop() {
            if t == to {
                return true;
            }
            if !seen.insert(t) {
                continue;
            }
            stack.extend(self.edges.values().filter(|(w, _)| *w == t).map(|(_, o)| *o));
        }
        false
    }
}

impl LockWaits {
    pub fn new() -> LockWaits {
        LockWaits::default()
    }

    /// Registers txn `start_ts` as waiting for txn `lock_ts`'s lock on `key`.
    pub fn register(&self, key: &[u8], start_ts: u64, lock_ts: u64) -> Result<Waiter, Deadlock> {
        let mut s = self.inner.lock();
        if s.reaches(lock_ts, start_ts) {
            crate::metrics::DEADLOCKS.inc();
            return Err(Deadlock { lock_ts });
        }
        s.next_id += 1;
        let id = s.next_id;
        let notify = Arc::new(Notify::new());
        s.waiters
            .entry(key.to_vec())
            .or_default()
            .push((id, notify.clone()));
        s.edges.insert(id, (start_ts, lock_ts));
        crate::metrics::LOCK_WAITERS.inc();
        Ok(Waiter {
            waits: self.clone(),
            id,
            key: key.to_vec(),
            notify,
        })
    }

    /// Wakes every waiter on `keys` (their locks were removed or changed hands).
    pub fn wake<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let s = self.inner.lock();
        if s.waiters.is_empty() {
            return;
        }
        for key in keys {
            if let Some(ws) = s.waiters.get(key) {
                for (_, n) in ws {
                    n.notify_one();
                }
            }
        }
    }

    /// Wakes every waiter on a key in `[start, end)` (`end` empty: unbounded).
    pub fn wake_range(&self, start: &[u8], end: &[u8]) {
        let s = self.inner.lock();
        for (key, ws) in &s.waiters {
            if key.as_slice() >= start && (end.is_empty() || key.as_slice() < end) {
                for (_, n) in ws {
                    n.notify_one();
                }
            }
        }
    }

    /// Number of registered waiters (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Waiter {
    /// Waits until woken or `timeout`; true when woken.
    pub async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.notify.notified())
            .await
            .is_ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut s = self.waits.inner.lock();
        if s.edges.remove(&self.id).is_some() {
            crate::metrics::LOCK_WAITERS.dec();
        }
        if let Some(ws) = s.waiters.get_mut(&self.key) {
            ws.retain(|(id, _)| *id != self.id);
            if ws.is_empty() {
                s.waiters.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_refused_and_edges_leave_on_drop() {
        let w = LockWaits::new();
        let a = w.register(b"k1", 1, 2).unwrap();
        let _b = w.register(b"k2", 2, 3).unwrap();
        // 3 -> 1 would close 1 -> 2 -> 3 -> 1.
        assert_eq!(w.register(b"k3", 3, 1).err(), Some(Deadlock { lock_ts: 1 }));
        drop(a);
        let _c = w.register(b"k3", 3, 1).unwrap();
        assert_eq!(w.len(), 2);
    }

    #[tokio::test]
    async fn wake_before_wait_is_not_lost() {
        let w = LockWaits::new();
        let waiter = w.register(b"k", 1, 2).unwrap();
        w.wake([&b"k"[..]]);
        assert!(waiter.wait(Duration::from_secs(5)).await);
        let other = w.register(b"other", 1, 2).unwrap();
        w.wake([&b"k"[..]]);
        assert!(!other.wait(Duration::from_millis(10)).await);
    }
}
