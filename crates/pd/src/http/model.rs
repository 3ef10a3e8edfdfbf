//! JSON shapes of PD's HTTP API (field names and omit-if-empty rules of PD's Go structs).

use std::time::{Duration, SystemTime};

use atoll_proto::{metapb, pdpb};
use serde::Serialize;

use super::format::{byte_size, go_float, hex_upper, rfc3339};
use crate::cluster::StoreRegionStats;
use crate::duration::ReadableDuration;
use crate::region_info::RegionInfo;
use crate::store_info::StoreInfo;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `pdpb.Member` as Go's encoding/json renders it.
#[derive(Debug, Serialize)]
pub struct MemberJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub member_id: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_urls: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub leader_priority: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deploy_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_hash: String,
}

impl From<&pdpb::Member> for MemberJson {
    fn from(m: &pdpb::Member) -> Self {
        MemberJson {
            name: m.name.clone(),
            member_id: m.member_id,
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            leader_priority: m.leader_priority,
            deploy_path: m.deploy_path.clone(),
            binary_version: m.binary_version.clone(),
            git_hash: m.git_hash.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HeaderJson {
    pub cluster_id: u64,
}

/// `GET /pd/api/v1/members`: a `pdpb.GetMembersResponse`.
#[derive(Debug, Serialize)]
pub struct MembersJson {
    pub header: HeaderJson,
    pub members: Vec<MemberJson>,
    pub leader: MemberJson,
    pub etcd_leader: MemberJson,
}

/// One entry of `GET /pd/api/v1/health`.
#[derive(Debug, Serialize)]
pub struct HealthJson {
    pub name: String,
    pub member_id: u64,
    pub client_urls: Vec<String>,
    pub health: bool,
}

#[derive(Debug, Serialize)]
pub struct LabelJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `metapb.Store` plus `state_name`.
#[derive(Debug, Serialize)]
pub struct MetaStoreJson {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub state: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelJson>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub git_hash: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub start_timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deploy_path: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub last_heartbeat: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub physically_destroyed: bool,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub node_state: i32,
    pub state_name: &'static str,
}

/// PD's `StoreStatus`.
#[derive(Debug, Serialize)]
pub struct StoreStatusJson {
    pub capacity: String,
    pub available: String,
    pub used_size: String,
    pub leader_count: usize,
    #[serde(serialize_with = "go_float")]
    pub leader_weight: f64,
    #[serde(serialize_with = "go_float")]
    pub leader_score: f64,
    pub leader_size: i64,
    pub region_count: usize,
    #[serde(serialize_with = "go_float")]
    pub region_weight: f64,
    #[serde(serialize_with = "go_float")]
    pub region_score: f64,
    pub region_size: i64,
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub learner_count: usize,
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub pending_peer_count: usize,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub slow_score: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub sending_snap_count: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub receiving_snap_count: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub is_busy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<String>,
}

/// One store of `GET /pd/api/v1/stores` and `GET /pd/api/v1/store/{id}`.
#[derive(Debug, Serialize)]
pub struct StoreJson {
    pub store: MetaStoreJson,
    pub status: StoreStatusJson,
}

/// `GET /pd/api/v1/stores`.
#[derive(Debug, Serialize)]
pub struct StoresJson {
    pub count: usize,
    pub stores: Vec<StoreJson>,
}

impl StoreJson {
    /// `leader_by_size`: `leader-schedule-policy = "size"`; `low_space_ratio` feeds the region
    /// score (PD's formula, see [`crate::schedule::score`]).
    pub fn build(
        s: &StoreInfo,
        rs: StoreRegionStats,
        now: SystemTime,
        max_down: Duration,
        leader_by_size: bool,
        low_space_ratio: f64,
    ) -> StoreJson {
        let m = &s.meta;
        let stats = s.stats.clone().unwrap_or_default();
        let (leader_weight, region_weight) = (s.weight.leader, s.weight.region);
        let leader_base = if leader_by_size {
            rs.leader_size as f64
        } else {
            rs.leader_count as f64
        };
        let leader_score = crate::schedule::score::leader_score(leader_base, leader_weight, 0.0);
        let region_score = crate::schedule::score::region_score(
            rs.region_size as f64,
            stats.capacity,
            stats.available,
            low_space_ratio,
            region_weight,
            0.0,
        );
        let used = if stats.used_size > 0 {
            stats.used_size
        } else {
            stats.capacity.saturating_sub(stats.available)
        };
        StoreJson {
            store: MetaStoreJson {
                id: m.id,
                address: m.address.clone(),
                state: m.state,
                labels: m
                    .labels
                    .iter()
                    .map(|l| LabelJson {
                        key: l.key.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                version: m.version.clone(),
                peer_address: m.peer_address.clone(),
                status_address: m.status_address.clone(),
                git_hash: m.git_hash.clone(),
                start_timestamp: m.start_timestamp,
                deploy_path: m.deploy_path.clone(),
                last_heartbeat: m.last_heartbeat,
                physically_destroyed: m.physically_destroyed,
                node_state: m.node_state,
                state_name: s.state_name(now, max_down).as_str(),
            },
            status: StoreStatusJson {
                capacity: byte_size(stats.capacity),
                available: byte_size(stats.available),
                used_size: byte_size(used),
                leader_count: rs.leader_count,
                leader_weight,
                leader_score,
                leader_size: rs.leader_size,
                region_count: rs.region_count,
                region_weight,
                region_score,
                region_size: rs.region_size,
                learner_count: rs.learner_count,
                pending_peer_count: rs.pending_peer_count,
                slow_score: stats.slow_score,
                sending_snap_count: stats.sending_snap_count,
                receiving_snap_count: stats.receiving_snap_count,
                is_busy: stats.is_busy,
                start_ts: (s.stats.is_some() && stats.start_time > 0).then(|| {
                    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(stats.start_time)))
                }),
                last_heartbeat_ts: s.last_heartbeat().map(rfc3339),
                uptime: s
                    .uptime()
                    .filter(|u| !u.is_zero())
                    .map(|u| ReadableDuration(u).to_string()),
            },
        }
    }
}

/// `metapb.Peer` plus `role_name` / `is_learner` (PD's `MetaPeer`).
#[derive(Debug, Serialize, Default)]
pub struct PeerJson {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub id: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub store_id: u64,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub role: i32,
    #[serde(skip_serializing_if = "is_false")]
    pub is_witness: bool,
    pub role_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub is_learner: bool,
}

impl From<&metapb::Peer> for PeerJson {
    fn from(p: &metapb::Peer) -> Self {
        let role = metapb::PeerRole::try_from(p.role).unwrap_or(metapb::PeerRole::Voter);
        PeerJson {
            id: p.id,
            store_id: p.store_id,
            role: p.role,
            is_witness: p.is_witness,
            role_name: format!("{role:?}"),
            is_learner: role == metapb::PeerRole::Learner,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EpochJson {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub conf_ver: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub version: u64,
}

#[derive(Debug, Serialize)]
pub struct DownPeerJson {
    pub peer: PeerJson,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub down_seconds: u64,
}

/// PD's `RegionInfo` JSON.
#[derive(Debug, Serialize)]
pub struct RegionJson {
    pub id: u64,
    pub start_key: String,
    pub end_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerJson>,
    pub leader: PeerJson,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub down_peers: Vec<DownPeerJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_peers: Vec<PeerJson>,
    pub cpu_usage: u64,
    pub written_bytes: u64,
    pub read_bytes: u64,
    pub written_keys: u64,
    pub read_keys: u64,
    pub approximate_size: i64,
    pub approximate_keys: i64,
    pub approximate_kv_size: i64,
    pub approximate_columnar_kv_size: i64,
}

impl From<&RegionInfo> for RegionJson {
    fn from(r: &RegionInfo) -> Self {
        RegionJson {
            id: r.id(),
            start_key: hex_upper(r.start_key()),
            end_key: hex_upper(r.end_key()),
            epoch: r.meta.region_epoch.map(|e| EpochJson {
                conf_ver: e.conf_ver,
                version: e.version,
            }),
            peers: r.meta.peers.iter().map(PeerJson::from).collect(),
            leader: r.leader.as_ref().map(PeerJson::from).unwrap_or_default(),
            down_peers: r
                .down_peers
                .iter()
                .map(|d| DownPeerJson {
                    peer: d.peer.as_ref().map(PeerJson::from).unwrap_or_default(),
                    down_seconds: d.down_seconds,
                })
                .collect(),
            pending_peers: r.pending_peers.iter().map(PeerJson::from).collect(),
            cpu_usage: r.cpu_usage,
            written_bytes: r.written_bytes,
            read_bytes: r.read_bytes,
            written_keys: r.written_keys,
            read_keys: r.read_keys,
            approximate_size: r.approximate_size,
            approximate_keys: r.approximate_keys,
            approximate_kv_size: r.approximate_kv_size,
            approximate_columnar_kv_size: 0,
        }
    }
}

/// `GET /pd/api/v1/regions`.
#[derive(Debug, Serialize)]
pub struct RegionsJson {
    pub count: usize,
    pub regions: Vec<RegionJson>,
}

/// `GET /pd/api/v1/cluster`: `metapb.Cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterJson {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub id: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub max_peer_count: u32,
}

/// `GET /pd/api/v1/version`.
#[derive(Debug, Serialize)]
pub struct VersionJson {
    pub version: String,
}

/// `GET /pd/api/v1/gc/safepoint`.
#[derive(Debug, Serialize)]
pub struct GcSafePointJson {
    pub service_gc_safe_points: Vec<crate::storage::ServiceSafePoint>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub min_service_gc_safe_point: u64,
    pub gc_safe_point: u64,
}

/// `POST /pd/api/v1/gc/safepoint` (Atoll's own).
#[derive(Debug, Serialize)]
pub struct GcAdvanceJson {
    /// Whether the GC safe point moved.
    pub advanced: bool,
    /// The target: the given safe point, or `now - retention`.
    pub requested_safe_point: u64,
    pub previous_gc_safe_point: u64,
    pub gc_safe_point: u64,
    /// The service safe point that held the target back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<crate::storage::ServiceSafePoint>,
}
