//! Snapshot reads, scans and GC.

use super::*;

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
