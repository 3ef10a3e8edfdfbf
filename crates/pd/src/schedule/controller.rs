//! The operator controller: the running operators, at most one per region, and the recently
//! ended ones.
//!
//! Invariants:
//! * at most one running operator per region; adding a second one for a region is refused;
//! * operators of a kind never exceed the limit they are added with (`[schedule]
//!   replica-schedule-limit`, `leader-…`, `region-…`, `merge-…`, `hot-region-schedule-limit`);
//!   administrator operators have no limit;
//! * every operator ends exactly once — finished, timed out, or canceled (stale or by an
//!   administrator) — and each end is counted in `pd_schedule_operators_count` and remembered
//!   for [`RECORD_TTL`] so that its status can still be asked for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use atoll_proto::pdpb;
use parking_lot::Mutex;

use super::operator::{OpKind, OpProgress, OpStep, Operator};
use crate::metrics;
use crate::region_info::RegionInfo;

/// How long an ended operator's status is kept.
pub const RECORD_TTL: Duration = Duration::from_secs(10 * 60);
/// At most this many ended operators are kept.
const MAX_RECORDS: usize = 4096;
/// A running operator's current step is re-sent (without a heartbeat) after this long.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(10);

/// Why an operator could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("region {region_id} already has an operator: {existing}")]
    Exists { region_id: u64, existing: String },
    #[error("schedule limit of {kind} operators ({limit}) reached")]
    LimitReached { kind: String, limit: u64 },
    #[error("store limit reached")]
    StoreLimit,
}

/// An ended operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    pub operator: Operator,
    pub status: pdpb::OperatorStatus,
    pub ended: Instant,
}

struct Running {
    op: Operator,
    last_sent: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    running: HashMap<u64, Running>,
    records: HashMap<u64, OpRecord>,
}

impl Inner {
    fn end(&mut self, op: Operator, status: pdpb::OperatorStatus, now: Instant) {
        let event = match status {
            pdpb::OperatorStatus::Success => "finish",
            pdpb::OperatorStatus::Timeout => "timeout",
            pdpb::OperatorStatus::Replace => "replace",
            pdpb::OperatorStatus::Cancel | pdpb::OperatorStatus::Running => "cancel",
        };
        metrics::OPERATORS_COUNT
            .with_label_values(&[op.desc(), event])
            .inc();
        self.records
            .retain(|_, r| now.saturating_duration_since(r.ended) <= RECORD_TTL);
        if self.records.len() >= MAX_RECORDS {
            if let Some(oldest) = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.ended)
                .map(|(id, _)| *id)
            {
                self.records.remove(&oldest);
            }
        }
        self.records.insert(
            op.region_id(),
            OpRecord {
                operator: op,
                status,
                ended: now,
            },
        );
    }
}

/// The running operators.
#[derive(Default)]
pub struct OperatorController {
    inner: Mutex<Inner>,
}

/// An operator's status as the APIs report it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpStatusView {
    pub operator: Operator,
    pub status: pdpb::OperatorStatus,
}

impl OpStatusView {
    /// PD's text for an operator with its status.
    pub fn text(&self) -> String {
        format!(
            "status: {}, operator: {}",
            self.status.as_str_name(),
            self.operator
        )
    }
}

impl OperatorController {
    pub fn new() -> OperatorController {
        OperatorController::default()
    }

    /// Adds `op` unless its region has one already or, with `limit = (kind, n)`, `n`
    /// operators of that kind run (`[schedule] *-schedule-limit`).
    pub fn add(&self, op: Operator, limit: Option<(OpKind, u64)>) -> Result<(), AddError> {
        self.add_admitted(op, limit, &mut |_| true)
    }

    /// [`OperatorController::add`], and then only if `admit` (run under the controller's lock,
    /// after the other checks; e.g. taking store-limit tokens) agrees.
    pub fn add_admitted(
        &self,
        op: Operator,
        limit: Option<(OpKind, u64)>,
        admit: &mut dyn FnMut(&Operator) -> bool,
    ) -> Result<(), AddError> {
        let mut inner = self.inner.lock();
        if let Some(existing) = inner.running.get(&op.region_id()) {
            return Err(AddError::Exists {
                region_id: op.region_id(),
                existing: existing.op.to_string(),
            });
        }
        if let Some((kind, limit)) = limit {
            let running = inner
                .running
                .values()
                .filter(|r| r.op.kind().contains(kind))
                .count() as u64;
            if running >= limit {
                return Err(AddError::LimitReached {
                    kind: kind.to_string(),
                    limit,
                });
            }
        }
        if !admit(&op) {
            return Err(AddError::StoreLimit);
        }
        metrics::OPERATORS_COUNT
            .with_label_values(&[op.desc(), "create"])
            .inc();
        tracing::info!(operator = %op, "operator created");
        inner
            .running
            .insert(op.region_id(), Running { op, last_sent: None });
        Ok(())
    }

    pub fn get(&self, region_id: u64) -> Option<Operator> {
        self.inner.lock().running.get(&region_id).map(|r| r.op.clone())
    }

    pub fn has(&self, region_id: u64) -> bool {
        self.inner.lock().running.contains_key(&region_id)
    }

