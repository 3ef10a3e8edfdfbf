//! Key latches: commands touching the same key run one at a time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A fixed set of slots; a key maps to one slot by hash. Slots are always taken in ascending
/// order, so two commands can never wait on each other.
#[derive(Clone)]
pub struct Latches {
    slots: Arc<Vec<Arc<Mutex<()>>>>,
}

/// Held slots; released on drop.
pub struct Guard {
    _held: Vec<OwnedMutexGuard<()>>,
}

impl Latches {
    pub fn new(size: usize) -> Latches {
        let size = size.max(1).next_power_of_two();
        Latches {
            slots: Arc::new((0..size).map(|_| Arc::new(Mutex::new(()))).collect()),
        }
    }

    fn slot(&self, key: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) & (self.slots.len() - 1)
    }

    /// Waits for and takes the slots of every key.
    pub async fn acquire<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Guard {
        let mut slots: Vec<usize> = keys.into_iter().map(|k| self.slot(k)).collect();
        slots.sort_unstable();
        slots.dedup();
        let start = std::time::Instant::now();
        let mut held = Vec::with_capacity(slots.len());
        for s in slots {
            held.push(self.slots[s].clone().lock_owned().await);
        }
        crate::metrics::LATCH_WAIT.observe(start.elapsed().as_secs_f64());
        Guard { _held: held }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::Latches;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_key_serializes() {
        let latches = Latches::new(64);
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for i in 0..32u8 {
            let (latches, inside) = (latches.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let other = [i];
                let _g = latches.acquire([&b"k"[..], &other[..]]).await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    }
}
