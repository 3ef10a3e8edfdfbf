//! Region snapshots on disk: how a region's data travels to a new or far-behind replica.
//!
//! A snapshot is one file under the store's snapshot directory holding every key of the
//! region's data column families at one applied index. Generated files are named
//! `gen_<region>_<term>_<index>.snap`, received ones `rcv_<region>_<term>_<index>.snap` (written as
//! `.tmp` and renamed once complete and verified). The Raft snapshot message carries only
//! [`SnapMeta`] (region, size, checksum); the file itself goes over a separate stream.
//!
//! File layout: records `cf:u8 key_len:u32 key value_len:u32 value` (big-endian lengths, keys
//! with their data prefix), ended by the byte `0xff`. The meta's CRC-32 covers the whole file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use atoll_proto::metapb;
use engine_traits::{Snapshot, WriteBatch, CF_DEFAULT, CF_LOCK, CF_WRITE};
use prost::Message as _;
use txn_types::keys::{data_end_key, data_key};

use crate::{Error, Result};

/// Column families a snapshot carries, by their index in the file.
pub const SNAP_CFS: [&str; 3] = [CF_DEFAULT, CF_LOCK, CF_WRITE];
const END: u8 = 0xff;
const META_VERSION: u8 = 1;

/// What a Raft snapshot's `data` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapMeta {
    pub region: metapb::Region,
    pub size: u64,
    pub crc32: u32,
    pub keys: u64,
}

impl SnapMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![META_VERSION];
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.crc32.to_be_bytes());
        out.extend_from_slice(&self.keys.to_be_bytes());
        self.region.encode(&mut out).unwrap_or_default();
        out
    }

    pub fn decode(b: &[u8]) -> Result<SnapMeta> {
        if b.len() < 21 || b[0] != META_VERSION {
            return Err(Error::Codec("bad snapshot meta".into()));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let mut c = [0u8; 4];
        c.copy_from_slice(&b[9..13]);
        Ok(SnapMeta {
            size: u64_at(1),
            crc32: u32::from_be_bytes(c),
            keys: u64_at(13),
            region: metapb::Region::decode(&b[21..])?,
        })
    }
}

/// Identifies one snapshot of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapKey {
    pub region_id: u64,
    pub term: u64,
    pub index: u64,
}

impl SnapKey {
    fn name(&self, kind: &str, ext: &str) -> String {
        format!("{kind}_{}_{}_{}.{ext}", self.region_id, self.term, self.index)
    }
}

/// The store's snapshot directory.
#[derive(Debug, Clone)]
pub struct SnapManager {
    dir: PathBuf,
}

fn io_err(e: std::io::Error) -> Error {
    Error::Engine(format!("snapshot file: {e}"))
}

impl SnapManager {
    pub fn new(dir: impl Into<PathBuf>) -> Result<SnapManager> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        // Half-received files of an earlier run are useless: the sender starts over.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(SnapManager { dir })
    }

    pub fn gen_path(&self, key: &SnapKey) -> PathBuf {
        self.dir.join(key.name("gen", "snap"))
    }

    pub fn recv_path(&self, key: &SnapKey) -> PathBuf {
        self.dir.join(key.name("rcv", "snap"))
    }

    pub fn recv_tmp_path(&self, key: &SnapKey) -> PathBuf {
        self.dir.join(key.name("rcv", "tmp"))
    }

    /// Removes every file of `region_id` matching `kind` ("gen" or "rcv"), but `keep`.
    pub fn remove_region_files(&self, region_id: u64, kind: &str, keep: Option<&Path>) {
        let prefix = format!("{kind}_{region_id}_");
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                let matches = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix));
                if matches && keep != Some(p.as_path()) {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }

    /// Writes every data key of `region` in `snap` to the generated file of `key`.
    pub fn generate<S: Snapshot>(
        &self,
        key: &SnapKey,
        snap: &S,
        region: &metapb::Region,
    ) -> Result<SnapMeta> {
        let path = self.gen_path(key);
        let tmp = path.with_extension("tmp");
        let mut w = ChecksumWriter::new(BufWriter::new(File::create(&tmp).map_err(io_err)?));
        let start = data_key(&region.start_key);
        let end = data_end_key(&region.end_key);
        let mut keys = 0u64;
        for (i, cf) in SNAP_CFS.iter().enumerate() {
            let mut failed = None;
            snap.scan_cf(cf, &start, Some(&end), |k, v| {
                let r = w
                    .write_all(&[i as u8])
                    .and_then(|_| w.write_all(&(k.len() as u32).to_be_bytes()))
                    .and_then(|_| w.write_all(k))
                    .and_then(|_| w.write_all(&(v.len() as u32).to_be_bytes()))
                    .and_then(|_| w.write_all(v));
                if let Err(e) = r {
                    failed = Some(e);
                    return Ok(false);
                }
                keys += 1;
                Ok(true)
            })?;
            if let Some(e) = failed {
                return Err(io_err(e));
            }
        }
        w.write_all(&[END]).map_err(io_err)?;
        let (size, crc32, inner) = w.finish();
        let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, &path).map_err(io_err)?;
        self.remove_region_files(key.region_id, "gen", Some(&path));
        Ok(SnapMeta {
            region: region.clone(),
            size,
            crc32,
            keys,
        })
    }

    /// Checks a received (temporary) file against its meta, then makes it the received file.
    pub fn finish_receive(&self, key: &SnapKey, meta: &SnapMeta) -> Result<()> {
        let tmp = self.recv_tmp_path(key);
        let (size, crc32) = checksum_file(&tmp)?;
        if size != meta.size || crc32 != meta.crc32 {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Codec(format!(
                "snapshot {key:?} corrupted: got {size} bytes crc {crc32:08x}, want {} bytes crc {:08x}",
                meta.size, meta.crc32
            )));
        }
        std::fs::rename(&tmp, self.recv_path(key)).map_err(io_err)?;
        Ok(())
    }
}

