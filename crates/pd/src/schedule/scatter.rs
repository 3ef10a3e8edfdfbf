//! Scattering regions (pdpb `ScatterRegion`, `SplitAndScatterRegions`): PD's region scatterer,
//! which spreads freshly split regions' peers and leaders over the stores, evenly within a
//! group of regions (e.g. one table's), so that a bulk load does not start on a few stores.
//!
//! Per group, PD remembers how many peers and leaders it has placed on each store. A region
//! is scattered by choosing, among the Up stores, the ones with the fewest peers placed so far
//! (keeping the region's current stores on ties), and for leader the chosen store with the
//! fewest leaders placed; the operator (`scatter-region`, kind `admin`) adds the missing peers
//! (learner, then promote), moves leadership, and removes the peers not chosen. With location
//! labels configured the peers stay where they are (placement owns them) and only leadership
//! is scattered.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::coordinator;
use super::operator::{OpKind, OpStep, Operator};
use crate::context::PdContext;
use crate::region_info::RegionInfo;
use crate::store_info::StoreStateName;

/// The operators' description (PD's).
pub const DESC: &str = "scatter-region";

/// Peers and leaders placed per store, in one group.
#[derive(Debug, Default, Clone)]
struct GroupCounts {
    peers: HashMap<u64, u64>,
    leaders: HashMap<u64, u64>,
}

/// What PD remembers between scatter requests.
#[derive(Debug, Default)]
pub struct Scatterer {
    groups: Mutex<HashMap<String, GroupCounts>>,
}

/// The stores a region of `current` stores (and `leader`) should be on, and its leader store:
/// the `current.len()` candidates with the fewest peers placed (current stores first on ties,
/// then lower ids), or only a new leader when `move_peers` is false.
pub fn choose(
    current: &[u64],
    leader: Option<u64>,
    candidates: &[u64],
    peers: &HashMap<u64, u64>,
    leaders: &HashMap<u64, u64>,
    move_peers: bool,
) -> (Vec<u64>, Option<u64>) {
    let count = |m: &HashMap<u64, u64>, s: u64| m.get(&s).copied().unwrap_or(0);
    let targets: Vec<u64> = if move_peers && candidates.len() >= current.len() {
        let mut c = candidates.to_vec();
        c.sort_by_key(|s| (count(peers, *s), !current.contains(s), *s));
        c.truncate(current.len());
        c
    } else {
        current.to_vec()
    };
    let new_leader = targets
        .iter()
        .copied()
        .min_by_key(|s| (count(leaders, *s), Some(*s) != leader, *s));
    (targets, new_leader)
}

impl Scatterer {
    /// An operator scattering `region` within `group` over `up_stores` (none if the region is
    /// already where it should be); records the placement in the group's counts.
    pub fn scatter(
        &self,
        region: &RegionInfo,
        group: &str,
        up_stores: &[u64],
        move_peers: bool,
        alloc_id: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<Option<Operator>, String> {
        let current: Vec<u64> = region.meta.peers.iter().map(|p| p.store_id).collect();
        if current.is_empty() {
            return Err(format!("region {} has no peers", region.id()));
        }
        let leader = region.leader.map(|l| l.store_id);
        let mut groups = self.groups.lock();
        let counts = groups.entry(group.to_owned()).or_default();
        let (targets, new_leader) = choose(
            &current,
            leader,
            up_stores,
            &counts.peers,
            &counts.leaders,
            move_peers,
        );
        let adds: Vec<u64> = targets.iter().copied().filter(|s| !current.contains(s)).collect();
        let removes: Vec<u64> = current.iter().copied().filter(|s| !targets.contains(s)).collect();
        let mut steps = Vec::new();
        for store_id in &adds {
            let peer_id = alloc_id().ok_or("cannot allocate a peer id")?;
            steps.push(OpStep::AddLearner {
                store_id: *store_id,
                peer_id,
            });
            steps.push(OpStep::PromoteLearner {
                store_id: *store_id,
                peer_id,
            });
        }
        if let (Some(from), Some(to)) = (leader, new_leader) {
            if from != to {
                steps.push(OpStep::TransferLeader {
                    from_store: from,
                    to_store: to,
                });
            }
        }
        for store_id in &removes {
            steps.push(OpStep::RemovePeer { store_id: *store_id });
        }
        for s in &targets {
            *counts.peers.entry(*s).or_default() += 1;
        }
        if let Some(l) = new_leader {
            *counts.leaders.entry(l).or_default() += 1;
        }
        if steps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Operator::new(
            DESC,
            format!("scatter region: stores {current:?} to {targets:?}, leader {new_leader:?}"),
            region,
            OpKind::ADMIN,
            steps,
        )))
    }
}

/// Scatters the regions `ids` within `group`; returns the percentage of them that are
/// scattered (an operator started, or nothing to move).
pub fn scatter_regions(ctx: &PdContext, ids: &[u64], group: &str) -> u64 {
    if ids.is_empty() {
        return 100;
    }
    let states = coordinator::store_states(ctx);
    let up: Vec<u64> = states
        .iter()
        .filter(|(_, s)| **s == StoreStateName::Up)
        .map(|(id, _)| *id)
        .collect();
    let move_peers = ctx.options.replication().location_labels.is_empty();
    let mut alloc = || ctx.id_alloc.alloc().ok();
    let mut done = 0usize;
    for id in ids {
        let Ok(Some(region)) = ctx.cluster.region_by_id(*id) else {
            continue;
        };
        let op = ctx
            .coordinator
            .scatterer
            .scatter(&region, group, &up, move_peers, &mut alloc);
        match op {
            Ok(None) => done += 1,
            Ok(Some(op)) => match coordinator::add_operator(ctx, op) {
                Ok(()) => done += 1,
                Err(e) => tracing::info!(region = id, error = ?e, "scatter not started"),
            },
            Err(e) => tracing::info!(region = id, error = %e, "scatter not started"),
        }
    }
    (done * 100 / ids.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_least_used_stores_and_keeps_ties() {
        let none = HashMap::new();
        // Nothing placed yet: the current stores stay, the current leader stays.
        assert_eq!(
            choose(&[1, 2, 3], Some(2), &[1, 2, 3, 4, 5], &none, &none, true),
            (vec![1, 2, 3], Some(2))
        );
        // Stores 1-3 already got peers of this group: the region goes to 4, 5 and one of them.
        let peers: HashMap<u64, u64> = [(1, 2), (2, 2), (3, 1)].into_iter().collect();
        let leaders: HashMap<u64, u64> = [(4, 1)].into_iter().collect();
        let (targets, leader) = choose(&[1, 2, 3], Some(1), &[1, 2, 3, 4, 5], &peers, &leaders, true);
        assert_eq!(targets, vec![4, 5, 3]);
        assert_eq!(leader, Some(3));
        // Without peer moves only leadership is scattered.
        let (targets, leader) = choose(&[1, 2, 3], Some(1), &[1, 2, 3, 4, 5], &peers, &leaders, false);
        assert_eq!(targets, vec![1, 2, 3]);
        assert_eq!(leader, Some(1), "no leader placed on 1-3 yet: the leader stays");
        // Too few stores: peers stay.
        assert_eq!(
            choose(&[1, 2, 3], None, &[1, 2], &peers, &none, true).0,
            vec![1, 2, 3]
        );
    }
}
