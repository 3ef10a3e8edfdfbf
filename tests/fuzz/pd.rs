//! Generated requests for every `pdpb.PD` RPC and every `keyspacepb.Keyspace` RPC PD serves.
//!
//! PD trusts what its nodes report (region heartbeats, split reports, store registrations, GC
//! safe points): a client with the right cluster id that reports a forged region with a newer
//! epoch, moves a store's address or sets the GC safe point to the end of time is a node gone
//! Byzantine, and real PD follows it too. So under the right cluster id these requests carry
//! forged content PD must refuse or take as harmless: regions with epoch version 0 (older than
//! every real region, so stale), store registrations that are invalid, duplicate an address, or
//! keep a real store's addresses, GC safe points not beyond the start of the fuzzing, cluster
//! metas of another cluster. Under a wrong or missing cluster id anything goes.

use atoll_proto::keyspacepb::{self, keyspace_client::KeyspaceClient};
use atoll_proto::metapb;
use atoll_proto::pdpb::{self, pd_client::PdClient, RequestHeader};
use tonic::transport::Channel;

use super::{excerpt, Outcome, CALL_TIMEOUT, G};

/// `(name, weight)` of every RPC of `pdpb.PD` and `keyspacepb.Keyspace`.
pub const RPCS: &[(&str, u32)] = &[
    ("GetMembers", 2),
    ("Tso", 3),
    ("Bootstrap", 2),
    ("IsBootstrapped", 2),
    ("AllocID", 2),
    ("GetStore", 2),
    ("PutStore", 3),
    ("GetAllStores", 2),
    ("StoreHeartbeat", 3),
    ("RegionHeartbeat", 4),
    ("GetRegion", 3),
    ("GetPrevRegion", 3),
    ("GetRegionByID", 3),
    ("ScanRegions", 3),
    ("AskSplit", 2),
    ("ReportSplit", 3),
    ("AskBatchSplit", 2),
    ("ReportBatchSplit", 3),
    ("GetClusterConfig", 2),
    ("PutClusterConfig", 2),
    ("GetGCSafePoint", 2),
    ("UpdateGCSafePoint", 2),
    ("UpdateServiceGCSafePoint", 2),
    ("GetOperator", 2),
    ("GetMinTS", 2),
    ("ScatterRegion", 2),
    ("SplitRegions", 1),
    ("SplitAndScatterRegions", 1),
    ("LoadKeyspace", 2),
    ("WatchKeyspaces", 1),
    ("GetAllKeyspaces", 2),
];

/// A request header and whether it carries the real cluster id.
fn header(g: &mut G<'_>) -> (Option<RequestHeader>, bool) {
    let cid = g.w.cluster_id;
    match g.below(10) {
        0 => (None, false),
        1 => (
            Some(RequestHeader {
                cluster_id: 0,
                sender_id: 0,
            }),
            false,
        ),
        2 => {
            let wrong = match g.below(3) {
                0 => cid.wrapping_add(1),
                1 => u64::MAX,
                _ => g.u64(),
            };
            let wrong = if wrong == cid { cid ^ 1 } else { wrong };
            (
                Some(RequestHeader {
                    cluster_id: wrong,
                    sender_id: g.u64(),
                }),
                false,
            )
        }
        _ => (
            Some(RequestHeader {
                cluster_id: cid,
                sender_id: if g.bool() { 0 } else { g.u64() },
            }),
            true,
        ),
    }
}

/// A region meta; under the real cluster id its epoch version is 0 (stale against every
/// region PD knows).
fn region(g: &mut G<'_>, real: bool) -> metapb::Region {
    let mut r = g.region_meta();
    if g.chance(1, 6) {
        // Starting exactly where a real region starts, with an empty or inverted range.
        if let Some(snap) = g.pick_region() {
            r.end_key = if g.bool() {
                snap.region.start_key.clone()
            } else {
                b"\x01".to_vec()
            };
            r.start_key = snap.region.start_key;
        }
    }
    if real {
        let conf_ver = r.region_epoch.map_or(0, |e| e.conf_ver);
        r.region_epoch = Some(metapb::RegionEpoch { conf_ver, version: 0 });
    }
    r
}

fn float(g: &mut G<'_>) -> f64 {
    *g.pick(&[
        0.0,
        -1.0,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        1e-300,
    ])
}

