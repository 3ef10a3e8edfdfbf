//! The cluster-wide id allocator (store, region and peer ids share one space).
//!
//! Invariant: an id is handed out at most once, across restarts. The allocator persists a
//! high-water mark `end` before handing out any id `<= end`; on restart it continues above the
//! persisted mark, skipping whatever was reserved but not used.

use parking_lot::Mutex;

use crate::error::Result;
use crate::storage::MetaStorage;

/// How many ids are reserved per persisted step.
const ALLOC_STEP: u64 = 1000;

struct State {
    /// The last id handed out.
    base: u64,
    /// The persisted high-water mark: every id `<= end` may have been handed out.
    end: u64,
}

/// Monotonic, persisted id allocator. Ids start at 1.
pub struct IdAllocator {
    storage: MetaStorage,
    state: Mutex<State>,
}

impl IdAllocator {
    /// Loads the high-water mark; the next id is above it.
    pub fn new(storage: MetaStorage) -> Result<IdAllocator> {
        let end = storage.load_alloc_id()?;
        Ok(IdAllocator {
            storage,
            state: Mutex::new(State { base: end, end }),
        })
    }

    /// Allocates one id.
    pub fn alloc(&self) -> Result<u64> {
        let mut st = self.state.lock();
        if st.base == st.end {
            let new_end = st.end + ALLOC_STEP;
            self.storage.save_alloc_id(new_end)?;
            st.end = new_end;
        }
        st.base += 1;
        Ok(st.base)
    }

    /// Allocates `n` ids.
    pub fn alloc_n(&self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.alloc()).collect()
    }

    /// The last id handed out (0 if none).
    pub fn current(&self) -> u64 {
        self.state.lock().base
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;

    use super::*;

    #[test]
    fn monotonic_and_never_reissued_after_restart() {
        let engine = MemEngine::new();
        let a = IdAllocator::new(MetaStorage::new(engine.clone())).unwrap();
        let ids = a.alloc_n(5).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        drop(a);

        let b = IdAllocator::new(MetaStorage::new(engine.clone())).unwrap();
        let next = b.alloc().unwrap();
        assert!(next > 5, "reissued id {next}");
        let mut last = next;
        for _ in 0..2500 {
            let id = b.alloc().unwrap();
            assert!(id > last);
            last = id;
        }
        drop(b);

        let c = IdAllocator::new(MetaStorage::new(engine)).unwrap();
        assert!(c.alloc().unwrap() > last);
    }
}
