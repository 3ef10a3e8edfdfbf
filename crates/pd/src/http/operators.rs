//! `/pd/api/v1/operators`: list, show, create and cancel operators, as PD serves them.
//!
//! Shapes (PD's): the list is a JSON array of operator strings (`?kind=admin|leader|region|
//! replica|split|merge|hot-region` filters, repeatable); one region's is a JSON string `"status: RUNNING, operator:
//! …"` (a recently ended one shows `SUCCESS`/`TIMEOUT`/`CANCEL`); creating takes pd-ctl's
//! bodies `{"name":"add-peer"|"remove-peer","region_id":N,"store_id":M}` and
//! `{"name":"transfer-leader","region_id":N,"to_store_id":M}` and answers
//! `"The operator is created."`; a region that already has an operator is refused (409).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{error, ok, parse_id};
use crate::context::PdContext;
use crate::schedule::coordinator::{self, store_states};
use crate::schedule::{builder, AddError, OpKind, Operator};
use crate::store_info::StoreStateName;

type Ctx = State<Arc<PdContext>>;

fn kind_filter(query: Option<&str>) -> Result<Vec<OpKind>, String> {
    let mut kinds = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "kind" {
            continue;
        }
        kinds.push(match value {
            "admin" => OpKind::ADMIN,
            "leader" => OpKind::LEADER,
            "region" => OpKind::REGION,
            "replica" => OpKind::REPLICA,
            "split" => OpKind::SPLIT,
            "merge" => OpKind::MERGE,
            "hot-region" => OpKind::HOT_REGION,
            other => return Err(format!("unknown operator kind {other:?}")),
        });
    }
    Ok(kinds)
}

pub async fn list(State(ctx): Ctx, RawQuery(query): RawQuery) -> Response {
    let kinds = match kind_filter(query.as_deref()) {
        Ok(k) => k,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let ops: Vec<String> = ctx
        .coordinator
        .operators
        .operators()
        .iter()
        .filter(|op| kinds.is_empty() || kinds.iter().any(|k| op.kind().contains(*k)))
        .map(ToString::to_string)
        .collect();
    ok(&ops)
}

fn not_found(region_id: u64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("[PD:schedule:ErrOperatorNotFound]no operator for region {region_id}"),
    )
}

pub async fn show(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match ctx.coordinator.operators.status(id) {
        Some(view) => ok(&view.text()),
        None => not_found(id),
    }
}

pub async fn cancel(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    match ctx.coordinator.operators.cancel(id, "admin stop") {
        Some(_) => ok(&"The pending operator is canceled."),
        None => not_found(id),
    }
}

/// A required id field: a non-negative integer (pd-ctl sends JSON numbers, maybe as floats).
fn id_field(body: &serde_json::Value, field: &str) -> Result<u64, String> {
    let v = body.get(field).ok_or_else(|| format!("missing {field}"))?;
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f > 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        })
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("invalid {field} {v}"))
}

/// Why the operator could not be made: bad input (400), the region is busy (409), or PD
/// failed (500).
enum Refusal {
    Bad(String),
    Conflict(String),
    Internal(String),
}

fn build(ctx: &PdContext, body: &[u8]) -> Result<Operator, Refusal> {
    let bad = Refusal::Bad;
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid request body: {e}")))?;
    let name = body
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("missing operator name".into()))?;
    let region_id = id_field(&body, "region_id").map_err(bad)?;
    let region = match ctx.cluster.region_by_id(region_id) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(bad(format!("region {region_id} not found"))),
        Err(e) => return Err(bad(e.to_string())),
    };
    if let Some(existing) = ctx.coordinator.operators.get(region_id) {
        return Err(Refusal::Conflict(format!(
            "region {region_id} already has an operator: {existing}"
        )));
    }
    let states = store_states(ctx);
    let is_up = |s: u64| states.get(&s) == Some(&StoreStateName::Up);
    let kind = OpKind::ADMIN;
    match name {
        "add-peer" => {
            let store_id = id_field(&body, "store_id").map_err(bad)?;
            match states.get(&store_id) {
                Some(StoreStateName::Up) => {}
                Some(state) => {
                    return Err(bad(format!(
                        "store {store_id} is {}, a peer can only be added to an Up store",
                        state.as_str()
                    )))
                }
                None => return Err(bad(format!("store {store_id} not found"))),
            }
            if let Some(p) = region.peer_on_store(store_id) {
                return Err(bad(format!(
                    "region {region_id} already has peer {} on store {store_id}",
                    p.id
                )));
            }
            let peer_id = ctx
                .id_alloc
                .alloc()
                .map_err(|e| Refusal::Internal(e.to_string()))?;
            builder::add_peer("admin-add-peer", kind, &region, store_id, peer_id).map_err(bad)
        }
        "remove-peer" => {
            let store_id = id_field(&body, "store_id").map_err(bad)?;
            builder::remove_peer("admin-remove-peer", kind, &region, store_id, &is_up).map_err(bad)
        }
        "transfer-leader" => {
            let store_id = id_field(&body, "to_store_id").map_err(bad)?;
            if !is_up(store_id) {
                return Err(bad(format!("store {store_id} is not Up")));
            }
            builder::transfer_leader("admin-transfer-leader", kind, &region, store_id).map_err(bad)
        }
        other => Err(bad(format!(
            "unknown operator {other:?} (supported: add-peer, remove-peer, transfer-leader)"
        ))),
    }
}

pub async fn create(State(ctx): Ctx, body: Bytes) -> Response {
    let op = match build(&ctx, &body) {
        Ok(op) => op,
        Err(Refusal::Bad(msg)) => return error(StatusCode::BAD_REQUEST, msg),
        Err(Refusal::Conflict(msg)) => return error(StatusCode::CONFLICT, msg),
        Err(Refusal::Internal(msg)) => return error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    };
    match coordinator::add_operator(&ctx, op) {
        Ok(()) => ok(&"The operator is created."),
        Err(e @ AddError::Exists { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ (AddError::LimitReached { .. } | AddError::StoreLimit)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
    }
}
