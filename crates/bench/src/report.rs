//! Results as people and programs read them: a fixed-width table per phase (ops/s and latency
//! percentiles per operation type, errors with their messages), the side-by-side comparison
//! table, and the same data as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::limits::Limits;
use crate::runner::{Phase, PhaseResult};
use crate::server_metrics::{one_line, Stage};
use crate::stats::{rate, LatencySummary, OpKind};

/// One operation type's row.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub op: OpKind,
    /// Successful requests (including reads that found nothing).
    pub count: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub not_found: u64,
    pub latency_us: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub op: OpKind,
    pub message: String,
    pub count: u64,
}

/// One phase, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub label: String,
    pub phase: Phase,
    pub workload: String,
    pub threads: usize,
    pub elapsed_secs: f64,
    /// Successful workload operations (not counting begin/commit/transaction rows).
    pub ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    /// Latency of all workload operations together.
    pub latency_us: LatencySummary,
    pub by_op: Vec<KindReport>,
    pub error_messages: Vec<ErrorReport>,
}

impl PhaseReport {
    pub fn new(r: &PhaseResult) -> PhaseReport {
        let by_op = r
            .stats
            .kinds
            .iter()
            .map(|(kind, s)| KindReport {
                op: *kind,
                count: s.latency.count(),
                ops_per_sec: rate(s.latency.count(), r.elapsed),
                errors: s.errors,
                not_found: s.not_found,
                latency_us: s.latency.summary(),
            })
            .collect();
        let mut error_messages: Vec<ErrorReport> = r
            .stats
            .errors
            .iter()
            .map(|((op, message), count)| ErrorReport {
                op: *op,
                message: message.clone(),
                count: *count,
            })
            .collect();
        error_messages.sort_by(|a, b| b.count.cmp(&a.count).then(a.op.cmp(&b.op)));
        let ops = r.stats.workload_ops();
        PhaseReport {
            label: r.label.clone(),
            phase: r.phase,
            workload: r.workload.clone(),
            threads: r.threads,
            elapsed_secs: r.elapsed.as_secs_f64(),
            ops,
            ops_per_sec: rate(ops, r.elapsed),
            errors: r.stats.errors(),
            latency_us: r.stats.workload_latency().summary(),
            by_op,
            error_messages,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== {} | workload {} | {} | {} clients | {:.2} s | {:.0} ops/s | {} errors ==",
            self.label,
            self.workload,
            self.phase.name(),
            self.threads,
            self.elapsed_secs,
            self.ops_per_sec,
            self.errors
        );
        let _ = writeln!(
            s,
            "{:<18} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "OP", "COUNT", "OPS/S", "ERRORS", "NOTFOUND", "P50 ms", "P90 ms", "P99 ms", "P99.9 ms", "MAX ms"
        );
        for k in &self.by_op {
            let l = &k.latency_us;
            let _ = writeln!(
                s,
                "{:<18} {:>10} {:>10.1} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                k.op.name(),
                k.count,
                k.ops_per_sec,
                k.errors,
                k.not_found,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            );
        }
        if !self.error_messages.is_empty() {
            let _ = writeln!(s, "errors:");
            for e in self.error_messages.iter().take(10) {
                let _ = writeln!(s, "  {:>8} x {:<18} {}", e.count, e.op.name(), e.message);
            }
            if self.error_messages.len() > 10 {
                let _ = writeln!(s, "  ... {} more kinds of error", self.error_messages.len() - 10);
            }
        }
        s
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// One workload at one client count on both systems.
#[derive(Debug, Clone, Serialize)]
pub struct CompareCell {
    pub workload: String,
    pub clients: usize,
    pub atoll: PhaseReport,
    pub etcd: PhaseReport,
    /// Atoll's nodes' stage histograms over the Atoll half of the cell (empty if unreadable).
    pub atoll_stages: Vec<Stage>,
}

impl CompareCell {
    /// Atoll's throughput over etcd's (0 when etcd did nothing).
    pub fn ratio(&self) -> f64 {
        if self.etcd.ops_per_sec > 0.0 {
            self.atoll.ops_per_sec / self.etcd.ops_per_sec
        } else {
            0.0
        }
    }
}

/// A whole comparison run.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Setup facts printed under the table (replication, durability, limits applied).
    pub notes: Vec<String>,
    pub limits: Option<Limits>,
    pub cells: Vec<CompareCell>,
}

impl Comparison {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| workload | clients | Atoll ops/s | etcd ops/s | ratio | Atoll p99 ms | etcd p99 ms | errors Atoll/etcd |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for c in &self.cells {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {}/{} |",
                c.workload,
                c.clients,
                c.atoll.ops_per_sec,
                c.etcd.ops_per_sec,
                c.ratio(),
                ms(c.atoll.latency_us.p99_us),
                ms(c.etcd.latency_us.p99_us),
                c.atoll.errors,
                c.etcd.errors
            );
        }
        if self.cells.iter().any(|c| !c.atoll_stages.is_empty()) {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "Atoll time by stage (mean per event, all nodes; from their /metrics):"
            );
            let _ = writeln!(s);
            let _ = writeln!(s, "| workload | clients | stages |");
            let _ = writeln!(s, "|---|---:|---|");
            for c in &self.cells {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    c.workload,
                    c.clients,
                    one_line(&c.atoll_stages)
                );
            }
        }
        if let Some(l) = &self.limits {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "Machine limits: fsync {:.0}/s ({} B appends, p50 {} ms, p99 {} ms, in {}); \
                 loopback gRPC ping p50 {} ms, p99 {} ms, {:.0}/s serial, {:.0}/s with {} in flight.",
                l.fsync.fsyncs_per_sec,
                l.fsync.write_bytes,
                ms(l.fsync.latency_us.p50_us),
                ms(l.fsync.latency_us.p99_us),
                l.fsync.dir.display(),
                ms(l.grpc_ping.serial_latency_us.p50_us),
                ms(l.grpc_ping.serial_latency_us.p99_us),
                l.grpc_ping.serial_per_sec,
                l.grpc_ping.concurrent_per_sec,
                l.grpc_ping.concurrency
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Outcome, Recorder, Sample};

    fn result(label: &str, reads: u64, errors: u64) -> PhaseResult {
        let mut stats = Recorder::default();
        for i in 0..reads {
            stats.record(&Sample {
                kind: OpKind::Read,
                latency: Duration::from_micros(1000 + i),
                outcome: if i % 10 == 0 {
                    Outcome::NotFound
                } else {
                    Outcome::Ok
                },
            });
        }
        for _ in 0..errors {
            stats.record(&Sample {
                kind: OpKind::Update,
                latency: Duration::from_micros(5),
                outcome: Outcome::Error("region unavailable".into()),
            });
        }
        PhaseResult {
            label: label.into(),
            phase: Phase::Run,
            workload: "a".into(),
            threads: 16,
            elapsed: Duration::from_secs(2),
            stats,
        }
    }

    #[test]
    fn phase_report_numbers() {
        let r = PhaseReport::new(&result("atoll raw v2", 1000, 3));
        assert_eq!(r.ops, 1000);
        assert_eq!(r.ops_per_sec, 500.0);
        assert_eq!(r.errors, 3);
        assert_eq!(r.by_op.len(), 2);
        assert_eq!(r.by_op[0].op, OpKind::Read);
        assert_eq!(r.by_op[0].not_found, 100);
        assert_eq!(r.by_op[1].errors, 3);
        assert_eq!(r.error_messages[0].count, 3);
        assert!(r.latency_us.p50_us.abs_diff(1500) <= 2, "{:?}", r.latency_us);
    }

    #[test]
    fn table_shows_rows_and_errors() {
        let t = PhaseReport::new(&result("atoll raw v2", 1000, 3)).table();
        assert!(t.contains("workload a"), "{t}");
        assert!(t.contains("500 ops/s"), "{t}");
        assert!(t.contains("P99.9 ms"), "{t}");
        let read_row = t.lines().find(|l| l.starts_with("READ ")).unwrap();
        assert!(
            read_row.contains("1000") && read_row.contains("500.0"),
            "{read_row}"
        );
        assert!(t.contains("3 x UPDATE"), "{t}");
        assert!(t.contains("region unavailable"), "{t}");
        // No error section when there are none.
        assert!(!PhaseReport::new(&result("x", 10, 0)).table().contains("errors:"));
    }

    #[test]
    fn json_has_the_fields_tools_read() {
        let r = PhaseReport::new(&result("etcd", 10, 1));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["phase"], "run");
        assert_eq!(v["ops"], 10);
        assert_eq!(v["by_op"][0]["op"], "READ");
        assert_eq!(v["by_op"][1]["op"], "UPDATE");
        assert!(v["by_op"][0]["latency_us"]["p999_us"].is_u64());
        assert_eq!(v["error_messages"][0]["message"], "region unavailable");
    }

    #[test]
    fn comparison_table_and_ratio() {
        let cell = CompareCell {
            workload: "put".into(),
            clients: 16,
            atoll: PhaseReport::new(&result("atoll", 1000, 0)),
            etcd: PhaseReport::new(&result("etcd", 500, 2)),
            atoll_stages: vec![Stage {
                stage: "log_fsync".into(),
                metric: "m".into(),
                events: 10,
                mean_ms: 1.5,
            }],
        };
        assert_eq!(cell.ratio(), 2.0);
        let c = Comparison {
            notes: vec!["one replica per region".into()],
            limits: None,
            cells: vec![cell],
        };
        let t = c.table();
        let row = t.lines().find(|l| l.starts_with("| put")).unwrap();
        assert_eq!(row, "| put | 16 | 500 | 250 | 2.00 | 1.99 | 1.49 | 0/2 |");
        assert!(t.contains("- one replica per region"));
        assert!(t.contains("| put | 16 | log_fsync 1.50 ms (10) |"), "{t}");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["cells"][0]["clients"], 16);
        assert_eq!(ms(1234), "1.23");
    }
}
