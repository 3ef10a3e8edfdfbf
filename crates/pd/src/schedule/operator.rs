//! An operator: the steps that move one region from its current membership/leadership to a
//! wanted one, and what a step looks like on the wire.
//!
//! Invariants:
//! * steps finish in order; a step counts as finished only when the region PD holds (from the
//!   leader's heartbeats) shows its effect, never when it was merely sent;
//! * every conf change step changes the region's `conf_ver` by one, so a region whose
//!   `conf_ver` moved further than the finished steps explain was changed by someone else and
//!   the operator is stale; a changed `version` (split, merge) makes it stale too;
//! * an operator never sends a `RemovePeer` for the leader's store: a `TransferLeader` to
//!   another voter is put in front of it first (see [`Operator::check`]);
//! * an operator ends (finished, timed out or stale) exactly once, in [`Operator::check`] or
//!   by the controller's cancel.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use atoll_proto::{eraftpb, metapb, pdpb};

use crate::region_info::RegionInfo;

/// How long an operator that moves peers may run (PD's `RegionOperatorWaitTime`).
pub const REGION_OPERATOR_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long a leader-only operator may run (PD's `LeaderOperatorWaitTime`).
pub const LEADER_OPERATOR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a split-only operator may run (the node scans, asks for ids, proposes).
pub const SPLIT_OPERATOR_TIMEOUT: Duration = Duration::from_secs(60);

/// What an operator does, as PD's `OpKind` flags (shown joined by commas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpKind(u32);

impl OpKind {
    /// Transfers leadership.
    pub const LEADER: OpKind = OpKind(1);
    /// Adds, promotes or removes peers (may take long: snapshots).
    pub const REGION: OpKind = OpKind(1 << 1);
    /// Splits the region.
    pub const SPLIT: OpKind = OpKind(1 << 2);
    /// Asked for by an administrator (HTTP API, `atoll ctl`).
    pub const ADMIN: OpKind = OpKind(1 << 3);
    /// Made by the hot-region scheduler.
    pub const HOT_REGION: OpKind = OpKind(1 << 4);
    /// Made by the replica checker.
    pub const REPLICA: OpKind = OpKind(1 << 5);
    /// Merges the region with a neighbour (made by the merge checker).
    pub const MERGE: OpKind = OpKind(1 << 6);

    const NAMES: [(OpKind, &'static str); 7] = [
        (OpKind::LEADER, "leader"),
        (OpKind::REGION, "region"),
        (OpKind::SPLIT, "split"),
        (OpKind::ADMIN, "admin"),
        (OpKind::HOT_REGION, "hot-region"),
        (OpKind::REPLICA, "replica"),
        (OpKind::MERGE, "merge"),
    ];

    pub fn contains(self, other: OpKind) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: OpKind) -> OpKind {
        OpKind(self.0 | other.0)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = OpKind::NAMES
            .iter()
            .filter(|(k, _)| self.contains(*k))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("unknown")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// One step of an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum OpStep {
    /// Add `peer_id` on `store_id` as a learner.
    AddLearner { store_id: u64, peer_id: u64 },
    /// Make the learner `peer_id` on `store_id` a voter.
    PromoteLearner { store_id: u64, peer_id: u64 },
    /// Remove the region's peer on `store_id`.
    RemovePeer { store_id: u64 },
    /// Move leadership from `from_store` (informational) to `to_store`.
    TransferLeader { from_store: u64, to_store: u64 },
    /// Split the region `[start_key, end_key)` (as it was when the operator was made) by
    /// `policy` (`pdpb.CheckPolicy`), at `keys` (range keys) with `USEKEY`. Done when the
    /// region's range changed.
    SplitRegion {
        start_key: Vec<u8>,
        end_key: Vec<u8>,
        policy: i32,
        keys: Vec<Vec<u8>>,
    },
    /// Merge region `from` into `to` (metadata as when the operator was made). The source
    /// side (`passive = false`) is sent to the source's leader and is done when the source
    /// region is gone; the target side (`passive = true`) is never sent and is done when the
    /// target's range changed (it absorbed the source).
    MergeRegion {
        from: Box<metapb::Region>,
        to: Box<metapb::Region>,
        passive: bool,
    },
}

fn is_pending(region: &RegionInfo, peer_id: u64) -> bool {
    region.pending_peers.iter().any(|p| p.id == peer_id)
}

fn role(p: &metapb::Peer) -> metapb::PeerRole {
    metapb::PeerRole::try_from(p.role).unwrap_or(metapb::PeerRole::Voter)
}

fn same_range(region: &RegionInfo, start: &[u8], end: &[u8]) -> bool {
    region.start_key() == start && region.end_key() == end
}

impl OpStep {
    /// Whether `region` shows this step's effect.
    pub fn is_finished(&self, region: &RegionInfo) -> bool {
        match self {
            OpStep::SplitRegion {
                start_key, end_key, ..
            } => !same_range(region, start_key, end_key),
            OpStep::MergeRegion { to, passive, .. } => {
                *passive && !same_range(region, &to.start_key, &to.end_key)
            }
            _ => self.is_finished_peer(region),
        }
    }

    /// Whether the step splits or merges (changes the region's `version`).
    pub fn changes_version(&self) -> bool {
        matches!(self, OpStep::SplitRegion { .. } | OpStep::MergeRegion { .. })
    }

    fn is_finished_peer(&self, region: &RegionInfo) -> bool {
        match *self {
            // A learner that was promoted since (a missed heartbeat) also counts as added.
            OpStep::AddLearner { store_id, peer_id } => region
                .peer_on_store(store_id)
                .is_some_and(|p| p.id == peer_id && !is_pending(region, peer_id)),
            OpStep::PromoteLearner { store_id, peer_id } => region
                .peer_on_store(store_id)
                .is_some_and(|p| p.id == peer_id && role(p) == metapb::PeerRole::Voter),
            OpStep::RemovePeer { store_id } => region.peer_on_store(store_id).is_none(),
            OpStep::TransferLeader { to_store, .. } => region.leader.is_some_and(|l| l.store_id == to_store),
            OpStep::SplitRegion { .. } | OpStep::MergeRegion { .. } => false,
        }
    }

    /// Whether the step's change shows in `region`, finished or not (an added learner may
    /// still be pending).
    fn took_effect(&self, region: &RegionInfo) -> bool {
        match *self {
            OpStep::AddLearner { store_id, peer_id } => {
                region.peer_on_store(store_id).is_some_and(|p| p.id == peer_id)
            }
            _ => self.is_finished(region),
        }
    }

    /// Why this (unfinished) step can never finish on `region`, if it cannot.
    pub fn impossible(&self, region: &RegionInfo) -> Option<String> {
        if let OpStep::MergeRegion {
            to, passive: true, ..
        } = self
        {
            // The target must still be what the source was told to merge into.
            let planned = to.region_epoch.unwrap_or_default();
            return (region.epoch() != planned).then(|| {
                format!(
                    "target epoch moved since the merge was planned: {:?}",
                    region.epoch()
                )
            });
        }
        match *self {
            OpStep::AddLearner { store_id, peer_id } => region
                .peer_on_store(store_id)
                .filter(|p| p.id != peer_id)
                .map(|p| format!("store {store_id} already has peer {} of the region", p.id)),
            OpStep::PromoteLearner { store_id, peer_id } => match region.peer_on_store(store_id) {
                Some(p) if p.id == peer_id => None,
                _ => Some(format!("learner {peer_id} on store {store_id} is gone")),
            },
            OpStep::RemovePeer { .. } => None,
            OpStep::TransferLeader { to_store, .. } => match region.peer_on_store(to_store) {
                Some(p) if role(p) == metapb::PeerRole::Voter => None,
                _ => Some(format!("store {to_store} has no voter of the region")),
            },
            OpStep::SplitRegion { .. } | OpStep::MergeRegion { .. } => None,
        }
    }

    /// Whether the step changes the region's membership (and so its `conf_ver`).
    pub fn is_conf_change(&self) -> bool {
        matches!(
            self,
            OpStep::AddLearner { .. } | OpStep::PromoteLearner { .. } | OpStep::RemovePeer { .. }
        )
    }

    /// The operator kind the step implies.
    fn kind(&self) -> OpKind {
        match self {
            OpStep::TransferLeader { .. } => OpKind::LEADER,
            OpStep::SplitRegion { .. } => OpKind::SPLIT,
            OpStep::MergeRegion { .. } => OpKind::MERGE,
            _ => OpKind::REGION,
        }
    }

    /// The heartbeat response carrying this step to `region`'s leader (header left empty), or
    /// `None` if the region has no known leader or the step names a peer the region lacks.
    pub fn to_response(&self, region: &RegionInfo) -> Option<pdpb::RegionHeartbeatResponse> {
        let leader = region.leader?;
        let mut resp = pdpb::RegionHeartbeatResponse {
            region_id: region.id(),
            region_epoch: Some(region.epoch()),
            target_peer: Some(leader),
            ..Default::default()
        };
        let change = |peer: metapb::Peer, t: eraftpb::ConfChangeType| pdpb::ChangePeer {
            peer: Some(peer),
            change_type: t as i32,
        };
        match self {
            OpStep::SplitRegion { policy, keys, .. } => {
                resp.split_region = Some(pdpb::SplitRegion {
                    policy: *policy,
                    keys: keys.clone(),
                });
            }
            OpStep::MergeRegion { passive: true, .. } => return None,
            OpStep::MergeRegion { to, .. } => {
                resp.merge = Some(pdpb::Merge {
                    target: Some((**to).clone()),
                });
            }
            &OpStep::AddLearner { store_id, peer_id } => {
                let peer = metapb::Peer {
                    id: peer_id,
                    store_id,
                    role: metapb::PeerRole::Learner as i32,
                    ..Default::default()
                };
                resp.change_peer = Some(change(peer, eraftpb::ConfChangeType::AddLearnerNode));
            }
            &OpStep::PromoteLearner { store_id, peer_id } => {
                let peer = metapb::Peer {
                    id: peer_id,
                    store_id,
                    role: metapb::PeerRole::Voter as i32,
                    ..Default::default()
                };
                resp.change_peer = Some(change(peer, eraftpb::ConfChangeType::AddNode));
            }
            &OpStep::RemovePeer { store_id } => {
                let peer = *region.peer_on_store(store_id)?;
                resp.change_peer = Some(change(peer, eraftpb::ConfChangeType::RemoveNode));
            }
            &OpStep::TransferLeader { to_store, .. } => {
                let peer = *region.peer_on_store(to_store)?;
                resp.transfer_leader = Some(pdpb::TransferLeader {
                    peer: Some(peer),
                    peers: Vec::new(),
                });
            }
        }
        Some(resp)
    }
}

impl fmt::Display for OpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpStep::SplitRegion { policy, keys, .. } => {
                let policy = pdpb::CheckPolicy::try_from(*policy).map_or("?", |p| p.as_str_name());
                let keys: Vec<String> = keys.iter().map(|k| crate::http::format::hex_upper(k)).collect();
                write!(f, "split region with policy {policy}, keys [{}]", keys.join(" "))
            }
            OpStep::MergeRegion { from, to, passive } => write!(
                f,
                "merge region {} into region {}{}",
                from.id,
                to.id,
                if *passive { " (passive)" } else { "" }
            ),
            _ => self.fmt_peer_step(f),
        }
    }
}

