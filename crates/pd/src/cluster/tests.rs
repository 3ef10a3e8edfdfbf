use engine_traits::MemEngine;

use super::*;

fn new_cluster(engine: &MemEngine) -> Cluster {
    let storage = MetaStorage::new(engine.clone());
    let ids = Arc::new(IdAllocator::new(storage.clone()).unwrap());
    Cluster::load(42, 3, storage, ids, SystemTime::now()).unwrap()
}

fn store(id: u64, addr: &str) -> metapb::Store {
    metapb::Store {
        id,
        address: addr.into(),
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

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: Vec<metapb::Peer>) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version }),
        peers,
        ..Default::default()
    }
}

fn heartbeat(r: metapb::Region, leader: metapb::Peer) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        region: Some(r),
        leader: Some(leader),
        approximate_size: 3 << 20,
        approximate_keys: 100,
        ..Default::default()
    }
}

fn must_bootstrap(c: &Cluster) {
    c.bootstrap(
        Some(&store(1, "127.0.0.1:20160")),
        Some(&region(2, b"", b"", 1, vec![peer(3, 1)])),
    )
    .unwrap();
}

#[test]
fn requests_before_bootstrap_fail() {
    let c = new_cluster(&MemEngine::new());
    assert!(!c.is_bootstrapped());
    assert!(matches!(c.put_store(&store(1, "a")), Err(Error::NotBootstrapped)));
    assert!(matches!(c.region_by_key(b"a"), Err(Error::NotBootstrapped)));
    assert!(matches!(c.cluster_meta(), Err(Error::NotBootstrapped)));
}

