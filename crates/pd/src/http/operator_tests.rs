//! Operators and runtime configuration over HTTP.

use std::sync::Arc;

use atoll_proto::metapb;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::tests::{get, get_json, populated_ctx, post};
use crate::context::PdContext;

const OPS: &str = "/pd/api/v1/operators";

async fn delete(ctx: &Arc<PdContext>, uri: &str) -> (StatusCode, Value) {
    let resp = crate::server::build_router(ctx.clone())
        .oneshot(Request::delete(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// The operator list (`get_json` wants indentation, which `[]` has not).
async fn list(ctx: &Arc<PdContext>, uri: &str) -> Vec<String> {
    let (status, body) = get(ctx, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// One operator's text (a JSON string).
async fn op_text(ctx: &Arc<PdContext>, uri: &str) -> Value {
    let (status, body) = get(ctx, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn add_store(ctx: &PdContext, id: u64) {
    ctx.cluster
        .put_store(&metapb::Store {
            id,
            address: format!("127.0.0.1:{}", 20160 + id),
            ..Default::default()
        })
        .unwrap();
}

#[tokio::test]
async fn create_show_list_cancel() {
    let (ctx, _tx) = populated_ctx();
    add_store(&ctx, 9);
    assert!(list(&ctx, OPS).await.is_empty());

    let body = r#"{"name":"add-peer","region_id":2,"store_id":9}"#;
    let (status, answer) = post(&ctx, OPS, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, "The operator is created.");

    let all = list(&ctx, OPS).await;
    assert_eq!(all.len(), 1);
    let text = &all[0];
    assert!(
        text.starts_with("admin-add-peer {add peer: store [9]} (kind:region,admin, region:2(2, 1)"),
        "{text}"
    );
    assert!(text.contains("0:{add learner peer "), "{text}");

    let one = op_text(&ctx, "/pd/api/v1/operators/2").await;
    assert!(
        one.as_str()
            .unwrap()
            .starts_with("status: RUNNING, operator: admin-add-peer"),
        "{one}"
    );
    // Filters by kind.
    assert_eq!(list(&ctx, "/pd/api/v1/operators?kind=admin").await.len(), 1);
    assert_eq!(list(&ctx, "/pd/api/v1/operators?kind=leader").await.len(), 0);
    let (status, _) = get(&ctx, "/pd/api/v1/operators?kind=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // One operator per region.
    let (status, answer) = post(
        &ctx,
        OPS,
        r#"{"name":"transfer-leader","region_id":2,"to_store_id":4}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer.as_str().unwrap().contains("already has an operator"),
        "{answer}"
    );

    let (status, answer) = delete(&ctx, "/pd/api/v1/operators/2").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, "The pending operator is canceled.");
    let one = op_text(&ctx, "/pd/api/v1/operators/2").await;
    assert!(one.as_str().unwrap().starts_with("status: CANCEL, "), "{one}");
    let (status, _) = delete(&ctx, "/pd/api/v1/operators/2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&ctx, "/pd/api/v1/operators/77").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(&ctx, "/pd/api/v1/operators/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Removing the leader's peer hands leadership over first.
    let (status, answer) = post(&ctx, OPS, r#"{"name":"remove-peer","region_id":2,"store_id":1}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = op_text(&ctx, "/pd/api/v1/operators/2").await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("steps:[0:{transfer leader from store 1 to store 4}, 1:{remove peer on store 1}]"),
        "{text}"
    );
    assert_eq!(list(&ctx, "/pd/api/v1/operators?kind=leader").await.len(), 1);
}

#[tokio::test]
async fn bad_operator_requests() {
    let (ctx, _tx) = populated_ctx();
    add_store(&ctx, 9);
    for (body, want) in [
        ("not json", "invalid request body"),
        (r#"{"region_id":2,"store_id":9}"#, "missing operator name"),
        (r#"{"name":"split-region","region_id":2}"#, "unknown operator"),
        (r#"{"name":"add-peer","store_id":9}"#, "missing region_id"),
        (
            r#"{"name":"add-peer","region_id":"two","store_id":9}"#,
            "invalid region_id",
        ),
        (
            r#"{"name":"add-peer","region_id":99,"store_id":9}"#,
            "region 99 not found",
        ),
        (r#"{"name":"add-peer","region_id":2}"#, "missing store_id"),
        (
            r#"{"name":"add-peer","region_id":2,"store_id":77}"#,
            "store 77 not found",
        ),
        (
            r#"{"name":"add-peer","region_id":2,"store_id":4}"#,
            "already has peer",
        ),
        (
            r#"{"name":"remove-peer","region_id":2,"store_id":9}"#,
            "has no peer on store 9",
        ),
        (
            r#"{"name":"transfer-leader","region_id":6,"to_store_id":4}"#,
            "not a voter",
        ),
        (
            r#"{"name":"transfer-leader","region_id":2,"to_store_id":1}"#,
            "already on store 1",
        ),
        (
            r#"{"name":"transfer-leader","region_id":2,"store_id":4}"#,
            "missing to_store_id",
        ),
    ] {
        let (status, answer) = post(&ctx, OPS, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let msg = answer.as_str().unwrap_or_default();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    assert!(list(&ctx, OPS).await.is_empty());
}

#[tokio::test]
async fn replication_config_changes_at_runtime() {
    let (ctx, _tx) = populated_ctx();
    let r = get_json(&ctx, "/pd/api/v1/config/replicate").await;
    assert_eq!(r["max-replicas"], 3);
    let (status, answer) = post(&ctx, "/pd/api/v1/config/replicate", r#"{"max-replicas": 5}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        get_json(&ctx, "/pd/api/v1/config/replicate").await["max-replicas"],
        5
    );
    assert_eq!(get_json(&ctx, "/pd/api/v1/cluster").await["max_peer_count"], 5);
    assert_eq!(ctx.cluster.cluster_meta().unwrap().max_peer_count, 5);

    // pd-ctl's `config set`: bare or qualified keys on /config, its value spellings.
    let (status, answer) = post(
        &ctx,
        "/pd/api/v1/config",
        r#"{"max-replicas": 1.0, "schedule.replica-schedule-limit": "16", "enable-make-up-replica": "false"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let c = get_json(&ctx, "/pd/api/v1/config").await;
    assert_eq!(c["replication"]["max-replicas"], 1);
    assert_eq!(c["schedule"]["replica-schedule-limit"], 16);
    assert_eq!(c["schedule"]["enable-make-up-replica"], "false");
    assert_eq!(get_json(&ctx, "/pd/api/v1/cluster").await["max_peer_count"], 1);
    let (status, _) = post(
        &ctx,
        "/pd/api/v1/config/schedule",
        r#"{"max-store-down-time": "1m"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get_json(&ctx, "/pd/api/v1/config/schedule").await["max-store-down-time"],
        "1m0s"
    );

    for (uri, body) in [
        ("/pd/api/v1/config/replicate", r#"{"max-replicas": 0}"#),
        ("/pd/api/v1/config/replicate", r#"{"max-replicas": "three"}"#),
        ("/pd/api/v1/config/replicate", r#"{"max-replica": 3}"#),
        ("/pd/api/v1/config/replicate", r#"{}"#),
        ("/pd/api/v1/config/replicate", r#"[1]"#),
        ("/pd/api/v1/config", r#"{"no-such-item": 1}"#),
        ("/pd/api/v1/config", r#"{"pd-server.key-type": "raw"}"#),
        ("/pd/api/v1/config/schedule", r#"{"max-store-down-time": 5}"#),
    ] {
        let (status, answer) = post(&ctx, uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body}: {answer}");
    }
    assert_eq!(
        get_json(&ctx, "/pd/api/v1/config/replicate").await["max-replicas"],
        1
    );
}
