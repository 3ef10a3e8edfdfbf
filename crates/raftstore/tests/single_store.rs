//! Raftstore driven directly over in-memory engines: one store, single-replica regions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_proto::metapb;
use engine_traits::{MemEngine, Modify, Peekable, CF_DEFAULT};
use raftstore::{
    bootstrap_region, keys, load_local_regions, spawn_store, CmdHeader, Error, RaftEnvelope, Router,
    SnapManager, StoreConfig, StoreHandle, Transport,
};

#[derive(Clone, Default)]
struct RecordingTransport(Arc<Mutex<Vec<RaftEnvelope>>>);

impl Transport for RecordingTransport {
    fn send(&mut self, msg: RaftEnvelope) {
        self.0.lock().expect("lock").push(msg);
    }
}

fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![metapb::Peer {
            id: id + 100,
            store_id: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn header(region_id: u64) -> CmdHeader {
    CmdHeader {
        region_id,
        peer_id: 0,
        conf_ver: 1,
        version: 1,
        ..Default::default()
    }
}

fn put(key: &[u8], value: &[u8]) -> Modify {
    Modify::Put {
        cf: CF_DEFAULT,
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

type Started = (
    Router<engine_traits::MemSnapshot>,
    StoreHandle<engine_traits::MemSnapshot>,
    RecordingTransport,
);

fn start(kv: &MemEngine, raft: &MemEngine, snap_dir: &std::path::Path, gc_threshold: u64) -> Started {
    let transport = RecordingTransport::default();
    let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = StoreConfig {
        store_id: 1,
        tick_interval: Duration::from_millis(20),
        log_gc_threshold: gc_threshold,
        log_gc_keep: 2,
        ..Default::default()
    };
    let regions = load_local_regions(kv).expect("load");
    let snaps = SnapManager::new(snap_dir).expect("snap dir");
    let (router, handle) = spawn_store(
        cfg,
        kv.clone(),
        raft.clone(),
        transport.clone(),
        regions,
        snaps,
        events,
    )
    .expect("spawn");
    (router, handle, transport)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_errors_and_restart() {
    let (kv, raft) = (MemEngine::new(), MemEngine::new());
    let dir = tempfile::tempdir().expect("tempdir");
    bootstrap_region(&kv, &raft, &region(1, b"", b"m")).expect("bootstrap");
    bootstrap_region(&kv, &raft, &region(2, b"m", b"")).expect("bootstrap");
    let (router, mut handle, transport) = start(&kv, &raft, dir.path(), 10_000);

    router
        .write(header(1), vec![put(b"a", b"1")])
        .await
        .expect("write");
    router
        .write(header(2), vec![put(b"x", b"2")])
        .await
        .expect("write");
    let r = router.read(header(1)).await.expect("read");
    assert_eq!(r.region.id, 1);
    assert_eq!(
        r.snapshot.get_cf(CF_DEFAULT, b"za").expect("get"),
        Some(b"1".to_vec())
    );

    let stale = CmdHeader {
        version: 0,
        ..header(1)
    };
    assert!(matches!(
        router.write(stale, vec![put(b"a", b"3")]).await,
        Err(Error::EpochNotMatch { .. })
    ));
    assert!(matches!(
        router.read(stale).await,
        Err(Error::EpochNotMatch { .. })
    ));
    assert!(matches!(
        router.write(header(9), vec![put(b"a", b"3")]).await,
        Err(Error::RegionNotFound(9))
    ));
    assert!(matches!(
        router.write(header(1), vec![put(b"x", b"3")]).await,
        Err(Error::KeyNotInRegion { .. })
    ));
    let huge = vec![0u8; 9 << 20];
    assert!(matches!(
        router.write(header(1), vec![put(b"b", &huge)]).await,
        Err(Error::RaftEntryTooLarge { .. })
    ));
    // Nothing of the failed writes landed.
    assert_eq!(kv.get_cf(CF_DEFAULT, b"zx").expect("get"), Some(b"2".to_vec()));
    assert_eq!(kv.get_cf(CF_DEFAULT, b"zb").expect("get"), None);

    let infos = router.region_infos().await.expect("infos");
    assert_eq!(infos.len(), 2);
    assert!(infos.iter().all(|i| i.is_leader && i.leader.is_some()));
    assert!(
        transport.0.lock().expect("lock").is_empty(),
        "single replicas send no messages"
    );

    handle.shutdown();
    assert!(router.write(header(1), vec![put(b"a", b"9")]).await.is_err());

    // Restart from the same engines: data and regions are back, writes continue.
    let (router, mut handle, _) = start(&kv, &raft, dir.path(), 10_000);
    router
        .write(header(1), vec![put(b"c", b"3")])
        .await
        .expect("write after restart");
    let r = router.read(header(1)).await.expect("read");
    assert_eq!(
        r.snapshot.get_cf(CF_DEFAULT, b"za").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        r.snapshot.get_cf(CF_DEFAULT, b"zc").expect("get"),
        Some(b"3".to_vec())
    );
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_delete_range() {
    let (kv, raft) = (MemEngine::new(), MemEngine::new());
    let dir = tempfile::tempdir().expect("tempdir");
    bootstrap_region(&kv, &raft, &region(1, b"", b"")).expect("bootstrap");
    let (router, mut handle, _) = start(&kv, &raft, dir.path(), 10_000);
    let mut tasks = vec![];
    for t in 0..8u8 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u8 {
                router
                    .write(header(1), vec![put(&[b'k', t, i], &[i])])
                    .await
                    .expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let r = router.read(header(1)).await.expect("read");
    for t in 0..8u8 {
        for i in 0..50u8 {
            assert_eq!(
                r.snapshot.get_cf(CF_DEFAULT, &[b'z', b'k', t, i]).expect("get"),
                Some(vec![i])
            );
        }
    }
    let range = Modify::DeleteRange {
        cf: CF_DEFAULT,
        start: vec![b'k', 2],
        end: vec![b'k', 6],
    };
    router.write(header(1), vec![range]).await.expect("delete range");
    let r = router.read(header(1)).await.expect("read");
    assert!(r
        .snapshot
        .get_cf(CF_DEFAULT, &[b'z', b'k', 1, 0])
        .expect("get")
        .is_some());
    assert!(r
        .snapshot
        .get_cf(CF_DEFAULT, &[b'z', b'k', 3, 0])
        .expect("get")
        .is_none());
    assert!(r
        .snapshot
        .get_cf(CF_DEFAULT, &[b'z', b'k', 6, 0])
        .expect("get")
        .is_some());
    handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_is_compacted_and_survives_restart() {
    let (kv, raft) = (MemEngine::new(), MemEngine::new());
    let dir = tempfile::tempdir().expect("tempdir");
    bootstrap_region(&kv, &raft, &region(1, b"", b"")).expect("bootstrap");
    let (router, mut handle, _) = start(&kv, &raft, dir.path(), 8);
    for i in 0..60u32 {
        router
            .write(header(1), vec![put(&i.to_be_bytes(), b"v")])
            .await
            .expect("write");
    }
    // Compaction is proposed by the leader and applied through the log: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let truncated = loop {
        let apply = kv
            .get_cf(engine_traits::CF_RAFT, &keys::apply_state_key(1))
            .expect("get")
            .and_then(|b| keys::ApplyState::decode(&b))
            .expect("apply state");
        if apply.truncated_index > raftstore::RAFT_INIT_INDEX {
            break apply.truncated_index;
        }
        assert!(std::time::Instant::now() < deadline, "log never compacted");
        router
            .write(header(1), vec![put(b"tick", b"v")])
            .await
            .expect("write");
    };
    // The entries go right after the truncation is durable, in the same loop iteration.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while raft
        .get_cf(CF_DEFAULT, &keys::raft_entry_key(1, truncated))
        .expect("get")
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "compacted entries never deleted"
        );
        std::thread::yield_now();
    }
    handle.shutdown();
    let (router, mut handle, _) = start(&kv, &raft, dir.path(), 8);
    router
        .write(header(1), vec![put(b"after", b"v")])
        .await
        .expect("write after restart");
    let r = router.read(header(1)).await.expect("read");
    assert_eq!(
        r.snapshot.get_cf(CF_DEFAULT, &[b'z', 0, 0, 0, 59]).expect("get"),
        Some(b"v".to_vec())
    );
    handle.shutdown();
}
