//! Test-only fake storage nodes: a tiny Percolator model answering the four RPCs lock
//! resolution sends the way the node's `storage::txn` commands do (checking each request's
//! store, region, epoch and keys), usable directly ([`KvRpc`]) or as a real `tikvpb.Tikv` gRPC
//! server on loopback ([`FakeNode`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use atoll_proto::kvrpcpb::{self, Action, LockInfo, Op};
use atoll_proto::tikvpb::tikv_server::{Tikv, TikvServer};
use atoll_proto::{coprocessor, errorpb};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::client::KvRpc;
use super::decide;
use crate::region_info::RegionInfo;

#[derive(Default)]
pub struct State {
    pub locks: BTreeMap<Vec<u8>, LockInfo>,
    /// (key, start ts) → commit ts.
    pub commits: HashMap<(Vec<u8>, u64), u64>,
    pub rollbacks: HashSet<(Vec<u8>, u64)>,
    pub calls: Vec<&'static str>,
}

impl State {
    fn rollback(&mut self, key: &[u8], start_ts: u64) {
        if self.locks.get(key).is_some_and(|l| l.lock_version == start_ts) {
            self.locks.remove(key);
        }
        self.rollbacks.insert((key.to_vec(), start_ts));
    }

    fn commit(&mut self, key: &[u8], start_ts: u64, commit_ts: u64) {
        self.locks.remove(key);
        self.commits.insert((key.to_vec(), start_ts), commit_ts);
    }
}

/// The nodes: every region's data in one model, with the real regions and store addresses.
#[derive(Default)]
pub struct FakeKv {
    pub regions: Mutex<Vec<RegionInfo>>,
    pub stores: Mutex<HashMap<u64, String>>,
    pub state: Mutex<State>,
    /// Store addresses that do not answer.
    pub down: Mutex<HashSet<String>>,
}

impl FakeKv {
    pub fn new(regions: Vec<RegionInfo>, stores: HashMap<u64, String>) -> FakeKv {
        FakeKv {
            regions: Mutex::new(regions),
            stores: Mutex::new(stores),
            ..Default::default()
        }
    }

    pub fn put_lock(&self, key: &str, primary: &str, start_ts: u64) {
        self.put(LockInfo {
            key: key.as_bytes().to_vec(),
            primary_lock: primary.as_bytes().to_vec(),
            lock_version: start_ts,
            lock_ttl: 3000,
            lock_type: Op::Put as i32,
            ..Default::default()
        });
    }

    pub fn put_async_lock(
        &self,
        key: &str,
        primary: &str,
        start_ts: u64,
        min_commit_ts: u64,
        secondaries: &[&str],
    ) {
        self.put(LockInfo {
            key: key.as_bytes().to_vec(),
            primary_lock: primary.as_bytes().to_vec(),
            lock_version: start_ts,
            lock_ttl: 3000,
            lock_type: Op::Put as i32,
            use_async_commit: true,
            min_commit_ts,
            secondaries: secondaries.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        });
    }

    pub fn put(&self, lock: LockInfo) {
        self.state.lock().locks.insert(lock.key.clone(), lock);
    }

    pub fn put_commit(&self, key: &str, start_ts: u64, commit_ts: u64) {
        self.state
            .lock()
            .commits
            .insert((key.as_bytes().to_vec(), start_ts), commit_ts);
    }

    pub fn committed(&self, key: &str, start_ts: u64) -> Option<u64> {
        self.state
            .lock()
            .commits
            .get(&(key.as_bytes().to_vec(), start_ts))
            .copied()
    }

    pub fn rolled_back(&self, key: &str, start_ts: u64) -> bool {
        self.state
            .lock()
            .rollbacks
            .contains(&(key.as_bytes().to_vec(), start_ts))
    }

