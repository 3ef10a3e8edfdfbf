//! Ties the pieces together: region heartbeats and the patrol drive the operator controller
//! and the replica checker, and operator steps go to region leaders over the heartbeat streams.
//!
//! Flow: a region heartbeat is applied to the cluster, then [`on_region_heartbeat`] advances
//! the region's operator and sends its current step to the leader's store (every heartbeat,
//! until the step shows as done; nodes ignore a step already done), or, if the region has no
//! operator, asks the replica checker for one and sends its first step at once. The patrol
//! ([`spawn_patrol`]) walks the regions in key order, a bounded batch per tick, running the
//! checker on those without an operator, and re-sends the steps of operators whose regions did
//! not heartbeat for a while (ending those that timed out or whose region is gone).
//!
//! Invariants: only the leader's store is ever sent a step; nothing is scheduled before
//! bootstrap; the checker's operators respect `replica-schedule-limit`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::builder;
use super::controller::{AddError, OperatorController};
use super::hot_cache::HotCache;
use super::merge_checker::{self, MergeConfig};
use super::operator::{OpKind, OpStep, Operator};
use super::replica_checker::{self, CheckerConfig};
use super::runner;
use super::schedulers::Schedulers;
use super::store_limit::{self, StoreLimiter};
use super::view::ScheduleView;
use crate::context::PdContext;
use crate::region_info::RegionInfo;
use crate::storage::MetaStorage;
use crate::store_info::StoreStateName;

/// The patrol never ticks faster than this, whatever `patrol-region-interval` says (PD's
/// default of 10ms is meant for a Go scheduler loop; 100 ms keeps an idle PD idle).
pub const MIN_PATROL_INTERVAL: Duration = Duration::from_millis(100);
/// Regions the patrol looks at per tick.
pub const PATROL_BATCH: i32 = 256;
/// How long the per-store region counts are reused before being recounted.
const COUNTS_TTL: Duration = Duration::from_secs(5);

/// Scheduling state of one PD: the operators, the store limits, the schedulers and a cache of
/// region counts per store.
pub struct Coordinator {
    pub operators: OperatorController,
    pub store_limiter: StoreLimiter,
    pub schedulers: Schedulers,
    /// What the hot-region scheduler knows of recent region load.
    pub hot: HotCache,
    /// Peers and leaders placed by `ScatterRegion`, per group.
    pub scatterer: super::scatter::Scatterer,
    counts: Mutex<Option<(Instant, HashMap<u64, usize>)>>,
    /// Each region's version and when PD first saw it (its split, merge or first sighting).
    versions: Mutex<HashMap<u64, (u64, Instant)>>,
}

impl Coordinator {
    pub fn new(storage: MetaStorage) -> crate::error::Result<Coordinator> {
        Ok(Coordinator {
            operators: OperatorController::new(),
            store_limiter: StoreLimiter::new(),
            schedulers: Schedulers::load(storage)?,
            hot: HotCache::new(),
            scatterer: super::scatter::Scatterer::default(),
            counts: Mutex::new(None),
            versions: Mutex::new(HashMap::new()),
        })
    }

    /// Records `region`'s version; a new version (or a new region) counts as split now.
    pub fn note_version(&self, region: &RegionInfo, now: Instant) {
        let version = region.epoch().version;
        let mut versions = self.versions.lock();
        let e = versions.entry(region.id()).or_insert((version, now));
        if e.0 != version {
            *e = (version, now);
        }
    }

    /// Whether region `id` was split (or first seen) less than `interval` before `now`.
    pub fn recently_split(&self, id: u64, now: Instant, interval: Duration) -> bool {
        self.versions
            .lock()
            .get(&id)
            .is_none_or(|(_, at)| now.saturating_duration_since(*at) < interval)
    }

    /// Forgets a region that is gone.
    pub fn forget_region(&self, id: u64) {
        self.versions.lock().remove(&id);
        self.hot.forget(id);
    }

    /// Region counts per store, recounted at most every [`COUNTS_TTL`].
    fn region_counts(&self, ctx: &PdContext, now: Instant) -> HashMap<u64, usize> {
        let mut cache = self.counts.lock();
        if let Some((at, counts)) = cache.as_ref() {
            if now.saturating_duration_since(*at) < COUNTS_TTL {
                return counts.clone();
            }
        }
        let counts: HashMap<u64, usize> = ctx
            .cluster
            .store_region_stats()
            .into_iter()
            .map(|(store, s)| (store, s.region_count))
            .collect();
        *cache = Some((now, counts.clone()));
        counts
    }

