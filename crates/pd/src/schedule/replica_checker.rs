//! The replica checker: a pure function from one region and the cluster's stores to at most one
//! operator that brings the region closer to `max-replicas` healthy voters.
//!
//! Rules, first match wins (PD's replica checker):
//! 1. a learner no operator owns (left by a timed-out operator): on a Down/Offline/Tombstone
//!    store → removed; healthy while the region lacks healthy voters → promoted; healthy but
//!    not caught up (pending) while voters are lacking → wait; otherwise → removed;
//! 2. a voter on a Down store (`enable-remove-down-replica`) or an Offline/Tombstone store
//!    (`enable-replace-offline-replica`) → replaced by a new peer on a target store (added as a
//!    learner, promoted, leadership moved off it if needed, then removed), or simply removed if
//!    the region has more voters than `max-replicas`; nothing if no target store exists;
//! 3. fewer peers than `max-replicas` (`enable-make-up-replica`) → a peer added on a target;
//! 4. more voters than `max-replicas` (`enable-remove-extra-replica`) → one removed: a
//!    non-leader voter on a store that is not Up first, else the non-leader voter whose
//!    location is least distinct from the others, then on the store with the most regions;
//! 5. with `location-labels` (`enable-location-replacement`): the voter with the lowest
//!    distinct score is moved to a target whose distinct score would be strictly higher
//!    (`move-to-better-location`) — this also repairs an `isolation-level` violation whenever
//!    a store exists that fixes it.
//!
//! A target store is Up (heartbeating, not Disconnected/Down/Offline/Tombstone), holds no peer
//! of the region, keeps the region isolated at `isolation-level` (no such store: no
//! operator), and has the highest distinct score among the region's other peers (PD's
//! location-label rule), then the fewest regions (ties: lowest store id).
//!
//! Invariants: regions without a known leader, whose leader's store is Down/Tombstone/unknown
//! (an Offline leader is moved away as part of replacing it), or in a joint (IncomingVoter/DemotingVoter) state are left alone; an operator never removes
//! the last voter, and never adds a peer without a fresh peer id from `alloc_id`.

use atoll_proto::metapb;

use super::builder;
use super::operator::{OpKind, Operator};
use super::view::ScheduleView;
use crate::config::{ReplicationConfig, ScheduleConfig};
use crate::region_info::RegionInfo;
use crate::store_info::StoreStateName;

/// The configuration the checker obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerConfig {
    pub max_replicas: usize,
    pub enable_make_up_replica: bool,
    pub enable_remove_down_replica: bool,
    pub enable_remove_extra_replica: bool,
    pub enable_replace_offline_replica: bool,
    pub enable_location_replacement: bool,
}

impl CheckerConfig {
    pub fn new(schedule: &ScheduleConfig, replication: &ReplicationConfig) -> CheckerConfig {
        CheckerConfig {
            max_replicas: usize::try_from(replication.max_replicas).unwrap_or(usize::MAX),
            enable_make_up_replica: schedule.enable_make_up_replica,
            enable_remove_down_replica: schedule.enable_remove_down_replica,
            enable_remove_extra_replica: schedule.enable_remove_extra_replica,
            enable_replace_offline_replica: schedule.enable_replace_offline_replica,
            enable_location_replacement: schedule.enable_location_replacement,
        }
    }
}

impl Default for CheckerConfig {
    fn default() -> Self {
        CheckerConfig::new(&ScheduleConfig::default(), &ReplicationConfig::default())
    }
}

fn role(p: &metapb::Peer) -> metapb::PeerRole {
    metapb::PeerRole::try_from(p.role).unwrap_or(metapb::PeerRole::Voter)
}

/// A store state that will not come back by itself: its peers must be replaced.
fn is_bad(state: Option<StoreStateName>) -> bool {
    matches!(
        state,
        Some(StoreStateName::Down | StoreStateName::Offline | StoreStateName::Tombstone)
    )
}

struct Checker<'a> {
    region: &'a RegionInfo,
    view: &'a ScheduleView,
    cfg: &'a CheckerConfig,
}

