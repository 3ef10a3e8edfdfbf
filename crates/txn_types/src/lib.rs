//! Key and value encodings shared by every Atoll crate. No I/O, no dependencies on engines.
//!
//! - [`memcomparable`]: TiKV's order-preserving byte-string encoding (region boundaries, API V2
//!   keys, MVCC keys).
//! - [`raw_value`]: how a raw value is stored (value bytes, optional expiry, meta flags).
//! - [`TimeStamp`]: `physical_ms << 18 | logical`.
//! - [`keys`]: the data/local key prefixes of the KV engine.
//!
//! Invariants: every encoding here round-trips, and encoded keys compare in the same order as
//! the keys they encode.

pub mod keys;
pub mod memcomparable;
pub mod raw_value;
mod timestamp;

pub use timestamp::TimeStamp;

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
}
