//! The request fuzzer's generator and bookkeeping (see `tests/fuzz_e2e.rs` for what it checks).
//!
//! Every request `i` of a run is generated from its own `arbitrary::Unstructured`, whose bytes
//! come from a `StdRng` seeded with `(seed, i)`: a request depends only on the seed, its index
//! and the cluster's region map at the time it is sent (a "correct" context is looked up then),
//! never on which worker sends it or in what order. `ATOLL_FUZZ_ONLY=i` replays one index.

pub mod kv;
mod outcome;
pub mod pd;
pub mod wire;

pub use outcome::{excerpt, finish, transport_failure, Outcome, SharedStats, Stats};

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use arbitrary::Unstructured;
use atoll_proto::kvrpcpb::{self, Context};
use atoll_proto::metapb::{Peer, Region, RegionEpoch};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Longest any single fuzz call may take (PD's SplitRegions waits up to 10 s, a pessimistic lock
/// waits at most a few seconds): anything slower counts as a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of generator input per request.
const INPUT_BYTES: usize = 4096;

/// Key prefixes the fuzzer never writes to (nor deletes a range over): the data written before
/// the fuzzing lives there. `\xff\xfe` for API V1 (raw keys as they are, transactional keys
/// memcomparable-encoded, which keeps their first bytes), `r\0\0\0\xff\xfe` and
/// `x\0\0\0\xff\xfe` for API V2 keyspace 0.
pub const RESERVED: [&[u8]; 3] = [b"r\0\0\0\xff\xfe", b"x\0\0\0\xff\xfe", b"\xff\xfe"];

/// The end of a reserved zone: its prefix with the last byte incremented.
fn zone_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// Whether `key` lies in a reserved zone.
pub fn reserved(key: &[u8]) -> bool {
    RESERVED.iter().any(|p| key.starts_with(p))
}

/// `key`, moved out of the reserved zones (the `\xfe` becomes `\xfd`).
fn unreserve(mut key: Vec<u8>) -> Vec<u8> {
    for p in RESERVED {
        if key.starts_with(p) {
            key[p.len() - 1] = 0xfd;
        }
    }
    key
}

/// A range for a destructive request (delete range, destroy range) that covers no reserved key,
/// also if the server read it the other way round. `end` empty is +inf.
pub fn safe_range(start: Vec<u8>, end: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let inverted = !end.is_empty() && start > end;
    let (lo, hi) = if inverted { (&end, &start) } else { (&start, &end) };
    for p in RESERVED {
        let (zs, ze) = (p.to_vec(), zone_end(p));
        let hits = (hi.is_empty() || *hi > zs) && *lo < ze;
        if !hits {
            continue;
        }
        if inverted {
            return (end.clone(), end);
        }
        if start < zs {
            // Zones are sorted: cutting at this one keeps the later ones out as well.
            return (start, zs);
        }
        return (ze.clone(), ze);
    }
    (start, end)
}

/// A key a region may be split at without being encoded (a raw API V1 split, or PD's
/// SplitRegions, which takes region keys as they are). Only below `r`: a region boundary that is
/// not a memcomparable encoding makes the transactional clients' region lookups fail to decode
/// it (TiKV's rule too: raw and transactional data do not share one API V1 key space), and the
/// checked transactional data lives above `r`.
pub fn raw_boundary(key: Vec<u8>) -> Vec<u8> {
    if key.as_slice() >= b"r".as_slice() {
        [b"fz/" as &[u8], &key].concat()
    } else {
        key
    }
}

/// Memcomparable encoding (ascending), as PD's region boundaries use.
pub fn memcomparable(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / 8 + 1) * 9);
    let last_full = key.len().is_multiple_of(8);
    for chunk in key.chunks(8).chain(last_full.then_some(&[][..])) {
        let pad = 8 - chunk.len();
        out.extend_from_slice(chunk);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(0xFF - pad as u8);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the fuzzer knows about the cluster
// ---------------------------------------------------------------------------------------------

/// A region as PD last reported it.
#[derive(Clone, Debug)]
pub struct RegionSnap {
    pub region: Region,
    pub leader: Option<Peer>,
}

/// Facts about the real cluster that requests mix in (and the wrong values next to them).
pub struct World {
    pub cluster_id: u64,
    /// Store id -> node index.
    pub store_node: HashMap<u64, usize>,
    /// Real store metas, by id.
    pub stores: BTreeMap<u64, atoll_proto::metapb::Store>,
    /// A recent TSO timestamp when fuzzing started.
    pub base_ts: u64,
    pub nodes: usize,
    /// Regions, refreshed in the background while fuzzing.
    pub regions: RwLock<Vec<RegionSnap>>,
}

impl World {
    /// The region whose range holds `range_key` (an encoded key, or a raw API V1 key).
    pub fn region_of(regions: &[RegionSnap], range_key: &[u8]) -> Option<RegionSnap> {
        regions
            .iter()
            .find(|r| {
                r.region.start_key.as_slice() <= range_key
                    && (r.region.end_key.is_empty() || range_key < r.region.end_key.as_slice())
            })
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// Per-request input bytes for index `i` of a run with `seed`.
pub fn input(seed: u64, i: u64) -> Vec<u8> {
    let mix = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let mut rng = StdRng::seed_from_u64(mix);
    let mut buf = vec![0u8; INPUT_BYTES];
    rng.fill_bytes(&mut buf);
    buf
}

/// Field-by-field generation over one request's `Unstructured` data. Exhausted data yields
/// defaults (zeros, empty), never an error.
pub struct G<'a> {
    pub u: Unstructured<'a>,
    pub w: &'a World,
    pub regions: Vec<RegionSnap>,
    /// A request carries at most one huge (>= 8 KiB) key or value.
    huge_used: bool,
}

/// Prefixes of the shared keys: API V1, and API V2 raw / transactional keyspace 0.
const POOL_PREFIXES: &[&[u8]] = &[b"", b"", b"r\0\0\0", b"x\0\0\0"];
/// Keyspace prefixes, the real ones and odd ones, for random API V2 keys.
const KEYSPACE_PREFIXES: &[&[u8]] = &[
    b"r\0\0\0",
    b"x\0\0\0",
    b"r\0\0\x01",
    b"x\0\0\x01",
    b"r\xff\xff\xff",
    b"x",
    b"r",
];

/// Keys many requests share, so that prewrites, commits, rollbacks and reads meet.
const POOL_KEYS: u8 = 24;

impl<'a> G<'a> {
    pub fn new(data: &'a [u8], w: &'a World) -> G<'a> {
        let regions = w.regions.read().unwrap_or_else(|e| e.into_inner()).clone();
        G {
            u: Unstructured::new(data),
            w,
            regions,
            huge_used: false,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u.arbitrary().unwrap_or(false)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        self.u.ratio(num, den).unwrap_or(false)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.u.int_in_range(0..=n.saturating_sub(1)).unwrap_or(0)
    }

    pub fn u64(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(16) as u64,
            _ => self.u.arbitrary().unwrap_or(0),
        }
    }

    pub fn u32(&mut self) -> u32 {
        match self.below(6) {
            0 => 0,
            1 => u32::MAX,
            2 => self.below(16) as u32,
            _ => self.u.arbitrary().unwrap_or(0),
        }
    }

    pub fn i64(&mut self) -> i64 {
        match self.below(6) {
            0 => 0,
            1 => i64::MAX,
            2 => i64::MIN,
            3 => -1,
            _ => self.u.arbitrary().unwrap_or(0),
        }
    }

    /// An enum field with `variants` known values: mostly a known one, sometimes not.
    pub fn enum_i32(&mut self, variants: i32) -> i32 {
        match self.below(10) {
            0 => variants,
            1 => *self.pick(&[-1, i32::MAX, i32::MIN, 100]),
            _ => self.below(variants as usize) as i32,
        }
    }

    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    /// A timestamp: 0, max, near the cluster's clock (often one of a few shared start_ts), random.
    pub fn ts(&mut self) -> u64 {
        let base = self.w.base_ts;
        match self.below(12) {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - 1,
            3 => i64::MAX as u64,
            4 => self.below(100) as u64,
            5 => self.u.arbitrary().unwrap_or(0),
            6 | 7 => base + (self.below(8) as u64) * 1000,
            8 => base.wrapping_sub(self.below(1 << 20) as u64),
            _ => base + self.below(1 << 24) as u64,
        }
    }

    /// Arbitrary short bytes.
    pub fn small_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        self.u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    }

    pub fn string(&mut self) -> String {
        match self.below(8) {
            0 => String::new(),
            1 => "default".into(),
            2 => "\u{0}\u{ffff}".into(),
            3 => "x".repeat(self.below(3000)),
            _ => String::from_utf8_lossy(&self.small_bytes(24)).into_owned(),
        }
    }

    /// A column family name for raw requests.
    pub fn cf(&mut self) -> String {
        self.pick(&["", "", "", "default", "lock", "write", "raft", "nope", "\u{1}"])
            .to_string()
    }

    /// A byte string of `len` bytes that is cheap to build.
    fn filled(&mut self, len: usize) -> Vec<u8> {
        let b: u8 = self.u.arbitrary().unwrap_or(b'k');
        let mut v = vec![b; len];
        if let Some(first) = v.first_mut() {
            *first = b'h';
        }
        v
    }

    /// A key, never a reserved one.
    pub fn key(&mut self) -> Vec<u8> {
        let key = match self.below(20) {
            0 => Vec::new(),
            1..=4 => self.small_bytes(20),
            5..=9 => {
                let i = self.below(POOL_KEYS as usize) as u8;
                let prefix = *self.pick(POOL_PREFIXES);
                [prefix, b"fz/", &[i]].concat()
            }
            10 | 11 => {
                let prefix = *self.pick(KEYSPACE_PREFIXES);
                [prefix, &self.small_bytes(12)].concat()
            }
            12 => self
                .pick(&[
                    b"\0" as &[u8],
                    b"\xff",
                    b"\xff\xff\xff\xff",
                    b"\xff\xfd",
                    b"\0\0\0",
                ])
                .to_vec(),
            13 => {
                // On or next to a region boundary (the boundaries are encoded keys).
                let mut k = self.pick_region().map(|r| r.region.start_key).unwrap_or_default();
                match self.below(3) {
                    0 => k.push(0),
                    1 => {
                        k.pop();
                    }
                    _ => {}
                }
                k
            }
            14 | 15 if !self.huge_used => {
                self.huge_used = true;
                let len = *self.pick(&[4096, 8191, 8192, 8193, 8192 + 64, 1 << 20]);
                self.filled(len)
            }
            _ => [b"fz/" as &[u8], &self.small_bytes(8)].concat(),
        };
        let key = unreserve(key);
        debug_assert!(!reserved(&key));
        key
    }

    /// A key to split a region at: mostly one of the shared keys, so that however long the
    /// fuzzer runs it makes a bounded number of regions (a 2-core machine with thousands of
    /// regions measures load, not input handling).
    pub fn split_key(&mut self) -> Vec<u8> {
        if self.chance(1, 8) {
            return self.key();
        }
        let i = self.below(POOL_KEYS as usize) as u8;
        let prefix = *self.pick(POOL_PREFIXES);
        [prefix, b"fz/", &[i]].concat()
    }

    /// Several keys: empty lists, duplicates, many keys.
    pub fn keys(&mut self) -> Vec<Vec<u8>> {
        let n = match self.below(10) {
            0 => 0,
            1 => 64 + self.below(200),
            _ => 1 + self.below(6),
        };
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
        for _ in 0..n {
            if !keys.is_empty() && self.chance(1, 6) {
                let dup = keys[self.below(keys.len())].clone();
                keys.push(dup);
            } else {
                keys.push(self.key());
            }
        }
        keys
    }

    pub fn value(&mut self) -> Vec<u8> {
        match self.below(12) {
            0 => Vec::new(),
            1 if !self.huge_used => {
                self.huge_used = true;
                let len = *self.pick(&[8192, 64 << 10, 1 << 20]);
                self.filled(len)
            }
            _ => self.small_bytes(40),
        }
    }

    /// A `[start, end)` pair: ordinary, empty bounds, start > end, equal.
    pub fn range(&mut self) -> (Vec<u8>, Vec<u8>) {
        let a = self.key();
        let b = self.key();
        match self.below(6) {
            0 => (a, Vec::new()),
            1 => (Vec::new(), Vec::new()),
            2 => (a.clone(), a),
            3 => (a.clone().max(b.clone()), a.min(b)),
            _ => (a.clone().min(b.clone()), a.max(b)),
        }
    }

    pub fn pick_region(&mut self) -> Option<RegionSnap> {
        if self.regions.is_empty() {
            return None;
        }
        let i = self.below(self.regions.len());
        Some(self.regions[i].clone())
    }

    pub fn epoch(&mut self) -> Option<RegionEpoch> {
        match self.below(6) {
            0 => None,
            1 => Some(RegionEpoch::default()),
            _ => Some(RegionEpoch {
                conf_ver: self.u64(),
                version: self.u64(),
            }),
        }
    }

    pub fn store_id(&mut self) -> u64 {
        let real: Vec<u64> = self.w.stores.keys().copied().collect();
        match self.below(4) {
            0 => self.u64(),
            _ if real.is_empty() => 0,
            _ => *self.pick(&real),
        }
    }

    pub fn peer(&mut self) -> Peer {
        if self.chance(1, 2) {
            if let Some(r) = self.pick_region() {
                if !r.region.peers.is_empty() {
                    let i = self.below(r.region.peers.len());
                    return r.region.peers[i];
                }
            }
        }
        Peer {
            id: self.u64(),
            store_id: self.store_id(),
            role: self.enum_i32(4),
            is_witness: self.chance(1, 8),
        }
    }

    pub fn peers(&mut self) -> Vec<Peer> {
        let n = self.below(5);
        (0..n).map(|_| self.peer()).collect()
    }

    /// A region meta: a real one as it is or mutated, or made up.
    pub fn region_meta(&mut self) -> Region {
        let mut region = match self.pick_region() {
            Some(r) if self.chance(2, 3) => r.region,
            _ => Region {
                id: self.u64(),
                ..Default::default()
            },
        };
        if self.bool() {
            let (s, e) = self.range();
            region.start_key = s;
            region.end_key = e;
        }
        if self.bool() {
            region.region_epoch = self.epoch();
        }
        if self.bool() {
            region.peers = self.peers();
        }
        region.is_in_flashback = self.chance(1, 10);
        region.flashback_start_ts = if self.chance(1, 10) { self.ts() } else { 0 };
        region
    }

    /// A request context and the node to send the request to. `key` picks the region of a
    /// "correct" context: `encoded` says whether its range key is memcomparable-encoded
    /// (transactional keys, raw keys under API V2) or the key itself (raw API V1).
    pub fn context(&mut self, key: &[u8], raw: bool) -> (Option<Context>, usize) {
        let random_node = self.below(self.w.nodes);
        let v2_key = key.starts_with(b"r\0\0\0") || key.starts_with(b"x\0\0\0");
        let api_version = match self.below(10) {
            0 => self.enum_i32(3),
            1 => kvrpcpb::ApiVersion::V1ttl as i32,
            _ if v2_key => kvrpcpb::ApiVersion::V2 as i32,
            _ => kvrpcpb::ApiVersion::V1 as i32,
        };
        let mut ctx = match self.below(20) {
            0 => return (None, random_node),
            1 => return (Some(Context::default()), random_node),
            2 | 3 => Context {
                region_id: self.u64(),
                region_epoch: self.epoch(),
                peer: if self.bool() { Some(self.peer()) } else { None },
                ..Default::default()
            },
            _ => {
                let encoded = !raw || api_version == kvrpcpb::ApiVersion::V2 as i32;
                let range_key = if encoded { memcomparable(key) } else { key.to_vec() };
                let found = World::region_of(&self.regions, &range_key);
                let Some(snap) = found.or_else(|| self.pick_region()) else {
                    return (Some(Context::default()), random_node);
                };
                let leader = snap.leader.or_else(|| snap.region.peers.first().copied());
                let mut ctx = Context {
                    region_id: snap.region.id,
                    region_epoch: snap.region.region_epoch,
                    peer: leader,
                    ..Default::default()
                };
                // Mostly correct; sometimes one thing wrong.
                match self.below(24) {
                    0 => ctx.region_id = self.u64(),
                    1 => ctx.region_epoch = self.epoch(),
                    2 => {
                        if let Some(e) = ctx.region_epoch.as_mut() {
                            e.version = e.version.wrapping_add(1);
                        }
                    }
                    3 => {
                        if let Some(e) = ctx.region_epoch.as_mut() {
                            e.conf_ver = e.conf_ver.wrapping_sub(1);
                        }
                    }
                    4 => ctx.peer = Some(self.peer()),
                    5 => ctx.peer = None,
                    6 => {
                        // A follower.
                        let i = self.below(snap.region.peers.len().max(1));
                        ctx.peer = snap.region.peers.get(i).copied();
                    }
                    _ => {}
                }
                let node = ctx
                    .peer
                    .and_then(|p| self.w.store_node.get(&p.store_id).copied())
                    .filter(|_| !self.chance(1, 10))
                    .unwrap_or(random_node);
                ctx.api_version = api_version;
                return (Some(self.context_options(ctx)), node);
            }
        };
        ctx.api_version = api_version;
        (Some(self.context_options(ctx)), random_node)
    }

    /// The rest of a context: mostly defaults, now and then odd values.
    fn context_options(&mut self, mut ctx: Context) -> Context {
        if !self.chance(1, 4) {
            return ctx;
        }
        ctx.term = self.u64();
        ctx.priority = self.enum_i32(3);
        ctx.isolation_level = self.enum_i32(3);
        ctx.not_fill_cache = self.bool();
        ctx.sync_log = self.bool();
        ctx.replica_read = self.chance(1, 4);
        ctx.stale_read = self.chance(1, 4);
        ctx.resolved_locks = (0..self.below(4)).map(|_| self.ts()).collect();
        ctx.committed_locks = (0..self.below(4)).map(|_| self.ts()).collect();
        ctx.max_execution_duration_ms = self.u64();
        ctx.applied_index = self.u64();
        ctx.task_id = self.u64();
        ctx.resource_group_tag = self.small_bytes(16);
        ctx.disk_full_opt = self.enum_i32(3);
        ctx.is_retry_request = self.bool();
        ctx.request_source = self.string();
        ctx.txn_source = self.u64();
        ctx.busy_threshold_ms = self.u32();
        ctx.keyspace_id = self.u32();
        ctx.buckets_version = self.u64();
        if self.bool() {
            ctx.resource_control_context = Some(kvrpcpb::ResourceControlContext {
                resource_group_name: self.string(),
                override_priority: self.u64(),
            });
        }
        if self.bool() {
            ctx.source_stmt = Some(kvrpcpb::SourceStmt {
                start_ts: self.ts(),
                connection_id: self.u64(),
                stmt_id: self.u64(),
                session_alias: self.string(),
            });
        }
        ctx
    }
}
