//! One region's replica on this store: a raft-rs `RawNode` plus the proposals and reads waiting
//! on it, and the apply of its committed entries.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use atoll_proto::metapb;
use engine_traits::{KvEngine, WriteBatch, CF_RAFT};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;
use txn_types::keys::{data_end_key, data_key, in_range};

use crate::cmd::{CmdBody, CmdHeader, Modify, RaftCmd};
use crate::conf_change::{self, PeerChange};
use crate::keys;
use crate::logger::raft_logger;
use crate::metrics;
use crate::peer_storage::PeerStorage;
use crate::peer_storage::{write_region_state, RegionState};
use crate::read::{Lease, ReadCb, ReadQueue};
use crate::router::{ReadResponse, RegionInfo};
use crate::snap::SnapKey;
use crate::split::SplitRequest;
use crate::{Error, Result};

mod apply;
mod merge;

use apply::{check_keys, check_whole_epoch};
pub(crate) use apply::{ApplyOutcome, PendingCommitMerge, SplitOutcome};

pub(crate) type WriteCb = oneshot::Sender<Result<()>>;

/// One Raft entry waiting to be applied, with every caller it answers (each with when it
/// handed its write to the router) and when this peer proposed it.
struct Proposal {
    index: u64,
    term: u64,
    cbs: Vec<(WriteCb, Instant)>,
    proposed_at: Instant,
}

/// A checked write waiting for the end of the loop's message drain, where every write of the
/// region goes into one entry.
struct PendingWrite {
    modifies: Vec<Modify>,
    cb: WriteCb,
    sent_at: Instant,
}

/// Writes batched into one entry stop growing at about this size.
const BATCH_ENTRY_BYTES: usize = 1 << 20;

pub(crate) struct Peer<ER: KvEngine, S> {
    pub raw: RawNode<PeerStorage<ER>>,
    pub peer_id: u64,
    proposals: VecDeque<Proposal>,
    pending_writes: Vec<PendingWrite>,
    pending_bytes: usize,
    reads: ReadQueue<S>,
    lease: Lease,
    /// How long leadership stays blocked from lease reads after a transfer starts.
    election_timeout: Duration,
    pub written_bytes: u64,
    pub written_keys: u64,
    pub compact_proposed_at: u64,
    /// Set while the snapshot worker writes a received snapshot's data; the peer's Ready is
    /// not handled meanwhile.
    pub applying_snap: Option<SnapKey>,
    /// When a message from each other peer last arrived (the leader reports down peers).
    pub last_heard: HashMap<u64, Instant>,
    /// When this peer last became leader.
    pub leader_since: Instant,
    /// Other peers as learned from their messages (an uninitialized peer has no region yet).
    pub peer_cache: HashMap<u64, metapb::Peer>,
    /// Pending peers last told to PD (the leader heartbeats again when this changes).
    pub reported_pending: usize,
    /// When this peer was created or loaded (it does not vote for an election timeout).
    pub started_at: Instant,
    /// When a message from another peer last arrived, and when this peer last asked its
    /// region's peers whether it is still a member.
    pub last_message_at: Instant,
    pub last_probe_at: Instant,
    /// The applied index whose KV writes are done (the apply writer may lag the in-memory
    /// apply state): reads are served from it.
    pub durable_applied: u64,
    /// Stops the snapshot worker's apply for this peer (set while `applying_snap` is).
    pub apply_cancel: Option<crate::snap_worker::ApplyCancel>,
    /// Split checking: a check is running; `written_bytes` at the last check; whether the
    /// region may be skipped while little was written (false until a first check).
    pub split_check_pending: bool,
    pub split_checked_written: u64,
    pub may_skip_split_check: bool,
    /// Size and keys measured by the last split check.
    pub approximate_size: Option<u64>,
    pub approximate_keys: Option<u64>,
    /// This (source) region applied a PrepareMerge and waits for the target to absorb it.
    pub merge: Option<crate::merge::MergeState>,
    /// When this store last proposed the merge's CommitMerge (to a local target leader) or
    /// RollbackMerge.
    pub merge_proposed_at: Option<Instant>,
}

pub(crate) struct PeerConfig {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub max_entry_bytes: u64,
    /// A peer not heard from for this long is reported down to PD.
    pub max_peer_down: Duration,
    /// The leader lease (election timeout minus the clock-drift margin); zero disables it.
    pub lease: Duration,
    pub election_timeout: Duration,
}

