//! The one place where internal errors become protocol errors.

use atoll_proto::errorpb;

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
        E::ShuttingDown => return storage::Error::ShuttingDown,
        E::Engine(m) | E::Codec(m) | E::Raft(m) => return storage::Error::Engine(m),
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
}
