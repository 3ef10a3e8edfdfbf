//! Key choosers of YCSB's core workloads, written from their definitions:
//!
//! - [`Uniform`]: every inserted record equally likely.
//! - [`Zipfian`]: record `i` (0-based) drawn with probability proportional to `1 / (i+1)^θ`
//!   (θ = 0.99, YCSB's constant), by the rejection-free method of Gray et al., "Quickly
//!   Generating Billion-Record Synthetic Databases" (SIGMOD 1994), which YCSB uses. The item
//!   count may grow (inserts); ζ(n) is then extended incrementally.
//! - [`ScrambledZipfian`]: the same popularity, but the popular records are spread over the
//!   key space by hashing the rank (YCSB's `requestdistribution=zipfian`).
//! - [`Latest`]: the most recently inserted records are the most popular (workload D).
//!
//! Every chooser draws from a caller-supplied RNG, so a fixed seed gives a fixed sequence.

use rand::Rng;

/// YCSB's Zipfian constant θ.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// 64-bit FNV-1a over the little-endian bytes of `v` (YCSB hashes record numbers this way to
/// scatter them).
pub fn fnv1a64(v: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// ζ(n, θ) extended from ζ(`from`, θ) = `initial`: `initial + Σ_{i=from+1..=to} 1/i^θ`.
fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    let mut sum = initial;
    for i in from + 1..=to {
        sum += 1.0 / (i as f64).powf(theta);
    }
    sum
}

/// Draws ranks `0..n` with Zipfian popularity: rank 0 is the most popular.
#[derive(Debug, Clone)]
pub struct Zipfian {
    theta: f64,
    alpha: f64,
    zeta2: f64,
    /// The item count ζ was computed for, and ζ of it.
    n: u64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A chooser over `items` ranks with YCSB's θ. `items` of 0 is treated as 1.
    pub fn new(items: u64) -> Zipfian {
        Zipfian::with_theta(items, ZIPFIAN_CONSTANT)
    }

    /// A chooser over `items` ranks with exponent `theta` (0 < θ < 1).
    pub fn with_theta(items: u64, theta: f64) -> Zipfian {
        let n = items.max(1);
        let zeta2 = zeta(0, 2, theta, 0.0);
        let zetan = zeta(0, n, theta, 0.0);
        let mut z = Zipfian {
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            n,
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for(n);
        z
    }

    fn eta_for(&self, n: u64) -> f64 {
        (1.0 - (2.0 / n as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// The item count the chooser currently draws from.
    pub fn items(&self) -> u64 {
        self.n
    }

    /// Draws a rank in `0..items()`.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }

    /// Draws a rank in `0..items`, first growing (or rebuilding) ζ for a new item count.
    pub fn next_for<R: Rng + ?Sized>(&mut self, rng: &mut R, items: u64) -> u64 {
        let items = items.max(1);
        if items != self.n {
            self.zetan = if items > self.n {
                zeta(self.n, items, self.theta, self.zetan)
            } else {
                zeta(0, items, self.theta, 0.0)
            };
            self.n = items;
            self.eta = self.eta_for(items);
        }
        self.next(rng)
    }
}

/// Zipfian popularity with the popular records scattered: rank `r` maps to record
/// `fnv1a64(r) % items`.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    zipf: Zipfian,
}

impl ScrambledZipfian {
    pub fn new(items: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            zipf: Zipfian::new(items),
        }
    }

    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> u64 {
        fnv1a64(self.zipf.next(rng)) % self.zipf.items()
    }
}

/// The newest records most popular: `max - 1 - zipfian(max)` where `max` is the number of
/// records inserted so far.
#[derive(Debug, Clone)]
pub struct Latest {
    zipf: Zipfian,
}

impl Latest {
    pub fn new(items: u64) -> Latest {
        Latest {
            zipf: Zipfian::new(items),
        }
    }

    /// Draws a record in `0..inserted`, skewed towards `inserted - 1`.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, inserted: u64) -> u64 {
        let max = inserted.max(1);
        max - 1 - self.zipf.next_for(rng, max)
    }
}

/// Which records a workload's reads and updates pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Uniform,
    /// Plain Zipfian over record numbers (record 0 hottest).
    Zipfian,
    /// YCSB's default `zipfian`: Zipfian popularity, hot records scattered.
    ScrambledZipfian,
    Latest,
}

impl Distribution {
    pub fn parse(s: &str) -> Option<Distribution> {
        match s {
            "uniform" => Some(Distribution::Uniform),
            "zipfian" => Some(Distribution::Zipfian),
            "scrambled-zipfian" | "scrambled" => Some(Distribution::ScrambledZipfian),
            "latest" => Some(Distribution::Latest),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::ScrambledZipfian => "scrambled-zipfian",
            Distribution::Latest => "latest",
        }
    }
}