    pub fn lock_keys(&self) -> Vec<String> {
        let st = self.state.lock();
        st.locks
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    pub fn calls(&self, rpc: &str) -> usize {
        self.state.lock().calls.iter().filter(|c| **c == rpc).count()
    }

    /// The region a request addresses, as the node checks it: the store answers, the region
    /// is led there with the request's epoch, and every key is inside it.
    fn region_for(
        &self,
        addr: &str,
        ctx: Option<&kvrpcpb::Context>,
        keys: &[&[u8]],
    ) -> Result<Result<RegionInfo, errorpb::Error>, Status> {
        if self.down.lock().contains(addr) {
            return Err(Status::unavailable("connection refused"));
        }
        let ctx = ctx.cloned().unwrap_or_default();
        let regions = self.regions.lock();
        let Some(r) = regions.iter().find(|r| r.id() == ctx.region_id) else {
            return Ok(Err(errorpb::Error {
                message: "region not found".into(),
                region_not_found: Some(errorpb::RegionNotFound {
                    region_id: ctx.region_id,
                }),
                ..Default::default()
            }));
        };
        let leader_addr = r
            .leader
            .and_then(|l| self.stores.lock().get(&l.store_id).cloned());
        if leader_addr.as_deref() != Some(addr) || ctx.region_epoch != r.meta.region_epoch {
            return Ok(Err(errorpb::Error {
                message: "epoch not match".into(),
                epoch_not_match: Some(errorpb::EpochNotMatch {
                    current_regions: vec![r.meta.clone()],
                }),
                ..Default::default()
            }));
        }
        if keys.iter().any(|k| !r.contains(&decide::range_key(k))) {
            return Ok(Err(errorpb::Error {
                message: "key not in region".into(),
                ..Default::default()
            }));
        }
        Ok(Ok(r.clone()))
    }
}

impl KvRpc for FakeKv {
    async fn scan_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ScanLockRequest,
    ) -> Result<kvrpcpb::ScanLockResponse, Status> {
        self.state.lock().calls.push("scan_lock");
        let region = match self.region_for(addr, req.context.as_ref(), &[])? {
            Ok(r) => r,
            Err(e) => {
                return Ok(kvrpcpb::ScanLockResponse {
                    region_error: Some(e),
                    ..Default::default()
                })
            }
        };
        let st = self.state.lock();
        let locks = st
            .locks
            .range(req.start_key.clone()..)
            .map(|(_, l)| l)
            .filter(|l| region.contains(&decide::range_key(&l.key)) && l.lock_version <= req.max_version)
            .take(req.limit as usize)
            .cloned()
            .collect();
        Ok(kvrpcpb::ScanLockResponse {
            locks,
            ..Default::default()
        })
    }

    async fn check_txn_status(
        &self,
        addr: &str,
        req: kvrpcpb::CheckTxnStatusRequest,
    ) -> Result<kvrpcpb::CheckTxnStatusResponse, Status> {
        self.state.lock().calls.push("check_txn_status");
        assert_eq!((req.caller_start_ts, req.current_ts), (0, u64::MAX));
        assert!(req.rollback_if_not_exist);
        if let Err(e) = self.region_for(addr, req.context.as_ref(), &[&req.primary_key])? {
            return Ok(kvrpcpb::CheckTxnStatusResponse {
                region_error: Some(e),
                ..Default::default()
            });
        }
        let mut st = self.state.lock();
        let key = req.primary_key.clone();
        let mut resp = kvrpcpb::CheckTxnStatusResponse::default();
        if let Some(l) = st.locks.get(&key).filter(|l| l.lock_version == req.lock_ts) {
            if l.use_async_commit && !req.force_sync_commit {
                resp.lock_ttl = l.lock_ttl.max(1);
                resp.lock_info = Some(l.clone());
                return Ok(resp);
            }
            st.rollback(&key, req.lock_ts);
            resp.action = Action::TtlExpireRollback as i32;
        } else if let Some(ts) = st.commits.get(&(key.clone(), req.lock_ts)) {
            resp.commit_version = *ts;
        } else if !st.rollbacks.contains(&(key.clone(), req.lock_ts)) {
            st.rollback(&key, req.lock_ts);
            resp.action = Action::LockNotExistRollback as i32;
        }
        Ok(resp)
    }

