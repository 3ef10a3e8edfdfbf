//! Node metrics, named as TiKV names them.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, register_histogram_vec, register_int_gauge_vec, HistogramVec, IntGaugeVec,
};

pub static GRPC_MSG_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_grpc_msg_duration_seconds",
        "Time to handle a gRPC message, by type",
        &["type"],
        exponential_buckets(0.00005, 2.0, 22).unwrap_or_default()
    )
    .expect("metric")
});

pub static ENGINE_SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tikv_engine_size_bytes",
        "Approximate size of each column family",
        &["db", "type"]
    )
    .expect("metric")
});

pub static STORE_SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tikv_store_size_bytes",
        "Store capacity/available/used",
        &["type"]
    )
    .expect("metric")
});