/// A record chooser for one worker.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform,
    Zipfian(Zipfian),
    ScrambledZipfian(ScrambledZipfian),
    Latest(Latest),
}

impl KeyChooser {
    /// A chooser sized for `items` records (the loaded records plus the inserts expected).
    pub fn new(dist: Distribution, items: u64) -> KeyChooser {
        match dist {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(items)),
            Distribution::ScrambledZipfian => KeyChooser::ScrambledZipfian(ScrambledZipfian::new(items)),
            Distribution::Latest => KeyChooser::Latest(Latest::new(items)),
        }
    }

    /// A record in `0..inserted` (the records known to exist now).
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, inserted: u64) -> u64 {
        let inserted = inserted.max(1);
        match self {
            KeyChooser::Uniform => rng.gen_range(0..inserted),
            KeyChooser::Zipfian(z) => z.next(rng) % inserted,
            KeyChooser::ScrambledZipfian(z) => z.next(rng) % inserted,
            KeyChooser::Latest(l) => l.next(rng, inserted),
        }
    }
}

/// How record numbers become keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrder {
    /// `user` + FNV hash of the record number (YCSB's default `insertorder=hashed`): inserts
    /// land all over the key space.
    Hashed,
    /// `user` + zero-padded record number: inserts append.
    Ordered,
}

impl KeyOrder {
    pub fn parse(s: &str) -> Option<KeyOrder> {
        match s {
            "hashed" => Some(KeyOrder::Hashed),
            "ordered" => Some(KeyOrder::Ordered),
            _ => None,
        }
    }
}

/// The prefix every bench key starts with.
pub const KEY_PREFIX: &[u8] = b"user";

/// The first key after every bench key (exclusive end of a scan over all of them).
pub const KEY_PREFIX_END: &[u8] = b"uses";