    async fn check_secondary_locks(
        &self,
        addr: &str,
        req: kvrpcpb::CheckSecondaryLocksRequest,
    ) -> Result<kvrpcpb::CheckSecondaryLocksResponse, Status> {
        self.state.lock().calls.push("check_secondary_locks");
        let keys: Vec<&[u8]> = req.keys.iter().map(Vec::as_slice).collect();
        if let Err(e) = self.region_for(addr, req.context.as_ref(), &keys)? {
            return Ok(kvrpcpb::CheckSecondaryLocksResponse {
                region_error: Some(e),
                ..Default::default()
            });
        }
        let mut st = self.state.lock();
        let mut resp = kvrpcpb::CheckSecondaryLocksResponse::default();
        let mut rolled_back = false;
        for k in &req.keys {
            if let Some(l) = st.locks.get(k).filter(|l| l.lock_version == req.start_version) {
                resp.locks.push(l.clone());
            } else if let Some(ts) = st.commits.get(&(k.clone(), req.start_version)) {
                return Ok(kvrpcpb::CheckSecondaryLocksResponse {
                    commit_ts: *ts,
                    ..Default::default()
                });
            } else {
                st.rollback(k, req.start_version);
                rolled_back = true;
            }
        }
        if rolled_back {
            resp.locks.clear();
        }
        Ok(resp)
    }

