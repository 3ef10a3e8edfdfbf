//! `tikvpb.Tikv/SplitRegion`: a client splits the region of its request context at keys it
//! chooses (TiDB's `SPLIT TABLE`, client-go's `SplitRegions`).
//!
//! The keys are user keys: they are memcomparable-encoded into range keys unless `is_raw_kv`
//! says they are raw keys of API V1 (under API V2 every key's range key is encoded). The
//! region is read through Raft at the context's epoch (so leadership and epoch are checked
//! as for any request); keys equal to its start are dropped, keys outside it are
//! `KeyNotInRegion`. Then the node asks PD for ids and proposes the split, as for a split the
//! checker found, and answers every region the split made.

use atoll_proto::kvrpcpb::{self, SplitRegionRequest, SplitRegionResponse};
use atoll_proto::metapb;
use engine_rocks::RocksSnapshot;
use raftstore::Router;
use tonic::Status;

use crate::errors::{raftstore_error, split_storage_error};
use crate::pd_worker::{split_region, SplitError};

/// What a node needs to split regions for clients.
#[derive(Clone)]
pub struct Splitter {
    pub pd: pd_client::PdClient,
    pub router: Router<RocksSnapshot>,
    pub store_id: u64,
}

fn region_error(e: raftstore::Error) -> Result<SplitRegionResponse, Status> {
    let (region_error, message) = split_storage_error(raftstore_error(e));
    match region_error {
        Some(region_error) => Ok(SplitRegionResponse {
            region_error: Some(region_error),
            ..Default::default()
        }),
        None => Err(Status::invalid_argument(super::status_message(message))),
    }
}

fn in_region(region: &metapb::Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice() && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

impl Splitter {
    pub async fn split(&self, req: SplitRegionRequest) -> Result<SplitRegionResponse, Status> {
        let ctx = req.context.unwrap_or_default();
        #[allow(deprecated)]
        let mut keys = req.split_keys;
        #[allow(deprecated)]
        if keys.is_empty() && !req.split_key.is_empty() {
            keys.push(req.split_key);
        }
        if keys.is_empty() {
            return Err(Status::invalid_argument("no split key"));
        }
        let encode = !req.is_raw_kv || ctx.api_version == kvrpcpb::ApiVersion::V2 as i32;
        let mut keys: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|k| {
                if encode {
                    txn_types::memcomparable::encode_bytes(&k)
                } else {
                    k
                }
            })
            .collect();
        keys.sort();
        keys.dedup();
        if let Some(peer) = &ctx.peer {
            if peer.store_id != 0 && peer.store_id != self.store_id {
                return region_error(raftstore::Error::StoreNotMatch {
                    request_store_id: peer.store_id,
                    actual_store_id: self.store_id,
                });
            }
        }
        let epoch = ctx.region_epoch.unwrap_or_default();
        let header = raftstore::CmdHeader {
            region_id: ctx.region_id,
            conf_ver: epoch.conf_ver,
            version: epoch.version,
            ..Default::default()
        };
        let region = match self.router.read(header).await {
            Ok(resp) => resp.region,
            Err(e) => return region_error(e),
        };
        if let Some(outside) = keys.iter().find(|k| !in_region(&region, k)) {
            return region_error(raftstore::Error::KeyNotInRegion {
                key: outside.clone(),
                region_id: region.id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            });
        }
        keys.retain(|k| *k != region.start_key);
        if keys.is_empty() {
            return Ok(SplitRegionResponse {
                regions: vec![region],
                ..Default::default()
            });
        }
        let regions = match split_region(&self.pd, &self.router, region, keys).await {
            Ok(r) => r,
            Err(SplitError::Raft(e)) => return region_error(e),
            Err(SplitError::Pd(e)) => return Err(Status::unavailable(e)),
        };
        let mut resp = SplitRegionResponse {
            regions,
            ..Default::default()
        };
        if let [left, right] = resp.regions.as_slice() {
            #[allow(deprecated)]
            {
                resp.left = Some(left.clone());
                resp.right = Some(right.clone());
            }
        }
        Ok(resp)
    }
}

/// A split refused because the node cannot split for clients (no PD client given).
pub fn not_available() -> Status {
    Status::unimplemented("SplitRegion is not served by this node")
}