    /// Counts the peers `op` will add and remove in the cached counts, so that a burst of
    /// checks before the next recount spreads new peers over the stores.
    fn note_operator(&self, op: &Operator) {
        let mut cache = self.counts.lock();
        let Some((_, counts)) = cache.as_mut() else {
            return;
        };
        for step in op.steps() {
            match *step {
                OpStep::AddLearner { store_id, .. } => *counts.entry(store_id).or_default() += 1,
                OpStep::RemovePeer { store_id } => {
                    let c = counts.entry(store_id).or_default();
                    *c = c.saturating_sub(1);
                }
                _ => {}
            }
        }
    }
}

fn is_bad(s: StoreStateName) -> bool {
    matches!(
        s,
        StoreStateName::Down | StoreStateName::Offline | StoreStateName::Tombstone
    )
}

/// Every store's state as the HTTP API shows it.
pub fn store_states(ctx: &PdContext) -> BTreeMap<u64, StoreStateName> {
    let max_down = ctx.options.max_store_down_time();
    ctx.cluster.store_states(SystemTime::now(), max_down)
}

fn leader_target_fn(states: &BTreeMap<u64, StoreStateName>) -> impl Fn(&RegionInfo, u64) -> Option<u64> + '_ {
    move |region: &RegionInfo, exclude: u64| {
        let is_up = |s: u64| states.get(&s) == Some(&StoreStateName::Up);
        builder::leader_target(region, exclude, &is_up)
    }
}

/// Sends `step` of `region`'s operator to the leader's store.
fn send_step(ctx: &PdContext, region: &RegionInfo, step: OpStep) {
    let Some(mut resp) = step.to_response(region) else {
        tracing::debug!(region = region.id(), %step, "operator step not sendable yet");
        return;
    };
    resp.header = Some(ctx.header());
    let store = region.leader.map_or(0, |l| l.store_id);
    if ctx.hb_streams.send(store, resp) {
        tracing::debug!(region = region.id(), store, %step, "sent operator step");
    } else {
        tracing::debug!(region = region.id(), store, %step, "no heartbeat stream to send an operator step on");
    }
}

/// A store that a step still to come adds a peer on, promotes on or hands leadership to, and
/// that is not Up (it died or is being removed after the operator was made): such a step would
/// wait for its whole timeout.
fn dead_target(op: &Operator, states: &BTreeMap<u64, StoreStateName>) -> Option<u64> {
    let rest = &op.steps()[op.current_step().min(op.steps().len())..];
    rest.iter()
        .filter_map(|step| match *step {
            OpStep::AddLearner { store_id, .. } | OpStep::PromoteLearner { store_id, .. } => Some(store_id),
            OpStep::TransferLeader { to_store, .. } => Some(to_store),
            _ => None,
        })
        .find(|s| states.get(s) != Some(&StoreStateName::Up))
}

/// Advances `region`'s operator and sends its current step (see [`OperatorController::dispatch`]).
/// An operator whose remaining steps target a store that is no longer Up is canceled, so that
/// the checkers can act on the region at once.
fn dispatch(ctx: &PdContext, region: &RegionInfo, states: &BTreeMap<u64, StoreStateName>, only_if_due: bool) {
    if let Some(op) = ctx.coordinator.operators.get(region.id()) {
        if let Some(store) = dead_target(&op, states) {
            ctx.coordinator
                .operators
                .cancel(region.id(), &format!("store {store} of a later step is not up"));
            return;
        }
    }
    let target = leader_target_fn(states);
    if let Some(step) = ctx
        .coordinator
        .operators
        .dispatch(region, Instant::now(), only_if_due, &target)
    {
        send_step(ctx, region, step);
    }
}

/// A view of the stores (no regions) with region counts from the cache: what the replica
/// checker needs.
pub(crate) fn store_view(
    ctx: &PdContext,
    states: &BTreeMap<u64, StoreStateName>,
    now: Instant,
) -> ScheduleView {
    let counts = ctx.coordinator.region_counts(ctx, now);
    let mut view = runner::stores_only_view(ctx, states, now);
    for s in view.stores.values_mut() {
        s.region_count = counts.get(&s.id).copied().unwrap_or(0);
    }
    view
}

/// Runs the replica checker on `region` (which has no operator) and starts what it returns;
/// if it has nothing to do, the merge checker.
fn check_region(ctx: &PdContext, region: &RegionInfo, states: &BTreeMap<u64, StoreStateName>) {
    let now = Instant::now();
    ctx.coordinator.note_version(region, now);
    if !check_replicas(ctx, region, states, now) {
        check_merge(ctx, region, states, now);
    }
}

