//! The raw key-value API (no MVCC): point and batch reads/writes, scans, delete-range, TTL,
//! compare-and-swap and checksums, for API V1 and V2.
//!
//! Key mapping: an API V1 key is stored as is; an API V2 key (which must carry the raw key-space
//! prefix `r` + 3-byte keyspace id) is stored memcomparable-encoded, the space PD's region
//! boundaries are in. Values are stored as [`txn_types::raw_value::RawValue`] in both modes.

mod checksum;

use std::time::{SystemTime, UNIX_EPOCH};

use atoll_proto::kvrpcpb;
use engine_traits::{EngineIterator, IterBounds, Iterable, Modify, Peekable, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::keys::{data_end_key, data_key, origin_key};
use txn_types::raw_value::RawValue;

use crate::api_keys::{self, check_in_region, is_v2, KeyMode};
use crate::kv::{Engine, RegionSnapshot};
use crate::latches::Latches;
use crate::metrics::COMMAND_DURATION;
use crate::read_stats::{ReadFlow, ReadStats};
use crate::{Error, Result};

pub use checksum::Crc64;

pub use crate::api_keys::MAX_KEY_SIZE;
/// Largest single value accepted (TiKV's raft entry limit, 8 MiB).
pub const MAX_VALUE_SIZE: usize = 8 * 1024 * 1024;
/// Largest scan limit accepted in one request.
pub const MAX_SCAN_LIMIT: u32 = 100_000;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Maps a raw request's column family name. API V2 serves the default column family only, as
/// TiKV does (its values carry the TTL metadata).
pub fn raw_cf(ctx: &kvrpcpb::Context, cf: &str) -> Result<&'static str> {
    if is_v2(ctx) && !matches!(cf, "" | "default") {
        return Err(Error::InvalidInput(format!(
            "column family {cf:?} is not supported in api version V2"
        )));
    }
    match cf {
        "" | "default" => Ok(CF_DEFAULT),
        "lock" => Ok(CF_LOCK),
        "write" => Ok(CF_WRITE),
        other => Err(Error::InvalidInput(format!("unknown column family {other:?}"))),
    }
}

fn check_scan_limit(limit: u32) -> Result<()> {
    if limit > MAX_SCAN_LIMIT {
        return Err(Error::InvalidInput(format!(
            "scan limit {limit} exceeds {MAX_SCAN_LIMIT}"
        )));
    }
    Ok(())
}

pub(crate) fn check_value_size(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_SIZE,
        });
    }
    Ok(())
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    pub succeed: bool,
    /// The value before the call (`None`: the key did not exist or had expired).
    pub previous: Option<Vec<u8>>,
}

/// A checksum over key ranges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    pub checksum: u64,
    pub total_kvs: u64,
    pub total_bytes: u64,
}

/// One pair a scan returns (value empty when key-only).
pub type KvPair = (Vec<u8>, Vec<u8>);

/// The raw API over a kv seam.
#[derive(Clone)]
pub struct RawStorage<E: Engine> {
    engine: E,
    latches: Latches,
    read_stats: ReadStats,
}

fn flow_of(pairs: &[KvPair]) -> ReadFlow {
    ReadFlow::of_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}

impl<E: Engine> RawStorage<E> {
    pub fn new(engine: E) -> RawStorage<E> {
        RawStorage {
            engine,
            latches: Latches::new(4096),
            read_stats: ReadStats::new(),
        }
    }

    /// Counts the keys and bytes every read returns, per region, into `stats`.
    pub fn with_read_stats(mut self, stats: ReadStats) -> RawStorage<E> {
        self.read_stats = stats;
        self
    }

    pub fn read_stats(&self) -> &ReadStats {
        &self.read_stats
    }

    async fn snapshot(&self, ctx: &kvrpcpb::Context) -> Result<RegionSnapshot<E::Snap>> {
        let t = std::time::Instant::now();
        let r = self.engine.snapshot(ctx).await;
        COMMAND_DURATION
            .with_label_values(&["snapshot"])
            .observe(t.elapsed().as_secs_f64());
        r
    }