#[test]
fn bootstrap_once_and_survive_restart() {
    let engine = MemEngine::new();
    let c = new_cluster(&engine);
    // Invalid requests are refused.
    assert!(c
        .bootstrap(None, Some(&region(2, b"", b"", 1, vec![peer(3, 1)])))
        .is_err());
    assert!(c
        .bootstrap(
            Some(&store(1, "a")),
            Some(&region(2, b"x", b"", 1, vec![peer(3, 1)]))
        )
        .is_err());
    assert!(c
        .bootstrap(
            Some(&store(1, "a")),
            Some(&region(2, b"", b"", 1, vec![peer(3, 9)]))
        )
        .is_err());
    must_bootstrap(&c);
    assert!(matches!(
        c.bootstrap(
            Some(&store(1, "a")),
            Some(&region(2, b"", b"", 1, vec![peer(3, 1)]))
        ),
        Err(Error::AlreadyBootstrapped)
    ));
    assert_eq!(
        c.cluster_meta().unwrap(),
        metapb::Cluster {
            id: 42,
            max_peer_count: 3
        }
    );
    c.put_store(&store(4, "127.0.0.1:20161")).unwrap();

    let c = new_cluster(&engine);
    assert!(c.is_bootstrapped());
    assert_eq!(
        c.store_metas(false)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert_eq!(c.region_by_key(b"anything").unwrap().unwrap().id(), 2);
}

#[test]
fn put_store_rules() {
    let c = new_cluster(&MemEngine::new());
    must_bootstrap(&c);
    // Duplicated address of another store.
    assert!(matches!(
        c.put_store(&store(5, "127.0.0.1:20160")),
        Err(Error::InvalidRequest(_))
    ));
    assert!(c.put_store(&store(0, "x")).is_err());
    // Update of the same store merges labels.
    let mut s = store(1, "127.0.0.1:20160");
    s.labels = vec![metapb::StoreLabel {
        key: "zone".into(),
        value: "z1".into(),
    }];
    c.put_store(&s).unwrap();
    s.labels = vec![metapb::StoreLabel {
        key: "host".into(),
        value: "h1".into(),
    }];
    s.version = "8.5.0".into();
    c.put_store(&s).unwrap();
    let got = c.get_store(1).unwrap();
    assert_eq!(got.meta.labels.len(), 2);
    assert_eq!(got.meta.version, "8.5.0");
    assert!(matches!(c.get_store(77), Err(Error::StoreNotFound(77))));
    // Heartbeats record stats.
    c.store_heartbeat(pdpb::StoreStats {
        store_id: 1,
        capacity: 100,
        ..Default::default()
    })
    .unwrap();
    let got = c.get_store(1).unwrap();
    assert_eq!(got.stats.as_ref().unwrap().capacity, 100);
    assert!(got.last_heartbeat().is_some());
    assert!(c
        .store_heartbeat(pdpb::StoreStats {
            store_id: 99,
            ..Default::default()
        })
        .is_err());
}

#[test]
fn heartbeats_build_the_tree() {
    let engine = MemEngine::new();
    let c = new_cluster(&engine);
    must_bootstrap(&c);
    // The node split [ "", "" ) at "m" and reports both halves; region 10 is new to PD.
    let left = region(2, b"", b"m", 2, vec![peer(3, 1)]);
    let right = region(10, b"m", b"", 2, vec![peer(11, 1)]);
    assert_eq!(
        c.region_heartbeat(&heartbeat(right.clone(), peer(11, 1)))
            .unwrap(),
        HeartbeatOutcome::Applied
    );
    assert_eq!(
        c.region_heartbeat(&heartbeat(left.clone(), peer(3, 1))).unwrap(),
        HeartbeatOutcome::Applied
    );
    let r = c.region_by_key(b"z").unwrap().unwrap();
    assert_eq!((r.id(), r.leader, r.approximate_size), (10, Some(peer(11, 1)), 3));
    assert_eq!(c.prev_region_by_key(b"z").unwrap().unwrap().id(), 2);
    // A stale report of the unsplit region is ignored.
    let stale = region(2, b"", b"", 1, vec![peer(3, 1)]);
    assert_eq!(
        c.region_heartbeat(&heartbeat(stale, peer(3, 1))).unwrap(),
        HeartbeatOutcome::Stale
    );
    assert_eq!(c.scan_regions(b"", b"", 0).unwrap().len(), 2);
    // Invalid heartbeats are errors.
    let mut no_leader = heartbeat(left.clone(), peer(3, 1));
    no_leader.leader = None;
    assert!(c.region_heartbeat(&no_leader).is_err());

    let stats = c.store_region_stats();
    assert_eq!(stats[&1].region_count, 2);
    assert_eq!(stats[&1].leader_count, 2);

    // After a restart the tree is rebuilt from storage (without leaders).
    let c = new_cluster(&engine);
    let ids: Vec<u64> = c
        .scan_regions(b"", b"", 0)
        .unwrap()
        .iter()
        .map(|r| r.id())
        .collect();
    assert_eq!(ids, vec![2, 10]);
    assert!(c.region_by_id(10).unwrap().unwrap().leader.is_none());
}

#[test]
fn split_ids_and_report() {
    let c = new_cluster(&MemEngine::new());
    must_bootstrap(&c);
    let parent = region(2, b"", b"", 1, vec![peer(3, 1)]);
    c.region_heartbeat(&heartbeat(parent.clone(), peer(3, 1)))
        .unwrap();
    let ids = c.ask_batch_split(&parent, 2).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|s| s.new_peer_ids.len() == 1));
    let (rid, pids) = c.ask_split(&parent).unwrap();
    assert_eq!(pids.len(), 1);
    assert!(rid > ids[1].new_region_id);
    // A stale epoch is refused.
    let mut newer = parent.clone();
    newer.region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 1,
        version: 5,
    });
    c.region_heartbeat(&heartbeat(newer, peer(3, 1))).unwrap();
    assert!(c.ask_split(&parent).is_err());

    let a = region(
        ids[0].new_region_id,
        b"",
        b"g",
        6,
        vec![peer(ids[0].new_peer_ids[0], 1)],
    );
    let b = region(
        ids[1].new_region_id,
        b"g",
        b"p",
        6,
        vec![peer(ids[1].new_peer_ids[0], 1)],
    );
    let p = region(2, b"p", b"", 6, vec![peer(3, 1)]);
    assert!(c.report_split(std::slice::from_ref(&a)).is_err());
    c.report_split(&[a.clone(), b.clone(), p]).unwrap();
    let got: Vec<(u64, Option<metapb::Peer>)> = c
        .scan_regions(b"", b"", 0)
        .unwrap()
        .into_iter()
        .map(|r| (r.id(), r.leader))
        .collect();
    assert_eq!(
        got,
        vec![
            (a.id, Some(peer(ids[0].new_peer_ids[0], 1))),
            (b.id, Some(peer(ids[1].new_peer_ids[0], 1))),
            (2, Some(peer(3, 1)))
        ]
    );
}
