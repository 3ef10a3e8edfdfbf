//! Action-level protocol traces over an in-memory engine: each `must_*` helper runs one action
//! on a fresh snapshot and applies its writes, like one command would.

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
        self.run(|txn, reader| {
            let m = Mutation { key: k(key), op };
            let locks = match prewrite(txn, reader, props, &m, pessimistic, false)? {
                PrewriteOutcome::Locked(Some(lock)) => vec![(m.key.clone(), lock)],
                _ => vec![],
            };
            Ok(finish_prewrite(txn, props, locks, ts(0)))
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

#[test]
fn prewrite_commit_then_read() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v", b"k", 5);
    s.must_locked(b"k", 5);
    s.must_get_none(b"k", 4);
    let info = s.must_get_locked(b"k", 10);
    assert_eq!((info.lock_version, info.primary_lock.as_slice()), (5, &b"k"[..]));
    s.must_commit(b"k", 5, 10);
    s.must_unlocked(b"k");
    s.must_written(b"k", 5, 10, WriteType::Put);
    s.must_get_none(b"k", 9);
    s.must_get(b"k", 10, b"v");
    s.must_get(b"k", u64::MAX, b"v");

    s.must_prewrite_delete(b"k", b"k", 15);
    s.must_commit(b"k", 15, 20);
    s.must_get(b"k", 19, b"v");
    s.must_get_none(b"k", 20);
}

#[test]
fn long_values_live_in_default_and_leave_with_rollback() {
    let s = Store::new();
    let long = vec![7u8; 1000];
    s.must_prewrite_put(b"big", &long, b"big", 5);
    assert_eq!(s.must_locked(b"big", 5).short_value, None);
    s.must_commit(b"big", 5, 6);
    s.must_get(b"big", 7, &long);

    s.must_prewrite_put(b"big", &long, b"big", 8);
    s.must_rollback(b"big", 8);
    let snap = s.engine.snapshot();
    let default_key = data_key(&mvcc_key::append_ts(&k(b"big"), ts(8)));
    use engine_traits::Peekable;
    assert_eq!(
        snap.get_cf(engine_traits::CF_DEFAULT, &default_key).unwrap(),
        None
    );
    s.must_get(b"big", 20, &long);
}

#[test]
fn write_conflict_and_lock_conflict() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v1", b"k", 5);
    s.must_commit(b"k", 5, 10);
    match s.must_prewrite_put_err(b"k", b"v2", b"k", 8) {
        TxnError::WriteConflict {
            start_ts,
            conflict_start_ts,
            conflict_commit_ts,
            reason,
            ..
        } => assert_eq!(
            (start_ts, conflict_start_ts, conflict_commit_ts, reason),
            (ts(8), ts(5), ts(10), ConflictReason::Optimistic)
        ),
        other => panic!("{other:?}"),
    }
    s.must_prewrite_put(b"k", b"v2", b"k", 12);
    match s.must_prewrite_put_err(b"k", b"v3", b"k", 13) {
        TxnError::KeyIsLocked(info) => assert_eq!(info.lock_version, 12),
        other => panic!("{other:?}"),
    }
    // A retried prewrite of the same transaction is accepted and changes nothing.
    s.must_prewrite_put(b"k", b"v2", b"k", 12);
    s.must_commit(b"k", 12, 14);
    s.must_get(b"k", 14, b"v2");
}

#[test]
fn insert_and_check_not_exists() {
    let s = Store::new();
    s.prewrite(b"k", MutationOp::Insert(b"v".to_vec()), b"k", 5)
        .unwrap();
    s.must_commit(b"k", 5, 6);
    match txn_error(s.prewrite(b"k", MutationOp::Insert(b"w".to_vec()), b"k", 7)) {
        TxnError::AlreadyExist { key } => assert_eq!(key, b"k".to_vec()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        txn_error(s.prewrite(b"k", MutationOp::CheckNotExists, b"k", 7)),
        TxnError::AlreadyExist { .. }
    ));
    s.must_prewrite_delete(b"k", b"k", 8);
    s.must_commit(b"k", 8, 9);
    s.prewrite(b"k", MutationOp::CheckNotExists, b"k", 10).unwrap();
    s.must_unlocked(b"k");
    s.prewrite(b"k", MutationOp::Insert(b"again".to_vec()), b"k", 10)
        .unwrap();
    s.must_commit(b"k", 10, 11);
    s.must_get(b"k", 11, b"again");
}