    async fn write(&self, ctx: &kvrpcpb::Context, modifies: Vec<Modify>) -> Result<()> {
        let t = std::time::Instant::now();
        let r = self.engine.write(ctx, modifies).await;
        COMMAND_DURATION
            .with_label_values(&["write"])
            .observe(t.elapsed().as_secs_f64());
        r
    }

    fn read_value(
        snap: &RegionSnapshot<E::Snap>,
        cf: &str,
        rkey: &[u8],
        now: u64,
    ) -> Result<Option<RawValue>> {
        check_in_region(&snap.region, rkey)?;
        match snap.snapshot.get_cf(cf, &data_key(rkey))? {
            Some(stored) => {
                let v = RawValue::decode(stored)?;
                Ok((!v.is_expired(now)).then_some(v))
            }
            None => Ok(None),
        }
    }

    pub async fn get(&self, ctx: &kvrpcpb::Context, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = raw_cf(ctx, cf)?;
        let rkey = api_keys::stored_key(ctx, KeyMode::Raw, key)?;
        let snap = self.snapshot(ctx).await?;
        let value = Self::read_value(&snap, cf, &rkey, now_secs())?.map(|v| v.value);
        let flow = ReadFlow::of_pairs(value.as_deref().map(|v| (key, v)));
        self.read_stats.record_request(snap.region.id, flow, &rkey, &rkey);
        Ok(value)
    }

    /// Pairs of the keys that exist, in request order.
    pub async fn batch_get(&self, ctx: &kvrpcpb::Context, cf: &str, keys: &[Vec<u8>]) -> Result<Vec<KvPair>> {
        let cf = raw_cf(ctx, cf)?;
        let rkeys = keys
            .iter()
            .map(|k| api_keys::stored_key(ctx, KeyMode::Raw, k))
            .collect::<Result<Vec<_>>>()?;
        let snap = self.snapshot(ctx).await?;
        let now = now_secs();
        let mut out = Vec::with_capacity(keys.len());
        for (key, rkey) in keys.iter().zip(&rkeys) {
            if let Some(v) = Self::read_value(&snap, cf, rkey, now)? {
                out.push((key.clone(), v.value));
            }
        }
        match (rkeys.iter().min(), rkeys.iter().max()) {
            (Some(first), Some(last)) => {
                self.read_stats
                    .record_request(snap.region.id, flow_of(&out), first, last)
            }
            _ => self.read_stats.record(snap.region.id, flow_of(&out)),
        }
        Ok(out)
    }

    /// Writes `pairs` atomically; `ttls` is empty (no TTL), one TTL for all, or one per pair.
    /// Writes `pairs`. With `for_cas` (tikv-client's atomic mode) the keys' latches are held
    /// until the write is applied, so a compare-and-swap never interleaves with it; without,
    /// writes do not wait on each other (TiKV's contract: CAS is atomic against atomic-mode
    /// writes).
    pub async fn batch_put(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        pairs: Vec<KvPair>,
        ttls: &[u64],
        for_cas: bool,
    ) -> Result<()> {
        let cf = raw_cf(ctx, cf)?;
        if !ttls.is_empty() && ttls.len() != 1 && ttls.len() != pairs.len() {
            return Err(Error::InvalidInput(format!(
                "{} ttls for {} pairs",
                ttls.len(),
                pairs.len()
            )));
        }
        let now = now_secs();
        let mut modifies = Vec::with_capacity(pairs.len());
        for (i, (key, value)) in pairs.into_iter().enumerate() {
            check_value_size(&value)?;
            let ttl = ttls.get(i).or(ttls.first()).copied().unwrap_or(0);
            let key = api_keys::stored_written_key(ctx, KeyMode::Raw, &key)?;
            modifies.push(Modify::Put {
                cf,
                key,
                value: RawValue::with_ttl(value, ttl, now).encode(),
            });
        }
        self.write_latched(ctx, modifies, for_cas).await
    }

