//! The store loop: one thread drives every peer of this store. Each iteration takes queued
//! Raft messages first, then client requests, ticks (every region, on tick iterations), and
//! visits only the regions with work: proposes each region's queued writes as one entry,
//! collects their Ready, persists all of them with one raft-engine write and one fsync (only
//! when some Ready must be durable; on this thread or the Raft log writer's), sends messages,
//! applies all committed entries in one KV write batch (written here or by the apply writer),
//! and answers proposals and reads.
//!
//! Peers come and go here ([`lifecycle`]): a message for a region this store does not have
//! creates an uninitialized peer (unless stale), a peer removed from its region is destroyed
//! and leaves a tombstone behind. Snapshots ([`snapshot`]) are generated and applied by the
//! snapshot worker; applying and durability bookkeeping live in [`apply`], Raft messages in and
//! out in [`messages`], splits in [`split`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atoll_proto::metapb;
use crossbeam_channel::{Receiver, Sender};
use engine_traits::{KvEngine, WriteBatch, CF_RAFT};
use raft::eraftpb::MessageType;
use raft::{SnapshotStatus, StateRole};
use tokio::sync::mpsc::UnboundedSender;

use crate::apply_writer::{ApplyDone, ApplyJob, ApplyWriter};
use crate::cmd::CmdBody;
use crate::keys::{self, ApplyState};
use crate::log_writer::{LogDone, LogWriter, PersistedReady};
use crate::metrics;
use crate::peer::{ApplyOutcome, Peer, PeerConfig, WriteCb};
use crate::peer_storage::{write_region_state, LocalRegion, PeerStorage, RegionState, SnapGen};
use crate::router::{Msg, Router, StoreEvent};
use crate::snap::{SnapKey, SnapManager, SnapMeta};
use crate::snap_worker::{self, ApplyCancel, SnapTask};
use crate::split_check::{self, CheckTask, SplitConfig};
use crate::transport::{RaftEnvelope, Transport};
use crate::{Error, Result};

mod apply;
mod lifecycle;
mod merge;
mod messages;
mod snapshot;
mod split;

/// Tuning of the store loop.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub store_id: u64,
    /// Base tick; Raft election and heartbeat timeouts are counted in ticks.
    pub tick_interval: Duration,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// Largest command accepted into the log (TiKV's `raft-entry-max-size`, 8 MiB).
    pub max_entry_bytes: u64,
    /// Compact the log once this many applied entries sit above the truncated index.
    pub log_gc_threshold: u64,
    /// Entries kept below the applied index when compacting.
    pub log_gc_keep: u64,
    /// Past this many entries above the slowest follower's match, the log is compacted anyway:
    /// that follower catches up by snapshot (TiKV's `raft-log-gc-count-limit`).
    pub log_gc_count_limit: u64,
    /// A peer not heard from for this long is reported down (`max-peer-down-duration`).
    pub max_peer_down: Duration,
    /// Threads persisting the Raft log (TiKV's `store-io-pool-size`): 0 = the store loop
    /// writes and fsyncs each batch itself; 1 = a log writer thread does while the loop goes on.
    pub store_io_pool_size: usize,
    /// Threads writing applied entries to the KV engine (TiKV's `apply-pool-size`): 0 = the
    /// store loop writes them; 1 = an apply writer thread does.
    pub apply_pool_size: usize,
    /// When regions split.
    pub split: SplitConfig,
    /// Set while the store's disk is short of space (the node watches it): client writes are
    /// refused with `DiskFull`, and Raft appends and snapshots to this store's peers are
    /// dropped (their leaders retry once space is back); reads, admin commands and the
    /// regions' Raft otherwise go on.
    pub disk_full: Arc<AtomicBool>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_id: 0,
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            max_entry_bytes: 8 << 20,
            log_gc_threshold: 2048,
            log_gc_keep: 256,
            log_gc_count_limit: 20_000,
            max_peer_down: Duration::from_secs(600),
            store_io_pool_size: 0,
            apply_pool_size: 0,
            split: SplitConfig::default(),
            disk_full: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl StoreConfig {
    /// The shortest election timeout of a follower (raft-rs randomizes in `[1, 2)` of it).
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval * self.election_tick as u32
    }

    /// The leader lease: the election timeout minus a clock-drift margin of a tenth of it (at
    /// least two ticks, since followers count the timeout in whole ticks).
    pub fn lease(&self) -> Duration {
        let et = self.election_timeout();
        let margin = (et / 10).max(self.tick_interval * 2);
        et.saturating_sub(margin)
    }
}

