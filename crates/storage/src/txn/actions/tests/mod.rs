//! Action-level protocol traces over an in-memory engine: each `must_*` helper runs one action
//! on a fresh snapshot and applies its writes, like one command would. The traces are grouped
//! by protocol step in the submodules.

mod pessimistic;
mod reads;
mod status;
mod two_pc;

use atoll_proto::kvrpcpb::Action;
use engine_traits::{KvEngine, MemEngine, MemSnapshot, Modify, WriteBatch};
use txn_types::keys::data_key;
use txn_types::{mvcc_key, Lock, LockType, TimeStamp, WriteType};

use super::*;
use crate::mvcc::{self, ConflictReason, MvccReader, MvccTxn, ReadOptions, TxnError};
use crate::Error;

struct Store {
    engine: MemEngine,
}

fn ts(t: u64) -> TimeStamp {
    TimeStamp::new(t)
}

fn k(key: &[u8]) -> Vec<u8> {
    mvcc_key::encode(key)
}

fn txn_error(r: Result<impl std::fmt::Debug>) -> TxnError {
    match r {
        Err(Error::Txn(e)) => *e,
        other => panic!("expected a txn error, got {other:?}"),
    }
}

impl Store {
    fn new() -> Store {
        Store {
            engine: MemEngine::new(),
        }
    }