#[test]
fn commit_is_idempotent_and_needs_the_lock() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v", b"k", 5);
    s.must_commit(b"k", 5, 10);
    s.must_commit(b"k", 5, 10);
    assert_eq!(s.versions(b"k"), 1);
    match s.must_commit_err(b"never", 7, 8) {
        TxnError::TxnLockNotFound {
            start_ts,
            commit_ts,
            key,
        } => {
            assert_eq!((start_ts, commit_ts, key), (ts(7), ts(8), b"never".to_vec()))
        }
        other => panic!("{other:?}"),
    }
    // Commit after rollback.
    s.must_prewrite_put(b"r", b"v", b"r", 20);
    s.must_rollback(b"r", 20);
    assert!(matches!(
        s.must_commit_err(b"r", 20, 21),
        TxnError::TxnLockNotFound { .. }
    ));
    s.must_get_none(b"r", 30);
}

#[test]
fn rollback_after_commit_fails_and_rollback_blocks_late_prewrite() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v", b"k", 5);
    s.must_commit(b"k", 5, 10);
    match s.must_rollback_err(b"k", 5) {
        TxnError::Committed { commit_ts, .. } => assert_eq!(commit_ts, ts(10)),
        other => panic!("{other:?}"),
    }
    // Rolling back a transaction that never reached this key leaves a record...
    s.must_rollback(b"x", 20);
    s.must_rollback(b"x", 20);
    s.must_written(b"x", 20, 20, WriteType::Rollback);
    // ...that refuses its late prewrite.
    match s.must_prewrite_put_err(b"x", b"late", b"x", 20) {
        TxnError::WriteConflict { reason, .. } => assert_eq!(reason, ConflictReason::SelfRolledBack),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rollback_at_another_commit_ts_is_recorded_in_place() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"a", b"k", 5);
    s.must_commit(b"k", 5, 10);
    // Transaction 10 is rolled back on k, where transaction 5 committed at 10.
    s.must_rollback(b"k", 10);
    s.must_get(b"k", 10, b"a");
    assert_eq!(s.versions(b"k"), 1);
    let snap = s.engine.snapshot();
    let record = MvccReader::new(&snap)
        .get_txn_commit_record(&k(b"k"), ts(10))
        .unwrap();
    assert!(record.is_rolled_back());
    assert!(matches!(
        s.must_prewrite_put_err(b"k", b"late", b"k", 10),
        TxnError::WriteConflict { .. }
    ));

    // The other order: a lock that may commit at a rolled-back ts remembers the rollback.
    s.must_prewrite_put(b"j", b"b", b"j", 15);
    s.must_rollback(b"j", 20);
    assert_eq!(s.must_locked(b"j", 15).rollback_ts, vec![ts(20)]);
    s.must_commit(b"j", 15, 20);
    let snap = s.engine.snapshot();
    let (_, w) = MvccReader::new(&snap)
        .seek_write(&k(b"j"), ts(20))
        .unwrap()
        .unwrap();
    assert!(w.has_overlapped_rollback);
    s.must_get(b"j", 20, b"b");
}

#[test]
fn commit_ts_expired() {
    let s = Store::new();
    let mut props = s.props(b"k", 5);
    props.min_commit_ts = ts(20);
    s.prewrite_with(&props, b"k", MutationOp::Put(b"v".to_vec()), false)
        .unwrap();
    match s.must_commit_err(b"k", 5, 15) {
        TxnError::CommitTsExpired { min_commit_ts, .. } => assert_eq!(min_commit_ts, ts(20)),
        other => panic!("{other:?}"),
    }
    s.must_commit(b"k", 5, 20);
}