/// Owns the store thread; dropping it does not stop the thread, [`StoreHandle::shutdown`] does.
pub struct StoreHandle<S: Send + 'static> {
    router: Router<S>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Send + 'static> StoreHandle<S> {
    /// Stops the loop (failing waiting requests) and waits for the thread.
    pub fn shutdown(&mut self) {
        self.router.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`spawn_store`] returns: the router to send requests in, and the thread's handle.
pub type Started<S> = (Router<S>, StoreHandle<S>);

/// Starts the store loop over the regions persisted on this store (see
/// [`crate::load_local_regions`]).
pub fn spawn_store<EK: KvEngine, ER: KvEngine, T: Transport>(
    cfg: StoreConfig,
    kv: EK,
    raft_engine: ER,
    transport: T,
    regions: Vec<LocalRegion>,
    snap_mgr: SnapManager,
    events: UnboundedSender<StoreEvent>,
) -> Result<Started<EK::Snap>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
    let router = Router { tx, raft_tx };
    let peer_cfg = PeerConfig {
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        max_entry_bytes: cfg.max_entry_bytes,
        max_peer_down: cfg.max_peer_down,
        lease: cfg.lease(),
        election_timeout: cfg.election_timeout(),
    };
    let (snap_tx, snap_thread) = snap_worker::spawn(kv.clone(), snap_mgr.clone(), router.clone())?;
    let (split_tx, split_thread) = split_check::spawn(kv.clone(), cfg.split.clone(), router.clone())?;
    let writer = ApplyWriter::spawn(kv.clone(), cfg.store_id, cfg.apply_pool_size)?;
    let log_writer = LogWriter::spawn(raft_engine.clone(), cfg.store_id, cfg.store_io_pool_size)?;
    let mut peers = HashMap::new();
    let mut tombstones = HashMap::new();
    for local in regions {
        let region = local.region;
        let Some(apply) = local.apply else {
            tombstones.insert(region.id, region);
            continue;
        };
        let Some(me) = region.peers.iter().find(|p| p.store_id == cfg.store_id).cloned() else {
            tracing::warn!(region_id = region.id, "region has no peer on this store; skipped");
            continue;
        };
        let storage = PeerStorage::open(raft_engine.clone(), region.clone(), apply)?;
        let mut peer = Peer::new(storage, me.id, &peer_cfg)?;
        peer.merge = local.merge;
        if local.state == RegionState::Applying {
            // A crash interrupted a snapshot's apply: redo it from the received file.
            let key = SnapKey {
                region_id: region.id,
                term: apply.truncated_term,
                index: apply.truncated_index,
            };
            tracing::info!(
                region_id = region.id,
                index = key.index,
                "redoing an interrupted snapshot apply"
            );
            peer.applying_snap = Some(key);
            let cancel = ApplyCancel::default();
            peer.apply_cancel = Some(cancel.clone());
            let _ = snap_tx.send(SnapTask::Apply {
                key,
                region: region.clone(),
                old: None,
                cancel,
            });
        } else {
            let voters = region
                .peers
                .iter()
                .filter(|p| p.role != metapb::PeerRole::Learner as i32)
                .count();
            if voters == 1 && region.peers.len() == 1 {
                // Alone in the group: no one to wait for, become leader at once.
                peer.raw.campaign()?;
            }
        }
        peers.insert(region.id, peer);
    }
    let mut store = StoreLoop {
        cfg,
        peer_cfg,
        kv,
        raft_engine,
        transport,
        peers,
        tombstones,
        snap_mgr,
        snap_tx,
        events,
        rx,
        raft_rx,
        dirty: HashSet::new(),
        writer,
        log_writer,
        split_tx,
        next_split_check: Instant::now(),
        merge_waiting: HashMap::new(),
        stopping: false,
    };
    let thread = std::thread::Builder::new()
        .name(format!("raftstore-{}", store.cfg.store_id))
        .spawn(move || {
            store.run();
            drop(store);
            let _ = snap_thread.join();
            let _ = split_thread.join();
        })
        .map_err(|e| Error::Engine(e.to_string()))?;
    Ok((
        router.clone(),
        StoreHandle {
            router,
            thread: Some(thread),
        },
    ))
}

