//! Region snapshots in the store loop: asking the snapshot worker for one when raft-rs needs
//! it, taking a received one in (persisting `Applying`, handing the data to the worker), and
//! finishing it.

use super::*;

impl<EK: KvEngine, ER: KvEngine, T: Transport> StoreLoop<EK, ER, T> {
    /// A snapshot message is stepped only when its file arrived and the peer can take it.
    /// Returns the local regions it replaces (merged into its region), or `None` to drop it.
    pub(super) fn snapshot_receivable(&self, env: &RaftEnvelope) -> Option<Vec<u64>> {
        let peer = self.peers.get(&env.region_id)?;
        if peer.applying_snap.is_some() || self.merge_waiting.contains_key(&env.region_id) {
            return None;
        }
        let snap = env.message.get_snapshot();
        let meta = match SnapMeta::decode(&snap.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(region_id = env.region_id, error = %e, "undecodable snapshot dropped");
                return None;
            }
        };
        let key = SnapKey {
            region_id: env.region_id,
            term: snap.get_metadata().term,
            index: snap.get_metadata().index,
        };
        if meta.region.id != env.region_id || !self.snap_mgr.recv_path(&key).exists() {
            tracing::warn!(
                region_id = env.region_id,
                ?key,
                "snapshot message without its file dropped"
            );
            return None;
        }
        // The snapshot's range must not overlap another live region of this store.
        let replaced = self.replaced_by_snapshot(&meta.region);
        if replaced.is_none() {
            tracing::warn!(
                region_id = env.region_id,
                "snapshot overlapping another local region dropped"
            );
        }
        replaced
    }

    /// Hands requested snapshot generations to the worker, with a KV snapshot taken now: the
    /// store loop applies entries itself, so the engine is exactly at the applied index.
    pub(super) fn schedule_snapshot_gen(&mut self) {
        let requested = self.dirty.iter().any(|id| {
            self.peers
                .get(id)
                .is_some_and(|p| matches!(*p.raw.store().snap_gen.borrow(), SnapGen::Requested))
        });
        if !requested {
            return;
        }
        // The engine snapshot must be exactly at the applied index.
        if let Err(e) = self.drain_writer() {
            tracing::error!(error = %e, "apply writer failed");
            return;
        }
        let mut kv_snap = None;
        for id in &self.dirty {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            if !matches!(*peer.raw.store().snap_gen.borrow(), SnapGen::Requested) {
                continue;
            }
            let apply = *peer.raw.store().apply_state();
            let Ok(term) = raft::Storage::term(peer.raw.store(), apply.applied_index) else {
                continue;
            };
            let key = SnapKey {
                region_id: peer.region_id(),
                term,
                index: apply.applied_index,
            };
            let snap = kv_snap.get_or_insert_with(|| self.kv.snapshot()).clone();
            let task = SnapTask::Generate {
                key,
                snap,
                region: peer.region().clone(),
            };
            if self.snap_tx.send(task).is_ok() {
                *peer.raw.store().snap_gen.borrow_mut() = SnapGen::Generating;
                metrics::SNAPSHOT_TOTAL.with_label_values(&["generate"]).inc();
            }
        }
    }

    pub(super) fn on_snapshot_generated(&mut self, region_id: u64, key: SnapKey, result: Result<SnapMeta>) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        let mut gen = peer.raw.store().snap_gen.borrow_mut();
        *gen = match result {
            Ok(meta) => {
                let mut s = raft::eraftpb::Snapshot::default();
                let md = s.mut_metadata();
                md.index = key.index;
                md.term = key.term;
                md.set_conf_state(crate::conf_change::conf_state_of(&meta.region));
                s.data = meta.encode().into();
                SnapGen::Ready(s)
            }
            Err(_) => SnapGen::Idle,
        };
    }

    pub(super) fn on_snapshot_applied(&mut self, region_id: u64, key: SnapKey, result: Result<()>) {
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if peer.applying_snap != Some(key) {
            return;
        }
        if let Err(e) = result {
            // The data is unusable until applied; the peer stays out of service (Applying),
            // and a restart retries.
            tracing::error!(region_id, error = %e, "snapshot not applied; peer stays applying");
            return;
        }
        peer.applying_snap = None;
        peer.apply_cancel = None;
        peer.durable_applied = key.index;
        peer.raw.advance_apply_to(key.index);
        metrics::SNAPSHOT_TOTAL.with_label_values(&["applied"]).inc();
        self.update_region_metrics();
    }

    /// A follower got a snapshot: persist its position (region `Applying`), then let the
    /// worker write its data. The peer's Ready is not handled again until that is done. This
    /// Ready is persisted synchronously (after every earlier log batch), so that raft-rs counts
    /// the snapshot as persisted before the apply finishes.
    pub(super) fn on_ready_snapshot(
        &mut self,
        region_id: u64,
        mut rd: raft::Ready,
        to_apply: &mut Vec<(u64, Vec<raft::eraftpb::Entry>, Instant)>,
    ) -> Result<()> {
        // Entries applied or persisted before the snapshot must be written first.
        self.drain_writer()?;
        self.drain_log_writer()?;
        let snap = rd.snapshot().clone();
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        let meta = SnapMeta::decode(&snap.data)?;
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let key = SnapKey {
            region_id,
            term,
            index,
        };
        let old = peer.is_initialized().then(|| peer.region().clone());
        let mut region = meta.region.clone();
        region.id = region_id;
        let apply = ApplyState {
            applied_index: index,
            truncated_index: index,
            truncated_term: term,
        };
        let mut kv_wb = WriteBatch::new();
        kv_wb.put_cf(CF_RAFT, keys::apply_state_key(region_id), apply.encode());
        write_region_state(&mut kv_wb, &region, RegionState::Applying);
        // Durable before the raft state moves: a restart finds `Applying` and redoes the apply.
        self.kv.write(&kv_wb, true)?;
        let mut raft_wb = WriteBatch::new();
        peer.raw
            .mut_store()
            .restore_snapshot(index, term, region.clone(), &mut raft_wb);
        let seq = self.log_writer.next_seq();
        peer.raw
            .mut_store()
            .append(rd.entries(), rd.hs(), &mut raft_wb, seq)?;
        self.raft_engine.write(&raft_wb, true)?;
        peer.raw.mut_store().on_persisted(seq);
        peer.on_read_states(rd.take_read_states());
        let msgs = rd.take_messages();
        let committed = rd.take_committed_entries();
        let persisted_msgs = rd.take_persisted_messages();
        let mut light = peer.raw.advance_append(rd);
        let light_msgs = light.take_messages();
        let committed_after = light.take_committed_entries();
        peer.applying_snap = Some(key);
        let cancel = ApplyCancel::default();
        peer.apply_cancel = Some(cancel.clone());
        for list in [committed, committed_after] {
            if !list.is_empty() {
                tracing::warn!(region_id, "entries committed with a snapshot wait for its apply");
                to_apply.push((region_id, list, Instant::now()));
            }
        }
        tracing::info!(region_id, index, term, "applying snapshot");
        self.send_messages(region_id, msgs);
        self.send_messages(region_id, persisted_msgs);
        self.send_messages(region_id, light_msgs);
        fail::fail_point!("raftstore_before_snapshot_apply_task");
        let _ = self.snap_tx.send(SnapTask::Apply {
            key,
            region,
            old,
            cancel,
        });
        Ok(())
    }
}
