//! Bad input against the real binaries: oversized keys and values through `tikv-client`, and
//! hand-built gRPC requests with a wrong region id, a stale epoch, a key outside the region, a
//! wrong store, and a wrong PD cluster id. Each must get TiKV's/PD's error (never a panic, never
//! a silent success), and the servers must keep serving correct requests afterwards.
//!
//! `tikv-client` 0.4 keeps its generated protos and tonic clients private (`mod proto`), so the
//! hand-built requests use Atoll's own kvproto-compatible `atoll-proto` crate (tonic 0.14); a
//! correct hand-built request is checked against `tikv-client` first, which pins the encoding.

mod common;

use std::time::Duration;

use atoll_proto::kvrpcpb::{Context, RawGetRequest, RawGetResponse, RawPutRequest, RawPutResponse};
use atoll_proto::metapb::{Peer, Region};
use atoll_proto::pdpb::pd_client::PdClient;
use atoll_proto::pdpb::{GetAllStoresRequest, GetMembersRequest, GetRegionRequest, RequestHeader};
use atoll_proto::tikvpb::tikv_client::TikvClient;
use common::{wait_ok, Cluster};
use tikv_client::RawClient;
use tonic::transport::Channel;

/// Generous bound for an operation that must fail rather than retry forever.
const MUST_ANSWER: Duration = Duration::from_secs(60);

async fn must_fail<T: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = tikv_client::Result<T>>,
) -> tikv_client::Error {
    match tokio::time::timeout(MUST_ANSWER, fut).await {
        Err(_) => panic!("{what}: no answer within {MUST_ANSWER:?}"),
        Ok(Ok(v)) => panic!("{what}: expected an error, got Ok({v:?})"),
        Ok(Err(e)) => e,
    }
}

/// The node answers ordinary requests and its process is alive.
async fn still_serving(cluster: &mut Cluster, c: &RawClient, tag: &str) {
    assert!(
        cluster.kv_running(0),
        "{tag}: kv-0 exited\n{}",
        cluster.log_tails()
    );
    let k = format!("a/ok/{tag}");
    c.put(k.clone(), b"fine".to_vec())
        .await
        .unwrap_or_else(|e| panic!("{tag}: put after bad input: {e:?}"));
    let got = c
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("{tag}: get after bad input: {e:?}"));
    assert_eq!(got, Some(b"fine".to_vec()), "{tag}: value after bad input");
}

