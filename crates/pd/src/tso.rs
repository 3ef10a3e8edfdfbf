//! The timestamp oracle.
//!
//! A timestamp is `physical` wall-clock milliseconds and an 18-bit `logical` counter
//! (`physical << 18 | logical` as one u64). A request for `count` timestamps gets a contiguous
//! block of logicals and is answered with the LAST of them, like PD.
//!
//! Invariants:
//! * timestamps handed out strictly increase, whatever the wall clock does;
//! * every handed-out physical is below a persisted window end, and a restarted allocator starts
//!   above the persisted window, so timestamps never go back across restarts.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::storage::MetaStorage;

/// Number of logical bits in a timestamp.
pub const LOGICAL_BITS: u32 = 18;
/// Logicals must stay below this.
pub const MAX_LOGICAL: i64 = 1 << LOGICAL_BITS;
/// How far ahead of the current physical the persisted window reaches.
const WINDOW_MS: i64 = 3000;
/// The window is extended when the physical comes this close to its end.
const WINDOW_REFRESH_MS: i64 = 1000;

/// A hybrid timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub physical: i64,
    pub logical: i64,
}

impl Timestamp {
    /// The composed `physical << 18 | logical` form.
    pub fn compose(self) -> u64 {
        ((self.physical as u64) << LOGICAL_BITS) | self.logical as u64
    }

    /// Splits a composed timestamp.
    pub fn from_composed(ts: u64) -> Timestamp {
        Timestamp {
            physical: (ts >> LOGICAL_BITS) as i64,
            logical: (ts & (MAX_LOGICAL as u64 - 1)) as i64,
        }
    }
}

/// A source of wall-clock milliseconds (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Wall-clock unix milliseconds.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct State {
    physical: i64,
    logical: i64,
    /// Persisted: no handed-out physical reaches it.
    window_end: i64,
}

/// The timestamp allocator of this PD.
pub struct TsoAllocator {
    storage: MetaStorage,
    clock: Clock,
    state: Mutex<State>,
}

impl TsoAllocator {
    /// Starts above the persisted window, using the wall clock.
    pub fn new(storage: MetaStorage) -> Result<TsoAllocator> {
        Self::with_clock(storage, Arc::new(wall_clock_ms))
    }

    /// Starts above the persisted window, using `clock`.
    pub fn with_clock(storage: MetaStorage, clock: Clock) -> Result<TsoAllocator> {
        let saved = storage.load_tso_window()? as i64;
        let now = clock();
        let physical = now.max(saved + 1);
        let window_end = physical + WINDOW_MS;
        storage.save_tso_window(window_end as u64)?;
        tracing::info!(
            saved_window = saved,
            physical,
            window_end,
            "tso allocator started"
        );
        Ok(TsoAllocator {
            storage,
            clock,
            state: Mutex::new(State {
                physical,
                logical: 0,
                window_end,
            }),
        })
    }

