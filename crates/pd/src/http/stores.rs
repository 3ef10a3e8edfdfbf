//! Changing stores, as PD serves it:
//!
//! * `DELETE /pd/api/v1/store/{id}` — start removing the store (Offline; Tombstone once it
//!   holds no region): 200 `"The store is set as Offline."`, 404 unknown store, 410 already
//!   removed, 400 if fewer Up stores than `max-replicas` would remain;
//! * `POST /pd/api/v1/store/{id}/state?state=Up|Offline` — cancel a removal / start one;
//! * `POST /pd/api/v1/store/{id}/label` — `{"zone":"z1","host":"h1"}` merged into the labels
//!   (`?force=true`: replaces them);
//! * `POST /pd/api/v1/store/{id}/weight` — `{"leader":2,"region":1}` (both required, ≥ 0);
//! * `GET`/`POST /pd/api/v1/store/{id}/limit` — `{"rate":20,"type":"add-peer"}` (no type: both)
//!   in regions per minute;
//! * `GET`/`POST /pd/api/v1/stores/limit` — every store's limits / set them all;
//! * `DELETE /pd/api/v1/stores/remove-tombstone` — forget the Tombstone stores.

use std::sync::Arc;

use atoll_proto::metapb;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{error, ok, parse_id};
use crate::cluster::StoreChangeError;
use crate::context::PdContext;
use crate::error::Error;
use crate::options::Section;
use crate::schedule::store_limit::LimitType;
use crate::store_info::StoreWeight;

type Ctx = State<Arc<PdContext>>;

fn refused(e: StoreChangeError) -> Response {
    match e {
        StoreChangeError::NotFound(id) => error(
            StatusCode::NOT_FOUND,
            format!("[PD:core:ErrStoreNotFound]store {id} not found"),
        ),
        StoreChangeError::Removed(id) => error(
            StatusCode::GONE,
            format!("[PD:core:ErrStoreRemoved]store {id} has been removed"),
        ),
        StoreChangeError::Refused(msg) => error(StatusCode::BAD_REQUEST, msg),
        StoreChangeError::Internal(Error::NotBootstrapped) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            Error::NotBootstrapped.to_string(),
        ),
        StoreChangeError::Internal(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("the body must be a JSON object, not {other}")),
        Err(e) => Err(format!("invalid request body: {e}")),
    }
}

macro_rules! id_or_400 {
    ($raw:expr) => {
        match parse_id(&$raw) {
            Ok(id) => id,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        }
    };
}

pub async fn delete_store(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = id_or_400!(id);
    match ctx.cluster.remove_store(id) {
        Ok(()) => ok(&"The store is set as Offline."),
        Err(e) => refused(e),
    }
}

pub async fn set_state(State(ctx): Ctx, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let id = id_or_400!(id);
    let result = match query_value(query.as_deref(), "state") {
        Some(s) if s.eq_ignore_ascii_case("up") => ctx.cluster.up_store(id),
        Some(s) if s.eq_ignore_ascii_case("offline") => ctx.cluster.remove_store(id),
        Some(other) => return error(StatusCode::BAD_REQUEST, format!("invalid state {other}")),
        None => return error(StatusCode::BAD_REQUEST, "state is required"),
    };
    match result {
        Ok(()) => ok(&"The store's state is updated."),
        Err(e) => refused(e),
    }
}

