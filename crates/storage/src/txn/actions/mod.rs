//! Per-key transaction steps. Each is a pure function of a snapshot (through the reader) and
//! its arguments; its effects are the `Modify`s it adds to the `MvccTxn`. Keys are encoded.

mod check_txn_status;
mod cleanup;
mod commit;
mod gc;
mod pessimistic;
mod prewrite;
#[cfg(test)]
mod tests;

pub use check_txn_status::{
    check_secondary_lock, check_txn_status, txn_heart_beat, SecondaryStatus, TxnStatus,
};
pub use cleanup::{cleanup, rollback};
pub use commit::commit;
pub use gc::gc_key;
pub use pessimistic::{
    acquire_pessimistic_lock, pessimistic_rollback, PessimisticLockOptions, PessimisticLockResult,
};
pub use prewrite::{
    finish_prewrite, prewrite, Mutation, MutationOp, PrewriteOutcome, PrewriteResult, TxnProps,
};

use txn_types::{mvcc_key, TimeStamp};

use crate::mvcc::TxnError;
use crate::{Error, Result};

pub(crate) fn txn_err(e: TxnError) -> Error {
    Error::Txn(Box::new(e))
}

/// The user key of encoded `key`, for error messages and lock infos.
pub(crate) fn raw(key: &[u8]) -> Result<Vec<u8>> {
    Ok(mvcc_key::decode(key)?)
}

/// Whether a lock with start `ts` and `ttl` ms has expired at `current_ts` (physical times).
pub(crate) fn lock_expired(ts: TimeStamp, ttl: u64, current_ts: TimeStamp) -> bool {
    ts.physical().saturating_add(ttl) < current_ts.physical()
}