fn query_stats(g: &mut G<'_>) -> Option<pdpb::QueryStats> {
    if g.bool() {
        return None;
    }
    Some(pdpb::QueryStats {
        gc: g.u64(),
        get: g.u64(),
        scan: g.u64(),
        coprocessor: g.u64(),
        delete: g.u64(),
        delete_range: g.u64(),
        put: g.u64(),
        prewrite: g.u64(),
        acquire_pessimistic_lock: g.u64(),
        commit: g.u64(),
        rollback: g.u64(),
    })
}

fn interval(g: &mut G<'_>) -> Option<pdpb::TimeInterval> {
    g.bool().then(|| pdpb::TimeInterval {
        start_timestamp: g.u64(),
        end_timestamp: g.u64(),
    })
}

fn record_pairs(g: &mut G<'_>) -> Vec<pdpb::RecordPair> {
    (0..g.below(3))
        .map(|_| pdpb::RecordPair {
            key: g.string(),
            value: g.u64(),
        })
        .collect()
}

fn store_stats(g: &mut G<'_>) -> pdpb::StoreStats {
    let regions: Vec<u64> = g.regions.iter().map(|r| r.region.id).collect();
    pdpb::StoreStats {
        store_id: g.store_id(),
        capacity: g.u64(),
        available: g.u64(),
        region_count: g.u32(),
        sending_snap_count: g.u32(),
        receiving_snap_count: g.u32(),
        start_time: g.u32(),
        applying_snap_count: g.u32(),
        is_busy: g.bool(),
        used_size: g.u64(),
        bytes_written: g.u64(),
        keys_written: g.u64(),
        bytes_read: g.u64(),
        keys_read: g.u64(),
        interval: interval(g),
        cpu_usages: record_pairs(g),
        read_io_rates: record_pairs(g),
        write_io_rates: record_pairs(g),
        op_latencies: record_pairs(g),
        peer_stats: (0..g.below(4))
            .map(|_| pdpb::PeerStat {
                region_id: if g.bool() && !regions.is_empty() {
                    *g.pick(&regions)
                } else {
                    g.u64()
                },
                read_keys: g.u64(),
                read_bytes: g.u64(),
                query_stats: query_stats(g),
                written_keys: g.u64(),
                written_bytes: g.u64(),
            })
            .collect(),
        query_stats: query_stats(g),
        slow_score: g.u64(),
        damaged_regions_id: (0..g.below(3)).map(|_| g.u64()).collect(),
        is_apply_busy: g.bool(),
        snapshot_stats: (0..g.below(3))
            .map(|_| pdpb::SnapshotStat {
                region_id: g.u64(),
                generate_duration_sec: g.u64(),
                send_duration_sec: g.u64(),
                total_duration_sec: g.u64(),
                transport_size: g.u64(),
            })
            .collect(),
        slow_trend: g.bool().then(|| pdpb::SlowTrend {
            cause_value: float(g),
            cause_rate: float(g),
            result_value: float(g),
            result_rate: float(g),
        }),
        is_grpc_paused: g.chance(1, 10),
        total_memory: g.u64(),
        used_memory: g.u64(),
    }
}

/// A store for PutStore / Bootstrap. Under the real cluster id: an invalid id, a new id with a
/// real store's address (refused as a duplicate), or a real store with its own addresses.
fn store(g: &mut G<'_>, real: bool) -> metapb::Store {
    let labels = (0..g.below(3))
        .map(|_| metapb::StoreLabel {
            key: g.string(),
            value: g.string(),
        })
        .collect();
    let mut s = metapb::Store {
        id: g.u64(),
        address: g.string(),
        state: g.enum_i32(3),
        labels,
        version: g
            .pick(&["", "8.5.0", "not-a-version", "99999999999999999999.0.0", "1.2"])
            .to_string(),
        peer_address: g.string(),
        status_address: g.string(),
        git_hash: g.string(),
        start_timestamp: g.i64(),
        deploy_path: g.string(),
        last_heartbeat: g.i64(),
        physically_destroyed: g.chance(1, 10),
        node_state: g.enum_i32(4),
    };
    if real {
        let reals: Vec<metapb::Store> = g.w.stores.values().cloned().collect();
        let existing = g.pick(&reals).clone();
        match g.below(3) {
            0 => s.id = 0,
            1 => {
                if g.w.stores.contains_key(&s.id) || s.id == 0 {
                    s.id = 1 << 40;
                }
                s.address = existing.address;
            }
            _ => {
                s.id = existing.id;
                s.address = existing.address;
                s.peer_address = existing.peer_address;
                s.status_address = existing.status_address;
            }
        }
    }
    s
}

