//! Wire-compatibility checks: encodings are compared against bytes computed by
//! hand from kvproto's field numbers, and service/method paths against the
//! gRPC paths TiKV clients use.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use prost::Message;
use tonic::body::Body;
use tonic::codegen::{http, Service};

use crate::{atollpb, errorpb, keyspacepb, kvrpcpb, metapb, pdpb, tikvpb};

// Tag byte(s) = varint((field_number << 3) | wire_type); wire type 0 = varint,
// 2 = length-delimited.

#[test]
fn raw_get_request_wire_bytes() {
    let req = kvrpcpb::RawGetRequest {
        context: Some(kvrpcpb::Context {
            region_id: 5,
            ..Default::default()
        }),
        key: b"k".to_vec(),
        cf: String::new(),
    };
    let expected = [
        0x0a, 0x02, // field 1 (context), LEN 2
        0x08, 0x05, //   Context field 1 (region_id) = 5
        0x12, 0x01, b'k', // field 2 (key), LEN 1
    ];
    assert_eq!(req.encode_to_vec(), expected);
}

#[test]
fn context_high_field_numbers() {
    let ctx = kvrpcpb::Context {
        api_version: kvrpcpb::ApiVersion::V2 as i32,
        busy_threshold_ms: 1,
        keyspace_id: 7,
        ..Default::default()
    };
    let expected = [
        0xa8, 0x01, 0x02, // field 21 (api_version) = V2
        0xd8, 0x01, 0x01, // field 27 (busy_threshold_ms) = 1
        0x80, 0x02, 0x07, // field 32 (keyspace_id) = 7
    ];
    assert_eq!(ctx.encode_to_vec(), expected);
}

#[test]
fn omitted_fields_are_skipped_on_decode() {
    // region_id = 5, then an empty field 23 (trace_context, not modelled here).
    let bytes = [0x08, 0x05, 0xba, 0x01, 0x00];
    let ctx = kvrpcpb::Context::decode(&bytes[..]).expect("decode");
    assert_eq!(ctx.region_id, 5);
}

#[test]
fn lock_info_txn_file_flag_is_field_100() {
    let lock = kvrpcpb::LockInfo {
        is_txn_file: true,
        ..Default::default()
    };
    assert_eq!(lock.encode_to_vec(), [0xa0, 0x06, 0x01]);
}

#[test]
fn tso_request_wire_bytes() {
    let req = pdpb::TsoRequest {
        header: Some(pdpb::RequestHeader {
            cluster_id: 1,
            sender_id: 0,
        }),
        count: 3,
        dc_location: String::new(),
    };
    let expected = [
        0x0a, 0x02, 0x08, 0x01, // field 1 (header) { cluster_id = 1 }
        0x10, 0x03, // field 2 (count) = 3
    ];
    assert_eq!(req.encode_to_vec(), expected);
}

#[test]
fn tso_response_wire_bytes() {
    let resp = pdpb::TsoResponse {
        header: None,
        count: 1,
        timestamp: Some(pdpb::Timestamp {
            physical: 10,
            logical: 2,
            suffix_bits: 0,
        }),
    };
    let expected = [
        0x10, 0x01, // field 2 (count) = 1
        0x1a, 0x04, 0x08, 0x0a, 0x10, 0x02, // field 3 (timestamp) {10, 2}
    ];
    assert_eq!(resp.encode_to_vec(), expected);
}

#[test]
fn region_wire_bytes() {
    let region = metapb::Region {
        id: 1,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 2,
            version: 3,
        }),
        peers: vec![metapb::Peer {
            id: 4,
            store_id: 5,
            role: metapb::PeerRole::Learner as i32,
            is_witness: false,
        }],
        is_in_flashback: true,
        flashback_start_ts: 7,
    };
    let expected = [
        0x08, 0x01, // 1 id
        0x12, 0x01, b'a', // 2 start_key
        0x1a, 0x01, b'b', // 3 end_key
        0x22, 0x04, 0x08, 0x02, 0x10, 0x03, // 4 region_epoch
        0x2a, 0x06, 0x08, 0x04, 0x10, 0x05, 0x18, 0x01, // 5 peers[0]
        // 6 (encryption_meta) intentionally absent.
        0x38, 0x01, // 7 is_in_flashback
        0x40, 0x07, // 8 flashback_start_ts
    ];
    assert_eq!(region.encode_to_vec(), expected);
}

#[test]
fn store_node_state_is_field_13() {
    let store = metapb::Store {
        node_state: metapb::NodeState::Serving as i32,
        ..Default::default()
    };
    assert_eq!(store.encode_to_vec(), [0x68, 0x01]);
}

