//! Splits in the store loop: sending leaders to the split checker, asking the node for a split
//! where the checker found keys, proposing the split, and creating the new regions' peers once
//! a peer applied it.

use super::*;
use crate::cmd::CmdHeader;
use crate::peer::{LocalPeer, SplitOutcome};
use crate::split_check::{CheckPolicy, CheckResult, CheckTask};

/// What this store has of region `region_id` for a split that would create its peer
/// `peer_id` (see [`LocalPeer`]).
pub(super) fn local_peer<ER: KvEngine, S: Clone + Send + 'static>(
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

    /// A peer applied a split: the new regions' peers on this store start (those the split
    /// may create here), campaigning at once if the split region is led here.
    pub(super) fn on_split_applied(&mut self, region_id: u64, split: SplitOutcome) {
        let Some(parent) = self.peers.get(&region_id) else {
            return;
        };
        let lead = parent.is_leader();
        let store_id = self.cfg.store_id;
        let new = split.regions.len().saturating_sub(1);
        for region in &split.regions[..new] {
            if split.skipped.contains(&region.id) {
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
