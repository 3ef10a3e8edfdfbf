//! End-to-end tests of transactions: the real `atoll-pd` and `atoll-kv` binaries on loopback,
//! driven by the real `tikv-client` 0.4 `TransactionClient`, in API V2 (`with_default_keyspace()`,
//! keyspace `DEFAULT`, transactional keys `x\0\0\0…`, all in region 4 of a fresh cluster) and
//! API V1 (keys stored memcomparable-encoded: `a/…` in region 1, `s/…` in region 3, `y/…` in
//! region 5, so one transaction spans three regions and three Raft groups).
//!
//! Where a test needs a client that stops half-way (an abandoned transaction), it speaks
//! `tikvpb.Tikv` by hand with Atoll's own generated client, exactly as a crashed TiKV client
//! would have left things.

#[path = "../common/mod.rs"]
mod common;

mod bank;
mod optimistic;
mod pessimistic;
mod recovery;

use std::time::Duration;

use atoll_proto::kvrpcpb::{self, ApiVersion, Context};
use atoll_proto::pdpb::pd_client::PdClient;
use atoll_proto::pdpb::{GetMembersRequest, GetRegionRequest, RequestHeader};
use atoll_proto::tikvpb::tikv_client::TikvClient;
use common::{memcomparable, wait_ok, wait_until, Cluster};
use tikv_client::{Transaction, TransactionClient};

/// Bound for an operation that must finish (not hang on a lock forever).
const MUST_FINISH: Duration = Duration::from_secs(60);

fn val(key: &str) -> Vec<u8> {
    format!("value of {key}").into_bytes()
}

/// Writes `kvs` in one optimistic transaction; returns the commit ts.
async fn put_txn(client: &TransactionClient, kvs: &[(&str, Vec<u8>)]) -> u64 {
    use tikv_client::TimestampExt;
    let mut txn = client.begin_optimistic().await.expect("begin");
    for (k, v) in kvs {
        txn.put(k.to_string(), v.clone()).await.expect("put");
    }
    let ts = txn.commit().await.expect("commit").expect("a commit ts");
    ts.version()
}

/// The latest committed value of `key` (a fresh read-only snapshot).
async fn read(client: &TransactionClient, key: &str) -> Option<Vec<u8>> {
    let ts = client.current_timestamp().await.expect("tso");
    let mut snap = client.snapshot(ts, tikv_client::TransactionOptions::new_optimistic());
    tokio::time::timeout(MUST_FINISH, snap.get(key.to_string()))
        .await
        .expect("read finishes")
        .expect("get")
}

/// Rolls back `txn`, whatever state a failed call left it in.
async fn abandon(mut txn: Transaction) {
    let _ = txn.rollback().await;
}

/// A hand-driven `tikvpb.Tikv` connection to the node holding every region (1-node cluster),
/// with PD for region lookups.
struct Manual {
    kv: TikvClient<tonic::transport::Channel>,
    pd: PdClient<tonic::transport::Channel>,
    cluster_id: u64,
}

impl Manual {
    async fn connect(cluster: &Cluster) -> Manual {
        let pd_url = cluster.pd_url();
        let mut pd = wait_ok(Duration::from_secs(10), "connect to PD", || {
            PdClient::connect(pd_url.clone())
        })
        .await;
        let cluster_id = pd
            .get_members(GetMembersRequest { header: None })
            .await
            .expect("GetMembers")
            .into_inner()
            .header
            .expect("header")
            .cluster_id;
        let kv_url = format!("http://{}", cluster.kv_addr(0));
        let kv = wait_ok(Duration::from_secs(10), "connect to kv-0", || {
            TikvClient::connect(kv_url.clone())
        })
        .await;
        Manual { kv, pd, cluster_id }
    }

    /// The context of V2 key `key`'s region.
    async fn ctx(&mut self, key: &[u8]) -> Context {
        let resp = self
            .pd
            .get_region(GetRegionRequest {
                header: Some(RequestHeader {
                    cluster_id: self.cluster_id,
                    ..Default::default()
                }),
                region_key: memcomparable(key),
                need_buckets: false,
            })
            .await
            .expect("GetRegion")
            .into_inner();
        let region = resp.region.expect("region");
        Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: resp.leader,
            api_version: ApiVersion::V2 as i32,
            ..Default::default()
        }
    }

    /// Prewrites `keys` (V2, with prefix) as puts of transaction `start_ts`.
    async fn prewrite(&mut self, keys: &[&[u8]], primary: &[u8], start_ts: u64, ttl_ms: u64) {
        let ctx = self.ctx(primary).await;
        let resp = self
            .kv
            .kv_prewrite(kvrpcpb::PrewriteRequest {
                context: Some(ctx),
                mutations: keys
                    .iter()
                    .map(|k| kvrpcpb::Mutation {
                        op: kvrpcpb::Op::Put as i32,
                        key: k.to_vec(),
                        value: b"from an abandoned txn".to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                primary_lock: primary.to_vec(),
                start_version: start_ts,
                lock_ttl: ttl_ms,
                txn_size: keys.len() as u64,
                ..Default::default()
            })
            .await
            .expect("KvPrewrite")
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.errors.is_empty(),
            "prewrite: {resp:?}"
        );
    }

    async fn commit(&mut self, keys: &[&[u8]], start_ts: u64, commit_ts: u64) -> kvrpcpb::CommitResponse {
        let ctx = self.ctx(keys[0]).await;
        self.kv
            .kv_commit(kvrpcpb::CommitRequest {
                context: Some(ctx),
                start_version: start_ts,
                keys: keys.iter().map(|k| k.to_vec()).collect(),
                commit_version: commit_ts,
                ..Default::default()
            })
            .await
            .expect("KvCommit")
            .into_inner()
    }

    async fn heart_beat(&mut self, primary: &[u8], start_ts: u64, ttl_ms: u64) -> u64 {
        let ctx = self.ctx(primary).await;
        let resp = self
            .kv
            .kv_txn_heart_beat(kvrpcpb::TxnHeartBeatRequest {
                context: Some(ctx),
                primary_lock: primary.to_vec(),
                start_version: start_ts,
                advise_lock_ttl: ttl_ms,
                ..Default::default()
            })
            .await
            .expect("KvTxnHeartBeat")
            .into_inner();
        assert!(
            resp.error.is_none() && resp.region_error.is_none(),
            "heartbeat: {resp:?}"
        );
        resp.lock_ttl
    }
}
