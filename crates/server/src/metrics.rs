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

pub static GRPC_PANICS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "atoll_grpc_panics_total",
        "gRPC requests whose handler panicked (answered Internal), by method",
        &["method"]
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

pub static GC_KEYS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "tikv_gcworker_gc_keys",
        "Keys scanned and versions deleted by the GC worker",
        &["tag"]
    )
    .expect("metric")
});

pub static GC_SAFE_POINT: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "tikv_gcworker_autogc_safe_point",
        "The GC safe point this node follows"
    )
    .expect("metric")
});
