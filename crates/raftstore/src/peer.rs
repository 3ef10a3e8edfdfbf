//! One region's replica on this store: a raft-rs `RawNode` plus the proposals and reads waiting
//! on it, and the apply of its committed entries.

use std::collections::VecDeque;
use std::time::Instant;

use atoll_proto::metapb;
use engine_traits::{KvEngine, WriteBatch, CF_RAFT};
use raft::eraftpb::{Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;
use txn_types::keys::{data_end_key, data_key, in_range};

use crate::cmd::{CmdBody, CmdHeader, Modify, RaftCmd};
use crate::keys;
use crate::logger::raft_logger;
use crate::metrics;
use crate::peer_storage::PeerStorage;
use crate::router::{ReadResponse, RegionInfo};
use crate::{Error, Result};

pub(crate) type WriteCb = oneshot::Sender<Result<()>>;
pub(crate) type ReadCb<S> = oneshot::Sender<Result<ReadResponse<S>>>;

struct Proposal {
    index: u64,
    term: u64,
    cb: Option<WriteCb>,
    /// When the write was handed to the router, and when this peer proposed it.
    sent_at: Instant,
    proposed_at: Instant,
}

struct ReadBatch<S> {
    ctx: u64,
    index: Option<u64>,
    cbs: Vec<ReadCb<S>>,
    sent_at: std::time::Instant,
}

/// What applying committed entries produced, answered after the KV batch is written.
pub(crate) struct ApplyOutcome {
    pub responses: Vec<(WriteCb, Result<()>)>,
    /// When each applied proposal with a waiting caller was handed to the router.
    pub answered_sent_at: Vec<Instant>,
    /// Log entries `[from, to]` may be deleted from the raft engine.
    pub compacted: Option<(u64, u64)>,
}

pub(crate) struct Peer<ER: KvEngine, S> {
    pub raw: RawNode<PeerStorage<ER>>,
    pub peer_id: u64,
    proposals: VecDeque<Proposal>,
    unsent_reads: Vec<ReadCb<S>>,
    reads: VecDeque<ReadBatch<S>>,
    next_read_ctx: u64,
    pub written_bytes: u64,
    pub written_keys: u64,
    pub compact_proposed_at: u64,
}

pub(crate) struct PeerConfig {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub max_entry_bytes: u64,
}

impl<ER: KvEngine, S: Send + 'static> Peer<ER, S> {
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
            unsent_reads: vec![],
            reads: VecDeque::new(),
            next_read_ctx: 1,
            written_bytes: 0,
            written_keys: 0,
            compact_proposed_at: 0,
        })
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
        }
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            region_id: self.region_id(),
            leader: self.leader_peer(),
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
        check_epoch(self.region(), header)
    }

    pub fn propose(&mut self, cmd: RaftCmd, cb: WriteCb, sent_at: Instant, cfg: &PeerConfig) {
        if let Err(e) = self.check_request(&cmd.header) {
            let _ = cb.send(Err(e));
            return;
        }
        if let CmdBody::Write(modifies) = &cmd.body {
            if let Err(e) = check_keys(self.region(), modifies) {
                let _ = cb.send(Err(e));
                return;
            }
        }
        let data = cmd.encode();
        if data.len() as u64 > cfg.max_entry_bytes {
            let _ = cb.send(Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                size: data.len() as u64,
            }));
            return;
        }
        if self.raw.propose(vec![], data).is_err() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        let index = self.raw.raft.raft_log.last_index();
        let term = self.raw.raft.term;
        self.proposals.push_back(Proposal {
            index,
            term,
            cb: Some(cb),
            sent_at,
            proposed_at: Instant::now(),
        });
    }

    /// Proposes an admin command with no caller waiting on it.
    pub fn propose_admin(&mut self, body: CmdBody) -> bool {
        let epoch = self.region().region_epoch.unwrap_or_default();
        let header = CmdHeader {
            region_id: self.region_id(),
            peer_id: self.peer_id,
            conf_ver: epoch.conf_ver,
            version: epoch.version,
        };
        self.raw
            .propose(vec![], RaftCmd { header, body }.encode())
            .is_ok()
    }

    pub fn read(&mut self, header: &CmdHeader, cb: ReadCb<S>) {
        if let Err(e) = self.check_request(header) {
            let _ = cb.send(Err(e));
            return;
        }
        self.unsent_reads.push(cb);
    }

    /// Turns queued reads into one ReadIndex request once the leader may serve reads.
    pub fn submit_reads(&mut self) {
        if self.unsent_reads.is_empty() || !self.raw.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        let cbs = std::mem::take(&mut self.unsent_reads);
        self.reads.push_back(ReadBatch {
            ctx,
            index: None,
            cbs,
            sent_at: std::time::Instant::now(),
        });
    }

    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let ctx = match <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                Ok(b) => u64::from_be_bytes(b),
                Err(_) => continue,
            };
            if let Some(batch) = self.reads.iter_mut().find(|b| b.ctx == ctx) {
                batch.index = Some(rs.index);
            }
        }
    }

    pub fn has_ready_reads(&self) -> bool {
        let applied = self.raw.store().apply_state().applied_index;
        self.reads
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
    }

    /// Answers every read whose read index has been applied.
    pub fn finish_reads(&mut self, snapshot: &S)
    where
        S: Clone,
    {
        let applied = self.raw.store().apply_state().applied_index;
        while self
            .reads
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
        {
            if let Some(batch) = self.reads.pop_front() {
                metrics::READ_INDEX_DURATION.observe(batch.sent_at.elapsed().as_secs_f64());
                for cb in batch.cbs {
                    let _ = cb.send(Ok(ReadResponse {
                        snapshot: snapshot.clone(),
                        region: self.region().clone(),
                    }));
                }
            }
        }
    }

    /// Fails reads whose ReadIndex got no answer within `timeout` (raft-rs drops a request it
    /// cannot serve, e.g. across a leader change); the client retries them.
    pub fn expire_reads(&mut self, timeout: std::time::Duration) {
        let region_id = self.region_id();
        while self
            .reads
            .front()
            .is_some_and(|b| b.index.is_none() && b.sent_at.elapsed() > timeout)
        {
            if let Some(batch) = self.reads.pop_front() {
                for cb in batch.cbs {
                    let _ = cb.send(Err(Error::ReadIndexNotReady {
                        region_id,
                        reason: "read index not answered in time".into(),
                    }));
                }
            }
        }
    }

    /// Fails everything waiting on leadership (called when this peer stops being leader).
    pub fn on_lost_leadership(&mut self) {
        let err = self.not_leader();
        self.fail_reads(&err);
    }

    /// Fails every waiting request (shutdown).
    pub fn fail_all(&mut self, err: Error) {
        for p in self.proposals.drain(..) {
            if let Some(cb) = p.cb {
                let _ = cb.send(Err(err.clone()));
            }
        }
        self.fail_reads(&err);
    }

    fn fail_reads(&mut self, err: &Error) {
        let queued = self.unsent_reads.drain(..);
        let submitted = self.reads.drain(..).flat_map(|batch| batch.cbs);
        for cb in queued.chain(submitted) {
            let _ = cb.send(Err(err.clone()));
        }
    }

    fn take_callback(
        &mut self,
        index: u64,
        term: u64,
        out: &mut Vec<(WriteCb, Result<()>)>,
    ) -> Option<Proposal> {
        // A proposal of an older term can never be applied once an entry of term `term` is:
        // committed entries after it have terms >= `term`. So it is stale whatever its index.
        while let Some(p) = self.proposals.front() {
            if p.index > index && p.term >= term {
                return None;
            }
            let p = self.proposals.pop_front()?;
            if p.index == index && p.term == term {
                return Some(p);
            }
            if let Some(cb) = p.cb {
                out.push((cb, Err(Error::StaleCommand)));
            }
        }
        None
    }

    /// Applies committed `entries` (seen committed at `committed_at`) into `wb`; advances the
    /// in-memory apply state.
    pub fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        committed_at: Instant,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) {
        for e in entries {
            let index = e.index;
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => Ok(()),
                EntryType::EntryNormal => self.apply_command(&e.data, wb, outcome),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // Membership changes are not proposed by this version; a foreign entry is
                    // skipped rather than half-applied.
                    tracing::error!(
                        region_id = self.region_id(),
                        index,
                        "skipping unsupported conf change entry"
                    );
                    Ok(())
                }
            };
            if let Some(p) = self.take_callback(index, e.term, &mut outcome.responses) {
                metrics::COMMIT_LOG_DURATION.observe(
                    committed_at
                        .saturating_duration_since(p.proposed_at)
                        .as_secs_f64(),
                );
                if let Some(cb) = p.cb {
                    outcome.responses.push((cb, result));
                    outcome.answered_sent_at.push(p.sent_at);
                }
            }
            let apply = self.raw.mut_store().apply_state_mut();
            apply.applied_index = index;
        }
        let region_id = self.region_id();
        let apply = *self.raw.store().apply_state();
        wb.put_cf(CF_RAFT, keys::apply_state_key(region_id), apply.encode());
    }

    fn apply_command(&mut self, data: &[u8], wb: &mut WriteBatch, outcome: &mut ApplyOutcome) -> Result<()> {
        let cmd = RaftCmd::decode(data)?;
        let region = self.region().clone();
        if cmd.header.region_id != region.id {
            return Err(Error::RegionNotFound(cmd.header.region_id));
        }
        match cmd.body {
            CmdBody::Write(modifies) => {
                check_epoch(&region, &cmd.header)?;
                check_keys(&region, &modifies)?;
                for m in modifies {
                    self.written_keys += 1;
                    self.written_bytes += m.size() as u64;
                    match m {
                        Modify::Put { cf, key, value } => wb.put_cf(cf, data_key(&key), value),
                        Modify::Delete { cf, key } => wb.delete_cf(cf, data_key(&key)),
                        Modify::DeleteRange { cf, start, end } => {
                            let start = start.max(region.start_key.clone());
                            let end =
                                if end.is_empty() || (!region.end_key.is_empty() && end > region.end_key) {
                                    data_end_key(&region.end_key)
                                } else {
                                    data_key(&end)
                                };
                            wb.delete_range_cf(cf, data_key(&start), end);
                        }
                    }
                }
                Ok(())
            }
            CmdBody::CompactLog { index, term } => {
                let apply = self.raw.mut_store().apply_state_mut();
                if index > apply.truncated_index && index <= apply.applied_index {
                    let from = apply.truncated_index + 1;
                    apply.truncated_index = index;
                    apply.truncated_term = term;
                    outcome.compacted = Some((from, index));
                }
                Ok(())
            }
        }
    }
}

/// A normal request must carry the region's current version (TiKV checks the version only).
pub(crate) fn check_epoch(region: &metapb::Region, header: &CmdHeader) -> Result<()> {
    let epoch = region.region_epoch.unwrap_or_default();
    if header.version != epoch.version {
        return Err(Error::EpochNotMatch {
            region_id: region.id,
            message: format!(
                "current epoch of region {} is conf_ver: {} version: {}, but you sent conf_ver: {} version: {}",
                region.id, epoch.conf_ver, epoch.version, header.conf_ver, header.version
            ),
            current_regions: vec![region.clone()],
        });
    }
    Ok(())
}

pub(crate) fn check_keys(region: &metapb::Region, modifies: &[Modify]) -> Result<()> {
    for m in modifies {
        // A range is clamped to the region when applied; only its start must lie inside.
        if !in_range(m.key(), &region.start_key, &region.end_key) {
            return Err(Error::KeyNotInRegion {
                key: m.key().to_vec(),
                region_id: region.id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            });
        }
    }
    Ok(())
}
