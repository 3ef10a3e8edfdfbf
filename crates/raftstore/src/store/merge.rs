//! Region merges in the store loop (see [`crate::merge`]): proposing a prepare for PD,
//! proposing the commit to a target led on this store (or the rollback), applying a commit by
//! absorbing the local source peer into the target in one KV batch, and holding a target's
//! entries while its local source cannot be caught up yet.

use super::*;
use crate::cmd::CmdHeader;
use crate::merge;
use crate::peer::PendingCommitMerge;

/// How often a merging source re-proposes its CommitMerge or RollbackMerge while nothing
/// happens (a proposal may be lost with a leader change).
const MERGE_RETRY: Duration = Duration::from_secs(2);

/// A target region whose committed entries wait, from a CommitMerge on, for its local source.
pub(super) struct MergeWait {
    pub entries: Vec<raft::eraftpb::Entry>,
    pub why: String,
}

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    /// PD asks region `header.region_id` (led here) to merge into `target`.
    pub(super) fn on_prepare_merge(&mut self, header: CmdHeader, target: metapb::Region, cb: WriteCb) {
        // The target as this store knows it must be the one PD planned with.
        if let Some(local) = self.peers.get(&target.id).filter(|p| p.is_initialized()) {
            let planned = target.region_epoch.unwrap_or_default();
            let current = local.region().region_epoch.unwrap_or_default();
            if current != planned || local.merge.is_some() {
                let _ = cb.send(Err(Error::InvalidMerge {
                    region_id: header.region_id,
                    message: format!(
                        "target region {} is at {current:?} here (planned {planned:?}){}",
                        target.id,
                        if local.merge.is_some() { ", merging" } else { "" }
                    ),
                }));
                return;
            }
        }
        let max_entry_bytes = self.cfg.max_entry_bytes;
        match self.peers.get_mut(&header.region_id) {
            Some(peer) => {
                metrics::PROPOSAL_TOTAL
                    .with_label_values(&["prepare_merge"])
                    .inc();
                peer.propose_prepare_merge(header, target, cb, max_entry_bytes)
            }
            None => {
                let _ = cb.send(Err(Error::RegionNotFound(header.region_id)));
            }
        }
    }

    /// Applies `entries` of region `id`, doing the store's part of each CommitMerge among them;
    /// from a CommitMerge whose source cannot be absorbed yet, the entries wait.
    pub(super) fn apply_region(
        &mut self,
        id: u64,
        mut entries: Vec<raft::eraftpb::Entry>,
        committed_at: Instant,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
        merged: &mut Vec<Peer<ER, EK::Snap>>,
    ) {
        let waited = self.merge_waiting.remove(&id);
        let last_why = waited.as_ref().map(|w| w.why.clone());
        if let Some(mut w) = waited {
            w.entries.append(&mut entries);
            entries = w.entries;
        }
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(pending) = peer.apply_entries(entries, committed_at, wb, outcome) else {
                return;
            };
            match self.absorb_source(id, &pending, wb, outcome, merged) {
                Ok(region) => {
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.finish_commit_merge(&pending, region, wb, outcome);
                    }
                    entries = pending.rest;
                }
                Err(why) => {
                    if last_why.as_ref() != Some(&why) {
                        tracing::info!(
                            region_id = id,
                            source = pending.source.id,
                            reason = %why,
                            "commit merge waits for the local source"
                        );
                    }
                    let mut held = Vec::with_capacity(pending.rest.len() + 1);
                    held.push(pending.entry);
                    held.extend(pending.rest);
                    self.merge_waiting.insert(id, MergeWait { entries: held, why });
                    return;
                }
            }
        }
    }

    /// Catches the local source of a commit up to its prepare and turns it into a tombstone in
    /// `wb` (its data now belongs to the target); returns the merged target region.
    fn absorb_source(
        &mut self,
        target_id: u64,
        pending: &PendingCommitMerge,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
        merged: &mut Vec<Peer<ER, EK::Snap>>,
    ) -> std::result::Result<metapb::Region, String> {
        let source_id = pending.source.id;
        let target = self
            .peers
            .get(&target_id)
            .map(|p| p.region().clone())
            .ok_or("the target peer is gone")?;
        let Some(source) = self.peers.get_mut(&source_id) else {
            return Err(if self.tombstones.contains_key(&source_id) {
                "the local source peer is a tombstone".into()
            } else {
                "no local source peer".into()
            });
        };
        // The source's own answers and compaction are its own (a compaction it applies here is
        // moot: its log goes with it).
        let mut source_outcome = ApplyOutcome::new();
        source.catch_up_for_merge(pending.commit, &pending.entries, wb, &mut source_outcome)?;
        outcome.responses.append(&mut source_outcome.responses);
        outcome
            .answered_sent_at
            .append(&mut source_outcome.answered_sent_at);
        let source_region = source.region().clone();
        if source_region.region_epoch != pending.source.region_epoch {
            return Err(format!(
                "the local source is at {:?}, the commit carries {:?}",
                source_region.region_epoch, pending.source.region_epoch
            ));
        }
        let region = merge::merged_region(&source_region, &target).map_err(|e| e.to_string())?;
        let Some(mut source) = self.peers.remove(&source_id) else {
            return Err("no local source peer".into());
        };
        source.write_apply_state(wb);
        wb.delete_cf(CF_RAFT, keys::apply_state_key(source_id));
        write_region_state(wb, &source_region, RegionState::Tombstone);
        source.fail_all(Error::RegionNotFound(source_id));
        if let Some(cancel) = source.apply_cancel.take() {
            cancel.cancel();
        }
        self.merge_waiting.remove(&source_id);
        self.tombstones.insert(source_id, source_region);
        tracing::info!(region_id = source_id, into = target_id, "source peer merged away");
        merged.push(source);
        Ok(region)
    }

    /// Once merged sources' tombstones are durable, their Raft logs go.
    pub(super) fn clear_merged_logs(&mut self, merged: Vec<Peer<ER, EK::Snap>>) -> Result<()> {
        if merged.is_empty() {
            return Ok(());
        }
        self.drain_writer()?;
        let mut raft_wb = WriteBatch::new();
        for peer in &merged {
            peer.raw.store().clear_log(&mut raft_wb);
            self.snap_mgr.remove_region_files(peer.region_id(), "gen", None);
            self.snap_mgr.remove_region_files(peer.region_id(), "rcv", None);
        }
        self.raft_engine.write(&raft_wb, true)?;
        self.update_region_metrics();
        Ok(())
    }

    /// Moves every merge prepared on this store along: a source whose target is led here
    /// proposes the commit to it; a source led here whose target moved on rolls back.
    pub(super) fn on_merge_tick(&mut self) {
        let sources: Vec<u64> = self
            .peers
            .values()
            .filter(|p| p.merge.is_some())
            .map(|p| p.region_id())
            .collect();
        for id in sources {
            self.drive_merge(id);
        }
    }

    fn drive_merge(&mut self, source_id: u64) {
        let Some(source) = self.peers.get(&source_id) else {
            return;
        };
        let Some(state) = source.merge.clone() else {
            return;
        };
        if source
            .merge_proposed_at
            .is_some_and(|t| t.elapsed() < MERGE_RETRY)
        {
            return;
        }
        let planned = state.target.region_epoch.unwrap_or_default();
        let target_epoch = match self.peers.get(&state.target.id) {
            Some(t) if t.is_initialized() => Some(t.region().region_epoch.unwrap_or_default()),
            Some(_) => None,
            None => self
                .tombstones
                .get(&state.target.id)
                .map(|t| t.region_epoch.unwrap_or_default()),
        };
        let Some(current) = target_epoch else {
            return;
        };
        if merge::epoch_moved(&current, &planned) {
            if !source.is_leader() {
                return;
            }
            tracing::info!(
                region_id = source_id,
                target = state.target.id,
                ?planned,
                ?current,
                "merge target moved on; rolling back"
            );
            let Some(source) = self.peers.get_mut(&source_id) else {
                return;
            };
            source.merge_proposed_at = Some(Instant::now());
            if source.propose_admin(CmdBody::RollbackMerge { commit: state.commit }) {
                metrics::PROPOSAL_TOTAL
                    .with_label_values(&["rollback_merge"])
                    .inc();
            }
            return;
        }
        if current != planned {
            // This store's target peer lags behind the plan; it will catch up.
            return;
        }
        let target_leads = self.peers.get(&state.target.id).is_some_and(|t| t.is_leader());
        if !target_leads {
            return;
        }
        let entries = match source.raw.raft.raft_log.slice(
            state.min_index + 1,
            state.commit + 1,
            None,
            raft::GetEntriesContext::empty(false),
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(region_id = source_id, error = %e, "source log for the commit merge unavailable");
                return;
            }
        };
        let source_region = source.region().clone();
        let header = CmdHeader {
            region_id: state.target.id,
            peer_id: 0,
            conf_ver: planned.conf_ver,
            version: planned.version,
            ..Default::default()
        };
        if let Some(source) = self.peers.get_mut(&source_id) {
            source.merge_proposed_at = Some(Instant::now());
        }
        let Some(target) = self.peers.get_mut(&state.target.id) else {
            return;
        };
        match target.propose_commit_merge(&header, source_region, state.commit, entries) {
            Ok(()) => {
                metrics::PROPOSAL_TOTAL.with_label_values(&["commit_merge"]).inc();
                self.dirty.insert(state.target.id);
                tracing::info!(
                    region_id = source_id,
                    target = state.target.id,
                    "proposed commit merge"
                );
            }
            Err(e) => {
                tracing::info!(region_id = source_id, target = state.target.id, error = %e, "commit merge not proposed");
            }
        }
    }

    /// Local peers a snapshot of `region` replaces: initialized peers overlapping it, each
    /// inside its range and at an older version. Such a region's range went to the snapshot's
    /// region by merges, so it is dead (a live region keeps part of every range it had).
    /// `None` if some overlapping peer is not like that (the snapshot must wait).
    pub(super) fn replaced_by_snapshot(&self, region: &metapb::Region) -> Option<Vec<u64>> {
        let version = region.region_epoch.unwrap_or_default().version;
        let mut replaced = Vec::new();
        for p in self.peers.values() {
            if p.region_id() == region.id
                || !p.is_initialized()
                || !ranges_overlap(p.region(), &region.start_key, &region.end_key)
            {
                continue;
            }
            let r = p.region();
            let inside = r.start_key >= region.start_key
                && (region.end_key.is_empty() || (!r.end_key.is_empty() && r.end_key <= region.end_key));
            let older = r.region_epoch.unwrap_or_default().version < version;
            if !inside || !older || p.applying_snap.is_some() {
                return None;
            }
            replaced.push(p.region_id());
        }
        Some(replaced)
    }
}
