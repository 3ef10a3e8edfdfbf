//! The one place where internal errors become protocol errors.

use atoll_proto::{errorpb, kvrpcpb};
use storage::mvcc::{ConflictReason, TxnError};

/// Maps a raftstore error: region errors become `errorpb.Error` (the client refreshes its
/// region cache and retries); anything else is a storage error with a message.
pub fn raftstore_error(e: raftstore::Error) -> storage::Error {
    use raftstore::Error as E;
    let message = e.to_string();
    let mut err = errorpb::Error {
        message,
        ..Default::default()
    };
    match e {
        E::RegionNotFound(region_id) => err.region_not_found = Some(errorpb::RegionNotFound { region_id }),
        E::NotLeader { region_id, leader } => err.not_leader = Some(errorpb::NotLeader { region_id, leader }),
        E::EpochNotMatch { current_regions, .. } => {
            err.epoch_not_match = Some(errorpb::EpochNotMatch { current_regions })
        }
        E::KeyNotInRegion {
            key,
            region_id,
            start_key,
            end_key,
        } => {
            err.key_not_in_region = Some(errorpb::KeyNotInRegion {
                key,
                region_id,
                start_key,
                end_key,
            })
        }
        E::StaleCommand => err.stale_command = Some(errorpb::StaleCommand {}),
        E::ReadIndexNotReady { region_id, reason } => {
            err.read_index_not_ready = Some(errorpb::ReadIndexNotReady { reason, region_id })
        }
        E::RaftEntryTooLarge { region_id, size } => {
            err.raft_entry_too_large = Some(errorpb::RaftEntryTooLarge {
                region_id,
                entry_size: size,
            })
        }
        E::StoreNotMatch {
            request_store_id,
            actual_store_id,
        } => {
            err.store_not_match = Some(errorpb::StoreNotMatch {
                request_store_id,
                actual_store_id,
            })
        }
        E::ServerIsBusy(reason) => {
            err.server_is_busy = Some(errorpb::ServerIsBusy {
                reason,
                ..Default::default()
            })
        }
        E::DiskFull { store_id, reason } => {
            err.disk_full = Some(errorpb::DiskFull {
                store_id: vec![store_id],
                reason,
            })
        }
        E::ProposalInMergingMode(region_id) => {
            err.proposal_in_merging_mode = Some(errorpb::ProposalInMergingMode { region_id })
        }
        E::ShuttingDown => return storage::Error::ShuttingDown,
        E::Engine(m) | E::Codec(m) | E::Raft(m) => return storage::Error::Engine(m),
        E::InvalidConfChange { .. } | E::InvalidSplit { .. } | E::InvalidMerge { .. } => {
            return storage::Error::Engine(err.message)
        }
    }
    storage::Error::Region(Box::new(err))
}

/// Splits a storage error into a response's `region_error` and `error` fields.
pub fn split_storage_error(e: storage::Error) -> (Option<errorpb::Error>, String) {
    match e {
        storage::Error::Region(r) => (Some(*r), String::new()),
        storage::Error::ShuttingDown => (
            Some(errorpb::Error {
                message: "server is shutting down".into(),
                // NotLeader without a leader: clients drop their cached region and retry on
                // whichever store leads it next (ServerIsBusy would surface as an error).
                not_leader: Some(errorpb::NotLeader {
                    region_id: 0,
                    leader: None,
                }),
                ..Default::default()
            }),
            String::new(),
        ),
        other => (None, other.to_string()),
    }
}

