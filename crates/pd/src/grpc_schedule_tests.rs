//! Scheduling end to end over gRPC: a leader's heartbeat stream receives the steps of the
//! replica checker's operator and PD follows the region's later heartbeats.

use std::time::Duration;

use atoll_proto::pdpb::{self, pd_client::PdClient};
use atoll_proto::{eraftpb, metapb};
use engine_traits::MemEngine;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::grpc_tests::{alloc, error_type, header, must_bootstrap_at, start};

/// The next step response on the stream (skipping repeats of `skip_type`), within 5 s.
async fn next_step(
    responses: &mut Streaming<pdpb::RegionHeartbeatResponse>,
    skip: Option<i32>,
) -> pdpb::RegionHeartbeatResponse {
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(5), responses.message())
            .await
            .expect("a step within 5s")
            .unwrap()
            .unwrap();
        let t = resp.change_peer.as_ref().map(|c| c.change_type);
        if skip.is_some() && t == skip {
            continue;
        }
        return resp;
    }
}

fn heartbeat(cid: u64, region: &metapb::Region, leader: metapb::Peer) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: header(cid),
        region: Some(region.clone()),
        leader: Some(leader),
        term: 6,
        ..Default::default()
    }
}

async fn put_store(c: &mut PdClient<Channel>, cid: u64, id: u64, addr: &str) {
    let resp = c
        .put_store(pdpb::PutStoreRequest {
            header: header(cid),
            store: Some(metapb::Store {
                id,
                address: addr.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
}

#[tokio::test]
async fn heartbeat_stream_receives_the_make_up_steps() {
    let (server, mut c, cid) = start(MemEngine::new()).await;
    let mut region = must_bootstrap_at(&mut c, cid, "127.0.0.1:20160").await;
    let leader = region.peers[0];
    let store2 = alloc(&mut c, cid).await;
    put_store(&mut c, cid, store2, "127.0.0.1:20161").await;

    let (tx, rx) = mpsc::channel(8);
    let mut responses = c
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(heartbeat(cid, &region, leader)).await.unwrap();

    // max-replicas 3, one voter: add a learner on the only other store.
    let resp = next_step(&mut responses, None).await;
    assert_eq!(resp.header.as_ref().unwrap().cluster_id, cid);
    assert_eq!(resp.region_id, region.id);
    assert_eq!(resp.region_epoch, region.region_epoch);
    assert_eq!(resp.target_peer, Some(leader));
    assert!(resp.transfer_leader.is_none());
    let cp = resp.change_peer.unwrap();
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::AddLearnerNode as i32);
    let learner = cp.peer.unwrap();
    assert_eq!(learner.store_id, store2);
    assert_eq!(learner.role, metapb::PeerRole::Learner as i32);
    assert!(learner.id > region.id);

    // The node added it: the next heartbeat asks for the promotion.
    region.peers.push(learner);
    let epoch = region.region_epoch.as_mut().unwrap();
    epoch.conf_ver += 1;
    tx.send(heartbeat(cid, &region, leader)).await.unwrap();
    let resp = next_step(
        &mut responses,
        Some(eraftpb::ConfChangeType::AddLearnerNode as i32),
    )
    .await;
    assert_eq!(resp.region_epoch, region.region_epoch);
    let cp = resp.change_peer.unwrap();
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::AddNode as i32);
    let voter = cp.peer.unwrap();
    assert_eq!((voter.id, voter.store_id), (learner.id, store2));
    assert_eq!(voter.role, metapb::PeerRole::Voter as i32);

    // Promoted: the operator is done (no third store to add to).
    region.peers[1].role = metapb::PeerRole::Voter as i32;
    region.region_epoch.as_mut().unwrap().conf_ver += 1;
    tx.send(heartbeat(cid, &region, leader)).await.unwrap();
    let mut status = None;
    for _ in 0..100 {
        let op = c
            .get_operator(pdpb::GetOperatorRequest {
                header: header(cid),
                region_id: region.id,
            })
            .await
            .unwrap()
            .into_inner();
        if op.status == pdpb::OperatorStatus::Success as i32 {
            status = Some(op);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let op = status.expect("operator finished");
    assert_eq!(op.desc, b"make-up-replica".to_vec());
    assert_eq!(op.kind, b"region,replica".to_vec());
    let ctx = server.context();
    assert!(ctx.coordinator.operators.operators().is_empty());
    let r = ctx.cluster.region_by_id(region.id).unwrap().unwrap();
    assert_eq!(r.meta.peers.len(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn scatter_region_moves_a_region_off_the_stores_its_group_already_used() {
    let (server, mut c, cid) = start(MemEngine::new()).await;
    let region = must_bootstrap_at(&mut c, cid, "127.0.0.1:20160").await;
    let leader = region.peers[0];
    let store2 = alloc(&mut c, cid).await;
    put_store(&mut c, cid, store2, "127.0.0.1:20161").await;
    // One replica wanted, so that the replica checker leaves the region alone.
    server
        .context()
        .options
        .update(&[(
            crate::options::Section::Replication,
            serde_json::json!({"max-replicas": 1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )])
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut responses = c
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(heartbeat(cid, &region, leader)).await.unwrap();
    let scatter = |c: &mut PdClient<Channel>| {
        let mut c = c.clone();
        async move {
            c.scatter_region(pdpb::ScatterRegionRequest {
                header: header(cid),
                regions_id: vec![region.id],
                group: "t".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    // Wait until PD has the region, then scatter: the first placement keeps it where it is.
    let mut first = scatter(&mut c).await;
    for _ in 0..50 {
        if first.finished_percentage == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = scatter(&mut c).await;
    }
    assert_eq!(first.finished_percentage, 100);
    // The group already has a peer on store 1: the second scatter moves the region to store 2.
    let second = scatter(&mut c).await;
    assert_eq!(second.finished_percentage, 100);
    let resp = next_step(&mut responses, None).await;
    let cp = resp.change_peer.expect("a membership step");
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::AddLearnerNode as i32);
    assert_eq!(cp.peer.map(|p| p.store_id), Some(store2));

    // SplitRegions: a key that already starts a region is done at once; no keys, nothing done.
    let split = c
        .split_regions(pdpb::SplitRegionsRequest {
            header: header(cid),
            split_keys: vec![region.start_key.clone()],
            retry_limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (split.finished_percentage, split.regions_id),
        (100, vec![region.id])
    );
    drop(tx);
}
