use std::sync::atomic::{AtomicU64, Ordering};

use atoll_proto::{metapb, pdpb};
use serde_json::Value;
use txn_types::memcomparable::encode_bytes;

use super::super::tests::{get, get_json, new_ctx, populated_ctx};
use super::*;
use crate::heatmap::{HeatmapConfig, HeatmapRecorder};
use crate::schedule::{builder, coordinator, OpKind};

/// A 400/404 with `{"error": ...}` containing `needle`.
async fn must_fail(ctx: &Arc<PdContext>, uri: &str, status: StatusCode, needle: &str) {
    let (got, body) = get(ctx, uri).await;
    assert_eq!(got, status, "{uri}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {body}"));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{uri}: no error field: {body}"));
    assert!(msg.contains(needle), "{uri}: {msg:?} lacks {needle:?}");
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: Vec<metapb::Peer>) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version }),
        peers,
        ..Default::default()
    }
}

/// A region heartbeat through the real path (tree, then the scheduling/heatmap hook).
fn heartbeat(ctx: &PdContext, r: metapb::Region, leader: metapb::Peer, load: (u64, u64), interval: u64) {
    let id = r.id;
    let req = pdpb::RegionHeartbeatRequest {
        region: Some(r),
        leader: Some(leader),
        bytes_written: load.0,
        keys_written: load.0 / 10,
        bytes_read: load.1,
        keys_read: load.1 / 10,
        approximate_size: 1 << 20,
        approximate_keys: 10,
        interval: Some(pdpb::TimeInterval {
            start_timestamp: 1_000,
            end_timestamp: 1_000 + interval,
        }),
        ..Default::default()
    };
    assert_eq!(
        ctx.cluster.region_heartbeat(&req).unwrap(),
        crate::cluster::HeartbeatOutcome::Applied
    );
    coordinator::on_region_heartbeat(ctx, id);
}

const T0: u64 = 1_700_000_040;

