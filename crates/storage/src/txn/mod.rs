//! Percolator transactions: per-key actions ([`actions`]) that read through an
//! [`crate::mvcc::MvccReader`] and write into an [`crate::mvcc::MvccTxn`], and the commands
//! ([`TxnStorage`]) that run them under key latches and replicate the result through the kv seam.

pub mod actions;
mod commands;
pub mod lock_wait;

pub use commands::*;
