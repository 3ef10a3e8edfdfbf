//! Splits in the store loop: sending leaders to the split checker, asking the node for a split
//! where the checker found keys, proposing the split, and creating the new regions' peers once
//! a peer applied it.

use super::*;
use crate::cmd::CmdHeader;
use crate::peer::SplitOutcome;
use crate::split_check::{CheckPolicy, CheckResult, CheckTask};

/// What this store already has of a region a split creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalPeer {
    /// Nothing, or an uninitialized peer with the split's peer id: the split creates it.
    Absent,
    /// A tombstone: this store's peer of the new region was already removed elsewhere in the
    /// region's history; the split's copy of its data is deleted.
    Removed,
    /// An initialized peer (from a snapshot) or a newer uninitialized one: left alone.
    Present,
}

/// What this store has of region `region_id` for a split that would create its peer
/// `peer_id`.
fn local_peer<ER: KvEngine, S: Clone + Send + 'static>(
    peers: &HashMap<u64, Peer<ER, S>>,
    tombstones: &HashMap<u64, metapb::Region>,
    region_id: u64,
    peer_id: u64,
) -> LocalPeer {
    match peers.get(&region_id) {
        Some(p) if p.is_initialized() || p.peer_id != peer_id => LocalPeer::Present,
        Some(_) => LocalPeer::Absent,
        None if tombstones.contains_key(&region_id) => LocalPeer::Removed,
        None => LocalPeer::Absent,
    }
}

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    /// Sends every leader that was written enough since its last check (or never checked) to
    /// the split checker.
    pub(super) fn on_split_check_tick(&mut self) {
        let diff = self.cfg.split.check_diff;
        for peer in self.peers.values_mut() {
            if !peer.is_leader()
                || !peer.is_initialized()
                || peer.applying_snap.is_some()
                || peer.split_check_pending
            {
                continue;
            }
            let written = peer.written_bytes.saturating_sub(peer.split_checked_written);
            if peer.may_skip_split_check && written < diff {
                continue;
            }
            peer.split_check_pending = true;
            peer.may_skip_split_check = true;
            peer.split_checked_written = peer.written_bytes;
            let task = CheckTask {
                region: peer.region().clone(),
                policy: CheckPolicy::Thresholds,
            };
            if self.split_tx.send(task).is_err() {
                return;
            }
        }
    }

    /// PD asked for a split at `split_keys`, or in the middle of the region if none.
    /// Keys outside the region, on its boundaries or repeated are dropped (PD may send a
    /// region every key of a batch that falls in it).
    pub(super) fn on_split_region(&mut self, header: CmdHeader, mut split_keys: Vec<Vec<u8>>) {
        let Some(peer) = self.peers.get_mut(&header.region_id) else {
            return;
        };
        if let Err(e) = peer.check_request(&header) {
            tracing::info!(region_id = header.region_id, error = %e, "split not started");
            return;
        }
        let half = split_keys.is_empty();
        let region = peer.region();
        split_keys.sort();
        split_keys.dedup();
        split_keys.retain(|k| {
            k.as_slice() > region.start_key.as_slice()
                && (region.end_key.is_empty() || k.as_slice() < region.end_key.as_slice())
        });
        if !half {
            if split_keys.is_empty() {
                return;
            }
            let _ = self.events.send(StoreEvent::AskSplit {
                region: peer.region().clone(),
                split_keys,
            });
            return;
        }
        peer.split_check_pending = true;
        let _ = self.split_tx.send(CheckTask {
            region: peer.region().clone(),
            policy: CheckPolicy::Half,
        });
    }

    /// The checker measured a region: remember its size, and if it should split (and is still
    /// as checked, and led here), ask the node to get ids from PD.
    pub(super) fn on_split_checked(
        &mut self,
        region_id: u64,
        epoch: metapb::RegionEpoch,
        result: Option<CheckResult>,
    ) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        peer.split_check_pending = false;
        let Some(result) = result else { return };
        let current = peer.region().region_epoch.unwrap_or_default();
        if current.version != epoch.version {
            return;
        }
        peer.approximate_size = Some(result.size);
        peer.approximate_keys = Some(result.keys);
        if result.split_keys.is_empty() || !peer.is_leader() {
            return;
        }
        tracing::info!(
            region_id,
            keys = result.split_keys.len(),
            size = result.size,
            key_count = result.keys,
            "region should split"
        );
        metrics::PROPOSAL_TOTAL.with_label_values(&["split_check"]).inc();
        let _ = self.events.send(StoreEvent::AskSplit {
            region: peer.region().clone(),
            split_keys: result.split_keys,
        });
    }

    /// Adds the new regions of an applied split to the apply batch `wb` (their region states
    /// and initial apply states), except those this store already has or had; returns those
    /// (their peers are not created).
    pub(super) fn write_split_regions(&self, split: &SplitOutcome, wb: &mut WriteBatch) -> Vec<u64> {
        let mut skipped = vec![];
        let new = split.regions.len().saturating_sub(1);
        for r in &split.regions[..new] {
            let peer_id = r
                .peers
                .iter()
                .find(|p| p.store_id == self.cfg.store_id)
                .map_or(0, |p| p.id);
            match local_peer(&self.peers, &self.tombstones, r.id, peer_id) {
                LocalPeer::Absent => {
                    write_region_state(wb, r, RegionState::Normal);
                    wb.put_cf(
                        CF_RAFT,
                        keys::apply_state_key(r.id),
                        ApplyState::initial().encode(),
                    );
                }
                LocalPeer::Removed => {
                    for cf in crate::snap::SNAP_CFS {
                        wb.delete_range_cf(
                            cf,
                            txn_types::keys::data_key(&r.start_key),
                            txn_types::keys::data_end_key(&r.end_key),
                        );
                    }
                    skipped.push(r.id);
                }
                LocalPeer::Present => skipped.push(r.id),
            }
        }
        if !skipped.is_empty() {
            tracing::info!(?skipped, "split regions this store already has or had");
        }
        skipped
    }

    /// A peer applied a split: the new regions' peers on this store start (those the split
    /// may create here), campaigning at once if the split region is led here.
    pub(super) fn on_split_applied(&mut self, region_id: u64, split: SplitOutcome, skipped: &[u64]) {
        let Some(parent) = self.peers.get(&region_id) else {
            return;
        };
        let lead = parent.is_leader();
        let store_id = self.cfg.store_id;
        let new = split.regions.len().saturating_sub(1);
        for region in &split.regions[..new] {
            if skipped.contains(&region.id) {
                continue;
            }
            let Some(me) = region.peers.iter().find(|p| p.store_id == store_id).copied() else {
                continue;
            };
            if let Some(mut uninit) = self.peers.remove(&region.id) {
                // Created from a message of the new region before this split arrived: the
                // split gives it its data (its persisted vote is kept by the storage).
                uninit.fail_all(Error::RegionNotFound(region.id));
            }
            let storage =
                match PeerStorage::open(self.raft_engine.clone(), region.clone(), ApplyState::initial()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(region_id = region.id, error = %e, "cannot open a split region");
                        continue;
                    }
                };
            let mut peer = match Peer::new(storage, me.id, &self.peer_cfg) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(region_id = region.id, error = %e, "cannot create a split peer");
                    continue;
                }
            };
            // Nobody led the new region before: this peer promised no lease and may vote at once.
            if let Some(past) = Instant::now().checked_sub(self.cfg.election_timeout()) {
                peer.started_at = past;
            }
            if lead {
                if let Err(e) = peer.raw.campaign() {
                    tracing::warn!(region_id = region.id, error = %e, "split peer cannot campaign");
                }
            }
            self.peers.insert(region.id, peer);
            self.dirty.insert(region.id);
        }
        if lead {
            let _ = self.events.send(StoreEvent::RegionSplit(split.regions));
        }
        self.update_region_metrics();
    }
}
