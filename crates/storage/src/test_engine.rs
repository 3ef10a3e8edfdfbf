//! An in-memory kv seam holding one region, for unit tests of storage commands.

use atoll_proto::{errorpb, kvrpcpb, metapb};
use engine_traits::{KvEngine, MemEngine, MemSnapshot, Modify, WriteBatch, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key};

use crate::kv::{Engine, RegionSnapshot};
use crate::{Error, Result};

#[derive(Clone)]
pub struct TestEngine {
    pub engine: MemEngine,
    pub region: metapb::Region,
}

impl TestEngine {
    /// One region `[start, end)` with id 1.
    pub fn new(start: &[u8], end: &[u8]) -> TestEngine {
        TestEngine {
            engine: MemEngine::new(),
            region: metapb::Region {
                id: 1,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                ..Default::default()
            },
        }
    }
}

impl Engine for TestEngine {
    type Snap = MemSnapshot;

    async fn snapshot(&self, ctx: &kvrpcpb::Context) -> Result<RegionSnapshot<Self::Snap>> {
        if ctx.region_id != self.region.id {
            return Err(Error::from(errorpb::Error {
                region_not_found: Some(errorpb::RegionNotFound {
                    region_id: ctx.region_id,
                }),
                ..Default::default()
            }));
        }
        Ok(RegionSnapshot {
            term: 0,
            snapshot: self.engine.snapshot(),
            region: self.region.clone(),
        })
    }

    async fn write(&self, _ctx: &kvrpcpb::Context, modifies: Vec<Modify>) -> Result<()> {
        let mut wb = WriteBatch::new();
        for m in modifies {
            match m {
                Modify::Put { cf, key, value } => wb.put_cf(cf, data_key(&key), value),
                Modify::Delete { cf, key } => wb.delete_cf(cf, data_key(&key)),
                Modify::DeleteRange { cf, start, end } => {
                    let end = if end.is_empty() {
                        data_end_key(&self.region.end_key)
                    } else {
                        data_key(&end)
                    };
                    wb.delete_range_cf(cf, data_key(&start), end)
                }
            }
        }
        Ok(self.engine.write(&wb, false)?)
    }

    async fn unsafe_destroy_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut wb = WriteBatch::new();
        for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
            wb.delete_range_cf(cf, data_key(start), data_end_key(end));
        }
        Ok(self.engine.write(&wb, false)?)
    }
}
