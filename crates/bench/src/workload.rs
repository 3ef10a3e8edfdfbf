//! Workloads: the operation mix and key choice of YCSB's core workloads A–F plus pure put and
//! pure get, and the per-worker generator that turns a workload into a stream of [`Op`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

use crate::generator::{record_key, Distribution, KeyChooser, KeyOrder};

/// Proportions of each operation type (they need not sum to 1; they are weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mix {
    pub read: f64,
    pub update: f64,
    pub insert: f64,
    pub scan: f64,
    pub read_modify_write: f64,
}

impl Mix {
    const NONE: Mix = Mix {
        read: 0.0,
        update: 0.0,
        insert: 0.0,
        scan: 0.0,
        read_modify_write: 0.0,
    };

    fn weights(&self) -> [(OpType, f64); 5] {
        [
            (OpType::Read, self.read),
            (OpType::Update, self.update),
            (OpType::Insert, self.insert),
            (OpType::Scan, self.scan),
            (OpType::ReadModifyWrite, self.read_modify_write),
        ]
    }
}

/// A workload: which operations, how keys are picked, how long scans are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSpec {
    pub name: String,
    pub mix: Mix,
    pub distribution: Distribution,
    /// Scan lengths are uniform in `1..=max_scan_len`.
    pub max_scan_len: u32,
}

/// The names [`WorkloadSpec::named`] knows.
pub const WORKLOAD_NAMES: &[&str] = &["a", "b", "c", "d", "e", "f", "put", "get"];

impl WorkloadSpec {
    /// YCSB core workload `a`–`f`, or `put` (100% update, uniform) or `get` (100% read,
    /// uniform).
    pub fn named(name: &str) -> Option<WorkloadSpec> {
        let lower = name.to_ascii_lowercase();
        let (mix, distribution) = match lower.as_str() {
            // Update heavy: 50/50 reads and writes.
            "a" => (
                Mix {
                    read: 0.5,
                    update: 0.5,
                    ..Mix::NONE
                },
                Distribution::ScrambledZipfian,
            ),
            // Read mostly: 95/5.
            "b" => (
                Mix {
                    read: 0.95,
                    update: 0.05,
                    ..Mix::NONE
                },
                Distribution::ScrambledZipfian,
            ),
            // Read only.
            "c" => (
                Mix {
                    read: 1.0,
                    ..Mix::NONE
                },
                Distribution::ScrambledZipfian,
            ),
            // Read latest: new records are inserted and are the most read.
            "d" => (
                Mix {
                    read: 0.95,
                    insert: 0.05,
                    ..Mix::NONE
                },
                Distribution::Latest,
            ),
            // Short ranges.
            "e" => (
                Mix {
                    scan: 0.95,
                    insert: 0.05,
                    ..Mix::NONE
                },
                Distribution::ScrambledZipfian,
            ),
            // Read-modify-write.
            "f" => (
                Mix {
                    read: 0.5,
                    read_modify_write: 0.5,
                    ..Mix::NONE
                },
                Distribution::ScrambledZipfian,
            ),
            "put" => (
                Mix {
                    update: 1.0,
                    ..Mix::NONE
                },
                Distribution::Uniform,
            ),
            "get" => (
                Mix {
                    read: 1.0,
                    ..Mix::NONE
                },
                Distribution::Uniform,
            ),
            _ => return None,
        };
        Some(WorkloadSpec {
            name: lower,
            mix,
            distribution,
            max_scan_len: 100,
        })
    }
}

/// One operation type of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

/// Picks operation types by weight.
#[derive(Debug, Clone)]
pub struct OpChooser {
    /// Cumulative weights, normalised so the last is 1.
    cumulative: Vec<(OpType, f64)>,
}

