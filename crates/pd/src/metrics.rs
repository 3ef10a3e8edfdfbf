//! PD's Prometheus metrics, registered in the default registry and served on `/metrics`.
//!
//! Names follow PD / go-grpc-prometheus where a dashboard reads them. A name already registered
//! by someone else in the same process (e.g. two PDs in one test binary) is logged and the
//! metric stays unregistered instead of failing.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

fn register<C: Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = prometheus::register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "metric not registered");
    }
    c
}

// Constructors only fail on invalid (constant) names, a programming error caught by the tests.
fn built<T>(r: prometheus::Result<T>, name: &str) -> T {
    r.unwrap_or_else(|e| panic!("invalid metric {name}: {e}"))
}

fn buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).unwrap_or_default()
}

/// gRPC calls handled, by service, method and status code.
pub static GRPC_HANDLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let name = "grpc_server_handled_total";
    let opts = Opts::new(
        name,
        "Total number of RPCs completed on the server, regardless of success or failure.",
    );
    register(built(
        IntCounterVec::new(opts, &["grpc_service", "grpc_method", "grpc_code"]),
        name,
    ))
});

/// Time to produce a response (for streams: to open them), by service and method.
pub static GRPC_HANDLING_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let name = "grpc_server_handling_seconds";
    let opts = HistogramOpts::new(
        name,
        "Histogram of response latency (seconds) of gRPC handled by the server.",
    )
    .buckets(buckets(0.0005, 2.0, 20));
    register(built(
        HistogramVec::new(opts, &["grpc_service", "grpc_method"]),
        name,
    ))
});

/// Requests whose handler panicked (answered as an error), by path.
pub static REQUEST_PANICS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let name = "atoll_pd_request_panics_total";
    let opts = Opts::new(
        name,
        "Requests whose handler panicked (answered as an error), by path.",
    );
    register(built(IntCounterVec::new(opts, &["path"]), name))
});

/// TSO requests served (one per `TsoRequest`, whatever its count).
pub static TSO_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    let name = "pd_server_tso_requests_total";
    register(built(
        IntCounter::new(name, "Number of TSO requests handled."),
        name,
    ))
});

/// Time to allocate one TSO batch.
pub static TSO_HANDLE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let name = "pd_server_handle_tso_duration_seconds";
    let opts = HistogramOpts::new(
        name,
        "Bucketed histogram of processing time (s) of handled tso requests.",
    )
    .buckets(buckets(0.00005, 2.0, 20));
    register(built(Histogram::with_opts(opts), name))
});

/// Timestamps handed out per TSO request.
pub static TSO_BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    let name = "pd_server_handle_tso_batch_size";
    let opts = HistogramOpts::new(
        name,
        "Bucketed histogram of the batch size of handled tso requests.",
    )
    .buckets(buckets(1.0, 2.0, 13));
    register(built(Histogram::with_opts(opts), name))
});

/// Region heartbeats by outcome (`ok`, `stale`, `err`, `tombstone`).
pub static REGION_HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let name = "pd_scheduler_region_heartbeat_total";
    let opts = Opts::new(name, "Counter of region heartbeats by outcome.");
    register(built(IntCounterVec::new(opts, &["status"]), name))
});

/// Operators by type (their description, e.g. `make-up-replica`) and event (`create`,
/// `finish`, `timeout`, `cancel`, `replace`).
pub static OPERATORS_COUNT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let name = "pd_schedule_operators_count";
    let opts = Opts::new(name, "Counter of schedule operators.");
    register(built(IntCounterVec::new(opts, &["type", "event"]), name))
});

/// Cluster status gauges (`store_up_count`, `region_count`, ...), refreshed on scrape.
pub static CLUSTER_STATUS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let name = "pd_cluster_status";
    register(built(
        IntGaugeVec::new(Opts::new(name, "Status of the cluster."), &["type"]),
        name,
    ))
});

/// Encodes every metric of the default registry in the text format.
pub fn encode_text() -> String {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        tracing::warn!(error = %e, "failed to encode metrics");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_build_and_encode() {
        GRPC_HANDLED
            .with_label_values(&["pdpb.PD", "GetMembers", "OK"])
            .inc();
        GRPC_HANDLING_SECONDS
            .with_label_values(&["pdpb.PD", "GetMembers"])
            .observe(0.001);
        TSO_REQUESTS.inc();
        TSO_HANDLE_SECONDS.observe(0.0001);
        TSO_BATCH_SIZE.observe(3.0);
        REGION_HEARTBEATS.with_label_values(&["ok"]).inc();
        CLUSTER_STATUS.with_label_values(&["region_count"]).set(1);
        OPERATORS_COUNT
            .with_label_values(&["make-up-replica", "create"])
            .inc();
        let text = encode_text();
        assert!(text.contains("grpc_server_handled_total"));
        assert!(text.contains("pd_server_tso_requests_total"));
        assert!(text.contains("pd_schedule_operators_count"));
    }
}
