//! `tikvpb.Tikv`: the client-facing service. Each handler turns the request into a storage call
//! and the outcome into the response; region errors travel in `region_error`, other failures in
//! `error` (or, for responses without an `error` field, as an `InvalidArgument` status).
//! Transactional handlers live in `service::txn`. Methods not served yet answer gRPC
//! `Unimplemented`.

use std::time::Instant;

use atoll_proto::kvrpcpb::{self, *};
use atoll_proto::tikvpb::tikv_server::Tikv;
use std::sync::Arc;
use storage::raw::RawStorage;

use storage::txn::{TsSource, TxnStorage};
use storage::{ConcurrencyManager, ReadStats};
use tonic::{Request, Response, Status};

use crate::errors::split_storage_error;
use crate::metrics::GRPC_MSG_DURATION;
use crate::raftkv::RaftKv;
use crate::service::txn;

/// Serves the raw and transactional APIs over storage.
#[derive(Clone)]
pub struct KvService {
    raw: RawStorage<RaftKv>,
    txn: TxnStorage<RaftKv>,
    splitter: Option<crate::service::split::Splitter>,
}

impl KvService {
    /// `read_stats` receives the keys and bytes every raw and transactional read returns,
    /// per region (for the PD worker's region heartbeats).
    pub fn new(
        engine: RaftKv,
        cm: ConcurrencyManager,
        ts_source: Arc<dyn TsSource>,
        read_stats: ReadStats,
    ) -> KvService {
        KvService {
            raw: RawStorage::new(engine.clone()).with_read_stats(read_stats.clone()),
            txn: TxnStorage::new(engine, cm, ts_source).with_read_stats(read_stats),
            splitter: None,
        }
    }

    /// Serves `SplitRegion` with `splitter`.
    pub fn with_splitter(mut self, splitter: crate::service::split::Splitter) -> KvService {
        self.splitter = Some(splitter);
        self
    }

    pub fn txn_storage(&self) -> &TxnStorage<RaftKv> {
        &self.txn
    }
}

struct Timer {
    kind: &'static str,
    start: Instant,
}

