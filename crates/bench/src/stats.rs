//! Latency histograms (HDR, microseconds) and the per-operation-type statistics of a run:
//! successes with their latencies, errors counted with their messages, reads that found
//! nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency kept exactly; longer ones are recorded as this (60 s).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// An HDR histogram of latencies in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    h: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5), so this cannot fail.
        let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        LatencyHistogram { h }
    }

    pub fn record(&mut self, latency: Duration) {
        self.record_us(latency.as_micros().min(u128::from(MAX_LATENCY_US)) as u64);
    }

    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail; a failure would only lose samples.
        let _ = self.h.add(&other.h);
    }

    pub fn reset(&mut self) {
        self.h.reset();
    }

    /// The latency at quantile `q` (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            return 0;
        }
        self.h.value_at_quantile(q)
    }

    pub fn summary(&self) -> LatencySummary {
        if self.h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.h.len(),
            mean_us: self.h.mean(),
            p50_us: self.h.value_at_quantile(0.50),
            p90_us: self.h.value_at_quantile(0.90),
            p99_us: self.h.value_at_quantile(0.99),
            p999_us: self.h.value_at_quantile(0.999),
            max_us: self.h.max(),
        }
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// What a measured request type is; the table has one row per kind seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum OpKind {
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "INSERT")]
    Insert,
    #[serde(rename = "SCAN")]
    Scan,
    #[serde(rename = "READ_MODIFY_WRITE")]
    ReadModifyWrite,
    /// Several inserts in one request (raw batch put) or one transaction (load phase).
    #[serde(rename = "BATCH_INSERT")]
    BatchInsert,
    /// Starting a transaction (its start timestamp from PD).
    #[serde(rename = "BEGIN")]
    Begin,
    /// A transaction's commit (prewrite + commit), after its operations.
    #[serde(rename = "COMMIT")]
    Commit,
    /// A whole transaction: begin, its operations, commit.
    #[serde(rename = "TXN")]
    Txn,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ_MODIFY_WRITE",
            OpKind::BatchInsert => "BATCH_INSERT",
            OpKind::Begin => "BEGIN",
            OpKind::Commit => "COMMIT",
            OpKind::Txn => "TXN",
        }
    }

    /// Whether the kind is a workload operation (counted in the headline ops/s) rather than
    /// a step or wrapper of a transaction (begin, commit, the whole transaction).
    pub fn is_workload_op(self) -> bool {
        !matches!(self, OpKind::Begin | OpKind::Commit | OpKind::Txn)
    }
}

/// How one measured request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A read of a key that does not exist (a success, counted apart).
    NotFound,
    Error(String),
}

/// One measured request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub kind: OpKind,
    pub latency: Duration,
    pub outcome: Outcome,
}

/// Statistics of one operation kind.
#[derive(Debug, Clone, Default)]
pub struct KindStats {
    /// Latencies of the successful requests (including not-found reads).
    pub latency: LatencyHistogram,
    pub errors: u64,
    pub not_found: u64,
}

/// Longest error message kept (messages are grouped by their text).
const MAX_ERROR_LEN: usize = 240;
/// Distinct error messages kept; later ones are counted under "other errors".
const MAX_ERROR_KINDS: usize = 64;
const OTHER_ERRORS: &str = "(other errors)";

/// An error message with every number replaced by `#` (keys, timestamps, ids differ from one
/// failure to the next; the kind of failure does not), cut to [`MAX_ERROR_LEN`] characters.
pub fn error_class(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_ERROR_LEN));
    let mut in_number = false;
    for c in msg.chars() {
        if out.chars().count() >= MAX_ERROR_LEN {
            break;
        }
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// Statistics of many requests, by kind, with error messages grouped.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub kinds: BTreeMap<OpKind, KindStats>,
    /// (kind, message) → count.
    pub errors: BTreeMap<(OpKind, String), u64>,
}

impl Recorder {
    pub fn record(&mut self, sample: &Sample) {
        let stats = self.kinds.entry(sample.kind).or_default();
        match &sample.outcome {
            Outcome::Ok => stats.latency.record(sample.latency),
            Outcome::NotFound => {
                stats.not_found += 1;
                stats.latency.record(sample.latency);
            }
            Outcome::Error(msg) => {
                stats.errors += 1;
                self.count_error(sample.kind, msg, 1);
            }
        }
    }

    fn count_error(&mut self, kind: OpKind, msg: &str, n: u64) {
        let mut text = error_class(msg);
        if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&(kind, text.clone())) {
            text = OTHER_ERRORS.to_owned();
        }
        *self.errors.entry((kind, text)).or_default() += n;
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (kind, s) in &other.kinds {
            let mine = self.kinds.entry(*kind).or_default();
            mine.latency.merge(&s.latency);
            mine.errors += s.errors;
            mine.not_found += s.not_found;
        }
        for ((kind, msg), n) in &other.errors {
            self.count_error(*kind, msg, *n);
        }
    }

    /// Successful workload operations (not commits or transactions).
    pub fn workload_ops(&self) -> u64 {
        self.kinds
            .iter()
            .filter(|(k, _)| k.is_workload_op())
            .map(|(_, s)| s.latency.count())
            .sum()
    }

    /// Failed requests. A failed transaction is counted once, by the step that failed
    /// (begin, an operation, or commit), not again as a transaction.
    pub fn errors(&self) -> u64 {
        self.kinds
            .iter()
            .filter(|(k, _)| **k != OpKind::Txn)
            .map(|(_, s)| s.errors)
            .sum()
    }

    /// Latencies of every workload operation together.
    pub fn workload_latency(&self) -> LatencyHistogram {
        let mut all = LatencyHistogram::new();
        for (kind, s) in &self.kinds {
            if kind.is_workload_op() {
                all.merge(&s.latency);
            }
        }
        all
    }
}

