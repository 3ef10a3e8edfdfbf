//! `atoll-bench`: the load generator behind `atoll bench`.
//!
//! It speaks only public client protocols — TiKV's through the `tikv-client` crate (found
//! through PD, raw or transactional, API V1 or V2) and etcd's v3 KV gRPC API — so it measures
//! any TiKV-compatible cluster, and etcd beside it, from the outside.
//!
//! - [`generator`]: YCSB key choosers (uniform, Zipfian, scrambled Zipfian, latest).
//! - [`workload`]: YCSB core workloads A–F plus pure put/get, and per-worker op streams.
//! - [`stats`]: HDR latency histograms and per-operation statistics.
//! - [`driver`]: tikv raw, tikv txn and etcd drivers behind one trait.
//! - [`runner`]: the load and run phases with live progress.
//! - [`report`]: tables and JSON.
//! - [`limits`]: the machine's fsync rate and loopback gRPC round trip.
//! - [`compare`]: Atoll against etcd, cell by cell, in one run.
//! - [`server_metrics`]: the nodes' own stage histograms over a run (where the time went).
//!
//! Must not depend on any Atoll server crate: it is a client. Errors are never retried by the
//! bench itself; every failed request is counted and its message kept.

pub mod compare;
pub mod driver;
pub mod generator;
pub mod limits;
pub mod report;
pub mod runner;
pub mod server_metrics;
pub mod stats;
pub mod workload;

/// Generated gRPC code (etcd's KV subset, the ping probe).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod atollbench {
        tonic::include_proto!("atollbench");
    }
}

/// What can stop a benchmark (failed requests are not errors: they are counted).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses a duration in human units: `500ms`, `10s`, `2m`, `1h`, or plain seconds (`10`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, BenchError> {
    let s = s.trim();
    let bad = || BenchError::Config(format!("bad duration {s:?} (use e.g. 500ms, 10s, 2m)"));
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }
}
