//! Raftstore metrics, named as TiKV names them where a TiKV dashboard reads them.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, register_histogram, register_histogram_vec, register_int_counter_vec,
    register_int_gauge_vec, Histogram, HistogramVec, IntCounterVec, IntGaugeVec,
};

fn buckets() -> Vec<f64> {
    exponential_buckets(0.00005, 2.0, 20).unwrap_or_default()
}

pub static REGION_COUNT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tikv_raftstore_region_count",
        "Number of regions (type=region|leader)",
        &["type"]
    )
    .expect("metric")
});

pub static APPEND_LOG_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_append_log_duration_seconds",
        "Time to persist one loop's Raft log batch (write + fsync)",
        buckets()
    )
    .expect("metric")
});

pub static APPLY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_apply_log_duration_seconds",
        "Time to apply one loop's committed entries to the KV engine",
        buckets()
    )
    .expect("metric")
});

pub static REQUEST_WAIT_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_request_wait_time_duration_secs",
        "Time a write waits in the store's queue before the loop proposes it",
        buckets()
    )
    .expect("metric")
});

pub static COMMIT_LOG_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_commit_log_duration_seconds",
        "Time from proposing a write to its entry being committed (log persisted on a quorum)",
        buckets()
    )
    .expect("metric")
});

pub static APPLY_WAIT_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_apply_wait_time_duration_secs",
        "Time committed entries wait before their apply starts",
        buckets()
    )
    .expect("metric")
});

pub static PROPOSE_TO_APPLY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_propose_to_apply_duration_seconds",
        "Time from handing a write to the router until it is applied and answered",
        buckets()
    )
    .expect("metric")
});

pub static READ_INDEX_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_read_index_duration_seconds",
        "Time from sending a ReadIndex batch until its reads are answered",
        buckets()
    )
    .expect("metric")
});

pub static LOOP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_raftstore_loop_duration_seconds",
        "Time of one store loop iteration by phase",
        &["phase"],
        buckets()
    )
    .expect("metric")
});

pub static PROPOSAL_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("tikv_raftstore_proposal_total", "Proposals by type", &["type"])
        .expect("metric")
});

pub static RAFT_READY_REGIONS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_ready_regions_per_loop",
        "Regions with a Ready handled in one loop iteration",
        exponential_buckets(1.0, 2.0, 12).unwrap_or_default()
    )
    .expect("metric")
});

pub static SNAPSHOT_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tikv_raftstore_snapshot_total",
        "Region snapshots by stage (generate, applied, sent, received, failed)",
        &["type"]
    )
    .expect("metric")
});

pub static BATCHED_WRITES: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_batched_writes_per_entry",
        "Client writes proposed together in one Raft entry",
        exponential_buckets(1.0, 2.0, 12).unwrap_or_default()
    )
    .expect("metric")
});

pub static LOG_JOBS_PER_WRITE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_log_batches_per_write",
        "Store loop iterations' Raft log batches merged into one write and fsync",
        exponential_buckets(1.0, 2.0, 8).unwrap_or_default()
    )
    .expect("metric")
});

pub static DISK_FULL_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "atoll_raftstore_disk_full_dropped_messages_total",
        "Raft appends and snapshots dropped because this store's disk was short of space"
    )
    .expect("metric")
});
