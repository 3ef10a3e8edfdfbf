//! PD's HTTP JSON API (the subset `pd-ctl`-like tools read) and `/metrics`.
//!
//! Bodies are indented JSON like PD's; errors are JSON strings with PD's error text.
//!
//! Configuration ([`config`]) and operators ([`operators`]) live in their own files; the
//! cluster dashboard (`/dashboard`, `/dashboard/api/…`) in [`dashboard`].
//!
//! Atoll's own addition: `POST /pd/api/v1/gc/safepoint` advances the GC safe point (body
//! `{"safe_point": <ts>}`, `{"retention": "10m"}`, or `{}` for the configured `gc.retention`);
//! see [`gc_advance`].

mod config;
mod dashboard;
pub(crate) mod format;
mod hotspot;
mod model;
mod operators;
mod schedulers;
mod split;
mod stores;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::context::{PdContext, PD_RELEASE_VERSION};
use crate::duration::ReadableDuration;
use crate::gc::GcAdvanceError;
use crate::gc_driver::{self, Target};
use crate::metrics;
use crate::store_info::StoreStateName;
use model::{
    ClusterJson, GcAdvanceJson, GcSafePointJson, HeaderJson, HealthJson, MemberJson, MembersJson, RegionJson,
    RegionsJson, StoreJson, StoresJson, VersionJson,
};

type Ctx = State<Arc<PdContext>>;

