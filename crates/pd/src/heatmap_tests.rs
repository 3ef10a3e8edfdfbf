use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

const T0: u64 = 1_700_000_040; // a minute boundary (1_700_000_040 % 60 == 0)

fn w(bytes: u64) -> Load {
    Load {
        written_bytes: bytes,
        ..Default::default()
    }
}

fn all(v: u64) -> Load {
    Load {
        written_bytes: v,
        read_bytes: 2 * v,
        written_keys: 3 * v,
        read_keys: 4 * v,
    }
}

fn total(v: &HeatmapView) -> u64 {
    v.values.iter().flatten().sum()
}

#[test]
fn minute_boundary_of_t0() {
    assert_eq!(T0 % 60, 0);
}

#[test]
fn a_report_without_interval_lands_in_the_bucket_of_now() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    h.record(T0 + 59, 0, b"a", b"b", w(100));
    let v = h.view(T0 + 59, 60, Metric::WrittenBytes, 100);
    assert_eq!(v.times.len(), 60);
    assert_eq!(*v.times.last().unwrap(), T0);
    assert_eq!(v.times[0], T0 - 59 * 60);
    assert_eq!(v.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(v.values[59], vec![100]);
    assert!(v.values[..59].iter().all(|c| c == &vec![0]));
    // A minute later the column moved one to the left.
    let v = h.view(T0 + 60, 60, Metric::WrittenBytes, 100);
    assert_eq!(v.values[58], vec![100]);
    assert_eq!(v.values[59], vec![0]);
}

#[test]
fn an_interval_is_spread_over_the_buckets_it_overlaps() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    // 60 s ending 15 s into a minute: 45 s in the previous bucket, 15 s in this one.
    h.record(T0 + 14, 60, b"a", b"b", w(600));
    let v = h.view(T0 + 14, 2, Metric::WrittenBytes, 10);
    assert_eq!(v.times, vec![T0 - 60, T0]);
    assert_eq!(v.values, vec![vec![450], vec![150]]);
    // Totals are exact even when the shares do not divide evenly.
    let mut h = Heatmap::new(HeatmapConfig::default());
    h.record(T0 + 14, 61, b"a", b"b", all(7));
    for m in Metric::ALL {
        let v = h.view(T0 + 14, 60, m, 10);
        assert_eq!(total(&v), all(7).get(m), "{m:?}");
    }
}

#[test]
fn an_interval_longer_than_the_window_keeps_only_the_windowed_part() {
    let cfg = HeatmapConfig {
        bucket_secs: 60,
        buckets: 2,
        max_rows: 8,
    };
    let mut h = Heatmap::new(cfg);
    // 4 minutes, ending at the last second of a bucket: one quarter per bucket, 2 kept.
    h.record(T0 + 59, 240, b"a", b"", w(400));
    assert_eq!(h.bucket_count(), 2);
    let v = h.view(T0 + 59, 10, Metric::WrittenBytes, 8);
    assert_eq!(
        v.times,
        vec![T0 - 60, T0],
        "the window is capped at the ring size"
    );
    assert_eq!(v.values, vec![vec![100], vec![100]]);
    assert_eq!(v.keys, vec![b"a".to_vec(), Vec::new()]);
}

#[test]
fn the_ring_evicts_buckets_that_fall_out_of_the_window() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    for minute in 0..120u64 {
        h.record(T0 + minute * 60, 0, b"a", b"b", w(minute + 1));
        assert!(h.bucket_count() <= 60);
    }
    assert_eq!(h.bucket_count(), 60);
    let now = T0 + 119 * 60;
    let v = h.view(now, 60, Metric::WrittenBytes, 10);
    // Minutes 60..=119 are kept, valued 61..=120.
    assert_eq!(v.values[0], vec![61]);
    assert_eq!(v.values[59], vec![120]);
    // The 10-minute zoom is the last 10 columns.
    let z = h.view(now, 10, Metric::WrittenBytes, 10);
    assert_eq!(z.times, v.times[50..].to_vec());
    assert_eq!(z.values, v.values[50..].to_vec());
    // A late report for an evicted minute is dropped, one still in the window is added.
    h.record(now, 0, b"a", b"b", Load::default());
    let mut late = h.clone();
    late.record(now, 3600, b"a", b"b", w(3600));
    assert_eq!(late.bucket_count(), 60);
    // (The first 59 of its 3600 seconds lie before the window.)
    assert_eq!(
        total(&late.view(now, 60, Metric::WrittenBytes, 10)),
        total(&v) + 3541
    );
    // Long after, reading shows empty columns and the next record evicts everything old.
    let later = now + 3 * 3600;
    assert_eq!(total(&h.view(later, 60, Metric::WrittenBytes, 10)), 0);
    h.record(later, 0, b"x", b"y", w(1));
    assert_eq!(h.bucket_count(), 1);
}

