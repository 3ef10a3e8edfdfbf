//! A store's life at PD after it registered: removal (Up → Offline → Tombstone), the undo of
//! a removal, weights and labels.
//!
//! States (`metapb.StoreState` / `metapb.NodeState`):
//! * `Up` / `Serving` — schedulable; shown `Up`, `Disconnected` or `Down` by heartbeats;
//! * `Offline` / `Removing` — being removed: the replica checker moves every replica off it;
//!   it still heartbeats and serves until it holds no region;
//! * `Tombstone` / `Removed` — removed for good: its heartbeats and `PutStore` are answered
//!   with `STORE_TOMBSTONE`, its region heartbeats are ignored.
//!
//! Invariants: a Tombstone store never comes back; a store only becomes Tombstone from Offline
//! and only while no region in the tree has a peer on it; a removal is refused when it would
//! leave fewer Up stores than `max-replicas`; every change is persisted before it is visible.

use atoll_proto::metapb;

use super::{Cluster, State};
use crate::error::{Error, Result};
use crate::store_info::{StoreInfo, StoreWeight};

/// Why a store change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreChangeError {
    #[error("store {0} not found")]
    NotFound(u64),
    /// PD's `ErrStoreRemoved`.
    #[error("store {0} has been removed")]
    Removed(u64),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

fn has_regions(st: &State, store_id: u64) -> bool {
    st.regions
        .iter()
        .any(|r| r.meta.peers.iter().any(|p| p.store_id == store_id))
}

impl Cluster {
    fn change_store(
        &self,
        id: u64,
        change: impl FnOnce(&State, &mut StoreInfo) -> std::result::Result<bool, StoreChangeError>,
    ) -> std::result::Result<(), StoreChangeError> {
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        let Some(mut store) = st.stores.get(&id).cloned() else {
            return Err(StoreChangeError::NotFound(id));
        };
        if !change(&st, &mut store)? {
            return Ok(());
        }
        self.storage.save_store(&store.meta)?;
        tracing::info!(store = ?store.meta, "store changed");
        st.stores.insert(id, store);
        Ok(())
    }

    /// Starts removing store `id` (PD's `RemoveStore`): it becomes Offline, and Tombstone once
    /// it holds no region. Removing an Offline store again is a no-op.
    pub fn remove_store(&self, id: u64) -> std::result::Result<(), StoreChangeError> {
        let max_replicas = u64::from(self.max_replicas.load(std::sync::atomic::Ordering::Relaxed));
        self.change_store(id, |st, s| {
            if s.is_tombstone() {
                return Err(StoreChangeError::Removed(id));
            }
            if s.is_offline() {
                return Ok(false);
            }
            let up_after = st
                .stores
                .values()
                .filter(|o| o.id() != id && o.state() == metapb::StoreState::Up && !o.is_tombstone())
                .count() as u64;
            if up_after < max_replicas {
                return Err(StoreChangeError::Refused(format!(
                    "can not remove store {id} since the number of up stores would be {up_after} while need {max_replicas}"
                )));
            }
            s.meta.state = metapb::StoreState::Offline as i32;
            s.meta.node_state = metapb::NodeState::Removing as i32;
            Ok(true)
        })
    }

    /// Cancels the removal of an Offline store (PD's `UpStore`); an Up store stays Up.
    pub fn up_store(&self, id: u64) -> std::result::Result<(), StoreChangeError> {
        self.change_store(id, |_, s| {
            if s.is_tombstone() {
                return Err(StoreChangeError::Removed(id));
            }
            if s.meta.physically_destroyed {
                return Err(StoreChangeError::Refused(format!(
                    "store {id} is physically destroyed and can not be up"
                )));
            }
            if s.state() == metapb::StoreState::Up {
                return Ok(false);
            }
            s.meta.state = metapb::StoreState::Up as i32;
            s.meta.node_state = metapb::NodeState::Serving as i32;
            Ok(true)
        })
    }

    /// Turns every Offline store that holds no region into a Tombstone; returns their ids.
    pub fn bury_empty_offline_stores(&self) -> Result<Vec<u64>> {
        let mut st = self.state.write();
        if st.meta.is_none() {
            return Ok(Vec::new());
        }
        let candidates: Vec<u64> = st
            .stores
            .values()
            .filter(|s| s.is_offline() && !s.is_tombstone())
            .map(StoreInfo::id)
            .collect();
        let mut buried = Vec::new();
        for id in candidates {
            if has_regions(&st, id) {
                continue;
            }
            let Some(store) = st.stores.get_mut(&id) else {
                continue;
            };
            let mut meta = store.meta.clone();
            meta.state = metapb::StoreState::Tombstone as i32;
            meta.node_state = metapb::NodeState::Removed as i32;
            self.storage.save_store(&meta)?;
            store.meta = meta;
            tracing::info!(store = id, "store is tombstone: it holds no region any more");
            buried.push(id);
        }
        Ok(buried)
    }

    /// Deletes every Tombstone store that no region refers to; returns their ids.
    pub fn remove_tombstone_stores(&self) -> Result<Vec<u64>> {
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        let ids: Vec<u64> = st
            .stores
            .values()
            .filter(|s| s.is_tombstone())
            .map(StoreInfo::id)
            .filter(|id| !has_regions(&st, *id))
            .collect();
        for id in &ids {
            self.storage.delete_store(*id)?;
            st.stores.remove(id);
            tracing::info!(store = id, "tombstone store deleted");
        }
        Ok(ids)
    }

    /// Sets a store's leader and region weights (each at least 0).
    pub fn set_store_weight(
        &self,
        id: u64,
        weight: StoreWeight,
    ) -> std::result::Result<(), StoreChangeError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(weight.leader) || !ok(weight.region) {
            return Err(StoreChangeError::Refused(
                "weight must be a non-negative number".into(),
            ));
        }
        let mut st = self.state.write();
        Self::ensure_bootstrapped(&st)?;
        let Some(store) = st.stores.get_mut(&id) else {
            return Err(StoreChangeError::NotFound(id));
        };
        let json = serde_json::to_vec(&weight).map_err(|e| Error::Config(e.to_string()))?;
        self.storage.save_store_weight(id, &json)?;
        store.weight = weight;
        tracing::info!(store = id, ?weight, "store weight changed");
        Ok(())
    }

    /// Merges `labels` into a store's labels, or with `replace` sets exactly them.
    pub fn set_store_labels(
        &self,
        id: u64,
        labels: &[metapb::StoreLabel],
        replace: bool,
    ) -> std::result::Result<(), StoreChangeError> {
        self.change_store(id, |_, s| {
            if s.is_tombstone() {
                return Err(StoreChangeError::Removed(id));
            }
            if replace {
                s.meta.labels = labels.to_vec();
            } else {
                s.merge_labels(labels);
            }
            Ok(true)
        })
    }

    /// Applies persisted weights at load.
    pub(super) fn load_weights(&self) -> Result<()> {
        let weights = self.storage.load_store_weights()?;
        let mut st = self.state.write();
        for (id, json) in weights {
            let w: StoreWeight = serde_json::from_slice(&json).map_err(|e| Error::Corrupted {
                key: format!("pd/store_weight/{id:020}"),
                reason: e.to_string(),
            })?;
            if let Some(s) = st.stores.get_mut(&id) {
                s.weight = w;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "stores_tests.rs"]
mod tests;