struct StoreLoop<EK: KvEngine, ER: KvEngine, T> {
    cfg: StoreConfig,
    peer_cfg: PeerConfig,
    kv: EK,
    raft_engine: ER,
    transport: T,
    peers: HashMap<u64, Peer<ER, EK::Snap>>,
    /// Regions whose peer was destroyed here, with their last known meta.
    tombstones: HashMap<u64, metapb::Region>,
    snap_mgr: SnapManager,
    snap_tx: Sender<SnapTask<EK::Snap>>,
    events: UnboundedSender<StoreEvent>,
    rx: Receiver<Msg<EK::Snap>>,
    raft_rx: Receiver<Msg<EK::Snap>>,
    /// Regions with work in this iteration: only these are visited (all of them on ticks).
    dirty: HashSet<u64>,
    /// Writes applied entries to the KV engine while the loop goes on.
    writer: ApplyWriter,
    /// Persists Raft log batches while the loop goes on.
    log_writer: LogWriter,
    /// The split checker's task queue, and when leaders are next sent to it.
    split_tx: Sender<CheckTask>,
    next_split_check: Instant,
    /// Target regions whose entries wait (from a CommitMerge on) for their local source.
    merge_waiting: HashMap<u64, merge::MergeWait>,
    stopping: bool,
}

const MAX_MSGS_PER_LOOP: usize = 8192;

/// A writer thread's report.
enum Done {
    Log(LogDone),
    Apply(ApplyDone),
}

/// Whether a message may create a peer on a store that does not have the region: only what a
/// leader sends a new member (a heartbeat before it knows the member's log) or a vote request.
fn is_initial_msg(m: &raft::eraftpb::Message) -> bool {
    match m.get_msg_type() {
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
        MessageType::MsgHeartbeat => m.commit == 0,
        _ => false,
    }
}

fn epoch_older(a: &metapb::RegionEpoch, b: &metapb::RegionEpoch) -> bool {
    a.conf_ver < b.conf_ver || a.version < b.version
}

