//! Membership changes: what a requested change does to a region's peers and epoch, and how a
//! region's peers (with their roles) map to raft-rs's `ConfState`.
//!
//! Roles follow kvproto's `metapb.PeerRole`: `Voter`, `Learner`, and while a joint configuration
//! is in effect `IncomingVoter` (voter in the new configuration only) and `DemotingVoter` (voter
//! in the old configuration, learner in the new one). A change that touches more than one peer
//! enters a joint configuration; raft-rs leaves it by itself (auto leave), and leaving turns
//! incoming voters into voters and demoting voters into learners.
//!
//! Every applied change bumps `conf_ver` by one per changed peer; leaving a joint configuration
//! bumps it by one.

use atoll_proto::metapb::{self, PeerRole};
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState};

use crate::{Error, Result};

/// One requested membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// Add `peer` as a voter, or promote it if it is a learner of the region.
    AddVoter(metapb::Peer),
    /// Add `peer` as a learner, or demote it if it is a voter of the region.
    AddLearner(metapb::Peer),
    /// Remove `peer` from the region.
    Remove(metapb::Peer),
}

impl PeerChange {
    pub fn peer(&self) -> &metapb::Peer {
        match self {
            PeerChange::AddVoter(p) | PeerChange::AddLearner(p) | PeerChange::Remove(p) => p,
        }
    }

    fn raft_type(&self) -> ConfChangeType {
        match self {
            PeerChange::AddVoter(_) => ConfChangeType::AddNode,
            PeerChange::AddLearner(_) => ConfChangeType::AddLearnerNode,
            PeerChange::Remove(_) => ConfChangeType::RemoveNode,
        }
    }

    /// Tag used in the command encoding.
    pub(crate) fn tag(&self) -> u8 {
        match self {
            PeerChange::AddVoter(_) => 1,
            PeerChange::AddLearner(_) => 2,
            PeerChange::Remove(_) => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8, peer: metapb::Peer) -> Option<PeerChange> {
        Some(match tag {
            1 => PeerChange::AddVoter(peer),
            2 => PeerChange::AddLearner(peer),
            3 => PeerChange::Remove(peer),
            _ => return None,
        })
    }

    /// Whether the region already is as this change would make it.
    pub fn is_done(&self, region: &metapb::Region) -> bool {
        let cur = region.peers.iter().find(|p| p.id == self.peer().id);
        match self {
            PeerChange::AddVoter(_) => cur.is_some_and(|p| role(p) == PeerRole::Voter),
            PeerChange::AddLearner(_) => cur.is_some_and(|p| role(p) == PeerRole::Learner),
            PeerChange::Remove(_) => cur.is_none(),
        }
    }
}

pub fn role(p: &metapb::Peer) -> PeerRole {
    PeerRole::try_from(p.role).unwrap_or(PeerRole::Voter)
}

/// Whether the region's configuration is joint (some peer is incoming or demoting).
pub fn is_joint(region: &metapb::Region) -> bool {
    region
        .peers
        .iter()
        .any(|p| matches!(role(p), PeerRole::IncomingVoter | PeerRole::DemotingVoter))
}

/// The raft-rs configuration a region's peers describe.
pub fn conf_state_of(region: &metapb::Region) -> ConfState {
    let mut cs = ConfState::default();
    let joint = is_joint(region);
    for p in &region.peers {
        match role(p) {
            PeerRole::Voter => {
                cs.voters.push(p.id);
                if joint {
                    cs.voters_outgoing.push(p.id);
                }
            }
            PeerRole::Learner => cs.learners.push(p.id),
            PeerRole::IncomingVoter => cs.voters.push(p.id),
            PeerRole::DemotingVoter => {
                cs.voters_outgoing.push(p.id);
                cs.learners_next.push(p.id);
            }
        }
    }
    cs.auto_leave = joint;
    cs
}

/// The raft-rs conf change for `changes` (joint whenever more than one peer changes).
pub fn to_raft(changes: &[PeerChange]) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    for c in changes {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(c.raft_type());
        s.node_id = c.peer().id;
        cc.changes.push(s);
    }
    // Auto: simple for one change; joint, left by raft-rs itself, for several.
    cc.set_transition(ConfChangeTransition::Auto);
    cc
}

