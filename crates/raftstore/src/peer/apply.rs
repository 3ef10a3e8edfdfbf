//! Applying committed entries of one peer: data writes, log compaction and membership
//! changes, each checked against the region's epoch and range again, into the store loop's KV
//! batch; and answering the proposals they complete.

use super::*;
use crate::split::{split_regions, SplitRequest};

/// What applying committed entries produced, answered after the KV batch is written.
pub(crate) struct ApplyOutcome {
    pub responses: Vec<(WriteCb, Result<()>)>,
    /// When each applied proposal with a waiting caller was handed to the router.
    pub answered_sent_at: Vec<Instant>,
    /// Log entries `[from, to]` may be deleted from the raft engine.
    pub compacted: Option<(u64, u64)>,
    /// A membership change was applied (PD should hear of it).
    pub region_changed: bool,
    /// This peer was removed from its region: the store destroys it.
    pub destroy: bool,
    /// Batch splits applied, in log order: the store records the new regions and creates
    /// their peers.
    pub splits: Vec<SplitOutcome>,
}

/// A CommitMerge this region may apply once the store caught the local source peer up to
/// `commit`; `rest` are the committed entries after it.
pub(crate) struct PendingCommitMerge {
    pub entry: Entry,
    pub source: metapb::Region,
    pub commit: u64,
    pub entries: Vec<Entry>,
    pub rest: Vec<Entry>,
}

/// A batch split applied by a peer.
pub(crate) struct SplitOutcome {
    /// Every region after the split: the new ones in key order, then the split one.
    pub regions: Vec<metapb::Region>,
}

impl ApplyOutcome {
    pub fn new() -> ApplyOutcome {
        ApplyOutcome {
            responses: vec![],
            answered_sent_at: vec![],
            compacted: None,
            region_changed: false,
            destroy: false,
            splits: Vec::new(),
        }
    }
}