#[test]
fn reports_of_one_range_add_up_and_metrics_are_separate() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    h.record(T0, 0, b"a", b"b", all(1));
    h.record(T0 + 5, 0, b"a", b"b", all(2));
    h.record(T0 + 5, 0, b"b", b"c", w(9));
    assert_eq!(h.row_count(), 2);
    let v = h.view(T0 + 5, 1, Metric::ReadKeys, 10);
    // Every reported range is on the axis, whatever the metric.
    assert_eq!(v.keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(v.values, vec![vec![12, 0]]);
    let v = h.view(T0 + 5, 1, Metric::WrittenBytes, 10);
    assert_eq!(v.keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(v.values, vec![vec![3, 9]]);
    assert_eq!(v.max(), 9);
}

#[test]
fn columns_with_different_regions_share_one_axis() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    // Minute 0: one region [a, z). Minute 1: it split at m.
    h.record(T0, 0, b"a", b"z", w(10));
    h.record(T0 + 60, 0, b"a", b"m", w(4));
    h.record(T0 + 60, 0, b"m", b"z", w(6));
    let v = h.view(T0 + 60, 2, Metric::WrittenBytes, 100);
    assert_eq!(v.keys, vec![b"a".to_vec(), b"m".to_vec(), b"z".to_vec()]);
    // The unsplit region's load is spread evenly over the segments it covers.
    assert_eq!(v.values, vec![vec![5, 5], vec![4, 6]]);
    // Gaps in the key space (no report) are rows of zeros.
    h.record(T0 + 60, 0, b"zz", b"", w(1));
    let v = h.view(T0 + 60, 2, Metric::WrittenBytes, 100);
    assert_eq!(
        v.keys,
        vec![
            b"a".to_vec(),
            b"m".to_vec(),
            b"z".to_vec(),
            b"zz".to_vec(),
            Vec::new()
        ]
    );
    assert_eq!(v.values, vec![vec![5, 5, 0, 0], vec![4, 6, 0, 1]]);
}

#[test]
fn a_view_groups_segments_into_at_most_max_rows() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    for i in 0..100u8 {
        h.record(T0, 0, &[i], &[i + 1], w(u64::from(i) + 1));
    }
    let v = h.view(T0, 1, Metric::WrittenBytes, 10);
    assert_eq!(v.keys.len(), 11);
    assert_eq!(v.keys[0], vec![0]);
    assert_eq!(v.keys[1], vec![10]);
    assert_eq!(v.keys[10], vec![100]);
    assert_eq!(v.values[0][0], (1..=10).sum::<u64>());
    assert_eq!(v.values[0][9], (91..=100).sum::<u64>());
    assert_eq!(total(&v), (1..=100).sum::<u64>());
    // Uneven grouping still covers every segment exactly once.
    let v = h.view(T0, 1, Metric::WrittenBytes, 7);
    assert_eq!(v.keys.len(), 8);
    assert_eq!(total(&v), (1..=100).sum::<u64>());
    assert!(v.keys.windows(2).all(|k| k[0] < k[1]));
}

#[test]
fn a_bucket_merges_adjacent_rows_beyond_twice_max_rows() {
    let cfg = HeatmapConfig {
        bucket_secs: 60,
        buckets: 60,
        max_rows: 4,
    };
    let mut h = Heatmap::new(cfg);
    for i in 0..8u8 {
        h.record(T0, 0, &[i], &[i + 1], w(1));
    }
    assert_eq!(h.row_count(), 8, "2 × max_rows are kept as they are");
    h.record(T0, 0, &[8], &[9], w(1));
    assert_eq!(h.row_count(), 3, "9 rows merge into groups of 3");
    let v = h.view(T0, 1, Metric::WrittenBytes, 100);
    assert_eq!(v.keys, vec![vec![0], vec![3], vec![6], vec![9]]);
    assert_eq!(v.values, vec![vec![3, 3, 3]]);
    // Bounded, whatever the number of regions.
    for i in 0..200u8 {
        h.record(T0 + 1, 0, &[i, 0], &[i, 1], w(1));
        assert!(h.row_count() <= 8);
    }
    assert_eq!(total(&h.view(T0 + 1, 1, Metric::WrittenBytes, 100)), 209);
}

