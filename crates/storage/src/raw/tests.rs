//! Raw API unit tests over an in-memory kv seam holding one region.

use atoll_proto::kvrpcpb;

use super::*;
use crate::test_engine::TestEngine;
use txn_types::memcomparable;

fn storage(start: &[u8], end: &[u8]) -> RawStorage<TestEngine> {
    RawStorage::new(TestEngine::new(start, end))
}

fn v1() -> kvrpcpb::Context {
    kvrpcpb::Context {
        region_id: 1,
        ..Default::default()
    }
}

fn v2() -> kvrpcpb::Context {
    kvrpcpb::Context {
        region_id: 1,
        api_version: kvrpcpb::ApiVersion::V2 as i32,
        ..Default::default()
    }
}

fn keys_of(pairs: &[KvPair]) -> Vec<Vec<u8>> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

#[tokio::test]
async fn put_get_delete_v1() {
    let s = storage(b"", b"");
    let ctx = v1();
    assert_eq!(s.get(&ctx, "", b"k").await.expect("get"), None);
    s.put(&ctx, "", b"k".to_vec(), b"v".to_vec(), 0, false)
        .await
        .expect("put");
    assert_eq!(
        s.get(&ctx, "default", b"k").await.expect("get"),
        Some(b"v".to_vec())
    );
    assert_eq!(s.get(&ctx, "write", b"k").await.expect("get"), None);
    s.batch_delete(&ctx, "", &[b"k".to_vec()], false)
        .await
        .expect("delete");
    assert_eq!(s.get(&ctx, "", b"k").await.expect("get"), None);
    assert!(matches!(
        s.get(&ctx, "nope", b"k").await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn v2_keys_are_encoded_and_checked() {
    let s = storage(
        &memcomparable::encode_bytes(b"r\0\0\0"),
        &memcomparable::encode_bytes(b"r\0\0\x01"),
    );
    let ctx = v2();
    s.put(&ctx, "", b"r\0\0\0k1".to_vec(), b"v1".to_vec(), 0, false)
        .await
        .expect("put");
    s.put(&ctx, "", b"r\0\0\0k2".to_vec(), b"v2".to_vec(), 0, false)
        .await
        .expect("put");
    assert_eq!(
        s.get(&ctx, "", b"r\0\0\0k1").await.expect("get"),
        Some(b"v1".to_vec())
    );
    let all = s
        .scan(&ctx, "", b"r\0\0\0", b"", 10, false, false)
        .await
        .expect("scan");
    assert_eq!(keys_of(&all), vec![b"r\0\0\0k1".to_vec(), b"r\0\0\0k2".to_vec()]);
    assert!(matches!(
        s.get(&ctx, "", b"xk").await,
        Err(Error::InvalidKeyMode(_))
    ));
    assert!(matches!(
        s.get(&ctx, "write", b"r\0\0\0k1").await,
        Err(Error::InvalidInput(_))
    ));
    // A key of another keyspace is outside the region.
    match s.get(&ctx, "", b"r\0\0\x05k").await {
        Err(Error::Region(e)) => assert!(e.key_not_in_region.is_some()),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn batch_and_scan_both_ways() {
    let s = storage(b"b", b"y");
    let ctx = v1();
    let pairs: Vec<KvPair> = (0..10u8).map(|i| (vec![b'c', b'0' + i], vec![i])).collect();
    s.batch_put(&ctx, "", pairs.clone(), &[], false)
        .await
        .expect("batch put");
    let got = s
        .batch_get(&ctx, "", &[b"c3".to_vec(), b"zz0".to_vec(), b"c1".to_vec()])
        .await;
    // zz0 is outside the region.
    assert!(matches!(got, Err(Error::Region(_))));
    let got = s
        .batch_get(&ctx, "", &[b"c3".to_vec(), b"c-".to_vec(), b"c1".to_vec()])
        .await
        .expect("batch get");
    assert_eq!(got, vec![(b"c3".to_vec(), vec![3]), (b"c1".to_vec(), vec![1])]);
    let fwd = s
        .scan(&ctx, "", b"c2", b"c6", 3, false, false)
        .await
        .expect("scan");
    assert_eq!(
        keys_of(&fwd),
        vec![b"c2".to_vec(), b"c3".to_vec(), b"c4".to_vec()]
    );
    let rev = s
        .scan(&ctx, "", b"c6", b"c2", 10, true, true)
        .await
        .expect("scan");
    assert_eq!(
        keys_of(&rev),
        vec![b"c5".to_vec(), b"c4".to_vec(), b"c3".to_vec(), b"c2".to_vec()]
    );
    assert!(rev.iter().all(|(_, v)| v.is_empty()));
    let unbounded = s.scan(&ctx, "", b"", b"", 100, false, false).await.expect("scan");
    assert_eq!(unbounded.len(), 10);
    let rev_all = s.scan(&ctx, "", b"", b"", 2, false, true).await.expect("scan");
    assert_eq!(keys_of(&rev_all), vec![b"c9".to_vec(), b"c8".to_vec()]);
    let ranges = vec![
        kvrpcpb::KeyRange {
            start_key: b"c0".to_vec(),
            end_key: b"c2".to_vec(),
        },
        kvrpcpb::KeyRange {
            start_key: b"c8".to_vec(),
            end_key: vec![],
        },
    ];
    let multi = s
        .batch_scan(&ctx, "", &ranges, 1, false, false)
        .await
        .expect("batch scan");
    assert_eq!(keys_of(&multi), vec![b"c0".to_vec(), b"c8".to_vec()]);
    s.delete_range(&ctx, "", b"c1", b"c9")
        .await
        .expect("delete range");
    let left = s.scan(&ctx, "", b"", b"", 100, true, false).await.expect("scan");
    assert_eq!(keys_of(&left), vec![b"c0".to_vec(), b"c9".to_vec()]);
    assert!(s.delete_range(&ctx, "", b"c5", b"c1").await.is_err());
    assert!(s
        .scan(&ctx, "", b"", b"", MAX_SCAN_LIMIT + 1, false, false)
        .await
        .is_err());
}

#[tokio::test]
async fn ttl_expiry_hides_values_everywhere() {
    let s = storage(b"", b"");
    let ctx = v1();
    // Already expired: stored directly with an expiry in the past.
    let past = RawValue {
        value: b"old".to_vec(),
        expire_ts: Some(1),
    }
    .encode();
    s.write(
        &ctx,
        vec![Modify::Put {
            cf: CF_DEFAULT,
            key: b"gone".to_vec(),
            value: past,
        }],
    )
    .await
    .expect("w");
    s.put(&ctx, "", b"live".to_vec(), b"v".to_vec(), 1000, false)
        .await
        .expect("put");
    s.put(&ctx, "", b"forever".to_vec(), b"v".to_vec(), 0, false)
        .await
        .expect("put");
    assert_eq!(s.get(&ctx, "", b"gone").await.expect("get"), None);
    assert_eq!(s.get_key_ttl(&ctx, "", b"gone").await.expect("ttl"), None);
    let ttl = s
        .get_key_ttl(&ctx, "", b"live")
        .await
        .expect("ttl")
        .expect("exists");
    assert!(ttl > 990 && ttl <= 1000, "{ttl}");
    assert_eq!(s.get_key_ttl(&ctx, "", b"forever").await.expect("ttl"), Some(0));
    let all = s.scan(&ctx, "", b"", b"", 10, false, false).await.expect("scan");
    assert_eq!(keys_of(&all), vec![b"forever".to_vec(), b"live".to_vec()]);
    let got = s
        .batch_get(&ctx, "", &[b"gone".to_vec(), b"live".to_vec()])
        .await
        .expect("batch get");
    assert_eq!(keys_of(&got), vec![b"live".to_vec()]);
    // An expired key counts as absent for CAS.
    let out = s
        .compare_and_swap(&ctx, "", b"gone", None, b"new".to_vec(), 0)
        .await
        .expect("cas");
    assert!(out.succeed);
    assert_eq!(out.previous, None);
}

#[tokio::test]
async fn compare_and_swap() {
    let s = storage(b"", b"");
    let ctx = v1();
    let out = s
        .compare_and_swap(&ctx, "", b"k", None, b"1".to_vec(), 0)
        .await
        .expect("cas");
    assert_eq!(
        out,
        CasOutcome {
            succeed: true,
            previous: None
        }
    );
    let out = s
        .compare_and_swap(&ctx, "", b"k", None, b"2".to_vec(), 0)
        .await
        .expect("cas");
    assert_eq!(
        out,
        CasOutcome {
            succeed: false,
            previous: Some(b"1".to_vec())
        }
    );
    let out = s
        .compare_and_swap(&ctx, "", b"k", Some(b"9"), b"2".to_vec(), 0)
        .await
        .expect("cas");
    assert_eq!(
        out,
        CasOutcome {
            succeed: false,
            previous: Some(b"1".to_vec())
        }
    );
    let out = s
        .compare_and_swap(&ctx, "", b"k", Some(b"1"), b"2".to_vec(), 0)
        .await
        .expect("cas");
    assert_eq!(
        out,
        CasOutcome {
            succeed: true,
            previous: Some(b"1".to_vec())
        }
    );
    assert_eq!(s.get(&ctx, "", b"k").await.expect("get"), Some(b"2".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_are_atomic() {
    let s = storage(b"", b"");
    s.put(&v1(), "", b"n".to_vec(), 0u64.to_be_bytes().to_vec(), 0, false)
        .await
        .expect("put");
    let mut tasks = vec![];
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 25 {
                let cur = s.get(&v1(), "", b"n").await.expect("get").expect("exists");
                let next =
                    (u64::from_be_bytes(cur.as_slice().try_into().expect("8 bytes")) + 1).to_be_bytes();
                let out = s
                    .compare_and_swap(&v1(), "", b"n", Some(&cur), next.to_vec(), 0)
                    .await
                    .expect("cas");
                if out.succeed {
                    done += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let n = s.get(&v1(), "", b"n").await.expect("get").expect("exists");
    assert_eq!(u64::from_be_bytes(n.as_slice().try_into().expect("8 bytes")), 200);
}

#[tokio::test]
async fn limits_and_checksum() {
    let s = storage(b"", b"");
    let ctx = v1();
    let big = vec![b'k'; MAX_KEY_SIZE + 1];
    assert!(matches!(
        s.put(&ctx, "", big.clone(), b"v".to_vec(), 0, false).await,
        Err(Error::KeyTooLarge { .. })
    ));
    // As in TiKV only written and deleted keys (and delete-range bounds) are size-checked.
    let at_limit = vec![b'k'; MAX_KEY_SIZE];
    s.put(&ctx, "", at_limit.clone(), b"v".to_vec(), 0, false)
        .await
        .expect("a key of exactly the limit");
    assert_eq!(s.get(&ctx, "", &big).await.expect("get of a long key"), None);
    assert_eq!(
        s.get(&ctx, "", &at_limit).await.expect("get"),
        Some(b"v".to_vec())
    );
    assert!(matches!(
        s.batch_delete(&ctx, "", std::slice::from_ref(&big), false).await,
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        s.delete_range(&ctx, "", b"a", &big).await,
        Err(Error::KeyTooLarge { .. })
    ));
    // A Python client's "+infinity": 8 KiB + 1 bytes of 0xff as a scan's upper bound.
    let infinity = vec![0xff; MAX_KEY_SIZE + 1];
    let found = s
        .scan(&ctx, "", &infinity, b"", 10, false, true)
        .await
        .expect("reverse scan to +infinity");
    assert_eq!(found.len(), 1);
    s.batch_delete(&ctx, "", &[at_limit], false)
        .await
        .expect("delete a key of exactly the limit");
    assert!(matches!(
        s.put(&ctx, "", b"k".to_vec(), vec![0; MAX_VALUE_SIZE + 1], 0, false)
            .await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(s
        .batch_put(
            &ctx,
            "",
            vec![(b"a".to_vec(), vec![]), (b"b".to_vec(), vec![])],
            &[1, 2, 3],
            false
        )
        .await
        .is_err());
    let empty = s
        .checksum(&ctx, &[kvrpcpb::KeyRange::default()])
        .await
        .expect("checksum");
    assert_eq!(empty, Checksum::default());
    s.batch_put(
        &ctx,
        "",
        vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"22".to_vec())],
        &[],
        false,
    )
    .await
    .expect("put");
    let sum = s
        .checksum(&ctx, &[kvrpcpb::KeyRange::default()])
        .await
        .expect("checksum");
    let digest = |k: &[u8], v: &[u8]| {
        let mut d = Crc64::new();
        d.update(k);
        d.update(v);
        d.finish()
    };
    assert_eq!(
        sum,
        Checksum {
            checksum: digest(b"a", b"1") ^ digest(b"b", b"22"),
            total_kvs: 2,
            total_bytes: 5
        }
    );
    // Unknown region → region error.
    let other = kvrpcpb::Context {
        region_id: 9,
        ..Default::default()
    };
    assert!(matches!(s.get(&other, "", b"a").await, Err(Error::Region(_))));
}

#[tokio::test]
async fn reads_count_returned_keys_and_bytes_per_region() {
    let stats = crate::ReadStats::new();
    let s = storage(b"", b"").with_read_stats(stats.clone());
    let ctx = v1();
    for (k, v) in [(b"a", b"11"), (b"b", b"22"), (b"c", b"33")] {
        s.put(&ctx, "", k.to_vec(), v.to_vec(), 0, false)
            .await
            .expect("put");
    }
    assert!(stats.take_all().is_empty(), "writes are not reads");
    s.get(&ctx, "", b"a").await.expect("get");
    s.get(&ctx, "", b"zz").await.expect("get of a missing key");
    assert_eq!(stats.take(1), ReadFlow { keys: 1, bytes: 3 });
    s.batch_get(&ctx, "", &[b"a".to_vec(), b"x".to_vec(), b"c".to_vec()])
        .await
        .expect("batch get");
    assert_eq!(stats.take(1), ReadFlow { keys: 2, bytes: 6 });
    s.scan(&ctx, "", b"", b"", 10, false, false).await.expect("scan");
    s.scan(&ctx, "", b"z", b"b", 10, true, true)
        .await
        .expect("reverse key-only scan");
    // 3 pairs of 3 bytes, then b and c as keys only.
    assert_eq!(stats.take(1), ReadFlow { keys: 5, bytes: 11 });
    let ranges = [
        kvrpcpb::KeyRange {
            start_key: b"a".to_vec(),
            end_key: b"b".to_vec(),
        },
        kvrpcpb::KeyRange {
            start_key: b"c".to_vec(),
            end_key: vec![],
        },
    ];
    s.batch_scan(&ctx, "", &ranges, 10, false, false)
        .await
        .expect("batch scan");
    assert_eq!(stats.take_all()[&1], ReadFlow { keys: 2, bytes: 6 });
}

#[tokio::test]
async fn reads_sample_the_stored_keys_they_covered() {
    use crate::read_stats::KeySample;
    let stats = crate::ReadStats::new();
    let s = storage(b"", b"").with_read_stats(stats.clone());
    let ctx = v1();
    for k in [b"a", b"b", b"c", b"d"] {
        s.put(&ctx, "", k.to_vec(), b"v".to_vec(), 0, false)
            .await
            .expect("put");
    }
    let sample = |start: &[u8], last: &[u8]| KeySample {
        start: start.to_vec(),
        last: last.to_vec(),
    };
    s.get(&ctx, "", b"zz").await.expect("get of a missing key");
    s.batch_get(&ctx, "", &[b"c".to_vec(), b"a".to_vec()])
        .await
        .expect("batch get");
    s.scan(&ctx, "", b"b", b"", 2, false, false).await.expect("scan");
    s.scan(&ctx, "", b"", b"b", 10, true, true)
        .await
        .expect("reverse scan");
    let load = stats.take_load().remove(&1).expect("region 1 was read");
    // A miss is a request too; the flow only counts what was returned.
    assert_eq!(load.requests, 4);
    // Batch get a and c, scan b and c, then keys d, c and b only.
    assert_eq!(load.bytes, 4 + 4 + 3);
    assert_eq!(
        load.samples,
        vec![
            sample(b"zz", b"zz"),
            sample(b"a", b"c"),
            sample(b"b", b"c"),
            sample(b"b", b"d"),
        ]
    );
}
