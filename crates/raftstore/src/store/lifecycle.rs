//! Peers coming and going in the store loop: created from a leader's message, destroyed when
//! removed (leaving a tombstone), told of their removal, and probing for it.

use super::*;

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    /// Creates an uninitialized peer for a message to a region this store does not have,
    /// unless the message is stale. Returns whether the peer exists now.
    pub(super) fn maybe_create_peer(&mut self, env: &RaftEnvelope) -> bool {
        let region_id = env.region_id;
        if !is_initial_msg(&env.message) {
            return false;
        }
        if let Some(tomb) = self.tombstones.get(&region_id) {
            let tomb_epoch = tomb.region_epoch.unwrap_or_default();
            let stale_peer = tomb.peers.iter().any(|p| p.id == env.to_peer.id);
            if stale_peer || !epoch_older(&tomb_epoch, &env.region_epoch) {
                tracing::debug!(region_id, "message for a destroyed peer dropped");
                return false;
            }
        }
        let overlaps = self
            .peers
            .values()
            .any(|p| p.is_initialized() && ranges_overlap(p.region(), &env.start_key, &env.end_key));
        if overlaps {
            tracing::debug!(region_id, "message overlapping a local region dropped");
            return false;
        }
        let storage = match PeerStorage::new_uninitialized(self.raft_engine.clone(), region_id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(region_id, error = %e, "cannot create peer storage");
                return false;
            }
        };
        match Peer::new(storage, env.to_peer.id, &self.peer_cfg) {
            Ok(peer) => {
                tracing::info!(region_id, peer_id = env.to_peer.id, from = ?env.from_peer, "created peer from a message");
                self.peers.insert(region_id, peer);
                self.update_region_metrics();
                true
            }
            Err(e) => {
                tracing::error!(region_id, error = %e, "cannot create peer");
                false
            }
        }
    }

    pub(super) fn on_gc_message(&mut self, env: &RaftEnvelope) {
        let Some(peer) = self.peers.get(&env.region_id) else {
            return;
        };
        if peer.peer_id != env.to_peer.id {
            return;
        }
        let local = peer.region().region_epoch.unwrap_or_default();
        if peer.is_initialized() && !epoch_older(&local, &env.region_epoch) {
            return;
        }
        tracing::info!(
            region_id = env.region_id,
            peer_id = peer.peer_id,
            "removed from the region; destroying"
        );
        let mut region = peer.region().clone();
        if !peer.is_initialized() {
            region.region_epoch = Some(env.region_epoch);
        }
        if let Err(e) = self.destroy_peer(env.region_id, Some(region)) {
            tracing::error!(region_id = env.region_id, error = %e, "destroying a removed peer failed");
        }
    }

    /// Removes the peer of `region_id` with its data and log; `tomb` (the region as last known,
    /// with this peer's removal) is persisted as a tombstone.
    pub(super) fn destroy_peer(&mut self, region_id: u64, tomb: Option<metapb::Region>) -> Result<()> {
        if !self.peers.contains_key(&region_id) {
            return Ok(());
        }
        self.drain_writer()?;
        self.drain_log_writer()?;
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        self.merge_waiting.remove(&region_id);
        if let Some(cancel) = peer.apply_cancel.take() {
            // The snapshot worker may be writing this region: once this returns it writes
            // nothing more (neither data nor `Normal` over the tombstone).
            cancel.cancel();
        }
        peer.fail_all(Error::RegionNotFound(region_id));
        let mut region = tomb.unwrap_or_else(|| peer.region().clone());
        // Remember this peer's id in the tombstone so its stale messages are recognized.
        if !region.peers.iter().any(|p| p.id == peer.peer_id) {
            region.peers.push(metapb::Peer {
                id: peer.peer_id,
                store_id: self.cfg.store_id,
                ..Default::default()
            });
        }
        let mut kv_wb = WriteBatch::new();
        if peer.is_initialized() {
            let data = peer.region();
            for cf in crate::snap::SNAP_CFS {
                kv_wb.delete_range_cf(
                    cf,
                    txn_types::keys::data_key(&data.start_key),
                    txn_types::keys::data_end_key(&data.end_key),
                );
            }
        }
        kv_wb.delete_cf(CF_RAFT, keys::apply_state_key(region_id));
        write_region_state(&mut kv_wb, &region, RegionState::Tombstone);
        self.kv.write(&kv_wb, true)?;
        let mut raft_wb = WriteBatch::new();
        peer.raw.store().clear_log(&mut raft_wb);
        self.raft_engine.write(&raft_wb, true)?;
        self.snap_mgr.remove_region_files(region_id, "gen", None);
        self.snap_mgr.remove_region_files(region_id, "rcv", None);
        self.tombstones.insert(region_id, region);
        self.update_region_metrics();
        tracing::info!(region_id, peer_id = peer.peer_id, "peer destroyed");
        Ok(())
    }

    /// A follower or learner that heard nothing from its group for three election timeouts asks
    /// the region's other peers (an empty heartbeat response): a member that removed it answers
    /// with a tombstone notice, so a peer removed while cut off is destroyed after the heal even
    /// if it never campaigns (learners do not).
    pub(super) fn membership_probe(
        peer: &mut Peer<ER, EK::Snap>,
        store_id: u64,
        election_timeout: Duration,
    ) -> Option<Vec<RaftEnvelope>> {
        let quiet = election_timeout * 3;
        if peer.is_leader()
            || !peer.is_initialized()
            || peer.applying_snap.is_some()
            || peer.last_message_at.elapsed() < quiet
            || peer.last_probe_at.elapsed() < quiet
        {
            return None;
        }
        peer.last_probe_at = Instant::now();
        let region = peer.region();
        let from = peer.peer_by_id(peer.peer_id)?;
        Some(
            region
                .peers
                .iter()
                .filter(|p| p.id != peer.peer_id && p.store_id != store_id)
                .map(|to| {
                    let mut m = raft::eraftpb::Message::default();
                    m.set_msg_type(MessageType::MsgHeartbeatResponse);
                    m.from = peer.peer_id;
                    m.to = to.id;
                    m.term = peer.raw.raft.term;
                    RaftEnvelope {
                        region_id: region.id,
                        from_peer: from,
                        to_peer: *to,
                        region_epoch: region.region_epoch.unwrap_or_default(),
                        start_key: region.start_key.clone(),
                        end_key: region.end_key.clone(),
                        is_tombstone: false,
                        message: m,
                    }
                })
                .collect(),
        )
    }
}