impl Checker<'_> {
    fn state(&self, store_id: u64) -> Option<StoreStateName> {
        self.view.stores.get(&store_id).map(|s| s.state)
    }

    fn is_up(&self, store_id: u64) -> bool {
        self.state(store_id) == Some(StoreStateName::Up)
    }

    fn count(&self, store_id: u64) -> usize {
        self.view.stores.get(&store_id).map_or(0, |s| s.region_count)
    }

    fn is_pending(&self, peer_id: u64) -> bool {
        self.region.pending_peers.iter().any(|p| p.id == peer_id)
    }

    fn is_down(&self, peer_id: u64) -> bool {
        self.region
            .down_peers
            .iter()
            .any(|d| d.peer.as_ref().is_some_and(|p| p.id == peer_id))
    }

    fn voters(&self) -> Vec<&metapb::Peer> {
        self.region
            .meta
            .peers
            .iter()
            .filter(|p| role(p) == metapb::PeerRole::Voter)
            .collect()
    }

    fn leader_store(&self) -> u64 {
        self.region.leader.map_or(0, |l| l.store_id)
    }

    /// The best target for a new peer when the one on `replacing` (if any) goes: an Up store
    /// without a peer of the region that keeps it isolated; the highest distinct score, then
    /// the fewest regions, then the lowest id. With its distinct score.
    fn best_target(&self, replacing: Option<u64>) -> Option<(u64, f64)> {
        let exclude: Vec<u64> = replacing.into_iter().collect();
        self.view
            .stores
            .values()
            .filter(|s| s.is_up() && self.region.peer_on_store(s.id).is_none())
            .filter(|s| self.view.is_isolated(self.region, s.id, &exclude))
            .map(|s| {
                (
                    self.view.distinct_score(self.region, s.id, &exclude),
                    s.region_count,
                    s.id,
                )
            })
            .min_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
            .map(|(score, _, id)| (id, score))
    }

    fn target_store(&self, replacing: Option<u64>) -> Option<u64> {
        self.best_target(replacing).map(|(id, _)| id)
    }

    fn remove(&self, desc: &str, store_id: u64) -> Option<Operator> {
        let is_up = |s: u64| self.is_up(s);
        builder::remove_peer(desc, OpKind::REPLICA, self.region, store_id, &is_up)
            .map_err(
                |e| tracing::debug!(region = self.region.id(), error = %e, desc, "replica checker skipped"),
            )
            .ok()
    }

    fn learners(&self, lacking: usize) -> Option<Option<Operator>> {
        for p in self
            .region
            .meta
            .peers
            .iter()
            .filter(|p| role(p) == metapb::PeerRole::Learner)
        {
            let state = self.state(p.store_id);
            if is_bad(state) {
                let allowed = if state == Some(StoreStateName::Down) {
                    self.cfg.enable_remove_down_replica
                } else {
                    self.cfg.enable_replace_offline_replica
                };
                if allowed {
                    return Some(self.remove("remove-orphan-learner", p.store_id));
                }
                continue;
            }
            let healthy = state == Some(StoreStateName::Up) && !self.is_pending(p.id) && !self.is_down(p.id);
            if lacking > 0 {
                if healthy {
                    if self.cfg.enable_make_up_replica {
                        let op = builder::promote_learner(
                            "promote-learner",
                            OpKind::REPLICA,
                            self.region,
                            p.store_id,
                        );
                        return Some(op.ok());
                    }
                    continue;
                }
                // Still catching up (or its store is briefly unreachable): let it.
                return Some(None);
            }
            if self.cfg.enable_remove_extra_replica {
                return Some(self.remove("remove-orphan-learner", p.store_id));
            }
        }
        None
    }

    fn bad_voters(
        &self,
        voters: &[&metapb::Peer],
        alloc_id: &mut dyn FnMut() -> Option<u64>,
    ) -> Option<Option<Operator>> {
        for p in voters {
            let status = match self.state(p.store_id) {
                Some(StoreStateName::Down) if self.cfg.enable_remove_down_replica => "down",
                Some(StoreStateName::Offline | StoreStateName::Tombstone)
                    if self.cfg.enable_replace_offline_replica =>
                {
                    "offline"
                }
                _ => continue,
            };
            if voters.len() > self.cfg.max_replicas {
                return Some(self.remove(&format!("remove-extra-{status}-replica"), p.store_id));
            }
            let Some(target) = self.target_store(Some(p.store_id)) else {
                tracing::debug!(
                    region = self.region.id(),
                    store = p.store_id,
                    status,
                    "no store to replace a peer on"
                );
                return Some(None);
            };
            let Some(peer_id) = alloc_id() else {
                return Some(None);
            };
            let op = builder::replace_peer(
                &format!("replace-{status}-replica"),
                OpKind::REPLICA,
                self.region,
                p.store_id,
                target,
                peer_id,
            );
            return Some(op.ok());
        }
        None
    }

    fn extra_victim(&self, voters: &[&metapb::Peer]) -> Option<u64> {
        let leader = self.leader_store();
        let candidates: Vec<u64> = voters
            .iter()
            .map(|p| p.store_id)
            .filter(|s| *s != leader)
            .collect();
        if let Some(s) = candidates.iter().copied().filter(|s| !self.is_up(*s)).min() {
            return Some(s);
        }
        // The least distinct location first, then the fullest store, then the lowest id.
        candidates
            .into_iter()
            .map(|s| (self.view.distinct_score(self.region, s, &[]), self.count(s), s))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)))
            .map(|(_, _, s)| s)
    }

    /// Rule 5: the least distinct voter moved where it would be more distinct.
    fn better_location(
        &self,
        voters: &[&metapb::Peer],
        alloc_id: &mut dyn FnMut() -> Option<u64>,
    ) -> Option<Operator> {
        let (worst_score, worst) = voters
            .iter()
            .map(|p| (self.view.distinct_score(self.region, p.store_id, &[]), p.store_id))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        let (target, score) = self.best_target(Some(worst))?;
        if score <= worst_score {
            return None;
        }
        let peer_id = alloc_id()?;
        builder::replace_peer(
            "move-to-better-location",
            OpKind::REPLICA,
            self.region,
            worst,
            target,
            peer_id,
        )
        .ok()
    }

    fn run(&self, alloc_id: &mut dyn FnMut() -> Option<u64>) -> Option<Operator> {
        let region = self.region;
        let leader = region.leader?;
        // A leader on a dead or unknown store is stale news; wait for the new leader's report.
        if matches!(
            self.state(leader.store_id),
            None | Some(StoreStateName::Down | StoreStateName::Tombstone)
        ) {
            return None;
        }
        let joint = region.meta.peers.iter().any(|p| {
            matches!(
                role(p),
                metapb::PeerRole::IncomingVoter | metapb::PeerRole::DemotingVoter
            )
        });
        if joint {
            return None;
        }
        let voters = self.voters();
        let healthy_voters = voters.iter().filter(|p| !is_bad(self.state(p.store_id))).count();
        let lacking = self.cfg.max_replicas.saturating_sub(healthy_voters);
        if let Some(op) = self.learners(lacking) {
            return op;
        }
        if let Some(op) = self.bad_voters(&voters, alloc_id) {
            return op;
        }
        if region.meta.peers.len() < self.cfg.max_replicas && self.cfg.enable_make_up_replica {
            let target = self.target_store(None)?;
            let peer_id = alloc_id()?;
            return builder::add_peer("make-up-replica", OpKind::REPLICA, region, target, peer_id).ok();
        }
        if voters.len() > self.cfg.max_replicas && self.cfg.enable_remove_extra_replica {
            let victim = self.extra_victim(&voters)?;
            return self.remove("remove-extra-replica", victim);
        }
        let labelled = self
            .view
            .stores
            .values()
            .any(|s| s.location.iter().any(|l| !l.is_empty()));
        if self.cfg.enable_location_replacement && labelled && voters.len() == self.cfg.max_replicas {
            return self.better_location(&voters, alloc_id);
        }
        None
    }
}

/// The operator (if any) that brings `region` closer to `cfg.max_replicas` healthy voters.
/// `alloc_id` hands out fresh peer ids (`None` = allocation failed: no operator).
pub fn check(
    region: &RegionInfo,
    view: &ScheduleView,
    cfg: &CheckerConfig,
    alloc_id: &mut dyn FnMut() -> Option<u64>,
) -> Option<Operator> {
    Checker { region, view, cfg }.run(alloc_id)
}

#[cfg(test)]
#[path = "replica_checker_tests.rs"]
mod tests;
