//! The RocksDB engine: the only crate that names RocksDB.
//!
//! Implements [`engine_traits::KvEngine`] over one RocksDB instance with the column families
//! the caller asks for. Snapshots are owned (they keep the database open) so they can cross
//! threads and outlive the call that took them.
//!
//! Invariants: a write batch is one RocksDB write batch (atomic); `sync` writes fsync the WAL
//! before returning.
// The one unsafe block (lifetime extension of a snapshot tied to an Arc'd DB) is explained at
// its use.
#![allow(unsafe_code)]

mod engine;

pub use engine::{RocksEngine, RocksIterator, RocksSnapshot, RocksTuning};