    /// Runs `f` like a command: on a snapshot, applying its writes only if it succeeds.
    fn run<T>(&self, f: impl FnOnce(&mut MvccTxn, &MvccReader<'_, MemSnapshot>) -> Result<T>) -> Result<T> {
        let snap = self.engine.snapshot();
        let reader = MvccReader::new(&snap);
        let mut txn = MvccTxn::new();
        let r = f(&mut txn, &reader)?;
        let mut wb = WriteBatch::new();
        for m in txn.into_modifies() {
            match m {
                Modify::Put { cf, key, value } => wb.put_cf(cf, data_key(&key), value),
                Modify::Delete { cf, key } => wb.delete_cf(cf, data_key(&key)),
                Modify::DeleteRange { .. } => unreachable!("actions do not delete ranges"),
            }
        }
        self.engine.write(&wb, false).expect("write");
        Ok(r)
    }

    fn props(&self, primary: &[u8], start: u64) -> TxnProps {
        TxnProps {
            start_ts: ts(start),
            primary: primary.to_vec(),
            lock_ttl: 3000,
            ..Default::default()
        }
    }

    fn prewrite_with(
        &self,
        props: &TxnProps,
        key: &[u8],
        op: MutationOp,
        pessimistic: bool,
    ) -> Result<PrewriteResult> {
        self.prewrite_request(props, vec![(key, op)], pessimistic, 0)
    }

    /// One prewrite request: every mutation, then its locks written (or committed, for 1PC)
    /// with `max_ts` as the largest read timestamp seen.
    fn prewrite_request(
        &self,
        props: &TxnProps,
        mutations: Vec<(&[u8], MutationOp)>,
        pessimistic: bool,
        max_ts: u64,
    ) -> Result<PrewriteResult> {
        self.run(|txn, reader| {
            let mut locks = vec![];
            for (key, op) in mutations {
                let m = Mutation { key: k(key), op };
                if let PrewriteOutcome::Locked(Some(lock)) =
                    prewrite(txn, reader, props, &m, pessimistic, false)?
                {
                    locks.push((m.key, lock));
                }
            }
            Ok(finish_prewrite(txn, props, locks, ts(max_ts)))
        })
    }

    fn prewrite(&self, key: &[u8], op: MutationOp, primary: &[u8], start: u64) -> Result<PrewriteResult> {
        self.prewrite_with(&self.props(primary, start), key, op, false)
    }

    fn must_prewrite_put(&self, key: &[u8], value: &[u8], primary: &[u8], start: u64) {
        self.prewrite(key, MutationOp::Put(value.to_vec()), primary, start)
            .expect("prewrite put");
    }

    fn must_prewrite_delete(&self, key: &[u8], primary: &[u8], start: u64) {
        self.prewrite(key, MutationOp::Delete, primary, start)
            .expect("prewrite delete");
    }

    fn must_prewrite_lock(&self, key: &[u8], primary: &[u8], start: u64) {
        self.prewrite(key, MutationOp::Lock, primary, start)
            .expect("prewrite lock");
    }

    fn must_prewrite_put_err(&self, key: &[u8], value: &[u8], primary: &[u8], start: u64) -> TxnError {
        txn_error(self.prewrite(key, MutationOp::Put(value.to_vec()), primary, start))
    }

    fn must_commit(&self, key: &[u8], start: u64, commit_ts: u64) {
        self.run(|txn, reader| commit(txn, reader, &k(key), ts(start), ts(commit_ts)))
            .expect("commit");
    }

    fn must_commit_err(&self, key: &[u8], start: u64, commit_ts: u64) -> TxnError {
        txn_error(self.run(|txn, reader| commit(txn, reader, &k(key), ts(start), ts(commit_ts))))
    }

    fn must_rollback(&self, key: &[u8], start: u64) {
        self.run(|txn, reader| rollback(txn, reader, &k(key), ts(start)))
            .expect("rollback");
    }

    fn must_rollback_err(&self, key: &[u8], start: u64) -> TxnError {
        txn_error(self.run(|txn, reader| rollback(txn, reader, &k(key), ts(start))))
    }

    fn read(&self, key: &[u8], read_ts: u64) -> Result<Option<Vec<u8>>> {
        let opts = ReadOptions {
            ts: ts(read_ts),
            ..Default::default()
        };
        mvcc::point_get(&self.engine.snapshot(), &k(key), &opts)
    }

    fn must_get(&self, key: &[u8], read_ts: u64, value: &[u8]) {
        assert_eq!(self.read(key, read_ts).expect("get"), Some(value.to_vec()));
    }

    fn must_get_none(&self, key: &[u8], read_ts: u64) {
        assert_eq!(self.read(key, read_ts).expect("get"), None);
    }

    fn must_get_locked(&self, key: &[u8], read_ts: u64) -> atoll_proto::kvrpcpb::LockInfo {
        match txn_error(self.read(key, read_ts)) {
            TxnError::KeyIsLocked(info) => *info,
            other => panic!("expected locked, got {other:?}"),
        }
    }

    fn must_locked(&self, key: &[u8], start: u64) -> Lock {
        let snap = self.engine.snapshot();
        let lock = MvccReader::new(&snap)
            .load_lock(&k(key))
            .expect("load lock")
            .expect("key is locked");
        assert_eq!(lock.ts, ts(start));
        lock
    }

    fn must_unlocked(&self, key: &[u8]) {
        let snap = self.engine.snapshot();
        assert_eq!(
            MvccReader::new(&snap).load_lock(&k(key)).expect("load lock"),
            None
        );
    }

    fn must_written(&self, key: &[u8], start: u64, commit_ts: u64, write_type: WriteType) {
        let snap = self.engine.snapshot();
        let (found_ts, w) = MvccReader::new(&snap)
            .seek_write(&k(key), ts(commit_ts))
            .expect("seek write")
            .expect("a write record");
        assert_eq!(
            (found_ts, w.start_ts, w.write_type),
            (ts(commit_ts), ts(start), write_type)
        );
    }

    fn versions(&self, key: &[u8]) -> usize {
        let snap = self.engine.snapshot();
        MvccReader::new(&snap)
            .all_versions(&k(key))
            .expect("versions")
            .len()
    }

    fn pessimistic_lock(
        &self,
        key: &[u8],
        primary: &[u8],
        start: u64,
        for_update: u64,
    ) -> Result<PessimisticLockResult> {
        let opts = PessimisticLockOptions {
            start_ts: ts(start),
            for_update_ts: ts(for_update),
            primary: primary.to_vec(),
            lock_ttl: 3000,
            need_value: true,
            ..Default::default()
        };
        self.run(|txn, reader| acquire_pessimistic_lock(txn, reader, &k(key), &opts))
    }

    fn must_pessimistic_prewrite_put(
        &self,
        key: &[u8],
        value: &[u8],
        primary: &[u8],
        start: u64,
        for_update: u64,
    ) {
        let mut props = self.props(primary, start);
        props.for_update_ts = ts(for_update);
        self.prewrite_with(&props, key, MutationOp::Put(value.to_vec()), true)
            .expect("pessimistic prewrite");
    }

    fn check_txn_status(
        &self,
        primary: &[u8],
        lock_ts: u64,
        caller: u64,
        current: u64,
        rollback_if_not_exist: bool,
    ) -> Result<TxnStatus> {
        self.run(|txn, reader| {
            check_txn_status(
                txn,
                reader,
                &k(primary),
                ts(lock_ts),
                ts(caller),
                ts(current),
                rollback_if_not_exist,
                false,
                false,
                true,
            )
        })
    }
}

/// A timestamp whose physical part is `ms`.
fn at_ms(ms: u64) -> u64 {
    TimeStamp::compose(ms, 0).into_inner()
}