#[test]
fn merging_takes_the_union_of_ranges_up_to_infinity() {
    let cfg = HeatmapConfig {
        bucket_secs: 60,
        buckets: 60,
        max_rows: 1,
    };
    let mut h = Heatmap::new(cfg);
    h.record(T0, 0, b"", b"b", w(1));
    h.record(T0, 0, b"k", b"", w(2));
    h.record(T0, 0, b"c", b"d", w(3));
    assert_eq!(h.row_count(), 1);
    let v = h.view(T0, 1, Metric::WrittenBytes, 10);
    assert_eq!(v.keys, vec![b"".to_vec(), Vec::new()]);
    assert_eq!(v.values, vec![vec![6]]);
}

#[test]
fn bounds_hold_with_many_regions_for_an_hour() {
    let cfg = HeatmapConfig::default();
    let mut h = Heatmap::new(cfg);
    for minute in 0..70u64 {
        for r in 0..1000u32 {
            let (s, e) = (r.to_be_bytes(), (r + 1).to_be_bytes());
            h.record(T0 + minute * 60 + u64::from(r % 60), 60, &s, &e, w(60));
        }
        assert!(h.bucket_count() <= cfg.buckets);
        assert!(h.row_count() <= cfg.buckets * 2 * cfg.max_rows);
    }
    let v = h.view(T0 + 69 * 60 + 59, 60, Metric::WrittenBytes, 200);
    assert_eq!(v.times.len(), 60);
    assert!(v.keys.len() <= 201);
    assert!(v.values.iter().all(|c| c.len() + 1 == v.keys.len()));
}

#[test]
fn odd_ranges_do_not_panic() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    h.record(T0, 0, b"m", b"a", w(5)); // inverted
    h.record(T0, 0, b"q", b"q", w(5)); // empty
    h.record(T0, 0, b"", b"", w(5)); // everything
    h.record(0, 0, b"a", b"b", w(5)); // the epoch
    h.record(T0, u64::MAX, b"a", b"b", w(5)); // an absurd interval
    for m in Metric::ALL {
        for rows in [0, 1, 3, 1000] {
            let v = h.view(T0, 60, m, rows);
            assert!(v.keys.is_empty() || v.values.iter().all(|c| c.len() + 1 == v.keys.len()));
        }
    }
    assert!(
        h.bucket_count() <= 60,
        "a report from the past made no old bucket"
    );
    let v = h.view(0, 0, Metric::WrittenBytes, 0);
    assert_eq!(v.times, vec![0]);
}

#[test]
fn idle_ranges_are_rows_of_zeros_in_the_bucket_of_now() {
    let mut h = Heatmap::new(HeatmapConfig::default());
    h.record(T0 + 30, 60, b"", b"m", Load::default());
    h.record(T0 + 30, 60, b"m", b"", w(60));
    assert_eq!(
        h.row_count(),
        3,
        "the idle range once, the busy one in two buckets"
    );
    let v = h.view(T0 + 30, 2, Metric::WrittenBytes, 10);
    assert_eq!(v.keys, vec![b"".to_vec(), b"m".to_vec(), Vec::new()]);
    assert_eq!(v.values, vec![vec![0, 29], vec![0, 31]]);
    assert_eq!(v.max(), 31);
}

#[test]
fn metric_names_round_trip() {
    for m in Metric::ALL {
        assert_eq!(Metric::parse(m.name()), Some(m));
    }
    assert_eq!(Metric::parse("bytes"), None);
}

#[test]
fn the_recorder_reads_its_clock() {
    let now = Arc::new(AtomicU64::new(T0));
    let clock = now.clone();
    let r = HeatmapRecorder::with_clock(
        HeatmapConfig::default(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    r.record(0, b"a", b"b", w(7));
    now.store(T0 + 600, Ordering::SeqCst);
    r.record(0, b"a", b"b", w(3));
    let v = r.view(10, Metric::WrittenBytes, 10);
    assert_eq!(v.times[0], T0 + 60);
    assert_eq!(v.values[9], vec![3]);
    assert_eq!(total(&r.view(60, Metric::WrittenBytes, 10)), 10);
}