/// The key of record `n`.
pub fn record_key(n: u64, order: KeyOrder) -> Vec<u8> {
    match order {
        KeyOrder::Hashed => format!("user{:020}", fnv1a64(n)).into_bytes(),
        KeyOrder::Ordered => format!("user{n:020}").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    fn histogram(draws: impl Iterator<Item = u64>, n: u64) -> Vec<u64> {
        let mut h = vec![0u64; n as usize];
        for d in draws {
            assert!(d < n, "draw {d} out of 0..{n}");
            h[d as usize] += 1;
        }
        h
    }

    #[test]
    fn zeta_matches_direct_sum_and_extends() {
        let direct: f64 = (1..=1000).map(|i| 1.0 / (i as f64).powf(0.99)).sum();
        assert!((zeta(0, 1000, 0.99, 0.0) - direct).abs() < 1e-9);
        let half = zeta(0, 500, 0.99, 0.0);
        assert!((zeta(500, 1000, 0.99, half) - direct).abs() < 1e-9);
    }

    #[test]
    fn zipfian_frequencies_follow_the_power_law() {
        let n = 1000;
        let mut z = Zipfian::new(n);
        let mut r = rng();
        let draws = 200_000;
        let h = histogram((0..draws).map(|_| z.next(&mut r)), n);
        let zetan = zeta(0, n, ZIPFIAN_CONSTANT, 0.0);
        // The head is exact by construction: P(0) = 1/ζ(n), P(1) = 2^-θ/ζ(n).
        for (rank, tol) in [(0usize, 0.01), (1, 0.01)] {
            let expected = 1.0 / ((rank + 1) as f64).powf(ZIPFIAN_CONSTANT) / zetan;
            let got = h[rank] as f64 / draws as f64;
            assert!((got - expected).abs() < tol, "rank {rank}: {got} vs {expected}");
        }
        // Popularity falls with rank: the first 10 ranks beat the next 10, and so on.
        let decile = |k: usize| h[k * 10..k * 10 + 10].iter().sum::<u64>();
        assert!(decile(0) > decile(1) && decile(1) > decile(5));
        // The top 10% of ranks take well over half of the draws (θ = 0.99).
        let top: u64 = h[..100].iter().sum();
        assert!(top as f64 / draws as f64 > 0.6, "top 10% share {top}");
        // Every draw is in range and the tail is reached.
        assert!(h[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipfian_is_deterministic_for_a_seed() {
        let mut a = Zipfian::new(10_000);
        let mut b = Zipfian::new(10_000);
        let (mut ra, mut rb) = (rng(), rng());
        let xs: Vec<u64> = (0..100).map(|_| a.next(&mut ra)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next(&mut rb)).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn zipfian_growing_matches_a_fresh_one() {
        let mut grown = Zipfian::new(100);
        let mut r = rng();
        grown.next_for(&mut r, 5000);
        let fresh = Zipfian::new(5000);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-12);
        // Shrinking rebuilds.
        grown.next_for(&mut r, 10);
        assert!((grown.zetan - Zipfian::new(10).zetan).abs() < 1e-9);
    }

    #[test]
    fn tiny_item_counts_stay_in_range() {
        let mut r = rng();
        for n in [0u64, 1, 2, 3] {
            let mut z = Zipfian::new(n);
            for _ in 0..1000 {
                assert!(z.next(&mut r) < n.max(1));
            }
        }
    }

    #[test]
    fn scrambled_zipfian_spreads_the_hot_records() {
        let n = 1000;
        let mut z = ScrambledZipfian::new(n);
        let mut r = rng();
        let draws = 100_000;
        let h = histogram((0..draws).map(|_| z.next(&mut r)), n);
        // The hottest record is where rank 0 hashes to, not record 0.
        let hottest = h
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .map(|(i, _)| i as u64);
        assert_eq!(hottest, Some(fnv1a64(0) % n));
        // Still skewed: the hottest record gets about P(rank 0) ≈ 13%.
        let max = h.iter().copied().max().unwrap_or(0);
        assert!(max as f64 / draws as f64 > 0.08);
        // The ten hottest records are not clustered at the start of the key space.
        let mut order: Vec<usize> = (0..n as usize).collect();
        order.sort_by_key(|i| std::cmp::Reverse(h[*i]));
        assert!(order[..10].iter().any(|i| *i > 100));
    }

    #[test]
    fn latest_prefers_the_newest_records() {
        let mut l = Latest::new(1000);
        let mut r = rng();
        let draws = 50_000;
        let inserted = 1000;
        let h = histogram((0..draws).map(|_| l.next(&mut r, inserted)), inserted);
        assert!(h[999] > h[990] && h[990] > h[500]);
        let newest: u64 = h[900..].iter().sum();
        assert!(newest as f64 / draws as f64 > 0.6);
        // The window moves with the inserts.
        for _ in 0..1000 {
            let k = l.next(&mut r, 2000);
            assert!(k < 2000);
        }
        let newer = (0..10_000).filter(|_| l.next(&mut r, 2000) >= 1800).count();
        assert!(newer > 6000, "{newer}");
    }

    #[test]
    fn uniform_is_flat() {
        let mut c = KeyChooser::new(Distribution::Uniform, 100);
        let mut r = rng();
        let draws = 100_000;
        let h = histogram((0..draws).map(|_| c.next(&mut r, 100)), 100);
        for (i, count) in h.iter().enumerate() {
            // Expect 1000 each; 4 sigma is about 126.
            assert!((*count as i64 - 1000).abs() < 130, "bucket {i}: {count}");
        }
    }

    #[test]
    fn chooser_stays_below_inserted() {
        let mut r = rng();
        for dist in [
            Distribution::Uniform,
            Distribution::Zipfian,
            Distribution::ScrambledZipfian,
            Distribution::Latest,
        ] {
            let mut c = KeyChooser::new(dist, 10_000);
            for inserted in [1u64, 7, 5000, 10_000] {
                for _ in 0..200 {
                    assert!(c.next(&mut r, inserted) < inserted, "{dist:?}");
                }
            }
        }
    }

    #[test]
    fn distributions_parse_by_name() {
        for d in [
            Distribution::Uniform,
            Distribution::Zipfian,
            Distribution::ScrambledZipfian,
            Distribution::Latest,
        ] {
            assert_eq!(Distribution::parse(d.name()), Some(d));
        }
        assert_eq!(Distribution::parse("hotspot"), None);
    }

    #[test]
    fn record_keys_are_distinct_and_prefixed() {
        let mut seen = HashSet::new();
        for n in 0..50_000 {
            let k = record_key(n, KeyOrder::Hashed);
            assert!(k.starts_with(KEY_PREFIX) && k.as_slice() < KEY_PREFIX_END);
            assert_eq!(k.len(), 24);
            assert!(seen.insert(k));
        }
        assert!(record_key(9, KeyOrder::Ordered) < record_key(10, KeyOrder::Ordered));
        assert_eq!(
            record_key(7, KeyOrder::Ordered),
            b"user00000000000000000007".to_vec()
        );
    }

    #[test]
    fn fnv_known_value() {
        // FNV-1a of eight zero bytes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..8 {
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fnv1a64(0), h);
        assert_ne!(fnv1a64(1), fnv1a64(2));
    }
}
