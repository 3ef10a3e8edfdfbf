//! Store scores and balance tolerances, as PD computes them.
//!
//! * leader score: leader count (`leader-schedule-policy = "count"`) or leader size (`"size"`)
//!   divided by the leader weight;
//! * region score (PD's formula v2): the region size (MiB), amplified as available space
//!   shrinks, plus a steep term once the store is below its low-space mark, divided by the
//!   region weight;
//! * a move from `source` to `target` is worth doing only if, after taking away a tolerance
//!   from the source and giving it to the target (and counting the pending operators'
//!   influence), the source still scores higher (PD's `shouldBalance`). This is what keeps a
//!   balanced cluster quiet and prevents moves back and forth.
//!
//! Atoll's deviation (documented in docs/design.md): with `tolerant-size-ratio = 0` PD
//! tolerates 5 leaders on each side, which on a small cluster (a dozen leaders per store) stops
//! balancing far from even. Atoll scales that tolerance with the largest leader count like PD
//! does for regions: `clamp(max leader count × 0.005, 0.5, 5)`; 0.5 means "move a leader only
//! if the two stores differ by 2 or more", so it still never moves back and forth.

const GIB: f64 = (1u64 << 30) as f64;
/// Weights below this count as this (PD's `minWeight`).
pub const MIN_WEIGHT: f64 = 1e-6;
/// PD's `adjustRatio`.
const ADJUST_RATIO: f64 = 0.005;
/// PD's `minTolerantSizeRatio` (regions).
const MIN_TOLERANT_SIZE_RATIO: f64 = 1.0;
/// PD's `leaderTolerantSizeRatio`: the cap of Atoll's adaptive leader tolerance.
const MAX_LEADER_TOLERANCE: f64 = 5.0;
const MIN_LEADER_TOLERANCE: f64 = 0.5;
/// PD's `influenceAmp`: pending region moves count five times in region scores.
pub const INFLUENCE_AMP: f64 = 5.0;

/// `count / weight`, the leader score (`delta` leaders added).
pub fn leader_score(count_or_size: f64, weight: f64, delta: f64) -> f64 {
    (count_or_size + delta) / weight.max(MIN_WEIGHT)
}

/// PD's region score v2 for a store of `capacity`/`available` bytes holding `region_size` MiB
/// (`delta` MiB added). Unknown space (capacity 0) scores the size alone.
pub fn region_score(
    region_size: f64,
    capacity: u64,
    available: u64,
    low_space_ratio: f64,
    weight: f64,
    delta: f64,
) -> f64 {
    let r = {
        let r = region_size + delta;
        if r < 0.0 {
            region_size
        } else {
            r
        }
    };
    let (a, c) = (available as f64 / GIB, capacity as f64 / GIB);
    let (k, m, b) = (1.0, 256.0, 1e10);
    let f = 50f64.max(c * (1.0 - low_space_ratio));
    let score = if a >= c || c < 1.0 {
        r
    } else if a > f {
        (k + m * (c.ln() - (a - f + 1.0).ln()) / (c - a + f - 1.0)) * r
    } else {
        (k + m * c.ln() / c) * r + b * (f - a) / f
    };
    score / weight.max(MIN_WEIGHT)
}

/// The leader tolerance in leaders (see the module doc).
pub fn leader_tolerance(tolerant_size_ratio: f64, max_leader_count: usize) -> f64 {
    if tolerant_size_ratio > 0.0 {
        return tolerant_size_ratio;
    }
    (max_leader_count as f64 * ADJUST_RATIO).clamp(MIN_LEADER_TOLERANCE, MAX_LEADER_TOLERANCE)
}

/// The region tolerance in MiB: the average region size times the ratio (PD's
/// `adjustTolerantRatio` when the ratio is 0: `max(max region count × 0.005, 1)`).
pub fn region_tolerance(tolerant_size_ratio: f64, max_region_count: usize, avg_region_size: f64) -> f64 {
    let ratio = if tolerant_size_ratio > 0.0 {
        tolerant_size_ratio
    } else {
        (max_region_count as f64 * ADJUST_RATIO).max(MIN_TOLERANT_SIZE_RATIO)
    };
    avg_region_size * ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores() {
        assert_eq!(leader_score(10.0, 2.0, 0.0), 5.0);
        assert_eq!(leader_score(10.0, 1.0, -1.0), 9.0);
        // Zero weight: effectively infinite (a store that wants no leaders).
        assert!(leader_score(1.0, 0.0, 0.0) > 1e5);
        // Unknown or ample space: the size.
        assert_eq!(region_score(100.0, 0, 0, 0.8, 1.0, 0.0), 100.0);
        assert_eq!(region_score(100.0, 1 << 40, 1 << 40, 0.8, 1.0, 5.0), 105.0);
        assert_eq!(region_score(100.0, 0, 0, 0.8, 2.0, 0.0), 50.0);
        // Less room left: the same size scores higher; almost full scores much higher.
        let roomy = region_score(100.0, 1000 << 30, 900 << 30, 0.8, 1.0, 0.0);
        let fuller = region_score(100.0, 1000 << 30, 300 << 30, 0.8, 1.0, 0.0);
        let full = region_score(100.0, 1000 << 30, 10 << 30, 0.8, 1.0, 0.0);
        assert!(roomy < fuller && fuller < full, "{roomy} {fuller} {full}");
        // A negative result keeps the size.
        assert_eq!(region_score(1.0, 0, 0, 0.8, 1.0, -5.0), 1.0);
    }

    #[test]
    fn tolerances() {
        assert_eq!(leader_tolerance(0.0, 12), 0.5);
        assert_eq!(leader_tolerance(0.0, 400), 2.0);
        assert_eq!(leader_tolerance(0.0, 100_000), 5.0);
        assert_eq!(leader_tolerance(2.0, 12), 2.0);
        assert_eq!(region_tolerance(0.0, 50, 1.0), 1.0);
        assert_eq!(region_tolerance(0.0, 1000, 96.0), 480.0);
        assert_eq!(region_tolerance(0.5, 50, 10.0), 5.0);
    }
}
