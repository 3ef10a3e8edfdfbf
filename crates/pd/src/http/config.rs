//! `GET`/`POST /pd/api/v1/config`, `/config/schedule`, `/config/replicate`,
//! `GET /pd/api/v1/config/pd-server`.
//!
//! Posts take PD's (and pd-ctl's) bodies: a JSON object of kebab-case items, partial updates
//! allowed (`{"max-replicas": 3}`); on `/config` an item may be qualified
//! (`"replication.max-replicas"`) or bare, found in `[schedule]` or `[replication]`. Values may
//! come as pd-ctl spells them (`"true"`, `3.0`, `"zone,host"`). An update is all or nothing,
//! persisted (see [`crate::options`]); a change of `max-replicas` also moves the cluster meta's
//! `max_peer_count`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{error, ok};
use crate::context::PdContext;
use crate::error::Error;
use crate::options::{section_has_key, Section};

type Ctx = State<Arc<PdContext>>;
type Items = serde_json::Map<String, serde_json::Value>;

pub fn schedule_json(ctx: &PdContext) -> serde_json::Value {
    let s = ctx.options.schedule();
    let b = |v: bool| v.to_string();
    serde_json::json!({
        "max-snapshot-count": s.max_snapshot_count,
        "max-pending-peer-count": s.max_pending_peer_count,
        "max-merge-region-size": s.max_merge_region_size,
        "max-merge-region-keys": s.max_merge_region_keys,
        "split-merge-interval": s.split_merge_interval.to_string(),
        "patrol-region-interval": s.patrol_region_interval.to_string(),
        "max-store-down-time": s.max_store_down_time.to_string(),
        "leader-schedule-limit": s.leader_schedule_limit,
        "leader-schedule-policy": s.leader_schedule_policy,
        "region-schedule-limit": s.region_schedule_limit,
        "replica-schedule-limit": s.replica_schedule_limit,
        "merge-schedule-limit": s.merge_schedule_limit,
        "hot-region-schedule-limit": s.hot_region_schedule_limit,
        "tolerant-size-ratio": s.tolerant_size_ratio,
        "low-space-ratio": s.low_space_ratio,
        "high-space-ratio": s.high_space_ratio,
        "enable-remove-down-replica": b(s.enable_remove_down_replica),
        "enable-replace-offline-replica": b(s.enable_replace_offline_replica),
        "enable-make-up-replica": b(s.enable_make_up_replica),
        "enable-remove-extra-replica": b(s.enable_remove_extra_replica),
        "enable-location-replacement": b(s.enable_location_replacement),
        "enable-tikv-split-region": b(s.enable_tikv_split_region),
        "enable-one-way-merge": b(s.enable_one_way_merge),
        "enable-cross-table-merge": b(s.enable_cross_table_merge),
        "hot-region-cache-hits-threshold": s.hot_region_cache_hits_threshold,
        "store-limit": s.store_limit,
    })
}

pub fn replication_json(ctx: &PdContext) -> serde_json::Value {
    let r = ctx.options.replication();
    serde_json::json!({
        "max-replicas": r.max_replicas,
        "location-labels": r.location_labels.join(","),
        "strictly-match-label": r.strictly_match_label.to_string(),
        "enable-placement-rules": r.enable_placement_rules.to_string(),
        "enable-placement-rules-cache": "false",
        "isolation-level": r.isolation_level,
    })
}

fn pd_server_json(ctx: &PdContext) -> serde_json::Value {
    let p = &ctx.config.pd_server;
    serde_json::json!({
        "use-region-storage": p.use_region_storage.to_string(),
        "max-gap-reset-ts": p.max_gap_reset_ts.to_string(),
        "key-type": p.key_type,
        "runtime-services": "",
        "metric-storage": p.metric_storage,
        "dashboard-address": p.dashboard_address,
        "flow-round-by-digit": p.flow_round_by_digit,
        "min-resolved-ts-persistence-interval": p.min_resolved_ts_persistence_interval.to_string(),
    })
}

pub async fn config(State(ctx): Ctx) -> Response {
    let c = &ctx.config;
    ok(&serde_json::json!({
        "name": c.name,
        "data-dir": c.data_dir.display().to_string(),
        "client-urls": c.client_urls,
        "peer-urls": c.peer_urls,
        "advertise-client-urls": c.advertise_client_urls,
        "advertise-peer-urls": c.advertise_peer_urls,
        "lease": 3,
        "tso-save-interval": "3s",
        "tso-update-physical-interval": "50ms",
        "schedule": schedule_json(&ctx),
        "replication": replication_json(&ctx),
        "pd-server": pd_server_json(&ctx),
        "gc": {
            "retention": c.gc.retention.to_string(),
            "advance-interval": c.gc.advance_interval.to_string(),
        },
    }))
}

pub async fn config_schedule(State(ctx): Ctx) -> Response {
    ok(&schedule_json(&ctx))
}

pub async fn config_replicate(State(ctx): Ctx) -> Response {
    ok(&replication_json(&ctx))
}

pub async fn config_pd_server(State(ctx): Ctx) -> Response {
    ok(&pd_server_json(&ctx))
}

/// The body as a non-empty JSON object.
fn items(body: &[u8]) -> Result<Items, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => Ok(m),
        serde_json::Value::Object(_) => Err("no config item given".into()),
        other => Err(format!("the body must be a JSON object, not {other}")),
    }
}

/// Splits `/config` items over the sections (qualified or bare keys).
fn route_items(all: Items) -> Result<Vec<(Section, Items)>, String> {
    let (mut schedule, mut replication) = (Items::new(), Items::new());
    for (key, value) in all {
        let (section, item) = match key.split_once('.') {
            Some(("schedule", item)) => (Section::Schedule, item.to_string()),
            Some(("replication", item)) => (Section::Replication, item.to_string()),
            Some((prefix, _)) => return Err(format!("config prefix {prefix} not found")),
            None if section_has_key(Section::Schedule, &key) => (Section::Schedule, key),
            None if section_has_key(Section::Replication, &key) => (Section::Replication, key),
            None => return Err(format!("config item {key} not found")),
        };
        match section {
            Section::Schedule => schedule.insert(item, value),
            Section::Replication => replication.insert(item, value),
        };
    }
    let mut out = Vec::new();
    if !schedule.is_empty() {
        out.push((Section::Schedule, schedule));
    }
    if !replication.is_empty() {
        out.push((Section::Replication, replication));
    }
    Ok(out)
}

fn apply(ctx: &PdContext, updates: &[(Section, Items)]) -> Response {
    match ctx.options.update(updates) {
        Ok(()) => {}
        Err(Error::InvalidRequest(msg)) => return error(StatusCode::BAD_REQUEST, msg),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    if updates.iter().any(|(s, _)| *s == Section::Replication) {
        let max = u32::try_from(ctx.options.max_replicas()).unwrap_or(u32::MAX);
        if let Err(e) = ctx.cluster.set_max_replicas(max) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    }
    ok(&"The config is updated.")
}

pub async fn post_config(State(ctx): Ctx, body: Bytes) -> Response {
    match items(&body).and_then(route_items) {
        Ok(updates) => apply(&ctx, &updates),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

pub async fn post_schedule(State(ctx): Ctx, body: Bytes) -> Response {
    match items(&body) {
        Ok(m) => apply(&ctx, &[(Section::Schedule, m)]),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

pub async fn post_replicate(State(ctx): Ctx, body: Bytes) -> Response {
    match items(&body) {
        Ok(m) => apply(&ctx, &[(Section::Replication, m)]),
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}