// ---------------------------------------------------------------------------------------------
// Sizes, through tikv-client
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_key_is_rejected_and_node_keeps_serving() {
    let mut cluster = Cluster::start(1).await;
    for (api, c) in [("v1", cluster.raw_v1().await), ("v2", cluster.raw_v2().await)] {
        // 4 KiB keys are fine.
        let ok_key = [b"a/".to_vec(), vec![b'k'; 4096]].concat();
        c.put(ok_key.clone(), b"v".to_vec()).await.expect("put 4 KiB key");
        assert_eq!(c.get(ok_key).await.expect("get 4 KiB key"), Some(b"v".to_vec()));

        // Beyond TiKV's 8 KiB key limit: an error to the client.
        let big_key = [b"a/".to_vec(), vec![b'k'; 9000]].concat();
        let e = must_fail("put 9000-byte key", c.put(big_key.clone(), b"v".to_vec())).await;
        eprintln!("[{api}] put of a 9000-byte key: {e:?}");
        still_serving(&mut cluster, &c, &format!("{api}-put")).await;

        let batch = vec![
            (b"a/batch-ok".to_vec(), b"v".to_vec()),
            (big_key.clone(), b"v".to_vec()),
        ];
        let e = must_fail("batch_put with a 9000-byte key", c.batch_put(batch)).await;
        eprintln!("[{api}] batch_put with a 9000-byte key: {e:?}");
        still_serving(&mut cluster, &c, &format!("{api}-batch")).await;

        let e = must_fail(
            "cas with a 9000-byte key",
            c.with_atomic_for_cas()
                .compare_and_swap(big_key.clone(), None, b"v".to_vec()),
        )
        .await;
        eprintln!("[{api}] compare_and_swap with a 9000-byte key: {e:?}");
        still_serving(&mut cluster, &c, &format!("{api}-cas")).await;

        // The limit applies to the key as sent (API V2: with its 4-byte keyspace prefix), at
        // 8 KiB exactly; one byte more is refused.
        let prefix = if api == "v2" { 4 } else { 0 };
        let at_limit = [b"a/".to_vec(), vec![b'l'; 8192 - 2 - prefix]].concat();
        c.put(at_limit.clone(), b"v".to_vec())
            .await
            .expect("put a key of exactly 8 KiB");
        let over = [at_limit.clone(), b"x".to_vec()].concat();
        must_fail("put a key of 8 KiB + 1", c.put(over.clone(), b"v".to_vec())).await;
        must_fail("delete a key of 8 KiB + 1", c.delete(over.clone())).await;
        // Reads are not size-checked (TiKV checks only written and deleted keys).
        assert_eq!(
            c.get(big_key.clone()).await.expect("get of a 9000-byte key"),
            None
        );
        // A Python client's "+infinity" upper bound: 8 KiB + 1 bytes of 0xff.
        let infinity = vec![0xffu8; 8193];
        let found = c
            .scan_reverse(b"a/".to_vec()..infinity.clone(), 1000)
            .await
            .expect("reverse scan up to 8 KiB + 1 bytes of 0xff");
        assert!(
            found.iter().any(|p| Vec::from(p.key().clone()) == at_limit),
            "[{api}] the reverse scan misses the 8 KiB key"
        );
        let found = c
            .scan(b"a/".to_vec()..infinity, 1000)
            .await
            .expect("scan up to 8 KiB + 1 bytes of 0xff");
        assert!(!found.is_empty(), "[{api}] the scan found nothing");
        c.delete(at_limit).await.expect("delete a key of exactly 8 KiB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_value_is_rejected_and_node_keeps_serving() {
    let mut cluster = Cluster::start(1).await;
    for (api, c) in [("v1", cluster.raw_v1().await), ("v2", cluster.raw_v2().await)] {
        // 1 MiB values are fine.
        let mib: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
        c.put(b"a/mib".to_vec(), mib.clone())
            .await
            .expect("put 1 MiB value");
        assert_eq!(
            c.get(b"a/mib".to_vec()).await.expect("get 1 MiB value"),
            Some(mib)
        );

        // 9 MiB: beyond TiKV's raft entry limit (8 MiB) and the default gRPC message size.
        let huge = vec![7u8; 9 << 20];
        let e = must_fail("put 9 MiB value", c.put(b"a/huge".to_vec(), huge)).await;
        eprintln!(
            "[{api}] put of a 9 MiB value: {}",
            format!("{e:?}").chars().take(300).collect::<String>()
        );
        still_serving(&mut cluster, &c, &format!("{api}-huge")).await;
        assert_eq!(
            c.get(b"a/huge".to_vec()).await.expect("get"),
            None,
            "[{api}] rejected value was written"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built gRPC requests
// ---------------------------------------------------------------------------------------------

fn header(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader {
        cluster_id,
        sender_id: 0,
    })
}

fn context(region: &Region, leader: &Peer) -> Context {
    Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: Some(*leader),
        ..Default::default()
    }
}

/// A PD client and the cluster id.
async fn pd_client(cluster: &Cluster) -> (PdClient<Channel>, u64) {
    let pd_url = cluster.pd_url();
    let mut pd = wait_ok(Duration::from_secs(10), "connect to PD", || {
        PdClient::connect(pd_url.clone())
    })
    .await;
    let cluster_id = pd
        .get_members(GetMembersRequest { header: header(0) })
        .await
        .expect("GetMembers")
        .into_inner()
        .header
        .expect("response header")
        .cluster_id;
    (pd, cluster_id)
}

/// A gRPC client of node `i`.
async fn kv_client(cluster: &Cluster, i: usize) -> TikvClient<Channel> {
    let kv_url = format!("http://{}", cluster.kv_addr(i));
    wait_ok(Duration::from_secs(10), "connect to the node", || {
        TikvClient::connect(kv_url.clone())
    })
    .await
}

fn raw_get(ctx: Context, key: &[u8]) -> RawGetRequest {
    RawGetRequest {
        context: Some(ctx),
        key: key.to_vec(),
        ..Default::default()
    }
}

fn raw_put(ctx: Context, key: &[u8], value: &[u8]) -> RawPutRequest {
    RawPutRequest {
        context: Some(ctx),
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

fn assert_ok_get(resp: &RawGetResponse, what: &str) {
    assert!(
        resp.region_error.is_none(),
        "{what}: region error {:?}",
        resp.region_error
    );
    assert!(resp.error.is_empty(), "{what}: error {:?}", resp.error);
}

fn assert_ok_put(resp: &RawPutResponse, what: &str) {
    assert!(
        resp.region_error.is_none(),
        "{what}: region error {:?}",
        resp.region_error
    );
    assert!(resp.error.is_empty(), "{what}: error {:?}", resp.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_answers_region_errors_for_bad_request_contexts() {
    let cluster = Cluster::start(1).await;
    let (mut pd, cluster_id) = pd_client(&cluster).await;
    assert_ne!(cluster_id, 0, "cluster id");

    // The region of V1 key `a/grpc` (region 1) and its leader, as PD knows them.
    let key = b"a/grpc".to_vec();
    let resp = pd
        .get_region(GetRegionRequest {
            header: header(cluster_id),
            region_key: key.clone(),
            need_buckets: false,
        })
        .await
        .expect("GetRegion")
        .into_inner();
    let region = resp.region.expect("region");
    let leader = resp.leader.expect("leader");
    let epoch = region.region_epoch.expect("region epoch");
    let mut kv = kv_client(&cluster, 0).await;
    let client = cluster.raw_v1().await;

    // A correct hand-built put, seen by tikv-client: the baseline for everything below.
    let good = context(&region, &leader);
    let resp = kv
        .raw_put(raw_put(good.clone(), &key, b"by-hand"))
        .await
        .expect("RawPut")
        .into_inner();
    assert_ok_put(&resp, "correct RawPut");
    assert_eq!(
        client.get(key.clone()).await.expect("get"),
        Some(b"by-hand".to_vec())
    );
    let check_good = |resp: RawGetResponse, after: &str| {
        assert_ok_get(&resp, &format!("correct RawGet after {after}"));
        assert!(!resp.not_found, "correct RawGet after {after}: not found");
        assert_eq!(resp.value, b"by-hand".to_vec(), "correct RawGet after {after}");
    };

    // 1. A region id that does not exist.
    let mut ctx = good.clone();
    ctx.region_id = 999_999;
    let resp = kv
        .raw_get(raw_get(ctx.clone(), &key))
        .await
        .expect("RawGet")
        .into_inner();
    let err = resp.region_error.expect("region error for region 999999");
    assert_eq!(
        err.region_not_found.map(|e| e.region_id),
        Some(999_999),
        "RawGet region 999999: {err:?}"
    );
    let resp = kv
        .raw_put(raw_put(ctx, &key, b"nope"))
        .await
        .expect("RawPut")
        .into_inner();
    let err = resp.region_error.expect("region error for region 999999");
    assert!(err.region_not_found.is_some(), "RawPut region 999999: {err:?}");
    check_good(
        kv.raw_get(raw_get(good.clone(), &key))
            .await
            .expect("RawGet")
            .into_inner(),
        "region 999999",
    );

    // 2. A stale (or future) epoch: version + 10 and version 0.
    for version in [epoch.version + 10, 0] {
        let mut ctx = good.clone();
        ctx.region_epoch = Some(atoll_proto::metapb::RegionEpoch {
            version,
            conf_ver: epoch.conf_ver,
        });
        let resp = kv
            .raw_get(raw_get(ctx.clone(), &key))
            .await
            .expect("RawGet")
            .into_inner();
        let err = resp.region_error.expect("region error for a wrong epoch");
        let enm = err
            .epoch_not_match
            .clone()
            .unwrap_or_else(|| panic!("RawGet version {version}: {err:?}"));
        assert!(
            enm.current_regions
                .iter()
                .any(|r| r.id == region.id && r.region_epoch.as_ref() == Some(&epoch)),
            "EpochNotMatch must carry the current region: {enm:?}"
        );
        let resp = kv
            .raw_put(raw_put(ctx, &key, b"nope"))
            .await
            .expect("RawPut")
            .into_inner();
        let err = resp.region_error.expect("region error for a wrong epoch");
        assert!(err.epoch_not_match.is_some(), "RawPut version {version}: {err:?}");
        check_good(
            kv.raw_get(raw_get(good.clone(), &key))
                .await
                .expect("RawGet")
                .into_inner(),
            &format!("epoch version {version}"),
        );
    }

    // 3. A key outside the region (V1 `y/…` lives in the last region).
    let resp = kv
        .raw_get(raw_get(good.clone(), b"y/elsewhere"))
        .await
        .expect("RawGet")
        .into_inner();
    let err = resp
        .region_error
        .expect("region error for a key outside the region");
    let knr = err
        .key_not_in_region
        .clone()
        .unwrap_or_else(|| panic!("RawGet y/elsewhere: {err:?}"));
    assert_eq!(knr.region_id, region.id);
    assert_eq!(knr.key, b"y/elsewhere".to_vec());
    let resp = kv
        .raw_put(raw_put(good.clone(), b"y/elsewhere", b"nope"))
        .await
        .expect("RawPut")
        .into_inner();
    let err = resp
        .region_error
        .expect("region error for a key outside the region");
    assert!(err.key_not_in_region.is_some(), "RawPut y/elsewhere: {err:?}");
    check_good(
        kv.raw_get(raw_get(good.clone(), &key))
            .await
            .expect("RawGet")
            .into_inner(),
        "key not in region",
    );

    // 4. A peer on another store.
    let mut ctx = good.clone();
    ctx.peer = Some(Peer {
        store_id: leader.store_id + 1000,
        ..leader
    });
    let resp = kv.raw_get(raw_get(ctx, &key)).await.expect("RawGet").into_inner();
    let err = resp.region_error.expect("region error for a wrong store");
    assert!(err.store_not_match.is_some(), "RawGet on a wrong store: {err:?}");
    check_good(
        kv.raw_get(raw_get(good.clone(), &key))
            .await
            .expect("RawGet")
            .into_inner(),
        "wrong store",
    );

    // None of the rejected puts was applied; tikv-client still works.
    assert_eq!(
        client.get(key.clone()).await.expect("get"),
        Some(b"by-hand".to_vec())
    );
    assert_eq!(client.get(b"y/elsewhere".to_vec()).await.expect("get"), None);
    client
        .put(b"s/after".to_vec(), b"ok".to_vec())
        .await
        .expect("put after bad requests");
    assert_eq!(
        client.get(b"s/after".to_vec()).await.expect("get"),
        Some(b"ok".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_rejects_a_wrong_cluster_id() {
    let cluster = Cluster::start(1).await;
    let (mut pd, cluster_id) = pd_client(&cluster).await;
    let wrong = cluster_id.wrapping_add(1);

    let get_region = |cluster_id| GetRegionRequest {
        header: header(cluster_id),
        region_key: b"a/".to_vec(),
        need_buckets: false,
    };
    let status = pd
        .get_region(get_region(wrong))
        .await
        .expect_err("GetRegion with a wrong cluster id");
    assert_eq!(
        format!("{:?}", status.code()),
        "FailedPrecondition",
        "GetRegion, wrong cluster id: {status:?}"
    );
    let resp = pd
        .get_region(get_region(cluster_id))
        .await
        .expect("GetRegion after the wrong one")
        .into_inner();
    assert!(
        resp.region.is_some(),
        "GetRegion with the right cluster id: {resp:?}"
    );

    let status = pd
        .get_all_stores(GetAllStoresRequest {
            header: header(wrong),
            exclude_tombstone_stores: true,
        })
        .await
        .expect_err("GetAllStores with a wrong cluster id");
    assert_eq!(
        format!("{:?}", status.code()),
        "FailedPrecondition",
        "GetAllStores, wrong cluster id: {status:?}"
    );
    let resp = pd
        .get_all_stores(GetAllStoresRequest {
            header: header(cluster_id),
            exclude_tombstone_stores: true,
        })
        .await
        .expect("GetAllStores after the wrong one")
        .into_inner();
    assert_eq!(resp.stores.len(), 1, "stores: {resp:?}");

    // The cluster as a whole is unaffected.
    let c = cluster.raw_v1().await;
    c.put(b"a/pd-ok".to_vec(), b"yes".to_vec()).await.expect("put");
    assert_eq!(
        c.get(b"a/pd-ok".to_vec()).await.expect("get"),
        Some(b"yes".to_vec())
    );
}

/// gRPC message limits (`[server] max-grpc-send-msg-len`, `max-grpc-recv-msg-len`), here set to
/// 1 MiB and 2 MiB: a response or request of exactly the limit passes, one byte more fails with
/// gRPC `OutOfRange`, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_message_limits_hold_at_their_edges() {
    let mut cluster = Cluster::start_with(
        1,
        common::ClusterConfig {
            kv: "[server]\nmax-grpc-send-msg-len = \"1MiB\"\nmax-grpc-recv-msg-len = \"2MiB\"\n".into(),
            ..Default::default()
        },
    )
    .await;
    let (mut pd, cluster_id) = pd_client(&cluster).await;
    let resp = pd
        .get_region(GetRegionRequest {
            header: header(cluster_id),
            region_key: b"a/limit".to_vec(),
            need_buckets: false,
        })
        .await
        .expect("GetRegion")
        .into_inner();
    let ctx = context(&resp.region.expect("region"), &resp.leader.expect("leader"));
    let kv = kv_client(&cluster, 0).await;
    let mut kv = kv
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);

    // The request limit: a put whose encoded request is 2 MiB passes, one byte more fails.
    let put_of_size = |total: usize| {
        let mut req = raw_put(ctx.clone(), b"a/limit", &[]);
        let overhead = prost::Message::encoded_len(&req) + 4; // value tag + 3-byte length
        req.value = vec![1; total - overhead];
        assert_eq!(prost::Message::encoded_len(&req), total);
        req
    };
    let resp = kv.raw_put(put_of_size(2 << 20)).await.expect("a 2 MiB request");
    assert_ok_put(&resp.into_inner(), "a 2 MiB request");
    let err = kv
        .raw_put(put_of_size((2 << 20) + 1))
        .await
        .expect_err("a 2 MiB + 1 request");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    // The response limit: a get answering 1 MiB passes, one byte more fails.
    let get_answer = |value_len: usize| {
        let resp = RawGetResponse {
            value: vec![1; value_len],
            ..Default::default()
        };
        prost::Message::encoded_len(&resp)
    };
    let fits = (1usize << 20) - 8;
    let fits = (fits..fits + 16)
        .filter(|n| get_answer(*n) <= 1 << 20)
        .max()
        .expect("a size");
    assert_eq!(
        get_answer(fits),
        1 << 20,
        "a value whose response is exactly 1 MiB"
    );
    for (len, ok) in [(fits, true), (fits + 1, false)] {
        let put = kv
            .raw_put(raw_put(ctx.clone(), b"a/limit", &vec![2; len]))
            .await
            .expect("put");
        assert_ok_put(&put.into_inner(), "put a value");
        let got = kv.raw_get(raw_get(ctx.clone(), b"a/limit")).await;
        match (got, ok) {
            (Ok(resp), true) => assert_eq!(resp.into_inner().value.len(), len),
            (Err(e), false) => assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}"),
            (other, _) => panic!("a response of {len}-byte value: {other:?}"),
        }
    }
    let client = cluster.raw_v1().await;
    still_serving(&mut cluster, &client, "grpc-limits").await;
}
