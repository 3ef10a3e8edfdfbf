//! The cluster dashboard: one page at `/dashboard` (HTML, CSS and JS compiled into the binary,
//! no external resources) and the JSON it reads under `/dashboard/api/` — what PD's
//! `/pd/api/v1` lacks or shows less readably:
//!
//! * `GET /dashboard/api/cluster` — members and leader, cluster id, version, uptime, counts,
//!   the current TSO and the GC safe point with its age;
//! * `GET /dashboard/api/stores` — every store (tombstones too) with state, labels, space,
//!   region and leader counts, last heartbeat age;
//! * `GET /dashboard/api/regions` — filtered, sorted, paged regions with readable keys (see
//!   [`regions`] for the query); `GET /dashboard/api/regions/{id}` — one region and its operator;
//! * `GET /dashboard/api/operators` — running operators and those ended in the last 10 minutes;
//! * `GET /dashboard/api/heatmap?metric=written_bytes|read_bytes|written_keys|read_keys&window=60m|10m&rows=N`
//!   — the key heatmap ([`crate::heatmap`]).
//!
//! 64-bit values JavaScript cannot hold exactly (cluster and member ids, timestamps) are JSON
//! strings; region, store and peer ids are numbers.
//!
//! Errors are `{"error": "<message>"}` with a 4xx status (400 bad input, 404 unknown region or
//! path); nothing on these paths panics on input.

mod keys;
mod regions;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::format::rfc3339;
use super::json;
use crate::context::{PdContext, PD_RELEASE_VERSION};
use crate::heatmap::Metric;
use crate::schedule::Operator;
use crate::tso::Timestamp;
use keys::{describe, KeyJson, Side};
use regions::{RegionQuery, RegionRowJson};

type Ctx = State<Arc<PdContext>>;
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// Default and largest number of heatmap rows.
const HEATMAP_ROWS: usize = 128;
const HEATMAP_MAX_ROWS: usize = 512;

#[derive(Debug, Serialize)]
struct ErrorJson {
    error: String,
}

fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    json(status, &ErrorJson { error: msg.into() })
}

fn ok<T: Serialize>(body: &T) -> Response {
    json(StatusCode::OK, body)
}

/// The query's pairs, or why not.
fn params(p: Params) -> Result<Vec<(String, String)>, String> {
    p.map(|Query(v)| v).map_err(|e| format!("malformed query: {e}"))
}

pub fn router() -> Router<Arc<PdContext>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/dashboard.css", get(style))
        .route("/dashboard/api/cluster", get(cluster))
        .route("/dashboard/api/stores", get(stores))
        .route("/dashboard/api/regions", get(region_list))
        .route("/dashboard/api/regions/{id}", get(region_detail))
        .route("/dashboard/api/operators", get(operators))
        .route("/dashboard/api/heatmap", get(heatmap))
        .route("/dashboard/api/{*rest}", get(unknown_api))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

async fn unknown_api(Path(rest): Path<String>) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        format!("no dashboard API /dashboard/api/{rest} (cluster, stores, regions, regions/{{id}}, operators, heatmap)"),
    )
}

fn age_secs(now: SystemTime, then: SystemTime) -> f64 {
    let d = now.duration_since(then).unwrap_or_default();
    (d.as_secs_f64() * 10.0).round() / 10.0
}

#[derive(Debug, Serialize)]
struct MemberRowJson {
    name: String,
    member_id: String,
    client_urls: Vec<String>,
    peer_urls: Vec<String>,
    is_leader: bool,
}

#[derive(Debug, Serialize)]
struct TsoJson {
    /// The composed timestamp (physical ms << 18 | logical), as a string.
    ts: String,
    physical_ms: i64,
    logical: i64,
    time: String,
}

