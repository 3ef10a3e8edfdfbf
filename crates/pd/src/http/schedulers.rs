//! `/pd/api/v1/schedulers`: list (`GET`, a JSON array of names), add (`POST
//! {"name":"balance-leader-scheduler"}`), remove (`DELETE /schedulers/{name}`), as PD serves
//! them. Unknown names are 400 on add and 404 on remove; adding a running one is 400 (PD's
//! "scheduler existed").

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{error, ok};
use crate::context::PdContext;
use crate::schedule::schedulers::SchedulerError;

type Ctx = State<Arc<PdContext>>;

pub async fn list(State(ctx): Ctx) -> Response {
    ok(&ctx.coordinator.schedulers.list())
}

pub async fn add(State(ctx): Ctx, body: Bytes) -> Response {
    let name = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => match v.get("name").and_then(|n| n.as_str()) {
            Some(n) => n.to_string(),
            None => return error(StatusCode::BAD_REQUEST, "missing scheduler name"),
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")),
    };
    match ctx.coordinator.schedulers.add(&name) {
        Ok(()) => ok(&"The scheduler is created."),
        Err(e @ (SchedulerError::Unknown(_) | SchedulerError::Exists(_) | SchedulerError::NotRunning(_))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e @ SchedulerError::Internal(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn remove(State(ctx): Ctx, Path(name): Path<String>) -> Response {
    match ctx.coordinator.schedulers.remove(&name) {
        Ok(()) => ok(&"The scheduler is removed."),
        Err(e @ (SchedulerError::Unknown(_) | SchedulerError::NotRunning(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
