//! Prometheus metrics of the PD client, registered in the default registry (prometheus 0.13,
//! the same major version as the node's `/metrics`).

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec};

/// Latency of PD requests by `type` (the RPC, e.g. `alloc_id`, `get_region`, `tso`), retries
/// included. For `tso` it is one stream round trip serving a whole batch.
pub static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "pd_client_request_duration_seconds",
        "Bucketed histogram of PD requests duration",
    )
    .buckets(vec![
        0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
        8.192, 16.384,
    ]);
    let histogram = HistogramVec::new(opts, &["type"]).expect("constant metric definition is valid");
    register(Box::new(histogram.clone()));
    histogram
});

/// Number of `get_tso` calls served by one `TsoRequest`.
pub static TSO_BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "pd_client_tso_batch_size",
        "Bucketed histogram of TSO request batch sizes",
    )
    .buckets(vec![
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
    ]);
    let histogram = Histogram::with_opts(opts).expect("constant metric definition is valid");
    register(Box::new(histogram.clone()));
    histogram
});

fn register(collector: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = prometheus::register(collector) {
        tracing::warn!(error = %e, "failed to register a pd_client metric");
    }
}
