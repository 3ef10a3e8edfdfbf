//! Building operators from a region and a wish ("add a peer on store 4", "move the peer on
//! store 1 to store 5", ...).
//!
//! Invariants of what is built: a peer is always added as a learner first and promoted after
//! (a new voter never counts toward the quorum before it has the data); the leader's peer is
//! never removed before leadership moved to another voter (a `TransferLeader` step comes first);
//! the last voter of a region is never removed.

use atoll_proto::{metapb, pdpb};

use super::operator::{OpKind, OpStep, Operator};
use crate::region_info::RegionInfo;

fn is_voter(p: &metapb::Peer) -> bool {
    p.role == metapb::PeerRole::Voter as i32
}

/// The store to hand `region`'s leadership to when the leader's peer on `exclude_store` must go:
/// a voter on another store that `is_up`, neither pending nor down; the lowest such store id.
pub fn leader_target(region: &RegionInfo, exclude_store: u64, is_up: &dyn Fn(u64) -> bool) -> Option<u64> {
    region
        .meta
        .peers
        .iter()
        .filter(|p| p.store_id != exclude_store && is_voter(p) && is_up(p.store_id))
        .filter(|p| !region.pending_peers.iter().any(|x| x.id == p.id))
        .filter(|p| {
            !region
                .down_peers
                .iter()
                .any(|d| d.peer.as_ref().is_some_and(|x| x.id == p.id))
        })
        .map(|p| p.store_id)
        .min()
}

fn is_leader_store(region: &RegionInfo, store_id: u64) -> bool {
    region.leader.is_some_and(|l| l.store_id == store_id)
}

/// Adds a voter on `store_id`: `[AddLearner, PromoteLearner]`.
pub fn add_peer(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    store_id: u64,
    peer_id: u64,
) -> Result<Operator, String> {
    if let Some(p) = region.peer_on_store(store_id) {
        return Err(format!(
            "region {} already has peer {} on store {store_id}",
            region.id(),
            p.id
        ));
    }
    Ok(Operator::new(
        desc,
        format!("add peer: store [{store_id}]"),
        region,
        kind,
        vec![
            OpStep::AddLearner { store_id, peer_id },
            OpStep::PromoteLearner { store_id, peer_id },
        ],
    ))
}

/// Promotes the learner on `store_id`: `[PromoteLearner]`.
pub fn promote_learner(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    store_id: u64,
) -> Result<Operator, String> {
    let Some(p) = region.peer_on_store(store_id) else {
        return Err(format!("region {} has no peer on store {store_id}", region.id()));
    };
    if p.role != metapb::PeerRole::Learner as i32 {
        return Err(format!("peer {} on store {store_id} is not a learner", p.id));
    }
    Ok(Operator::new(
        desc,
        format!("promote learner: store [{store_id}]"),
        region,
        kind,
        vec![OpStep::PromoteLearner {
            store_id,
            peer_id: p.id,
        }],
    ))
}

/// Removes the peer on `store_id`: `[RemovePeer]`, or `[TransferLeader, RemovePeer]` when it is
/// the leader's (to the store [`leader_target`] picks).
pub fn remove_peer(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    store_id: u64,
    is_up: &dyn Fn(u64) -> bool,
) -> Result<Operator, String> {
    let Some(p) = region.peer_on_store(store_id) else {
        return Err(format!("region {} has no peer on store {store_id}", region.id()));
    };
    let voters = region.meta.peers.iter().filter(|x| is_voter(x)).count();
    if is_voter(p) && voters <= 1 {
        return Err(format!(
            "peer {} on store {store_id} is the last voter of region {}",
            p.id,
            region.id()
        ));
    }
    let mut steps = Vec::with_capacity(2);
    if is_leader_store(region, store_id) {
        let Some(to_store) = leader_target(region, store_id, is_up) else {
            return Err(format!(
                "the peer on store {store_id} leads region {} and no other healthy voter can take over",
                region.id()
            ));
        };
        steps.push(OpStep::TransferLeader {
            from_store: store_id,
            to_store,
        });
    }
    steps.push(OpStep::RemovePeer { store_id });
    Ok(Operator::new(
        desc,
        format!("rm peer: store [{store_id}]"),
        region,
        kind,
        steps,
    ))
}

/// Moves the peer on `old_store` to `new_store`: `[AddLearner, PromoteLearner,
/// (TransferLeader to the new peer if the old one leads), RemovePeer]`.
pub fn replace_peer(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    old_store: u64,
    new_store: u64,
    new_peer_id: u64,
) -> Result<Operator, String> {
    if region.peer_on_store(old_store).is_none() {
        return Err(format!("region {} has no peer on store {old_store}", region.id()));
    }
    if let Some(p) = region.peer_on_store(new_store) {
        return Err(format!(
            "region {} already has peer {} on store {new_store}",
            region.id(),
            p.id
        ));
    }
    let mut steps = vec![
        OpStep::AddLearner {
            store_id: new_store,
            peer_id: new_peer_id,
        },
        OpStep::PromoteLearner {
            store_id: new_store,
            peer_id: new_peer_id,
        },
    ];
    if is_leader_store(region, old_store) {
        steps.push(OpStep::TransferLeader {
            from_store: old_store,
            to_store: new_store,
        });
    }
    steps.push(OpStep::RemovePeer { store_id: old_store });
    Ok(Operator::new(
        desc,
        format!("mv peer: store [{old_store}] to [{new_store}]"),
        region,
        kind,
        steps,
    ))
}