impl Timer {
    fn new(kind: &'static str) -> Timer {
        Timer {
            kind,
            start: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        GRPC_MSG_DURATION
            .with_label_values(&[self.kind])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// For responses that only have `region_error`: other errors become a status.
fn region_only(e: storage::Error) -> Result<Option<atoll_proto::errorpb::Error>, Status> {
    match split_storage_error(e) {
        (Some(r), _) => Ok(Some(r)),
        (None, msg) => Err(Status::invalid_argument(super::status_message(msg))),
    }
}

fn pairs(kvs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<KvPair> {
    kvs.into_iter()
        .map(|(key, value)| KvPair {
            key,
            value,
            ..Default::default()
        })
        .collect()
}

fn not_served(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not served by this version of atoll-kv"))
}

#[tonic::async_trait]
impl Tikv for KvService {
    async fn kv_get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let _t = Timer::new("kv_get");
        Ok(Response::new(txn::get(&self.txn, req.into_inner()).await))
    }

    async fn kv_scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let _t = Timer::new("kv_scan");
        Ok(Response::new(txn::scan(&self.txn, req.into_inner()).await))
    }

    async fn kv_prewrite(&self, req: Request<PrewriteRequest>) -> Result<Response<PrewriteResponse>, Status> {
        let _t = Timer::new("kv_prewrite");
        Ok(Response::new(txn::prewrite(&self.txn, req.into_inner()).await))
    }

    async fn kv_pessimistic_lock(
        &self,
        req: Request<PessimisticLockRequest>,
    ) -> Result<Response<PessimisticLockResponse>, Status> {
        let _t = Timer::new("kv_pessimistic_lock");
        Ok(Response::new(
            txn::pessimistic_lock(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_pessimistic_rollback(
        &self,
        req: Request<PessimisticRollbackRequest>,
    ) -> Result<Response<PessimisticRollbackResponse>, Status> {
        let _t = Timer::new("kv_pessimistic_rollback");
        Ok(Response::new(
            txn::pessimistic_rollback(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_txn_heart_beat(
        &self,
        req: Request<TxnHeartBeatRequest>,
    ) -> Result<Response<TxnHeartBeatResponse>, Status> {
        let _t = Timer::new("kv_txn_heart_beat");
        Ok(Response::new(
            txn::txn_heart_beat(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_check_txn_status(
        &self,
        req: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        let _t = Timer::new("kv_check_txn_status");
        Ok(Response::new(
            txn::check_txn_status(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_check_secondary_locks(
        &self,
        req: Request<CheckSecondaryLocksRequest>,
    ) -> Result<Response<CheckSecondaryLocksResponse>, Status> {
        let _t = Timer::new("kv_check_secondary_locks");
        Ok(Response::new(
            txn::check_secondary_locks(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_commit(&self, req: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let _t = Timer::new("kv_commit");
        Ok(Response::new(txn::commit(&self.txn, req.into_inner()).await))
    }

    async fn kv_cleanup(&self, req: Request<CleanupRequest>) -> Result<Response<CleanupResponse>, Status> {
        let _t = Timer::new("kv_cleanup");
        Ok(Response::new(txn::cleanup(&self.txn, req.into_inner()).await))
    }

    async fn kv_batch_get(
        &self,
        req: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        let _t = Timer::new("kv_batch_get");
        Ok(Response::new(txn::batch_get(&self.txn, req.into_inner()).await))
    }

    async fn kv_batch_rollback(
        &self,
        req: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        let _t = Timer::new("kv_batch_rollback");
        Ok(Response::new(
            txn::batch_rollback(&self.txn, req.into_inner()).await,
        ))
    }

    async fn kv_scan_lock(
        &self,
        req: Request<ScanLockRequest>,
    ) -> Result<Response<ScanLockResponse>, Status> {
        let _t = Timer::new("kv_scan_lock");
        Ok(Response::new(txn::scan_lock(&self.txn, req.into_inner()).await))
    }

    async fn kv_resolve_lock(
        &self,
        req: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        let _t = Timer::new("kv_resolve_lock");
        Ok(Response::new(
            txn::resolve_lock(&self.txn, req.into_inner()).await,
        ))
    }

    // Deprecated in TiKV, which answers `Unimplemented`: GC follows PD's safe point instead (a
    // client-chosen safe point could remove versions running transactions still read).
    async fn kv_gc(&self, _req: Request<GcRequest>) -> Result<Response<GcResponse>, Status> {
        Err(not_served("kv_gc"))
    }

    async fn kv_delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let _t = Timer::new("kv_delete_range");
        Ok(Response::new(
            txn::delete_range(&self.txn, req.into_inner()).await,
        ))
    }

    async fn unsafe_destroy_range(
        &self,
        req: Request<UnsafeDestroyRangeRequest>,
    ) -> Result<Response<UnsafeDestroyRangeResponse>, Status> {
        let _t = Timer::new("unsafe_destroy_range");
        Ok(Response::new(
            txn::unsafe_destroy_range(&self.txn, req.into_inner()).await,
        ))
    }

    async fn split_region(
        &self,
        req: Request<SplitRegionRequest>,
    ) -> Result<Response<SplitRegionResponse>, Status> {
        let _t = Timer::new("split_region");
        let Some(splitter) = &self.splitter else {
            return Err(crate::service::split::not_available());
        };
        splitter.split(req.into_inner()).await.map(Response::new)
    }

    // The coprocessor is not served yet: `Unimplemented`, never a wrong answer.
    async fn coprocessor(
        &self,
        _req: Request<atoll_proto::coprocessor::Request>,
    ) -> Result<Response<atoll_proto::coprocessor::Response>, Status> {
        Err(not_served("coprocessor"))
    }

    async fn raw_get(&self, req: Request<RawGetRequest>) -> Result<Response<RawGetResponse>, Status> {
        let _t = Timer::new("raw_get");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawGetResponse::default();
        match self.raw.get(&ctx, &req.cf, &req.key).await {
            Ok(Some(v)) => resp.value = v,
            Ok(None) => resp.not_found = true,
            Err(e) => fill_err!(resp, e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_batch_get(
        &self,
        req: Request<RawBatchGetRequest>,
    ) -> Result<Response<RawBatchGetResponse>, Status> {
        let _t = Timer::new("raw_batch_get");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawBatchGetResponse::default();
        match self.raw.batch_get(&ctx, &req.cf, &req.keys).await {
            Ok(kvs) => resp.pairs = pairs(kvs),
            Err(e) => resp.region_error = region_only(e)?,
        }
        Ok(Response::new(resp))
    }

    async fn raw_put(&self, req: Request<RawPutRequest>) -> Result<Response<RawPutResponse>, Status> {
        let _t = Timer::new("raw_put");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawPutResponse::default();
        if let Err(e) = self
            .raw
            .put(&ctx, &req.cf, req.key, req.value, req.ttl, req.for_cas)
            .await
        {
            fill_err!(resp, e);
        }
        Ok(Response::new(resp))
    }

    async fn raw_batch_put(
        &self,
        req: Request<RawBatchPutRequest>,
    ) -> Result<Response<RawBatchPutResponse>, Status> {
        let _t = Timer::new("raw_batch_put");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawBatchPutResponse::default();
        #[allow(deprecated)]
        let ttls = if req.ttls.is_empty() && req.ttl > 0 {
            vec![req.ttl]
        } else {
            req.ttls
        };
        let kvs = req.pairs.into_iter().map(|p| (p.key, p.value)).collect();
        if let Err(e) = self.raw.batch_put(&ctx, &req.cf, kvs, &ttls, req.for_cas).await {
            fill_err!(resp, e);
        }
        Ok(Response::new(resp))
    }

    async fn raw_delete(
        &self,
        req: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let _t = Timer::new("raw_delete");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawDeleteResponse::default();
        if let Err(e) = self
            .raw
            .batch_delete(&ctx, &req.cf, &[req.key], req.for_cas)
            .await
        {
            fill_err!(resp, e);
        }
        Ok(Response::new(resp))
    }

    async fn raw_batch_delete(
        &self,
        req: Request<RawBatchDeleteRequest>,
    ) -> Result<Response<RawBatchDeleteResponse>, Status> {
        let _t = Timer::new("raw_batch_delete");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawBatchDeleteResponse::default();
        if let Err(e) = self.raw.batch_delete(&ctx, &req.cf, &req.keys, req.for_cas).await {
            fill_err!(resp, e);
        }
        Ok(Response::new(resp))
    }

    async fn raw_scan(&self, req: Request<RawScanRequest>) -> Result<Response<RawScanResponse>, Status> {
        let _t = Timer::new("raw_scan");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawScanResponse::default();
        match self
            .raw
            .scan(
                &ctx,
                &req.cf,
                &req.start_key,
                &req.end_key,
                req.limit,
                req.key_only,
                req.reverse,
            )
            .await
        {
            Ok(kvs) => resp.kvs = pairs(kvs),
            Err(e) => resp.region_error = region_only(e)?,
        }
        Ok(Response::new(resp))
    }

    async fn raw_delete_range(
        &self,
        req: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        let _t = Timer::new("raw_delete_range");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawDeleteRangeResponse::default();
        if let Err(e) = self
            .raw
            .delete_range(&ctx, &req.cf, &req.start_key, &req.end_key)
            .await
        {
            fill_err!(resp, e);
        }
        Ok(Response::new(resp))
    }

    async fn raw_batch_scan(
        &self,
        req: Request<RawBatchScanRequest>,
    ) -> Result<Response<RawBatchScanResponse>, Status> {
        let _t = Timer::new("raw_batch_scan");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawBatchScanResponse::default();
        match self
            .raw
            .batch_scan(
                &ctx,
                &req.cf,
                &req.ranges,
                req.each_limit,
                req.key_only,
                req.reverse,
            )
            .await
        {
            Ok(kvs) => resp.kvs = pairs(kvs),
            Err(e) => resp.region_error = region_only(e)?,
        }
        Ok(Response::new(resp))
    }

    async fn raw_get_key_ttl(
        &self,
        req: Request<RawGetKeyTtlRequest>,
    ) -> Result<Response<RawGetKeyTtlResponse>, Status> {
        let _t = Timer::new("raw_get_key_ttl");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawGetKeyTtlResponse::default();
        match self.raw.get_key_ttl(&ctx, &req.cf, &req.key).await {
            Ok(Some(ttl)) => resp.ttl = ttl,
            Ok(None) => resp.not_found = true,
            Err(e) => fill_err!(resp, e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_compare_and_swap(
        &self,
        req: Request<RawCasRequest>,
    ) -> Result<Response<RawCasResponse>, Status> {
        let _t = Timer::new("raw_compare_and_swap");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawCasResponse::default();
        let previous = (!req.previous_not_exist).then_some(req.previous_value.as_slice());
        match self
            .raw
            .compare_and_swap(&ctx, &req.cf, &req.key, previous, req.value, req.ttl)
            .await
        {
            Ok(out) => {
                resp.succeed = out.succeed;
                resp.previous_not_exist = out.previous.is_none();
                resp.previous_value = out.previous.unwrap_or_default();
            }
            Err(e) => fill_err!(resp, e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_checksum(
        &self,
        req: Request<RawChecksumRequest>,
    ) -> Result<Response<RawChecksumResponse>, Status> {
        let _t = Timer::new("raw_checksum");
        let req = req.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawChecksumResponse::default();
        if req.algorithm != kvrpcpb::ChecksumAlgorithm::Crc64Xor as i32 {
            resp.error = format!("unknown checksum algorithm {}", req.algorithm);
            return Ok(Response::new(resp));
        }
        match self.raw.checksum(&ctx, &req.ranges).await {
            Ok(sum) => {
                resp.checksum = sum.checksum;
                resp.total_kvs = sum.total_kvs;
                resp.total_bytes = sum.total_bytes;
            }
            Err(e) => fill_err!(resp, e),
        }
        Ok(Response::new(resp))
    }
}