    /// Every running operator, by region id.
    pub fn operators(&self) -> Vec<Operator> {
        let mut ops: Vec<Operator> = self.inner.lock().running.values().map(|r| r.op.clone()).collect();
        ops.sort_by_key(Operator::region_id);
        ops
    }

    /// The operators that ended within [`RECORD_TTL`] before `now`, most recent first.
    pub fn recent(&self, now: Instant) -> Vec<OpRecord> {
        let mut out: Vec<OpRecord> = self
            .inner
            .lock()
            .records
            .values()
            .filter(|r| now.saturating_duration_since(r.ended) <= RECORD_TTL)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.ended
                .cmp(&a.ended)
                .then(a.operator.region_id().cmp(&b.operator.region_id()))
        });
        out
    }

    /// How many running operators are of `kind`.
    pub fn count_kind(&self, kind: OpKind) -> usize {
        self.inner
            .lock()
            .running
            .values()
            .filter(|r| r.op.kind().contains(kind))
            .count()
    }

    /// The running operator of `region_id`, else its recently ended one.
    pub fn status(&self, region_id: u64) -> Option<OpStatusView> {
        let inner = self.inner.lock();
        if let Some(r) = inner.running.get(&region_id) {
            return Some(OpStatusView {
                operator: r.op.clone(),
                status: pdpb::OperatorStatus::Running,
            });
        }
        inner
            .records
            .get(&region_id)
            .filter(|r| r.ended.elapsed() <= RECORD_TTL)
            .map(|r| OpStatusView {
                operator: r.operator.clone(),
                status: r.status,
            })
    }

    /// Cancels the running operator of `region_id` (`reason` is logged).
    pub fn cancel(&self, region_id: u64, reason: &str) -> Option<Operator> {
        let mut inner = self.inner.lock();
        let r = inner.running.remove(&region_id)?;
        tracing::info!(operator = %r.op, reason, "operator canceled");
        inner.end(r.op.clone(), pdpb::OperatorStatus::Cancel, Instant::now());
        Some(r.op)
    }

    /// Looks at `region`'s operator against the region's latest state: ends it if it finished,
    /// timed out or became stale, else returns the step to send to the leader now. With
    /// `only_if_due`, a step sent less than [`RESEND_INTERVAL`] ago is not returned again.
    pub fn dispatch(
        &self,
        region: &RegionInfo,
        now: Instant,
        only_if_due: bool,
        leader_target: &dyn Fn(&RegionInfo, u64) -> Option<u64>,
    ) -> Option<OpStep> {
        let mut inner = self.inner.lock();
        let running = inner.running.get_mut(&region.id())?;
        let progress = running.op.check(region, now, leader_target);
        let ended = match progress {
            OpProgress::Running(step) => {
                let due = running
                    .last_sent
                    .is_none_or(|t| now.saturating_duration_since(t) >= RESEND_INTERVAL);
                if only_if_due && !due {
                    return None;
                }
                running.last_sent = Some(now);
                return Some(step);
            }
            OpProgress::Waiting => return None,
            OpProgress::Finished => {
                tracing::info!(operator = %running.op, "operator finished");
                pdpb::OperatorStatus::Success
            }
            OpProgress::TimedOut => {
                tracing::warn!(operator = %running.op, "operator timed out");
                pdpb::OperatorStatus::Timeout
            }
            OpProgress::Stale(why) => {
                tracing::info!(operator = %running.op, reason = %why, "operator canceled: stale");
                pdpb::OperatorStatus::Cancel
            }
        };
        if let Some(r) = inner.running.remove(&region.id()) {
            // A finished merge target also ends its source's operator.
            let source =
                r.op.merged_from()
                    .filter(|_| ended == pdpb::OperatorStatus::Success);
            inner.end(r.op, ended, now);
            if let Some(r) = source.and_then(|id| inner.running.remove(&id)) {
                tracing::info!(operator = %r.op, "operator finished: merged");
                inner.end(r.op, pdpb::OperatorStatus::Success, now);
            }
        }
        None
    }

    /// Regions whose operator was not sent for [`RESEND_INTERVAL`] (or ever), or timed out.
    pub fn due_regions(&self, now: Instant) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .inner
            .lock()
            .running
            .values()
            .filter(|r| {
                r.op.is_timed_out(now)
                    || r.last_sent
                        .is_none_or(|t| now.saturating_duration_since(t) >= RESEND_INTERVAL)
            })
            .map(|r| r.op.region_id())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Ends the operator of a region that no longer exists: a success for the source of a
    /// merge, else a cancel.
    pub fn region_gone(&self, region_id: u64) {
        let mut inner = self.inner.lock();
        if let Some(r) = inner.running.remove(&region_id) {
            let status = if r.op.merging_into().is_some() {
                tracing::info!(operator = %r.op, "operator finished: region merged away");
                pdpb::OperatorStatus::Success
            } else {
                tracing::info!(operator = %r.op, "operator canceled: region not found");
                pdpb::OperatorStatus::Cancel
            };
            inner.end(r.op, status, Instant::now());
        }
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