    /// Allocates `count` contiguous timestamps and returns the last one.
    pub fn generate(&self, count: u32) -> Result<Timestamp> {
        if count == 0 {
            return Err(Error::Tso("tso count should be positive".into()));
        }
        let count = i64::from(count);
        if count >= MAX_LOGICAL {
            return Err(Error::Tso(format!(
                "tso count {count} exceeds the logical space {MAX_LOGICAL}"
            )));
        }
        let now = (self.clock)();
        let mut st = self.state.lock();
        if now > st.physical {
            st.physical = now;
            st.logical = 0;
        }
        if st.logical + count >= MAX_LOGICAL {
            // Logicals of this millisecond are exhausted: move on to the next one, even if the
            // wall clock has not got there yet.
            st.physical += 1;
            st.logical = 0;
        }
        st.logical += count;
        let ts = Timestamp {
            physical: st.physical,
            logical: st.logical,
        };
        if st.physical >= st.window_end - WINDOW_REFRESH_MS {
            let new_end = st.physical.max(now) + WINDOW_MS;
            match self.storage.save_tso_window(new_end as u64) {
                Ok(()) => st.window_end = new_end,
                Err(e) if st.physical < st.window_end => {
                    tracing::warn!(error = %e, "failed to extend the tso window; still inside the old one");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ts)
    }

    /// The last timestamp handed out (or the starting point).
    pub fn current(&self) -> Timestamp {
        let st = self.state.lock();
        Timestamp {
            physical: st.physical,
            logical: st.logical,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use engine_traits::MemEngine;

    use super::*;

    fn fixed_clock(ms: i64) -> (Clock, Arc<AtomicI64>) {
        let t = Arc::new(AtomicI64::new(ms));
        let t2 = t.clone();
        (Arc::new(move || t2.load(Ordering::SeqCst)), t)
    }

    #[test]
    fn monotonic_and_blocks_contiguous() {
        let tso = TsoAllocator::new(MetaStorage::new(MemEngine::new())).unwrap();
        let mut last = tso.generate(1).unwrap();
        for i in 0..20_000u32 {
            let count = i % 7 + 1;
            let ts = tso.generate(count).unwrap();
            // The block [ts.logical - count + 1, ts.logical] lies above the previous block.
            let first = Timestamp {
                physical: ts.physical,
                logical: ts.logical - i64::from(count) + 1,
            };
            assert!(first > last, "{first:?} <= {last:?}");
            assert!(first.logical >= 0 && ts.logical < MAX_LOGICAL);
            last = ts;
        }
    }

    #[test]
    fn logical_overflow_advances_physical() {
        let (clock, _t) = fixed_clock(1_000_000);
        let tso = TsoAllocator::with_clock(MetaStorage::new(MemEngine::new()), clock).unwrap();
        let first = tso.generate(1).unwrap();
        assert_eq!(
            first,
            Timestamp {
                physical: 1_000_000,
                logical: 1
            }
        );
        let big = tso.generate((MAX_LOGICAL - 10) as u32).unwrap();
        assert_eq!(big.physical, 1_000_000);
        // Only 9 logicals are left in this millisecond.
        let next = tso.generate(100).unwrap();
        assert_eq!(
            next,
            Timestamp {
                physical: 1_000_001,
                logical: 100
            }
        );
        assert!(tso.generate(0).is_err());
        assert!(tso.generate(MAX_LOGICAL as u32).is_err());
    }

    #[test]
    fn clock_going_back_does_not_move_tso_back() {
        let (clock, t) = fixed_clock(5_000_000);
        let tso = TsoAllocator::with_clock(MetaStorage::new(MemEngine::new()), clock).unwrap();
        let a = tso.generate(3).unwrap();
        t.store(4_000_000, Ordering::SeqCst);
        let b = tso.generate(3).unwrap();
        assert!(b > a);
    }

    #[test]
    fn restart_starts_above_persisted_window() {
        let engine = MemEngine::new();
        let (clock, t) = fixed_clock(10_000_000);
        let tso = TsoAllocator::with_clock(MetaStorage::new(engine.clone()), clock.clone()).unwrap();
        let mut last = tso.generate(1).unwrap();
        // Run the physical far ahead of the (frozen) wall clock by exhausting logicals.
        for _ in 0..5000 {
            last = tso.generate((MAX_LOGICAL / 2) as u32).unwrap();
        }
        assert!(last.physical > 10_002_000);
        drop(tso);

        // Restart with the wall clock behind everything handed out.
        t.store(9_000_000, Ordering::SeqCst);
        let tso = TsoAllocator::with_clock(MetaStorage::new(engine), clock).unwrap();
        let after = tso.generate(1).unwrap();
        assert!(after.physical > last.physical, "{after:?} <= {last:?}");
    }

    #[test]
    fn compose_round_trip() {
        let ts = Timestamp {
            physical: 1_700_000_000_000,
            logical: 12345,
        };
        assert_eq!(Timestamp::from_composed(ts.compose()), ts);
    }
}