/// The `KeyError` a client receives for a transaction error.
pub fn key_error(e: &TxnError) -> kvrpcpb::KeyError {
    let mut ke = kvrpcpb::KeyError::default();
    match e {
        TxnError::KeyIsLocked(info) => ke.locked = Some((**info).clone()),
        TxnError::WriteConflict {
            start_ts,
            conflict_start_ts,
            conflict_commit_ts,
            key,
            primary,
            reason,
        } => {
            ke.retryable = e.to_string();
            ke.conflict = Some(kvrpcpb::WriteConflict {
                start_ts: start_ts.into_inner(),
                conflict_ts: conflict_start_ts.into_inner(),
                conflict_commit_ts: conflict_commit_ts.into_inner(),
                key: key.clone(),
                primary: primary.clone(),
                reason: match reason {
                    ConflictReason::Optimistic => kvrpcpb::write_conflict::Reason::Optimistic,
                    ConflictReason::PessimisticRetry => kvrpcpb::write_conflict::Reason::PessimisticRetry,
                    ConflictReason::SelfRolledBack => kvrpcpb::write_conflict::Reason::SelfRolledBack,
                } as i32,
            });
        }
        TxnError::AlreadyExist { key } => ke.already_exist = Some(kvrpcpb::AlreadyExist { key: key.clone() }),
        TxnError::TxnLockNotFound { .. } => ke.retryable = e.to_string(),
        TxnError::TxnNotFound { start_ts, key } => {
            ke.txn_not_found = Some(kvrpcpb::TxnNotFound {
                start_ts: start_ts.into_inner(),
                primary_key: key.clone(),
            })
        }
        TxnError::CommitTsExpired {
            start_ts,
            commit_ts,
            key,
            min_commit_ts,
        } => {
            ke.commit_ts_expired = Some(kvrpcpb::CommitTsExpired {
                start_ts: start_ts.into_inner(),
                attempted_commit_ts: commit_ts.into_inner(),
                key: key.clone(),
                min_commit_ts: min_commit_ts.into_inner(),
            })
        }
        TxnError::Deadlock {
            lock_ts,
            lock_key,
            deadlock_key_hash,
            ..
        } => {
            ke.deadlock = Some(kvrpcpb::Deadlock {
                lock_ts: lock_ts.into_inner(),
                lock_key: lock_key.clone(),
                deadlock_key_hash: *deadlock_key_hash,
            })
        }
        TxnError::CommitTsTooLarge { commit_ts } => {
            ke.commit_ts_too_large = Some(kvrpcpb::CommitTsTooLarge {
                commit_ts: commit_ts.into_inner(),
            })
        }
        TxnError::PrimaryMismatch(info) => {
            ke.primary_mismatch = Some(kvrpcpb::PrimaryMismatch {
                lock_info: Some((**info).clone()),
            })
        }
        TxnError::Committed { .. }
        | TxnError::PessimisticLockNotFound { .. }
        | TxnError::PessimisticLockRolledBack { .. }
        | TxnError::Other { .. } => ke.abort = e.to_string(),
    }
    ke
}

/// A storage error as a transactional response carries it: a region error, or a key error
/// (errors that are not about a key, such as bad input, become `abort`).
pub fn split_txn_error(e: storage::Error) -> (Option<errorpb::Error>, Option<kvrpcpb::KeyError>) {
    match e {
        storage::Error::Txn(t) => (None, Some(key_error(&t))),
        other => match split_storage_error(other) {
            (Some(region), _) => (Some(region), None),
            (None, msg) => (
                None,
                Some(kvrpcpb::KeyError {
                    abort: msg,
                    ..Default::default()
                }),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_errors_map_to_errorpb() {
        let leader = atoll_proto::metapb::Peer {
            id: 3,
            store_id: 1,
            ..Default::default()
        };
        let e = raftstore_error(raftstore::Error::NotLeader {
            region_id: 2,
            leader: Some(leader),
        });
        let (region, msg) = split_storage_error(e);
        let region = region.expect("region error");
        assert!(msg.is_empty());
        assert_eq!(
            region.not_leader,
            Some(errorpb::NotLeader {
                region_id: 2,
                leader: Some(leader)
            })
        );
        let (region, _) = split_storage_error(raftstore_error(raftstore::Error::RegionNotFound(9)));
        assert_eq!(
            region.and_then(|r| r.region_not_found).map(|r| r.region_id),
            Some(9)
        );
        let (region, msg) = split_storage_error(raftstore_error(raftstore::Error::Engine("disk".into())));
        assert!(region.is_none());
        assert!(msg.contains("disk"));
        let (region, msg) = split_storage_error(storage::Error::KeyTooLarge {
            size: 9000,
            limit: 8192,
        });
        assert!(region.is_none());
        assert!(msg.contains("too large"));
    }

    #[test]
    fn txn_errors_map_to_key_errors() {
        use txn_types::TimeStamp;
        let e = storage::Error::Txn(Box::new(TxnError::WriteConflict {
            start_ts: TimeStamp::new(5),
            conflict_start_ts: TimeStamp::new(3),
            conflict_commit_ts: TimeStamp::new(7),
            key: b"k".to_vec(),
            primary: b"p".to_vec(),
            reason: ConflictReason::Optimistic,
        }));
        let (region, ke) = split_txn_error(e);
        assert!(region.is_none());
        let c = ke.expect("key error").conflict.expect("conflict");
        assert_eq!((c.start_ts, c.conflict_ts, c.conflict_commit_ts), (5, 3, 7));
        let (_, ke) = split_txn_error(storage::Error::InvalidInput("bad".into()));
        assert!(ke.expect("key error").abort.contains("bad"));
        let (region, ke) = split_txn_error(raftstore_error(raftstore::Error::RegionNotFound(4)));
        assert!(region.is_some() && ke.is_none());
        let ke = key_error(&TxnError::TxnNotFound {
            start_ts: TimeStamp::new(9),
            key: b"p".to_vec(),
        });
        assert_eq!(ke.txn_not_found.map(|t| t.start_ts), Some(9));
    }
}
