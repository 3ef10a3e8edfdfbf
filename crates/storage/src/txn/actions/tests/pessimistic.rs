//! Pessimistic locks and their rollback.

use super::*;

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