fn invalid(region: &metapb::Region, msg: String) -> Error {
    Error::InvalidConfChange {
        region_id: region.id,
        message: msg,
    }
}

/// Checks `changes` against `region` (before proposing and again when applying).
pub fn check(region: &metapb::Region, changes: &[PeerChange]) -> Result<()> {
    if changes.is_empty() {
        return Err(invalid(region, "empty conf change".into()));
    }
    if is_joint(region) {
        return Err(invalid(region, "region is in a joint configuration".into()));
    }
    for (i, c) in changes.iter().enumerate() {
        let p = c.peer();
        if p.id == 0 || p.store_id == 0 {
            return Err(invalid(region, format!("invalid peer {p:?}")));
        }
        if changes[..i]
            .iter()
            .any(|o| o.peer().id == p.id || o.peer().store_id == p.store_id)
        {
            return Err(invalid(region, format!("peer {p:?} changed twice")));
        }
        let by_id = region.peers.iter().find(|x| x.id == p.id);
        let by_store = region.peers.iter().find(|x| x.store_id == p.store_id);
        match c {
            PeerChange::AddVoter(_) | PeerChange::AddLearner(_) => {
                if let Some(other) = by_store {
                    if other.id != p.id {
                        return Err(invalid(
                            region,
                            format!("store {} already has peer {} of the region", p.store_id, other.id),
                        ));
                    }
                }
                if by_id.is_some_and(|x| x.store_id != p.store_id) {
                    return Err(invalid(region, format!("peer {} is on another store", p.id)));
                }
            }
            PeerChange::Remove(_) => {
                let Some(cur) = by_id else {
                    return Err(invalid(region, format!("peer {} is not in the region", p.id)));
                };
                if changes.len() > 1 && role(cur) != PeerRole::Learner {
                    return Err(invalid(
                        region,
                        format!("voter {} must be demoted before a joint change removes it", p.id),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The region after `changes` were applied (entering a joint configuration when several peers
/// change at once).
pub fn apply(region: &metapb::Region, changes: &[PeerChange]) -> Result<metapb::Region> {
    check(region, changes)?;
    let joint = changes.len() > 1;
    let mut out = region.clone();
    for c in changes {
        let p = c.peer();
        let pos = out.peers.iter().position(|x| x.id == p.id);
        match (c, pos) {
            (PeerChange::AddVoter(_), Some(i)) => {
                let was_voter = role(&out.peers[i]) == PeerRole::Voter;
                if !was_voter {
                    out.peers[i].role = if joint {
                        PeerRole::IncomingVoter
                    } else {
                        PeerRole::Voter
                    } as i32;
                }
            }
            (PeerChange::AddVoter(_), None) => {
                let mut np = *p;
                np.role = if joint {
                    PeerRole::IncomingVoter
                } else {
                    PeerRole::Voter
                } as i32;
                out.peers.push(np);
            }
            (PeerChange::AddLearner(_), Some(i)) => {
                if role(&out.peers[i]) == PeerRole::Voter {
                    out.peers[i].role = if joint {
                        PeerRole::DemotingVoter
                    } else {
                        PeerRole::Learner
                    } as i32;
                }
            }
            (PeerChange::AddLearner(_), None) => {
                let mut np = *p;
                np.role = PeerRole::Learner as i32;
                out.peers.push(np);
            }
            (PeerChange::Remove(_), Some(i)) => {
                out.peers.remove(i);
            }
            (PeerChange::Remove(_), None) => {}
        }
    }
    let epoch = out.region_epoch.get_or_insert_with(Default::default);
    epoch.conf_ver += changes.len() as u64;
    Ok(out)
}

/// The region after leaving its joint configuration.
pub fn leave_joint(region: &metapb::Region) -> metapb::Region {
    let mut out = region.clone();
    if !is_joint(region) {
        return out;
    }
    for p in &mut out.peers {
        match role(p) {
            PeerRole::IncomingVoter => p.role = PeerRole::Voter as i32,
            PeerRole::DemotingVoter => p.role = PeerRole::Learner as i32,
            _ => {}
        }
    }
    let epoch = out.region_epoch.get_or_insert_with(Default::default);
    epoch.conf_ver += 1;
    out
}

/// Whether the region's peers agree with raft-rs's configuration (after applying a change).
pub fn matches(region: &metapb::Region, cs: &ConfState) -> bool {
    let want = conf_state_of(region);
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    sorted(&want.voters) == sorted(&cs.voters)
        && sorted(&want.learners) == sorted(&cs.learners)
        && sorted(&want.voters_outgoing) == sorted(&cs.voters_outgoing)
        && sorted(&want.learners_next) == sorted(&cs.learners_next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64, r: PeerRole) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: r as i32,
            ..Default::default()
        }
    }

    fn region(peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id: 1,
            peers,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn add_promote_remove() {
        let r = region(vec![peer(1, 1, PeerRole::Voter)]);
        let r = apply(&r, &[PeerChange::AddLearner(peer(2, 2, PeerRole::Learner))]).unwrap();
        assert_eq!(r.region_epoch.unwrap().conf_ver, 2);
        assert_eq!(conf_state_of(&r).learners, vec![2]);
        let r = apply(&r, &[PeerChange::AddVoter(peer(2, 2, PeerRole::Voter))]).unwrap();
        assert_eq!(conf_state_of(&r).voters, vec![1, 2]);
        assert!(PeerChange::AddVoter(peer(2, 2, PeerRole::Voter)).is_done(&r));
        let r = apply(&r, &[PeerChange::Remove(peer(1, 1, PeerRole::Voter))]).unwrap();
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.region_epoch.unwrap().conf_ver, 4);
    }

    #[test]
    fn joint_change_and_leave() {
        let r = region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Voter),
            peer(3, 3, PeerRole::Voter),
            peer(4, 4, PeerRole::Learner),
        ]);
        let changes = [
            PeerChange::AddVoter(peer(4, 4, PeerRole::Voter)),
            PeerChange::AddLearner(peer(3, 3, PeerRole::Learner)),
        ];
        let j = apply(&r, &changes).unwrap();
        assert!(is_joint(&j));
        let cs = conf_state_of(&j);
        let mut v = cs.voters.clone();
        v.sort_unstable();
        assert_eq!(v, vec![1, 2, 4]);
        let mut o = cs.voters_outgoing.clone();
        o.sort_unstable();
        assert_eq!(o, vec![1, 2, 3]);
        assert_eq!(cs.learners_next, vec![3]);
        assert!(check(&j, &changes).is_err(), "no change while joint");
        let l = leave_joint(&j);
        assert!(!is_joint(&l));
        assert_eq!(conf_state_of(&l).learners, vec![3]);
        assert_eq!(l.region_epoch.unwrap().conf_ver, 4);
    }

    #[test]
    fn rejects_bad_changes() {
        let r = region(vec![peer(1, 1, PeerRole::Voter)]);
        assert!(check(&r, &[]).is_err());
        assert!(check(&r, &[PeerChange::AddVoter(peer(5, 1, PeerRole::Voter))]).is_err());
        assert!(check(&r, &[PeerChange::Remove(peer(9, 9, PeerRole::Voter))]).is_err());
        let two = region(vec![peer(1, 1, PeerRole::Voter), peer(2, 2, PeerRole::Voter)]);
        let joint_remove = [
            PeerChange::AddVoter(peer(3, 3, PeerRole::Voter)),
            PeerChange::Remove(peer(2, 2, PeerRole::Voter)),
        ];
        assert!(
            check(&two, &joint_remove).is_err(),
            "voters are demoted, not removed, in joint"
        );
    }

    #[test]
    fn raft_change_is_joint_for_several_peers() {
        let one = to_raft(&[PeerChange::AddLearner(peer(2, 2, PeerRole::Learner))]);
        assert_eq!(one.get_transition(), ConfChangeTransition::Auto);
        assert!(one.enter_joint().is_none());
        let two = to_raft(&[
            PeerChange::AddVoter(peer(2, 2, PeerRole::Voter)),
            PeerChange::AddLearner(peer(1, 1, PeerRole::Learner)),
        ]);
        assert_eq!(two.enter_joint(), Some(true), "joint, left automatically");
    }
}
