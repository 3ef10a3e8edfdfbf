//! Command-level tests over an in-memory kv seam: latches, lock waits, deadlocks, async commit
//! with memory locks, region-wide lock resolution and GC, API V2 key checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atoll_proto::kvrpcpb::{self, ApiVersion, Op};
use txn_types::TimeStamp;

use super::*;
use crate::mvcc::TxnError;
use crate::test_engine::TestEngine;
use crate::txn::actions::{PessimisticLockOptions, TxnProps};
use crate::Error;

/// Hands out increasing timestamps from 1000.
struct Clock(AtomicU64);

impl TsSource for Clock {
    fn now(&self) -> Pin<Box<dyn Future<Output = Result<TimeStamp>> + Send + '_>> {
        let ts = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(TimeStamp::new(ts)) })
    }
}

fn storage() -> TxnStorage<TestEngine> {
    TxnStorage::new(
        TestEngine::new(b"", b""),
        ConcurrencyManager::default(),
        Arc::new(Clock(AtomicU64::new(1000))),
    )
}

fn ctx() -> kvrpcpb::Context {
    kvrpcpb::Context {
        region_id: 1,
        ..Default::default()
    }
}

fn put(key: &[u8], value: &[u8]) -> kvrpcpb::Mutation {
    kvrpcpb::Mutation {
        op: Op::Put as i32,
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

fn prewrite_req(mutations: Vec<kvrpcpb::Mutation>, primary: &[u8], start: u64) -> PrewriteRequest {
    PrewriteRequest {
        mutations,
        props: TxnProps {
            start_ts: TimeStamp::new(start),
            primary: primary.to_vec(),
            lock_ttl: 3000,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn key_error(e: Error) -> TxnError {
    match e {
        Error::Txn(t) => *t,
        other => panic!("expected a txn error, got {other:?}"),
    }
}

async fn must_commit_txn(s: &TxnStorage<TestEngine>, kvs: &[(&[u8], &[u8])], start: u64, commit: u64) {
    let muts = kvs.iter().map(|(k, v)| put(k, v)).collect();
    let r = s
        .prewrite(&ctx(), prewrite_req(muts, kvs[0].0, start))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let keys: Vec<Vec<u8>> = kvs.iter().map(|(k, _)| k.to_vec()).collect();
    s.commit(&ctx(), &keys, start, commit).await.unwrap();
}

#[tokio::test]
async fn prewrite_reports_every_locked_key_and_writes_nothing() {
    let s = storage();
    let r = s
        .prewrite(&ctx(), prewrite_req(vec![put(b"a", b"1")], b"a", 10))
        .await
        .unwrap();
    assert!(r.errors.is_empty());
    let r = s
        .prewrite(
            &ctx(),
            prewrite_req(vec![put(b"b", b"2"), put(b"a", b"2")], b"b", 11),
        )
        .await
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].is_key_locked());
    // b was not locked by the failed request.
    assert_eq!(s.get(&ctx(), b"b", 100).await.unwrap(), None);
    assert!(s.scan_lock(&ctx(), 100, b"", b"", 0).await.unwrap().len() == 1);
}

#[tokio::test]
async fn commit_must_follow_start() {
    let s = storage();
    assert!(matches!(
        s.commit(&ctx(), &[b"k".to_vec()], 10, 10).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn scans_and_batch_get_through_commands() {
    let s = storage();
    must_commit_txn(&s, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], 10, 11).await;
    let r = s
        .prewrite(&ctx(), prewrite_req(vec![put(b"b", b"x")], b"b", 20))
        .await
        .unwrap();
    assert!(r.errors.is_empty());
    let items = s.scan(&ctx(), b"a", b"", 10, 30, false, false).await.unwrap();
    let keys: Vec<_> = items.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(items[1].1.as_ref().is_err_and(|e| e.is_key_locked()));
    // Reverse: [end, start) descending.
    let items = s.scan(&ctx(), b"c", b"a", 10, 15, true, true).await.unwrap();
    let keys: Vec<_> = items.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![b"b".to_vec(), b"a".to_vec()]);
    let got = s
        .batch_get(&ctx(), &[b"c".to_vec(), b"zz".to_vec(), b"a".to_vec()], 15)
        .await
        .unwrap();
    let got: Vec<_> = got.into_iter().map(|(k, v)| (k, v.unwrap())).collect();
    assert_eq!(
        got,
        vec![(b"c".to_vec(), b"3".to_vec()), (b"a".to_vec(), b"1".to_vec())]
    );
}

#[tokio::test]
async fn api_v2_requires_the_transactional_keyspace() {
    let s = storage();
    let v2 = kvrpcpb::Context {
        region_id: 1,
        api_version: ApiVersion::V2 as i32,
        ..Default::default()
    };
    assert!(matches!(
        s.get(&v2, b"rkey", 10).await,
        Err(Error::InvalidKeyMode(_))
    ));
    let mut req = prewrite_req(vec![put(b"x\0\0\0k", b"v")], b"x\0\0\0k", 10);
    req.mutations.push(put(b"raw", b"v"));
    assert!(matches!(
        s.prewrite(&v2, req).await,
        Err(Error::InvalidKeyMode(_))
    ));
    let req = prewrite_req(vec![put(b"x\0\0\0k", b"v")], b"x\0\0\0k", 10);
    assert!(s.prewrite(&v2, req).await.unwrap().errors.is_empty());
    s.commit(&v2, &[b"x\0\0\0k".to_vec()], 10, 11).await.unwrap();
    assert_eq!(s.get(&v2, b"x\0\0\0k", 12).await.unwrap(), Some(b"v".to_vec()));
    // A V2 scan never leaves its keyspace.
    let items = s.scan(&v2, b"x\0\0\0", b"", 10, 12, false, false).await.unwrap();
    assert_eq!(items.len(), 1);
    let items = s
        .scan(&v2, b"x\0\0\x01", b"", 10, 12, false, false)
        .await
        .unwrap();
    assert!(items.is_empty());
}

fn lock_req(key: &[u8], start: u64, wait_ms: i64) -> PessimisticLockRequest {
    PessimisticLockRequest {
        keys: vec![key.to_vec()],
        should_not_exist: vec![],
        options: PessimisticLockOptions {
            start_ts: TimeStamp::new(start),
            for_update_ts: TimeStamp::new(start),
            primary: key.to_vec(),
            lock_ttl: 3000,
            ..Default::default()
        },
        wait_timeout_ms: wait_ms,
    }
}

#[tokio::test]
async fn pessimistic_lock_waits_for_the_holder_and_then_sees_its_commit() {
    let s = storage();
    s.pessimistic_lock(&ctx(), &lock_req(b"k", 10, 0)).await.unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.pessimistic_lock(&ctx(), &lock_req(b"k", 20, 1000)).await })
    };
    // Wait until the second request is registered as a waiter.
    for _ in 0..1000 {
        if s.lock_waiters() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(s.lock_waiters(), 1);
    s.pessimistic_rollback(&ctx(), &[b"k".to_vec()], 10, 10)
        .await
        .unwrap();
    let r = waiter.await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(s.lock_waiters(), 0);
}

#[tokio::test]
async fn lock_wait_times_out_with_the_lock_and_no_wait_fails_at_once() {
    let s = storage();
    s.pessimistic_lock(&ctx(), &lock_req(b"k", 10, 0)).await.unwrap();
    let e = s
        .pessimistic_lock(&ctx(), &lock_req(b"k", 20, -1))
        .await
        .unwrap_err();
    assert!(e.is_key_locked());
    let e = s
        .pessimistic_lock(&ctx(), &lock_req(b"k", 20, 20))
        .await
        .unwrap_err();
    assert!(e.is_key_locked());
    assert_eq!(s.lock_waiters(), 0);
}

#[tokio::test]
async fn deadlock_between_two_waiters_is_detected() {
    let s = storage();
    s.pessimistic_lock(&ctx(), &lock_req(b"a", 10, 0)).await.unwrap();
    s.pessimistic_lock(&ctx(), &lock_req(b"b", 20, 0)).await.unwrap();
    // 10 waits for b (held by 20)...
    let first = {
        let s = s.clone();
        let mut req = lock_req(b"b", 10, 1000);
        req.options.primary = b"a".to_vec();
        tokio::spawn(async move { s.pessimistic_lock(&ctx(), &req).await })
    };
    for _ in 0..1000 {
        if s.lock_waiters() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // ...so 20 waiting for a (held by 10) closes the cycle.
    let mut req = lock_req(b"a", 20, 1000);
    req.options.primary = b"b".to_vec();
    match key_error(s.pessimistic_lock(&ctx(), &req).await.unwrap_err()) {
        TxnError::Deadlock {
            lock_ts, lock_key, ..
        } => {
            assert_eq!((lock_ts, lock_key), (TimeStamp::new(10), b"a".to_vec()))
        }
        other => panic!("{other:?}"),
    }
    // The victim gives up; the survivor gets its lock.
    s.pessimistic_rollback(&ctx(), &[b"b".to_vec()], 20, 20)
        .await
        .unwrap();
    assert!(first.await.unwrap().is_ok());
}

#[tokio::test]
async fn async_commit_floor_covers_reads_and_the_tso() {
    let s = storage();
    // A read at 5000 raises the max read ts above the clock (1000).
    assert_eq!(s.get(&ctx(), b"k", 5000).await.unwrap(), None);
    let mut req = prewrite_req(vec![put(b"k", b"v")], b"k", 10);
    req.props.use_async_commit = true;
    req.props.secondaries = vec![];
    let r = s.prewrite(&ctx(), req.clone()).await.unwrap();
    assert_eq!(r.min_commit_ts, TimeStamp::new(5001));
    // A retried request reports the same floor.
    let r2 = s.prewrite(&ctx(), req.clone()).await.unwrap();
    assert_eq!(r2.min_commit_ts, r.min_commit_ts);
    // Retried after the transaction committed: the commit is reported, nothing is written.
    s.commit(&ctx(), &[b"k".to_vec()], 10, r.min_commit_ts.into_inner())
        .await
        .unwrap();
    let r3 = s.prewrite(&ctx(), req).await.unwrap();
    assert!(r3.errors.is_empty());
    assert_eq!(r3.min_commit_ts, r.min_commit_ts);
    // 1PC commits at once.
    let mut req = prewrite_req(vec![put(b"one", b"v")], b"one", 20);
    req.props.try_one_pc = true;
    let r = s.prewrite(&ctx(), req).await.unwrap();
    assert!(r.one_pc_commit_ts > TimeStamp::new(5000));
    assert_eq!(
        s.get(&ctx(), b"one", r.one_pc_commit_ts.into_inner())
            .await
            .unwrap(),
        Some(b"v".to_vec())
    );
    let mut again = prewrite_req(vec![put(b"one", b"v")], b"one", 20);
    again.props.try_one_pc = true;
    let r2 = s.prewrite(&ctx(), again).await.unwrap();
    assert_eq!(
        r2.one_pc_commit_ts, r.one_pc_commit_ts,
        "a retried 1PC reports its commit"
    );
}

#[tokio::test]
async fn resolve_lock_settles_a_whole_region_and_gc_and_delete_range_clean_it() {
    let s = storage();
    for i in 0..300u32 {
        let key = format!("k{i:04}").into_bytes();
        let r = s
            .prewrite(&ctx(), prewrite_req(vec![put(&key, b"v")], b"k0000", 10))
            .await
            .unwrap();
        assert!(r.errors.is_empty());
    }
    let other = s
        .prewrite(&ctx(), prewrite_req(vec![put(b"o", b"v")], b"o", 11))
        .await
        .unwrap();
    assert!(other.errors.is_empty());
    s.resolve_lock(&ctx(), &HashMap::from([(10, 20)]), &[])
        .await
        .unwrap();
    let locks = s.scan_lock(&ctx(), u64::MAX, b"", b"", 0).await.unwrap();
    assert_eq!(locks.len(), 1, "only the other transaction's lock is left");
    assert_eq!(s.get(&ctx(), b"k0299", 25).await.unwrap(), Some(b"v".to_vec()));
    // Roll back the other one by keys.
    s.resolve_lock(&ctx(), &HashMap::from([(11, 0)]), &[b"o".to_vec()])
        .await
        .unwrap();
    assert!(s
        .scan_lock(&ctx(), u64::MAX, b"", b"", 0)
        .await
        .unwrap()
        .is_empty());

    must_commit_txn(&s, &[(b"k0000", b"new")], 30, 31).await;
    let stats = s.gc_region(&ctx(), 40).await.unwrap();
    assert_eq!(stats.keys_scanned, 301);
    assert_eq!(stats.versions_removed, 2, "k0000's old version and o's rollback");
    assert_eq!(s.get(&ctx(), b"k0000", 41).await.unwrap(), Some(b"new".to_vec()));

    s.delete_range(&ctx(), b"k0100", b"k0200", false).await.unwrap();
    assert_eq!(s.get(&ctx(), b"k0150", 50).await.unwrap(), None);
    assert_eq!(s.get(&ctx(), b"k0200", 50).await.unwrap(), Some(b"v".to_vec()));
    s.unsafe_destroy_range(b"k0200", b"k0300").await.unwrap();
    assert_eq!(s.get(&ctx(), b"k0250", 50).await.unwrap(), None);
    assert_eq!(s.get(&ctx(), b"k0099", 50).await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn memory_locks_of_in_flight_async_prewrites_block_reads() {
    use txn_types::{mvcc_key, Lock, LockType};
    let s = storage();
    must_commit_txn(&s, &[(b"m", b"old")], 1, 2).await;
    let lock = Lock::new(LockType::Put, b"m".to_vec(), TimeStamp::new(5), 3000);
    let guard = s
        .concurrency_manager()
        .lock_keys(&[(mvcc_key::encode(b"m"), lock)]);
    assert!(s.get(&ctx(), b"m", 10).await.unwrap_err().is_key_locked());
    assert!(s
        .scan(&ctx(), b"", b"", 10, 10, false, false)
        .await
        .unwrap_err()
        .is_key_locked());
    let got = s.batch_get(&ctx(), &[b"m".to_vec()], 10).await.unwrap();
    assert!(got[0].1.as_ref().is_err_and(|e| e.is_key_locked()));
    // Reads before the lock's start are not blocked.
    assert_eq!(s.get(&ctx(), b"m", 4).await.unwrap(), Some(b"old".to_vec()));
    drop(guard);
    assert_eq!(s.get(&ctx(), b"m", 10).await.unwrap(), Some(b"old".to_vec()));
}

#[tokio::test]
async fn snapshot_reads_count_returned_keys_and_bytes() {
    let stats = crate::ReadStats::new();
    let s = storage().with_read_stats(stats.clone());
    must_commit_txn(&s, &[(b"k1", b"v1"), (b"k2", b"value2")], 10, 11).await;
    assert!(stats.take_all().is_empty(), "writes are not reads");
    s.get(&ctx(), b"k1", 20).await.unwrap();
    s.get(&ctx(), b"k1", 5).await.unwrap(); // before the commit: nothing returned
    assert_eq!(stats.take(1), crate::ReadFlow { keys: 1, bytes: 4 });
    s.batch_get(&ctx(), &[b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()], 20)
        .await
        .unwrap();
    assert_eq!(stats.take(1), crate::ReadFlow { keys: 2, bytes: 12 });
    s.scan(&ctx(), b"", b"", 10, 20, false, false).await.unwrap();
    s.scan(&ctx(), b"", b"", 10, 20, true, false).await.unwrap();
    assert_eq!(stats.take(1), crate::ReadFlow { keys: 4, bytes: 16 });
    // A key hidden by a lock returns no value and is not counted.
    let r = s
        .prewrite(&ctx(), prewrite_req(vec![put(b"k1", b"new")], b"k1", 30))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let items = s
        .batch_get(&ctx(), &[b"k1".to_vec(), b"k2".to_vec()], 40)
        .await
        .unwrap();
    assert!(items[0].1.is_err());
    assert_eq!(stats.take(1), crate::ReadFlow { keys: 1, bytes: 8 });
}

#[tokio::test]
async fn snapshot_reads_sample_the_stored_keys_they_covered() {
    use txn_types::memcomparable::encode_bytes;
    let stats = crate::ReadStats::new();
    let s = storage().with_read_stats(stats.clone());
    must_commit_txn(&s, &[(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3")], 10, 11).await;
    s.get(&ctx(), b"k2", 20).await.unwrap();
    s.scan(&ctx(), b"k2", b"", 10, 20, false, false).await.unwrap();
    let load = stats.take_load().remove(&1).expect("region 1 was read");
    assert_eq!(load.requests, 2);
    let ranges: Vec<(Vec<u8>, Vec<u8>)> = load.samples.into_iter().map(|s| (s.start, s.last)).collect();
    assert_eq!(
        ranges,
        vec![
            (encode_bytes(b"k2"), encode_bytes(b"k2")),
            (encode_bytes(b"k2"), encode_bytes(b"k3")),
        ]
    );
}
