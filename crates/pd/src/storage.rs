//! Persistence of PD's metadata through an [`engine_traits::KvEngine`].
//!
//! Everything lives in the engine's `default` column family under the `pd/` prefix:
//!
//! | key                         | value                                             |
//! |-----------------------------|---------------------------------------------------|
//! | `pd/cluster_id`             | u64 big-endian, never zero                        |
//! | `pd/member_id`              | u64 big-endian                                    |
//! | `pd/cluster`                | prost `metapb.Cluster`; present iff bootstrapped  |
//! | `pd/bootstrap_time`         | u64 big-endian, unix nanoseconds                  |
//! | `pd/alloc_id`               | u64 big-endian, id allocator high-water mark      |
//! | `pd/tso`                    | u64 big-endian, TSO window end (unix ms)          |
//! | `pd/gc/safe_point`          | u64 big-endian                                    |
//! | `pd/gc/service/<id bytes>`  | JSON `{"service_id","expired_at","safe_point"}`   |
//! | `pd/store/<id %020>`        | prost `metapb.Store`                              |
//! | `pd/region/<id %020>`       | prost `metapb.Region`                             |
//! | `pd/keyspace/<id %010>`     | prost `keyspacepb.KeyspaceMeta`                   |
//! | `pd/config`                 | JSON `{"schedule":{..},"replication":{..}}`, kebab-case keys; written only when changed at runtime |
//! | `pd/store_weight/<id %020>` | JSON `{"leader":1.0,"region":1.0}`; absent = both 1 |
//! | `pd/schedulers`             | JSON array of the enabled scheduler names; absent = the defaults |
//!
//! Ids in keys are zero-padded decimal so that a prefix scan returns them in id order.

use std::sync::Arc;

use atoll_proto::{keyspacepb, metapb};
use engine_traits::{KvEngine, WriteBatch, CF_DEFAULT};
use prost::Message;

use crate::error::{Error, Result};

const KEY_CLUSTER_ID: &[u8] = b"pd/cluster_id";
const KEY_MEMBER_ID: &[u8] = b"pd/member_id";
const KEY_CLUSTER: &[u8] = b"pd/cluster";
const KEY_BOOTSTRAP_TIME: &[u8] = b"pd/bootstrap_time";
const KEY_ALLOC_ID: &[u8] = b"pd/alloc_id";
const KEY_TSO: &[u8] = b"pd/tso";
const KEY_GC_SAFE_POINT: &[u8] = b"pd/gc/safe_point";
const PREFIX_SERVICE_SAFE_POINT: &[u8] = b"pd/gc/service/";
const PREFIX_STORE: &[u8] = b"pd/store/";
const PREFIX_REGION: &[u8] = b"pd/region/";
const PREFIX_KEYSPACE: &[u8] = b"pd/keyspace/";
const KEY_CONFIG: &[u8] = b"pd/config";
const PREFIX_STORE_WEIGHT: &[u8] = b"pd/store_weight/";
const KEY_SCHEDULERS: &[u8] = b"pd/schedulers";

/// The object-safe slice of a [`KvEngine`] PD needs.
trait MetaKv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn write(&self, batch: &WriteBatch, sync: bool) -> Result<()>;
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

struct EngineKv<E>(E);

impl<E: KvEngine> MetaKv for EngineKv<E> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get_cf(CF_DEFAULT, key)?)
    }

    fn write(&self, batch: &WriteBatch, sync: bool) -> Result<()> {
        Ok(self.0.write(batch, sync)?)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        self.0.scan_cf(CF_DEFAULT, prefix, Some(&end), |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }
}

/// The smallest key greater than every key starting with `prefix` (prefixes here never end in 0xff).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// A service safe point as persisted and shown by the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceSafePoint {
    pub service_id: String,
    /// Unix seconds; `i64::MAX` means never.
    pub expired_at: i64,
    pub safe_point: u64,
}

/// Typed access to PD's persisted metadata. Cheap to clone.
#[derive(Clone)]
pub struct MetaStorage {
    kv: Arc<dyn MetaKv>,
}