    pub async fn put(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl: u64,
        for_cas: bool,
    ) -> Result<()> {
        self.batch_put(ctx, cf, vec![(key, value)], &[ttl], for_cas).await
    }

    /// Writes `modifies`, under their keys' latches when `for_cas`.
    async fn write_latched(
        &self,
        ctx: &kvrpcpb::Context,
        modifies: Vec<Modify>,
        for_cas: bool,
    ) -> Result<()> {
        let _guard = if for_cas {
            Some(self.latches.acquire(modifies.iter().map(|m| m.key())).await)
        } else {
            None
        };
        self.write(ctx, modifies).await
    }

    /// Deletes `keys`; `for_cas` as in [`RawStorage::batch_put`].
    pub async fn batch_delete(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        keys: &[Vec<u8>],
        for_cas: bool,
    ) -> Result<()> {
        let cf = raw_cf(ctx, cf)?;
        let modifies = keys
            .iter()
            .map(|k| {
                Ok(Modify::Delete {
                    cf,
                    key: api_keys::stored_written_key(ctx, KeyMode::Raw, k)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_latched(ctx, modifies, for_cas).await
    }

    /// Deletes `[start, end)` within the addressed region (empty `end`: to the region's end).
    pub async fn delete_range(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<()> {
        let cf = raw_cf(ctx, cf)?;
        api_keys::check_size(start)?;
        api_keys::check_size(end)?;
        let (start, end) = api_keys::stored_bounds(ctx, KeyMode::Raw, start, end)?;
        let (start, end) = (start.unwrap_or_default(), end.unwrap_or_default());
        if !end.is_empty() && start >= end {
            return Err(Error::InvalidInput(
                "delete range start must be less than end".into(),
            ));
        }
        self.write(ctx, vec![Modify::DeleteRange { cf, start, end }])
            .await
    }

    /// Seconds left to live: `Some(0)` for a key without TTL, `None` when it does not exist.
    pub async fn get_key_ttl(&self, ctx: &kvrpcpb::Context, cf: &str, key: &[u8]) -> Result<Option<u64>> {
        let cf = raw_cf(ctx, cf)?;
        let rkey = api_keys::stored_key(ctx, KeyMode::Raw, key)?;
        let snap = self.snapshot(ctx).await?;
        let now = now_secs();
        Ok(Self::read_value(&snap, cf, &rkey, now)?.map(|v| v.ttl_left(now).unwrap_or(0)))
    }

    /// Sets `key` to `value` only if its current value is `previous` (`None`: must not exist).
    pub async fn compare_and_swap(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        key: &[u8],
        previous: Option<&[u8]>,
        value: Vec<u8>,
        ttl: u64,
    ) -> Result<CasOutcome> {
        let cf = raw_cf(ctx, cf)?;
        check_value_size(&value)?;
        let rkey = api_keys::stored_written_key(ctx, KeyMode::Raw, key)?;
        let _guard = self.latches.acquire([rkey.as_slice()]).await;
        let snap = self.snapshot(ctx).await?;
        let now = now_secs();
        let current = Self::read_value(&snap, cf, &rkey, now)?.map(|v| v.value);
        if current.as_deref() != previous {
            return Ok(CasOutcome {
                succeed: false,
                previous: current,
            });
        }
        let stored = RawValue::with_ttl(value, ttl, now).encode();
        self.write(
            &snap.write_context(ctx),
            vec![Modify::Put {
                cf,
                key: rkey,
                value: stored,
            }],
        )
        .await?;
        Ok(CasOutcome {
            succeed: true,
            previous: current,
        })
    }

    /// Scans the addressed region. Forward: keys in `[start, end)`. Reverse (TiKV's raw
    /// convention): keys in `[end, start)`, largest first. Empty bounds are unbounded; the scan
    /// never leaves the region.
    #[allow(clippy::too_many_arguments)]
    pub async fn scan(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        start: &[u8],
        end: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        let cf = raw_cf(ctx, cf)?;
        check_scan_limit(limit)?;
        let snap = self.snapshot(ctx).await?;
        let out = self.scan_snapshot(ctx, &snap, cf, start, end, limit, key_only, reverse)?;
        self.record_scan(ctx, snap.region.id, &out);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_snapshot(
        &self,
        ctx: &kvrpcpb::Context,
        snap: &RegionSnapshot<E::Snap>,
        cf: &'static str,
        start: &[u8],
        end: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        let (lower, upper) = if reverse { (end, start) } else { (start, end) };
        let bounds = api_keys::stored_bounds(ctx, KeyMode::Raw, lower, upper)?;
        let Some((lower, upper)) = api_keys::clamp_to_region(bounds, &snap.region) else {
            return Ok(vec![]);
        };
        if limit == 0 {
            return Ok(vec![]);
        }
        let bounds = IterBounds::new(Some(data_key(&lower)), Some(data_end_key(&upper)));
        let mut it = snap.snapshot.iterator_cf(cf, bounds)?;
        let mut valid = if reverse {
            it.seek_to_last()?
        } else {
            it.seek_to_first()?
        };
        let now = now_secs();
        let mut out = Vec::new();
        while valid && out.len() < limit as usize {
            let v = RawValue::decode(it.value().to_vec())?;
            if !v.is_expired(now) {
                let rkey = origin_key(it.key())
                    .ok_or_else(|| Error::Corrupted("non-data key in data range".into()))?;
                let key = api_keys::user_key(ctx, KeyMode::Raw, rkey)?;
                out.push((key, if key_only { vec![] } else { v.value }));
            }
            valid = if reverse { it.prev()? } else { it.next()? };
        }
        Ok(out)
    }

    /// Scans several ranges of the addressed region, each up to `each_limit` pairs.
    pub async fn batch_scan(
        &self,
        ctx: &kvrpcpb::Context,
        cf: &str,
        ranges: &[kvrpcpb::KeyRange],
        each_limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        let cf = raw_cf(ctx, cf)?;
        check_scan_limit(each_limit)?;
        let snap = self.snapshot(ctx).await?;
        let mut out = Vec::new();
        for r in ranges {
            out.extend(self.scan_snapshot(
                ctx,
                &snap,
                cf,
                &r.start_key,
                &r.end_key,
                each_limit,
                key_only,
                reverse,
            )?);
        }
        self.record_scan(ctx, snap.region.id, &out);
        Ok(out)
    }

    /// Counts a scan's result; its first and last keys are the range it covered.
    fn record_scan(&self, ctx: &kvrpcpb::Context, region_id: u64, out: &[KvPair]) {
        let flow = flow_of(out);
        let stored =
            |pair: Option<&KvPair>| pair.and_then(|(k, _)| api_keys::stored_key(ctx, KeyMode::Raw, k).ok());
        match (stored(out.first()), stored(out.last())) {
            (Some(first), Some(last)) => self.read_stats.record_request(region_id, flow, &first, &last),
            _ => self.read_stats.record(region_id, flow),
        }
    }

    /// CRC64-XOR checksum of the live pairs in `ranges` (within the addressed region).
    pub async fn checksum(&self, ctx: &kvrpcpb::Context, ranges: &[kvrpcpb::KeyRange]) -> Result<Checksum> {
        let snap = self.snapshot(ctx).await?;
        let mut sum = Checksum::default();
        for r in ranges {
            for (k, v) in self.scan_snapshot(
                ctx,
                &snap,
                CF_DEFAULT,
                &r.start_key,
                &r.end_key,
                u32::MAX,
                false,
                false,
            )? {
                let mut d = Crc64::new();
                d.update(&k);
                d.update(&v);
                sum.checksum ^= d.finish();
                sum.total_kvs += 1;
                sum.total_bytes += (k.len() + v.len()) as u64;
            }
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests;
