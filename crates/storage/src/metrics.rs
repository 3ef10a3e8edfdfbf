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
