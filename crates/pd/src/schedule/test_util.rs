//! Region and store fixtures for the scheduling tests.

use atoll_proto::{metapb, pdpb};

use super::operator::{OpStep, Operator};
use super::view::{ScheduleView, StoreView};
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

/// `region` covering `[start, end)`.
pub fn ranged(mut r: RegionInfo, start: &[u8], end: &[u8]) -> RegionInfo {
    r.meta.start_key = start.to_vec();
    r.meta.end_key = end.to_vec();
    r
}

/// Regions `first_id..` with voters on `stores` (peer ids `10 × region id + i`), led by
/// `leaders[i]`, covering consecutive key ranges `r{id}`.
pub fn regions_on(first_id: u64, stores: &[u64], leaders: &[u64]) -> Vec<RegionInfo> {
    leaders
        .iter()
        .enumerate()
        .map(|(i, leader)| {
            let id = first_id + i as u64;
            let peers: Vec<(u64, u64, metapb::PeerRole)> = stores
                .iter()
                .enumerate()
                .map(|(j, s)| (id * 10 + j as u64, *s, V))
                .collect();
            let start = format!("r{id:04}");
            let end = format!("r{:04}", id + 1);
            ranged(
                region(id, &peers, *leader, (3, 1)),
                start.as_bytes(),
                end.as_bytes(),
            )
        })
        .collect()
}

/// A view over `stores` (all unlimited, without labels) and `regions`, counts filled in.
pub fn view(stores: &[(u64, StoreStateName)], regions: Vec<RegionInfo>) -> ScheduleView {
    let mut v = ScheduleView {
        stores: stores
            .iter()
            .map(|(id, st)| (*id, StoreView::new(*id, *st)))
            .collect(),
        regions,
        ..Default::default()
    };
    v.count_regions();
    v
}

/// Up stores `1..=n`.
pub fn up(n: u64) -> Vec<(u64, StoreStateName)> {
    (1..=n).map(|id| (id, StoreStateName::Up)).collect()
}

/// Labels every store of `v` with its location (`zone` of `locs[i]` for store `i + 1`).
pub fn with_locations(mut v: ScheduleView, locs: &[&[&str]]) -> ScheduleView {
    for (i, loc) in locs.iter().enumerate() {
        if let Some(s) = v.stores.get_mut(&(i as u64 + 1)) {
            s.location = loc.iter().map(|x| x.to_string()).collect();
        }
    }
    v
}

/// Per store: (region count, leader count).
pub fn counts_of(v: &ScheduleView) -> Vec<(u64, usize, usize)> {
    v.stores
        .values()
        .map(|s| (s.id, s.region_count, s.leader_count))
        .collect()
}

/// Plays `ops` to completion on the view's regions (as the nodes would), then recounts and
/// forgets the influence: the next round sees the result.
pub fn apply_ops(v: &mut ScheduleView, ops: &[Operator]) {
    for op in ops {
        let Some(r) = v.regions.iter_mut().find(|r| r.id() == op.region_id()) else {
            continue;
        };
        for step in op.steps() {
            match *step {
                OpStep::AddLearner { store_id, peer_id } => {
                    r.meta.peers.push(peer(peer_id, store_id, L));
                }
                OpStep::PromoteLearner { peer_id, .. } => {
                    if let Some(p) = r.meta.peers.iter_mut().find(|p| p.id == peer_id) {
                        p.role = V as i32;
                    }
                }
                OpStep::RemovePeer { store_id } => r.meta.peers.retain(|p| p.store_id != store_id),
                OpStep::TransferLeader { to_store, .. } => {
                    r.leader = r.peer_on_store(to_store).copied();
                }
                OpStep::SplitRegion { .. } | OpStep::MergeRegion { .. } => {}
            }
            if step.is_conf_change() {
                if let Some(e) = r.meta.region_epoch.as_mut() {
                    e.conf_ver += 1;
                }
            }
        }
    }
    for s in v.stores.values_mut() {
        s.influence = Default::default();
    }
    v.busy.clear();
    v.count_regions();
}
