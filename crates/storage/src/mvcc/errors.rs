//! Key-level transaction errors: what a transactional command reports for one key. They go
//! back to the client as `kvrpcpb::KeyError` (mapped in `server::errors`).

use atoll_proto::kvrpcpb;
use txn_types::TimeStamp;

/// Why a write conflict was reported (kvrpcpb `WriteConflict.Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    Optimistic,
    PessimisticRetry,
    SelfRolledBack,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TxnError {
    /// The key is locked by another transaction that may still commit.
    #[error("key is locked (backoff or cleanup) {0:?}")]
    KeyIsLocked(Box<kvrpcpb::LockInfo>),
    #[error(
        "write conflict on key {key:?}: txn {start_ts} conflicts with txn {conflict_start_ts} committed at {conflict_commit_ts}"
    )]
    WriteConflict {
        start_ts: TimeStamp,
        conflict_start_ts: TimeStamp,
        conflict_commit_ts: TimeStamp,
        key: Vec<u8>,
        primary: Vec<u8>,
        reason: ConflictReason,
    },
    #[error("key {key:?} already exists")]
    AlreadyExist { key: Vec<u8> },
    /// Commit found neither the transaction's lock nor its commit record.
    #[error("txn {start_ts} lock not found on key {key:?} at commit ts {commit_ts}")]
    TxnLockNotFound {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
    },
    /// Check-txn-status found no lock and no record of the transaction.
    #[error("txn {start_ts} not found (primary {key:?})")]
    TxnNotFound { start_ts: TimeStamp, key: Vec<u8> },
    #[error("txn {start_ts} cannot commit at {commit_ts} on key {key:?}: min commit ts is {min_commit_ts}")]
    CommitTsExpired {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
        min_commit_ts: TimeStamp,
    },
    /// The transaction was already committed (e.g. a rollback arrived late).
    #[error("txn {start_ts} already committed at {commit_ts} on key {key:?}")]
    Committed {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
    },
    #[error("pessimistic lock of txn {start_ts} not found on key {key:?}")]
    PessimisticLockNotFound { start_ts: TimeStamp, key: Vec<u8> },
    #[error("pessimistic lock of txn {start_ts} on key {key:?} was rolled back")]
    PessimisticLockRolledBack { start_ts: TimeStamp, key: Vec<u8> },
    #[error("deadlock: txn {start_ts} waits for txn {lock_ts} on key {lock_key:?}, which waits for it")]
    Deadlock {
        start_ts: TimeStamp,
        lock_ts: TimeStamp,
        lock_key: Vec<u8>,
        deadlock_key_hash: u64,
    },
    /// The lock's primary is not the one the request names.
    #[error("primary mismatch: {0:?}")]
    PrimaryMismatch(Box<kvrpcpb::LockInfo>),
    #[error("commit ts {commit_ts} is too large")]
    CommitTsTooLarge { commit_ts: TimeStamp },
    #[error("txn {start_ts}: {msg}")]
    Other { start_ts: TimeStamp, msg: String },
}