/// The replica checker; whether the region needed something.
fn check_replicas(
    ctx: &PdContext,
    region: &RegionInfo,
    states: &BTreeMap<u64, StoreStateName>,
    now: Instant,
) -> bool {
    let (schedule, replication) = (ctx.options.schedule(), ctx.options.replication());
    let cfg = CheckerConfig::new(&schedule, &replication);
    // Cheap pre-checks before counting regions: most regions need nothing.
    let voters = region
        .meta
        .peers
        .iter()
        .filter(|p| p.role == atoll_proto::metapb::PeerRole::Voter as i32)
        .count();
    let fine = region.meta.peers.len() == cfg.max_replicas
        && voters == cfg.max_replicas
        && region
            .meta
            .peers
            .iter()
            .all(|p| states.get(&p.store_id).is_some_and(|s| !is_bad(*s)));
    let placement = !replication.location_labels.is_empty() && cfg.enable_location_replacement;
    if fine && !placement {
        return false;
    }
    let limit = schedule.replica_schedule_limit;
    if ctx.coordinator.operators.count_kind(OpKind::REPLICA) as u64 >= limit {
        return !fine;
    }
    let view = store_view(ctx, states, now);
    let mut alloc = || match ctx.id_alloc.alloc() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "replica checker could not allocate a peer id");
            None
        }
    };
    let Some(op) = replica_checker::check(region, &view, &cfg, &mut alloc) else {
        return !fine;
    };
    let _ = start_operator(ctx, op, Some((OpKind::REPLICA, limit)), true, states);
    true
}

/// The merge checker: both operators start, or neither.
fn check_merge(ctx: &PdContext, region: &RegionInfo, states: &BTreeMap<u64, StoreStateName>, now: Instant) {
    let schedule = ctx.options.schedule();
    let limit = schedule.merge_schedule_limit;
    let cfg = MergeConfig {
        max_merge_region_size: schedule.max_merge_region_size,
        max_merge_region_keys: schedule.max_merge_region_keys,
        enable_one_way_merge: schedule.enable_one_way_merge,
        max_replicas: usize::try_from(ctx.options.max_replicas()).unwrap_or(usize::MAX),
    };
    let small = u64::try_from(region.approximate_size.max(0)).unwrap_or(0) <= cfg.max_merge_region_size
        && u64::try_from(region.approximate_keys.max(0)).unwrap_or(0) <= cfg.max_merge_region_keys;
    if limit == 0 || !small || ctx.coordinator.operators.count_kind(OpKind::MERGE) as u64 >= limit {
        return;
    }
    let interval = schedule.split_merge_interval.0;
    let recently_split = |id: u64| ctx.coordinator.recently_split(id, now, interval);
    if recently_split(region.id()) {
        return;
    }
    let prev = ctx.cluster.prev_region_by_key(region.start_key()).ok().flatten();
    let next = if region.end_key().is_empty() {
        None
    } else {
        ctx.cluster.region_by_key(region.end_key()).ok().flatten()
    };
    let mut view = runner::stores_only_view(ctx, states, now);
    for r in prev.iter().chain(next.iter()) {
        ctx.coordinator.note_version(r, now);
        if ctx.coordinator.operators.has(r.id()) {
            view.busy.insert(r.id());
        }
    }
    let mut alloc = || ctx.id_alloc.alloc().ok();
    let Some((source, target)) = merge_checker::check(
        region,
        prev.as_ref(),
        next.as_ref(),
        &view,
        &cfg,
        &recently_split,
        &mut alloc,
    ) else {
        return;
    };
    let target_id = target.region_id();
    if ctx.coordinator.operators.add(target, None).is_err() {
        return;
    }
    if start_operator(ctx, source, Some((OpKind::MERGE, limit)), true, states).is_err() {
        ctx.coordinator
            .operators
            .cancel(target_id, "merge source not admitted");
    }
}

/// Adds `op` to the controller (under the kind's limit if given, taking store-limit tokens if
/// `store_limited`) and sends its first step.
pub(crate) fn start_operator(
    ctx: &PdContext,
    op: Operator,
    limit: Option<(OpKind, u64)>,
    store_limited: bool,
    states: &BTreeMap<u64, StoreStateName>,
) -> Result<(), AddError> {
    let region_id = op.region_id();
    let noted = op.clone();
    let now = Instant::now();
    let mut admit = |op: &Operator| {
        if !store_limited {
            return true;
        }
        let costs = store_limit::operator_costs(op);
        let rate = |s: u64, t| ctx.options.store_limit(s, t);
        ctx.coordinator.store_limiter.take(&costs, &rate, now)
    };
    if let Err(e) = ctx.coordinator.operators.add_admitted(op, limit, &mut admit) {
        tracing::debug!(region = region_id, error = %e, "operator not added");
        return Err(e);
    }
    ctx.coordinator.note_operator(&noted);
    if let Ok(Some(region)) = ctx.cluster.region_by_id(region_id) {
        dispatch(ctx, &region, states, false);
    }
    Ok(())
}