#[derive(Debug, Serialize)]
struct GcJson {
    /// A timestamp, as a string.
    safe_point: String,
    /// When the safe point's physical time was (none while it is 0).
    time: Option<String>,
    age_secs: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ClusterSummaryJson {
    /// As a string, like the other 64-bit values JavaScript cannot hold exactly.
    cluster_id: String,
    version: &'static str,
    bootstrapped: bool,
    max_replicas: u64,
    leader: String,
    members: Vec<MemberRowJson>,
    start_time: String,
    uptime_secs: f64,
    now: String,
    store_count: usize,
    region_count: usize,
    tso: TsoJson,
    gc: GcJson,
}

fn ts_time(ts: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ts >> 18)
}

async fn cluster(State(ctx): Ctx) -> Response {
    let now = SystemTime::now();
    let tso = ctx.tso.current();
    let gc = ctx.gc.safe_point();
    let member = &ctx.member;
    let stores = ctx.cluster.stores();
    ok(&ClusterSummaryJson {
        cluster_id: ctx.cluster_id.to_string(),
        version: PD_RELEASE_VERSION,
        bootstrapped: ctx.cluster.is_bootstrapped(),
        max_replicas: ctx.options.max_replicas(),
        leader: member.name.clone(),
        members: vec![MemberRowJson {
            name: member.name.clone(),
            member_id: member.member_id.to_string(),
            client_urls: member.client_urls.clone(),
            peer_urls: member.peer_urls.clone(),
            is_leader: true,
        }],
        start_time: rfc3339(ctx.start_time),
        uptime_secs: age_secs(now, ctx.start_time),
        now: rfc3339(now),
        store_count: stores.iter().filter(|s| !s.is_tombstone()).count(),
        region_count: ctx.cluster.region_count(),
        tso: TsoJson {
            ts: Timestamp::compose(tso).to_string(),
            physical_ms: tso.physical,
            logical: tso.logical,
            time: rfc3339(UNIX_EPOCH + Duration::from_millis(tso.physical.max(0) as u64)),
        },
        gc: GcJson {
            safe_point: gc.to_string(),
            time: (gc > 0).then(|| rfc3339(ts_time(gc))),
            age_secs: (gc > 0).then(|| age_secs(now, ts_time(gc))),
        },
    })
}

