//! Storage: what a request does to keys, above the replication layer.
//!
//! Owns the kv seam ([`kv::Engine`]: an async region-checked snapshot plus an async write of
//! [`engine_traits::Modify`]s), key latches, and the raw API ([`raw::RawStorage`]: TTL, CAS,
//! scans, checksums) for API V1 and V2, MVCC ([`mvcc`]) and Percolator transactions
//! ([`txn::TxnStorage`]: one method per transactional RPC, GC).
//!
//! Must not depend on `raftstore` or `server`: it reaches Raft only through the kv seam, which
//! `server::raftkv` implements.
//!
//! Invariants: every key a request reads or writes is checked against the region it was
//! addressed to; an expired raw value is invisible to every read; raw writes to one key are
//! serialized by latches, so compare-and-swap is atomic per key.

pub mod api_keys;
mod concurrency_manager;
mod errors;
pub mod kv;
mod latches;
pub mod metrics;
pub mod mvcc;
pub mod raw;
pub mod read_stats;
#[cfg(test)]
mod test_engine;
pub mod txn;

pub use concurrency_manager::{ConcurrencyManager, MemLockGuard};

pub use errors::{Error, Result};
pub use latches::Latches;
pub use read_stats::{ReadFlow, ReadStats};
