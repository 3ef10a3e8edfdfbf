//! The store loop: one thread drives every peer of this store. Each iteration takes all queued
//! messages, ticks, collects every region's Ready, persists all of them with one raft-engine
//! write and one fsync, sends messages, applies all committed entries in one KV write batch, and
//! then answers proposals and reads.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atoll_proto::metapb;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use engine_traits::{KvEngine, WriteBatch};
use raft::StateRole;
use tokio::sync::mpsc::UnboundedSender;

use crate::cmd::CmdBody;
use crate::keys::ApplyState;
use crate::metrics;
use crate::peer::{ApplyOutcome, Peer, PeerConfig};
use crate::peer_storage::PeerStorage;
use crate::router::{Msg, Router, StoreEvent};
use crate::transport::{RaftEnvelope, Transport};
use crate::{Error, Result};

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
        }
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

/// Starts the store loop over `regions` (as loaded from the KV engine).
pub fn spawn_store<EK: KvEngine, ER: KvEngine, T: Transport>(
    cfg: StoreConfig,
    kv: EK,
    raft_engine: ER,
    transport: T,
    regions: Vec<(metapb::Region, ApplyState)>,
    events: UnboundedSender<StoreEvent>,
) -> Result<Started<EK::Snap>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let router = Router { tx };
    let peer_cfg = PeerConfig {
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        max_entry_bytes: cfg.max_entry_bytes,
    };
    let mut peers = HashMap::new();
    for (region, apply) in regions {
        let Some(me) = region.peers.iter().find(|p| p.store_id == cfg.store_id).cloned() else {
            tracing::warn!(region_id = region.id, "region has no peer on this store; skipped");
            continue;
        };
        let storage = PeerStorage::open(raft_engine.clone(), region.clone(), apply)?;
        let mut peer = Peer::new(storage, me.id, &peer_cfg)?;
        let voters = region
            .peers
            .iter()
            .filter(|p| p.role != metapb::PeerRole::Learner as i32)
            .count();
        if voters == 1 {
            // Alone in the group: no one to wait for, become leader at once.
            peer.raw.campaign()?;
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
        events,
        rx,
        stopping: false,
    };
    let thread = std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || store.run())
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
    events: UnboundedSender<StoreEvent>,
    rx: Receiver<Msg<EK::Snap>>,
    stopping: bool,
}

