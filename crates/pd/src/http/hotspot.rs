//! `GET /pd/api/v1/hotspot/regions/write|read` in PD's shape (`StoreHotPeersInfos`):
//! `{"as_peer": {"<store>": {...}}, "as_leader": {"<store>": {...}}}` where each store has
//! `total_flow_bytes`, `total_flow_keys`, `total_flow_query`, `regions_count` and
//! `statistics` (one entry per hot region on the store). Only regions whose hot degree reached
//! `hot-region-cache-hits-threshold` are shown, as in PD.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::format::{hex_upper, rfc3339};
use super::ok;
use crate::context::PdContext;
use crate::schedule::hot_cache::{HotKind, HotRegionStat};

type Ctx = State<Arc<PdContext>>;

#[derive(Debug, Serialize)]
struct HotPeerJson {
    store_id: u64,
    stores: Vec<u64>,
    is_leader: bool,
    is_learner: bool,
    region_id: u64,
    hot_degree: i64,
    flow_bytes: f64,
    flow_keys: f64,
    flow_query: f64,
    anti_count: i64,
    start_key: String,
    end_key: String,
    last_update_time: String,
}

#[derive(Debug, Default, Serialize)]
struct HotStoreJson {
    total_flow_bytes: f64,
    total_flow_keys: f64,
    total_flow_query: f64,
    regions_count: usize,
    statistics: Vec<HotPeerJson>,
}

#[derive(Debug, Serialize)]
struct HotJson {
    as_peer: BTreeMap<String, HotStoreJson>,
    as_leader: BTreeMap<String, HotStoreJson>,
}

fn add(map: &mut BTreeMap<String, HotStoreJson>, store: u64, is_learner: bool, s: &HotRegionStat) {
    let e = map.entry(store.to_string()).or_default();
    e.total_flow_bytes += s.byte_rate;
    e.total_flow_keys += s.key_rate;
    e.regions_count += 1;
    e.statistics.push(HotPeerJson {
        store_id: store,
        stores: s.peers.iter().map(|(id, _)| *id).collect(),
        is_leader: store == s.leader_store,
        is_learner,
        region_id: s.region_id,
        hot_degree: s.hot_degree,
        flow_bytes: s.byte_rate,
        flow_keys: s.key_rate,
        flow_query: 0.0,
        anti_count: s.anti_count,
        start_key: hex_upper(&s.start_key),
        end_key: hex_upper(&s.end_key),
        last_update_time: rfc3339(s.last_update),
    });
}

fn hot_json(ctx: &PdContext, kind: HotKind) -> HotJson {
    let threshold = ctx.options.schedule().hot_region_cache_hits_threshold;
    let mut out = HotJson {
        as_peer: BTreeMap::new(),
        as_leader: BTreeMap::new(),
    };
    for s in ctx.coordinator.hot.hot_regions(kind, threshold) {
        if kind == HotKind::Write {
            for (store, is_learner) in &s.peers {
                add(&mut out.as_peer, *store, *is_learner, &s);
            }
        }
        add(&mut out.as_leader, s.leader_store, false, &s);
    }
    out
}

pub async fn write(State(ctx): Ctx) -> Response {
    ok(&hot_json(&ctx, HotKind::Write))
}

pub async fn read(State(ctx): Ctx) -> Response {
    ok(&hot_json(&ctx, HotKind::Read))
}
