use std::path::Path;
use std::sync::Arc;

use engine_traits::{
    EngineIterator, Error, IterBounds, Iterable, KvEngine, Modify, Peekable, Result, Snapshot, WriteBatch,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, Options, ReadOptions,
    SnapshotWithThreadMode, WriteOptions, DB,
};

fn engine_err(e: rocksdb::Error) -> Error {
    Error::Engine(e.into_string())
}

/// Sizing knobs for an engine.
#[derive(Debug, Clone)]
pub struct RocksTuning {
    /// Shared block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
    pub max_background_jobs: i32,
}

impl Default for RocksTuning {
    fn default() -> Self {
        RocksTuning {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            max_background_jobs: 2,
        }
    }
}

/// A RocksDB instance; cheap to clone.
#[derive(Clone)]
pub struct RocksEngine {
    db: Arc<DB>,
}

impl RocksEngine {
    /// Opens (creating if missing) the database at `path` with the column families `cfs`.
    pub fn open(path: &Path, cfs: &[&str]) -> Result<RocksEngine> {
        RocksEngine::open_with(path, cfs, &RocksTuning::default())
    }

    pub fn open_with(path: &Path, cfs: &[&str], tuning: &RocksTuning) -> Result<RocksEngine> {
        std::fs::create_dir_all(path)?;
        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        let cf_opts = || {
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            block.set_bloom_filter(10.0, false);
            let mut o = Options::default();
            o.set_block_based_table_factory(&block);
            o.set_write_buffer_size(tuning.write_buffer_bytes);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o
        };
        let mut db_opts = cf_opts();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(tuning.max_background_jobs);
        let mut descriptors: Vec<ColumnFamilyDescriptor> = cfs
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(*cf, cf_opts()))
            .collect();
        if !cfs.contains(&"default") {
            descriptors.push(ColumnFamilyDescriptor::new("default", cf_opts()));
        }
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(engine_err)?;
        Ok(RocksEngine { db: Arc::new(db) })
    }

    fn cf(&self, cf: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(cf)
            .ok_or_else(|| Error::UnknownCf(cf.to_owned()))
    }

    /// A RocksDB property of a column family, e.g. `rocksdb.estimate-num-keys`.
    pub fn property_int_cf(&self, cf: &str, name: &str) -> Result<Option<u64>> {
        self.db
            .property_int_value_cf(self.cf(cf)?, name)
            .map_err(engine_err)
    }

    /// Flushes memtables of every column family to SST files.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(engine_err)
    }
}

fn read_opts(bounds: &IterBounds) -> ReadOptions {
    let mut o = ReadOptions::default();
    if let Some(l) = &bounds.lower {
        o.set_iterate_lower_bound(l.clone());
    }
    if let Some(u) = &bounds.upper {
        o.set_iterate_upper_bound(u.clone());
    }
    o
}

impl Peekable for RocksEngine {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf)?, key).map_err(engine_err)
    }
}

impl Iterable for RocksEngine {
    type Iter<'a> = RocksIterator<'a>;
    fn iterator_cf(&self, cf: &str, bounds: IterBounds) -> Result<RocksIterator<'_>> {
        let it = self.db.raw_iterator_cf_opt(self.cf(cf)?, read_opts(&bounds));
        Ok(RocksIterator { it })
    }
}

impl KvEngine for RocksEngine {
    type Snap = RocksSnapshot;

    fn snapshot(&self) -> RocksSnapshot {
        let snap = self.db.snapshot();
        // SAFETY: the snapshot borrows `*self.db`. We store it next to a clone of the `Arc<DB>`
        // in `SnapInner`, whose field order drops the snapshot before that `Arc`, so the
        // database outlives the snapshot; the 'static lifetime never escapes `SnapInner`
        // (every accessor reborrows it for the lifetime of `&self`).
        let snap: SnapshotWithThreadMode<'static, DB> = unsafe { std::mem::transmute(snap) };
        RocksSnapshot {
            inner: Arc::new(SnapInner {
                snap,
                db: self.db.clone(),
            }),
        }
    }