impl<ER: KvEngine, S: Clone + Send + 'static> Peer<ER, S> {
    pub fn new(storage: PeerStorage<ER>, peer_id: u64, cfg: &PeerConfig) -> Result<Peer<ER, S>> {
        let region_id = storage.region().id;
        let applied = storage.apply_state().applied_index;
        let rc = raft::Config {
            id: peer_id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let raw = RawNode::new(&rc, storage, &raft_logger(region_id, peer_id))?;
        Ok(Peer {
            raw,
            peer_id,
            proposals: VecDeque::new(),
            pending_writes: Vec::new(),
            pending_bytes: 0,
            reads: ReadQueue::new(),
            lease: Lease::new(cfg.lease),
            election_timeout: cfg.election_timeout,
            written_bytes: 0,
            written_keys: 0,
            compact_proposed_at: 0,
            applying_snap: None,
            last_heard: HashMap::new(),
            leader_since: Instant::now(),
            peer_cache: HashMap::new(),
            reported_pending: 0,
            started_at: Instant::now(),
            last_message_at: Instant::now(),
            last_probe_at: Instant::now(),
            apply_cancel: None,
            durable_applied: applied,
            split_check_pending: false,
            split_checked_written: 0,
            may_skip_split_check: false,
            approximate_size: None,
            approximate_keys: None,
            merge: None,
            merge_proposed_at: None,
        })
    }

    pub fn is_initialized(&self) -> bool {
        self.raw.store().is_initialized()
    }

    /// Peers whose log is too far behind to catch up from it (they wait for a snapshot), or
    /// that never answered: TiKV's "pending peers".
    pub fn pending_peers(&self) -> Vec<metapb::Peer> {
        if !self.is_leader() {
            return vec![];
        }
        let truncated = self.raw.store().apply_state().truncated_index;
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.peer_id)
            .filter(|p| {
                self.raw
                    .raft
                    .prs()
                    .get(p.id)
                    .is_none_or(|pr| pr.matched < truncated)
            })
            .cloned()
            .collect()
    }

    /// Peers not heard from for `max_down`, with how long (seconds).
    pub fn down_peers(&self, max_down: Duration) -> Vec<(metapb::Peer, u64)> {
        if !self.is_leader() {
            return vec![];
        }
        let now = Instant::now();
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.peer_id)
            .filter_map(|p| {
                let since = self.last_heard.get(&p.id).copied().unwrap_or(self.leader_since);
                let idle = now.saturating_duration_since(since);
                (idle >= max_down).then_some((*p, idle.as_secs()))
            })
            .collect()
    }

    /// The lowest log index every peer is known to have (a leader's view; 0 if unknown).
    pub fn min_matched(&self) -> u64 {
        self.raw
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(0)
    }

    /// Called when this peer becomes leader.
    pub fn on_became_leader(&mut self) {
        self.leader_since = Instant::now();
        self.last_heard.clear();
    }

    pub fn region(&self) -> &metapb::Region {
        self.raw.store().region()
    }

    pub fn region_id(&self) -> u64 {
        self.region().id
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        let leader_id = self.raw.raft.leader_id;
        self.region().peers.iter().find(|p| p.id == leader_id).cloned()
    }

    pub fn peer_by_id(&self, id: u64) -> Option<metapb::Peer> {
        self.region().peers.iter().find(|p| p.id == id).cloned()
    }

    pub fn info(&self) -> RegionInfo {
        RegionInfo {
            region: self.region().clone(),
            leader: self.leader_peer(),
            is_leader: self.is_leader(),
            term: self.raw.raft.term,
            applied_index: self.raw.store().apply_state().applied_index,
            written_bytes: self.written_bytes,
            written_keys: self.written_keys,
            pending_peers: self.pending_peers(),
            down_peers: vec![],
            approximate_size: self.approximate_size,
            approximate_keys: self.approximate_keys,
        }
    }

    fn not_leader(&self) -> Error {
        // A leader handing leadership over takes no proposals but is still the leader it knows:
        // no hint then, so that clients back off and ask PD rather than retry here at once
        // (tikv-client spends its whole retry budget in a few milliseconds on such a hint).
        let leader = if self.is_leader() && self.raw.raft.lead_transferee.is_some() {
            None
        } else {
            self.leader_peer()
        };
        Error::NotLeader {
            region_id: self.region_id(),
            leader,
        }
    }

    /// Checks that a request addressed by `header` may be served by this peer now.
    pub fn check_request(&self, header: &CmdHeader) -> Result<()> {
        if header.peer_id != 0 && header.peer_id != self.peer_id {
            return Err(Error::StoreNotMatch {
                request_store_id: header.peer_id,
                actual_store_id: self.peer_id,
            });
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if header.term != 0 && header.term != self.raw.raft.term {
            return Err(Error::StaleCommand);
        }
        check_whole_epoch(self.region(), header)
    }

    /// Proposes a membership change; `cb` answers once it is applied (at once if the region
    /// already is as asked).
    pub fn propose_conf_change(
        &mut self,
        header: CmdHeader,
        changes: Vec<PeerChange>,
        cb: WriteCb,
        sent_at: Instant,
    ) {
        if let Err(e) = self.check_conf_change(&header, &changes) {
            let _ = cb.send(Err(e));
            return;
        }
        if changes.iter().all(|c| c.is_done(self.region())) {
            let _ = cb.send(Ok(()));
            return;
        }
        let cc = conf_change::to_raft(&changes);
        let ctx = RaftCmd {
            header,
            body: CmdBody::ChangePeer(changes),
        }
        .encode();
        if self.raw.propose_conf_change(ctx, cc).is_err() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        self.track_proposal(vec![(cb, sent_at)]);
    }

    fn check_conf_change(&self, header: &CmdHeader, changes: &[PeerChange]) -> Result<()> {
        self.check_request(header)?;
        self.check_not_merging()?;
        let region = self.region();
        if changes.iter().all(|c| c.is_done(region)) {
            return Ok(());
        }
        let busy = |why: &str| Error::InvalidConfChange {
            region_id: region.id,
            message: why.to_owned(),
        };
        if self.raw.raft.has_pending_conf() || conf_change::is_joint(region) {
            return Err(busy("an earlier conf change is not finished"));
        }
        if changes
            .iter()
            .any(|c| c.peer().id == self.peer_id && !matches!(c, PeerChange::AddVoter(_)))
        {
            return Err(busy(
                "the leader cannot remove or demote itself; transfer leadership first",
            ));
        }
        let after = conf_change::apply(region, changes)?;
        // Refuse a change that would leave fewer healthy voters than a quorum.
        let voters: Vec<u64> = conf_change::conf_state_of(&after).voters;
        let healthy = voters
            .iter()
            .filter(|id| {
                **id == self.peer_id || self.raw.raft.prs().get(**id).is_some_and(|p| p.recent_active)
            })
            .count();
        if healthy < voters.len() / 2 + 1 {
            return Err(busy(&format!(
                "unsafe conf change: {healthy} of {} voters would be healthy",
                voters.len()
            )));
        }
        Ok(())
    }

    /// Proposes a batch split; `cb` answers once it is applied.
    pub fn propose_split(&mut self, header: CmdHeader, requests: Vec<SplitRequest>, cb: WriteCb) {
        let checked = self
            .check_request(&header)
            .and_then(|_| self.check_not_merging())
            .and_then(|_| crate::split::split_regions(self.region(), &requests));
        if let Err(e) = checked {
            let _ = cb.send(Err(e));
            return;
        }
        // Writes queued in this drain go first, at the epoch they were checked against.
        self.flush_writes();
        let cmd = RaftCmd {
            header: self.own_header(),
            body: CmdBody::BatchSplit(requests),
        };
        if self.raw.propose(vec![], cmd.encode()).is_err() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        self.track_proposal(vec![(cb, Instant::now())]);
    }

    /// Starts moving leadership to `to` (a voter of the region).
    pub fn transfer_leader(&mut self, header: &CmdHeader, to: &metapb::Peer) -> Result<()> {
        self.check_request(header)?;
        if to.id == self.peer_id {
            return Ok(());
        }
        let target = self.region().peers.iter().find(|p| p.id == to.id);
        if target.is_none_or(|p| conf_change::role(p) != metapb::PeerRole::Voter) {
            return Err(Error::InvalidConfChange {
                region_id: self.region_id(),
                message: format!("transfer leader target {} is not a voter", to.id),
            });
        }
        // A transferee not heard from within an election timeout (down, cut off) could not take
        // over: refusing at once keeps the region serving instead of holding its proposals for
        // the transfer's whole timeout (TiKV checks the transferee likewise).
        let heard = self
            .last_heard
            .get(&to.id)
            .is_some_and(|t| t.elapsed() < self.election_timeout);
        if !heard {
            return Err(Error::InvalidConfChange {
                region_id: self.region_id(),
                message: format!("transfer leader target {} was not heard from recently", to.id),
            });
        }
        // The transferee campaigns without waiting for followers' leases to lapse.
        self.lease.expire(self.election_timeout * 2);
        self.raw.transfer_leader(to.id);
        Ok(())
    }

    /// This leader is sending `MsgTimeoutNow` (a transferee will campaign at once).
    pub fn on_timeout_now_sent(&mut self) {
        self.lease.suspect(self.raw.raft.term);
    }

    /// A leader left in a joint configuration (e.g. elected before raft-rs's automatic leave
    /// was proposed) proposes the leave itself.
    pub fn maybe_leave_joint(&mut self) {
        if self.is_leader() && conf_change::is_joint(self.region()) && !self.raw.raft.has_pending_conf() {
            let _ = self.raw.propose_conf_change(vec![], ConfChangeV2::default());
        }
    }

    /// Checks a write and queues it; [`Peer::flush_writes`] proposes every queued write of the
    /// region as one entry.
    pub fn propose(&mut self, cmd: RaftCmd, cb: WriteCb, sent_at: Instant, cfg: &PeerConfig) {
        if let Err(e) = self
            .check_request(&cmd.header)
            .and_then(|_| self.check_not_merging())
        {
            let _ = cb.send(Err(e));
            return;
        }
        let CmdBody::Write(modifies) = cmd.body else {
            let _ = cb.send(Err(Error::Codec("only writes are proposed by callers".into())));
            return;
        };
        if let Err(e) = check_keys(self.region(), &modifies) {
            let _ = cb.send(Err(e));
            return;
        }
        let size = crate::cmd::write_encoded_len(&modifies);
        if size as u64 > cfg.max_entry_bytes {
            let _ = cb.send(Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                size: size as u64,
            }));
            return;
        }
        if self.pending_bytes + size > BATCH_ENTRY_BYTES.min(cfg.max_entry_bytes as usize) {
            self.flush_writes();
        }
        self.pending_bytes += size;
        self.pending_writes.push(PendingWrite {
            modifies,
            cb,
            sent_at,
        });
    }

    /// Proposes the queued writes as one entry. They were all checked against the region as
    /// it is now (nothing changes it within a loop's message drain), so they share the fate of
    /// the entry: applied together, or refused together.
    pub fn flush_writes(&mut self) {
        if self.pending_writes.is_empty() {
            return;
        }
        self.pending_bytes = 0;
        let writes = std::mem::take(&mut self.pending_writes);
        let mut modifies = Vec::with_capacity(writes.iter().map(|w| w.modifies.len()).sum());
        let mut cbs = Vec::with_capacity(writes.len());
        for w in writes {
            modifies.extend(w.modifies);
            cbs.push((w.cb, w.sent_at));
        }
        let header = self.own_header();
        if self
            .raw
            .propose(vec![], RaftCmd::write(header, modifies).encode())
            .is_err()
        {
            let err = self.not_leader();
            for (cb, _) in cbs {
                let _ = cb.send(Err(err.clone()));
            }
            return;
        }
        metrics::BATCHED_WRITES.observe(cbs.len() as f64);
        self.track_proposal(cbs);
    }

    fn track_proposal(&mut self, cbs: Vec<(WriteCb, Instant)>) {
        let index = self.raw.raft.raft_log.last_index();
        let term = self.raw.raft.term;
        self.proposals.push_back(Proposal {
            index,
            term,
            cbs,
            proposed_at: Instant::now(),
        });
    }

    /// The header of a command this peer proposes itself, at the region's current epoch.
    fn own_header(&self) -> CmdHeader {
        let epoch = self.region().region_epoch.unwrap_or_default();
        CmdHeader {
            region_id: self.region_id(),
            peer_id: self.peer_id,
            conf_ver: epoch.conf_ver,
            version: epoch.version,
            ..Default::default()
        }
    }

    /// Proposes an admin command with no caller waiting on it.
    pub fn propose_admin(&mut self, body: CmdBody) -> bool {
        let header = self.own_header();
        self.raw
            .propose(vec![], RaftCmd { header, body }.encode())
            .is_ok()
    }

    pub fn read(&mut self, header: &CmdHeader, cb: ReadCb<S>) {
        if header.replica_read && !self.is_leader() {
            if let Err(e) = self.check_replica_read(header) {
                let _ = cb.send(Err(e));
                return;
            }
            self.reads.push_unsent(cb);
            return;
        }
        if let Err(e) = self.check_request(header).and_then(|_| self.check_not_merging()) {
            let _ = cb.send(Err(e));
            return;
        }
        if self.lease_valid() {
            self.reads.push_at_index(self.raw.raft.raft_log.committed, cb);
            return;
        }
        self.reads.push_unsent(cb);
    }

    fn check_replica_read(&self, header: &CmdHeader) -> Result<()> {
        if header.peer_id != 0 && header.peer_id != self.peer_id {
            return Err(Error::StoreNotMatch {
                request_store_id: header.peer_id,
                actual_store_id: self.peer_id,
            });
        }
        if !self.is_initialized() || self.applying_snap.is_some() || self.raw.raft.leader_id == 0 {
            return Err(self.not_leader());
        }
        self.check_not_merging()?;
        check_whole_epoch(self.region(), header)
    }

    fn lease_valid(&self) -> bool {
        self.is_leader()
            && self.raw.raft.lead_transferee.is_none()
            && self.raw.raft.commit_to_current_term()
            && self.lease.is_valid(self.raw.raft.term)
    }

    /// Turns queued reads into lease reads, or into one ReadIndex request once the peer may
    /// ask (a leader with a commit in its term; a follower that knows its leader).
    pub fn submit_reads(&mut self) {
        if !self.reads.has_unsent() {
            return;
        }
        if self.is_leader() {
            if self.lease_valid() {
                self.reads.unsent_to_index(self.raw.raft.raft_log.committed);
                return;
            }
            if !self.raw.raft.commit_to_current_term() {
                return;
            }
        } else if self.raw.raft.leader_id == 0 || self.applying_snap.is_some() {
            return;
        }
        let ctx = self.reads.send_batch();
        self.raw.read_index(ctx);
    }

    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        if let Some(sent_at) = self.reads.on_read_states(states) {
            if self.is_leader() && self.raw.raft.lead_transferee.is_none() {
                self.lease.renew(sent_at, self.raw.raft.term);
            }
        }
    }

    /// Reads waiting for a ReadIndex request to be sent (e.g. until a new leader commits).
    pub fn has_unsent_reads(&self) -> bool {
        self.reads.has_unsent()
    }

    pub fn has_ready_reads(&self) -> bool {
        self.applying_snap.is_none() && self.reads.has_ready(self.durable_applied)
    }

    /// Answers every read whose read index has been applied.
    pub fn finish_reads(&mut self, snapshot: &S) {
        if self.merge.is_some() {
            // The target may own this range already: nothing is served from a merging source.
            let err = Error::ProposalInMergingMode(self.region_id());
            self.reads.fail_all(&err);
            return;
        }
        let applied = self.durable_applied;
        let region = self.region().clone();
        let term = self.raw.raft.term;
        self.reads.finish(applied, || ReadResponse {
            snapshot: snapshot.clone(),
            region: region.clone(),
            term,
        });
    }

    /// Fails reads that got no read index within `timeout`, sent or not; the client retries.
    pub fn expire_reads(&mut self, timeout: std::time::Duration) {
        let region_id = self.region_id();
        self.reads.expire(timeout, || Error::ReadIndexNotReady {
            region_id,
            reason: "read index not answered in time".into(),
        });
    }

    /// Fails everything waiting on leadership (called when this peer stops being leader).
    pub fn on_lost_leadership(&mut self) {
        self.lease.expire(Duration::ZERO);
        let err = self.not_leader();
        self.reads.fail_all(&err);
    }

    /// Fails every waiting request (shutdown).
    pub fn fail_all(&mut self, err: Error) {
        let queued = self.pending_writes.drain(..).map(|w| w.cb);
        let proposed = self
            .proposals
            .drain(..)
            .flat_map(|p| p.cbs.into_iter().map(|(cb, _)| cb));
        for cb in queued.chain(proposed) {
            let _ = cb.send(Err(err.clone()));
        }
        self.pending_bytes = 0;
        self.reads.fail_all(&err);
    }
}
