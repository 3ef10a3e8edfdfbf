//! `GET /dashboard/api/regions` (filtered, sorted, paged) and `GET /dashboard/api/regions/{id}`.
//!
//! Query parameters (all optional; anything else is refused with 400):
//! * `sort` = `start_key` (default) | `id` | `size` | `keys` | `written_bytes` | `read_bytes` |
//!   `written_keys` | `read_keys` (the rates of the last report) | `leader_store` | `version`,
//!   `order` = `asc` | `desc`;
//! * `store=<id>` (a peer there), `leader_store=<id>`;
//! * `keyspace=<id>` (0 ..= 16777215) and/or `mode=raw|txn`: regions overlapping that part of
//!   the API V2 key space;
//! * `key=<key>` (text, or `0x` + hex): the region holding that decoded key — with `keyspace`
//!   (and `mode`, else either mode), the key is taken inside that keyspace;
//! * `limit` (1 ..= 10000, default 500) and `offset` (default 0).

use serde::Serialize;

use super::keys::{self, describe, keyspace_prefix, KeyJson, Mode, Side, MAX_KEYSPACE_ID};
use crate::context::PdContext;
use crate::region_info::RegionInfo;

pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    StartKey,
    Id,
    Size,
    Keys,
    WrittenBytes,
    ReadBytes,
    WrittenKeys,
    ReadKeys,
    LeaderStore,
    Version,
}

impl SortBy {
    fn parse(s: &str) -> Option<SortBy> {
        Some(match s {
            "start_key" => SortBy::StartKey,
            "id" => SortBy::Id,
            "size" => SortBy::Size,
            "keys" => SortBy::Keys,
            "written_bytes" => SortBy::WrittenBytes,
            "read_bytes" => SortBy::ReadBytes,
            "written_keys" => SortBy::WrittenKeys,
            "read_keys" => SortBy::ReadKeys,
            "leader_store" => SortBy::LeaderStore,
            "version" => SortBy::Version,
            _ => return None,
        })
    }

    fn key(self, r: &RegionInfo) -> u64 {
        match self {
            SortBy::StartKey | SortBy::Id => r.id(),
            SortBy::Size => r.approximate_size.max(0) as u64,
            SortBy::Keys => r.approximate_keys.max(0) as u64,
            // Rates (per 1000 s, to stay integral) of the last report.
            SortBy::WrittenBytes => per_ks(r.written_bytes, r.interval_secs),
            SortBy::ReadBytes => per_ks(r.read_bytes, r.interval_secs),
            SortBy::WrittenKeys => per_ks(r.written_keys, r.interval_secs),
            SortBy::ReadKeys => per_ks(r.read_keys, r.interval_secs),
            SortBy::LeaderStore => r.leader.map_or(0, |l| l.store_id),
            SortBy::Version => r.epoch().version,
        }
    }
}

fn per_ks(v: u64, secs: u64) -> u64 {
    v.saturating_mul(1000).checked_div(secs).unwrap_or(0)
}

/// A parsed regions query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionQuery {
    sort: SortBy,
    desc: bool,
    store: Option<u64>,
    leader_store: Option<u64>,
    keyspace: Option<u32>,
    mode: Option<Mode>,
    key: Option<Vec<u8>>,
    pub limit: usize,
    pub offset: usize,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("invalid {name} {v:?}: not a non-negative integer"))
}

