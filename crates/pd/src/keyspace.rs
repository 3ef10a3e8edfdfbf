//! Keyspace metadata. Only the reserved `DEFAULT` keyspace (id 0) exists; it is created and
//! persisted at first start.

use std::collections::BTreeMap;

use atoll_proto::keyspacepb::{KeyspaceMeta, KeyspaceState};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::storage::MetaStorage;

/// Name of the reserved default keyspace.
pub const DEFAULT_KEYSPACE_NAME: &str = "DEFAULT";
/// Id of the reserved default keyspace.
pub const DEFAULT_KEYSPACE_ID: u32 = 0;

/// PD's text for a missing keyspace.
pub const KEYSPACE_NOT_FOUND: &str = "[PD:keyspace:ErrKeyspaceNotFound]keyspace does not exist";

/// Keyspaces by id.
pub struct KeyspaceManager {
    keyspaces: RwLock<BTreeMap<u32, KeyspaceMeta>>,
}

impl KeyspaceManager {
    /// Loads the keyspaces, creating `DEFAULT` (created at `now`, unix seconds) if missing.
    pub fn new(storage: &MetaStorage, now: i64) -> Result<KeyspaceManager> {
        let mut keyspaces: BTreeMap<u32, KeyspaceMeta> =
            storage.load_keyspaces()?.into_iter().map(|k| (k.id, k)).collect();
        if !keyspaces.contains_key(&DEFAULT_KEYSPACE_ID) {
            let meta = KeyspaceMeta {
                id: DEFAULT_KEYSPACE_ID,
                name: DEFAULT_KEYSPACE_NAME.to_string(),
                state: KeyspaceState::Enabled as i32,
                created_at: now,
                state_changed_at: now,
                config: Default::default(),
            };
            storage.save_keyspace(&meta)?;
            keyspaces.insert(meta.id, meta);
        }
        Ok(KeyspaceManager {
            keyspaces: RwLock::new(keyspaces),
        })
    }

    /// The keyspace called `name`.
    pub fn load_by_name(&self, name: &str) -> Result<KeyspaceMeta> {
        self.keyspaces
            .read()
            .values()
            .find(|k| k.name == name)
            .cloned()
            .ok_or_else(|| Error::EntryNotFound(KEYSPACE_NOT_FOUND.to_string()))
    }

    /// Keyspaces with id `>= start_id`, at most `limit` of them (0 = all).
    pub fn load_range(&self, start_id: u32, limit: usize) -> Vec<KeyspaceMeta> {
        let ks = self.keyspaces.read();
        let it = ks.range(start_id..).map(|(_, k)| k.clone());
        if limit == 0 {
            it.collect()
        } else {
            it.take(limit).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;

    use super::*;

    #[test]
    fn default_keyspace_is_created_once() {
        let engine = MemEngine::new();
        let m = KeyspaceManager::new(&MetaStorage::new(engine.clone()), 100).unwrap();
        let d = m.load_by_name("DEFAULT").unwrap();
        assert_eq!(
            (d.id, d.created_at, d.state),
            (0, 100, KeyspaceState::Enabled as i32)
        );
        assert!(matches!(m.load_by_name("nope"), Err(Error::EntryNotFound(_))));
        // Restart: created_at is kept.
        let m = KeyspaceManager::new(&MetaStorage::new(engine), 200).unwrap();
        assert_eq!(m.load_by_name("DEFAULT").unwrap().created_at, 100);
        assert_eq!(m.load_range(0, 0).len(), 1);
        assert!(m.load_range(1, 0).is_empty());
    }
}