fn u64_value(key: &[u8], v: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = v.try_into().map_err(|_| Error::Corrupted {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: format!("expected 8 bytes, got {}", v.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn decode<M: Message + Default>(key: &[u8], v: &[u8]) -> Result<M> {
    M::decode(v).map_err(|e| Error::Corrupted {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{id:020}").as_bytes());
    k
}

impl MetaStorage {
    /// Wraps `engine`; PD only uses its `default` column family.
    pub fn new<E: KvEngine>(engine: E) -> MetaStorage {
        MetaStorage {
            kv: Arc::new(EngineKv(engine)),
        }
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.kv.get(key)? {
            Some(v) => Ok(Some(u64_value(key, &v)?)),
            None => Ok(None),
        }
    }

    fn put_u64(&self, key: &'static [u8], value: u64, sync: bool) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, key, value.to_be_bytes().to_vec());
        self.kv.write(&wb, sync)
    }

    fn scan_messages<M: Message + Default>(&self, prefix: &[u8]) -> Result<Vec<M>> {
        self.kv
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    pub fn load_cluster_id(&self) -> Result<Option<u64>> {
        self.get_u64(KEY_CLUSTER_ID)
    }

    pub fn save_cluster_id(&self, id: u64) -> Result<()> {
        self.put_u64(KEY_CLUSTER_ID, id, true)
    }

    pub fn load_member_id(&self) -> Result<Option<u64>> {
        self.get_u64(KEY_MEMBER_ID)
    }

    pub fn save_member_id(&self, id: u64) -> Result<()> {
        self.put_u64(KEY_MEMBER_ID, id, true)
    }

    /// The cluster meta; `Some` iff the cluster is bootstrapped.
    pub fn load_cluster_meta(&self) -> Result<Option<metapb::Cluster>> {
        match self.kv.get(KEY_CLUSTER)? {
            Some(v) => Ok(Some(decode(KEY_CLUSTER, &v)?)),
            None => Ok(None),
        }
    }

    pub fn save_cluster_meta(&self, meta: &metapb::Cluster) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, KEY_CLUSTER, meta.encode_to_vec());
        self.kv.write(&wb, true)
    }

    /// Atomically records the bootstrap: cluster meta, first store, first region, time.
    pub fn save_bootstrap(
        &self,
        meta: &metapb::Cluster,
        store: &metapb::Store,
        region: &metapb::Region,
        unix_nanos: u64,
    ) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, KEY_CLUSTER, meta.encode_to_vec());
        wb.put_cf(CF_DEFAULT, KEY_BOOTSTRAP_TIME, unix_nanos.to_be_bytes().to_vec());
        wb.put_cf(CF_DEFAULT, id_key(PREFIX_STORE, store.id), store.encode_to_vec());
        wb.put_cf(
            CF_DEFAULT,
            id_key(PREFIX_REGION, region.id),
            region.encode_to_vec(),
        );
        self.kv.write(&wb, true)
    }

    pub fn load_bootstrap_time(&self) -> Result<Option<u64>> {
        self.get_u64(KEY_BOOTSTRAP_TIME)
    }

    pub fn load_alloc_id(&self) -> Result<u64> {
        Ok(self.get_u64(KEY_ALLOC_ID)?.unwrap_or(0))
    }

    /// Durably records the id allocator's high-water mark.
    pub fn save_alloc_id(&self, end: u64) -> Result<()> {
        self.put_u64(KEY_ALLOC_ID, end, true)
    }

    pub fn load_tso_window(&self) -> Result<u64> {
        Ok(self.get_u64(KEY_TSO)?.unwrap_or(0))
    }

    /// Durably records the end of the TSO window (unix milliseconds).
    pub fn save_tso_window(&self, end_ms: u64) -> Result<()> {
        self.put_u64(KEY_TSO, end_ms, true)
    }

    pub fn load_gc_safe_point(&self) -> Result<u64> {
        Ok(self.get_u64(KEY_GC_SAFE_POINT)?.unwrap_or(0))
    }

    pub fn save_gc_safe_point(&self, safe_point: u64) -> Result<()> {
        self.put_u64(KEY_GC_SAFE_POINT, safe_point, true)
    }

    pub fn load_service_safe_points(&self) -> Result<Vec<ServiceSafePoint>> {
        self.kv
            .scan_prefix(PREFIX_SERVICE_SAFE_POINT)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::Corrupted {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    fn service_key(service_id: &str) -> Vec<u8> {
        let mut k = PREFIX_SERVICE_SAFE_POINT.to_vec();
        k.extend_from_slice(service_id.as_bytes());
        k
    }

    pub fn save_service_safe_point(&self, ssp: &ServiceSafePoint) -> Result<()> {
        let value = serde_json::to_vec(ssp).map_err(|e| Error::Corrupted {
            key: ssp.service_id.clone(),
            reason: e.to_string(),
        })?;
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, Self::service_key(&ssp.service_id), value);
        self.kv.write(&wb, true)
    }

    pub fn remove_service_safe_points(&self, service_ids: &[String]) -> Result<()> {
        if service_ids.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::new();
        for id in service_ids {
            wb.delete_cf(CF_DEFAULT, Self::service_key(id));
        }
        self.kv.write(&wb, true)
    }

    pub fn load_stores(&self) -> Result<Vec<metapb::Store>> {
        self.scan_messages(PREFIX_STORE)
    }

    pub fn save_store(&self, store: &metapb::Store) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, id_key(PREFIX_STORE, store.id), store.encode_to_vec());
        self.kv.write(&wb, true)
    }

    /// Deletes a store (and its weights) for good (`remove-tombstone`).
    pub fn delete_store(&self, id: u64) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.delete_cf(CF_DEFAULT, id_key(PREFIX_STORE, id));
        wb.delete_cf(CF_DEFAULT, id_key(PREFIX_STORE_WEIGHT, id));
        self.kv.write(&wb, true)
    }

    /// Every store's weights (JSON), by store id.
    pub fn load_store_weights(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for (k, v) in self.kv.scan_prefix(PREFIX_STORE_WEIGHT)? {
            let id = std::str::from_utf8(&k[PREFIX_STORE_WEIGHT.len()..])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::Corrupted {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "bad store id".into(),
                })?;
            out.push((id, v));
        }
        Ok(out)
    }

    pub fn save_store_weight(&self, id: u64, json: &[u8]) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, id_key(PREFIX_STORE_WEIGHT, id), json.to_vec());
        self.kv.write(&wb, true)
    }

    /// The enabled schedulers (JSON), if they were ever changed at runtime.
    pub fn load_schedulers(&self) -> Result<Option<Vec<u8>>> {
        self.kv.get(KEY_SCHEDULERS)
    }

    pub fn save_schedulers(&self, json: &[u8]) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, KEY_SCHEDULERS, json.to_vec());
        self.kv.write(&wb, true)
    }

    pub fn load_regions(&self) -> Result<Vec<metapb::Region>> {
        self.scan_messages(PREFIX_REGION)
    }

    /// Saves `put` regions and deletes `removed` region ids in one batch.
    ///
    /// Not fsynced: region metadata is re-reported by heartbeats, so losing the tail of it in a
    /// crash only delays routing until the next heartbeat.
    pub fn save_regions(&self, put: &[&metapb::Region], removed: &[u64]) -> Result<()> {
        if put.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::new();
        for id in removed {
            wb.delete_cf(CF_DEFAULT, id_key(PREFIX_REGION, *id));
        }
        for region in put {
            wb.put_cf(
                CF_DEFAULT,
                id_key(PREFIX_REGION, region.id),
                region.encode_to_vec(),
            );
        }
        self.kv.write(&wb, false)
    }

    /// The runtime-changed configuration (JSON), if it was ever changed at runtime.
    pub fn load_config(&self) -> Result<Option<Vec<u8>>> {
        self.kv.get(KEY_CONFIG)
    }

    pub fn save_config(&self, json: &[u8]) -> Result<()> {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, KEY_CONFIG, json.to_vec());
        self.kv.write(&wb, true)
    }

    pub fn load_keyspaces(&self) -> Result<Vec<keyspacepb::KeyspaceMeta>> {
        self.scan_messages(PREFIX_KEYSPACE)
    }

    pub fn save_keyspace(&self, meta: &keyspacepb::KeyspaceMeta) -> Result<()> {
        let mut k = PREFIX_KEYSPACE.to_vec();
        k.extend_from_slice(format!("{:010}", meta.id).as_bytes());
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, k, meta.encode_to_vec());
        self.kv.write(&wb, true)
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::MemEngine;

    use super::*;

    #[test]
    fn stores_and_regions_round_trip() {
        let engine = MemEngine::new();
        let s = MetaStorage::new(engine.clone());
        let store = metapb::Store {
            id: 7,
            address: "127.0.0.1:20160".into(),
            ..Default::default()
        };
        let r1 = metapb::Region {
            id: 2,
            end_key: b"m".to_vec(),
            ..Default::default()
        };
        let r2 = metapb::Region {
            id: 11,
            start_key: b"m".to_vec(),
            ..Default::default()
        };
        let meta = metapb::Cluster {
            id: 42,
            max_peer_count: 3,
        };
        s.save_bootstrap(&meta, &store, &r1, 5).unwrap();
        s.save_regions(&[&r2], &[]).unwrap();

        // A second instance over the same engine sees everything.
        let s2 = MetaStorage::new(engine);
        assert_eq!(s2.load_cluster_meta().unwrap(), Some(meta));
        assert_eq!(s2.load_bootstrap_time().unwrap(), Some(5));
        assert_eq!(s2.load_stores().unwrap(), vec![store]);
        assert_eq!(s2.load_regions().unwrap(), vec![r1, r2.clone()]);
        s2.save_regions(&[], &[2]).unwrap();
        assert_eq!(s2.load_regions().unwrap(), vec![r2]);
    }

    #[test]
    fn scalars_and_service_safe_points() {
        let s = MetaStorage::new(MemEngine::new());
        assert_eq!(s.load_cluster_id().unwrap(), None);
        assert_eq!(s.load_alloc_id().unwrap(), 0);
        s.save_cluster_id(9).unwrap();
        s.save_alloc_id(1000).unwrap();
        s.save_tso_window(123).unwrap();
        s.save_gc_safe_point(77).unwrap();
        assert_eq!(s.load_cluster_id().unwrap(), Some(9));
        assert_eq!(s.load_alloc_id().unwrap(), 1000);
        assert_eq!(s.load_tso_window().unwrap(), 123);
        assert_eq!(s.load_gc_safe_point().unwrap(), 77);

        let a = ServiceSafePoint {
            service_id: "a".into(),
            expired_at: 10,
            safe_point: 5,
        };
        let b = ServiceSafePoint {
            service_id: "b".into(),
            expired_at: i64::MAX,
            safe_point: 6,
        };
        s.save_service_safe_point(&a).unwrap();
        s.save_service_safe_point(&b).unwrap();
        assert_eq!(s.load_service_safe_points().unwrap(), vec![a, b.clone()]);
        s.remove_service_safe_points(&["a".to_string()]).unwrap();
        assert_eq!(s.load_service_safe_points().unwrap(), vec![b]);
    }
}