/// Adds an administrator's operator (no limit) and sends its first step.
pub fn add_operator(ctx: &PdContext, op: Operator) -> Result<(), AddError> {
    let states = store_states(ctx);
    start_operator(ctx, op, None, false, &states)
}

/// Scheduling after a region heartbeat was applied: advance the region's operator, or check
/// whether it needs one.
pub fn on_region_heartbeat(ctx: &PdContext, region_id: u64) {
    let Ok(Some(region)) = ctx.cluster.region_by_id(region_id) else {
        return;
    };
    ctx.coordinator.hot.observe(&region, SystemTime::now());
    ctx.heatmap.observe(&region);
    ctx.coordinator.note_version(&region, Instant::now());
    let states = store_states(ctx);
    if ctx.coordinator.operators.has(region_id) {
        dispatch(ctx, &region, &states, false);
        if ctx.coordinator.operators.has(region_id) {
            return;
        }
    }
    check_region(ctx, &region, &states);
}

/// One patrol tick: operators due for a re-send, then the next batch of regions from `cursor`
/// (which wraps to the start after the last region).
pub fn patrol_tick(ctx: &PdContext, cursor: &mut Vec<u8>) {
    if !ctx.cluster.is_bootstrapped() {
        return;
    }
    let states = store_states(ctx);
    bury_stores(ctx, &states);
    runner::schedule_tick(ctx, &states, Instant::now());
    for region_id in ctx.coordinator.operators.due_regions(Instant::now()) {
        match ctx.cluster.region_by_id(region_id) {
            Ok(Some(region)) => dispatch(ctx, &region, &states, true),
            Ok(None) => {
                ctx.coordinator.operators.region_gone(region_id);
                ctx.coordinator.forget_region(region_id);
            }
            Err(_) => {}
        }
    }
    let regions = ctx
        .cluster
        .scan_regions(cursor, &[], PATROL_BATCH)
        .unwrap_or_default();
    let Some(last) = regions.last() else {
        cursor.clear();
        return;
    };
    *cursor = last.end_key().to_vec();
    for region in &regions {
        if !ctx.coordinator.operators.has(region.id()) {
            check_region(ctx, region, &states);
        }
    }
}

/// Offline stores that hold no region any more become Tombstone.
fn bury_stores(ctx: &PdContext, states: &BTreeMap<u64, StoreStateName>) {
    if !states.values().any(|s| *s == StoreStateName::Offline) {
        return;
    }
    match ctx.cluster.bury_empty_offline_stores() {
        Ok(ids) => {
            for id in ids {
                ctx.coordinator.store_limiter.forget(id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not bury empty offline stores"),
    }
}

/// Runs the patrol every `patrol-region-interval` (at least [`MIN_PATROL_INTERVAL`]) until
/// the server shuts down.
pub fn spawn_patrol(ctx: Arc<PdContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stop = crate::pd_streams::shutdown_signal(ctx.shutdown.clone());
        tokio::pin!(stop);
        let mut cursor = Vec::new();
        loop {
            let interval = ctx
                .options
                .schedule()
                .patrol_region_interval
                .0
                .max(MIN_PATROL_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut stop => break,
            }
            patrol_tick(&ctx, &mut cursor);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_util::region;
    use atoll_proto::metapb::PeerRole;

    #[test]
    fn an_operator_moving_onto_a_store_that_died_is_recognized() {
        let r = region(
            7,
            &[
                (71, 1, PeerRole::Voter),
                (72, 2, PeerRole::Voter),
                (73, 3, PeerRole::Voter),
            ],
            1,
            (3, 2),
        );
        let op = builder::replace_peer("test", OpKind::REGION, &r, 1, 4, 74).expect("operator");
        let mut states: BTreeMap<u64, StoreStateName> = (1..=4).map(|s| (s, StoreStateName::Up)).collect();
        assert_eq!(dead_target(&op, &states), None);
        // The store being emptied may die: that does not stop the move.
        states.insert(1, StoreStateName::Down);
        assert_eq!(dead_target(&op, &states), None);
        // The target dying does.
        states.insert(4, StoreStateName::Disconnected);
        assert_eq!(dead_target(&op, &states), Some(4));
        states.remove(&4);
        assert_eq!(dead_target(&op, &states), Some(4), "an unknown store is not up");
    }
}
