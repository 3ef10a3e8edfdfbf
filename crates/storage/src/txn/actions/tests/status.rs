//! Transaction status: check-txn-status, heartbeats, async commit and 1PC.

use super::*;

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
        .prewrite_request(&props, vec![(b"k", MutationOp::Put(b"v".to_vec()))], false, 40)
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
        .prewrite_request(&props, vec![(b"f", MutationOp::Put(b"v".to_vec()))], false, 40)
        .unwrap();
    assert_eq!(r, PrewriteResult::default());
    assert!(!s.must_locked(b"f", 10).use_async_commit);
}

#[test]
fn one_pc_writes_commit_records_directly() {
    let s = Store::new();
    let mut props = s.props(b"a", 10);
    props.try_one_pc = true;
    let muts: Vec<(&[u8], MutationOp)> =
        vec![(b"a", MutationOp::Put(b"1".to_vec())), (b"b", MutationOp::Delete)];
    let r = s.prewrite_request(&props, muts, false, 30).unwrap();
    assert_eq!(r.one_pc_commit_ts, ts(31));
    s.must_unlocked(b"a");
    s.must_unlocked(b"b");
    s.must_written(b"a", 10, 31, WriteType::Put);
    s.must_written(b"b", 10, 31, WriteType::Delete);
    s.must_get(b"a", 31, b"1");
    s.must_get_none(b"a", 30);
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