impl OpStep {
    fn fmt_peer_step(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OpStep::AddLearner { store_id, peer_id } => {
                write!(f, "add learner peer {peer_id} on store {store_id}")
            }
            OpStep::PromoteLearner { store_id, peer_id } => {
                write!(f, "promote learner peer {peer_id} on store {store_id} to voter")
            }
            OpStep::RemovePeer { store_id } => write!(f, "remove peer on store {store_id}"),
            OpStep::TransferLeader { from_store, to_store } => {
                write!(f, "transfer leader from store {from_store} to store {to_store}")
            }
            OpStep::SplitRegion { .. } | OpStep::MergeRegion { .. } => Ok(()),
        }
    }
}

/// Where an operator stands after looking at its region.
#[derive(Debug, Clone, PartialEq)]
pub enum OpProgress {
    /// Every step is done.
    Finished,
    /// Still running; this is the step to (re)send.
    Running(OpStep),
    /// Running, but nothing can be sent now (e.g. no voter to hand leadership to yet).
    Waiting,
    /// Ran out of time.
    TimedOut,
    /// Can no longer finish (the region changed under it).
    Stale(String),
}

/// An operator for one region.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    desc: String,
    brief: String,
    region_id: u64,
    /// The region's epoch when the operator was made.
    epoch: metapb::RegionEpoch,
    kind: OpKind,
    steps: Vec<OpStep>,
    /// Index of the first unfinished step.
    current: usize,
    created: Instant,
    created_at: SystemTime,
    timeout: Duration,
    approximate_size: i64,
}