pub async fn set_labels(
    State(ctx): Ctx,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let id = id_or_400!(id);
    let items = match json_object(&body) {
        Ok(m) => m,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let mut labels = Vec::with_capacity(items.len());
    for (key, value) in items {
        let Some(value) = value.as_str() else {
            return error(StatusCode::BAD_REQUEST, format!("label {key} must be a string"));
        };
        if key.is_empty() || value.is_empty() {
            return error(StatusCode::BAD_REQUEST, "label keys and values must not be empty");
        }
        labels.push(metapb::StoreLabel {
            key,
            value: value.to_string(),
        });
    }
    let force = query_value(query.as_deref(), "force") == Some("true");
    match ctx.cluster.set_store_labels(id, &labels, force) {
        Ok(()) => ok(&"The store's label is updated."),
        Err(e) => refused(e),
    }
}

fn number(items: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<f64, String> {
    let v = items.get(key).ok_or_else(|| format!("{key} weight unset"))?;
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("bad format {key} weight"))
}

pub async fn set_weight(State(ctx): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let id = id_or_400!(id);
    let items = match json_object(&body) {
        Ok(m) => m,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let weight = match (number(&items, "leader"), number(&items, "region")) {
        (Ok(leader), Ok(region)) => StoreWeight { leader, region },
        (Err(msg), _) | (_, Err(msg)) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match ctx.cluster.set_store_weight(id, weight) {
        Ok(()) => ok(&"The store's weight is updated."),
        Err(e) => refused(e),
    }
}

fn limit_json(ctx: &PdContext, id: u64) -> serde_json::Value {
    serde_json::json!({
        "add-peer": ctx.options.store_limit(id, LimitType::AddPeer),
        "remove-peer": ctx.options.store_limit(id, LimitType::RemovePeer),
    })
}

/// `{"rate": N, "type": "add-peer"|"remove-peer"}` (no type: both).
fn limit_body(body: &[u8]) -> Result<(f64, Vec<LimitType>), String> {
    let items = json_object(body)?;
    let rate = items
        .get("rate")
        .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .ok_or("rate unset")?;
    if rate.is_nan() || rate < 0.0 {
        return Err("invalid rate which should be larger than 0".into());
    }
    let types = match items.get("type").and_then(|t| t.as_str()) {
        None => LimitType::ALL.to_vec(),
        Some(t) => vec![LimitType::parse(t).ok_or_else(|| format!("unknown type {t}"))?],
    };
    Ok((rate, types))
}

/// Sets the limits of `stores` through the runtime configuration (`[schedule] store-limit`).
fn set_limits(ctx: &PdContext, stores: &[u64], rate: f64, types: &[LimitType]) -> Response {
    let mut map = serde_json::Map::new();
    for id in stores {
        let mut l = limit_json(ctx, *id);
        for t in types {
            l[t.name()] = serde_json::json!(rate);
        }
        map.insert(id.to_string(), l);
    }
    let current = serde_json::to_value(ctx.options.schedule().store_limit).unwrap_or_default();
    let mut merged = current.as_object().cloned().unwrap_or_default();
    merged.extend(map);
    let mut items = serde_json::Map::new();
    items.insert("store-limit".into(), serde_json::Value::Object(merged));
    match ctx.options.update(&[(Section::Schedule, items)]) {
        Ok(()) => ok(&"The store's limit is updated."),
        Err(Error::InvalidRequest(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn store_limit(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = id_or_400!(id);
    if ctx.cluster.get_store(id).is_err() {
        return refused(StoreChangeError::NotFound(id));
    }
    ok(&limit_json(&ctx, id))
}

pub async fn set_store_limit(State(ctx): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let id = id_or_400!(id);
    match ctx.cluster.get_store(id) {
        Ok(s) if s.is_tombstone() => return refused(StoreChangeError::Removed(id)),
        Ok(_) => {}
        Err(_) => return refused(StoreChangeError::NotFound(id)),
    }
    match limit_body(&body) {
        Ok((rate, types)) => set_limits(&ctx, &[id], rate, &types),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

fn live_stores(ctx: &PdContext) -> Vec<u64> {
    ctx.cluster
        .stores()
        .iter()
        .filter(|s| !s.is_tombstone())
        .map(|s| s.id())
        .collect()
}

pub async fn all_limits(State(ctx): Ctx) -> Response {
    let map: serde_json::Map<String, serde_json::Value> = live_stores(&ctx)
        .into_iter()
        .map(|id| (id.to_string(), limit_json(&ctx, id)))
        .collect();
    ok(&map)
}

pub async fn set_all_limits(State(ctx): Ctx, body: Bytes) -> Response {
    match limit_body(&body) {
        Ok((rate, types)) => set_limits(&ctx, &live_stores(&ctx), rate, &types),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

pub async fn remove_tombstone(State(ctx): Ctx) -> Response {
    match ctx.cluster.remove_tombstone_stores() {
        Ok(ids) => {
            for id in ids {
                ctx.coordinator.store_limiter.forget(id);
            }
            ok(&"Remove tombstone successfully.")
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
