//! Storage: what a request does to keys, above the replication layer.
//!
//! Owns the kv seam ([`kv::Engine`]: an async region-checked snapshot plus an async write of
//! [`engine_traits::Modify`]s), key latches, and the raw API ([`raw::RawStorage`]: TTL, CAS,
//! scans, checksums) for API V1 and V2. Transactions (MVCC, Percolator commands, GC) come here
//! next.
//!
//! Must not depend on `raftstore` or `server`: it reaches Raft only through the kv seam, which
//! `server::raftkv` implements.
//!
//! Invariants: every key a request reads or writes is checked against the region it was
//! addressed to; an expired raw value is invisible to every read; raw writes to one key are
//! serialized by latches, so compare-and-swap is atomic per key.

mod errors;
pub mod kv;
mod latches;
pub mod metrics;
pub mod raw;

pub use errors::{Error, Result};
pub use latches::Latches;