#[test]
fn cleanup_respects_ttl() {
    let s = Store::new();
    let start = at_ms(1000);
    s.must_prewrite_put(b"k", b"v", b"k", start);
    let alive = s.run(|txn, reader| cleanup(txn, reader, &k(b"k"), ts(start), ts(at_ms(2000))));
    assert!(matches!(txn_error(alive), TxnError::KeyIsLocked(_)));
    s.run(|txn, reader| cleanup(txn, reader, &k(b"k"), ts(start), ts(at_ms(5000))))
        .unwrap();
    s.must_unlocked(b"k");
    s.must_written(b"k", start, start, WriteType::Rollback);
}

#[test]
fn check_txn_status_shapes() {
    let s = Store::new();
    let start = at_ms(1000);
    // A lock without a min_commit_ts is never pushed.
    s.must_prewrite_put(b"old", b"v", b"old", start);
    match s
        .check_txn_status(b"old", start, start + 7, at_ms(2000), false)
        .unwrap()
    {
        TxnStatus::Locked { action, lock, .. } => {
            assert_eq!((action, lock.min_commit_ts), (Action::NoAction, 0))
        }
        other => panic!("{other:?}"),
    }
    let mut props = s.props(b"p", start);
    props.min_commit_ts = ts(start + 1);
    s.prewrite_with(&props, b"p", MutationOp::Put(b"v".to_vec()), false)
        .unwrap();
    // Alive: locked, and a reader's start ts pushes the commit ts.
    match s
        .check_txn_status(b"p", start, start + 7, at_ms(2000), false)
        .unwrap()
    {
        TxnStatus::Locked { ttl, lock, action } => {
            assert_eq!((ttl, action), (3000, Action::MinCommitTsPushed));
            assert_eq!(lock.min_commit_ts, at_ms(2000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.must_locked(b"p", start).min_commit_ts, ts(at_ms(2000)));
    // Expired: rolled back.
    assert_eq!(
        s.check_txn_status(b"p", start, 0, at_ms(9000), false).unwrap(),
        TxnStatus::RolledBack {
            action: Action::TtlExpireRollback
        }
    );
    s.must_unlocked(b"p");
    assert_eq!(
        s.check_txn_status(b"p", start, 0, at_ms(9000), false).unwrap(),
        TxnStatus::RolledBack {
            action: Action::NoAction
        }
    );
    // Committed.
    s.must_prewrite_put(b"c", b"v", b"c", 50);
    s.must_commit(b"c", 50, 60);
    assert_eq!(
        s.check_txn_status(b"c", 50, 0, 0, false).unwrap(),
        TxnStatus::Committed { commit_ts: ts(60) }
    );
    // Missing: not found, or rolled back when asked.
    match txn_error(s.check_txn_status(b"m", 70, 0, 0, false)) {
        TxnError::TxnNotFound { start_ts, key } => assert_eq!((start_ts, key), (ts(70), b"m".to_vec())),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.check_txn_status(b"m", 70, 0, 0, true).unwrap(),
        TxnStatus::RolledBack {
            action: Action::LockNotExistRollback
        }
    );
    // Resolving a pessimistic lock whose primary is gone: not found unless asked to roll back,
    // then nothing is written.
    let r = s.run(|txn, reader| {
        check_txn_status(
            txn,
            reader,
            &k(b"n"),
            ts(80),
            ts(0),
            ts(0),
            false,
            false,
            true,
            true,
        )
    });
    assert!(matches!(txn_error(r), TxnError::TxnNotFound { .. }));
    let r = s
        .run(|txn, reader| {
            check_txn_status(
                txn,
                reader,
                &k(b"n"),
                ts(80),
                ts(0),
                ts(0),
                true,
                false,
                true,
                true,
            )
        })
        .unwrap();
    assert_eq!(
        r,
        TxnStatus::RolledBack {
            action: Action::LockNotExistDoNothing
        }
    );
    // A rollback decided for a transaction whose primary holds another (older) transaction's
    // lock is remembered in that lock, so its commit cannot overwrite the rollback record.
    s.must_prewrite_put(b"q", b"v", b"q", 90);
    s.check_txn_status(b"q", 95, 0, 0, true).unwrap();
    assert_eq!(s.must_locked(b"q", 90).rollback_ts, vec![ts(95)]);
    assert!(matches!(
        s.must_prewrite_put_err(b"m", b"late", b"m", 70),
        TxnError::WriteConflict { .. }
    ));
}

#[test]
fn async_commit_locks_are_never_rolled_back_by_ttl_unless_forced() {
    let s = Store::new();
    let start = at_ms(1000);
    let mut props = s.props(b"p", start);
    props.use_async_commit = true;
    props.secondaries = vec![b"s".to_vec()];
    let r = s
        .prewrite_with(&props, b"p", MutationOp::Put(b"v".to_vec()), false)
        .unwrap();
    assert_eq!(r.min_commit_ts, ts(start + 1));
    let lock = s.must_locked(b"p", start);
    assert!(lock.use_async_commit);
    assert_eq!(lock.secondaries, vec![b"s".to_vec()]);
    assert!(matches!(
        s.check_txn_status(b"p", start, 0, at_ms(99_000), false).unwrap(),
        TxnStatus::Locked { .. }
    ));
    let forced = s
        .run(|txn, reader| {
            check_txn_status(
                txn,
                reader,
                &k(b"p"),
                ts(start),
                ts(0),
                ts(at_ms(99_000)),
                false,
                true,
                false,
                true,
            )
        })
        .unwrap();
    assert_eq!(
        forced,
        TxnStatus::RolledBack {
            action: Action::TtlExpireRollback
        }
    );

    // Secondary checks: a missing secondary is rolled back so the transaction cannot commit.
    let start2 = at_ms(2000);
    let mut props = s.props(b"p2", start2);
    props.use_async_commit = true;
    s.prewrite_with(&props, b"s1", MutationOp::Put(b"v".to_vec()), false)
        .unwrap();
    let status = s
        .run(|txn, reader| check_secondary_lock(txn, reader, &k(b"s1"), ts(start2)))
        .unwrap();
    assert!(matches!(status, SecondaryStatus::Locked(_)));
    let status = s
        .run(|txn, reader| check_secondary_lock(txn, reader, &k(b"s2"), ts(start2)))
        .unwrap();
    assert_eq!(status, SecondaryStatus::RolledBack);
    s.must_written(b"s2", start2, start2, WriteType::Rollback);
    s.must_commit(b"s1", start2, start2 + 5);
    let status = s
        .run(|txn, reader| check_secondary_lock(txn, reader, &k(b"s1"), ts(start2)))
        .unwrap();
    assert_eq!(status, SecondaryStatus::Committed(ts(start2 + 5)));
}

#[test]
fn async_commit_floor_comes_from_max_read_ts_and_falls_back_above_max_commit_ts() {
    let s = Store::new();
    let mut props = s.props(b"k", 10);
    props.use_async_commit = true;
    let r = s
        .run(|txn, reader| {
            let m = Mutation {
                key: k(b"k"),
                op: MutationOp::Put(b"v".to_vec()),
            };
            let PrewriteOutcome::Locked(Some(lock)) = prewrite(txn, reader, &props, &m, false, false)? else {
                panic!("not locked")
            };
            Ok(finish_prewrite(txn, &props, vec![(m.key, lock)], ts(40)))
        })
        .unwrap();
    assert_eq!(r.min_commit_ts, ts(41));
    assert_eq!(s.must_locked(b"k", 10).min_commit_ts, ts(41));
    assert!(matches!(
        s.must_commit_err(b"k", 10, 40),
        TxnError::CommitTsExpired { .. }
    ));
    // The read at 41 must not see the transaction it may have missed: the lock blocks it.
    let _ = s.must_get_locked(b"k", 41);
    s.must_get_none(b"k", 40);

    let mut props = s.props(b"f", 10);
    props.use_async_commit = true;
    props.max_commit_ts = ts(20);
    let r = s
        .run(|txn, reader| {
            let m = Mutation {
                key: k(b"f"),
                op: MutationOp::Put(b"v".to_vec()),
            };
            let PrewriteOutcome::Locked(Some(lock)) = prewrite(txn, reader, &props, &m, false, false)? else {
                panic!("not locked")
            };
            Ok(finish_prewrite(txn, &props, vec![(m.key, lock)], ts(40)))
        })
        .unwrap();
    assert_eq!(r, PrewriteResult::default());
    assert!(!s.must_locked(b"f", 10).use_async_commit);
}

#[test]
fn one_pc_writes_commit_records_directly() {
    let s = Store::new();
    let mut props = s.props(b"a", 10);
    props.try_one_pc = true;
    let r = s
        .run(|txn, reader| {
            let mut locks = vec![];
            for (key, op) in [(b"a", MutationOp::Put(b"1".to_vec())), (b"b", MutationOp::Delete)] {
                let m = Mutation { key: k(key), op };
                if let PrewriteOutcome::Locked(Some(l)) = prewrite(txn, reader, &props, &m, false, false)? {
                    locks.push((m.key, l));
                }
            }
            Ok(finish_prewrite(txn, &props, locks, ts(30)))
        })
        .unwrap();
    assert_eq!(r.one_pc_commit_ts, ts(31));
    s.must_unlocked(b"a");
    s.must_unlocked(b"b");
    s.must_written(b"a", 10, 31, WriteType::Put);
    s.must_written(b"b", 10, 31, WriteType::Delete);
    s.must_get(b"a", 31, b"1");
    s.must_get_none(b"a", 30);
}

#[test]
fn pessimistic_lock_then_prewrite_then_commit() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"old", b"k", 1);
    s.must_commit(b"k", 1, 2);
    let r = s.pessimistic_lock(b"k", b"k", 10, 10).unwrap();
    assert_eq!(
        r,
        PessimisticLockResult {
            value: Some(b"old".to_vec()),
            exists: true
        }
    );
    let lock = s.must_locked(b"k", 10);
    assert_eq!(
        (lock.lock_type, lock.for_update_ts),
        (LockType::Pessimistic, ts(10))
    );
    // Readers are not blocked by a pessimistic lock; writers are.
    s.must_get(b"k", 20, b"old");
    assert!(matches!(
        s.must_prewrite_put_err(b"k", b"x", b"k", 11),
        TxnError::KeyIsLocked(_)
    ));
    assert!(matches!(
        txn_error(s.pessimistic_lock(b"k", b"k", 12, 12)),
        TxnError::KeyIsLocked(_)
    ));
    // Locking again with a newer for_update_ts refreshes it.
    s.pessimistic_lock(b"k", b"k", 10, 15).unwrap();
    assert_eq!(s.must_locked(b"k", 10).for_update_ts, ts(15));
    s.must_pessimistic_prewrite_put(b"k", b"new", b"k", 10, 15);
    assert_eq!(s.must_locked(b"k", 10).lock_type, LockType::Put);
    s.must_commit(b"k", 10, 20);
    s.must_get(b"k", 20, b"new");
}

#[test]
fn pessimistic_lock_conflicts_and_missing_locks() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v", b"k", 5);
    s.must_commit(b"k", 5, 30);
    match txn_error(s.pessimistic_lock(b"k", b"k", 10, 20)) {
        TxnError::WriteConflict {
            reason,
            conflict_commit_ts,
            ..
        } => {
            assert_eq!(
                (reason, conflict_commit_ts),
                (ConflictReason::PessimisticRetry, ts(30))
            )
        }
        other => panic!("{other:?}"),
    }
    // Prewrite of a key that should hold a pessimistic lock but does not.
    let mut props = s.props(b"k", 40);
    props.for_update_ts = ts(40);
    assert!(matches!(
        txn_error(s.prewrite_with(&props, b"none", MutationOp::Put(b"v".to_vec()), true)),
        TxnError::PessimisticLockNotFound { .. }
    ));
    // Rolled back pessimistic lock.
    s.pessimistic_lock(b"r", b"r", 50, 50).unwrap();
    s.must_rollback(b"r", 50);
    let mut props = s.props(b"r", 50);
    props.for_update_ts = ts(50);
    assert!(matches!(
        txn_error(s.prewrite_with(&props, b"r", MutationOp::Put(b"v".to_vec()), true)),
        TxnError::PessimisticLockRolledBack { .. }
    ));
    // Should-not-exist and lock-only-if-exists.
    let mut opts = PessimisticLockOptions {
        start_ts: ts(60),
        for_update_ts: ts(60),
        primary: b"k".to_vec(),
        lock_ttl: 100,
        should_not_exist: true,
        ..Default::default()
    };
    assert!(matches!(
        txn_error(s.run(|txn, reader| acquire_pessimistic_lock(txn, reader, &k(b"k"), &opts))),
        TxnError::AlreadyExist { .. }
    ));
    opts.should_not_exist = false;
    opts.need_value = true;
    opts.lock_only_if_exists = true;
    let r = s
        .run(|txn, reader| acquire_pessimistic_lock(txn, reader, &k(b"absent"), &opts))
        .unwrap();
    assert!(!r.exists);
    s.must_unlocked(b"absent");
}