/// One store; regions split at the API V2 keyspace boundaries (as nodes split them at
/// startup): ["", r0) [r0, r1) [r1, x0) [x0, x1) [x1, ""), ids 2, 10, 11, 12, 13. The heatmap
/// runs on a fake clock (returned).
fn v2_ctx() -> (Arc<PdContext>, tokio::sync::watch::Sender<bool>, Arc<AtomicU64>) {
    let (mut ctx, tx) = new_ctx();
    let now = Arc::new(AtomicU64::new(T0));
    let clock = now.clone();
    Arc::get_mut(&mut ctx).unwrap().heatmap = HeatmapRecorder::with_clock(
        HeatmapConfig::default(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    let store = metapb::Store {
        id: 1,
        address: "127.0.0.1:20160".into(),
        ..Default::default()
    };
    ctx.cluster
        .bootstrap(Some(&store), Some(&region(2, b"", b"", 1, vec![peer(3, 1)])))
        .unwrap();
    let bounds: Vec<Vec<u8>> = [&b"r\0\0\0"[..], b"r\0\0\x01", b"x\0\0\0", b"x\0\0\x01"]
        .iter()
        .map(|k| encode_bytes(k))
        .collect();
    let mut starts = vec![Vec::new()];
    starts.extend(bounds.iter().cloned());
    let mut ends = bounds.clone();
    ends.push(Vec::new());
    for (i, (s, e)) in starts.iter().zip(&ends).enumerate() {
        let id = if i == 0 { 2 } else { 9 + i as u64 };
        let p = peer(100 + i as u64, 1);
        heartbeat(&ctx, region(id, s, e, 5, vec![p]), p, (0, 0), 0);
    }
    (ctx, tx, now)
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let (ctx, _tx) = new_ctx();
    for uri in ["/dashboard", "/dashboard/"] {
        let resp = crate::server::build_router(ctx.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let (_, html) = get(&ctx, "/dashboard").await;
    assert!(html.contains("/dashboard/dashboard.js"), "{html}");
    assert!(html.contains("/dashboard/dashboard.css"));
    for (uri, needle) in [
        ("/dashboard/dashboard.js", "/dashboard/api/heatmap"),
        ("/dashboard/dashboard.css", "."),
    ] {
        let (status, body) = get(&ctx, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(body.contains(needle), "{uri}");
    }
    // Nothing is loaded from elsewhere (no CDN).
    for asset in [INDEX_HTML, DASHBOARD_JS, DASHBOARD_CSS] {
        assert!(!asset.contains("http://") && !asset.contains("https://") && !asset.contains("//cdn"));
    }
}

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

#[tokio::test]
async fn cluster_summary() {
    let (ctx, _tx) = populated_ctx();
    let c = get_json(&ctx, "/dashboard/api/cluster").await;
    assert_eq!(c["cluster_id"], ctx.cluster_id.to_string());
    assert_eq!(c["members"][0]["member_id"], ctx.member.member_id.to_string());
    assert_eq!(c["version"], "v8.5.0");
    assert_eq!(c["bootstrapped"], true);
    assert_eq!(c["leader"], "pd");
    assert_eq!(c["members"][0]["is_leader"], true);
    assert_eq!(c["members"][0]["client_urls"][0], "http://127.0.0.1:2379");
    assert_eq!(c["store_count"], 2);
    assert_eq!(c["region_count"], 2);
    assert!(c["uptime_secs"].as_f64().unwrap() >= 0.0);
    let ts: u64 = c["tso"]["ts"].as_str().unwrap().parse().unwrap();
    assert!(ts > 0);
    assert_eq!(ts >> 18, c["tso"]["physical_ms"].as_u64().unwrap());
    assert!(c["tso"]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["gc"]["safe_point"], "0");
    assert!(c["gc"]["time"].is_null() && c["gc"]["age_secs"].is_null());

    // A safe point 90 s in the past.
    let now_ms = crate::tso::wall_clock_ms() as u64;
    ctx.gc.update_safe_point((now_ms - 90_000) << 18).unwrap();
    let c = get_json(&ctx, "/dashboard/api/cluster").await;
    let age = c["gc"]["age_secs"].as_f64().unwrap();
    assert!((89.0..200.0).contains(&age), "{age}");
    assert!(c["gc"]["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn stores_with_state_space_and_counts() {
    let (ctx, _tx) = populated_ctx();
    let s = get_json(&ctx, "/dashboard/api/stores").await;
    assert_eq!(s["count"], 2);
    let one = &s["stores"][0];
    assert_eq!(one["id"], 1);
    assert_eq!(one["address"], "127.0.0.1:20160");
    assert_eq!(one["state"], "Up");
    assert_eq!(one["labels"][0]["key"], "zone");
    assert_eq!(one["labels"][0]["value"], "z1");
    assert_eq!(one["capacity"], 100u64 << 30);
    assert_eq!(one["available"], 50u64 << 30);
    assert_eq!(one["used"], 50u64 << 30);
    assert_eq!(one["region_count"], 2);
    assert_eq!(one["leader_count"], 2);
    assert!(one["last_heartbeat_age_secs"].as_f64().unwrap() < 60.0);
    let four = &s["stores"][1];
    assert_eq!(four["id"], 4);
    assert_eq!(four["region_count"], 2);
    assert_eq!(four["leader_count"], 0);
    assert!(four["last_heartbeat"].is_null());
    assert!(four["labels"].as_array().unwrap().is_empty());
}

fn ids(v: &Value) -> Vec<u64> {
    v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn regions_list_shape_sort_filter_and_paging() {
    let (ctx, _tx) = populated_ctx();
    let r = get_json(&ctx, "/dashboard/api/regions").await;
    assert_eq!(r["total"], 2);
    assert_eq!(r["matched"], 2);
    assert_eq!(r["limit"], 500);
    assert_eq!(ids(&r), vec![2, 6]);
    let first = &r["regions"][0];
    assert_eq!(first["start_key"]["display"], "-∞");
    assert_eq!(first["end_key"]["display"], "m");
    assert_eq!(first["end_key"]["hex"], "6D");
    assert_eq!(first["epoch"]["version"], 2);
    assert_eq!(first["leader"]["store_id"], 1);
    assert_eq!(first["peers"][0]["is_leader"], true);
    assert_eq!(first["peers"][1]["role"], "Voter");
    assert_eq!(first["approximate_size"], 5);
    assert_eq!(first["approximate_keys"], 1000);
    assert_eq!(first["written_bytes_per_sec"], 0.0, "no interval: no rate");
    let second = &r["regions"][1];
    assert_eq!(second["end_key"]["display"], "+∞");
    assert_eq!(second["peers"][1]["role"], "Learner");

    let r = get_json(&ctx, "/dashboard/api/regions?sort=id&order=desc").await;
    assert_eq!(ids(&r), vec![6, 2]);
    let r = get_json(&ctx, "/dashboard/api/regions?limit=1&offset=1").await;
    assert_eq!(ids(&r), vec![6]);
    assert_eq!(r["matched"], 2);
    let r = get_json(&ctx, "/dashboard/api/regions?key=n").await;
    assert_eq!(ids(&r), vec![6]);
    let r = get_json(&ctx, "/dashboard/api/regions?key=0x6c").await;
    assert_eq!(ids(&r), vec![2]);
    let r = get_json(&ctx, "/dashboard/api/regions?store=4&leader_store=1").await;
    assert_eq!(ids(&r), vec![2, 6]);
    let r = get_json(&ctx, "/dashboard/api/regions?leader_store=4").await;
    assert_eq!(ids(&r), Vec::<u64>::new());
    assert_eq!(r["total"], 2);

    for (uri, needle) in [
        ("/dashboard/api/regions?key=0xzz", "malformed key"),
        ("/dashboard/api/regions?key=0x1", "even number"),
        ("/dashboard/api/regions?sort=colour", "unknown sort"),
        ("/dashboard/api/regions?store=one", "invalid store"),
        ("/dashboard/api/regions?limit=0", "invalid limit"),
        ("/dashboard/api/regions?keyspace=99999999", "at most"),
        ("/dashboard/api/regions?mode=y", "invalid mode"),
        ("/dashboard/api/regions?colour=red", "unknown query parameter"),
    ] {
        must_fail(&ctx, uri, StatusCode::BAD_REQUEST, needle).await;
    }
}

#[tokio::test]
async fn regions_show_api_v2_keys_decoded_and_filter_by_keyspace() {
    let (ctx, _tx, _clock) = v2_ctx();
    let r = get_json(&ctx, "/dashboard/api/regions").await;
    assert_eq!(ids(&r), vec![2, 10, 11, 12, 13]);
    let displays: Vec<(String, String)> = r["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["start_key"]["display"].as_str().unwrap().to_string(),
                x["end_key"]["display"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("-∞", "raw ks 0"),
        ("raw ks 0", "raw ks 1"),
        ("raw ks 1", "txn ks 0"),
        ("txn ks 0", "txn ks 1"),
        ("txn ks 1", "+∞"),
    ];
    for (got, want) in displays.iter().zip(expected) {
        assert_eq!((got.0.as_str(), got.1.as_str()), want);
    }
    let k = &r["regions"][1]["start_key"];
    assert_eq!(k["encoded"], true);
    assert_eq!(k["keyspace"]["mode"], "raw");
    assert_eq!(k["keyspace"]["id"], 0);
    assert_eq!(k["hex"], "7200000000000000FB");
    assert_eq!(k["decoded"], "0x72000000");

    // Keyspace 0 in raw mode is region 10; keyspace 0 in either mode: 10 and 12.
    let r = get_json(&ctx, "/dashboard/api/regions?keyspace=0&mode=raw").await;
    assert_eq!(ids(&r), vec![10]);
    let r = get_json(&ctx, "/dashboard/api/regions?keyspace=0").await;
    assert_eq!(ids(&r), vec![10, 12]);
    // Keyspace 7 lies in the tail regions of each mode.
    let r = get_json(&ctx, "/dashboard/api/regions?keyspace=7").await;
    assert_eq!(ids(&r), vec![11, 13]);
    let r = get_json(&ctx, "/dashboard/api/regions?mode=txn").await;
    assert_eq!(ids(&r), vec![12, 13]);
    // A user key inside a keyspace, or the full decoded key in hex.
    let r = get_json(&ctx, "/dashboard/api/regions?keyspace=1&mode=txn&key=user1").await;
    assert_eq!(ids(&r), vec![13]);
    let r = get_json(&ctx, "/dashboard/api/regions?key=0x7800000075").await;
    assert_eq!(ids(&r), vec![12]);
}

#[tokio::test]
async fn region_detail_and_its_errors() {
    let (ctx, _tx) = populated_ctx();
    let d = get_json(&ctx, "/dashboard/api/regions/6").await;
    assert_eq!(d["region"]["id"], 6);
    assert_eq!(d["region"]["start_key"]["display"], "m");
    assert_eq!(d["written_bytes"], 77);
    assert!(d["operator"].is_null());
    assert!(d["down_peers"].as_array().unwrap().is_empty());
    must_fail(
        &ctx,
        "/dashboard/api/regions/999",
        StatusCode::NOT_FOUND,
        "region 999 not found",
    )
    .await;
    must_fail(
        &ctx,
        "/dashboard/api/regions/abc",
        StatusCode::BAD_REQUEST,
        "invalid region id",
    )
    .await;
    must_fail(
        &ctx,
        "/dashboard/api/regions/0",
        StatusCode::BAD_REQUEST,
        "invalid region id",
    )
    .await;
    must_fail(
        &ctx,
        "/dashboard/api/nothing",
        StatusCode::NOT_FOUND,
        "no dashboard API",
    )
    .await;
}

#[tokio::test]
async fn operators_running_then_recent() {
    let (ctx, _tx) = populated_ctx();
    let o = get_json(&ctx, "/dashboard/api/operators").await;
    assert!(o["running"].as_array().unwrap().is_empty());
    assert!(o["recent"].as_array().unwrap().is_empty());

    let r = ctx.cluster.region_by_id(2).unwrap().unwrap();
    let op = builder::transfer_leader("admin-transfer-leader", OpKind::ADMIN, &r, 4).unwrap();
    ctx.coordinator.operators.add(op, None).unwrap();
    let o = get_json(&ctx, "/dashboard/api/operators").await;
    let run = &o["running"][0];
    assert_eq!(run["region_id"], 2);
    assert_eq!(run["desc"], "admin-transfer-leader");
    assert_eq!(run["status"], "RUNNING");
    assert_eq!(run["steps"][0]["current"], true);
    assert!(run["steps"][0]["text"]
        .as_str()
        .unwrap()
        .contains("transfer leader"));
    let d = get_json(&ctx, "/dashboard/api/regions/2").await;
    assert_eq!(d["operator"]["status"], "RUNNING");

    ctx.coordinator.operators.cancel(2, "test");
    let o = get_json(&ctx, "/dashboard/api/operators").await;
    assert!(o["running"].as_array().unwrap().is_empty());
    assert_eq!(o["recent"][0]["region_id"], 2);
    assert_eq!(o["recent"][0]["status"], "CANCEL");
    assert!(o["recent"][0]["ended_ago_secs"].as_f64().unwrap() < 60.0);
    let d = get_json(&ctx, "/dashboard/api/regions/2").await;
    assert_eq!(d["operator"]["status"], "CANCEL");
}

fn column_sum(v: &Value, col: usize) -> u64 {
    v["values"][col]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn heatmap_buckets_heartbeats_on_a_fake_clock() {
    let (ctx, _tx, clock) = v2_ctx();
    let h = get_json(&ctx, "/dashboard/api/heatmap").await;
    assert_eq!(h["metric"], "written_bytes");
    assert_eq!(h["window"], "60m");
    assert_eq!(h["bucket_secs"], 60);
    assert_eq!(h["times"].as_array().unwrap().len(), 60);
    let displays = |h: &Value| -> Vec<String> {
        h["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["display"].as_str().unwrap().to_string())
            .collect()
    };
    // Idle regions are on the axis (the whole key space), all cells 0.
    assert_eq!(
        displays(&h),
        vec!["-∞", "raw ks 0", "raw ks 1", "txn ks 0", "txn ks 1", "+∞"]
    );
    assert_eq!(h["max"], 0);

    // Writes to raw keyspace 0 (region 10) over a minute, reads from txn keyspace 1 (13).
    let regions: Vec<RegionInfo> = ctx.cluster.regions();
    let (r10, r13) = (regions[1].meta.clone(), regions[4].meta.clone());
    let (p10, p13) = (r10.peers[0], r13.peers[0]);
    // The last second of the minute starting at T0: a 60 s interval lies all in it.
    clock.store(T0 + 59, Ordering::SeqCst);
    heartbeat(&ctx, r10.clone(), p10, (6000, 0), 60);
    heartbeat(&ctx, r13.clone(), p13, (0, 1200), 60);
    let h = get_json(&ctx, "/dashboard/api/heatmap").await;
    assert_eq!(displays(&h).len(), 6);
    assert_eq!(h["values"][59], serde_json::json!([0, 6000, 0, 0, 0]));
    assert_eq!(h["values"][58], serde_json::json!([0, 0, 0, 0, 0]));
    assert_eq!(h["max"], 6000);
    assert_eq!(h["now"], T0 + 59);
    assert_eq!(h["times"][59], T0);

    let h = get_json(&ctx, "/dashboard/api/heatmap?metric=read_keys&window=10m").await;
    assert_eq!(h["window"], "10m");
    assert_eq!(h["times"].as_array().unwrap().len(), 10);
    assert_eq!(h["values"][9], serde_json::json!([0, 0, 0, 0, 120]));

    // Five minutes later more writes, now to both regions: one axis for all columns.
    clock.store(T0 + 5 * 60 + 30, Ordering::SeqCst);
    heartbeat(&ctx, r13, p13, (300, 0), 30);
    let h = get_json(&ctx, "/dashboard/api/heatmap?window=10m&rows=10").await;
    assert_eq!(displays(&h).len(), 6, "one axis for both columns");
    assert_eq!(column_sum(&h, 9), 300);
    assert_eq!(column_sum(&h, 4), 6000);
    assert_eq!(h["values"][9][4], 300);
    // Fewer rows than regions: equal groups of regions.
    let h = get_json(&ctx, "/dashboard/api/heatmap?window=10m&rows=2").await;
    assert_eq!(displays(&h), vec!["-∞", "txn ks 0", "+∞"]);
    assert_eq!(h["values"][4], serde_json::json!([6000, 0]));
    assert_eq!(h["values"][9], serde_json::json!([0, 300]));
    // A shown column moves left as the clock moves on, and drops out of the window.
    clock.store(T0 + 61 * 60, Ordering::SeqCst);
    let h = get_json(&ctx, "/dashboard/api/heatmap").await;
    assert_eq!(column_sum(&h, 3), 300);
    assert_eq!((0..60).map(|c| column_sum(&h, c)).sum::<u64>(), 300);

    for (uri, needle) in [
        ("/dashboard/api/heatmap?metric=heat", "unknown metric"),
        ("/dashboard/api/heatmap?window=5m", "unknown window"),
        ("/dashboard/api/heatmap?rows=0", "invalid rows"),
        ("/dashboard/api/heatmap?rows=100000", "invalid rows"),
        ("/dashboard/api/heatmap?zoom=1", "unknown query parameter"),
    ] {
        must_fail(&ctx, uri, StatusCode::BAD_REQUEST, needle).await;
    }
}

use crate::region_info::RegionInfo;

#[tokio::test]
async fn ten_thousand_regions() {
    let (ctx, _tx, clock) = v2_ctx();
    // Split the tail region [x1, ∞) into 10 000 regions of keyspace 1, all written to.
    clock.store(T0 + 59, Ordering::SeqCst);
    let tail = ctx.cluster.region_by_id(13).unwrap().unwrap().meta;
    let key = |i: u32| encode_bytes(&[&b"x\0\0\x01"[..], format!("k{i:06}").as_bytes()].concat());
    for i in 0..10_000u32 {
        let (id, start) = if i == 0 {
            (13, tail.start_key.clone())
        } else {
            (1_000 + u64::from(i), key(i))
        };
        let end = if i == 9_999 { Vec::new() } else { key(i + 1) };
        let p = peer(50_000 + u64::from(i), 1);
        heartbeat(
            &ctx,
            region(id, &start, &end, 6, vec![p]),
            p,
            (u64::from(i) + 1, 0),
            60,
        );
    }
    let start = Instant::now();
    let r = get_json(&ctx, "/dashboard/api/regions").await;
    assert_eq!(r["total"], 10_004);
    assert_eq!(r["regions"].as_array().unwrap().len(), 500);
    let r = get_json(
        &ctx,
        "/dashboard/api/regions?sort=written_bytes&order=desc&limit=1",
    )
    .await;
    assert_eq!(r["regions"][0]["end_key"]["display"], "+∞");
    let r = get_json(&ctx, "/dashboard/api/regions?keyspace=1&mode=txn&key=k005000").await;
    assert_eq!(ids(&r), vec![6_000]);
    let h = get_json(&ctx, "/dashboard/api/heatmap?rows=200").await;
    assert_eq!(
        h["keys"].as_array().unwrap().len(),
        201,
        "merged into at most 200 rows"
    );
    assert_eq!(column_sum(&h, 59), (1..=10_000u64).sum::<u64>());
    get_json(&ctx, "/dashboard/api/stores").await;
    get_json(&ctx, "/dashboard/api/cluster").await;
    // Generous (debug build, shared machine); the release build answers far faster.
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}
