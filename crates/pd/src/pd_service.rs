//! The `pdpb.PD` gRPC service.
//!
//! Every request except `GetMembers` must carry our cluster id (else gRPC `FailedPrecondition`,
//! like PD). Request errors travel in the response header; requests that need a bootstrapped
//! cluster get `NOT_BOOTSTRAPPED` before bootstrap.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use atoll_proto::pdpb::{self, pd_server::Pd};
use tonic::{Request, Response, Status, Streaming};

use crate::context::PdContext;
use crate::error::Error;
use crate::pd_streams::{check_cluster_id, empty_range, region_heartbeat_stream, tso_stream, ResponseStream};
use crate::region_info::RegionInfo;

/// The `pdpb.PD` implementation.
#[derive(Clone)]
pub struct PdService {
    ctx: Arc<PdContext>,
}

/// `a.b.c` → comparable numbers (missing parts are 0, junk stops the parse).
/// How long `SplitRegions` waits for the regions to show their splits.
const SPLIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn parse_version(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(['.', '-', '+'])
        .take(3)
        .map_while(|p| p.parse().ok())
        .collect()
}

/// Most ids one AskSplit / AskBatchSplit hands out (a region id and a peer id per peer for each
/// new region). Nodes ask for as many regions as they have split keys; a count of four billion
/// (or a region with a million peers) kept PD allocating ids for hours (found by
/// tests/fuzz_e2e.rs).
const MAX_SPLIT_IDS: u64 = 100_000;

fn split_ids_bounded(split_count: u32, region: &atoll_proto::metapb::Region) -> crate::error::Result<()> {
    let ids = u64::from(split_count).saturating_mul(region.peers.len() as u64 + 1);
    if ids > MAX_SPLIT_IDS {
        return Err(Error::InvalidRequest(format!(
            "split of region {} into {split_count} new regions of {} peers needs {ids} ids, more than {MAX_SPLIT_IDS}",
            region.id,
            region.peers.len()
        )));
    }
    Ok(())
}

impl PdService {
    pub fn new(ctx: Arc<PdContext>) -> PdService {
        PdService { ctx }
    }

    /// A split report, refused if a region's range is empty or inverted (see [`empty_range`]).
    fn apply_split_report(&self, regions: &[atoll_proto::metapb::Region]) -> crate::error::Result<()> {
        if let Some(r) = regions.iter().find(|r| empty_range(r)) {
            return Err(Error::InvalidRequest(format!(
                "invalid split region {}, empty or inverted range",
                r.id
            )));
        }
        self.ctx.cluster.report_split(regions)
    }

    fn check(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), Status> {
        check_cluster_id(&self.ctx, header)
    }

    fn ok(&self) -> Option<pdpb::ResponseHeader> {
        Some(self.ctx.header())
    }

    fn err(&self, e: &Error) -> Option<pdpb::ResponseHeader> {
        Some(self.ctx.header_for(e))
    }

    fn region_response(&self, r: crate::error::Result<Option<RegionInfo>>) -> pdpb::GetRegionResponse {
        match r {
            Ok(Some(r)) => pdpb::GetRegionResponse {
                header: self.ok(),
                leader: r.leader,
                down_peers: r.down_peers,
                pending_peers: r.pending_peers,
                region: Some(r.meta),
                buckets: None,
            },
            // Unknown region: no error and no region, like PD's leader.
            Ok(None) => pdpb::GetRegionResponse {
                header: self.ok(),
                ..Default::default()
            },
            Err(e) => pdpb::GetRegionResponse {
                header: self.err(&e),
                ..Default::default()
            },
        }
    }

