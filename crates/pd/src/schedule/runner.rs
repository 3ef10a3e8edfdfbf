//! Runs the enabled schedulers on the coordinator's tick: builds one [`ScheduleView`] of the
//! cluster (stores, regions, pending operators' influence, store-limit tokens) when a scheduler
//! is due, asks each due scheduler for operators within its kind's limit, and starts them
//! (each again checked against the limits and the store limits as it is added).
//!
//! Limits (PD's): `balance-leader-scheduler` runs while fewer than `leader-schedule-limit`
//! operators of kind `leader` run, `balance-region-scheduler` while fewer than
//! `region-schedule-limit` of kind `region`, `balance-hot-region-scheduler` while fewer than
//! `hot-region-schedule-limit` of kind `hot-region`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::balance_leader::{self, BalanceLeaderConfig};
use super::balance_region::{self, BalanceRegionConfig};
use super::coordinator::{start_operator, MIN_PATROL_INTERVAL};
use super::hot_region::{self, HotRegionConfig};
use super::operator::{OpKind, Operator};
use super::placement;
use super::schedulers::{BALANCE_HOT_REGION, BALANCE_LEADER, BALANCE_REGION};
use super::store_limit::LimitType;
use super::view::{ScheduleView, StoreView};
use crate::context::PdContext;
use crate::store_info::StoreStateName;

/// Operators balance-region makes per round at most.
const REGION_BATCH: usize = 4;

/// The stores of the cluster as schedulers see them, without regions (counts at 0).
pub fn stores_only_view(
    ctx: &PdContext,
    states: &BTreeMap<u64, StoreStateName>,
    now: Instant,
) -> ScheduleView {
    let replication = ctx.options.replication();
    let mut view = ScheduleView {
        isolation: placement::isolation_index(&replication.location_labels, &replication.isolation_level),
        ..Default::default()
    };
    for s in ctx.cluster.stores() {
        let id = s.id();
        let state = states.get(&id).copied().unwrap_or(StoreStateName::Down);
        let mut v = StoreView::new(id, state);
        let labels: Vec<(String, String)> = s
            .meta
            .labels
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect();
        v.location = placement::location(&labels, &replication.location_labels);
        v.weight = s.weight;
        (v.capacity, v.available) = s.space();
        let limiter = &ctx.coordinator.store_limiter;
        v.add_tokens = limiter.available(
            id,
            LimitType::AddPeer,
            ctx.options.store_limit(id, LimitType::AddPeer),
            now,
        );
        v.remove_tokens = limiter.available(
            id,
            LimitType::RemovePeer,
            ctx.options.store_limit(id, LimitType::RemovePeer),
            now,
        );
        view.stores.insert(id, v);
    }
    view
}

/// The whole view: stores, regions and the running operators' influence.
pub fn build_view(ctx: &PdContext, states: &BTreeMap<u64, StoreStateName>, now: Instant) -> ScheduleView {
    let mut view = stores_only_view(ctx, states, now);
    view.regions = ctx.cluster.regions();
    view.count_regions();
    for op in ctx.coordinator.operators.operators() {
        view.add_influence(&op);
    }
    view
}

fn alloc(ctx: &PdContext) -> impl FnMut() -> Option<u64> + '_ {
    move || match ctx.id_alloc.alloc() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "scheduler could not allocate a peer id");
            None
        }
    }
}

/// The operators scheduler `name` makes on `view`, with at most `room` of them.
fn run_one(ctx: &PdContext, name: &str, view: &mut ScheduleView, room: usize) -> Vec<Operator> {
    let schedule = ctx.options.schedule();
    let max_replicas = usize::try_from(ctx.options.max_replicas()).unwrap_or(usize::MAX);
    let start = if view.regions.is_empty() {
        0
    } else {
        rand::random::<u32>() as usize % view.regions.len()
    };
    match name {
        BALANCE_LEADER => balance_leader::schedule(
            view,
            &BalanceLeaderConfig {
                by_size: schedule.leader_schedule_policy == "size",
                tolerant_size_ratio: schedule.tolerant_size_ratio,
                max_replicas,
                batch: room.min(balance_leader::BATCH),
                start,
            },
        ),
        BALANCE_REGION => balance_region::schedule(
            view,
            &BalanceRegionConfig {
                tolerant_size_ratio: schedule.tolerant_size_ratio,
                low_space_ratio: schedule.low_space_ratio,
                max_replicas,
                max_pending_peer_count: usize::try_from(schedule.max_pending_peer_count)
                    .unwrap_or(usize::MAX),
                batch: room.min(REGION_BATCH),
                start,
            },
            &mut alloc(ctx),
        ),
        BALANCE_HOT_REGION => {
            let min_degree = schedule.hot_region_cache_hits_threshold;
            let write = ctx
                .coordinator
                .hot
                .hot_regions(super::hot_cache::HotKind::Write, min_degree);
            let read = ctx
                .coordinator
                .hot
                .hot_regions(super::hot_cache::HotKind::Read, min_degree);
            hot_region::schedule(
                view,
                &write,
                &read,
                &HotRegionConfig {
                    max_replicas,
                    batch: room.min(1),
                },
                &mut alloc(ctx),
            )
        }
        _ => Vec::new(),
    }
}

/// The kind a scheduler's operators count under, and its limit.
fn limit_of(ctx: &PdContext, name: &str) -> (OpKind, u64) {
    let s = ctx.options.schedule();
    match name {
        BALANCE_LEADER => (OpKind::LEADER, s.leader_schedule_limit),
        BALANCE_HOT_REGION => (OpKind::HOT_REGION, s.hot_region_schedule_limit),
        _ => (OpKind::REGION, s.region_schedule_limit),
    }
}

/// Runs every due scheduler once.
pub fn schedule_tick(ctx: &PdContext, states: &BTreeMap<u64, StoreStateName>, now: Instant) {
    if !ctx.cluster.is_bootstrapped() {
        return;
    }
    let tick: Duration = MIN_PATROL_INTERVAL;
    let mut view: Option<ScheduleView> = None;
    for name in ctx.coordinator.schedulers.due(now) {
        let (kind, limit) = limit_of(ctx, &name);
        let running = ctx.coordinator.operators.count_kind(kind) as u64;
        if running >= limit {
            ctx.coordinator.schedulers.ran(&name, now, false, tick);
            continue;
        }
        let room = usize::try_from(limit - running).unwrap_or(usize::MAX);
        let v = view.get_or_insert_with(|| build_view(ctx, states, now));
        let ops = run_one(ctx, &name, v, room);
        let mut made = false;
        for op in ops {
            tracing::debug!(scheduler = %name, operator = %op, "scheduler made an operator");
            made |= start_operator(ctx, op, Some((kind, limit)), true, states).is_ok();
        }
        ctx.coordinator.schedulers.ran(&name, now, made, tick);
    }
}