#[test]
fn pessimistic_rollback_only_removes_own_pessimistic_locks() {
    let s = Store::new();
    s.pessimistic_lock(b"a", b"a", 10, 12).unwrap();
    s.must_prewrite_put(b"b", b"v", b"b", 10);
    let removed = s
        .run(|txn, reader| pessimistic_rollback(txn, reader, &k(b"a"), ts(10), ts(11)))
        .unwrap();
    assert!(!removed, "a lock taken at a later for_update_ts stays");
    let removed = s
        .run(|txn, reader| pessimistic_rollback(txn, reader, &k(b"a"), ts(10), ts(12)))
        .unwrap();
    assert!(removed);
    s.must_unlocked(b"a");
    let removed = s
        .run(|txn, reader| pessimistic_rollback(txn, reader, &k(b"b"), ts(10), ts(12)))
        .unwrap();
    assert!(!removed, "a prewritten lock is not a pessimistic lock");
    s.must_locked(b"b", 10);
}

#[test]
fn check_txn_status_verifies_the_primary() {
    let s = Store::new();
    s.must_prewrite_put(b"secondary", b"v", b"primary", 5);
    let r = s.run(|txn, reader| {
        check_txn_status(
            txn,
            reader,
            &k(b"secondary"),
            ts(5),
            ts(0),
            ts(0),
            false,
            false,
            false,
            true,
        )
    });
    assert!(matches!(txn_error(r), TxnError::PrimaryMismatch(_)));
}