    async fn resolve_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ResolveLockRequest,
    ) -> Result<kvrpcpb::ResolveLockResponse, Status> {
        self.state.lock().calls.push("resolve_lock");
        let region = match self.region_for(addr, req.context.as_ref(), &[])? {
            Ok(r) => r,
            Err(e) => {
                return Ok(kvrpcpb::ResolveLockResponse {
                    region_error: Some(e),
                    ..Default::default()
                })
            }
        };
        let txns: HashMap<u64, u64> = req.txn_infos.iter().map(|t| (t.txn, t.status)).collect();
        let mut st = self.state.lock();
        let mine: Vec<LockInfo> = st
            .locks
            .values()
            .filter(|l| region.contains(&decide::range_key(&l.key)) && txns.contains_key(&l.lock_version))
            .cloned()
            .collect();
        for l in mine {
            match txns[&l.lock_version] {
                0 => st.rollback(&l.key, l.lock_version),
                ts if ts < l.min_commit_ts => {
                    return Ok(kvrpcpb::ResolveLockResponse {
                        error: Some(kvrpcpb::KeyError {
                            abort: "commit ts expired".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                }
                ts => st.commit(&l.key, l.lock_version, ts),
            }
        }
        Ok(kvrpcpb::ResolveLockResponse::default())
    }
}

/// A `tikvpb.Tikv` gRPC server on loopback in front of a [`FakeKv`]; stops when dropped.
pub struct FakeNode {
    pub addr: String,
    pub kv: Arc<FakeKv>,
    task: JoinHandle<()>,
}

impl FakeNode {
    /// Serves a fresh model, leading nothing until [`FakeNode::lead`].
    pub async fn start() -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local: SocketAddr = listener.local_addr().unwrap();
        let addr = local.to_string();
        let kv = Arc::new(FakeKv::default());
        let svc = FakeService {
            addr: addr.clone(),
            kv: kv.clone(),
        };
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(TikvServer::new(svc))
                .serve_with_incoming(incoming)
                .await;
        });
        FakeNode { addr, kv, task }
    }

    /// This node is store `store_id` and holds `regions` (those led by it are served).
    pub fn lead(&self, store_id: u64, regions: Vec<RegionInfo>) {
        self.kv.stores.lock().insert(store_id, self.addr.clone());
        *self.kv.regions.lock() = regions;
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct FakeService {
    addr: String,
    kv: Arc<FakeKv>,
}

fn answer<T>(r: Result<T, Status>) -> Result<Response<T>, Status> {
    r.map(Response::new)
}

/// The service impl: the `served` methods as written, every other one answering
/// `Unimplemented` (generated before `async_trait` rewrites the impl).
macro_rules! fake_tikv_impl {
    (served { $($served:tt)* } unimplemented { $($name:ident($req:ty) -> $resp:ty;)* }) => {
        #[tonic::async_trait]
        impl Tikv for FakeService {
            $($served)*

            $(
                async fn $name(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

fake_tikv_impl! {
    served {
        async fn kv_scan_lock(
            &self,
            req: Request<kvrpcpb::ScanLockRequest>,
        ) -> Result<Response<kvrpcpb::ScanLockResponse>, Status> {
            answer(self.kv.scan_lock(&self.addr, req.into_inner()).await)
        }

        async fn kv_check_txn_status(
            &self,
            req: Request<kvrpcpb::CheckTxnStatusRequest>,
        ) -> Result<Response<kvrpcpb::CheckTxnStatusResponse>, Status> {
            answer(self.kv.check_txn_status(&self.addr, req.into_inner()).await)
        }

        async fn kv_check_secondary_locks(
            &self,
            req: Request<kvrpcpb::CheckSecondaryLocksRequest>,
        ) -> Result<Response<kvrpcpb::CheckSecondaryLocksResponse>, Status> {
            answer(self.kv.check_secondary_locks(&self.addr, req.into_inner()).await)
        }

        async fn kv_resolve_lock(
            &self,
            req: Request<kvrpcpb::ResolveLockRequest>,
        ) -> Result<Response<kvrpcpb::ResolveLockResponse>, Status> {
            answer(self.kv.resolve_lock(&self.addr, req.into_inner()).await)
        }
    }
    unimplemented {
        kv_get(kvrpcpb::GetRequest) -> kvrpcpb::GetResponse;
        kv_scan(kvrpcpb::ScanRequest) -> kvrpcpb::ScanResponse;
        kv_prewrite(kvrpcpb::PrewriteRequest) -> kvrpcpb::PrewriteResponse;
        kv_pessimistic_lock(kvrpcpb::PessimisticLockRequest) -> kvrpcpb::PessimisticLockResponse;
        kv_pessimistic_rollback(kvrpcpb::PessimisticRollbackRequest) -> kvrpcpb::PessimisticRollbackResponse;
        kv_txn_heart_beat(kvrpcpb::TxnHeartBeatRequest) -> kvrpcpb::TxnHeartBeatResponse;
        kv_commit(kvrpcpb::CommitRequest) -> kvrpcpb::CommitResponse;
        kv_cleanup(kvrpcpb::CleanupRequest) -> kvrpcpb::CleanupResponse;
        kv_batch_get(kvrpcpb::BatchGetRequest) -> kvrpcpb::BatchGetResponse;
        kv_batch_rollback(kvrpcpb::BatchRollbackRequest) -> kvrpcpb::BatchRollbackResponse;
        kv_gc(kvrpcpb::GcRequest) -> kvrpcpb::GcResponse;
        kv_delete_range(kvrpcpb::DeleteRangeRequest) -> kvrpcpb::DeleteRangeResponse;
        raw_get(kvrpcpb::RawGetRequest) -> kvrpcpb::RawGetResponse;
        raw_batch_get(kvrpcpb::RawBatchGetRequest) -> kvrpcpb::RawBatchGetResponse;
        raw_put(kvrpcpb::RawPutRequest) -> kvrpcpb::RawPutResponse;
        raw_batch_put(kvrpcpb::RawBatchPutRequest) -> kvrpcpb::RawBatchPutResponse;
        raw_delete(kvrpcpb::RawDeleteRequest) -> kvrpcpb::RawDeleteResponse;
        raw_batch_delete(kvrpcpb::RawBatchDeleteRequest) -> kvrpcpb::RawBatchDeleteResponse;
        raw_scan(kvrpcpb::RawScanRequest) -> kvrpcpb::RawScanResponse;
        raw_delete_range(kvrpcpb::RawDeleteRangeRequest) -> kvrpcpb::RawDeleteRangeResponse;
        raw_batch_scan(kvrpcpb::RawBatchScanRequest) -> kvrpcpb::RawBatchScanResponse;
        raw_get_key_ttl(kvrpcpb::RawGetKeyTtlRequest) -> kvrpcpb::RawGetKeyTtlResponse;
        raw_compare_and_swap(kvrpcpb::RawCasRequest) -> kvrpcpb::RawCasResponse;
        raw_checksum(kvrpcpb::RawChecksumRequest) -> kvrpcpb::RawChecksumResponse;
        unsafe_destroy_range(kvrpcpb::UnsafeDestroyRangeRequest) -> kvrpcpb::UnsafeDestroyRangeResponse;
        split_region(kvrpcpb::SplitRegionRequest) -> kvrpcpb::SplitRegionResponse;
        coprocessor(coprocessor::Request) -> coprocessor::Response;
    }
}