impl OpChooser {
    /// `None` if every weight is zero or one is negative or not finite.
    pub fn new(mix: &Mix) -> Option<OpChooser> {
        let weights = mix.weights();
        if weights.iter().any(|(_, w)| !w.is_finite() || *w < 0.0) {
            return None;
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut acc = 0.0;
        let mut cumulative = Vec::new();
        for (op, w) in weights {
            if w > 0.0 {
                acc += w / total;
                cumulative.push((op, acc));
            }
        }
        Some(OpChooser { cumulative })
    }

    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> OpType {
        let u: f64 = rng.gen();
        for (op, c) in &self.cumulative {
            if u < *c {
                return *op;
            }
        }
        // Rounding can leave the last cumulative weight a hair under 1.
        self.cumulative.last().map_or(OpType::Read, |(op, _)| *op)
    }
}

/// One request-level operation, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Read {
        key: Vec<u8>,
    },
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A new record: `record` is its number, acknowledged once the insert succeeds.
    Insert {
        record: u64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Scan {
        start: Vec<u8>,
        len: u32,
    },
    ReadModifyWrite {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// The records of a run shared by its workers: how many exist and the next insert number.
#[derive(Debug)]
pub struct Records {
    order: KeyOrder,
    next_insert: AtomicU64,
    /// One past the highest record whose insert was acknowledged (or loaded).
    inserted: AtomicU64,
}

impl Records {
    /// `loaded` records (`0..loaded`) exist already.
    pub fn new(loaded: u64, order: KeyOrder) -> Records {
        Records {
            order,
            next_insert: AtomicU64::new(loaded),
            inserted: AtomicU64::new(loaded),
        }
    }

    pub fn order(&self) -> KeyOrder {
        self.order
    }

    /// Records known to exist (reads pick among them).
    pub fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Acquire)
    }

    fn take_insert(&self) -> u64 {
        self.next_insert.fetch_add(1, Ordering::AcqRel)
    }

    /// Marks `record` as written.
    pub fn ack(&self, record: u64) {
        self.inserted.fetch_max(record + 1, Ordering::AcqRel);
    }
}

/// Random value bytes: slices of one pre-filled pool, so making a value costs a copy.
#[derive(Debug, Clone)]
pub struct ValuePool {
    pool: Arc<Vec<u8>>,
    size: usize,
}

impl ValuePool {
    pub fn new(value_size: usize, seed: u64) -> ValuePool {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pool = vec![0u8; (value_size * 4).max(64 << 10)];
        rng.fill_bytes(&mut pool);
        ValuePool {
            pool: Arc::new(pool),
            size: value_size,
        }
    }

    pub fn value<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<u8> {
        let start = rng.gen_range(0..=self.pool.len() - self.size);
        self.pool[start..start + self.size].to_vec()
    }
}

/// One worker's deterministic stream of operations.
#[derive(Debug)]
pub struct OpGenerator {
    rng: StdRng,
    ops: OpChooser,
    keys: KeyChooser,
    max_scan_len: u32,
    records: Arc<Records>,
    values: ValuePool,
}

impl OpGenerator {
    /// `expected_records` sizes the Zipfian choosers (loaded records plus expected inserts).
    pub fn new(
        spec: &WorkloadSpec,
        expected_records: u64,
        records: Arc<Records>,
        values: ValuePool,
        seed: u64,
    ) -> Option<OpGenerator> {
        Some(OpGenerator {
            rng: StdRng::seed_from_u64(seed),
            ops: OpChooser::new(&spec.mix)?,
            keys: KeyChooser::new(spec.distribution, expected_records),
            max_scan_len: spec.max_scan_len.max(1),
            records,
            values,
        })
    }

    fn existing_key(&mut self) -> Vec<u8> {
        let n = self.keys.next(&mut self.rng, self.records.inserted());
        record_key(n, self.records.order())
    }

    pub fn next_op(&mut self) -> Op {
        match self.ops.next(&mut self.rng) {
            OpType::Read => Op::Read {
                key: self.existing_key(),
            },
            OpType::Update => Op::Update {
                key: self.existing_key(),
                value: self.values.value(&mut self.rng),
            },
            OpType::Insert => {
                let record = self.records.take_insert();
                Op::Insert {
                    record,
                    key: record_key(record, self.records.order()),
                    value: self.values.value(&mut self.rng),
                }
            }
            OpType::Scan => Op::Scan {
                start: self.existing_key(),
                len: self.rng.gen_range(1..=self.max_scan_len),
            },
            OpType::ReadModifyWrite => Op::ReadModifyWrite {
                key: self.existing_key(),
                value: self.values.value(&mut self.rng),
            },
        }
    }