impl Operator {
    /// An operator for `region` made of `steps`; its timeout follows its kind (10 min if it
    /// changes membership, 10 s for leader-only operators).
    pub fn new(desc: &str, brief: String, region: &RegionInfo, kind: OpKind, steps: Vec<OpStep>) -> Operator {
        let mut kind = kind;
        for s in &steps {
            kind = kind.with(s.kind());
        }
        let timeout = if kind.contains(OpKind::REGION) || kind.contains(OpKind::MERGE) {
            REGION_OPERATOR_TIMEOUT
        } else if kind.contains(OpKind::SPLIT) {
            SPLIT_OPERATOR_TIMEOUT
        } else {
            LEADER_OPERATOR_TIMEOUT
        };
        Operator {
            desc: desc.to_string(),
            brief,
            region_id: region.id(),
            epoch: region.epoch(),
            kind,
            steps,
            current: 0,
            created: Instant::now(),
            created_at: SystemTime::now(),
            timeout,
            approximate_size: region.approximate_size,
        }
    }

    pub fn desc(&self) -> &str {
        &self.desc
    }

    pub fn brief(&self) -> &str {
        &self.brief
    }

    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    pub fn epoch(&self) -> metapb::RegionEpoch {
        self.epoch
    }

    pub fn kind(&self) -> OpKind {
        self.kind
    }