/// Moves leadership to `to_store`: `[TransferLeader]`.
pub fn transfer_leader(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    to_store: u64,
) -> Result<Operator, String> {
    let Some(leader) = region.leader else {
        return Err(format!("region {} has no known leader", region.id()));
    };
    if leader.store_id == to_store {
        return Err(format!(
            "the leader of region {} is already on store {to_store}",
            region.id()
        ));
    }
    match region.peer_on_store(to_store) {
        Some(p) if is_voter(p) => {}
        Some(p) => return Err(format!("peer {} on store {to_store} is not a voter", p.id)),
        None => return Err(format!("region {} has no peer on store {to_store}", region.id())),
    }
    Ok(Operator::new(
        desc,
        format!("transfer leader: store {} to {to_store}", leader.store_id),
        region,
        kind,
        vec![OpStep::TransferLeader {
            from_store: leader.store_id,
            to_store,
        }],
    ))
}

/// Splits `region` (`[SplitRegion]`): at `keys` (range keys strictly inside the region) with
/// policy `USEKEY`, or where the node finds the middle with `SCAN`/`APPROXIMATE` (no keys).
pub fn split_region(
    desc: &str,
    kind: OpKind,
    region: &RegionInfo,
    policy: pdpb::CheckPolicy,
    mut keys: Vec<Vec<u8>>,
) -> Result<Operator, String> {
    keys.sort();
    keys.dedup();
    if policy == pdpb::CheckPolicy::Usekey {
        if keys.is_empty() {
            return Err("no split key".into());
        }
        if let Some(k) = keys
            .iter()
            .find(|k| k.as_slice() <= region.start_key() || !region.contains(k))
        {
            return Err(format!(
                "split key {} is not inside region {}",
                crate::http::format::hex_upper(k),
                region.id()
            ));
        }
    } else {
        keys.clear();
    }
    let brief = format!(
        "split: region {} use policy {}",
        region.id(),
        policy.as_str_name()
    );
    Ok(Operator::new(
        desc,
        brief,
        region,
        kind,
        vec![OpStep::SplitRegion {
            start_key: region.start_key().to_vec(),
            end_key: region.end_key().to_vec(),
            policy: policy as i32,
            keys,
        }],
    ))
}

/// Merges `source` into the adjacent `target`: the source's operator first moves its peers to
/// the target's stores (`AddLearner` + `PromoteLearner` on each target store it lacks, then
/// `RemovePeer` of each store the target lacks; leadership is handed over before its store's
/// removal), then `MergeRegion` (sent to the source's leader); the target's operator is the
/// passive `MergeRegion` that finishes when the target absorbed the source.
pub fn merge_region(
    desc: &str,
    kind: OpKind,
    source: &RegionInfo,
    target: &RegionInfo,
    alloc_id: &mut dyn FnMut() -> Option<u64>,
) -> Result<(Operator, Operator), String> {
    let adjacent = source.end_key() == target.start_key() || target.end_key() == source.start_key();
    if !adjacent || source.end_key().is_empty() && target.end_key().is_empty() {
        return Err(format!(
            "regions {} and {} are not adjacent",
            source.id(),
            target.id()
        ));
    }
    if target.meta.peers.iter().any(|p| !is_voter(p)) {
        return Err(format!("region {} has peers that are not voters", target.id()));
    }
    let mut steps = Vec::new();
    for p in &target.meta.peers {
        if source.peer_on_store(p.store_id).is_none() {
            let peer_id = alloc_id().ok_or("no peer id")?;
            steps.push(OpStep::AddLearner {
                store_id: p.store_id,
                peer_id,
            });
            steps.push(OpStep::PromoteLearner {
                store_id: p.store_id,
                peer_id,
            });
        } else if source.peer_on_store(p.store_id).is_some_and(|x| !is_voter(x)) {
            return Err(format!(
                "region {} has a learner on store {}",
                source.id(),
                p.store_id
            ));
        }
    }
    for p in &source.meta.peers {
        if target.peer_on_store(p.store_id).is_none() {
            steps.push(OpStep::RemovePeer { store_id: p.store_id });
        }
    }
    let (from, to) = (Box::new(source.meta.clone()), Box::new(target.meta.clone()));
    steps.push(OpStep::MergeRegion {
        from: from.clone(),
        to: to.clone(),
        passive: false,
    });
    let brief = format!("merge: region {} to {}", source.id(), target.id());
    let source_op = Operator::new(desc, brief.clone(), source, kind, steps);
    let target_op = Operator::new(
        desc,
        brief,
        target,
        kind,
        vec![OpStep::MergeRegion {
            from,
            to,
            passive: true,
        }],
    );
    Ok((source_op, target_op))
}