const MAX_MSGS_PER_LOOP: usize = 8192;

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.cfg.tick_interval;
        self.update_region_metrics();
        while !self.stopping {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Busy time only: the wait for the first message above is not counted.
            let busy = Instant::now();
            for _ in 0..MAX_MSGS_PER_LOOP {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_tick {
                let read_timeout = self.cfg.tick_interval * (self.cfg.election_tick as u32) * 2;
                for peer in self.peers.values_mut() {
                    peer.raw.tick();
                    peer.expire_reads(read_timeout);
                }
                next_tick = Instant::now() + self.cfg.tick_interval;
            }
            let ready = Instant::now();
            metrics::LOOP_DURATION
                .with_label_values(&["messages"])
                .observe((ready - busy).as_secs_f64());
            let handled = self.handle_readies();
            metrics::LOOP_DURATION
                .with_label_values(&["ready"])
                .observe(ready.elapsed().as_secs_f64());
            if let Err(e) = handled {
                // The engines failed under us: nothing acknowledged can be trusted to persist
                // from here on, so stop serving rather than acknowledge on a broken disk.
                tracing::error!(error = %e, "raftstore cannot persist; stopping");
                break;
            }
        }
        for peer in self.peers.values_mut() {
            peer.fail_all(Error::ShuttingDown);
        }
        tracing::info!("raftstore stopped");
    }

    fn handle(&mut self, msg: Msg<EK::Snap>) {
        match msg {
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
            Msg::Raft(env) => self.on_raft_message(*env),
            Msg::Unreachable {
                region_id,
                to_peer_id,
            } => {
                if let Some(peer) = self.peers.get_mut(&region_id) {
                    peer.raw.report_unreachable(to_peer_id);
                }
            }
            Msg::RegionInfos(cb) => {
                let _ = cb.send(self.peers.values().map(|p| p.info()).collect());
            }
            Msg::Shutdown => self.stopping = true,
        }
    }

    fn on_raft_message(&mut self, env: RaftEnvelope) {
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            // Creating a replica from a leader's message needs region snapshots, which come
            // with replication; until then such a message has nowhere to go.
            tracing::debug!(
                region_id = env.region_id,
                "raft message for unknown region dropped"
            );
            return;
        };
        if env.to_peer.id != peer.peer_id {
            tracing::debug!(
                region_id = env.region_id,
                to = env.to_peer.id,
                "raft message for another peer id dropped"
            );
            return;
        }
        if let Err(e) = peer.raw.step(env.message) {
            tracing::debug!(region_id = env.region_id, error = %e, "raft step failed");
        }
    }

    fn send_messages(&mut self, region_id: u64, msgs: Vec<raft::eraftpb::Message>) {
        let Some(peer) = self.peers.get(&region_id) else {
            return;
        };
        let region = peer.region();
        let Some(from_peer) = peer.peer_by_id(peer.peer_id) else {
            return;
        };
        for m in msgs {
            let Some(to_peer) = peer.peer_by_id(m.to) else {
                tracing::debug!(
                    region_id,
                    to = m.to,
                    "raft message to a peer not in the region dropped"
                );
                continue;
            };
            self.transport.send(RaftEnvelope {
                region_id,
                from_peer,
                to_peer,
                region_epoch: region.region_epoch.unwrap_or_default(),
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
                message: m,
            });
        }
    }

    fn handle_readies(&mut self) -> Result<()> {
        for peer in self.peers.values_mut() {
            peer.submit_reads();
        }
        let ids: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| p.raw.has_ready())
            .map(|(id, _)| *id)
            .collect();
        let mut readies = Vec::with_capacity(ids.len());
        let mut to_apply = Vec::new();
        let mut raft_wb = WriteBatch::new();
        let mut role_changed = Vec::new();
        for id in &ids {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            let mut rd = peer.raw.ready();
            if let Some(ss) = rd.ss() {
                role_changed.push((*id, ss.raft_state));
            }
            let msgs = rd.take_messages();
            if !rd.snapshot().is_empty() {
                tracing::error!(region_id = id, "region snapshots are not supported yet; ignored");
            }
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((*id, committed, Instant::now()));
            }
            peer.raw.mut_store().append(rd.entries(), rd.hs(), &mut raft_wb)?;
            peer.on_read_states(rd.take_read_states());
            readies.push((*id, rd));
            self.send_messages(*id, msgs);
        }
        metrics::RAFT_READY_REGIONS.observe(ids.len() as f64);
        if !raft_wb.is_empty() {
            let t = Instant::now();
            fail::fail_point!("raftstore_before_append_log");
            self.raft_engine.write(&raft_wb, true)?;
            metrics::APPEND_LOG_DURATION.observe(t.elapsed().as_secs_f64());
        }
        for (id, rd) in readies {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let mut rd = rd;
            let persisted = rd.take_persisted_messages();
            let mut light = peer.raw.advance(rd);
            let msgs = light.take_messages();
            let committed = light.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((id, committed, Instant::now()));
            }
            self.send_messages(id, persisted);
            self.send_messages(id, msgs);
        }
        self.transport.flush();
        for (id, role) in role_changed {
            self.on_role_change(id, role);
        }
        self.apply(to_apply)?;
        self.finish_reads();
        self.maybe_compact_logs();
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
            let _ = self.events.send(StoreEvent::LeaderChanged(peer.info()));
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

    fn apply(&mut self, to_apply: Vec<(u64, Vec<raft::eraftpb::Entry>, Instant)>) -> Result<()> {
        if to_apply.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let mut kv_wb = WriteBatch::new();
        let mut outcomes = Vec::with_capacity(to_apply.len());
        let mut applied = Vec::with_capacity(to_apply.len());
        for (id, entries, committed_at) in to_apply {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            metrics::APPLY_WAIT_DURATION.observe(t.saturating_duration_since(committed_at).as_secs_f64());
            let mut outcome = ApplyOutcome {
                responses: vec![],
                answered_sent_at: vec![],
                compacted: None,
            };
            peer.apply_entries(entries, committed_at, &mut kv_wb, &mut outcome);
            applied.push(id);
            outcomes.push((id, outcome));
        }
        fail::fail_point!("raftstore_before_apply_write");
        self.kv.write(&kv_wb, false)?;
        metrics::APPLY_DURATION.observe(t.elapsed().as_secs_f64());
        let mut log_gc_wb = WriteBatch::new();
        for id in applied {
            if let Some(peer) = self.peers.get_mut(&id) {
                let idx = peer.raw.store().apply_state().applied_index;
                peer.raw.advance_apply_to(idx);
            }
        }
        for (id, outcome) in outcomes {
            for (cb, res) in outcome.responses {
                let _ = cb.send(res);
            }
            for sent_at in outcome.answered_sent_at {
                metrics::PROPOSE_TO_APPLY_DURATION.observe(sent_at.elapsed().as_secs_f64());
            }
            if let (Some((from, to)), Some(peer)) = (outcome.compacted, self.peers.get(&id)) {
                peer.raw.store().compact_to(from, to, &mut log_gc_wb);
            }
        }
        if !log_gc_wb.is_empty() {
            // The apply state recording the truncation must be durable before the entries go,
            // or a crash could leave a node whose log has a hole below its applied index.
            self.kv.sync()?;
            self.raft_engine.write(&log_gc_wb, false)?;
        }
        Ok(())
    }

    fn finish_reads(&mut self) {
        let mut snapshot = None;
        for peer in self.peers.values_mut() {
            if peer.has_ready_reads() {
                let snap = snapshot.get_or_insert_with(|| self.kv.snapshot());
                peer.finish_reads(snap);
            }
        }
    }

    /// The leader proposes a log compaction once enough applied entries pile up, never past
    /// what every follower already has.
    fn maybe_compact_logs(&mut self) {
        for peer in self.peers.values_mut() {
            if !peer.is_leader() {
                continue;
            }
            let apply = *peer.raw.store().apply_state();
            if apply.applied_index < apply.truncated_index + self.cfg.log_gc_threshold
                || peer.compact_proposed_at + self.cfg.log_gc_threshold > apply.applied_index
            {
                continue;
            }
            let min_match = peer
                .raw
                .raft
                .prs()
                .iter()
                .map(|(_, pr)| pr.matched)
                .min()
                .unwrap_or(0);
            let index = apply
                .applied_index
                .min(min_match)
                .saturating_sub(self.cfg.log_gc_keep);
            if index <= apply.truncated_index {
                continue;
            }
            let Ok(term) = raft::Storage::term(peer.raw.store(), index) else {
                continue;
            };
            if peer.propose_admin(CmdBody::CompactLog { index, term }) {
                peer.compact_proposed_at = apply.applied_index;
                metrics::PROPOSAL_TOTAL.with_label_values(&["compact_log"]).inc();
            }
        }
    }
}