    /// The cluster version: the lowest version among live stores.
    fn cluster_version(&self) -> String {
        self.ctx
            .cluster
            .stores()
            .into_iter()
            .filter(|s| !s.is_tombstone() && !s.meta.version.is_empty())
            .map(|s| s.meta.version)
            .min_by_key(|v| parse_version(v))
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let me = self.ctx.member.clone();
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.ok(),
            members: vec![me.clone()],
            leader: Some(me.clone()),
            etcd_leader: Some(me),
            tso_allocator_leaders: Default::default(),
        }))
    }

    type TsoStream = ResponseStream<pdpb::TsoResponse>;

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        Ok(Response::new(tso_stream(self.ctx.clone(), request.into_inner())))
    }

    async fn bootstrap(
        &self,
        request: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let header = match self
            .ctx
            .cluster
            .bootstrap(req.store.as_ref(), req.region.as_ref())
        {
            Ok(()) => self.ok(),
            Err(e) => self.err(&e),
        };
        Ok(Response::new(pdpb::BootstrapResponse { header }))
    }

    async fn is_bootstrapped(
        &self,
        request: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        Ok(Response::new(pdpb::IsBootstrappedResponse {
            header: self.ok(),
            bootstrapped: self.ctx.cluster.is_bootstrapped(),
        }))
    }

    async fn alloc_id(
        &self,
        request: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let resp = match self.ctx.id_alloc.alloc() {
            Ok(id) => pdpb::AllocIdResponse {
                header: self.ok(),
                id,
            },
            Err(e) => pdpb::AllocIdResponse {
                header: self.err(&e),
                id: 0,
            },
        };
        Ok(Response::new(resp))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let resp = match self.ctx.cluster.get_store(req.store_id) {
            Ok(s) => pdpb::GetStoreResponse {
                header: self.ok(),
                store: Some(s.meta),
                stats: s.stats,
            },
            Err(e) => pdpb::GetStoreResponse {
                header: self.err(&e),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn put_store(
        &self,
        request: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let store = req.store.unwrap_or_default();
        let header = match self.ctx.cluster.put_store(&store) {
            Ok(()) => self.ok(),
            Err(e) => self.err(&e),
        };
        Ok(Response::new(pdpb::PutStoreResponse { header }))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let resp = match self.ctx.cluster.store_metas(req.exclude_tombstone_stores) {
            Ok(stores) => pdpb::GetAllStoresResponse {
                header: self.ok(),
                stores,
            },
            Err(e) => pdpb::GetAllStoresResponse {
                header: self.err(&e),
                stores: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn store_heartbeat(
        &self,
        request: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let Some(stats) = req.stats else {
            return Err(Status::unknown("invalid store heartbeat command, stats missing"));
        };
        let resp = match self.ctx.cluster.store_heartbeat(stats) {
            Ok(()) => pdpb::StoreHeartbeatResponse {
                header: self.ok(),
                cluster_version: self.cluster_version(),
                ..Default::default()
            },
            Err(e) => pdpb::StoreHeartbeatResponse {
                header: self.err(&e),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    type RegionHeartbeatStream = ResponseStream<pdpb::RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        Ok(Response::new(region_heartbeat_stream(
            self.ctx.clone(),
            request.into_inner(),
        )))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        Ok(Response::new(self.region_response(
            self.ctx.cluster.region_by_key(&req.region_key),
        )))
    }

    async fn get_prev_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        Ok(Response::new(self.region_response(
            self.ctx.cluster.prev_region_by_key(&req.region_key),
        )))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        Ok(Response::new(
            self.region_response(self.ctx.cluster.region_by_id(req.region_id)),
        ))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let regions = match self
            .ctx
            .cluster
            .scan_regions(&req.start_key, &req.end_key, req.limit)
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(pdpb::ScanRegionsResponse {
                    header: self.err(&e),
                    ..Default::default()
                }))
            }
        };
        let mut resp = pdpb::ScanRegionsResponse {
            header: self.ok(),
            ..Default::default()
        };
        for r in regions {
            let leader = r.leader_or_default();
            resp.region_metas.push(r.meta.clone());
            resp.leaders.push(leader);
            resp.regions.push(pdpb::Region {
                region: Some(r.meta),
                leader: Some(leader),
                down_peers: r.down_peers,
                pending_peers: r.pending_peers,
            });
        }
        Ok(Response::new(resp))
    }

    async fn ask_split(
        &self,
        request: Request<pdpb::AskSplitRequest>,
    ) -> Result<Response<pdpb::AskSplitResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let Some(region) = req.region else {
            let header = self
                .ctx
                .error_header(pdpb::ErrorType::RegionNotFound, "missing region for split");
            return Ok(Response::new(pdpb::AskSplitResponse {
                header: Some(header),
                ..Default::default()
            }));
        };
        if let Err(e) = split_ids_bounded(1, &region) {
            return Ok(Response::new(pdpb::AskSplitResponse {
                header: self.err(&e),
                ..Default::default()
            }));
        }
        let resp = match self.ctx.cluster.ask_split(&region) {
            Ok((new_region_id, new_peer_ids)) => pdpb::AskSplitResponse {
                header: self.ok(),
                new_region_id,
                new_peer_ids,
            },
            Err(e) => pdpb::AskSplitResponse {
                header: self.err(&e),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn report_split(
        &self,
        request: Request<pdpb::ReportSplitRequest>,
    ) -> Result<Response<pdpb::ReportSplitResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let regions: Vec<_> = [req.left, req.right].into_iter().flatten().collect();
        let header = match self.apply_split_report(&regions) {
            Ok(()) => self.ok(),
            Err(e) => self.err(&e),
        };
        Ok(Response::new(pdpb::ReportSplitResponse { header }))
    }

    async fn ask_batch_split(
        &self,
        request: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let Some(region) = req.region else {
            let header = self
                .ctx
                .error_header(pdpb::ErrorType::RegionNotFound, "missing region for split");
            return Ok(Response::new(pdpb::AskBatchSplitResponse {
                header: Some(header),
                ids: Vec::new(),
            }));
        };
        if let Err(e) = split_ids_bounded(req.split_count, &region) {
            return Ok(Response::new(pdpb::AskBatchSplitResponse {
                header: self.err(&e),
                ids: Vec::new(),
            }));
        }
        let resp = match self.ctx.cluster.ask_batch_split(&region, req.split_count) {
            Ok(ids) => pdpb::AskBatchSplitResponse {
                header: self.ok(),
                ids,
            },
            Err(e) => pdpb::AskBatchSplitResponse {
                header: self.err(&e),
                ids: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn report_batch_split(
        &self,
        request: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let header = match self.apply_split_report(&req.regions) {
            Ok(()) => self.ok(),
            Err(e) => self.err(&e),
        };
        Ok(Response::new(pdpb::ReportBatchSplitResponse { header }))
    }

    async fn get_cluster_config(
        &self,
        request: Request<pdpb::GetClusterConfigRequest>,
    ) -> Result<Response<pdpb::GetClusterConfigResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let resp = match self.ctx.cluster.cluster_meta() {
            Ok(c) => pdpb::GetClusterConfigResponse {
                header: self.ok(),
                cluster: Some(c),
            },
            Err(e) => pdpb::GetClusterConfigResponse {
                header: self.err(&e),
                cluster: None,
            },
        };
        Ok(Response::new(resp))
    }

    async fn put_cluster_config(
        &self,
        request: Request<pdpb::PutClusterConfigRequest>,
    ) -> Result<Response<pdpb::PutClusterConfigResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let header = match self.ctx.cluster.put_cluster_meta(req.cluster.unwrap_or_default()) {
            Ok(()) => self.ok(),
            Err(e) => self.err(&e),
        };
        Ok(Response::new(pdpb::PutClusterConfigResponse { header }))
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        if !self.ctx.cluster.is_bootstrapped() {
            let header = self.err(&Error::NotBootstrapped);
            return Ok(Response::new(pdpb::GetGcSafePointResponse {
                header,
                safe_point: 0,
            }));
        }
        Ok(Response::new(pdpb::GetGcSafePointResponse {
            header: self.ok(),
            safe_point: self.ctx.gc.safe_point(),
        }))
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        if !self.ctx.cluster.is_bootstrapped() {
            let header = self.err(&Error::NotBootstrapped);
            return Ok(Response::new(pdpb::UpdateGcSafePointResponse {
                header,
                new_safe_point: 0,
            }));
        }
        let new_safe_point = self
            .ctx
            .gc
            .update_safe_point(req.safe_point)
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(pdpb::UpdateGcSafePointResponse {
            header: self.ok(),
            new_safe_point,
        }))
    }

    async fn update_service_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        if !self.ctx.cluster.is_bootstrapped() {
            let header = self.err(&Error::NotBootstrapped);
            return Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
                header,
                ..Default::default()
            }));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let service_id = String::from_utf8_lossy(&req.service_id).into_owned();
        let update = self
            .ctx
            .gc
            .update_service_safe_point(&service_id, req.safe_point, req.ttl, now)
            .map_err(|e| Status::unknown(e.to_string()))?;
        if update.updated {
            tracing::info!(
                service_id,
                ttl = req.ttl,
                safe_point = req.safe_point,
                "updated service gc safe point"
            );
        }
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header: self.ok(),
            service_id: update.min.service_id.into_bytes(),
            ttl: update.min.expired_at.saturating_sub(now),
            min_safe_point: update.min.safe_point,
        }))
    }

    async fn get_operator(
        &self,
        request: Request<pdpb::GetOperatorRequest>,
    ) -> Result<Response<pdpb::GetOperatorResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        if !self.ctx.cluster.is_bootstrapped() {
            let header = self.err(&Error::NotBootstrapped);
            return Ok(Response::new(pdpb::GetOperatorResponse {
                header,
                ..Default::default()
            }));
        }
        // PD answers "Not Found" for a region without a running or recently ended operator.
        let Some(view) = self.ctx.coordinator.operators.status(req.region_id) else {
            let header = self
                .ctx
                .error_header(pdpb::ErrorType::RegionNotFound, "Not Found");
            return Ok(Response::new(pdpb::GetOperatorResponse {
                header: Some(header),
                ..Default::default()
            }));
        };
        Ok(Response::new(pdpb::GetOperatorResponse {
            header: self.ok(),
            region_id: req.region_id,
            desc: view.operator.desc().as_bytes().to_vec(),
            status: view.status as i32,
            kind: view.operator.kind().to_string().into_bytes(),
        }))
    }

    async fn scatter_region(
        &self,
        request: Request<pdpb::ScatterRegionRequest>,
    ) -> Result<Response<pdpb::ScatterRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        #[allow(deprecated)]
        let mut ids = req.regions_id.clone();
        if ids.is_empty() {
            #[allow(deprecated)]
            let single = req.region.as_ref().map_or(req.region_id, |r| r.id);
            ids.push(single);
        }
        let finished_percentage = crate::schedule::scatter::scatter_regions(&self.ctx, &ids, &req.group);
        Ok(Response::new(pdpb::ScatterRegionResponse {
            header: self.ok(),
            finished_percentage,
        }))
    }

    async fn split_regions(
        &self,
        request: Request<pdpb::SplitRegionsRequest>,
    ) -> Result<Response<pdpb::SplitRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let out = crate::schedule::splitter::split_regions(&self.ctx, req.split_keys, SPLIT_WAIT).await;
        Ok(Response::new(pdpb::SplitRegionsResponse {
            header: self.ok(),
            finished_percentage: out.processed_percentage,
            regions_id: out.region_ids,
        }))
    }

    async fn split_and_scatter_regions(
        &self,
        request: Request<pdpb::SplitAndScatterRegionsRequest>,
    ) -> Result<Response<pdpb::SplitAndScatterRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let out = crate::schedule::splitter::split_regions(&self.ctx, req.split_keys, SPLIT_WAIT).await;
        let scatter = crate::schedule::scatter::scatter_regions(&self.ctx, &out.region_ids, &req.group);
        Ok(Response::new(pdpb::SplitAndScatterRegionsResponse {
            header: self.ok(),
            split_finished_percentage: out.processed_percentage,
            scatter_finished_percentage: scatter,
            regions_id: out.region_ids,
        }))
    }

    async fn get_min_ts(
        &self,
        request: Request<pdpb::GetMinTsRequest>,
    ) -> Result<Response<pdpb::GetMinTsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let ts = self
            .ctx
            .tso
            .generate(1)
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(pdpb::GetMinTsResponse {
            header: self.ok(),
            timestamp: Some(pdpb::Timestamp {
                physical: ts.physical,
                logical: ts.logical,
                suffix_bits: 0,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("8.10.0") > parse_version("8.9.1"));
        assert_eq!(parse_version("v8.5.0-alpha"), vec![8, 5, 0]);
    }
}