    /// The insert operations loading records `range` (values from this generator's RNG).
    pub fn load_ops(&mut self, range: std::ops::Range<u64>) -> Vec<Op> {
        range
            .map(|record| Op::Insert {
                record,
                key: record_key(record, self.records.order()),
                value: self.values.value(&mut self.rng),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_types(spec: &WorkloadSpec, n: usize) -> [usize; 5] {
        let records = Arc::new(Records::new(1000, KeyOrder::Hashed));
        let mut g = OpGenerator::new(spec, 2000, records, ValuePool::new(16, 1), 7).unwrap();
        let mut counts = [0usize; 5];
        for _ in 0..n {
            let i = match g.next_op() {
                Op::Read { .. } => 0,
                Op::Update { .. } => 1,
                Op::Insert { .. } => 2,
                Op::Scan { .. } => 3,
                Op::ReadModifyWrite { .. } => 4,
            };
            counts[i] += 1;
        }
        counts
    }

    fn near(got: usize, n: usize, p: f64) -> bool {
        ((got as f64 / n as f64) - p).abs() < 0.02
    }

    #[test]
    fn every_named_workload_has_its_mix() {
        let n = 20_000;
        let expect: [(&str, [f64; 5]); 8] = [
            ("a", [0.5, 0.5, 0.0, 0.0, 0.0]),
            ("b", [0.95, 0.05, 0.0, 0.0, 0.0]),
            ("c", [1.0, 0.0, 0.0, 0.0, 0.0]),
            ("d", [0.95, 0.0, 0.05, 0.0, 0.0]),
            ("e", [0.0, 0.0, 0.05, 0.95, 0.0]),
            ("f", [0.5, 0.0, 0.0, 0.0, 0.5]),
            ("put", [0.0, 1.0, 0.0, 0.0, 0.0]),
            ("get", [1.0, 0.0, 0.0, 0.0, 0.0]),
        ];
        for (name, ps) in expect {
            let spec = WorkloadSpec::named(name).unwrap();
            let counts = count_types(&spec, n);
            for (got, p) in counts.iter().zip(ps) {
                assert!(near(*got, n, p), "{name}: {counts:?}");
            }
        }
        assert_eq!(WorkloadSpec::named("A").unwrap().name, "a");
        assert!(WorkloadSpec::named("z").is_none());
        assert_eq!(WORKLOAD_NAMES.len(), expect.len());
        assert_eq!(
            WorkloadSpec::named("d").unwrap().distribution,
            Distribution::Latest
        );
    }

    #[test]
    fn op_chooser_rejects_bad_mixes() {
        assert!(OpChooser::new(&Mix::NONE).is_none());
        let neg = Mix {
            read: -1.0,
            update: 2.0,
            ..Mix::NONE
        };
        assert!(OpChooser::new(&neg).is_none());
        let nan = Mix {
            read: f64::NAN,
            ..Mix::NONE
        };
        assert!(OpChooser::new(&nan).is_none());
    }

    #[test]
    fn generator_is_deterministic_for_a_seed() {
        let spec = WorkloadSpec::named("a").unwrap();
        let make = || {
            let records = Arc::new(Records::new(100, KeyOrder::Hashed));
            OpGenerator::new(&spec, 100, records, ValuePool::new(32, 3), 11).unwrap()
        };
        let (mut x, mut y) = (make(), make());
        for _ in 0..200 {
            assert_eq!(x.next_op(), y.next_op());
        }
    }

    #[test]
    fn inserts_take_fresh_records_and_reads_see_acked_ones() {
        let spec = WorkloadSpec {
            name: "inserts".into(),
            mix: Mix {
                insert: 1.0,
                ..Mix::NONE
            },
            distribution: Distribution::Latest,
            max_scan_len: 10,
        };
        let records = Arc::new(Records::new(10, KeyOrder::Ordered));
        let mut g = OpGenerator::new(&spec, 20, records.clone(), ValuePool::new(8, 0), 1).unwrap();
        let Op::Insert { record, key, value } = g.next_op() else {
            panic!("not an insert")
        };
        assert_eq!(record, 10);
        assert_eq!(key, record_key(10, KeyOrder::Ordered));
        assert_eq!(value.len(), 8);
        assert_eq!(records.inserted(), 10);
        records.ack(record);
        assert_eq!(records.inserted(), 11);
        // An older ack does not move the mark back.
        records.ack(3);
        assert_eq!(records.inserted(), 11);
    }

    #[test]
    fn scans_and_values_have_the_asked_sizes() {
        let spec = WorkloadSpec::named("e").unwrap();
        let records = Arc::new(Records::new(500, KeyOrder::Hashed));
        let mut g = OpGenerator::new(&spec, 600, records, ValuePool::new(256, 5), 9).unwrap();
        let mut max_len = 0;
        for _ in 0..2000 {
            match g.next_op() {
                Op::Scan { len, .. } => {
                    assert!((1..=100).contains(&len));
                    max_len = max_len.max(len);
                }
                Op::Insert { value, .. } => assert_eq!(value.len(), 256),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(max_len > 90);
    }

    #[test]
    fn load_ops_cover_the_range() {
        let spec = WorkloadSpec::named("put").unwrap();
        let records = Arc::new(Records::new(0, KeyOrder::Hashed));
        let mut g = OpGenerator::new(&spec, 10, records, ValuePool::new(4, 5), 9).unwrap();
        let ops = g.load_ops(3..6);
        let numbers: Vec<u64> = ops
            .iter()
            .map(|op| match op {
                Op::Insert { record, .. } => *record,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(numbers, vec![3, 4, 5]);
    }
}