#[test]
fn heart_beat_extends_ttl() {
    let s = Store::new();
    s.must_prewrite_put(b"p", b"v", b"p", 5);
    let ttl = s
        .run(|txn, reader| txn_heart_beat(txn, reader, &k(b"p"), ts(5), 10_000))
        .unwrap();
    assert_eq!(ttl, 10_000);
    let ttl = s
        .run(|txn, reader| txn_heart_beat(txn, reader, &k(b"p"), ts(5), 1))
        .unwrap();
    assert_eq!(ttl, 10_000);
    assert_eq!(s.must_locked(b"p", 5).ttl, 10_000);
    assert!(matches!(
        txn_error(s.run(|txn, reader| txn_heart_beat(txn, reader, &k(b"p"), ts(6), 1))),
        TxnError::TxnNotFound { .. }
    ));
}

#[test]
fn reads_skip_locks_that_cannot_affect_them() {
    let s = Store::new();
    s.must_prewrite_put(b"k", b"v0", b"k", 1);
    s.must_commit(b"k", 1, 2);
    s.must_prewrite_put(b"k", b"v1", b"k", 10);
    // Resolved (bypassed) locks are ignored; committed (accessed) locks are read through.
    let snap = s.engine.snapshot();
    let mut opts = ReadOptions {
        ts: ts(20),
        bypass_locks: vec![10],
        ..Default::default()
    };
    assert_eq!(
        mvcc::point_get(&snap, &k(b"k"), &opts).unwrap(),
        Some(b"v0".to_vec())
    );
    opts.bypass_locks.clear();
    opts.access_locks = vec![10];
    assert_eq!(
        mvcc::point_get(&snap, &k(b"k"), &opts).unwrap(),
        Some(b"v1".to_vec())
    );
    // A read lock (Op::Lock) never blocks reads.
    s.must_prewrite_lock(b"l", b"l", 10);
    s.must_get_none(b"l", 20);
    // The primary read at "latest" is not blocked by its own non-async lock.
    s.must_get(b"k", u64::MAX, b"v0");
}