    fn write(&self, batch: &WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops() {
            match op {
                Modify::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                Modify::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                Modify::DeleteRange { cf, start, end } => {
                    if start < end {
                        wb.delete_range_cf(self.cf(cf)?, start, end)
                    }
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts).map_err(engine_err)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(engine_err)
    }

    fn approximate_size_range(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<u64> {
        let sizes = self
            .db
            .get_approximate_sizes_cf(self.cf(cf)?, &[rocksdb::Range::new(start, end)]);
        Ok(sizes.first().copied().unwrap_or(0))
    }

    fn approximate_size_cf(&self, cf: &str) -> Result<u64> {
        let handle = self.cf(cf)?;
        let sst = self
            .db
            .property_int_value_cf(handle, "rocksdb.total-sst-files-size")
            .map_err(engine_err)?;
        let mem = self
            .db
            .property_int_value_cf(handle, "rocksdb.cur-size-all-mem-tables")
            .map_err(engine_err)?;
        Ok(sst.unwrap_or(0) + mem.unwrap_or(0))
    }
}

struct SnapInner {
    // Field order matters: `snap` must drop before `db`.
    snap: SnapshotWithThreadMode<'static, DB>,
    db: Arc<DB>,
}

/// An owned, consistent view of a [`RocksEngine`].
#[derive(Clone)]
pub struct RocksSnapshot {
    inner: Arc<SnapInner>,
}

impl RocksSnapshot {
    fn cf(&self, cf: &str) -> Result<&rocksdb::ColumnFamily> {
        self.inner
            .db
            .cf_handle(cf)
            .ok_or_else(|| Error::UnknownCf(cf.to_owned()))
    }
}

impl Peekable for RocksSnapshot {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.snap.get_cf(self.cf(cf)?, key).map_err(engine_err)
    }
}

impl Iterable for RocksSnapshot {
    type Iter<'a> = RocksIterator<'a>;
    fn iterator_cf(&self, cf: &str, bounds: IterBounds) -> Result<RocksIterator<'_>> {
        let it = self
            .inner
            .snap
            .raw_iterator_cf_opt(self.cf(cf)?, read_opts(&bounds));
        Ok(RocksIterator { it })
    }
}

impl Snapshot for RocksSnapshot {}

/// A RocksDB cursor over one column family.
pub struct RocksIterator<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
}

impl RocksIterator<'_> {
    fn settled(&self) -> Result<bool> {
        self.it.status().map_err(engine_err)?;
        Ok(self.it.valid())
    }
}

impl EngineIterator for RocksIterator<'_> {
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.it.seek(key);
        self.settled()
    }
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
        self.it.seek_for_prev(key);
        self.settled()
    }
    fn seek_to_first(&mut self) -> Result<bool> {
        self.it.seek_to_first();
        self.settled()
    }
    fn seek_to_last(&mut self) -> Result<bool> {
        self.it.seek_to_last();
        self.settled()
    }
    fn next(&mut self) -> Result<bool> {
        if !self.it.valid() {
            return Ok(false);
        }
        self.it.next();
        self.settled()
    }
    fn prev(&mut self) -> Result<bool> {
        if !self.it.valid() {
            return Ok(false);
        }
        self.it.prev();
        self.settled()
    }
    fn valid(&self) -> Result<bool> {
        self.settled()
    }
    fn key(&self) -> &[u8] {
        self.it.key().unwrap_or_default()
    }
    fn value(&self) -> &[u8] {
        self.it.value().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use engine_traits::{KvEngine, Peekable, WriteBatch, ALL_CFS, CF_DEFAULT};

    use super::RocksEngine;

    #[test]
    fn rocks_engine_conforms() {
        let dirs = std::cell::RefCell::new(vec![]);
        engine_traits::conformance::run_all(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let e = RocksEngine::open(dir.path(), ALL_CFS).expect("open");
            dirs.borrow_mut().push(dir);
            e
        });
    }

    #[test]
    fn data_survives_reopen_and_snapshot_outlives_engine_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = {
            let e = RocksEngine::open(dir.path(), ALL_CFS).expect("open");
            let mut wb = WriteBatch::new();
            wb.put_cf(CF_DEFAULT, b"k", b"v");
            e.write(&wb, true).expect("write");
            e.snapshot()
        };
        assert_eq!(snap.get_cf(CF_DEFAULT, b"k").expect("get"), Some(b"v".to_vec()));
        drop(snap);
        let e = RocksEngine::open(dir.path(), ALL_CFS).expect("reopen");
        assert_eq!(e.get_cf(CF_DEFAULT, b"k").expect("get"), Some(b"v".to_vec()));
    }
}
