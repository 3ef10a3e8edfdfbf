//! Committed entries and durable writes in the store loop: applying entries (in memory, then
//! through the apply writer), learning what the writers made durable, answering reads from
//! it, and compacting the Raft log.

use super::*;

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    /// Applies committed entries in memory and hands their KV batch to the apply writer, which
    /// answers the proposals once it is written.
    pub(super) fn apply(
        &mut self,
        mut to_apply: Vec<(u64, Vec<raft::eraftpb::Entry>, Instant)>,
    ) -> Result<()> {
        // Regions waiting on a merge try again.
        for id in self.merge_waiting.keys() {
            if !to_apply.iter().any(|(r, _, _)| r == id) {
                to_apply.push((*id, Vec::new(), Instant::now()));
            }
        }
        if to_apply.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let mut job = ApplyJob {
            wb: WriteBatch::new(),
            sync: false,
            regions: Vec::with_capacity(to_apply.len()),
            responses: Vec::new(),
            answered_sent_at: Vec::new(),
            started: t,
        };
        let mut destroy = Vec::new();
        let mut changed = Vec::new();
        let mut splits = Vec::new();
        let mut merged = Vec::new();
        for (id, entries, committed_at) in to_apply {
            if !self.peers.contains_key(&id) {
                continue;
            }
            metrics::APPLY_WAIT_DURATION.observe(t.saturating_duration_since(committed_at).as_secs_f64());
            let mut outcome = ApplyOutcome::new();
            self.apply_region(id, entries, committed_at, &mut job.wb, &mut outcome, &mut merged);
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let applied_index = peer.raw.store().apply_state().applied_index;
            // A source caught up for a merge may have applied past what Raft handed out.
            let log = &peer.raw.raft.raft_log;
            let raft_applied = applied_index.min(log.committed).min(log.persisted);
            if raft_applied > log.applied {
                peer.raw.advance_apply_to(raft_applied);
            }
            job.responses.append(&mut outcome.responses);
            job.answered_sent_at.append(&mut outcome.answered_sent_at);
            // The apply state recording a truncation must be durable before the entries go, or
            // a crash could leave a node whose log has a hole below its applied index.
            job.sync |= outcome.compacted.is_some();
            job.regions.push(crate::apply_writer::AppliedRegion {
                region_id: id,
                applied_index,
                compacted: outcome.compacted,
            });
            for split in outcome.splits {
                let skipped = self.write_split_regions(&split, &mut job.wb);
                splits.push((id, split, skipped));
            }
            if outcome.destroy {
                destroy.push(id);
            } else if outcome.region_changed {
                changed.push(id);
            }
        }
        // A merged source's tombstone must be durable before its log goes.
        job.sync |= !merged.is_empty();
        self.writer.submit(job)?;
        if self.writer.is_inline() {
            while let Some(done) = self.writer.try_done() {
                self.on_apply_done(done)?;
            }
        }
        self.clear_merged_logs(merged)?;
        for (id, split, skipped) in splits {
            self.on_split_applied(id, split, &skipped);
        }
        for id in changed {
            if let Some(peer) = self.peers.get(&id) {
                if peer.is_leader() {
                    let _ = self.events.send(StoreEvent::LeaderChanged(Box::new(peer.info())));
                }
            }
        }
        for id in destroy {
            tracing::info!(region_id = id, "this peer was removed from its region");
            self.destroy_peer(id, None)?;
        }
        Ok(())
    }

    /// A KV batch of applied entries is written: reads, snapshots and log deletion may use it.
    pub(super) fn on_apply_done(&mut self, done: ApplyDone) -> Result<()> {
        let regions = done.map_err(Error::Engine)?;
        let mut log_gc_wb = WriteBatch::new();
        for r in regions {
            self.dirty.insert(r.region_id);
            let Some(peer) = self.peers.get_mut(&r.region_id) else {
                continue;
            };
            peer.durable_applied = peer.durable_applied.max(r.applied_index);
            if let Some((from, to)) = r.compacted {
                peer.raw.store().compact_to(from, to, &mut log_gc_wb);
            }
        }
        if !log_gc_wb.is_empty() {
            // The apply state recording the truncation was written with sync: the entries can go.
            self.raft_engine.write(&log_gc_wb, false)?;
        }
        Ok(())
    }

    /// Waits until every applied entry is in the KV engine (before writing around the apply
    /// writer: destroying a peer, taking a snapshot of the engine, applying a snapshot).
    pub(super) fn drain_writer(&mut self) -> Result<()> {
        while let Some(done) = self.writer.wait_done() {
            self.on_apply_done(done)?;
        }
        Ok(())
    }

    /// A Raft log batch is durable: its Readies count as persisted and the messages that
    /// waited for that go out.
    pub(super) fn on_log_done(&mut self, done: LogDone) -> Result<()> {
        let (seq, readies) = done.map_err(Error::Engine)?;
        for r in readies {
            self.dirty.insert(r.region_id);
            let Some(peer) = self.peers.get_mut(&r.region_id) else {
                continue;
            };
            peer.raw.mut_store().on_persisted(seq);
            peer.raw.on_persist_ready(r.number);
            self.send_messages(r.region_id, r.messages);
        }
        Ok(())
    }

    /// Waits until every submitted Raft log batch is durable.
    pub(super) fn drain_log_writer(&mut self) -> Result<()> {
        while self.log_writer.in_flight() > 0 {
            let done = self
                .log_writer
                .done_rx
                .recv()
                .map_err(|_| Error::Engine("the raft log writer stopped".into()))?;
            self.log_writer.note_done(1);
            self.on_log_done(done)?;
        }
        Ok(())
    }

    pub(super) fn finish_reads(&mut self) {
        let mut snapshot = None;
        for id in &self.dirty {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            if peer.has_ready_reads() {
                let snap = snapshot.get_or_insert_with(|| self.kv.snapshot());
                peer.finish_reads(snap);
            }
        }
    }

    /// The leader proposes a log compaction once enough applied entries pile up, never past
    /// what every follower already has, unless the log grew past the count limit: then a
    /// follower that is down or far behind will get a snapshot instead.
    pub(super) fn maybe_compact_logs(&mut self) {
        for peer in self.peers.values_mut() {
            if !peer.is_leader() {
                continue;
            }
            let apply = *peer.raw.store().apply_state();
            // A merging source keeps the log a CommitMerge carries.
            if peer.merge.is_some()
                || apply.applied_index < apply.truncated_index + self.cfg.log_gc_threshold
                || peer.compact_proposed_at + self.cfg.log_gc_threshold > apply.applied_index
            {
                continue;
            }
            let min_match = peer.min_matched();
            let replicated = if apply.applied_index.saturating_sub(min_match) > self.cfg.log_gc_count_limit {
                apply.applied_index
            } else {
                apply.applied_index.min(min_match)
            };
            let index = replicated.saturating_sub(self.cfg.log_gc_keep);
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
