//! PD's own GC driver: advances the GC safe point to `now - gc.retention` every
//! `gc.advance-interval`, so a cluster needs no outside GC driver (TiDB's GC worker).
//!
//! "Now" is a fresh timestamp from this PD's timestamp oracle, so the safe point is never ahead
//! of a timestamp handed out. The safe point is held back by every unexpired service safe point
//! and never moves back ([`crate::gc::GcManager::advance`]). The driver acts as the `gc_worker`
//! service: with a TiDB GC worker driving GC too, set `gc.retention = "0s"`.
//!
//! Like TiDB's GC worker, it publishes a new safe point only after resolving every lock at or
//! below it in every region ([`crate::gc_resolver`]); when that fails, the safe point stays and
//! the next round tries again. The gRPC `UpdateGCSafePoint` does not go through here: its
//! callers resolve locks themselves.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::context::PdContext;
use crate::gc::{check_requested, retention_safe_point, Advance, GcAdvanceError};

/// Where to move the GC safe point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `now - retention` (held back by service safe points; behind the current one: no-op).
    Retention(Duration),
    /// Exactly this timestamp (held back by service safe points; behind the current one or
    /// ahead of now: an error).
    SafePoint(u64),
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One advance of the GC safe point towards `target`: where it would move is computed first,
/// every lock at or below that is resolved, then the safe point moves, never past it.
pub async fn advance(ctx: &PdContext, target: Target) -> Result<Advance, GcAdvanceError> {
    let now_ts = ctx.tso.generate(1)?.compose();
    let (requested, strict) = match target {
        Target::Retention(retention) => match retention_safe_point(now_ts, retention) {
            Some(ts) => (ts, false),
            None => {
                let current = ctx.gc.safe_point();
                return Ok(Advance {
                    requested: 0,
                    previous: current,
                    safe_point: current,
                    blocked_by: None,
                });
            }
        },
        Target::SafePoint(ts) => {
            check_requested(ts, now_ts, ctx.gc.safe_point())?;
            (ts, true)
        }
    };
    let Some(candidate) = ctx.gc.plan_advance(requested, strict, unix_secs())? else {
        // It would not move: no lock to resolve, and capped at 0 it stays even if a service
        // safe point expired just now.
        return ctx.gc.advance_capped(requested, 0, strict, unix_secs());
    };
    ctx.gc_resolver
        .resolve(&ctx.cluster, candidate)
        .await
        .map_err(|source| GcAdvanceError::LocksUnresolved {
            safe_point: candidate,
            source,
        })?;
    ctx.gc.advance_capped(requested, candidate, strict, unix_secs())
}

/// Starts the automatic advance, unless `gc.retention` is zero. The task ends when `shutdown`
/// turns true or its sender is dropped.
pub fn spawn(ctx: Arc<PdContext>, mut shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let cfg = ctx.config.gc.clone();
    if cfg.retention.0.is_zero() {
        tracing::info!("automatic gc safe point advance is disabled (gc.retention = 0s)");
        return None;
    }
    tracing::info!(
        retention = %cfg.retention,
        interval = %cfg.advance_interval,
        "automatic gc safe point advance started"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.advance_interval.0);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            // Lock resolution may take a while: a shutdown abandons it (nothing is published).
            let result = tokio::select! {
                r = advance(&ctx, Target::Retention(cfg.retention.0)) => r,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            match result {
                Ok(a) => {
                    if let Some(b) = a.blocked_by.as_ref().filter(|_| !a.advanced()) {
                        tracing::debug!(
                            safe_point = a.safe_point,
                            service_id = %b.service_id,
                            service_safe_point = b.safe_point,
                            "gc safe point held back by a service safe point"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "failed to advance the gc safe point"),
            }
        }
        tracing::info!("automatic gc safe point advance stopped");
    }))
}
