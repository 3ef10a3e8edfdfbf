//! End-to-end tests: a real server on 127.0.0.1:0 driven by the generated tonic clients.

use std::time::Duration;

use atoll_proto::keyspacepb::{self, keyspace_client::KeyspaceClient};
use atoll_proto::metapb;
use atoll_proto::pdpb::{self, pd_client::PdClient};
use engine_traits::MemEngine;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::gc_resolver::fake::FakeNode;
use crate::{PdConfig, PdServer};

/// A server without the automatic GC safe point advance (tests of it configure their own).
pub(crate) async fn start(engine: MemEngine) -> (PdServer, PdClient<Channel>, u64) {
    let mut config = PdConfig {
        client_urls: "http://127.0.0.1:0".into(),
        ..Default::default()
    };
    config.gc.retention = crate::duration::ReadableDuration::secs(0);
    let server = PdServer::start(config, engine).await.unwrap();
    let client = PdClient::connect(format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    let id = server.cluster_id();
    (server, client, id)
}

pub(crate) fn header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        sender_id: 0,
    })
}

pub(crate) fn error_type(h: &Option<pdpb::ResponseHeader>) -> Option<pdpb::ErrorType> {
    h.as_ref()
        .and_then(|h| h.error.as_ref())
        .map(|e| pdpb::ErrorType::try_from(e.r#type).unwrap())
}

/// One id from AllocID.
pub(crate) async fn alloc(c: &mut PdClient<Channel>, cid: u64) -> u64 {
    c.alloc_id(pdpb::AllocIdRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn must_bootstrap(c: &mut PdClient<Channel>, cid: u64) {
    must_bootstrap_at(c, cid, "127.0.0.1:20160").await;
}

/// Bootstraps with a fake storage node leading the only region, so that the GC safe point can
/// move (PD resolves the locks below it first).
async fn must_bootstrap_with_node(c: &mut PdClient<Channel>, cid: u64, server: &PdServer) -> FakeNode {
    let node = FakeNode::start().await;
    let region = must_bootstrap_at(c, cid, &node.addr).await;
    let leader = region.peers[0];
    let ctx = server.context();
    ctx.cluster
        .region_heartbeat(&pdpb::RegionHeartbeatRequest {
            region: Some(region),
            leader: Some(leader),
            ..Default::default()
        })
        .unwrap();
    node.lead(leader.store_id, ctx.cluster.regions());
    node
}

/// Bootstraps with a store at `addr`; returns the first region.
pub(crate) async fn must_bootstrap_at(c: &mut PdClient<Channel>, cid: u64, addr: &str) -> metapb::Region {
    let store_id = alloc(c, cid).await;
    let region_id = alloc(c, cid).await;
    let peer_id = alloc(c, cid).await;
    assert!(store_id < region_id && region_id < peer_id);
    let store = metapb::Store {
        id: store_id,
        address: addr.into(),
        ..Default::default()
    };
    let region = metapb::Region {
        id: region_id,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![metapb::Peer {
            id: peer_id,
            store_id,
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: header(cid),
            store: Some(store),
            region: Some(region.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.header.unwrap().cluster_id, cid);
    region
}

#[tokio::test]
async fn members_and_cluster_id_check() {
    let (server, mut c, cid) = start(MemEngine::new()).await;
    assert_ne!(cid, 0);
    // GetMembers needs no cluster id.
    let m = c
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.header.unwrap().cluster_id, cid);
    let url = format!("http://{}", server.local_addr());
    assert_eq!(m.members.len(), 1);
    assert_eq!(m.members[0].client_urls, vec![url.clone()]);
    assert_eq!(m.leader.as_ref().unwrap().client_urls, vec![url]);
    assert_eq!(m.leader.unwrap().member_id, m.etcd_leader.unwrap().member_id);

    // Anything else with a wrong (or zero) cluster id is refused.
    for bad in [0, cid + 1] {
        let err = c
            .is_bootstrapped(pdpb::IsBootstrappedRequest { header: header(bad) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            err.message(),
            format!("mismatch cluster id, need {cid} but got {bad}")
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tso_stream() {
    let (server, mut c, cid) = start(MemEngine::new()).await;
    let (tx, rx) = mpsc::channel(16);
    let mut responses = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut last: Option<(i64, i64)> = None;
    for i in 1..=50u32 {
        tx.send(pdpb::TsoRequest {
            header: header(cid),
            count: i,
            dc_location: String::new(),
        })
        .await
        .unwrap();
        let resp = responses.message().await.unwrap().unwrap();
        assert_eq!(resp.count, i);
        assert_eq!(resp.header.unwrap().cluster_id, cid);
        let ts = resp.timestamp.unwrap();
        let first = (ts.physical, ts.logical - i64::from(i) + 1);
        if let Some(prev) = last {
            assert!(first > prev, "{first:?} <= {prev:?}");
        }
        assert!(ts.logical < 1 << 18);
        last = Some((ts.physical, ts.logical));
    }
    // A wrong cluster id ends the stream with FailedPrecondition.
    tx.send(pdpb::TsoRequest {
        header: header(cid + 1),
        count: 1,
        dc_location: String::new(),
    })
    .await
    .unwrap();
    let err = responses.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bootstrap_stores_and_regions() {
    let (server, mut c, cid) = start(MemEngine::new()).await;
    // Before bootstrap.
    let b = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner();
    assert!(!b.bootstrapped);
    let r = c
        .get_region(pdpb::GetRegionRequest {
            header: header(cid),
            region_key: b"a".to_vec(),
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&r.header), Some(pdpb::ErrorType::NotBootstrapped));

    must_bootstrap(&mut c, cid).await;
    let b = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner();
    assert!(b.bootstrapped);
    let again = c
        .bootstrap(pdpb::BootstrapRequest {
            header: header(cid),
            store: Some(metapb::Store {
                id: 1,
                ..Default::default()
            }),
            region: Some(metapb::Region {
                id: 2,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        error_type(&again.header),
        Some(pdpb::ErrorType::AlreadyBootstrapped)
    );

    // Stores.
    let store_id = alloc(&mut c, cid).await;
    let store = metapb::Store {
        id: store_id,
        address: "127.0.0.1:20161".into(),
        ..Default::default()
    };
    let put = c
        .put_store(pdpb::PutStoreRequest {
            header: header(cid),
            store: Some(store),
        })
        .await
        .unwrap();
    assert_eq!(error_type(&put.into_inner().header), None);
    let dup = metapb::Store {
        id: store_id + 100,
        address: "127.0.0.1:20161".into(),
        ..Default::default()
    };
    let put = c
        .put_store(pdpb::PutStoreRequest {
            header: header(cid),
            store: Some(dup),
        })
        .await
        .unwrap();
    assert_eq!(
        error_type(&put.into_inner().header),
        Some(pdpb::ErrorType::Unknown)
    );
    let got = c
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.store.unwrap().address, "127.0.0.1:20161");
    let missing = c
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id: 9999,
        })
        .await
        .unwrap();
    assert_eq!(
        error_type(&missing.into_inner().header),
        Some(pdpb::ErrorType::Unknown)
    );
    let all = c
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(cid),
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.stores.len(), 2);
    let hb = c
        .store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: header(cid),
            stats: Some(pdpb::StoreStats {
                store_id,
                capacity: 1 << 30,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&hb.header), None);

    // A region heartbeat for a region PD never saw, then lookups.
    let region = metapb::Region {
        id: 1000,
        start_key: b"m".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        }),
        peers: vec![metapb::Peer {
            id: 1001,
            store_id,
            ..Default::default()
        }],
        ..Default::default()
    };
    let leader = region.peers[0];
    let (tx, rx) = mpsc::channel(4);
    let _hb_stream = c
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(pdpb::RegionHeartbeatRequest {
        header: header(cid),
        region: Some(region.clone()),
        leader: Some(leader),
        approximate_size: 10 << 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut found = None;
    for _ in 0..100 {
        let r = c
            .get_region(pdpb::GetRegionRequest {
                header: header(cid),
                region_key: b"zz".to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        if r.region.as_ref().is_some_and(|r| r.id == 1000) {
            found = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = found.expect("heartbeat applied");
    assert_eq!(found.leader, Some(leader));
    assert_eq!(found.header.unwrap().cluster_id, cid);

    let by_id = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header(cid),
            region_id: 1000,
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.region.unwrap().start_key, b"m".to_vec());
    let unknown = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header(cid),
            region_id: 424242,
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unknown.region.is_none());
    assert_eq!(error_type(&unknown.header), None);
    let scan = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(cid),
            start_key: vec![],
            limit: 10,
            end_key: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.regions.len(), 1);
    assert_eq!(scan.region_metas.len(), 1);
    assert_eq!(scan.leaders, vec![leader]);

    // GC safe point never moves back.
    let up = |sp| pdpb::UpdateGcSafePointRequest {
        header: header(cid),
        safe_point: sp,
    };
    assert_eq!(
        c.update_gc_safe_point(up(100))
            .await
            .unwrap()
            .into_inner()
            .new_safe_point,
        100
    );
    assert_eq!(
        c.update_gc_safe_point(up(50))
            .await
            .unwrap()
            .into_inner()
            .new_safe_point,
        100
    );
    let gsp = c
        .get_gc_safe_point(pdpb::GetGcSafePointRequest { header: header(cid) })
        .await
        .unwrap();
    assert_eq!(gsp.into_inner().safe_point, 100);

    // Cluster config.
    let cc = c
        .get_cluster_config(pdpb::GetClusterConfigRequest { header: header(cid) })
        .await
        .unwrap();
    assert_eq!(
        cc.into_inner().cluster.unwrap(),
        metapb::Cluster {
            id: cid,
            max_peer_count: 3
        }
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn keyspaces() {
    let (server, _c, cid) = start(MemEngine::new()).await;
    let mut k = KeyspaceClient::connect(format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    let resp = k
        .load_keyspace(keyspacepb::LoadKeyspaceRequest {
            header: header(cid),
            name: "DEFAULT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let meta = resp.keyspace.unwrap();
    assert_eq!((meta.id, meta.name.as_str()), (0, "DEFAULT"));
    assert_eq!(meta.state, keyspacepb::KeyspaceState::Enabled as i32);
    assert!(meta.created_at > 0);
    let missing = k
        .load_keyspace(keyspacepb::LoadKeyspaceRequest {
            header: header(cid),
            name: "nope".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.keyspace.is_none());
    assert_eq!(error_type(&missing.header), Some(pdpb::ErrorType::EntryNotFound));
    let err = k
        .load_keyspace(keyspacepb::LoadKeyspaceRequest {
            header: header(cid + 1),
            name: "DEFAULT".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    let mut watch = k
        .watch_keyspaces(keyspacepb::WatchKeyspacesRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.keyspaces.len(), 1);
    // The stream stays open until the server stops.
    assert!(tokio::time::timeout(Duration::from_millis(100), watch.message())
        .await
        .is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_ids_tso_and_metadata() {
    let engine = MemEngine::new();
    let (server, mut c, cid) = start(engine.clone()).await;
    must_bootstrap(&mut c, cid).await;
    let id_before = alloc(&mut c, cid).await;
    let (tx, rx) = mpsc::channel(1);
    let mut tso = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(pdpb::TsoRequest {
        header: header(cid),
        count: 1,
        dc_location: String::new(),
    })
    .await
    .unwrap();
    let ts_before = tso.message().await.unwrap().unwrap().timestamp.unwrap();
    drop(tx);
    server.stop().await.unwrap();

    let (server, mut c, cid2) = start(engine).await;
    assert_eq!(cid, cid2);
    let b = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner();
    assert!(b.bootstrapped);
    let id_after = alloc(&mut c, cid).await;
    assert!(id_after > id_before);
    let (tx, rx) = mpsc::channel(1);
    let mut tso = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(pdpb::TsoRequest {
        header: header(cid),
        count: 1,
        dc_location: String::new(),
    })
    .await
    .unwrap();
    let ts_after = tso.message().await.unwrap().unwrap().timestamp.unwrap();
    assert!((ts_after.physical, ts_after.logical) > (ts_before.physical, ts_before.logical));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn http_on_the_same_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _c, cid) = start(MemEngine::new()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET /pd/api/v1/cluster HTTP/1.1\r\nHost: pd\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = String::new();
    tcp.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.contains(&format!("\"id\": {cid}")), "{buf}");
    server.stop().await.unwrap();
}

/// A fresh timestamp from the server, composed.
async fn now_ts(c: &mut PdClient<Channel>, cid: u64) -> u64 {
    let ts = c
        .get_min_ts(pdpb::GetMinTsRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner()
        .timestamp
        .unwrap();
    ((ts.physical as u64) << 18) | ts.logical as u64
}

async fn gc_safe_point(c: &mut PdClient<Channel>, cid: u64) -> u64 {
    c.get_gc_safe_point(pdpb::GetGcSafePointRequest { header: header(cid) })
        .await
        .unwrap()
        .into_inner()
        .safe_point
}

/// Polls the GC safe point until `done` holds, checking `always` on every value seen.
async fn wait_gc(
    c: &mut PdClient<Channel>,
    cid: u64,
    what: &str,
    always: impl Fn(u64) -> bool,
    done: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sp = gc_safe_point(c, cid).await;
        assert!(always(sp), "{what}: unexpected gc safe point {sp}");
        if done(sp) {
            return sp;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {sp}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn gc_safe_point_advances_by_itself_behind_service_safe_points() {
    let mut config = PdConfig {
        client_urls: "http://127.0.0.1:0".into(),
        ..Default::default()
    };
    config.gc.retention = crate::duration::ReadableDuration::secs(1);
    config.gc.advance_interval = crate::duration::ReadableDuration::millis(20);
    let server = PdServer::start(config, MemEngine::new()).await.unwrap();
    let mut c = PdClient::connect(format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    let cid = server.cluster_id();
    let node = must_bootstrap_with_node(&mut c, cid, &server).await;
    // A crashed transaction's lock, old enough to be resolved before the first advance.
    let old = now_ts(&mut c, cid).await - (5000 << 18);
    node.kv.put_commit("k", old, old + 1);
    node.kv.put_lock("k2", "k", old);

    // It moves on its own, and stays at least the retention behind now.
    let first = wait_gc(&mut c, cid, "first advance", |_| true, |sp| sp > 0).await;
    assert!(first <= now_ts(&mut c, cid).await - (1000 << 18));
    // A later round resolves the lock (it may have come after the first): its transaction
    // committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.kv.committed("k2", old).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "lock not resolved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.kv.committed("k2", old), Some(old + 1));
    assert!(node.kv.lock_keys().is_empty());
    wait_gc(&mut c, cid, "past the lock", |_| true, |sp| sp >= old).await;

    // A service safe point ahead of it holds it back: it reaches the service's, never passes.
    let br = now_ts(&mut c, cid).await;
    let resp = c
        .update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
            header: header(cid),
            service_id: b"br".to_vec(),
            ttl: 60,
            safe_point: br,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.service_id, b"gc_worker".to_vec());
    assert!(resp.min_safe_point >= first && resp.min_safe_point < br);
    wait_gc(&mut c, cid, "held by br", |sp| sp <= br, |sp| sp == br).await;
    // A service can no longer register behind it (gc_worker followed the safe point).
    let late = c
        .update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
            header: header(cid),
            service_id: b"cdc".to_vec(),
            ttl: 60,
            safe_point: first,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.min_safe_point, br);
    // Once br is gone it moves on.
    c.update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
        header: header(cid),
        service_id: b"br".to_vec(),
        ttl: 0,
        safe_point: 0,
    })
    .await
    .unwrap();
    let after = wait_gc(&mut c, cid, "after br", |sp| sp >= br, |sp| sp > br).await;
    // Never back, whoever asks.
    let back = c
        .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
            header: header(cid),
            safe_point: first,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(back.new_safe_point >= after);
    // Stopping ends the driver too.
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn gc_retention_zero_disables_the_advance_not_manual_ones() {
    // `start` sets gc.retention = "0s".
    let (server, mut c, cid) = start(MemEngine::new()).await;
    let _node = must_bootstrap_with_node(&mut c, cid, &server).await;
    assert_eq!(gc_safe_point(&mut c, cid).await, 0);
    // Manual advances still work (HTTP), through the real port.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = now_ts(&mut c, cid).await - (5000 << 18);
    let body = format!(r#"{{"safe_point": {target}}}"#);
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let req = format!(
        "POST /pd/api/v1/gc/safepoint HTTP/1.1\r\nHost: pd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tcp.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert_eq!(gc_safe_point(&mut c, cid).await, target);
    server.stop().await.unwrap();
}