impl<ER: KvEngine, S: Clone + Send + 'static> Peer<ER, S> {
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
            for (cb, _) in p.cbs {
                out.push((cb, Err(Error::StaleCommand)));
            }
        }
        None
    }

    /// Applies committed `entries` (seen committed at `committed_at`) into `wb`; advances the
    /// in-memory apply state. Entries at or below the applied index (a merge caught this peer up
    /// past what Raft handed it) are skipped. Stops before a CommitMerge that passed this
    /// region's checks: it needs the local source peer, which only the store has, and is
    /// returned with the entries after it.
    pub(crate) fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        committed_at: Instant,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Option<PendingCommitMerge> {
        let mut iter = entries.into_iter();
        while let Some(e) = iter.next() {
            let index = e.index;
            if index <= self.raw.store().apply_state().applied_index {
                continue;
            }
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => Ok(()),
                EntryType::EntryNormal => match RaftCmd::decode(&e.data) {
                    Ok(RaftCmd {
                        header,
                        body:
                            CmdBody::CommitMerge {
                                source,
                                commit,
                                entries,
                            },
                    }) => match self.check_commit_merge(&header, &source) {
                        Ok(()) => {
                            self.write_apply_state(wb);
                            return Some(PendingCommitMerge {
                                entry: e,
                                source,
                                commit,
                                entries,
                                rest: iter.collect(),
                            });
                        }
                        Err(err) => Err(err),
                    },
                    Ok(cmd) => self.apply_command(cmd, index, wb, outcome),
                    Err(err) => Err(err),
                },
                EntryType::EntryConfChangeV2 => self.apply_conf_change(&e, wb, outcome),
                EntryType::EntryConfChange => {
                    // Atoll proposes only V2 changes; a V1 entry cannot come from it.
                    tracing::error!(
                        region_id = self.region_id(),
                        index,
                        "skipping a conf change v1 entry"
                    );
                    Err(Error::Codec("conf change v1 entries are not supported".into()))
                }
            };
            self.finish_entry(index, e.term, result, committed_at, outcome);
        }
        self.write_apply_state(wb);
        None
    }

    /// Answers the proposal of the entry at `index` (if this peer made it) with `result`, and
    /// moves the in-memory applied index to it.
    pub(crate) fn finish_entry(
        &mut self,
        index: u64,
        term: u64,
        result: Result<()>,
        committed_at: Instant,
        outcome: &mut ApplyOutcome,
    ) {
        if let Err(err) = &result {
            if !matches!(err, Error::EpochNotMatch { .. } | Error::KeyNotInRegion { .. }) {
                tracing::warn!(region_id = self.region_id(), index, error = %err, "entry not applied");
            }
        }
        if let Some(p) = self.take_callback(index, term, &mut outcome.responses) {
            // A quorum accepted this leader's entry after it was proposed.
            if self.is_leader() && term == self.raw.raft.term && self.raw.raft.lead_transferee.is_none() {
                self.lease.renew(p.proposed_at, term);
            }
            metrics::COMMIT_LOG_DURATION.observe(
                committed_at
                    .saturating_duration_since(p.proposed_at)
                    .as_secs_f64(),
            );
            for (cb, sent_at) in p.cbs {
                outcome.responses.push((cb, result.clone()));
                outcome.answered_sent_at.push(sent_at);
            }
        }
        self.raw.mut_store().apply_state_mut().applied_index = index;
    }

    pub(crate) fn write_apply_state(&self, wb: &mut WriteBatch) {
        let apply = *self.raw.store().apply_state();
        wb.put_cf(CF_RAFT, keys::apply_state_key(self.region_id()), apply.encode());
    }

    /// Applies a membership change entry: the region's peers and `conf_ver` change in the same
    /// KV batch as the apply state. An entry without context is raft-rs leaving a joint
    /// configuration.
    fn apply_conf_change(
        &mut self,
        e: &Entry,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| Error::Codec(err.to_string()))?;
        let region = self.region().clone();
        let new_region = if e.context.is_empty() {
            if !cc.changes.is_empty() {
                return Err(Error::Codec("conf change without context".into()));
            }
            conf_change::leave_joint(&region)
        } else {
            let cmd = RaftCmd::decode(&e.context)?;
            let CmdBody::ChangePeer(changes) = cmd.body else {
                return Err(Error::Codec("conf change entry without peer changes".into()));
            };
            if cmd.header.region_id != region.id {
                return Err(Error::RegionNotFound(cmd.header.region_id));
            }
            check_whole_epoch(&region, &cmd.header)?;
            conf_change::apply(&region, &changes)?
        };
        let cs = self.raw.apply_conf_change(&cc)?;
        if !conf_change::matches(&new_region, &cs) {
            tracing::error!(
                region_id = region.id,
                region = ?new_region,
                conf_state = ?cs,
                "region peers disagree with raft's configuration"
            );
        }
        tracing::info!(
            region_id = region.id,
            peer_id = self.peer_id,
            epoch = ?new_region.region_epoch,
            peers = ?new_region.peers,
            "applied conf change"
        );
        write_region_state(wb, &new_region, RegionState::Normal);
        if !new_region.peers.iter().any(|p| p.id == self.peer_id) {
            outcome.destroy = true;
        }
        self.raw.mut_store().set_region(new_region);
        outcome.region_changed = true;
        Ok(())
    }

    fn apply_command(
        &mut self,
        cmd: RaftCmd,
        index: u64,
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
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
            CmdBody::ChangePeer(_) => Err(Error::Codec("peer changes outside a conf change entry".into())),
            CmdBody::BatchSplit(reqs) => {
                check_whole_epoch(&region, &cmd.header)?;
                self.check_not_merging()?;
                self.apply_split(&region, &reqs, wb, outcome)
            }
            CmdBody::PrepareMerge { min_index, target } => {
                check_whole_epoch(&region, &cmd.header)?;
                self.apply_prepare_merge(&region, min_index, target, index, wb, outcome)
            }
            CmdBody::RollbackMerge { commit } => {
                check_whole_epoch(&region, &cmd.header)?;
                self.apply_rollback_merge(&region, commit, wb, outcome)
            }
            // Handled by `apply_entries` (it needs the store).
            CmdBody::CommitMerge { .. } => Err(Error::Codec("commit merge applied out of place".into())),
        }
    }

    /// Cuts the region: the shrunk region's state goes into the same batch as the apply
    /// state; the store adds the new regions' states to that batch (it knows which of them it
    /// already has).
    fn apply_split(
        &mut self,
        region: &metapb::Region,
        reqs: &[SplitRequest],
        wb: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        let regions = split_regions(region, reqs)?;
        let Some(derived) = regions.last() else {
            return Err(Error::Codec("a split without regions".into()));
        };
        write_region_state(wb, derived, RegionState::Normal);
        tracing::info!(
            region_id = region.id,
            peer_id = self.peer_id,
            new_regions = ?regions[..regions.len() - 1].iter().map(|r| r.id).collect::<Vec<_>>(),
            split_keys = ?reqs.iter().map(|r| &r.split_key).collect::<Vec<_>>(),
            "applied split"
        );
        self.raw.mut_store().set_region(derived.clone());
        // The region's size is unknown again until the next check.
        self.approximate_size = None;
        self.approximate_keys = None;
        self.may_skip_split_check = false;
        outcome.region_changed = true;
        outcome.splits.push(SplitOutcome { regions });
        Ok(())
    }
}

/// A request or proposal must carry the region's current epoch, both `version` (split, merge)
/// and `conf_ver` (membership).
pub(crate) fn check_whole_epoch(region: &metapb::Region, header: &CmdHeader) -> Result<()> {
    check_epoch(region, header)?;
    let epoch = region.region_epoch.unwrap_or_default();
    if header.conf_ver != epoch.conf_ver {
        return Err(epoch_not_match(region, header));
    }
    Ok(())
}

fn epoch_not_match(region: &metapb::Region, header: &CmdHeader) -> Error {
    let epoch = region.region_epoch.unwrap_or_default();
    Error::EpochNotMatch {
        region_id: region.id,
        message: format!(
            "current epoch of region {} is conf_ver: {} version: {}, but you sent conf_ver: {} version: {}",
            region.id, epoch.conf_ver, epoch.version, header.conf_ver, header.version
        ),
        current_regions: vec![region.clone()],
    }
}

/// When a write is applied only its `version` must still match: a membership change between
/// proposing and applying it does not change which keys the region holds.
pub(crate) fn check_epoch(region: &metapb::Region, header: &CmdHeader) -> Result<()> {
    let epoch = region.region_epoch.unwrap_or_default();
    if header.version != epoch.version {
        return Err(epoch_not_match(region, header));
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
