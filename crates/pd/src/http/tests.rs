use atoll_proto::{metapb, pdpb};
use axum::body::Body;
use axum::http::Request;
use engine_traits::MemEngine;
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::config::PdConfig;
use crate::storage::MetaStorage;

pub(super) fn new_ctx() -> (Arc<PdContext>, watch::Sender<bool>) {
    let mut cfg = PdConfig::default();
    cfg.adjust().unwrap();
    let (tx, rx) = watch::channel(false);
    (
        Arc::new(PdContext::open(cfg, MetaStorage::new(MemEngine::new()), rx).unwrap()),
        tx,
    )
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// A bootstrapped cluster with two stores and regions [ "", "m" ) (leader on 1), [ "m", "" ).
pub(super) fn populated_ctx() -> (Arc<PdContext>, watch::Sender<bool>) {
    let (ctx, tx) = new_ctx();
    let store1 = metapb::Store {
        id: 1,
        address: "127.0.0.1:20160".into(),
        status_address: "127.0.0.1:20180".into(),
        version: "8.5.0".into(),
        labels: vec![metapb::StoreLabel {
            key: "zone".into(),
            value: "z1".into(),
        }],
        ..Default::default()
    };
    let first = metapb::Region {
        id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer(3, 1)],
        ..Default::default()
    };
    ctx.cluster.bootstrap(Some(&store1), Some(&first)).unwrap();
    ctx.cluster
        .put_store(&metapb::Store {
            id: 4,
            address: "127.0.0.1:20161".into(),
            ..Default::default()
        })
        .unwrap();
    ctx.cluster
        .store_heartbeat(pdpb::StoreStats {
            store_id: 1,
            capacity: 100 << 30,
            available: 50 << 30,
            start_time: 1_700_000_000,
            ..Default::default()
        })
        .unwrap();
    let left = metapb::Region {
        id: 2,
        end_key: b"m".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        }),
        peers: vec![peer(3, 1), peer(5, 4)],
        ..Default::default()
    };
    let right = metapb::Region {
        id: 6,
        start_key: b"m".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        }),
        peers: vec![
            peer(7, 1),
            metapb::Peer {
                id: 8,
                store_id: 4,
                role: metapb::PeerRole::Learner as i32,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    for (r, leader) in [(left, peer(3, 1)), (right, peer(7, 1))] {
        ctx.cluster
            .region_heartbeat(&pdpb::RegionHeartbeatRequest {
                region: Some(r),
                leader: Some(leader),
                approximate_size: 5 << 20,
                approximate_keys: 1000,
                bytes_written: 77,
                ..Default::default()
            })
            .unwrap();
    }
    (ctx, tx)
}

pub(super) async fn get(ctx: &Arc<PdContext>, uri: &str) -> (StatusCode, String) {
    let resp = crate::server::build_router(ctx.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

pub(super) async fn get_json(ctx: &Arc<PdContext>, uri: &str) -> Value {
    let (status, body) = get(ctx, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    // Indented like PD.
    assert!(body.contains("\n  "), "{uri} is not indented: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn members_health_version_cluster() {
    let (ctx, _tx) = new_ctx();
    let m = get_json(&ctx, "/pd/api/v1/members").await;
    assert_eq!(m["header"]["cluster_id"], ctx.cluster_id);
    assert_eq!(m["members"][0]["name"], "pd");
    assert_eq!(m["members"][0]["client_urls"][0], "http://127.0.0.1:2379");
    assert_eq!(m["leader"]["member_id"], ctx.member.member_id);
    assert_eq!(m["etcd_leader"]["member_id"], ctx.member.member_id);

    let h = get_json(&ctx, "/pd/api/v1/health").await;
    assert_eq!(h[0]["health"], true);
    assert_eq!(h[0]["member_id"], ctx.member.member_id);

    let v = get_json(&ctx, "/pd/api/v1/version").await;
    assert_eq!(v["version"], "v8.5.0");

    let c = get_json(&ctx, "/pd/api/v1/cluster").await;
    assert_eq!(c["id"], ctx.cluster_id);
    assert_eq!(c["max_peer_count"], 3);

    let cfg = get_json(&ctx, "/pd/api/v1/config").await;
    assert_eq!(cfg["replication"]["max-replicas"], 3);
    assert_eq!(cfg["schedule"]["max-store-down-time"], "30m0s");
    assert_eq!(cfg["pd-server"]["key-type"], "table");
    let r = get_json(&ctx, "/pd/api/v1/config/replicate").await;
    assert_eq!(r["enable-placement-rules"], "true");

    let (status, body) = get(&ctx, "/pd/api/v1/nope").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
}

#[tokio::test]
async fn stores_shape() {
    let (ctx, _tx) = populated_ctx();
    let s = get_json(&ctx, "/pd/api/v1/stores").await;
    assert_eq!(s["count"], 2);
    let first = &s["stores"][0];
    let store = &first["store"];
    assert_eq!(store["id"], 1);
    assert_eq!(store["address"], "127.0.0.1:20160");
    assert_eq!(store["status_address"], "127.0.0.1:20180");
    assert_eq!(store["version"], "8.5.0");
    assert_eq!(store["state_name"], "Up");
    assert_eq!(store["labels"][0]["key"], "zone");
    assert_eq!(store["node_state"], metapb::NodeState::Serving as i32);
    assert!(store["last_heartbeat"].as_i64().unwrap() > 0);
    // Up is the zero value and is omitted, like PD.
    assert!(store.get("state").is_none());
    let status = &first["status"];
    assert_eq!(status["capacity"], "100GiB");
    assert_eq!(status["available"], "50GiB");
    assert_eq!(status["used_size"], "50GiB");
    assert_eq!(status["region_count"], 2);
    assert_eq!(status["leader_count"], 2);
    assert_eq!(status["region_size"], 10);
    assert_eq!(status["leader_weight"], 1);
    assert_eq!(status["start_ts"], "2023-11-14T22:13:20Z");
    assert!(status["last_heartbeat_ts"].as_str().unwrap().ends_with('Z'));
    assert!(status["uptime"].is_string());
    // The second store never sent a heartbeat.
    let second = &s["stores"][1];
    assert_eq!(second["status"]["leader_count"], 0);
    assert_eq!(second["status"]["region_count"], 2);
    assert_eq!(second["status"]["learner_count"], 1);
    assert!(second["status"].get("last_heartbeat_ts").is_none());

    let one = get_json(&ctx, "/pd/api/v1/store/4").await;
    assert_eq!(one["store"]["address"], "127.0.0.1:20161");
    let (status, body) = get(&ctx, "/pd/api/v1/store/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        "[PD:core:ErrStoreNotFound]store 99 not found"
    );
    let (status, _) = get(&ctx, "/pd/api/v1/store/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn regions_shape() {
    let (ctx, _tx) = populated_ctx();
    let r = get_json(&ctx, "/pd/api/v1/regions").await;
    assert_eq!(r["count"], 2);
    let left = &r["regions"][0];
    assert_eq!(left["id"], 2);
    assert_eq!(left["start_key"], "");
    assert_eq!(left["end_key"], "6D");
    assert_eq!(left["epoch"]["conf_ver"], 1);
    assert_eq!(left["epoch"]["version"], 2);
    assert_eq!(left["peers"][0]["id"], 3);
    assert_eq!(left["peers"][0]["store_id"], 1);
    assert_eq!(left["peers"][0]["role_name"], "Voter");
    assert_eq!(left["leader"]["id"], 3);
    assert_eq!(left["approximate_size"], 5);
    assert_eq!(left["approximate_keys"], 1000);
    assert_eq!(left["written_bytes"], 77);
    let right = &r["regions"][1];
    assert_eq!(right["start_key"], "6D");
    assert_eq!(right["end_key"], "");
    assert_eq!(right["peers"][1]["role_name"], "Learner");
    assert_eq!(right["peers"][1]["is_learner"], true);

    let one = get_json(&ctx, "/pd/api/v1/region/id/6").await;
    assert_eq!(one["leader"]["store_id"], 1);
    let by_key = get_json(&ctx, "/pd/api/v1/region/key/zzz").await;
    assert_eq!(by_key["id"], 6);
    let (status, body) = get(&ctx, "/pd/api/v1/region/id/77").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("[PD:region:ErrRegionNotFound]region 77 not found"));
    let count = get_json(&ctx, "/pd/api/v1/regions/count").await;
    assert_eq!(count["count"], 2);
}

#[tokio::test]
async fn metrics_and_gc() {
    let (ctx, _tx) = populated_ctx();
    let (status, body) = get(&ctx, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("pd_cluster_status"), "{body}");
    ctx.gc.update_safe_point(10).unwrap();
    let gc = get_json(&ctx, "/pd/api/v1/gc/safepoint").await;
    assert_eq!(gc["gc_safe_point"], 10);
    assert!(gc["service_gc_safe_points"].as_array().unwrap().is_empty());
}

pub(super) async fn post(ctx: &Arc<PdContext>, uri: &str, body: &str) -> (StatusCode, Value) {
    let resp = crate::server::build_router(ctx.clone())
        .oneshot(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

const GC: &str = "/pd/api/v1/gc/safepoint";

#[tokio::test]
async fn gc_advance_by_safe_point() {
    let (ctx, _tx) = new_ctx();
    let now = ctx.tso.generate(1).unwrap().compose();
    let target = now - (60_000 << 18);
    let (status, a) = post(&ctx, GC, &format!(r#"{{"safe_point": {target}}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["advanced"], true);
    assert_eq!(a["previous_gc_safe_point"], 0);
    assert_eq!(a["gc_safe_point"], target);
    assert!(a.get("blocked_by").is_none());
    assert_eq!(ctx.gc.safe_point(), target);
    // The same again: accepted, nothing moves.
    let (status, a) = post(&ctx, GC, &format!(r#"{{"safe_point": {target}}}"#)).await;
    assert_eq!((status, &a["advanced"]), (StatusCode::OK, &Value::Bool(false)));
    // Back: 409.
    let (status, e) = post(&ctx, GC, &format!(r#"{{"safe_point": {}}}"#, target - 1)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(e.as_str().unwrap().contains("never moves back"), "{e}");
    // Ahead of the TSO: 400.
    let future = ctx.tso.generate(1).unwrap().compose() + (3_600_000 << 18);
    let (status, e) = post(&ctx, GC, &format!(r#"{{"safe_point": {future}}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e.as_str().unwrap().contains("ahead of the current timestamp"),
        "{e}"
    );
    assert_eq!(ctx.gc.safe_point(), target);
    // gc_worker follows; the listing shows it.
    let gc = get_json(&ctx, GC).await;
    assert_eq!(gc["gc_safe_point"], target);
    assert_eq!(gc["service_gc_safe_points"][0]["service_id"], "gc_worker");
    assert_eq!(gc["service_gc_safe_points"][0]["safe_point"], target);
    assert_eq!(gc["min_service_gc_safe_point"], target);
}

#[tokio::test]
async fn gc_advance_by_retention_is_held_back_by_services() {
    let (ctx, _tx) = new_ctx();
    ctx.gc.update_safe_point(1 << 18).unwrap();
    let now_secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let held = 2 << 18;
    assert!(
        ctx.gc
            .update_service_safe_point("br", held, 3600, now_secs)
            .unwrap()
            .updated
    );
    let (status, a) = post(&ctx, GC, r#"{"retention": "1m"}"#).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["gc_safe_point"], held);
    assert_eq!(a["blocked_by"]["service_id"], "br");
    assert_eq!(a["blocked_by"]["safe_point"], held);
    let now = ctx.tso.generate(1).unwrap().compose();
    let requested = a["requested_safe_point"].as_u64().unwrap();
    assert!(requested <= now - (60_000 << 18) && requested > now - (70_000 << 18));
    // Without br, an empty body uses gc.retention (10m by default).
    ctx.gc.update_service_safe_point("br", 0, 0, now_secs).unwrap();
    let (status, a) = post(&ctx, GC, "").await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let sp = a["gc_safe_point"].as_u64().unwrap();
    let after = ctx.tso.generate(1).unwrap().compose();
    // `now - retention` in whole milliseconds (logical 0), "now" being between the two.
    assert_eq!(sp % (1 << 18), 0);
    assert!(
        (now >> 18) - 600_000 <= sp >> 18 && sp <= after - (600_000 << 18),
        "{a}"
    );
    // A retention longer than before asks for an older safe point: a no-op, not an error.
    let (status, a) = post(&ctx, GC, r#"{"retention": "1h"}"#).await;
    assert_eq!((status, &a["advanced"]), (StatusCode::OK, &Value::Bool(false)));
    assert_eq!(a["gc_safe_point"], sp);
}

#[tokio::test]
async fn gc_advance_bad_bodies() {
    let (ctx, _tx) = new_ctx();
    for body in [
        r#"{"retention": "10m", "safe_point": 1}"#,
        r#"{"retention": "ten"}"#,
        r#"{"safe_point": -1}"#,
        r#"{"life_time": "10m"}"#,
        "not json",
    ] {
        let (status, e) = post(&ctx, GC, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert!(e.is_string(), "{e}");
    }
    assert_eq!(ctx.gc.safe_point(), 0);
    let cfg = get_json(&ctx, "/pd/api/v1/config").await;
    assert_eq!(cfg["gc"]["retention"], "10m0s");
    assert_eq!(cfg["gc"]["advance-interval"], "10m0s");
}

#[tokio::test]
async fn gc_advance_fails_while_locks_can_not_be_resolved() {
    let (ctx, _tx) = new_ctx();
    // A store nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let store = metapb::Store {
        id: 1,
        address: dead.clone(),
        ..Default::default()
    };
    let region = metapb::Region {
        id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer(3, 1)],
        ..Default::default()
    };
    ctx.cluster.bootstrap(Some(&store), Some(&region)).unwrap();
    let now = ctx.tso.generate(1).unwrap().compose();
    let target = now - (60_000 << 18);
    let body = format!(r#"{{"safe_point": {target}}}"#);
    // No leader known for the region yet.
    let (status, e) = post(&ctx, GC, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    let msg = e.as_str().unwrap();
    assert!(
        msg.contains("could not be resolved") && msg.contains("no known leader"),
        "{msg}"
    );
    // The leader's store does not answer.
    ctx.cluster
        .region_heartbeat(&pdpb::RegionHeartbeatRequest {
            region: Some(region),
            leader: Some(peer(3, 1)),
            ..Default::default()
        })
        .unwrap();
    let (status, e) = post(&ctx, GC, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(e.as_str().unwrap().contains(&dead), "{e}");
    assert_eq!(ctx.gc.safe_point(), 0);
    // The automatic path does not move it either.
    let r = gc_driver::advance(&ctx, Target::Retention(std::time::Duration::from_secs(60))).await;
    assert!(matches!(r, Err(GcAdvanceError::LocksUnresolved { .. })), "{r:?}");
    assert_eq!(ctx.gc.safe_point(), 0);
    // A target that would not move the safe point needs no resolution.
    ctx.gc.update_safe_point(target).unwrap();
    let (status, a) = post(&ctx, GC, r#"{"retention": "1h"}"#).await;
    assert_eq!((status, &a["advanced"]), (StatusCode::OK, &Value::Bool(false)));
    assert_eq!(ctx.gc.safe_point(), target);
}

#[tokio::test]
async fn gc_advance_resolves_locks_first() {
    use crate::gc_resolver::fake::FakeNode;
    let (ctx, _tx) = new_ctx();
    let node = FakeNode::start().await;
    let store = metapb::Store {
        id: 1,
        address: node.addr.clone(),
        ..Default::default()
    };
    let region = metapb::Region {
        id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer(3, 1)],
        ..Default::default()
    };
    ctx.cluster.bootstrap(Some(&store), Some(&region)).unwrap();
    ctx.cluster
        .region_heartbeat(&pdpb::RegionHeartbeatRequest {
            region: Some(region),
            leader: Some(peer(3, 1)),
            ..Default::default()
        })
        .unwrap();
    node.lead(1, ctx.cluster.regions());
    let now = ctx.tso.generate(1).unwrap().compose();
    let target = now - (60_000 << 18);
    // A crashed transaction: primary "p" committed, secondary "s" still locked; another
    // transaction's orphan lock; and a lock after the target, left alone.
    node.kv.put_commit("p", target - 100, target - 50);
    node.kv.put_lock("s", "p", target - 100);
    node.kv.put_lock("o", "o", target - 10);
    node.kv.put_lock("n", "n", target + 1);
    let (status, a) = post(&ctx, GC, &format!(r#"{{"safe_point": {target}}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["gc_safe_point"], target);
    assert_eq!(node.kv.committed("s", target - 100), Some(target - 50));
    assert!(node.kv.rolled_back("o", target - 10));
    assert_eq!(node.kv.lock_keys(), vec!["n"]);
    assert_eq!(ctx.gc.safe_point(), target);
}