#[test]
fn scans_see_versions_at_their_ts_in_both_directions() {
    let s = Store::new();
    for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        let start = 10 + i as u64 * 10;
        s.must_prewrite_put(*key, &[b'0' + i as u8], *key, start);
        s.must_commit(*key, start, start + 1);
    }
    s.must_prewrite_delete(b"b", b"b", 100);
    s.must_commit(b"b", 100, 101);
    s.must_prewrite_put(b"c", b"locked", b"c", 110);
    let snap = s.engine.snapshot();
    let scan = |read_ts: u64, reverse: bool, limit: usize| {
        let opts = ReadOptions {
            ts: ts(read_ts),
            ..Default::default()
        };
        mvcc::scan(&snap, &k(b""), b"", limit, false, reverse, &opts)
            .unwrap()
            .into_iter()
            .map(|(key, v)| (mvcc_key::decode(&key).unwrap(), v.ok()))
            .collect::<Vec<_>>()
    };
    let some = |key: &[u8], v: &[u8]| (key.to_vec(), Some(v.to_vec()));
    assert_eq!(
        scan(35, false, 0),
        vec![some(b"a", b"0"), some(b"b", b"1"), some(b"c", b"2")]
    );
    assert_eq!(scan(35, true, 2), vec![some(b"c", b"2"), some(b"b", b"1")]);
    // At 200: b is deleted; c's lock (start 110) blocks c and is reported in place.
    assert_eq!(
        scan(200, false, 0),
        vec![some(b"a", b"0"), (b"c".to_vec(), None), some(b"d", b"3")]
    );
    assert_eq!(
        scan(200, true, 0),
        vec![some(b"d", b"3"), (b"c".to_vec(), None), some(b"a", b"0")]
    );
}

