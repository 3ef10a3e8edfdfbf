//! Storage engine seam.
//!
//! Owns the traits every storage engine implements (point get, ordered iteration, atomic write
//! batches, consistent snapshots, column families), the engine-agnostic [`WriteBatch`], an
//! in-memory engine for unit tests ([`MemEngine`]) and a conformance suite ([`conformance`]) that
//! any engine must pass. It depends on nothing of Atoll; it must never name RocksDB.
//!
//! Invariants: a [`WriteBatch`] is applied atomically; a [`Snapshot`] never sees writes made
//! after it was taken; iteration is in bytewise key order within one column family.

mod mem;
mod write_batch;

pub mod conformance;

pub use mem::{MemEngine, MemSnapshot};
pub use write_batch::{Modify, WriteBatch};

/// Column family holding values (raw values, MVCC values of large transactional writes).
pub const CF_DEFAULT: &str = "default";
/// Column family holding Percolator locks.
pub const CF_LOCK: &str = "lock";
/// Column family holding Percolator commit records.
pub const CF_WRITE: &str = "write";
/// Column family holding per-region metadata (region state, apply state) and Raft state.
pub const CF_RAFT: &str = "raft";
/// Every column family an engine opened by Atoll has.
pub const ALL_CFS: &[&str] = &[CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];

/// Errors an engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("engine: unknown column family {0:?}")]
    UnknownCf(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("engine: io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Bounds of an iteration: lower inclusive, upper exclusive; `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IterBounds {
    pub lower: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
}

impl IterBounds {
    pub fn new(lower: Option<Vec<u8>>, upper: Option<Vec<u8>>) -> IterBounds {
        IterBounds { lower, upper }
    }

    pub fn all() -> IterBounds {
        IterBounds::default()
    }

    /// Whether `key` lies within the bounds.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|l| key >= l) && self.upper.as_deref().is_none_or(|u| key < u)
    }
}

/// A cursor over one column family of a snapshot, in bytewise key order.
///
/// After any positioning call, `valid()` tells whether the cursor rests on an entry;
/// `key()`/`value()` may only be called while it is valid.
pub trait EngineIterator {
    /// Positions at the first key `>= key` (clamped to the bounds).
    fn seek(&mut self, key: &[u8]) -> Result<bool>;
    /// Positions at the last key `<= key` (clamped to the bounds).
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool>;
    fn seek_to_first(&mut self) -> Result<bool>;
    fn seek_to_last(&mut self) -> Result<bool>;
    fn next(&mut self) -> Result<bool>;
    fn prev(&mut self) -> Result<bool>;
    fn valid(&self) -> Result<bool>;
    fn key(&self) -> &[u8];
    fn value(&self) -> &[u8];
}

/// Read access shared by engines and snapshots.
pub trait Peekable {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// Ordered iteration shared by engines and snapshots.
pub trait Iterable {
    type Iter<'a>: EngineIterator
    where
        Self: 'a;
    fn iterator_cf(&self, cf: &str, bounds: IterBounds) -> Result<Self::Iter<'_>>;

    /// Visits keys in `[start, end)` of `cf` in order until `f` returns `false`.
    fn scan_cf(
        &self,
        cf: &str,
        start: &[u8],
        end: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut it = self.iterator_cf(cf, IterBounds::new(Some(start.to_vec()), end.map(<[u8]>::to_vec)))?;
        let mut valid = it.seek_to_first()?;
        while valid {
            if !f(it.key(), it.value())? {
                break;
            }
            valid = it.next()?;
        }
        Ok(())
    }
}

/// A consistent, owned, point-in-time view of an engine.
pub trait Snapshot: Peekable + Iterable + Send + Sync + 'static {}

/// A storage engine with column families.
pub trait KvEngine: Peekable + Iterable + Clone + Send + Sync + 'static {
    type Snap: Snapshot + Clone;

    /// Takes a consistent snapshot.
    fn snapshot(&self) -> Self::Snap;

    /// Applies `batch` atomically; with `sync`, durable (fsynced) before returning.
    fn write(&self, batch: &WriteBatch, sync: bool) -> Result<()>;

    /// Makes everything written so far durable.
    fn sync(&self) -> Result<()>;

    /// Approximate bytes used on disk (or in memory) by `cf`.
    fn approximate_size_cf(&self, cf: &str) -> Result<u64>;

    /// Approximate bytes of `cf` in `[start, end)`, for region statistics.
    fn approximate_size_range(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<u64>;
}
