//! Prewrite, commit, rollback and cleanup.

use super::*;

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
