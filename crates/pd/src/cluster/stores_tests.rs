use std::sync::Arc;
use std::time::{Duration, SystemTime};

use atoll_proto::{metapb, pdpb};
use engine_traits::MemEngine;

use super::*;
use crate::id_alloc::IdAllocator;
use crate::storage::MetaStorage;
use crate::store_info::StoreStateName;

fn new_cluster(engine: &MemEngine) -> Cluster {
    let storage = MetaStorage::new(engine.clone());
    let ids = Arc::new(IdAllocator::new(storage.clone()).unwrap());
    Cluster::load(42, 3, storage, ids, SystemTime::now()).unwrap()
}

fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Four stores; region 2 has peers on stores 1, 2, 3.
fn cluster4(engine: &MemEngine) -> Cluster {
    let c = new_cluster(engine);
    let region = metapb::Region {
        id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 3,
            version: 1,
        }),
        peers: vec![peer(10, 1), peer(11, 2), peer(12, 3)],
        ..Default::default()
    };
    c.bootstrap(Some(&store(1)), Some(&region)).unwrap();
    for id in 2..=4 {
        c.put_store(&store(id)).unwrap();
    }
    c
}

fn state(c: &Cluster, id: u64) -> StoreStateName {
    c.store_states(SystemTime::now(), Duration::from_secs(1800))[&id]
}

#[test]
fn offline_then_tombstone_once_empty() {
    let engine = MemEngine::new();
    let c = cluster4(&engine);
    c.remove_store(3).unwrap();
    assert_eq!(state(&c, 3), StoreStateName::Offline);
    let s = c.get_store(3).unwrap();
    assert_eq!(s.meta.node_state, metapb::NodeState::Removing as i32);
    // Idempotent.
    c.remove_store(3).unwrap();
    // Still holds a peer of region 2: not buried.
    assert!(c.bury_empty_offline_stores().unwrap().is_empty());
    // Offline stores keep heartbeating.
    c.store_heartbeat(pdpb::StoreStats {
        store_id: 3,
        ..Default::default()
    })
    .unwrap();
    // The peer moved from store 3 to store 4.
    let moved = metapb::Region {
        id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 5,
            version: 1,
        }),
        peers: vec![peer(10, 1), peer(11, 2), peer(13, 4)],
        ..Default::default()
    };
    c.region_heartbeat(&pdpb::RegionHeartbeatRequest {
        region: Some(moved),
        leader: Some(peer(10, 1)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.bury_empty_offline_stores().unwrap(), vec![3]);
    assert_eq!(state(&c, 3), StoreStateName::Tombstone);
    assert_eq!(
        c.get_store(3).unwrap().meta.node_state,
        metapb::NodeState::Removed as i32
    );
    // A tombstone's heartbeat and PutStore are refused with STORE_TOMBSTONE.
    let e = c
        .store_heartbeat(pdpb::StoreStats {
            store_id: 3,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.error_type(), pdpb::ErrorType::StoreTombstone);
    let e = c.put_store(&store(3)).unwrap_err();
    assert_eq!(e.error_type(), pdpb::ErrorType::StoreTombstone);
    // It can not come back, nor be removed again.
    assert!(matches!(c.up_store(3), Err(StoreChangeError::Removed(3))));
    assert!(matches!(c.remove_store(3), Err(StoreChangeError::Removed(3))));
    // Persisted: a restart sees the tombstone.
    let c2 = new_cluster(&engine);
    assert_eq!(state(&c2, 3), StoreStateName::Tombstone);
    // remove-tombstone deletes it for good.
    assert_eq!(c.remove_tombstone_stores().unwrap(), vec![3]);
    assert!(c.get_store(3).is_err());
    assert!(new_cluster(&engine).get_store(3).is_err());
}

#[test]
fn removal_is_canceled_by_up_and_refused_below_max_replicas() {
    let c = cluster4(&MemEngine::new());
    c.remove_store(4).unwrap();
    c.up_store(4).unwrap();
    assert_eq!(state(&c, 4), StoreStateName::Up);
    assert_eq!(
        c.get_store(4).unwrap().meta.node_state,
        metapb::NodeState::Serving as i32
    );
    c.remove_store(4).unwrap();
    // Three Up stores left with max-replicas 3: another removal is refused.
    assert!(matches!(c.remove_store(1), Err(StoreChangeError::Refused(_))));
    assert_eq!(state(&c, 1), StoreStateName::Up);
    assert!(matches!(c.remove_store(9), Err(StoreChangeError::NotFound(9))));
}

#[test]
fn weights_and_labels_persist() {
    let engine = MemEngine::new();
    let c = cluster4(&engine);
    c.set_store_weight(
        2,
        StoreWeight {
            leader: 2.0,
            region: 0.5,
        },
    )
    .unwrap();
    assert!(c
        .set_store_weight(
            2,
            StoreWeight {
                leader: -1.0,
                region: 1.0
            }
        )
        .is_err());
    let label = |k: &str, v: &str| metapb::StoreLabel {
        key: k.into(),
        value: v.into(),
    };
    c.set_store_labels(2, &[label("zone", "z1"), label("host", "h1")], false)
        .unwrap();
    c.set_store_labels(2, &[label("zone", "z2")], false).unwrap();
    let s = c.get_store(2).unwrap();
    assert_eq!((s.label("zone"), s.label("host")), (Some("z2"), Some("h1")));
    c.set_store_labels(2, &[label("rack", "r1")], true).unwrap();
    let c2 = new_cluster(&engine);
    let s = c2.get_store(2).unwrap();
    assert_eq!(s.weight.leader, 2.0);
    assert_eq!(s.weight.region, 0.5);
    assert_eq!((s.label("zone"), s.label("rack")), (None, Some("r1")));
}
