//! Store states, weights, labels, limits, schedulers and hot regions over HTTP.

use std::sync::Arc;

use atoll_proto::metapb;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::tests::{get, get_json, populated_ctx, post};
use crate::context::PdContext;

async fn delete(ctx: &Arc<PdContext>, uri: &str) -> (StatusCode, Value) {
    let resp = crate::server::build_router(ctx.clone())
        .oneshot(Request::delete(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn add_store(ctx: &PdContext, id: u64) {
    ctx.cluster
        .put_store(&metapb::Store {
            id,
            address: format!("127.0.0.1:{}", 20170 + id),
            ..Default::default()
        })
        .unwrap();
}

async fn state_name(ctx: &Arc<PdContext>, id: u64) -> Value {
    get_json(ctx, &format!("/pd/api/v1/store/{id}")).await["store"]["state_name"].clone()
}

#[tokio::test]
async fn remove_cancel_and_bury_stores() {
    let (ctx, _tx) = populated_ctx();
    // Stores 1 and 4 hold regions; 5 and 6 are empty.
    add_store(&ctx, 5);
    add_store(&ctx, 6);
    let (status, body) = delete(&ctx, "/pd/api/v1/store/4").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The store is set as Offline."))
    );
    assert_eq!(state_name(&ctx, 4).await, "Offline");
    let s = get_json(&ctx, "/pd/api/v1/store/4").await;
    assert_eq!(s["store"]["node_state"], metapb::NodeState::Removing as i32);
    // Canceled.
    let (status, body) = post(&ctx, "/pd/api/v1/store/4/state?state=Up", "").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The store's state is updated."))
    );
    assert_eq!(state_name(&ctx, 4).await, "Up");
    let (status, _) = post(&ctx, "/pd/api/v1/store/4/state?state=Sleeping", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An empty store goes Offline, then Tombstone at the next patrol.
    assert_eq!(delete(&ctx, "/pd/api/v1/store/5").await.0, StatusCode::OK);
    crate::schedule::coordinator::patrol_tick(&ctx, &mut Vec::new());
    assert_eq!(state_name(&ctx, 5).await, "Tombstone");
    // Hidden from the list, refused from now on.
    let stores = get_json(&ctx, "/pd/api/v1/stores").await;
    assert!(stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["store"]["id"] != 5));
    assert_eq!(delete(&ctx, "/pd/api/v1/store/5").await.0, StatusCode::GONE);
    assert_eq!(
        post(&ctx, "/pd/api/v1/store/5/state?state=Up", "").await.0,
        StatusCode::GONE
    );
    // Too few Up stores would remain (1, 4, 6 with max-replicas 3).
    assert_eq!(
        delete(&ctx, "/pd/api/v1/store/6").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(delete(&ctx, "/pd/api/v1/store/99").await.0, StatusCode::NOT_FOUND);
    // remove-tombstone forgets store 5.
    let (status, _) = delete(&ctx, "/pd/api/v1/stores/remove-tombstone").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&ctx, "/pd/api/v1/store/5").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn weights_labels_and_limits() {
    let (ctx, _tx) = populated_ctx();
    let (status, body) = post(
        &ctx,
        "/pd/api/v1/store/4/weight",
        r#"{"leader": 2, "region": 0.5}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The store's weight is updated."))
    );
    let s = get_json(&ctx, "/pd/api/v1/store/4").await;
    assert_eq!(s["status"]["leader_weight"], 2);
    assert_eq!(s["status"]["region_weight"], 0.5);
    // Region size 5 + 5 MiB over weight 0.5 (no space reported: the size alone).
    assert_eq!(s["status"]["region_score"], 20);
    for bad in [r#"{"leader": 1}"#, r#"{"leader": -1, "region": 1}"#, "[1]"] {
        assert_eq!(
            post(&ctx, "/pd/api/v1/store/4/weight", bad).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    let (status, body) = post(
        &ctx,
        "/pd/api/v1/store/4/label",
        r#"{"zone": "z2", "host": "h4"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The store's label is updated."))
    );
    let labels = get_json(&ctx, "/pd/api/v1/store/4").await["store"]["labels"].clone();
    assert_eq!(
        labels,
        json!([{"key": "host", "value": "h4"}, {"key": "zone", "value": "z2"}])
    );
    post(&ctx, "/pd/api/v1/store/4/label?force=true", r#"{"rack": "r1"}"#).await;
    let labels = get_json(&ctx, "/pd/api/v1/store/4").await["store"]["labels"].clone();
    assert_eq!(labels, json!([{"key": "rack", "value": "r1"}]));
    assert_eq!(
        post(&ctx, "/pd/api/v1/store/4/label", r#"{"zone": 1}"#).await.0,
        StatusCode::BAD_REQUEST
    );

    let limit = get_json(&ctx, "/pd/api/v1/stores/limit").await;
    assert_eq!(
        limit,
        json!({"1": {"add-peer": 15.0, "remove-peer": 15.0}, "4": {"add-peer": 15.0, "remove-peer": 15.0}})
    );
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/store/4/limit",
        r#"{"rate": 30, "type": "add-peer"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/stores/limit",
        r#"{"rate": 60, "type": "remove-peer"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let limit = get_json(&ctx, "/pd/api/v1/store/4/limit").await;
    assert_eq!(limit, json!({"add-peer": 30.0, "remove-peer": 60.0}));
    // Persisted in the schedule config.
    let sched = get_json(&ctx, "/pd/api/v1/config/schedule").await;
    assert_eq!(sched["store-limit"]["4"]["add-peer"], 30.0);
    assert_eq!(
        post(&ctx, "/pd/api/v1/store/4/limit", r#"{"rate": -1}"#).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            &ctx,
            "/pd/api/v1/store/4/limit",
            r#"{"rate": 1, "type": "snapshot"}"#
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn schedulers_are_listed_added_and_removed() {
    let (ctx, _tx) = populated_ctx();
    let all = json!([
        "balance-region-scheduler",
        "balance-leader-scheduler",
        "balance-hot-region-scheduler"
    ]);
    assert_eq!(get_json(&ctx, "/pd/api/v1/schedulers").await, all);
    let (status, body) = delete(&ctx, "/pd/api/v1/schedulers/balance-leader-scheduler").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The scheduler is removed."))
    );
    assert_eq!(
        delete(&ctx, "/pd/api/v1/schedulers/balance-leader-scheduler")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = post(
        &ctx,
        "/pd/api/v1/schedulers",
        r#"{"name": "balance-leader-scheduler"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("The scheduler is created."))
    );
    assert_eq!(get_json(&ctx, "/pd/api/v1/schedulers").await, all);
    for bad in [
        r#"{"name": "balance-leader-scheduler"}"#,
        r#"{"name": "shuffle"}"#,
        "{}",
    ] {
        assert_eq!(
            post(&ctx, "/pd/api/v1/schedulers", bad).await.0,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn regions_by_store_hotspots_and_config() {
    let (ctx, _tx) = populated_ctx();
    let r = get_json(&ctx, "/pd/api/v1/regions/store/4").await;
    assert_eq!(r["count"], 2);
    let (_, body) = get(&ctx, "/pd/api/v1/regions/store/9").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);
    let (status, body) = get(&ctx, "/pd/api/v1/hotspot/regions/write").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"as_peer": {}, "as_leader": {}})
    );
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/config/schedule",
        r#"{"leader-schedule-limit": 8, "tolerant-size-ratio": 2.5, "enable-one-way-merge": "true"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let s = get_json(&ctx, "/pd/api/v1/config/schedule").await;
    assert_eq!(
        (
            &s["leader-schedule-limit"],
            &s["tolerant-size-ratio"],
            &s["enable-one-way-merge"]
        ),
        (&json!(8), &json!(2.5), &json!("true"))
    );
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/config/replicate",
        r#"{"location-labels": "zone,host", "isolation-level": "zone"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r = get_json(&ctx, "/pd/api/v1/config/replicate").await;
    assert_eq!(
        (&r["location-labels"], &r["isolation-level"]),
        (&json!("zone,host"), &json!("zone"))
    );
    // The isolation level must be one of the location labels.
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/config/replicate",
        r#"{"isolation-level": "rack"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/config",
        r#"{"leader-schedule-policy": "weight"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn split_regions_waits_for_the_split() {
    use atoll_proto::pdpb;

    let (ctx, _tx) = populated_ctx();
    let node = {
        let ctx = ctx.clone();
        async move {
            // Plays the leader of region 2: waits for the operator, checks its step, splits.
            while !ctx.coordinator.operators.has(2) {
                tokio::task::yield_now().await;
            }
            let op = ctx.coordinator.operators.get(2).unwrap();
            assert!(op.kind().contains(crate::schedule::OpKind::SPLIT));
            let region = ctx.cluster.region_by_id(2).unwrap().unwrap();
            let resp = op.steps()[0].to_response(&region).unwrap();
            assert_eq!(
                resp.split_region,
                Some(pdpb::SplitRegion {
                    policy: pdpb::CheckPolicy::Usekey as i32,
                    keys: vec![b"c".to_vec(), b"k".to_vec()],
                })
            );
            let epoch = |v| {
                Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: v,
                })
            };
            let mut left = region.meta.clone();
            left.end_key = b"c".to_vec();
            left.region_epoch = epoch(4);
            let mut mid = region.meta.clone();
            mid.id = 20;
            mid.start_key = b"c".to_vec();
            mid.end_key = b"k".to_vec();
            mid.region_epoch = epoch(4);
            let mut right = region.meta.clone();
            right.id = 21;
            right.start_key = b"k".to_vec();
            right.region_epoch = epoch(4);
            ctx.cluster.report_split(&[left, mid, right]).unwrap();
            // A late heartbeat of the parent with its old epoch changes nothing.
            let stale = pdpb::RegionHeartbeatRequest {
                region: Some(region.meta.clone()),
                leader: region.leader,
                ..Default::default()
            };
            assert_eq!(
                ctx.cluster.region_heartbeat(&stale).unwrap(),
                crate::cluster::HeartbeatOutcome::Stale
            );
            crate::schedule::coordinator::on_region_heartbeat(&ctx, 2);
        }
    };
    // "c" in hex, "k" raw, "m" already starts region 6.
    let request = post(
        &ctx,
        "/pd/api/v1/regions/split",
        r#"{"split_keys": ["63", "k", "6d"], "retry_limit": 0}"#,
    );
    let ((status, body), ()) = tokio::join!(request, node);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"processed-percentage": 100, "regions-id": [6, 20, 21]})
    );
    // The split operator finished with the split.
    let done = ctx.coordinator.operators.status(2).unwrap();
    assert_eq!(done.status, atoll_proto::pdpb::OperatorStatus::Success);
    assert_eq!(ctx.cluster.region_by_key(b"d").unwrap().unwrap().id(), 20);
    assert_eq!(
        post(&ctx, "/pd/api/v1/regions/split", r#"{"split_keys": []}"#)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}
