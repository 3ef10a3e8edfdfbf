//! Point reads of MVCC records from a snapshot: the lock of a key, its versions, a
//! transaction's commit record, lock scans.
//!
//! Keys here are encoded (memcomparable) user keys; the snapshot holds them under the data
//! prefix, versions suffixed with `!ts`.

use engine_traits::{EngineIterator, IterBounds, Snapshot, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key, origin_key};
use txn_types::{mvcc_key, Lock, TimeStamp, Write, WriteType};

use crate::{Error, Result};

/// What the write column family says about one transaction on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// The transaction's own record (commit or rollback) at `commit_ts`.
    SingleRecord { commit_ts: TimeStamp, write: Write },
    /// Another transaction committed at exactly our start_ts and recorded our rollback in its
    /// record.
    OverlappedRollback { commit_ts: TimeStamp },
    /// No record; `overlapped_write` is another transaction's record at our start_ts, which a
    /// rollback must mark instead of overwriting.
    None { overlapped_write: Option<Write> },
}

impl TxnCommitRecord {
    /// The commit timestamp if the transaction committed (not rolled back) on this key.
    pub fn committed_ts(&self) -> Option<TimeStamp> {
        match self {
            TxnCommitRecord::SingleRecord { commit_ts, write } if write.write_type != WriteType::Rollback => {
                Some(*commit_ts)
            }
            _ => None,
        }
    }

    pub fn is_rolled_back(&self) -> bool {
        matches!(
            self,
            TxnCommitRecord::SingleRecord {
                write: Write {
                    write_type: WriteType::Rollback,
                    ..
                },
                ..
            } | TxnCommitRecord::OverlappedRollback { .. }
        )
    }
}

/// Reads MVCC records of one snapshot.
pub struct MvccReader<'a, S: Snapshot> {
    snap: &'a S,
}

fn corrupted(e: txn_types::CodecError) -> Error {
    Error::Corrupted(e.to_string())
}

impl<'a, S: Snapshot> MvccReader<'a, S> {
    pub fn new(snap: &'a S) -> MvccReader<'a, S> {
        MvccReader { snap }
    }

    pub fn load_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        match self.snap.get_cf(CF_LOCK, &data_key(key))? {
            Some(b) => Ok(Some(Lock::decode(&b).map_err(corrupted)?)),
            None => Ok(None),
        }
    }

    /// The value a `Put` write stands for: inline, or in `default` at the write's start_ts.
    pub fn load_data(&self, key: &[u8], write: &Write) -> Result<Vec<u8>> {
        if let Some(v) = &write.short_value {
            return Ok(v.clone());
        }
        self.snap
            .get_cf(CF_DEFAULT, &data_key(&mvcc_key::append_ts(key, write.start_ts)))?
            .ok_or_else(|| {
                Error::Corrupted(format!(
                    "default value of key {key:?} at {} is missing",
                    write.start_ts
                ))
            })
    }

    /// Visits the versions of `key` with commit_ts <= `ts`, newest first, until `f` says stop.
    fn for_each_version(
        &self,
        key: &[u8],
        ts: TimeStamp,
        mut f: impl FnMut(TimeStamp, Write) -> bool,
    ) -> Result<()> {
        let bounds = IterBounds::new(
            Some(data_key(&mvcc_key::append_ts(key, ts))),
            Some(data_key(&mvcc_key::versions_end(key))),
        );
        let mut it = self.snap.iterator_cf(CF_WRITE, bounds)?;
        let mut valid = it.seek_to_first()?;
        while valid {
            let versioned = origin_key(it.key()).ok_or_else(|| Error::Corrupted("non-data key".into()))?;
            let (_, commit_ts) = mvcc_key::split_ts(versioned).map_err(corrupted)?;
            let write = Write::decode(it.value()).map_err(corrupted)?;
            if !f(commit_ts, write) {
                break;
            }
            valid = it.next()?;
        }
        Ok(())
    }

    /// The newest record of `key` with commit_ts <= `ts`, of any type.
    pub fn seek_write(&self, key: &[u8], ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        let mut found = None;
        self.for_each_version(key, ts, |commit_ts, write| {
            found = Some((commit_ts, write));
            false
        })?;
        Ok(found)
    }

    /// The newest data change (`Put`/`Delete`) of `key` with commit_ts <= `ts`.
    pub fn get_write(&self, key: &[u8], ts: TimeStamp) -> Result<Option<(TimeStamp, Write)>> {
        let mut found = None;
        self.for_each_version(key, ts, |commit_ts, write| {
            if write.is_data_change() {
                found = Some((commit_ts, write));
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// The value of `key` visible at `ts`, ignoring locks.
    pub fn get(&self, key: &[u8], ts: TimeStamp) -> Result<Option<Vec<u8>>> {
        match self.get_write(key, ts)? {
            Some((_, w)) if w.write_type == WriteType::Put => Ok(Some(self.load_data(key, &w)?)),
            _ => Ok(None),
        }
    }

    /// What happened to transaction `start_ts` on `key`, from the write column family.
    pub fn get_txn_commit_record(&self, key: &[u8], start_ts: TimeStamp) -> Result<TxnCommitRecord> {
        let mut record = TxnCommitRecord::None {
            overlapped_write: None,
        };
        self.for_each_version(key, TimeStamp::max(), |commit_ts, write| {
            if commit_ts < start_ts {
                return false;
            }
            if write.start_ts == start_ts {
                record = TxnCommitRecord::SingleRecord { commit_ts, write };
                return false;
            }
            if commit_ts == start_ts {
                record = if write.has_overlapped_rollback {
                    TxnCommitRecord::OverlappedRollback { commit_ts }
                } else {
                    TxnCommitRecord::None {
                        overlapped_write: Some(write),
                    }
                };
                return false;
            }
            true
        })?;
        Ok(record)
    }

    /// Locks with keys in `[start, end)` (encoded keys; `None` unbounded) for which `filter`
    /// holds, at most `limit` (0: no limit), in key order.
    pub fn scan_locks(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        mut filter: impl FnMut(&[u8], &Lock) -> bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Lock)>> {
        let bounds = IterBounds::new(
            Some(data_key(start.unwrap_or_default())),
            Some(end.map(data_key).unwrap_or_else(|| data_end_key(&[]))),
        );
        let mut it = self.snap.iterator_cf(CF_LOCK, bounds)?;
        let mut valid = it.seek_to_first()?;
        let mut out = vec![];
        while valid {
            let key = origin_key(it.key()).ok_or_else(|| Error::Corrupted("non-data key".into()))?;
            let lock = Lock::decode(it.value()).map_err(corrupted)?;
            if filter(key, &lock) {
                out.push((key.to_vec(), lock));
                if limit != 0 && out.len() >= limit {
                    break;
                }
            }
            valid = it.next()?;
        }
        Ok(out)
    }

    /// Every version of `key`, newest first (for GC and tests).
    pub fn all_versions(&self, key: &[u8]) -> Result<Vec<(TimeStamp, Write)>> {
        let mut out = vec![];
        self.for_each_version(key, TimeStamp::max(), |commit_ts, write| {
            out.push((commit_ts, write));
            true
        })?;
        Ok(out)
    }
}