/// Size and CRC-32 of a file.
pub fn checksum_file(path: &Path) -> Result<(u64, u32)> {
    let mut r = BufReader::new(File::open(path).map_err(io_err)?);
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize()))
}

/// Reads a snapshot file and hands its keys to `sink` in write batches of about `batch_bytes`.
pub fn load_file(
    path: &Path,
    batch_bytes: usize,
    mut sink: impl FnMut(WriteBatch) -> Result<()>,
) -> Result<u64> {
    let mut r = BufReader::new(File::open(path).map_err(io_err)?);
    let mut wb = WriteBatch::new();
    let mut pending = 0usize;
    let mut keys = 0u64;
    let read_bytes = |r: &mut BufReader<File>| -> Result<Vec<u8>> {
        let mut l = [0u8; 4];
        r.read_exact(&mut l).map_err(io_err)?;
        let n = u32::from_be_bytes(l) as usize;
        let mut v = vec![0u8; n];
        r.read_exact(&mut v).map_err(io_err)?;
        Ok(v)
    };
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(io_err)?;
        if tag[0] == END {
            break;
        }
        let cf = SNAP_CFS
            .get(tag[0] as usize)
            .ok_or_else(|| Error::Codec(format!("bad column family {} in snapshot", tag[0])))?;
        let k = read_bytes(&mut r)?;
        let v = read_bytes(&mut r)?;
        pending += k.len() + v.len();
        wb.put_cf(cf, k, v);
        keys += 1;
        if pending >= batch_bytes {
            sink(std::mem::take(&mut wb))?;
            pending = 0;
        }
    }
    sink(wb)?;
    Ok(keys)
}

struct ChecksumWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    size: u64,
}

impl<W: Write> ChecksumWriter<W> {
    fn new(inner: W) -> Self {
        ChecksumWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
            size: 0,
        }
    }

    fn finish(self) -> (u64, u32, W) {
        (self.size, self.hasher.finalize(), self.inner)
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_traits::{KvEngine, MemEngine};

    #[test]
    fn generate_then_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = SnapManager::new(dir.path()).unwrap();
        let eng = MemEngine::new();
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_DEFAULT, data_key(b"a"), b"1".to_vec());
        wb.put_cf(CF_WRITE, data_key(b"b"), b"2".to_vec());
        wb.put_cf(CF_LOCK, data_key(b"c"), b"3".to_vec());
        wb.put_cf(CF_DEFAULT, data_key(b"z"), b"outside".to_vec());
        eng.write(&wb, false).unwrap();
        let region = metapb::Region {
            id: 7,
            start_key: b"a".to_vec(),
            end_key: b"d".to_vec(),
            ..Default::default()
        };
        let key = SnapKey {
            region_id: 7,
            term: 6,
            index: 10,
        };
        let meta = mgr.generate(&key, &eng.snapshot(), &region).unwrap();
        assert_eq!(meta.keys, 3);
        assert_eq!(SnapMeta::decode(&meta.encode()).unwrap(), meta);
        std::fs::copy(mgr.gen_path(&key), mgr.recv_tmp_path(&key)).unwrap();
        mgr.finish_receive(&key, &meta).unwrap();
        let mut got = 0;
        load_file(&mgr.recv_path(&key), 1, |wb| {
            got += wb.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(got, 3);
        // A corrupted copy is refused.
        let mut bytes = std::fs::read(mgr.gen_path(&key)).unwrap();
        bytes[3] ^= 1;
        std::fs::write(mgr.recv_tmp_path(&key), bytes).unwrap();
        assert!(mgr.finish_receive(&key, &meta).is_err());
    }
}