impl RegionQuery {
    pub fn parse(params: &[(String, String)]) -> Result<RegionQuery, String> {
        let mut q = RegionQuery {
            sort: SortBy::StartKey,
            desc: false,
            store: None,
            leader_store: None,
            keyspace: None,
            mode: None,
            key: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
        };
        for (name, v) in params {
            match name.as_str() {
                "sort" => {
                    q.sort = SortBy::parse(v).ok_or_else(|| {
                        format!("unknown sort {v:?} (start_key, id, size, keys, written_bytes, read_bytes, written_keys, read_keys, leader_store, version)")
                    })?
                }
                "order" => {
                    q.desc = match v.as_str() {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(format!("invalid order {v:?} (asc or desc)")),
                    }
                }
                "store" => q.store = Some(number(name, v)?),
                "leader_store" => q.leader_store = Some(number(name, v)?),
                "keyspace" => {
                    let id: u32 = number(name, v)?;
                    if id > MAX_KEYSPACE_ID {
                        return Err(format!("invalid keyspace {id}: at most {MAX_KEYSPACE_ID}"));
                    }
                    q.keyspace = Some(id);
                }
                "mode" => {
                    q.mode =
                        Some(Mode::parse(v).ok_or_else(|| format!("invalid mode {v:?} (raw or txn)"))?)
                }
                "key" => q.key = Some(keys::parse_key(v)?),
                "limit" => {
                    let n: usize = number(name, v)?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(format!("invalid limit {n}: 1 to {MAX_LIMIT}"));
                    }
                    q.limit = n;
                }
                "offset" => q.offset = number(name, v)?,
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        Ok(q)
    }

    /// The decoded-key ranges the region must overlap (all must), each `[start, end)` with
    /// an empty end meaning +∞; `None` if no key-space filter.
    fn key_ranges(&self) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let modes: Vec<Mode> = match self.mode {
            Some(m) => vec![m],
            None => vec![Mode::Raw, Mode::Txn],
        };
        let mut filters = Vec::new();
        if self.keyspace.is_some() || self.mode.is_some() {
            let alternatives = modes
                .iter()
                .map(|m| match self.keyspace {
                    Some(id) => (keyspace_prefix(*m, id), next_prefix(&keyspace_prefix(*m, id))),
                    None => (keyspace_prefix(*m, 0), vec![m.prefix() + 1]),
                })
                .collect();
            filters.push(alternatives);
        }
        if let Some(key) = &self.key {
            let points: Vec<Vec<u8>> = match self.keyspace {
                Some(id) => modes
                    .iter()
                    .map(|m| [keyspace_prefix(*m, id), key.clone()].concat())
                    .collect(),
                None => vec![key.clone()],
            };
            filters.push(
                points
                    .into_iter()
                    .map(|p| {
                        let mut next = p.clone();
                        next.push(0);
                        (p, next)
                    })
                    .collect(),
            );
        }
        filters
    }
}

/// The smallest key above every key with `prefix` (empty if none: all 0xff).
fn next_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return p;
        }
    }
    Vec::new()
}

/// Whether `[s1, e1)` and `[s2, e2)` (empty end = +∞) intersect.
fn overlaps(s1: &[u8], e1: &[u8], s2: &[u8], e2: &[u8]) -> bool {
    (e2.is_empty() || s1 < e2) && (e1.is_empty() || s2 < e1)
}

#[derive(Debug, Serialize)]
pub struct PeerRowJson {
    pub id: u64,
    pub store_id: u64,
    pub role: String,
    pub is_leader: bool,
    pub is_down: bool,
    pub is_pending: bool,
}

#[derive(Debug, Serialize)]
pub struct LeaderJson {
    pub id: u64,
    pub store_id: u64,
}

#[derive(Debug, Serialize)]
pub struct EpochRowJson {
    pub conf_ver: u64,
    pub version: u64,
}

/// One region row.
#[derive(Debug, Serialize)]
pub struct RegionRowJson {
    pub id: u64,
    pub start_key: KeyJson,
    pub end_key: KeyJson,
    pub epoch: EpochRowJson,
    pub peers: Vec<PeerRowJson>,
    pub leader: Option<LeaderJson>,
    /// MiB.
    pub approximate_size: i64,
    pub approximate_keys: i64,
    pub written_bytes_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub written_keys_per_sec: f64,
    pub read_keys_per_sec: f64,
    /// The seconds the last report's load was counted over (0: unknown, rates are 0).
    pub interval_secs: u64,
}

fn rate(v: u64, secs: u64) -> f64 {
    if secs == 0 {
        0.0
    } else {
        (v as f64 / secs as f64 * 100.0).round() / 100.0
    }
}

