//! Merging two adjacent regions: the geometry and the persisted state of a merge.
//!
//! A merge moves the *source* region's range into the adjacent *target* region, in three
//! Raft commands (as TiKV's):
//! - **PrepareMerge** (source log): freezes the source. Its epoch gets `version + 1` and
//!   `conf_ver + 1`, so no command proposed before it applies after it; its state becomes
//!   `Merging` with a [`MergeState`] (the target as planned, the prepare entry's index
//!   `commit`, and `min_index`, the lowest index every source peer had when it was proposed).
//! - **CommitMerge** (target log): proposed on a store holding the target's leader once the
//!   local source peer applied the prepare. It carries the source region and the source's log
//!   entries `min_index + 1 ..= commit`, so a target peer whose local source lags catches it up
//!   from them. Applied only at the target epoch the prepare recorded; then the target takes
//!   the union range with `version = max(source, target) + 1`, and the source becomes a
//!   tombstone in the same KV batch (its data stays: it is the target's now).
//! - **RollbackMerge** (source log): the source's leader proposes it when its store's target
//!   peer applied an epoch change the prepare did not plan for. Such a target can never apply
//!   the commit (it checks the planned epoch), so rolling back is safe; the source serves again
//!   with `version + 1`.

use atoll_proto::metapb;
use prost::Message as _;

use crate::{Error, Result};

/// A source region's merge in progress (persisted with its `Merging` state).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeState {
    /// Every source peer had the log up to here when the prepare was proposed.
    pub min_index: u64,
    /// The index of the PrepareMerge entry.
    pub commit: u64,
    /// The target, as the prepare planned it (its epoch must still be this at the commit).
    pub target: metapb::Region,
}

impl MergeState {
    /// `min_index:u64 commit:u64 target_len:u32 target` (big-endian; the target as protobuf).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.min_index.to_be_bytes());
        out.extend_from_slice(&self.commit.to_be_bytes());
        let target = self.target.encode_to_vec();
        out.extend_from_slice(&(target.len() as u32).to_be_bytes());
        out.extend_from_slice(&target);
    }

    /// Decodes a state written by [`MergeState::encode`]; returns it and the bytes after it.
    pub fn decode(b: &[u8]) -> Result<(MergeState, &[u8])> {
        let short = || Error::Codec("truncated merge state".into());
        let u64_at = |at: usize| -> Result<u64> {
            let bytes = b.get(at..at + 8).ok_or_else(short)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(bytes);
            Ok(u64::from_be_bytes(a))
        };
        let min_index = u64_at(0)?;
        let commit = u64_at(8)?;
        let len_bytes = b.get(16..20).ok_or_else(short)?;
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let target_bytes = b.get(20..20 + len).ok_or_else(short)?;
        let target = metapb::Region::decode(target_bytes)?;
        Ok((
            MergeState {
                min_index,
                commit,
                target,
            },
            &b[20 + len..],
        ))
    }
}

fn invalid(region_id: u64, message: String) -> Error {
    Error::InvalidMerge { region_id, message }
}

fn role(p: &metapb::Peer) -> i32 {
    p.role
}

fn is_joint_role(p: &metapb::Peer) -> bool {
    p.role == metapb::PeerRole::IncomingVoter as i32 || p.role == metapb::PeerRole::DemotingVoter as i32
}

/// Checks that `source` may merge into `target`: adjacent, and with peers on exactly the same
/// stores in the same roles (PD moves them there first), neither in a joint configuration.
pub fn check_merge(source: &metapb::Region, target: &metapb::Region) -> Result<()> {
    if source.id == target.id {
        return Err(invalid(source.id, "a region cannot merge into itself".into()));
    }
    let adjacent = (!source.end_key.is_empty() && source.end_key == target.start_key)
        || (!target.end_key.is_empty() && target.end_key == source.start_key);
    if !adjacent {
        return Err(invalid(
            source.id,
            format!("region {} is not adjacent to region {}", source.id, target.id),
        ));
    }
    if source.peers.iter().chain(&target.peers).any(is_joint_role) {
        return Err(invalid(source.id, "a region is in a joint configuration".into()));
    }
    let mut a: Vec<(u64, i32)> = source.peers.iter().map(|p| (p.store_id, role(p))).collect();
    let mut b: Vec<(u64, i32)> = target.peers.iter().map(|p| (p.store_id, role(p))).collect();
    a.sort_unstable();
    b.sort_unstable();
    if a != b {
        return Err(invalid(
            source.id,
            format!(
                "peers of region {} (stores {:?}) and region {} (stores {:?}) differ",
                source.id, a, target.id, b
            ),
        ));
    }
    Ok(())
}

/// The source region once it applied a PrepareMerge: frozen at a new epoch.
pub fn prepared_region(source: &metapb::Region) -> metapb::Region {
    let mut r = source.clone();
    let mut epoch = r.region_epoch.unwrap_or_default();
    epoch.version += 1;
    epoch.conf_ver += 1;
    r.region_epoch = Some(epoch);
    r
}