#[test]
fn region_error_field_numbers() {
    let err = errorpb::Error {
        not_leader: Some(errorpb::NotLeader {
            region_id: 1,
            leader: None,
        }),
        recovery_in_progress: Some(errorpb::RecoveryInProgress { region_id: 9 }),
        ..Default::default()
    };
    let expected = [
        0x12, 0x02, 0x08, 0x01, // field 2 (not_leader) { region_id = 1 }
        0x82, 0x01, 0x02, 0x08, 0x09, // field 16 (RecoveryInProgress) { 9 }
    ];
    assert_eq!(err.encode_to_vec(), expected);
}

#[test]
fn raft_message_round_trip() {
    let msg = atollpb::RaftMessageBatch {
        msgs: vec![atollpb::RaftMessage {
            region_id: 3,
            message: vec![1, 2, 3],
            ..Default::default()
        }],
    };
    let expected = [
        0x0a, 0x07, // field 1 (msgs[0]), LEN 7
        0x08, 0x03, //   region_id = 3
        0x42, 0x03, 1, 2, 3, //   field 8 (message)
    ];
    let bytes = msg.encode_to_vec();
    assert_eq!(bytes, expected);
    assert_eq!(
        atollpb::RaftMessageBatch::decode(&bytes[..]).expect("decode"),
        msg
    );
}

#[test]
fn service_names() {
    assert_eq!(tikvpb::tikv_server::SERVICE_NAME, "tikvpb.Tikv");
    assert_eq!(pdpb::pd_server::SERVICE_NAME, "pdpb.PD");
    assert_eq!(keyspacepb::keyspace_server::SERVICE_NAME, "keyspacepb.Keyspace");
    assert_eq!(
        atollpb::raft_transport_server::SERVICE_NAME,
        "atollpb.RaftTransport"
    );
}

/// A fake HTTP/2 transport that records request paths and answers every call
/// with a trailers-only UNIMPLEMENTED status.
#[derive(Clone, Default)]
struct PathRecorder(Arc<Mutex<Vec<String>>>);

impl PathRecorder {
    fn paths(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

impl Service<http::Request<Body>> for PathRecorder {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.0.lock().expect("lock").push(req.uri().path().to_owned());
        let resp = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .body(Body::empty())
            .expect("response");
        std::future::ready(Ok(resp))
    }
}

/// Drives a future that never actually waits (the fake transport is always
/// ready), so no async runtime is needed.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete");
}

#[test]
fn client_method_paths() {
    let rec = PathRecorder::default();

    let mut tikv = tikvpb::tikv_client::TikvClient::new(rec.clone());
    let status = block_on(tikv.raw_get(kvrpcpb::RawGetRequest::default())).expect_err("fake");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let _ = block_on(tikv.kv_pessimistic_rollback(kvrpcpb::PessimisticRollbackRequest::default()));
    let _ = block_on(tikv.raw_compare_and_swap(kvrpcpb::RawCasRequest::default()));
    let _ = block_on(tikv.kv_gc(kvrpcpb::GcRequest::default()));
    let _ = block_on(tikv.coprocessor(crate::coprocessor::Request::default()));

    let mut pd = pdpb::pd_client::PdClient::new(rec.clone());
    let reqs = tonic::codegen::tokio_stream::iter(vec![pdpb::TsoRequest::default()]);
    let _ = block_on(pd.tso(reqs));
    let _ = block_on(pd.get_region_by_id(pdpb::GetRegionByIdRequest::default()));
    let _ = block_on(pd.get_min_ts(pdpb::GetMinTsRequest::default()));

    let mut ks = keyspacepb::keyspace_client::KeyspaceClient::new(rec.clone());
    let _ = block_on(ks.load_keyspace(keyspacepb::LoadKeyspaceRequest::default()));

    let mut raft = atollpb::raft_transport_client::RaftTransportClient::new(rec.clone());
    let batches = tonic::codegen::tokio_stream::iter(vec![atollpb::RaftMessageBatch::default()]);
    let _ = block_on(raft.send(batches));

    assert_eq!(
        rec.paths(),
        [
            "/tikvpb.Tikv/RawGet",
            "/tikvpb.Tikv/KVPessimisticRollback",
            "/tikvpb.Tikv/RawCompareAndSwap",
            "/tikvpb.Tikv/KvGC",
            "/tikvpb.Tikv/Coprocessor",
            "/pdpb.PD/Tso",
            "/pdpb.PD/GetRegionByID",
            "/pdpb.PD/GetMinTS",
            "/keyspacepb.Keyspace/LoadKeyspace",
            "/atollpb.RaftTransport/Send",
        ]
    );
}
