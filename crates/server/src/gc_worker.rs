//! The node's GC worker: follows PD's GC safe point and, whenever it advances, removes the
//! versions older than it from every region this node leads (through each region's Raft
//! group, like any other write). Regions whose leadership moves here later are collected on
//! the next advance; a failed region is retried on the next poll.

use std::collections::HashMap;
use std::time::Duration;

use atoll_proto::kvrpcpb;
use engine_rocks::RocksSnapshot;
use raftstore::Router;
use storage::txn::TxnStorage;

use crate::metrics::{GC_KEYS, GC_SAFE_POINT};
use crate::raftkv::RaftKv;

pub struct GcWorker {
    pub pd: pd_client::PdClient,
    pub router: Router<RocksSnapshot>,
    pub txn: TxnStorage<RaftKv>,
    pub poll_interval: Duration,
}

impl GcWorker {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        // Per region: the safe point its last successful GC pass used.
        let mut done: HashMap<u64, u64> = HashMap::new();
        let mut tick = tokio::time::interval(self.poll_interval);
        loop {
            tick.tick().await;
            let safe_point = match self.pd.get_gc_safe_point().await {
                Ok(sp) => sp,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the GC safe point");
                    continue;
                }
            };
            GC_SAFE_POINT.set(safe_point as i64);
            if safe_point == 0 {
                continue;
            }
            let Ok(infos) = self.router.region_infos().await else {
                return;
            };
            for info in infos.into_iter().filter(|i| i.is_leader) {
                let region = &info.region;
                if done.get(&region.id).is_some_and(|d| *d >= safe_point) {
                    continue;
                }
                let ctx = kvrpcpb::Context {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    peer: info.leader,
                    ..Default::default()
                };
                match self.txn.gc_region(&ctx, safe_point).await {
                    Ok(stats) => {
                        GC_KEYS
                            .with_label_values(&["scanned"])
                            .inc_by(stats.keys_scanned as u64);
                        GC_KEYS
                            .with_label_values(&["deleted"])
                            .inc_by(stats.versions_removed as u64);
                        if stats.versions_removed > 0 {
                            tracing::info!(
                                region_id = region.id,
                                safe_point,
                                keys = stats.keys_scanned,
                                removed = stats.versions_removed,
                                "gc done"
                            );
                        }
                        done.insert(region.id, safe_point);
                    }
                    Err(e) => tracing::warn!(region_id = region.id, error = %e, "gc failed; retrying later"),
                }
            }
        }
    }
}