fn ranges_overlap(a: &metapb::Region, start: &[u8], end: &[u8]) -> bool {
    let a_before = !a.end_key.is_empty() && a.end_key.as_slice() <= start;
    let b_before = !end.is_empty() && end <= a.start_key.as_slice();
    !(a_before || b_before)
}

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.cfg.tick_interval;
        self.update_region_metrics();
        while !self.stopping {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = crossbeam_channel::select! {
                recv(self.log_writer.done_rx) -> d => match d {
                    Ok(d) => {
                        self.log_writer.note_done(1);
                        Ok(Some(Err(Done::Log(d))))
                    }
                    Err(_) => Err(()),
                },
                recv(self.writer.done_rx) -> d => match d {
                    Ok(d) => {
                        self.writer.note_done();
                        Ok(Some(Err(Done::Apply(d))))
                    }
                    Err(_) => Err(()),
                },
                recv(self.raft_rx) -> m => m.map(|m| Some(Ok(m))).map_err(|_| ()),
                recv(self.rx) -> m => m.map(|m| Some(Ok(m))).map_err(|_| ()),
                default(wait) => Ok(None),
            };
            let mut failed = None;
            match first {
                Ok(Some(Ok(msg))) => self.handle(msg),
                Ok(Some(Err(Done::Apply(done)))) => failed = self.on_apply_done(done).err(),
                Ok(Some(Err(Done::Log(done)))) => failed = self.on_log_done(done).err(),
                Ok(None) => {}
                Err(()) => {
                    failed = Some(Error::Engine("a raftstore channel closed".into()));
                }
            }
            // Busy time only: the wait for the first message above is not counted.
            let busy = Instant::now();
            while failed.is_none() {
                let Ok(done) = self.log_writer.done_rx.try_recv() else {
                    break;
                };
                self.log_writer.note_done(1);
                failed = self.on_log_done(done).err();
            }
            while failed.is_none() {
                let Some(done) = self.writer.try_done() else { break };
                failed = self.on_apply_done(done).err();
            }
            if let Some(e) = failed {
                tracing::error!(error = %e, "raftstore cannot apply; stopping");
                let _ = self.events.send(StoreEvent::Fatal(e.to_string()));
                break;
            }
            // Raft messages first: they never wait behind client requests.
            for _ in 0..MAX_MSGS_PER_LOOP {
                match self.raft_rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_MSGS_PER_LOOP {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            let ticked = Instant::now() >= next_tick;
            if ticked {
                self.on_tick();
                next_tick = Instant::now() + self.cfg.tick_interval;
            }
            for id in &self.dirty {
                if let Some(peer) = self.peers.get_mut(id) {
                    peer.flush_writes();
                }
            }
            self.schedule_snapshot_gen();
            let ready = Instant::now();
            metrics::LOOP_DURATION
                .with_label_values(&["messages"])
                .observe((ready - busy).as_secs_f64());
            let handled = self.handle_readies();
            if ticked {
                self.maybe_compact_logs();
                if Instant::now() >= self.next_split_check {
                    self.next_split_check = Instant::now() + self.cfg.split.check_interval;
                    self.on_split_check_tick();
                }
            }
            metrics::LOOP_DURATION
                .with_label_values(&["ready"])
                .observe(ready.elapsed().as_secs_f64());
            if let Err(e) = handled {
                // The engines failed under us: nothing acknowledged can be trusted to persist
                // from here on, so stop serving rather than acknowledge on a broken disk.
                tracing::error!(error = %e, "raftstore cannot persist; stopping");
                let _ = self.events.send(StoreEvent::Fatal(e.to_string()));
                break;
            }
            // A region whose Ready produced more work (e.g. raft-rs proposing to leave a joint
            // configuration once applied) stays dirty for the next iteration.
            let peers = &self.peers;
            self.dirty.retain(|id| {
                peers
                    .get(id)
                    .is_some_and(|p| p.applying_snap.is_none() && (p.raw.has_ready() || p.has_unsent_reads()))
            });
        }
        // Whatever was persisted or applied gets written (and answered) before the loop goes.
        let _ = self.drain_log_writer();
        self.log_writer.stop();
        while let Some(done) = self.writer.wait_done() {
            if self.on_apply_done(done).is_err() {
                break;
            }
        }
        self.writer.stop();
        for peer in self.peers.values_mut() {
            peer.fail_all(Error::ShuttingDown);
        }
        tracing::info!("raftstore stopped");
    }

    fn on_tick(&mut self) {
        self.dirty.extend(self.peers.keys().copied());
        let mut probes = Vec::new();
        let read_timeout = self.cfg.tick_interval * (self.cfg.election_tick as u32) * 2;
        for peer in self.peers.values_mut() {
            peer.raw.tick();
            peer.expire_reads(read_timeout);
            peer.maybe_leave_joint();
            if let Some(probe) = Self::membership_probe(peer, self.cfg.store_id, self.cfg.election_timeout())
            {
                probes.push(probe);
            }
            // Tell PD at once when a pending peer caught up (or a new one fell behind): its
            // operators wait on exactly that.
            if peer.is_leader() && peer.region().peers.len() > 1 {
                let pending = peer.pending_peers().len();
                if pending != peer.reported_pending {
                    peer.reported_pending = pending;
                    let _ = self.events.send(StoreEvent::LeaderChanged(Box::new(peer.info())));
                }
            }
        }
        for env in probes.into_iter().flatten() {
            self.transport.send(env);
        }
        self.on_merge_tick();
    }

    fn handle(&mut self, msg: Msg<EK::Snap>) {
        if let Some(id) = msg.region_id() {
            self.dirty.insert(id);
        }
        match msg {
            Msg::Propose { cb, .. } if self.cfg.disk_full.load(Ordering::Relaxed) => {
                let _ = cb.send(Err(Error::DiskFull {
                    store_id: self.cfg.store_id,
                    reason: "the store's disk is below its reserved space".into(),
                }));
            }
            Msg::Propose { cmd, cb, sent_at } => match self.peers.get_mut(&cmd.header.region_id) {
                Some(peer) => {
                    metrics::PROPOSAL_TOTAL.with_label_values(&["normal"]).inc();
                    metrics::REQUEST_WAIT_DURATION.observe(sent_at.elapsed().as_secs_f64());
                    peer.propose(cmd, cb, sent_at, &self.peer_cfg)
                }
                None => {
                    let _ = cb.send(Err(Error::RegionNotFound(cmd.header.region_id)));
                }
            },
            Msg::Read { header, cb } => match self.peers.get_mut(&header.region_id) {
                Some(peer) => {
                    metrics::PROPOSAL_TOTAL.with_label_values(&["read_index"]).inc();
                    peer.read(&header, cb)
                }
                None => {
                    let _ = cb.send(Err(Error::RegionNotFound(header.region_id)));
                }
            },
            Msg::ChangePeer { header, changes, cb } => match self.peers.get_mut(&header.region_id) {
                Some(peer) => {
                    metrics::PROPOSAL_TOTAL.with_label_values(&["conf_change"]).inc();
                    peer.propose_conf_change(header, changes, cb, Instant::now())
                }
                None => {
                    let _ = cb.send(Err(Error::RegionNotFound(header.region_id)));
                }
            },
            Msg::TransferLeader { header, to, cb } => {
                let res = match self.peers.get_mut(&header.region_id) {
                    Some(peer) => peer.transfer_leader(&header, &to),
                    None => Err(Error::RegionNotFound(header.region_id)),
                };
                let _ = cb.send(res);
            }
            Msg::BatchSplit { header, requests, cb } => match self.peers.get_mut(&header.region_id) {
                Some(peer) => {
                    metrics::PROPOSAL_TOTAL.with_label_values(&["split"]).inc();
                    peer.propose_split(header, requests, cb)
                }
                None => {
                    let _ = cb.send(Err(Error::RegionNotFound(header.region_id)));
                }
            },
            Msg::SplitRegion { header, split_keys } => self.on_split_region(header, split_keys),
            Msg::PrepareMerge { header, target, cb } => self.on_prepare_merge(header, *target, cb),
            Msg::SplitChecked {
                region_id,
                epoch,
                result,
            } => self.on_split_checked(region_id, epoch, result),
            Msg::Raft(env) => self.on_raft_message(*env),
            Msg::Unreachable {
                region_id,
                to_peer_id,
            } => {
                if let Some(peer) = self.peers.get_mut(&region_id) {
                    peer.raw.report_unreachable(to_peer_id);
                }
            }
            Msg::SnapshotStatus {
                region_id,
                to_peer_id,
                ok,
            } => {
                if let Some(peer) = self.peers.get_mut(&region_id) {
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    peer.raw.report_snapshot(to_peer_id, status);
                }
            }
            Msg::SnapGenerated {
                region_id,
                key,
                result,
            } => self.on_snapshot_generated(region_id, key, result),
            Msg::SnapApplied {
                region_id,
                key,
                result,
            } => self.on_snapshot_applied(region_id, key, result),
            Msg::RegionInfos(cb) => {
                let max_down = self.peer_cfg.max_peer_down;
                let infos = self
                    .peers
                    .values()
                    .filter(|p| p.is_initialized())
                    .map(|p| {
                        let mut info = p.info();
                        info.down_peers = p.down_peers(max_down);
                        info
                    })
                    .collect();
                let _ = cb.send(infos);
            }
            Msg::Shutdown => self.stopping = true,
        }
    }

    fn handle_readies(&mut self) -> Result<()> {
        let mut ids = Vec::new();
        for id in &self.dirty {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.submit_reads();
                if peer.applying_snap.is_none() && peer.raw.has_ready() {
                    ids.push(*id);
                }
            }
        }
        let mut to_apply = Vec::new();
        let mut raft_wb = WriteBatch::new();
        let mut readies = Vec::with_capacity(ids.len());
        let mut persisted = Vec::with_capacity(ids.len());
        let mut role_changed = Vec::new();
        let mut must_sync = false;
        let seq = self.log_writer.next_seq();
        for id in &ids {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            let mut rd = peer.raw.ready();
            if let Some(ss) = rd.ss() {
                role_changed.push((*id, ss.raft_state));
            }
            if !rd.snapshot().is_empty() {
                // Rare: persisted synchronously, apart from the other regions' batch.
                self.on_ready_snapshot(*id, rd, &mut to_apply)?;
                continue;
            }
            must_sync |= rd.must_sync();
            let msgs = rd.take_messages();
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((*id, committed, Instant::now()));
            }
            peer.raw
                .mut_store()
                .append(rd.entries(), rd.hs(), &mut raft_wb, seq)?;
            peer.on_read_states(rd.take_read_states());
            readies.push((*id, rd));
            // A leader's appends go out before its own write is durable.
            self.send_messages(*id, msgs);
        }
        metrics::RAFT_READY_REGIONS.observe(ids.len() as f64);
        if self.log_writer.is_inline() {
            // `store-io-pool-size = 0`: the loop writes the batch itself, then advances.
            if !raft_wb.is_empty() {
                let t = Instant::now();
                fail::fail_point!("raftstore_before_append_log");
                self.raft_engine.write(&raft_wb, must_sync)?;
                metrics::APPEND_LOG_DURATION.observe(t.elapsed().as_secs_f64());
                fail::fail_point!("raftstore_after_append_log");
            }
            for (id, mut rd) in readies {
                let Some(peer) = self.peers.get_mut(&id) else {
                    continue;
                };
                peer.raw.mut_store().on_persisted(seq);
                let persisted = rd.take_persisted_messages();
                let mut light = peer.raw.advance_append(rd);
                let msgs = light.take_messages();
                let committed = light.take_committed_entries();
                if !committed.is_empty() {
                    to_apply.push((id, committed, Instant::now()));
                }
                self.send_messages(id, persisted);
                self.send_messages(id, msgs);
            }
        } else {
            for (id, mut rd) in readies {
                let Some(peer) = self.peers.get_mut(&id) else {
                    continue;
                };
                persisted.push(PersistedReady {
                    region_id: id,
                    number: rd.number(),
                    messages: rd.take_persisted_messages(),
                });
                peer.raw.advance_append_async(rd);
            }
            if !persisted.is_empty() {
                self.log_writer.submit(raft_wb, must_sync, persisted)?;
            }
        }
        self.transport.flush();
        for (id, role) in role_changed {
            self.on_role_change(id, role);
        }
        self.apply(to_apply)?;
        self.finish_reads();
        Ok(())
    }

    fn on_role_change(&mut self, region_id: u64, role: StateRole) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if role == StateRole::Leader {
            tracing::info!(
                region_id,
                peer_id = peer.peer_id,
                term = peer.raw.raft.term,
                "became leader"
            );
            peer.on_became_leader();
            let _ = self.events.send(StoreEvent::LeaderChanged(Box::new(peer.info())));
        } else {
            peer.on_lost_leadership();
        }
        self.update_region_metrics();
    }

    fn update_region_metrics(&self) {
        metrics::REGION_COUNT
            .with_label_values(&["region"])
            .set(self.peers.len() as i64);
        let leaders = self.peers.values().filter(|p| p.is_leader()).count();
        metrics::REGION_COUNT
            .with_label_values(&["leader"])
            .set(leaders as i64);
    }
}
