//! Raft messages in the store loop: routing a received message to its peer (creating the peer,
//! answering a removed sender, refusing votes while just started, checking snapshots), and
//! sending a peer's messages with the region's addressing.

use super::*;

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    pub(super) fn on_raft_message(&mut self, env: RaftEnvelope) {
        let grows = match env.message.get_msg_type() {
            MessageType::MsgAppend => !env.message.entries.is_empty(),
            MessageType::MsgSnapshot => true,
            _ => false,
        };
        if grows && self.cfg.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            // No room: the leader sends these again once the disk has space.
            metrics::DISK_FULL_DROPPED.inc();
            return;
        }
        if env.is_tombstone {
            self.on_gc_message(&env);
            return;
        }
        if !self.peers.contains_key(&env.region_id) && !self.maybe_create_peer(&env) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if env.to_peer.id != peer.peer_id {
            // Peer ids only grow: a message for a newer peer of the region on this store means
            // the local one was removed without learning it. Make way for the new one.
            if env.to_peer.id > peer.peer_id {
                tracing::info!(
                    region_id = env.region_id,
                    stale = peer.peer_id,
                    new = env.to_peer.id,
                    "a newer peer of the region is addressed here; destroying the stale one"
                );
                let mut tomb = peer.region().clone();
                if !peer.is_initialized() {
                    tomb.region_epoch = Some(env.region_epoch);
                }
                if let Err(e) = self.destroy_peer(env.region_id, Some(tomb)) {
                    tracing::error!(region_id = env.region_id, error = %e, "destroying a stale peer failed");
                    return;
                }
                if !self.maybe_create_peer(&env) {
                    return;
                }
                return self.on_raft_message(env);
            }
            tracing::debug!(
                region_id = env.region_id,
                to = env.to_peer.id,
                local = peer.peer_id,
                "raft message for another peer id dropped"
            );
            return;
        }
        let msg_type = env.message.get_msg_type();
        if matches!(
            msg_type,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && env.message.get_context() != raft::CAMPAIGN_TRANSFER
            && peer.started_at.elapsed() < self.cfg.election_timeout()
        {
            // A peer that just started does not know whether it heard from a leader within the
            // election timeout: it must not vote before one has passed, or a leader's lease
            // (which counts on followers' refusals) could outlive its leadership.
            tracing::debug!(
                region_id = env.region_id,
                "vote request to a just-started peer ignored"
            );
            return;
        }
        let region = peer.region();
        let local_epoch = region.region_epoch.unwrap_or_default();
        if peer.is_initialized()
            && !region.peers.iter().any(|p| p.id == env.from_peer.id)
            && epoch_older(&env.region_epoch, &local_epoch)
        {
            // The sender was removed from the region and does not know it yet: tell it.
            let gc = RaftEnvelope {
                region_id: env.region_id,
                from_peer: env.to_peer,
                to_peer: env.from_peer,
                region_epoch: local_epoch,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
                is_tombstone: true,
                message: raft::eraftpb::Message::default(),
            };
            tracing::info!(region_id = env.region_id, stale_peer = ?env.from_peer, "telling a removed peer to destroy itself");
            self.transport.send(gc);
            return;
        }
        if env.message.get_msg_type() == MessageType::MsgSnapshot {
            let Some(replaced) = self.snapshot_receivable(&env) else {
                return;
            };
            for id in replaced {
                tracing::info!(
                    region_id = id,
                    by = env.region_id,
                    "a snapshot covers this merged-away region; destroying its peer"
                );
                if let Err(e) = self.destroy_peer(id, None) {
                    tracing::error!(region_id = id, error = %e, "destroying a merged-away peer failed");
                    return;
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        peer.last_heard.insert(env.from_peer.id, Instant::now());
        peer.last_message_at = Instant::now();
        if !peer.is_initialized() {
            peer.peer_cache.insert(env.from_peer.id, env.from_peer);
        }
        if let Err(e) = peer.raw.step(env.message) {
            tracing::debug!(region_id = env.region_id, error = %e, "raft step failed");
        }
    }

    pub(super) fn send_messages(&mut self, region_id: u64, msgs: Vec<raft::eraftpb::Message>) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if peer.is_leader()
            && msgs
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgTimeoutNow)
        {
            peer.on_timeout_now_sent();
        }
        let peer = &*peer;
        let region = peer.region();
        let from_peer = peer.peer_by_id(peer.peer_id).unwrap_or(metapb::Peer {
            id: peer.peer_id,
            store_id: self.cfg.store_id,
            ..Default::default()
        });
        for m in msgs {
            // An uninitialized peer knows the others only from the messages they sent.
            let Some(to_peer) = peer
                .peer_by_id(m.to)
                .or_else(|| peer.peer_cache.get(&m.to).copied())
            else {
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
                is_tombstone: false,
                message: m,
            });
        }
    }
}
