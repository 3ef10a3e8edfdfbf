//! Storage's kv seam on top of raftstore: where `storage` and `raftstore` meet.

use atoll_proto::kvrpcpb;
use engine_rocks::{RocksEngine, RocksSnapshot};
use engine_traits::{KvEngine, Modify, WriteBatch, CF_DEFAULT, CF_LOCK, CF_WRITE};
use raftstore::{CmdHeader, Router};
use storage::kv::{Engine, RegionSnapshot};
use txn_types::keys::{data_end_key, data_key};

use crate::errors::raftstore_error;

/// Sends storage's reads and writes through the addressed region's Raft group.
#[derive(Clone)]
pub struct RaftKv {
    router: Router<RocksSnapshot>,
    store_id: u64,
    /// The node's KV engine, for the one operation that bypasses Raft (unsafe destroy range).
    kv: RocksEngine,
}

impl RaftKv {
    pub fn new(router: Router<RocksSnapshot>, store_id: u64, kv: RocksEngine) -> RaftKv {
        RaftKv { router, store_id, kv }
    }

    fn header(&self, ctx: &kvrpcpb::Context) -> storage::Result<CmdHeader> {
        if let Some(peer) = &ctx.peer {
            if peer.store_id != 0 && peer.store_id != self.store_id {
                return Err(raftstore_error(raftstore::Error::StoreNotMatch {
                    request_store_id: peer.store_id,
                    actual_store_id: self.store_id,
                }));
            }
        }
        let epoch = ctx.region_epoch.unwrap_or_default();
        Ok(CmdHeader {
            region_id: ctx.region_id,
            peer_id: 0,
            conf_ver: epoch.conf_ver,
            version: epoch.version,
            // Non-zero when a write was computed from a snapshot of that term (or the client
            // pinned one): raftstore refuses it if the leader's term moved on.
            term: ctx.term,
            replica_read: ctx.replica_read,
        })
    }
}

impl Engine for RaftKv {
    type Snap = RocksSnapshot;

    async fn snapshot(&self, ctx: &kvrpcpb::Context) -> storage::Result<RegionSnapshot<RocksSnapshot>> {
        let header = self.header(ctx)?;
        let resp = self.router.read(header).await.map_err(raftstore_error)?;
        Ok(RegionSnapshot {
            snapshot: resp.snapshot,
            region: resp.region,
            term: resp.term,
        })
    }

    async fn write(&self, ctx: &kvrpcpb::Context, modifies: Vec<Modify>) -> storage::Result<()> {
        let header = self.header(ctx)?;
        self.router.write(header, modifies).await.map_err(raftstore_error)
    }

    async fn unsafe_destroy_range(&self, start: &[u8], end: &[u8]) -> storage::Result<()> {
        let mut wb = WriteBatch::new();
        for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
            wb.delete_range_cf(cf, data_key(start), data_end_key(end));
        }
        let kv = self.kv.clone();
        tokio::task::spawn_blocking(move || kv.write(&wb, true))
            .await
            .map_err(|e| storage::Error::Engine(e.to_string()))??;
        Ok(())
    }
}