#[derive(Debug, Serialize)]
struct StoreLabelJson {
    key: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct StoreRowJson {
    id: u64,
    address: String,
    status_address: String,
    version: String,
    /// Up, Disconnected, Down, Offline or Tombstone.
    state: &'static str,
    labels: Vec<StoreLabelJson>,
    capacity: u64,
    available: u64,
    used: u64,
    region_count: usize,
    leader_count: usize,
    /// MiB.
    region_size: i64,
    last_heartbeat: Option<String>,
    last_heartbeat_age_secs: Option<f64>,
    uptime_secs: Option<f64>,
    is_busy: bool,
    slow_score: u64,
}

#[derive(Debug, Serialize)]
struct StoresJson {
    count: usize,
    stores: Vec<StoreRowJson>,
}

async fn stores(State(ctx): Ctx) -> Response {
    let now = SystemTime::now();
    let max_down = ctx.options.max_store_down_time();
    let stats = ctx.cluster.store_region_stats();
    let stores: Vec<StoreRowJson> = ctx
        .cluster
        .stores()
        .iter()
        .map(|s| {
            let (capacity, available) = s.space();
            let st = s.stats.clone().unwrap_or_default();
            let used = if st.used_size > 0 {
                st.used_size
            } else {
                capacity.saturating_sub(available)
            };
            let rs = stats.get(&s.id()).copied().unwrap_or_default();
            StoreRowJson {
                id: s.id(),
                address: s.meta.address.clone(),
                status_address: s.meta.status_address.clone(),
                version: s.meta.version.clone(),
                state: s.state_name(now, max_down).as_str(),
                labels: s
                    .meta
                    .labels
                    .iter()
                    .map(|l| StoreLabelJson {
                        key: l.key.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                capacity,
                available,
                used,
                region_count: rs.region_count,
                leader_count: rs.leader_count,
                region_size: rs.region_size,
                last_heartbeat: s.last_heartbeat().map(rfc3339),
                last_heartbeat_age_secs: s.last_heartbeat().map(|t| age_secs(now, t)),
                uptime_secs: s.uptime().map(|u| u.as_secs_f64()),
                is_busy: st.is_busy,
                slow_score: st.slow_score,
            }
        })
        .collect();
    ok(&StoresJson {
        count: stores.len(),
        stores,
    })
}

async fn region_list(State(ctx): Ctx, p: Params) -> Response {
    let q = match params(p).and_then(|p| RegionQuery::parse(&p)) {
        Ok(q) => q,
        Err(msg) => return fail(StatusCode::BAD_REQUEST, msg),
    };
    ok(&regions::list(&ctx, &q))
}

#[derive(Debug, Serialize)]
struct StepJson {
    text: String,
    done: bool,
    current: bool,
}

#[derive(Debug, Serialize)]
struct OperatorJson {
    region_id: u64,
    desc: String,
    brief: String,
    kind: String,
    /// RUNNING, SUCCESS, TIMEOUT, CANCEL or REPLACE.
    status: &'static str,
    created_at: String,
    age_secs: f64,
    /// For ended operators: how long ago.
    ended_ago_secs: Option<f64>,
    steps: Vec<StepJson>,
    text: String,
}

fn operator_json(
    op: &Operator,
    status: &'static str,
    now: SystemTime,
    ended_ago: Option<Duration>,
) -> OperatorJson {
    let running = ended_ago.is_none();
    OperatorJson {
        region_id: op.region_id(),
        desc: op.desc().to_string(),
        brief: op.brief().to_string(),
        kind: op.kind().to_string(),
        status,
        created_at: rfc3339(op.created_at()),
        age_secs: age_secs(now, op.created_at()),
        ended_ago_secs: ended_ago.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        steps: op
            .steps()
            .iter()
            .enumerate()
            .map(|(i, s)| StepJson {
                text: s.to_string(),
                done: i < op.current_step() || (!running && status == "SUCCESS"),
                current: running && i == op.current_step(),
            })
            .collect(),
        text: op.to_string(),
    }
}

#[derive(Debug, Serialize)]
struct RegionDetailJson {
    region: RegionRowJson,
    written_bytes: u64,
    read_bytes: u64,
    written_keys: u64,
    read_keys: u64,
    cpu_usage: u64,
    term: u64,
    down_peers: Vec<DownPeerRowJson>,
    /// The running operator, else the one ended in the last 10 minutes.
    operator: Option<OperatorJson>,
}

#[derive(Debug, Serialize)]
struct DownPeerRowJson {
    peer_id: u64,
    store_id: u64,
    down_seconds: u64,
}

async fn region_detail(State(ctx): Ctx, Path(raw): Path<String>) -> Response {
    let id = match raw.parse::<u64>() {
        Ok(id) if id > 0 => id,
        _ => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("invalid region id {raw:?}: a positive integer is expected"),
            )
        }
    };
    let region = match ctx.cluster.region_by_id(id) {
        Ok(Some(r)) => r,
        Ok(None) => return fail(StatusCode::NOT_FOUND, format!("region {id} not found")),
        Err(e) => return fail(StatusCode::NOT_FOUND, format!("region {id} not found: {e}")),
    };
    let now = SystemTime::now();
    let operator = match ctx.coordinator.operators.get(id) {
        Some(op) => Some(operator_json(&op, "RUNNING", now, None)),
        None => ctx
            .coordinator
            .operators
            .recent(Instant::now())
            .into_iter()
            .find(|r| r.operator.region_id() == id)
            .map(|r| operator_json(&r.operator, r.status.as_str_name(), now, Some(r.ended.elapsed()))),
    };
    ok(&RegionDetailJson {
        region: RegionRowJson::from(&region),
        written_bytes: region.written_bytes,
        read_bytes: region.read_bytes,
        written_keys: region.written_keys,
        read_keys: region.read_keys,
        cpu_usage: region.cpu_usage,
        term: region.term,
        down_peers: region
            .down_peers
            .iter()
            .map(|d| DownPeerRowJson {
                peer_id: d.peer.map_or(0, |p| p.id),
                store_id: d.peer.map_or(0, |p| p.store_id),
                down_seconds: d.down_seconds,
            })
            .collect(),
        operator,
    })
}

#[derive(Debug, Serialize)]
struct OperatorsJson {
    running: Vec<OperatorJson>,
    recent: Vec<OperatorJson>,
}

/// At most this many ended operators are listed.
const RECENT_OPERATORS: usize = 100;

async fn operators(State(ctx): Ctx) -> Response {
    let now = SystemTime::now();
    let instant = Instant::now();
    let running = ctx
        .coordinator
        .operators
        .operators()
        .iter()
        .map(|op| operator_json(op, "RUNNING", now, None))
        .collect();
    let recent = ctx
        .coordinator
        .operators
        .recent(instant)
        .iter()
        .take(RECENT_OPERATORS)
        .map(|r| {
            operator_json(
                &r.operator,
                r.status.as_str_name(),
                now,
                Some(instant.saturating_duration_since(r.ended)),
            )
        })
        .collect();
    ok(&OperatorsJson { running, recent })
}

#[derive(Debug, Serialize)]
struct HeatmapJson {
    metric: &'static str,
    window: &'static str,
    bucket_secs: u64,
    /// Column start times, unix seconds, oldest first.
    times: Vec<u64>,
    /// Row boundaries (rows + 1), in key order.
    keys: Vec<KeyJson>,
    /// `values[column][row]`.
    values: Vec<Vec<u64>>,
    max: u64,
    /// The heatmap clock's now, unix seconds.
    now: u64,
}

fn heatmap_query(
    p: &[(String, String)],
    buckets: usize,
) -> Result<(Metric, &'static str, usize, usize), String> {
    let (mut metric, mut window, mut columns, mut rows) =
        (Metric::WrittenBytes, "60m", buckets, HEATMAP_ROWS);
    for (name, v) in p {
        match name.as_str() {
            "metric" => {
                metric = Metric::parse(v).ok_or_else(|| {
                    format!("unknown metric {v:?} (written_bytes, read_bytes, written_keys, read_keys)")
                })?
            }
            "window" => {
                (window, columns) = match v.as_str() {
                    "60m" | "1h" => ("60m", buckets),
                    "10m" => ("10m", buckets.min(10)),
                    _ => return Err(format!("unknown window {v:?} (60m or 10m)")),
                }
            }
            "rows" => {
                rows = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=HEATMAP_MAX_ROWS).contains(n))
                    .ok_or_else(|| format!("invalid rows {v:?}: 1 to {HEATMAP_MAX_ROWS}"))?
            }
            other => return Err(format!("unknown query parameter {other:?}")),
        }
    }
    Ok((metric, window, columns, rows))
}

async fn heatmap(State(ctx): Ctx, p: Params) -> Response {
    let cfg = ctx.heatmap.config();
    let (metric, window, columns, rows) = match params(p).and_then(|p| heatmap_query(&p, cfg.buckets)) {
        Ok(q) => q,
        Err(msg) => return fail(StatusCode::BAD_REQUEST, msg),
    };
    let view = ctx.heatmap.view(columns, metric, rows);
    let n = view.keys.len();
    let keys = view
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            describe(
                k,
                if i + 1 == n && i > 0 {
                    Side::End
                } else {
                    Side::Start
                },
            )
        })
        .collect();
    ok(&HeatmapJson {
        metric: metric.name(),
        window,
        bucket_secs: cfg.bucket_secs,
        max: view.max(),
        times: view.times,
        keys,
        values: view.values,
        now: ctx.heatmap.now(),
    })
}

#[cfg(test)]
mod tests;