impl From<&RegionInfo> for RegionRowJson {
    fn from(r: &RegionInfo) -> Self {
        let leader_id = r.leader.map(|l| l.id);
        let epoch = r.epoch();
        RegionRowJson {
            id: r.id(),
            start_key: describe(r.start_key(), Side::Start),
            end_key: describe(r.end_key(), Side::End),
            epoch: EpochRowJson {
                conf_ver: epoch.conf_ver,
                version: epoch.version,
            },
            peers: r
                .meta
                .peers
                .iter()
                .map(|p| {
                    let role = atoll_proto::metapb::PeerRole::try_from(p.role)
                        .map_or_else(|_| format!("Unknown({})", p.role), |r| format!("{r:?}"));
                    PeerRowJson {
                        id: p.id,
                        store_id: p.store_id,
                        role,
                        is_leader: Some(p.id) == leader_id,
                        is_down: r.down_peers.iter().any(|d| d.peer.is_some_and(|x| x.id == p.id)),
                        is_pending: r.pending_peers.iter().any(|x| x.id == p.id),
                    }
                })
                .collect(),
            leader: r.leader.map(|l| LeaderJson {
                id: l.id,
                store_id: l.store_id,
            }),
            approximate_size: r.approximate_size,
            approximate_keys: r.approximate_keys,
            written_bytes_per_sec: rate(r.written_bytes, r.interval_secs),
            read_bytes_per_sec: rate(r.read_bytes, r.interval_secs),
            written_keys_per_sec: rate(r.written_keys, r.interval_secs),
            read_keys_per_sec: rate(r.read_keys, r.interval_secs),
            interval_secs: r.interval_secs,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RegionListJson {
    /// Regions in the cluster.
    pub total: usize,
    /// Regions matching the filters.
    pub matched: usize,
    pub offset: usize,
    pub limit: usize,
    pub regions: Vec<RegionRowJson>,
}

/// Filters, sorts and pages `ctx`'s regions.
pub fn list(ctx: &PdContext, q: &RegionQuery) -> RegionListJson {
    let all = ctx.cluster.regions();
    let total = all.len();
    let filters = q.key_ranges();
    let mut matched: Vec<&RegionInfo> = all
        .iter()
        .filter(|r| q.store.is_none_or(|s| r.peer_on_store(s).is_some()))
        .filter(|r| {
            q.leader_store
                .is_none_or(|s| r.leader.is_some_and(|l| l.store_id == s))
        })
        .filter(|r| {
            if filters.is_empty() {
                return true;
            }
            let start = keys::decoded(r.start_key()).0;
            let end = if r.end_key().is_empty() {
                Vec::new()
            } else {
                keys::decoded(r.end_key()).0
            };
            filters
                .iter()
                .all(|alts| alts.iter().any(|(s, e)| overlaps(&start, &end, s, e)))
        })
        .collect();
    // `all` is in key order; a stable sort keeps it for ties.
    match q.sort {
        SortBy::StartKey => {}
        by => matched.sort_by_key(|r| by.key(r)),
    }
    if q.desc {
        matched.reverse();
    }
    let rows = matched
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|r| RegionRowJson::from(*r))
        .collect();
    RegionListJson {
        total,
        matched: matched.len(),
        offset: q.offset,
        limit: q.limit,
        regions: rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<RegionQuery, String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        RegionQuery::parse(&v)
    }

    #[test]
    fn queries_parse_or_explain() {
        let ok = q(&[
            ("sort", "size"),
            ("order", "desc"),
            ("limit", "10"),
            ("store", "4"),
        ])
        .unwrap();
        assert!(ok.desc);
        assert_eq!(ok.limit, 10);
        assert_eq!(ok.store, Some(4));
        for (bad, why) in [
            (("sort", "colour"), "unknown sort"),
            (("order", "up"), "invalid order"),
            (("store", "x"), "invalid store"),
            (("keyspace", "16777216"), "at most"),
            (("mode", "v"), "invalid mode"),
            (("key", "0xabc"), "even number"),
            (("limit", "0"), "invalid limit"),
            (("limit", "10001"), "invalid limit"),
            (("offset", "-1"), "invalid offset"),
            (("colour", "red"), "unknown query parameter"),
        ] {
            let err = q(&[bad]).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn key_space_filters() {
        let f = q(&[("keyspace", "1"), ("mode", "raw")]).unwrap().key_ranges();
        assert_eq!(f, vec![vec![(b"r\0\0\x01".to_vec(), b"r\0\0\x02".to_vec())]]);
        let f = q(&[("mode", "txn")]).unwrap().key_ranges();
        assert_eq!(f, vec![vec![(b"x\0\0\0".to_vec(), b"y".to_vec())]]);
        let f = q(&[("keyspace", "0"), ("key", "k")]).unwrap().key_ranges();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1][0], (b"r\0\0\0k".to_vec(), b"r\0\0\0k\0".to_vec()));
        assert_eq!(f[1][1].0, b"x\0\0\0k".to_vec());
        assert_eq!(next_prefix(b"r\xff\xff\xff"), b"s".to_vec());
        assert_eq!(next_prefix(b"\xff"), Vec::<u8>::new());
        assert!(overlaps(b"a", b"", b"z", b""));
        assert!(!overlaps(b"a", b"b", b"b", b"c"));
    }
}