/// An indented JSON response.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string_pretty(body) {
        Ok(mut s) => {
            s.push('\n');
            (
                status,
                [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
                s,
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok<T: Serialize>(body: &T) -> Response {
    json(StatusCode::OK, body)
}

/// PD's error body: the message as a JSON string.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    json(status, &msg.into())
}

/// A numeric path id, or the 400 message.
fn parse_id(raw: &str) -> Result<u64, String> {
    raw.parse::<u64>().map_err(|e| format!("invalid id {raw:?}: {e}"))
}

/// The HTTP routes (state already applied).
pub fn router(ctx: Arc<PdContext>) -> Router {
    Router::new()
        .route("/pd/api/v1/members", get(members))
        .route("/pd/api/v1/leader", get(leader))
        .route("/pd/api/v1/health", get(health))
        .route("/pd/api/v1/ping", get(ping))
        .route("/pd/api/v1/version", get(version))
        .route("/pd/api/v1/status", get(status))
        .route("/pd/api/v1/cluster", get(cluster))
        .route("/pd/api/v1/config", get(config::config).post(config::post_config))
        .route(
            "/pd/api/v1/config/schedule",
            get(config::config_schedule).post(config::post_schedule),
        )
        .route(
            "/pd/api/v1/config/replicate",
            get(config::config_replicate).post(config::post_replicate),
        )
        .route("/pd/api/v1/config/pd-server", get(config::config_pd_server))
        .route(
            "/pd/api/v1/operators",
            get(operators::list).post(operators::create),
        )
        .route(
            "/pd/api/v1/operators/{region_id}",
            get(operators::show).delete(operators::cancel),
        )
        .route("/pd/api/v1/stores", get(stores))
        .route("/pd/api/v1/store/{id}", get(store).delete(stores::delete_store))
        .route("/pd/api/v1/store/{id}/state", post(stores::set_state))
        .route("/pd/api/v1/store/{id}/label", post(stores::set_labels))
        .route("/pd/api/v1/store/{id}/weight", post(stores::set_weight))
        .route(
            "/pd/api/v1/store/{id}/limit",
            get(stores::store_limit).post(stores::set_store_limit),
        )
        .route(
            "/pd/api/v1/stores/limit",
            get(stores::all_limits).post(stores::set_all_limits),
        )
        .route(
            "/pd/api/v1/stores/remove-tombstone",
            delete(stores::remove_tombstone),
        )
        .route(
            "/pd/api/v1/schedulers",
            get(schedulers::list).post(schedulers::add),
        )
        .route("/pd/api/v1/schedulers/{name}", delete(schedulers::remove))
        .route("/pd/api/v1/hotspot/regions/write", get(hotspot::write))
        .route("/pd/api/v1/hotspot/regions/read", get(hotspot::read))
        .route("/pd/api/v1/regions/store/{id}", get(regions_by_store))
        .route("/pd/api/v1/regions/split", post(split::split))
        .route("/pd/api/v1/regions", get(regions))
        .route("/pd/api/v1/regions/count", get(region_count))
        .route("/pd/api/v1/region/id/{id}", get(region_by_id))
        .route("/pd/api/v1/region/key/{key}", get(region_by_key))
        .route("/pd/api/v1/gc/safepoint", get(gc_safe_point).post(gc_advance))
        .route("/metrics", get(metrics_text))
        .merge(dashboard::router())
        .with_state(ctx)
}

fn members_json(ctx: &PdContext) -> MembersJson {
    MembersJson {
        header: HeaderJson {
            cluster_id: ctx.cluster_id,
        },
        members: vec![MemberJson::from(&ctx.member)],
        leader: MemberJson::from(&ctx.member),
        etcd_leader: MemberJson::from(&ctx.member),
    }
}

async fn members(State(ctx): Ctx) -> Response {
    ok(&members_json(&ctx))
}

async fn leader(State(ctx): Ctx) -> Response {
    ok(&MemberJson::from(&ctx.member))
}

async fn health(State(ctx): Ctx) -> Response {
    ok(&vec![HealthJson {
        name: ctx.member.name.clone(),
        member_id: ctx.member.member_id,
        client_urls: ctx.member.client_urls.clone(),
        health: true,
    }])
}

async fn ping() -> Response {
    StatusCode::OK.into_response()
}

async fn version() -> Response {
    ok(&VersionJson {
        version: PD_RELEASE_VERSION.to_string(),
    })
}

async fn status(State(ctx): Ctx) -> Response {
    let start = ctx
        .start_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ok(&serde_json::json!({
        "build_ts": "",
        "version": PD_RELEASE_VERSION,
        "git_hash": "",
        "start_timestamp": start,
    }))
}

async fn cluster(State(ctx): Ctx) -> Response {
    let c = ctx.cluster.cluster_meta_or_default();
    ok(&ClusterJson {
        id: c.id,
        max_peer_count: c.max_peer_count,
    })
}

pub(crate) fn store_jsons(ctx: &PdContext) -> Vec<StoreJson> {
    let now = SystemTime::now();
    let max_down = ctx.options.max_store_down_time();
    let region_stats = ctx.cluster.store_region_stats();
    let schedule = ctx.options.schedule();
    ctx.cluster
        .stores()
        .iter()
        .map(|s| {
            StoreJson::build(
                s,
                region_stats.get(&s.id()).copied().unwrap_or_default(),
                now,
                max_down,
                schedule.leader_schedule_policy == "size",
                schedule.low_space_ratio,
            )
        })
        .collect()
}

async fn stores(State(ctx): Ctx) -> Response {
    // Like PD, tombstone stores are only listed when asked for by state; they are hidden here.
    let stores: Vec<StoreJson> = store_jsons(&ctx)
        .into_iter()
        .filter(|s| s.store.state_name != StoreStateName::Tombstone.as_str())
        .collect();
    ok(&StoresJson {
        count: stores.len(),
        stores,
    })
}

async fn store(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match store_jsons(&ctx).into_iter().find(|s| s.store.id == id) {
        Some(s) => ok(&s),
        None => error(
            StatusCode::NOT_FOUND,
            format!("[PD:core:ErrStoreNotFound]store {id} not found"),
        ),
    }
}

async fn regions(State(ctx): Ctx) -> Response {
    let regions: Vec<RegionJson> = ctx.cluster.regions().iter().map(RegionJson::from).collect();
    ok(&RegionsJson {
        count: regions.len(),
        regions,
    })
}

async fn regions_by_store(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let regions: Vec<RegionJson> = ctx
        .cluster
        .regions()
        .iter()
        .filter(|r| r.peer_on_store(id).is_some())
        .map(RegionJson::from)
        .collect();
    ok(&RegionsJson {
        count: regions.len(),
        regions,
    })
}

async fn region_count(State(ctx): Ctx) -> Response {
    ok(&RegionsJson {
        count: ctx.cluster.region_count(),
        regions: Vec::new(),
    })
}

async fn region_by_id(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if id == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "[PD:region:ErrRegionInvalidID]invalid region id",
        );
    }
    match ctx.cluster.region_by_id(id) {
        Ok(Some(r)) => ok(&RegionJson::from(&r)),
        Ok(None) | Err(_) => error(
            StatusCode::NOT_FOUND,
            format!("[PD:region:ErrRegionNotFound]region {id} not found"),
        ),
    }
}