#[test]
fn gc_keeps_the_newest_visible_version() {
    let s = Store::new();
    let long = vec![1u8; 600];
    s.must_prewrite_put(b"k", &long, b"k", 1);
    s.must_commit(b"k", 1, 2);
    s.must_prewrite_put(b"k", b"v2", b"k", 3);
    s.must_commit(b"k", 3, 4);
    s.must_rollback(b"k", 5);
    s.must_prewrite_put(b"k", b"v3", b"k", 10);
    s.must_commit(b"k", 10, 11);
    assert_eq!(s.versions(b"k"), 4);
    let removed = s.run(|txn, reader| gc_key(txn, reader, &k(b"k"), ts(6))).unwrap();
    assert_eq!(removed, 2, "the rollback and the version hidden by v2");
    s.must_get(b"k", 6, b"v2");
    s.must_get(b"k", 11, b"v3");
    // A delete at or before the safe point takes every older version with it.
    s.must_prewrite_delete(b"k", b"k", 20);
    s.must_commit(b"k", 20, 21);
    s.run(|txn, reader| gc_key(txn, reader, &k(b"k"), ts(30)))
        .unwrap();
    assert_eq!(s.versions(b"k"), 0);
    s.must_get_none(b"k", 40);
}

#[test]
fn scans_read_committed_locks_including_deletes() {
    let s = Store::new();
    s.must_prewrite_put(b"a", b"old", b"a", 1);
    s.must_commit(b"a", 1, 2);
    s.must_prewrite_put(b"b", b"old", b"b", 1);
    s.must_commit(b"b", 1, 2);
    // Transaction 10 deletes a and rewrites b; the reader knows it committed.
    s.must_prewrite_delete(b"a", b"a", 10);
    s.must_prewrite_put(b"b", b"new", b"a", 10);
    let opts = ReadOptions {
        ts: ts(20),
        access_locks: vec![10],
        ..Default::default()
    };
    let snap = s.engine.snapshot();
    let got: Vec<_> = mvcc::scan(&snap, &k(b""), b"", 0, false, false, &opts)
        .unwrap()
        .into_iter()
        .map(|(key, v)| (mvcc_key::decode(&key).unwrap(), v.unwrap()))
        .collect();
    assert_eq!(got, vec![(b"b".to_vec(), b"new".to_vec())]);
    assert_eq!(mvcc::point_get(&snap, &k(b"a"), &opts).unwrap(), None);
}
