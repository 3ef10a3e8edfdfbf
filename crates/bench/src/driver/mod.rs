//! Drivers: how a unit of [`Op`]s becomes requests to one kind of server, each request timed
//! and its outcome recorded as a [`Sample`]. A driver never retries an operation that failed:
//! the failure is the sample.
//!
//! - [`tikv::RawDriver`]: tikv-client's `RawClient` (one request per op; a unit of several
//!   inserts is one batch put).
//! - [`tikv::TxnDriver`]: tikv-client's `TransactionClient`, one optimistic transaction per
//!   unit.
//! - [`etcd::EtcdDriver`]: etcd's v3 KV API (Put / Range) over gRPC.

pub mod etcd;
pub mod tikv;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::stats::{OpKind, Outcome, Sample};
use crate::workload::Op;

/// Something that executes workload operations against a server.
pub trait Driver: Send + Sync + 'static {
    /// Executes `unit` (one op, a transaction's ops, or a load batch) and pushes one sample per
    /// timed request into `out`.
    fn execute(&self, unit: &[Op], out: &mut Vec<Sample>) -> impl Future<Output = ()> + Send;
}

/// Whether `unit` is a batch of inserts (a load-phase unit).
pub(crate) fn is_insert_batch(unit: &[Op]) -> bool {
    unit.len() > 1 && unit.iter().all(|op| matches!(op, Op::Insert { .. }))
}

/// The kind a single op is measured as.
pub(crate) fn kind_of(op: &Op) -> OpKind {
    match op {
        Op::Read { .. } => OpKind::Read,
        Op::Update { .. } => OpKind::Update,
        Op::Insert { .. } => OpKind::Insert,
        Op::Scan { .. } => OpKind::Scan,
        Op::ReadModifyWrite { .. } => OpKind::ReadModifyWrite,
    }
}

pub(crate) fn sample(kind: OpKind, started: Instant, outcome: Outcome) -> Sample {
    Sample {
        kind,
        latency: started.elapsed(),
        outcome,
    }
}

/// A sample that took no measurable time (e.g. a failure before any request).
pub(crate) fn failed(kind: OpKind, message: String) -> Sample {
    Sample {
        kind,
        latency: Duration::ZERO,
        outcome: Outcome::Error(message),
    }
}

/// The outcome of a request that returns nothing.
pub(crate) fn done<T, E: std::fmt::Display>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// The outcome of a point read.
pub(crate) fn found<T, E: std::fmt::Display>(r: Result<Option<T>, E>) -> Outcome {
    match r {
        Ok(Some(_)) => Outcome::Ok,
        Ok(None) => Outcome::NotFound,
        Err(e) => Outcome::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(done::<(), String>(Ok(())), Outcome::Ok);
        assert_eq!(
            done::<(), String>(Err("boom".into())),
            Outcome::Error("boom".into())
        );
        assert_eq!(found::<u8, String>(Ok(Some(1))), Outcome::Ok);
        assert_eq!(found::<u8, String>(Ok(None)), Outcome::NotFound);
        assert_eq!(found::<u8, String>(Err("x".into())), Outcome::Error("x".into()));
    }

    #[test]
    fn insert_batches() {
        let ins = |record| Op::Insert {
            record,
            key: vec![],
            value: vec![],
        };
        assert!(!is_insert_batch(&[ins(1)]));
        assert!(is_insert_batch(&[ins(1), ins(2)]));
        assert!(!is_insert_batch(&[ins(1), Op::Read { key: vec![] }]));
        assert_eq!(kind_of(&ins(1)), OpKind::Insert);
    }
}