/// The key is the raw (URL-decoded) key string, like PD's `region/key/{key}`.
async fn region_by_key(State(ctx): Ctx, Path(key): Path<String>) -> Response {
    match ctx.cluster.region_by_key(key.as_bytes()) {
        Ok(Some(r)) => ok(&RegionJson::from(&r)),
        Ok(None) | Err(_) => error(
            StatusCode::NOT_FOUND,
            format!("[PD:region:ErrRegionNotFound]region {key} not found"),
        ),
    }
}

async fn gc_safe_point(State(ctx): Ctx) -> Response {
    let ssps = ctx.gc.service_safe_points();
    // Like PD, expired entries (not pruned yet) are listed but do not count for the minimum.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let min = ssps
        .iter()
        .filter(|s| s.expired_at > now)
        .map(|s| s.safe_point)
        .min()
        .unwrap_or(0);
    ok(&GcSafePointJson {
        service_gc_safe_points: ssps,
        min_service_gc_safe_point: min,
        gc_safe_point: ctx.gc.safe_point(),
    })
}

/// The body of `POST /pd/api/v1/gc/safepoint`: at most one of the two fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcAdvanceBody {
    safe_point: Option<u64>,
    retention: Option<String>,
}

fn gc_target(ctx: &PdContext, body: &[u8]) -> Result<Target, String> {
    let body: GcAdvanceBody = if body.iter().all(u8::is_ascii_whitespace) {
        GcAdvanceBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?
    };
    match (body.safe_point, body.retention) {
        (Some(_), Some(_)) => Err("give either safe_point or retention, not both".into()),
        (Some(ts), None) => Ok(Target::SafePoint(ts)),
        (None, Some(r)) => ReadableDuration::parse(&r)
            .map(|d| Target::Retention(d.0))
            .map_err(|e| format!("invalid retention: {e}")),
        (None, None) if ctx.config.gc.retention.0.is_zero() => {
            Err("no safe_point or retention given, and gc.retention is 0s".into())
        }
        (None, None) => Ok(Target::Retention(ctx.config.gc.retention.0)),
    }
}

/// Advances the GC safe point (Atoll's addition to PD's API). `safe_point` must be neither
/// behind the GC safe point (409 Conflict) nor ahead of the current TSO (400); `retention`
/// (or, with an empty body, `gc.retention`) asks for `now - retention` and is a no-op when that
/// is behind. Either way the unexpired service safe points hold the target back, and the answer
/// (200) names the one that did. Every lock at or below the new safe point is resolved first;
/// if some could not be, nothing moves and the answer is 503.
async fn gc_advance(State(ctx): Ctx, body: Bytes) -> Response {
    let target = match gc_target(&ctx, &body) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match gc_driver::advance(&ctx, target).await {
        Ok(a) => {
            tracing::info!(
                ?target,
                previous = a.previous,
                safe_point = a.safe_point,
                blocked_by = a.blocked_by.as_ref().map(|b| b.service_id.as_str()),
                "gc safe point advance requested over http"
            );
            ok(&GcAdvanceJson {
                advanced: a.advanced(),
                requested_safe_point: a.requested,
                previous_gc_safe_point: a.previous,
                gc_safe_point: a.safe_point,
                blocked_by: a.blocked_by,
            })
        }
        Err(e @ GcAdvanceError::MovesBack { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ GcAdvanceError::InFuture { .. }) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ GcAdvanceError::Internal(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e @ GcAdvanceError::LocksUnresolved { .. }) => {
            tracing::warn!(?target, error = %e, "gc safe point advance requested over http failed");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

async fn metrics_text(State(ctx): Ctx) -> Response {
    let now = SystemTime::now();
    let max_down = ctx.options.max_store_down_time();
    let mut counts = std::collections::HashMap::<&'static str, i64>::new();
    for s in ctx.cluster.stores() {
        *counts.entry(s.state_name(now, max_down).as_str()).or_default() += 1;
    }
    for name in ["Up", "Offline", "Tombstone", "Disconnected", "Down"] {
        let label = format!("store_{}_count", name.to_lowercase());
        metrics::CLUSTER_STATUS
            .with_label_values(&[label.as_str()])
            .set(counts.get(name).copied().unwrap_or(0));
    }
    metrics::CLUSTER_STATUS
        .with_label_values(&["region_count"])
        .set(ctx.cluster.region_count() as i64);
    let body = metrics::encode_text();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
