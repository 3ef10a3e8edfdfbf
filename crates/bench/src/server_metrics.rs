//! Where the time went inside the servers during a run: the nodes' Prometheus histograms read
//! before and after, their difference turned into a mean per event for each stage of the write
//! and read paths. Store status addresses come from PD's HTTP API, so this works against any
//! TiKV-style cluster that exports the same metric names (absent metrics are left out).
//!
//! A deliberately small HTTP/1.0 GET (no client library): one request per connection, the body
//! read to the end of the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchError;

/// The stages shown, in the order a write (then a read) passes them: metric, short name.
pub const STAGES: &[(&str, &str)] = &[
    ("tikv_grpc_msg_duration_seconds", "grpc"),
    ("tikv_scheduler_command_duration_seconds", "scheduler"),
    ("tikv_storage_engine_async_request_duration_seconds", "raftkv"),
    ("tikv_raftstore_request_wait_time_duration_secs", "propose_wait"),
    ("tikv_raftstore_append_log_duration_seconds", "log_fsync"),
    ("tikv_raftstore_commit_log_duration_seconds", "commit"),
    ("tikv_raftstore_apply_wait_time_duration_secs", "apply_wait"),
    ("tikv_raftstore_apply_log_duration_seconds", "apply"),
    (
        "tikv_raftstore_propose_to_apply_duration_seconds",
        "propose_to_apply",
    ),
    ("tikv_raftstore_read_index_duration_seconds", "read_index"),
];

/// `GET path` from `addr` (`host:port`); the body of a 2xx answer.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, BenchError> {
    let fetch = async {
        let mut conn = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
        conn.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| BenchError::Transport(format!("GET http://{addr}{path}: timed out")))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| BenchError::Transport(format!("GET http://{addr}{path}: no HTTP header")))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(BenchError::Transport(format!(
            "GET http://{addr}{path}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_owned())
}

/// The status addresses of the cluster's stores, from PD's `/pd/api/v1/stores`.
pub async fn store_status_addrs(pd: &str, timeout: Duration) -> Result<Vec<String>, BenchError> {
    let pd = pd.trim_start_matches("http://");
    let body = http_get(pd, "/pd/api/v1/stores", timeout).await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let addrs = v["stores"]
        .as_array()
        .map(|stores| {
            stores
                .iter()
                .filter_map(|s| s["store"]["status_address"].as_str())
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(addrs)
}

/// Sum and count of every histogram series in a Prometheus text page, by metric name (series
/// with labels are added together).
pub fn histogram_totals(page: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Some(base) = name.strip_suffix("_sum") {
            out.entry(base.to_owned()).or_default().0 += value;
        } else if let Some(base) = name.strip_suffix("_count") {
            out.entry(base.to_owned()).or_default().1 += value;
        }
    }
    out
}

/// Totals over every store.
pub async fn snapshot(
    addrs: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, (f64, f64)>, BenchError> {
    let mut all: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for a in addrs {
        let page = http_get(a, "/metrics", timeout).await?;
        for (name, (sum, count)) in histogram_totals(&page) {
            let e = all.entry(name).or_default();
            e.0 += sum;
            e.1 += count;
        }
    }
    Ok(all)
}

/// One stage over a run: how many events, and their mean duration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub stage: String,
    pub metric: String,
    pub events: u64,
    pub mean_ms: f64,
}

/// The [`STAGES`] that moved between `before` and `after`.
pub fn stages(before: &BTreeMap<String, (f64, f64)>, after: &BTreeMap<String, (f64, f64)>) -> Vec<Stage> {
    STAGES
        .iter()
        .filter_map(|(metric, stage)| {
            let (s1, c1) = after.get(*metric).copied()?;
            let (s0, c0) = before.get(*metric).copied().unwrap_or_default();
            let events = (c1 - c0).max(0.0);
            if events < 1.0 {
                return None;
            }
            Some(Stage {
                stage: (*stage).to_owned(),
                metric: (*metric).to_owned(),
                events: events as u64,
                mean_ms: (s1 - s0).max(0.0) / events * 1000.0,
            })
        })
        .collect()
}

/// `stage=mean ms (events)` pairs on one line.
pub fn one_line(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| format!("{} {:.2} ms ({})", s.stage, s.mean_ms, s.events))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP tikv_raftstore_append_log_duration_seconds x
# TYPE tikv_raftstore_append_log_duration_seconds histogram
tikv_raftstore_append_log_duration_seconds_bucket{le=\"0.001\"} 3
tikv_raftstore_append_log_duration_seconds_sum 0.5
tikv_raftstore_append_log_duration_seconds_count 100
tikv_raftstore_loop_duration_seconds_sum{phase=\"a\"} 1
tikv_raftstore_loop_duration_seconds_sum{phase=\"b\"} 2
tikv_raftstore_loop_duration_seconds_count{phase=\"a\"} 10
tikv_raftstore_loop_duration_seconds_count{phase=\"b\"} 10
tikv_raftstore_region_count{type=\"leader\"} 5
";

    #[test]
    fn totals_add_label_series() {
        let t = histogram_totals(PAGE);
        assert_eq!(t["tikv_raftstore_append_log_duration_seconds"], (0.5, 100.0));
        assert_eq!(t["tikv_raftstore_loop_duration_seconds"], (3.0, 20.0));
        assert!(!t.contains_key("tikv_raftstore_region_count"));
    }

    #[test]
    fn stages_are_means_of_the_difference() {
        let before = histogram_totals(PAGE);
        let mut after = before.clone();
        after.insert("tikv_raftstore_append_log_duration_seconds".into(), (0.9, 300.0));
        after.insert("tikv_raftstore_commit_log_duration_seconds".into(), (1.0, 100.0));
        let s = stages(&before, &after);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].stage, "log_fsync");
        assert_eq!(s[0].events, 200);
        assert!((s[0].mean_ms - 2.0).abs() < 1e-9);
        // A metric absent before counts from zero.
        assert_eq!(s[1].stage, "commit");
        assert!((s[1].mean_ms - 10.0).abs() < 1e-9);
        assert_eq!(one_line(&s[1..]), "commit 10.00 ms (100)");
    }
}