/// `count` events over `elapsed` as a rate per second (0 for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for v in values {
            h.record_us(v);
        }
        h
    }

    /// Within HDR's 3-significant-digit precision (0.1%, plus one unit).
    fn close(got: u64, want: u64) -> bool {
        got.abs_diff(want) <= want / 1000 + 1
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let h = hist_of(1..=10_000);
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 5_000), "{s:?}");
        assert!(close(s.p90_us, 9_000), "{s:?}");
        assert!(close(s.p99_us, 9_900), "{s:?}");
        assert!(close(s.p999_us, 9_990), "{s:?}");
        assert!(close(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5_000.5).abs() < 10.0, "{s:?}");
    }

    #[test]
    fn one_slow_request_in_a_thousand_shows_at_p999_not_p99() {
        let mut h = hist_of(std::iter::repeat_n(100, 999));
        h.record(Duration::from_millis(50));
        let s = h.summary();
        assert!(close(s.p99_us, 100));
        assert!(close(s.p999_us, 100));
        assert!(close(s.max_us, 50_000));
        // One more slow request moves p99.9 to it.
        h.record(Duration::from_millis(50));
        assert!(close(h.quantile_us(0.999), 50_000));
    }

    #[test]
    fn empty_and_out_of_range_values() {
        let h = LatencyHistogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert_eq!(h.quantile_us(0.99), 0);
        let mut h = LatencyHistogram::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50_us, 1);
        assert!(close(s.max_us, MAX_LATENCY_US));
    }

    #[test]
    fn merging_equals_recording_together() {
        let a = hist_of((1..=500).map(|v| v * 3));
        let b = hist_of((1..=700).map(|v| v * 7));
        let mut merged = a.clone();
        merged.merge(&b);
        let together = hist_of((1..=500).map(|v| v * 3).chain((1..=700).map(|v| v * 7)));
        assert_eq!(merged.summary(), together.summary());
        let mut r = merged;
        r.reset();
        assert_eq!(r.count(), 0);
    }

    fn sample(kind: OpKind, us: u64, outcome: Outcome) -> Sample {
        Sample {
            kind,
            latency: Duration::from_micros(us),
            outcome,
        }
    }

    #[test]
    fn recorder_counts_by_kind_and_groups_errors() {
        let mut r = Recorder::default();
        r.record(&sample(OpKind::Read, 100, Outcome::Ok));
        r.record(&sample(OpKind::Read, 200, Outcome::NotFound));
        r.record(&sample(OpKind::Update, 300, Outcome::Error("timeout".into())));
        r.record(&sample(OpKind::Update, 300, Outcome::Error("timeout".into())));
        r.record(&sample(OpKind::Commit, 400, Outcome::Ok));
        r.record(&sample(OpKind::Txn, 900, Outcome::Ok));
        r.record(&sample(OpKind::Commit, 400, Outcome::Error("conflict".into())));
        r.record(&sample(OpKind::Txn, 900, Outcome::Error("conflict".into())));
        assert_eq!(r.workload_ops(), 2);
        assert_eq!(r.errors(), 3);
        assert_eq!(r.kinds[&OpKind::Read].not_found, 1);
        assert_eq!(r.kinds[&OpKind::Update].latency.count(), 0);
        assert_eq!(r.errors[&(OpKind::Update, "timeout".to_owned())], 2);
        assert_eq!(r.workload_latency().count(), 2);

        let mut total = Recorder::default();
        total.merge(&r);
        total.merge(&r);
        assert_eq!(total.workload_ops(), 4);
        assert_eq!(total.errors(), 6);
        assert_eq!(total.errors[&(OpKind::Update, "timeout".to_owned())], 4);
        assert_eq!(total.kinds[&OpKind::Read].not_found, 2);
    }

    #[test]
    fn error_classes_ignore_numbers() {
        assert_eq!(
            error_class("write conflict on key [120, 0]: txn 4706 conflicts"),
            "write conflict on key [#, #]: txn # conflicts"
        );
        let mut r = Recorder::default();
        r.record(&sample(
            OpKind::Commit,
            1,
            Outcome::Error("conflict at ts 17".into()),
        ));
        r.record(&sample(
            OpKind::Commit,
            1,
            Outcome::Error("conflict at ts 99".into()),
        ));
        assert_eq!(r.errors[&(OpKind::Commit, "conflict at ts #".to_owned())], 2);
    }

    #[test]
    fn error_messages_are_truncated_and_bounded() {
        let mut r = Recorder::default();
        r.record(&sample(OpKind::Read, 1, Outcome::Error("x".repeat(1000))));
        assert!(r.errors.keys().all(|(_, m)| m.len() == MAX_ERROR_LEN));
        for i in 0..100u8 {
            let distinct: String =
                std::iter::repeat_n(char::from(b'a' + i % 26), 1 + usize::from(i / 26)).collect();
            r.record(&sample(
                OpKind::Read,
                1,
                Outcome::Error(format!("error {distinct}")),
            ));
        }
        assert!(r.errors.len() <= MAX_ERROR_KINDS + 1);
        assert_eq!(r.errors.values().sum::<u64>(), 101);
        assert!(r.errors.contains_key(&(OpKind::Read, OTHER_ERRORS.to_owned())));
    }

    #[test]
    fn rates() {
        assert_eq!(rate(100, Duration::from_secs(4)), 25.0);
        assert_eq!(rate(100, Duration::ZERO), 0.0);
    }
}
