//! Storage metrics.

use std::sync::LazyLock;

use prometheus::{exponential_buckets, register_histogram_vec, HistogramVec};

pub static COMMAND_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_storage_engine_async_request_duration_seconds",
        "Time waiting on the kv seam by type (snapshot|write)",
        &["type"],
        exponential_buckets(0.00005, 2.0, 20).unwrap_or_default()
    )
    .expect("metric")
});

/// Pessimistic lock requests waiting for another transaction's lock.
pub static LOCK_WAITERS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "tikv_lock_manager_waiter_count",
        "Pessimistic lock requests waiting for a lock"
    )
    .expect("metric")
});

/// Deadlocks detected between waiting transactions.
pub static DEADLOCKS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!("tikv_lock_manager_deadlock_detect_total", "Deadlocks detected")
        .expect("metric")
});

/// Time a command waits for its key latches (other commands on the same keys).
pub static LATCH_WAIT: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "tikv_scheduler_latch_wait_duration_seconds",
        "Time waiting for key latches",
        exponential_buckets(0.00001, 2.0, 22).unwrap_or_default()
    )
    .expect("metric")
});

/// Time a transactional command takes in storage, by command (latches, snapshot, actions,
/// replication), named as TiKV's scheduler metric.
pub static SCHEDULER_COMMAND_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_scheduler_command_duration_seconds",
        "Time to run a transactional command, by type",
        &["type"],
        exponential_buckets(0.00005, 2.0, 22).unwrap_or_default()
    )
    .expect("metric")
});

/// Observes `SCHEDULER_COMMAND_DURATION` for one command when dropped.
pub struct SchedulerTimer {
    kind: &'static str,
    start: std::time::Instant,
}

impl SchedulerTimer {
    pub fn new(kind: &'static str) -> SchedulerTimer {
        SchedulerTimer {
            kind,
            start: std::time::Instant::now(),
        }
    }
}

impl Drop for SchedulerTimer {
    fn drop(&mut self) {
        SCHEDULER_COMMAND_DURATION
            .with_label_values(&[self.kind])
            .observe(self.start.elapsed().as_secs_f64());
    }
}