/// The source region after a RollbackMerge: serving again at a new version.
pub fn rolled_back_region(source: &metapb::Region) -> metapb::Region {
    let mut r = source.clone();
    let mut epoch = r.region_epoch.unwrap_or_default();
    epoch.version += 1;
    r.region_epoch = Some(epoch);
    r
}

/// The target region after absorbing `source`: the union of both ranges, the target's peers,
/// `version = max(source, target) + 1`.
pub fn merged_region(source: &metapb::Region, target: &metapb::Region) -> Result<metapb::Region> {
    check_merge(source, target)?;
    let mut r = target.clone();
    if source.end_key == target.start_key && !source.end_key.is_empty() {
        r.start_key = source.start_key.clone();
    } else {
        r.end_key = source.end_key.clone();
    }
    let s = source.region_epoch.unwrap_or_default();
    let mut epoch = target.region_epoch.unwrap_or_default();
    epoch.version = epoch.version.max(s.version) + 1;
    r.region_epoch = Some(epoch);
    Ok(r)
}

/// Whether `current` moved past `planned` (a split, merge or membership change the plan did
/// not include); a lagging peer's older epoch does not count.
pub fn epoch_moved(current: &metapb::RegionEpoch, planned: &metapb::RegionEpoch) -> bool {
    current.version > planned.version || current.conf_ver > planned.conf_ver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64, stores: &[u64]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 3, version }),
            peers: stores
                .iter()
                .map(|s| metapb::Peer {
                    id: id * 10 + s,
                    store_id: *s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn merges_left_and_right_neighbours() {
        let left = region(2, b"", b"m", 4, &[1, 2, 3]);
        let right = region(3, b"m", b"", 7, &[3, 2, 1]);
        let into_right = merged_region(&left, &right).unwrap();
        assert_eq!(
            (into_right.start_key.as_slice(), into_right.end_key.as_slice()),
            (&b""[..], &b""[..])
        );
        assert_eq!(into_right.id, 3);
        assert_eq!(into_right.region_epoch.unwrap().version, 8);
        assert_eq!(into_right.peers, right.peers);
        let into_left = merged_region(&right, &left).unwrap();
        assert_eq!(into_left.id, 2);
        assert!(into_left.start_key.is_empty() && into_left.end_key.is_empty());
        assert_eq!(into_left.region_epoch.unwrap().version, 8);
    }

    #[test]
    fn refuses_gaps_and_misaligned_peers() {
        let a = region(2, b"a", b"c", 1, &[1, 2, 3]);
        let gap = region(3, b"d", b"f", 1, &[1, 2, 3]);
        assert!(check_merge(&a, &gap).is_err());
        let other_stores = region(4, b"c", b"f", 1, &[1, 2, 4]);
        assert!(check_merge(&a, &other_stores).is_err());
        let mut learner = region(5, b"c", b"f", 1, &[1, 2, 3]);
        learner.peers[2].role = metapb::PeerRole::Learner as i32;
        assert!(check_merge(&a, &learner).is_err());
        assert!(check_merge(&a, &a).is_err());
        let mut joint = region(6, b"c", b"f", 1, &[1, 2, 3]);
        joint.peers[0].role = metapb::PeerRole::IncomingVoter as i32;
        assert!(check_merge(&a, &joint).is_err());
        assert!(check_merge(&a, &region(7, b"c", b"f", 1, &[3, 1, 2])).is_ok());
    }

    #[test]
    fn prepare_and_rollback_bump_the_epoch() {
        let a = region(2, b"a", b"c", 5, &[1]);
        let p = prepared_region(&a);
        assert_eq!(
            p.region_epoch.unwrap(),
            metapb::RegionEpoch {
                conf_ver: 4,
                version: 6
            }
        );
        let r = rolled_back_region(&p);
        assert_eq!(
            r.region_epoch.unwrap(),
            metapb::RegionEpoch {
                conf_ver: 4,
                version: 7
            }
        );
        let planned = metapb::RegionEpoch {
            conf_ver: 3,
            version: 5,
        };
        assert!(!epoch_moved(&planned, &planned));
        assert!(!epoch_moved(
            &metapb::RegionEpoch {
                conf_ver: 2,
                version: 5
            },
            &planned
        ));
        assert!(epoch_moved(
            &metapb::RegionEpoch {
                conf_ver: 3,
                version: 6
            },
            &planned
        ));
        assert!(epoch_moved(
            &metapb::RegionEpoch {
                conf_ver: 4,
                version: 5
            },
            &planned
        ));
    }

    #[test]
    fn merge_state_round_trips() {
        let s = MergeState {
            min_index: 7,
            commit: 12,
            target: region(3, b"m", b"", 2, &[1, 2]),
        };
        let mut b = Vec::new();
        s.encode(&mut b);
        b.extend_from_slice(b"rest");
        let (back, rest) = MergeState::decode(&b).unwrap();
        assert_eq!(back, s);
        assert_eq!(rest, b"rest");
        for cut in 0..b.len() - 4 {
            assert!(MergeState::decode(&b[..cut]).is_err(), "prefix {cut} accepted");
        }
    }
}
