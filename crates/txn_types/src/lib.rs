//! Key and value encodings shared by every Atoll crate. No I/O, no dependencies on engines.
//!
//! - [`memcomparable`]: TiKV's order-preserving byte-string encoding (region boundaries, API V2
//!   keys, MVCC keys).
//! - [`raw_value`]: how a raw value is stored (value bytes, optional expiry, meta flags).
//! - [`TimeStamp`]: `physical_ms << 18 | logical`.
//! - [`keys`]: the data/local key prefixes of the KV engine.
//! - [`mvcc_key`], [`Lock`], [`Write`]: the MVCC layout of the `lock`/`write`/`default` CFs.
//!
//! Invariants: every encoding here round-trips, and encoded keys compare in the same order as
//! the keys they encode.

mod codec;
pub mod keys;
mod lock;
pub mod memcomparable;
pub mod mvcc_key;
pub mod raw_value;
mod timestamp;
mod write;

pub use lock::{Lock, LockType, SHORT_VALUE_MAX_LEN};
pub use timestamp::TimeStamp;
pub use write::{Write, WriteType};

/// A malformed encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("codec: input ended early")]
    Eof,
    #[error("codec: bad padding in memcomparable group")]
    BadPadding,
    #[error("codec: bad marker byte {0:#x}")]
    BadMarker(u8),
    #[error("codec: bad value meta {0:#x}")]
    BadMeta(u8),
    #[error("codec: varint longer than 64 bits")]
    VarintOverflow,
}
