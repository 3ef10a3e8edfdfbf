//! One peer's side of a region merge (see [`crate::merge`]): proposing and applying
//! PrepareMerge and RollbackMerge as the source, proposing and checking CommitMerge as the
//! target, and catching a lagging source up from the entries a CommitMerge carries.

use super::*;
use crate::merge::{self, MergeState};
use crate::peer_storage::write_merging_state;

/// How much source log a CommitMerge may carry, as a share of the entry size limit.
const CARRIED_LOG_SHARE: u64 = 9;

impl<ER: KvEngine, S: Clone + Send + 'static> Peer<ER, S> {
    /// A source that prepared a merge takes no writes, reads, splits or membership changes.
    pub fn check_not_merging(&self) -> Result<()> {
        if self.merge.is_some() {
            return Err(Error::ProposalInMergingMode(self.region_id()));
        }
        Ok(())
    }

    /// Proposes freezing this region for a merge into `target` (PD's view of it); `cb` answers
    /// once the prepare is applied. Refused unless every peer's log is close enough for a
    /// CommitMerge to carry the rest, and no membership change or admin command is in flight.
    pub fn propose_prepare_merge(
        &mut self,
        header: CmdHeader,
        target: metapb::Region,
        cb: WriteCb,
        max_entry_bytes: u64,
    ) {
        match self.check_prepare_merge(&header, &target, max_entry_bytes) {
            Ok(min_index) => {
                // Writes queued in this drain go first, at the epoch they were checked against.
                self.flush_writes();
                let cmd = RaftCmd {
                    header: self.own_header(),
                    body: CmdBody::PrepareMerge { min_index, target },
                };
                if self.raw.propose(vec![], cmd.encode()).is_err() {
                    let _ = cb.send(Err(self.not_leader()));
                    return;
                }
                self.track_proposal(vec![(cb, Instant::now())]);
            }
            Err(e) => {
                let _ = cb.send(Err(e));
            }
        }
    }

    /// Returns the `min_index` of a prepare: the lowest log index every peer has.
    fn check_prepare_merge(
        &self,
        header: &CmdHeader,
        target: &metapb::Region,
        max_entry_bytes: u64,
    ) -> Result<u64> {
        self.check_request(header)?;
        self.check_not_merging()?;
        let region = self.region();
        merge::check_merge(region, target)?;
        let invalid = |message: String| Error::InvalidMerge {
            region_id: region.id,
            message,
        };
        if self.raw.raft.has_pending_conf() || conf_change::is_joint(region) {
            return Err(invalid("a membership change is not finished".into()));
        }
        let min_index = self.min_matched();
        let first = self.raw.raft.raft_log.first_index();
        if min_index == 0 || min_index + 1 < first {
            return Err(invalid(format!(
                "a peer is too far behind (matched {min_index}, log starts at {first})"
            )));
        }
        let last = self.raw.raft.raft_log.last_index();
        let entries = self
            .raw
            .raft
            .raft_log
            .entries(min_index + 1, None, raft::GetEntriesContext::empty(false))
            .map_err(|e| invalid(format!("log after index {min_index}: {e}")))?;
        debug_assert!(entries.last().is_none_or(|e| e.index == last));
        let mut size = 0u64;
        for e in &entries {
            size += e.data.len() as u64 + e.context.len() as u64;
            if is_admin_entry(e) {
                return Err(invalid(format!(
                    "entry {} after the slowest peer's index is an admin command",
                    e.index
                )));
            }
        }
        if size > max_entry_bytes / 10 * CARRIED_LOG_SHARE {
            return Err(invalid(format!(
                "{size} bytes of log after the slowest peer's index {min_index}"
            )));
        }
        Ok(min_index)
    }

    /// Applies a PrepareMerge: the region is frozen at a new epoch and persisted as `Merging`.
    pub(super) fn apply_prepare_merge(
        &mut self,
        region: &metapb::Region,
        min_index: u64,
        target: metapb::Region,
        index: u64,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        self.check_not_merging()?;
        merge::check_merge(region, &target)?;
        let prepared = merge::prepared_region(region);
        let state = MergeState {
            min_index,
            commit: index,
            target,
        };
        write_merging_state(wb, &prepared, &state);
        tracing::info!(
            region_id = region.id,
            peer_id = self.peer_id,
            target = state.target.id,
            commit = index,
            min_index,
            "applied prepare merge"
        );
        self.raw.mut_store().set_region(prepared);
        self.merge = Some(state);
        self.merge_proposed_at = None;
        outcome.region_changed = true;
        let err = Error::ProposalInMergingMode(region.id);
        self.reads.fail_all(&err);
        Ok(())
    }

    /// Applies a RollbackMerge of the prepare at `commit`: the region serves again.
    pub(super) fn apply_rollback_merge(
        &mut self,
        region: &metapb::Region,
        commit: u64,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        if self.merge.as_ref().is_none_or(|m| m.commit != commit) {
            return Err(Error::InvalidMerge {
                region_id: region.id,
                message: format!("no prepared merge at index {commit} to roll back"),
            });
        }
        let back = merge::rolled_back_region(region);
        write_region_state(wb, &back, RegionState::Normal);
        tracing::info!(
            region_id = region.id,
            peer_id = self.peer_id,
            commit,
            "rolled back merge"
        );
        self.raw.mut_store().set_region(back);
        self.merge = None;
        self.merge_proposed_at = None;
        outcome.region_changed = true;
        Ok(())
    }

    /// Proposes absorbing `source` (prepared at `commit`, carrying its log `entries`) into this
    /// region, which must still be at the epoch in `header` (the one the prepare planned).
    pub fn propose_commit_merge(
        &mut self,
        header: &CmdHeader,
        source: metapb::Region,
        commit: u64,
        entries: Vec<Entry>,
    ) -> Result<()> {
        self.check_request(header)?;
        self.check_not_merging()?;
        merge::merged_region(&source, self.region())?;
        self.flush_writes();
        let cmd = RaftCmd {
            header: self.own_header(),
            body: CmdBody::CommitMerge {
                source,
                commit,
                entries,
            },
        };
        self.raw
            .propose(vec![], cmd.encode())
            .map_err(|_| self.not_leader())
    }

    /// The checks of a CommitMerge that depend on this (target) region only: the same on every
    /// replica, so a commit refused here is refused everywhere.
    pub(super) fn check_commit_merge(&self, header: &CmdHeader, source: &metapb::Region) -> Result<()> {
        let region = self.region();
        if header.region_id != region.id {
            return Err(Error::RegionNotFound(header.region_id));
        }
        check_whole_epoch(region, header)?;
        self.check_not_merging()?;
        merge::merged_region(source, region).map(|_| ())
    }

    /// Applies a CommitMerge whose source the store has absorbed: the region takes `merged`.
    pub(crate) fn finish_commit_merge(
        &mut self,
        pending: &PendingCommitMerge,
        merged: metapb::Region,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) {
        write_region_state(wb, &merged, RegionState::Normal);
        tracing::info!(
            region_id = merged.id,
            peer_id = self.peer_id,
            source = pending.source.id,
            epoch = ?merged.region_epoch,
            "applied commit merge"
        );
        self.raw.mut_store().set_region(merged);
        self.approximate_size = None;
        self.approximate_keys = None;
        self.may_skip_split_check = false;
        outcome.region_changed = true;
        self.finish_entry(
            pending.entry.index,
            pending.entry.term,
            Ok(()),
            Instant::now(),
            outcome,
        );
        self.write_apply_state(wb);
    }

    /// The source side of a commit on this store: applies this (source) peer's log up to the
    /// prepare at `commit`, from its own log below the carried `entries` and from them above.
    /// Returns why it cannot (yet).
    pub(crate) fn catch_up_for_merge(
        &mut self,
        commit: u64,
        carried: &[Entry],
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> std::result::Result<(), String> {
        if !self.is_initialized() || self.applying_snap.is_some() {
            return Err("the local source peer has no data yet".into());
        }
        let applied = self.raw.store().apply_state().applied_index;
        if applied < commit {
            let first_carried = carried.first().map_or(commit + 1, |e| e.index);
            let mut entries = Vec::new();
            if applied + 1 < first_carried {
                entries = self
                    .raw
                    .raft
                    .raft_log
                    .slice(
                        applied + 1,
                        first_carried,
                        None,
                        raft::GetEntriesContext::empty(false),
                    )
                    .map_err(|e| {
                        format!("the local source log lacks entries {applied}..{first_carried}: {e}")
                    })?;
            }
            entries.extend(carried.iter().filter(|e| e.index > applied).cloned());
            let contiguous = entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == applied + 1 + i as u64);
            if !contiguous || entries.last().is_none_or(|e| e.index != commit) {
                return Err(format!(
                    "no contiguous source log from {} to {commit}",
                    applied + 1
                ));
            }
            if entries.iter().take(entries.len() - 1).any(is_admin_entry) {
                return Err("the source log to catch up holds an admin command".into());
            }
            tracing::info!(
                region_id = self.region_id(),
                from = applied + 1,
                to = commit,
                "catching the source of a merge up"
            );
            if self.apply_entries(entries, Instant::now(), wb, outcome).is_some() {
                return Err("the source log to catch up holds a commit merge".into());
            }
        }
        match &self.merge {
            Some(m) if m.commit == commit => Ok(()),
            Some(m) => Err(format!(
                "the local source prepared at {} instead of {commit}",
                m.commit
            )),
            None => Err("the local source has not prepared the merge".into()),
        }
    }
}

/// Whether an entry is a membership change or an admin command other than log compaction.
fn is_admin_entry(e: &Entry) -> bool {
    match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => false,
        EntryType::EntryNormal => !matches!(
            RaftCmd::decode(&e.data).map(|c| c.body),
            Ok(CmdBody::Write(_) | CmdBody::CompactLog { .. } | CmdBody::PrepareMerge { .. })
        ),
        _ => true,
    }
}
