//! Region and store fixtures for the scheduling tests.

use std::collections::{BTreeMap, HashMap};

use atoll_proto::{metapb, pdpb};

use crate::region_info::RegionInfo;
use crate::store_info::StoreStateName;

pub const V: metapb::PeerRole = metapb::PeerRole::Voter;
pub const L: metapb::PeerRole = metapb::PeerRole::Learner;

pub fn peer(id: u64, store_id: u64, role: metapb::PeerRole) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        role: role as i32,
        ..Default::default()
    }
}

/// Region `id` with `peers` (peer id, store id, role), the leader on `leader_store`, epoch
/// `(conf_ver, version)`.
pub fn region(
    id: u64,
    peers: &[(u64, u64, metapb::PeerRole)],
    leader_store: u64,
    epoch: (u64, u64),
) -> RegionInfo {
    let peers: Vec<metapb::Peer> = peers.iter().map(|(p, s, r)| peer(*p, *s, *r)).collect();
    let leader = peers.iter().find(|p| p.store_id == leader_store).copied();
    RegionInfo {
        meta: metapb::Region {
            id,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: epoch.0,
                version: epoch.1,
            }),
            peers,
            ..Default::default()
        },
        leader,
        approximate_size: 1,
        ..Default::default()
    }
}

/// `region` with `peer_id` pending.
pub fn with_pending(mut r: RegionInfo, peer_id: u64) -> RegionInfo {
    let p = r.meta.peers.iter().find(|p| p.id == peer_id).copied();
    r.pending_peers.extend(p);
    r
}

/// `region` with `peer_id` reported down.
pub fn with_down(mut r: RegionInfo, peer_id: u64) -> RegionInfo {
    let p = r.meta.peers.iter().find(|p| p.id == peer_id).copied();
    r.down_peers.push(pdpb::PeerStats {
        peer: p,
        down_seconds: 3600,
    });
    r
}

pub fn states(list: &[(u64, StoreStateName)]) -> BTreeMap<u64, StoreStateName> {
    list.iter().copied().collect()
}

pub fn counts(list: &[(u64, usize)]) -> HashMap<u64, usize> {
    list.iter().copied().collect()
}
