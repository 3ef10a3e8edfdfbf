//! The kv seam: how storage reaches replicated data without knowing about Raft.

use std::future::Future;

use atoll_proto::{kvrpcpb, metapb};
use engine_traits::{Modify, Snapshot};

use crate::Result;

/// A consistent snapshot taken at a linearizable point for one region.
pub struct RegionSnapshot<S> {
    pub snapshot: S,
    pub region: metapb::Region,
    /// The leader's term the snapshot was read in (0: unknown).
    pub term: u64,
}

impl<S> RegionSnapshot<S> {
    /// The context for a write computed from this snapshot: it carries the snapshot's term, so
    /// the write is refused (a `StaleCommand` region error) if leadership changed in between and
    /// the data it was computed from may be stale.
    pub fn write_context(&self, ctx: &kvrpcpb::Context) -> kvrpcpb::Context {
        let mut c = ctx.clone();
        if self.term != 0 {
            c.term = self.term;
        }
        c
    }
}

/// Replicated key-value access for one region at a time (the region named in the context).
pub trait Engine: Clone + Send + Sync + 'static {
    type Snap: Snapshot;

    /// A snapshot that sees every write acknowledged before the call; region errors (not
    /// leader, epoch, unknown region) come back as [`crate::Error::Region`].
    fn snapshot(
        &self,
        ctx: &kvrpcpb::Context,
    ) -> impl Future<Output = Result<RegionSnapshot<Self::Snap>>> + Send;

    /// Replicates and applies `modifies` (range-key space) atomically in the region.
    fn write(&self, ctx: &kvrpcpb::Context, modifies: Vec<Modify>)
        -> impl Future<Output = Result<()>> + Send;

    /// Deletes every key in stored-key range `[start, end)` (empty `end`: to the end) from
    /// this node's local engine, in every region and column family, bypassing Raft: TiKV's
    /// `UnsafeDestroyRange`, used after a table is dropped and its GC lifetime has passed.
    fn unsafe_destroy_range(&self, start: &[u8], end: &[u8]) -> impl Future<Output = Result<()>> + Send;
}
