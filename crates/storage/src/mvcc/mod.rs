//! MVCC over the `lock`, `write` and `default` column families: the reader, snapshot reads
//! (point get, scans) with lock checks, and `MvccTxn`, the write set of one command.

mod errors;
mod read;
mod reader;
mod txn;

pub use errors::{ConflictReason, TxnError};
pub use read::{check_lock_for_read, lock_info, point_get, scan, LockRead, ReadOptions, ScanItem};
pub use reader::{MvccReader, TxnCommitRecord};
pub use txn::MvccTxn;