    pub fn steps(&self) -> &[OpStep] {
        &self.steps
    }

    pub fn current_step(&self) -> usize {
        self.current
    }

    pub fn created(&self) -> Instant {
        self.created
    }

    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The region's approximate size (MiB) when the operator was made.
    pub fn approximate_size(&self) -> i64 {
        self.approximate_size
    }

    /// Ages the operator (tests of timeouts).
    #[cfg(test)]
    pub fn set_created(&mut self, created: Instant) {
        self.created = created;
    }

    /// The region this operator's active merge step merges into, if it is at that step.
    pub fn merging_into(&self) -> Option<u64> {
        match self.steps.get(self.current) {
            Some(OpStep::MergeRegion {
                to, passive: false, ..
            }) => Some(to.id),
            _ => None,
        }
    }

    /// The source region of this operator's passive merge step, if it has one.
    pub fn merged_from(&self) -> Option<u64> {
        self.steps.iter().find_map(|s| match s {
            OpStep::MergeRegion {
                from, passive: true, ..
            } => Some(from.id),
            _ => None,
        })
    }

    pub fn is_timed_out(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) > self.timeout
    }

    /// The highest `conf_ver` the region may have: the creation epoch plus one per conf change
    /// step before the current one (all done) plus one if the current step's change already
    /// shows (a learner may be added but still pending).
    fn max_conf_ver(&self, region: &RegionInfo) -> u64 {
        let done = self.steps[..self.current]
            .iter()
            .filter(|s| s.is_conf_change())
            .count() as u64;
        let current = self
            .steps
            .get(self.current)
            .is_some_and(|s| s.is_conf_change() && s.took_effect(region));
        self.epoch.conf_ver + done + u64::from(current)
    }

    /// Advances over the steps `region` shows as done and tells what to do next.
    ///
    /// `leader_target` picks the store to hand leadership to when the current step would remove
    /// the leader's peer (it must return a store holding a healthy voter other than the
    /// leader's); a `TransferLeader` step is then put in front of the removal.
    pub fn check(
        &mut self,
        region: &RegionInfo,
        now: Instant,
        leader_target: &dyn Fn(&RegionInfo, u64) -> Option<u64>,
    ) -> OpProgress {
        if region.id() != self.region_id {
            return OpProgress::Stale(format!("region {} is not {}", region.id(), self.region_id));
        }
        let epoch = region.epoch();
        if epoch.version != self.epoch.version {
            // A split or merge step is done exactly when the version moves.
            let done = self
                .steps
                .get(self.current)
                .is_some_and(|s| s.changes_version() && s.is_finished(region));
            if done && self.current + 1 == self.steps.len() {
                self.current += 1;
                return OpProgress::Finished;
            }
            // The source of a merge changes its version by one when it prepares the merge; it is
            // done when it is gone (see the controller). A second change is its rollback (or a
            // later change): the operator is stale then, as after its timeout.
            let merging = matches!(
                self.steps.get(self.current),
                Some(OpStep::MergeRegion { passive: false, .. })
            );
            if merging && epoch.version == self.epoch.version + 1 && !self.is_timed_out(now) {
                return OpProgress::Waiting;
            }
            return OpProgress::Stale(format!(
                "region version moved from {} to {} (split or merge)",
                self.epoch.version, epoch.version
            ));
        }
        // Steps already done stay done even when a later step shows first (missed heartbeats).
        while self.current < self.steps.len() && self.steps[self.current].is_finished(region) {
            self.current += 1;
        }
        if self.current >= self.steps.len() {
            return OpProgress::Finished;
        }
        if self.is_timed_out(now) {
            return OpProgress::TimedOut;
        }
        if epoch.conf_ver > self.max_conf_ver(region) {
            return OpProgress::Stale(format!(
                "region conf_ver moved from {} to {}, more than this operator explains",
                self.epoch.conf_ver, epoch.conf_ver
            ));
        }
        let step = self.steps[self.current].clone();
        if let Some(why) = step.impossible(region) {
            return OpProgress::Stale(why);
        }
        if let OpStep::RemovePeer { store_id } = step {
            let Some(leader) = region.leader else {
                return OpProgress::Waiting;
            };
            if leader.store_id == store_id {
                let Some(to_store) = leader_target(region, store_id) else {
                    return OpProgress::Waiting;
                };
                let transfer = OpStep::TransferLeader {
                    from_store: store_id,
                    to_store,
                };
                self.steps.insert(self.current, transfer.clone());
                self.kind = self.kind.with(OpKind::LEADER);
                return OpProgress::Running(transfer);
            }
        }
        OpProgress::Running(step)
    }
}

impl fmt::Display for Operator {
    /// Like PD's `Operator.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i}:{{{s}}}"))
            .collect();
        let created = crate::http::format::rfc3339(self.created_at);
        write!(
            f,
            "{} {{{}}} (kind:{}, region:{}({}, {}), createAt:{created}, startAt:{created}, currentStep:{}, size:{}, steps:[{}], timeout:[{}])",
            self.desc,
            self.brief,
            self.kind,
            self.region_id,
            self.epoch.version,
            self.epoch.conf_ver,
            self.current,
            self.approximate_size,
            steps.join(", "),
            crate::duration::ReadableDuration(self.timeout),
        )
    }
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