fn pd_err(h: &Option<pdpb::ResponseHeader>) -> bool {
    h.as_ref()
        .is_some_and(|h| h.error.as_ref().is_some_and(|e| e.r#type != 0))
}

/// Sends one generated PD or keyspace request.
pub async fn call(
    g: &mut G<'_>,
    rpc: usize,
    pd: &PdClient<Channel>,
    ks: &KeyspaceClient<Channel>,
) -> (Outcome, Option<String>) {
    macro_rules! send {
        ($client:expr, $method:ident, $req:expr) => {{
            let req = $req;
            let shown = req.clone();
            let mut client = $client.clone();
            let outcome = super::finish(client.$method(req), |r| pd_err(&r.header).then_some("other")).await;
            let detail = match &outcome {
                Outcome::Ok | Outcome::Error(_) => None,
                Outcome::Status(code, msg) if !super::transport_failure(*code, msg) => None,
                _ => Some(excerpt(format!("{:?}", shown), 2000)),
            };
            (outcome, detail)
        }};
    }
    let (header, real) = header(g);
    match RPCS[rpc].0 {
        "GetMembers" => send!(pd, get_members, pdpb::GetMembersRequest { header }),
        "Tso" => {
            let reqs: Vec<pdpb::TsoRequest> = (0..1 + g.below(3))
                .map(|_| pdpb::TsoRequest {
                    header,
                    count: match g.below(4) {
                        0 => 0,
                        1 if !real => u32::MAX,
                        1 => 1 << 16,
                        _ => 1 + g.below(100) as u32,
                    },
                    dc_location: if g.chance(1, 4) { g.string() } else { String::new() },
                })
                .collect();
            stream_call(
                reqs,
                |mut c, s| async move { c.tso(s).await },
                pd.clone(),
                |r: &pdpb::TsoResponse| pd_err(&r.header),
            )
            .await
        }
        "Bootstrap" => {
            let store = g.bool().then(|| store(g, real));
            let region = g.bool().then(|| region(g, real));
            send!(
                pd,
                bootstrap,
                pdpb::BootstrapRequest {
                    header,
                    store,
                    region
                }
            )
        }
        "IsBootstrapped" => send!(pd, is_bootstrapped, pdpb::IsBootstrappedRequest { header }),
        "AllocID" => send!(pd, alloc_id, pdpb::AllocIdRequest { header }),
        "GetStore" => {
            let store_id = g.store_id();
            send!(pd, get_store, pdpb::GetStoreRequest { header, store_id })
        }
        "PutStore" => {
            let store = (!g.chance(1, 10)).then(|| store(g, real));
            send!(pd, put_store, pdpb::PutStoreRequest { header, store })
        }
        "GetAllStores" => {
            let exclude_tombstone_stores = g.bool();
            send!(
                pd,
                get_all_stores,
                pdpb::GetAllStoresRequest {
                    header,
                    exclude_tombstone_stores
                }
            )
        }
        "StoreHeartbeat" => {
            let stats = (!g.chance(1, 10)).then(|| store_stats(g));
            send!(pd, store_heartbeat, pdpb::StoreHeartbeatRequest { header, stats })
        }
        "RegionHeartbeat" => {
            let reqs: Vec<pdpb::RegionHeartbeatRequest> = (0..1 + g.below(3))
                .map(|_| {
                    let region = (!g.chance(1, 10)).then(|| region(g, real));
                    let leader = match (g.below(4), region.as_ref()) {
                        (0, _) => None,
                        (1, _) | (_, None) => Some(g.peer()),
                        (_, Some(r)) => r.peers.first().copied().or_else(|| Some(g.peer())),
                    };
                    pdpb::RegionHeartbeatRequest {
                        header,
                        region,
                        leader,
                        down_peers: (0..g.below(3))
                            .map(|_| pdpb::PeerStats {
                                peer: g.bool().then(|| g.peer()),
                                down_seconds: g.u64(),
                            })
                            .collect(),
                        pending_peers: g.peers(),
                        bytes_written: g.u64(),
                        bytes_read: g.u64(),
                        keys_written: g.u64(),
                        keys_read: g.u64(),
                        approximate_size: g.u64(),
                        interval: interval(g),
                        approximate_keys: g.u64(),
                        term: g.u64(),
                        query_stats: query_stats(g),
                        cpu_usage: g.u64(),
                        approximate_kv_size: g.u64(),
                    }
                })
                .collect();
            stream_call(
                reqs,
                |mut c, s| async move { c.region_heartbeat(s).await },
                pd.clone(),
                |r: &pdpb::RegionHeartbeatResponse| pd_err(&r.header),
            )
            .await
        }
        "GetRegion" | "GetPrevRegion" => {
            let region_key = if g.bool() {
                super::memcomparable(&g.key())
            } else {
                g.key()
            };
            let req = pdpb::GetRegionRequest {
                header,
                region_key,
                need_buckets: g.bool(),
            };
            if RPCS[rpc].0 == "GetRegion" {
                send!(pd, get_region, req)
            } else {
                send!(pd, get_prev_region, req)
            }
        }
        "GetRegionByID" => {
            let region_id = if g.bool() { g.region_meta().id } else { g.u64() };
            send!(
                pd,
                get_region_by_id,
                pdpb::GetRegionByIdRequest {
                    header,
                    region_id,
                    need_buckets: g.bool()
                }
            )
        }
        "ScanRegions" => {
            let (start_key, end_key) = g.range();
            let limit = *g.pick(&[0, -1, 1, 3, 100, i32::MAX, i32::MIN]);
            send!(
                pd,
                scan_regions,
                pdpb::ScanRegionsRequest {
                    header,
                    start_key,
                    limit,
                    end_key
                }
            )
        }
        // AskSplit / AskBatchSplit only hand out ids: real regions with their current epoch.
        "AskSplit" => {
            let region = g.bool().then(|| region(g, false));
            send!(pd, ask_split, pdpb::AskSplitRequest { header, region })
        }
        "ReportSplit" => {
            let left = g.bool().then(|| region(g, real));
            let right = g.bool().then(|| region(g, real));
            send!(pd, report_split, pdpb::ReportSplitRequest { header, left, right })
        }
        "AskBatchSplit" => {
            let region = g.bool().then(|| region(g, false));
            let split_count = match g.below(4) {
                0 => 0,
                1 => u32::MAX,
                _ => g.below(10) as u32,
            };
            send!(
                pd,
                ask_batch_split,
                pdpb::AskBatchSplitRequest {
                    header,
                    region,
                    split_count
                }
            )
        }
        "ReportBatchSplit" => {
            let regions = (0..g.below(4)).map(|_| region(g, real)).collect();
            send!(
                pd,
                report_batch_split,
                pdpb::ReportBatchSplitRequest { header, regions }
            )
        }
        "GetClusterConfig" => send!(pd, get_cluster_config, pdpb::GetClusterConfigRequest { header }),
        "PutClusterConfig" => {
            let cluster = g.bool().then(|| {
                let id = if real || g.bool() {
                    g.w.cluster_id.wrapping_add(1 + g.below(3) as u64)
                } else {
                    g.u64()
                };
                let max_peer_count = g.u32();
                metapb::Cluster { id, max_peer_count }
            });
            // Under the real cluster id only the real meta with 3 replicas is written.
            let cluster = if real && g.chance(1, 4) {
                Some(metapb::Cluster {
                    id: g.w.cluster_id,
                    max_peer_count: 3,
                })
            } else {
                cluster
            };
            send!(
                pd,
                put_cluster_config,
                pdpb::PutClusterConfigRequest { header, cluster }
            )
        }
        "GetGCSafePoint" => send!(pd, get_gc_safe_point, pdpb::GetGcSafePointRequest { header }),
        "UpdateGCSafePoint" => {
            let safe_point = gc_safe_point(g, real);
            send!(
                pd,
                update_gc_safe_point,
                pdpb::UpdateGcSafePointRequest { header, safe_point }
            )
        }
        "UpdateServiceGCSafePoint" => {
            let service_id = match g.below(4) {
                0 => Vec::new(),
                1 => b"gc_worker".to_vec(),
                2 => b"fuzz".to_vec(),
                _ => g.small_bytes(16),
            };
            let safe_point = gc_safe_point(g, real);
            send!(
                pd,
                update_service_gc_safe_point,
                pdpb::UpdateServiceGcSafePointRequest {
                    header,
                    service_id,
                    ttl: g.i64(),
                    safe_point
                }
            )
        }
        "GetOperator" => {
            let region_id = if g.bool() { g.region_meta().id } else { g.u64() };
            send!(pd, get_operator, pdpb::GetOperatorRequest { header, region_id })
        }
        "GetMinTS" => send!(pd, get_min_ts, pdpb::GetMinTsRequest { header }),
        "ScatterRegion" => {
            let region = g.bool().then(|| region(g, real));
            #[allow(deprecated)]
            let req = pdpb::ScatterRegionRequest {
                header,
                region_id: g.region_meta().id,
                leader: g.bool().then(|| g.peer()),
                region,
                group: g.string(),
                regions_id: (0..g.below(4)).map(|_| g.region_meta().id).collect(),
                retry_limit: g.u64(),
                skip_store_limit: g.bool(),
            };
            send!(pd, scatter_region, req)
        }
        "SplitRegions" => {
            let split_keys = (0..g.below(3)).map(|_| split_key(g)).collect();
            send!(
                pd,
                split_regions,
                pdpb::SplitRegionsRequest {
                    header,
                    split_keys,
                    retry_limit: g.u64()
                }
            )
        }
        "SplitAndScatterRegions" => {
            let split_keys = (0..g.below(3)).map(|_| split_key(g)).collect();
            let req = pdpb::SplitAndScatterRegionsRequest {
                header,
                split_keys,
                group: g.string(),
                retry_limit: g.u64(),
            };
            send!(pd, split_and_scatter_regions, req)
        }
        "LoadKeyspace" => {
            let name = g
                .pick(&["DEFAULT", "", "nope", "\u{0}", "DEFAULT\u{0}"])
                .to_string();
            send!(
                ks,
                load_keyspace,
                keyspacepb::LoadKeyspaceRequest { header, name }
            )
        }
        "WatchKeyspaces" => {
            let req = keyspacepb::WatchKeyspacesRequest { header };
            let shown = format!("{req:?}");
            let mut client = ks.clone();
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, async move {
                let mut stream = client.watch_keyspaces(req).await?.into_inner();
                // The first message carries every keyspace; the stream then stays open.
                stream.message().await
            })
            .await
            {
                Err(_) => Outcome::Timeout,
                Ok(Err(s)) => Outcome::Status(s.code(), s.message().to_owned()),
                Ok(Ok(Some(r))) if pd_err(&r.header) => Outcome::Error("other"),
                Ok(Ok(_)) => Outcome::Ok,
            };
            let bad = matches!(&outcome, Outcome::Timeout)
                || matches!(&outcome, Outcome::Status(c, m) if super::transport_failure(*c, m));
            (outcome, bad.then_some(shown))
        }
        "GetAllKeyspaces" => {
            let req = keyspacepb::GetAllKeyspacesRequest {
                header,
                start_id: g.u32(),
                limit: g.u32(),
            };
            send!(ks, get_all_keyspaces, req)
        }
        other => unreachable!("unknown pd rpc {other}"),
    }
}

/// A region key for PD's SplitRegions: mostly an encoded key, else a raw one below `r`.
fn split_key(g: &mut G<'_>) -> Vec<u8> {
    let key = g.split_key();
    if g.chance(3, 4) {
        super::memcomparable(&key)
    } else {
        super::raw_boundary(key)
    }
}

/// A GC safe point: under the real cluster id never beyond the start of the fuzzing (PD keeps
/// the largest it was told, and a safe point at the end of time is not a fuzz input but a
/// decision to collect everything).
fn gc_safe_point(g: &mut G<'_>, real: bool) -> u64 {
    if real {
        match g.below(3) {
            0 => 0,
            1 => 1,
            _ => g.w.base_ts.saturating_sub(g.below(1 << 30) as u64),
        }
    } else {
        g.ts()
    }
}

/// A bidirectional stream call: sends `reqs`, closes the sending side, reads every response
/// until PD ends the stream.
async fn stream_call<Req, Resp, F, Fut>(
    reqs: Vec<Req>,
    open: F,
    client: PdClient<Channel>,
    has_err: impl Fn(&Resp) -> bool,
) -> (Outcome, Option<String>)
where
    Req: std::fmt::Debug + Send + 'static,
    F: FnOnce(PdClient<Channel>, tokio_stream::Iter<std::vec::IntoIter<Req>>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>>,
{
    let shown = format!("{reqs:?}");
    let run = async {
        let mut stream = open(client, tokio_stream::iter(reqs)).await?.into_inner();
        let mut any_err = false;
        while let Some(resp) = stream.message().await? {
            any_err |= has_err(&resp);
        }
        Ok::<bool, tonic::Status>(any_err)
    };
    let outcome = match tokio::time::timeout(CALL_TIMEOUT, run).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(s)) => Outcome::Status(s.code(), s.message().to_owned()),
        Ok(Ok(true)) => Outcome::Error("other"),
        Ok(Ok(false)) => Outcome::Ok,
    };
    let bad = matches!(&outcome, Outcome::Timeout)
        || matches!(&outcome, Outcome::Status(c, m) if super::transport_failure(*c, m));
    (outcome, bad.then(|| excerpt(shown, 2000)))
}
