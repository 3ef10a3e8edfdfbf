//! Locks left behind: abandoned transactions resolved by readers and by `cleanup_locks`, a
//! heartbeat keeping a lock alive past its TTL, GC and `unsafe_destroy_range`.

use tikv_client::{TimestampExt, TransactionOptions};

use super::*;

/// `x\0\0\0` + `key`: the stored form of V2 transactional key `key` in keyspace 0.
fn v2(key: &str) -> Vec<u8> {
    let mut k = b"x\0\0\0".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// Waits until PD's clock is `ms` past the physical time of `ts`.
async fn wait_past(client: &TransactionClient, ts: u64, ms: u64) {
    wait_until(MUST_FINISH, "time passes", || async {
        let now = client.current_timestamp().await.expect("tso").version();
        (now >> 18) > (ts >> 18) + ms
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transactions_are_resolved() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    let mut manual = Manual::connect(&cluster).await;
    put_txn(
        &client,
        &[("ab/rolled", val("before")), ("ab/committed", val("before"))],
    )
    .await;

    // 1. Prewritten, never committed, TTL expired: a reader rolls it back and sees the old value.
    let start = client.current_timestamp().await.expect("tso").version();
    let (p, s) = (v2("ab/rolled"), v2("ab/rolled-2"));
    manual.prewrite(&[&p, &s], &p, start, 100).await;
    wait_past(&client, start, 200).await;
    assert_eq!(read(&client, "ab/rolled").await, Some(val("before")));
    assert_eq!(read(&client, "ab/rolled-2").await, None);
    // The primary is rolled back for good: a late commit fails.
    let late = client.current_timestamp().await.expect("tso").version();
    let resp = manual.commit(&[&p], start, late).await;
    assert!(resp.error.is_some(), "commit after rollback must fail: {resp:?}");

    // 2. Primary committed, secondary still locked: a reader commits the secondary.
    let start = client.current_timestamp().await.expect("tso").version();
    let (p, s) = (v2("ab/committed"), v2("ab/committed-2"));
    manual.prewrite(&[&p, &s], &p, start, 100).await;
    let commit_ts = client.current_timestamp().await.expect("tso").version();
    let resp = manual.commit(&[&p], start, commit_ts).await;
    assert!(resp.error.is_none() && resp.region_error.is_none(), "{resp:?}");
    assert_eq!(
        read(&client, "ab/committed-2").await,
        Some(b"from an abandoned txn".to_vec())
    );
    assert_eq!(
        read(&client, "ab/committed").await,
        Some(b"from an abandoned txn".to_vec())
    );

    // 3. Locks nobody reads: cleanup_locks finds and resolves them.
    let start = client.current_timestamp().await.expect("tso").version();
    let keys: Vec<Vec<u8>> = (0..5).map(|i| v2(&format!("ab/cleanup/{i}"))).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    manual.prewrite(&refs, refs[0], start, 100).await;
    wait_past(&client, start, 200).await;
    let safepoint = client.current_timestamp().await.expect("tso");
    let locks = client
        .scan_locks(&safepoint, "ab/".to_owned().., 100)
        .await
        .expect("scan_locks");
    assert_eq!(locks.len(), 5, "{locks:?}");
    client
        .cleanup_locks("ab/".to_owned().., &safepoint, Default::default())
        .await
        .expect("cleanup_locks");
    let locks = client
        .scan_locks(&safepoint, "ab/".to_owned().., 100)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "{locks:?}");
    assert_eq!(read(&client, "ab/cleanup/0").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_a_lock_alive_past_its_ttl() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    let mut manual = Manual::connect(&cluster).await;
    let start = client.current_timestamp().await.expect("tso").version();
    let p = v2("hb/primary");
    manual.prewrite(&[&p], &p, start, 300).await;
    assert_eq!(manual.heart_beat(&p, start, 60_000).await, 60_000);
    wait_past(&client, start, 600).await;
    // A reader finds the lock alive (the TTL was 300 ms, the heartbeat made it 60 s): it can
    // neither roll it back nor push it (the lock carries no min_commit_ts, as tikv-client
    // 0.4 writes them), so it gives up with the lock once its backoff is spent.
    let ts = client.current_timestamp().await.expect("tso");
    let mut snap = client.snapshot(ts, TransactionOptions::new_optimistic());
    let err = tokio::time::timeout(MUST_FINISH, snap.get("hb/primary".to_owned()))
        .await
        .expect("the read answers")
        .expect_err("the live lock blocks the read");
    assert!(format!("{err:?}").contains("ResolveLockError"), "{err:?}");
    let locks = client
        .scan_locks(
            &client.current_timestamp().await.expect("tso"),
            "hb/".to_owned()..,
            10,
        )
        .await
        .expect("scan_locks");
    assert_eq!(locks.len(), 1, "the lock survived: {locks:?}");
    // The owner commits long after the original TTL.
    let commit_ts = client.current_timestamp().await.expect("tso").version();
    let resp = manual.commit(&[&p], start, commit_ts).await;
    assert!(resp.error.is_none() && resp.region_error.is_none(), "{resp:?}");
    assert_eq!(
        read(&client, "hb/primary").await,
        Some(b"from an abandoned txn".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_and_unsafe_destroy_range() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    put_txn(&client, &[("gc/k", val("v1"))]).await;
    let between = client.current_timestamp().await.expect("tso");
    put_txn(&client, &[("gc/k", val("v2"))]).await;
    // Before GC, the old version is readable at an old timestamp.
    let mut snap = client.snapshot(between.clone(), TransactionOptions::new_optimistic());
    assert_eq!(snap.get("gc/k".to_owned()).await.expect("get"), Some(val("v1")));

    let safepoint = client.current_timestamp().await.expect("tso");
    assert!(
        client.gc(safepoint.clone()).await.expect("gc"),
        "PD took the safe point"
    );
    let deleted = || async {
        cluster
            .kv_metric(0, "tikv_gcworker_gc_keys", "tag=\"deleted\"")
            .await
            .unwrap_or(0.0)
    };
    wait_until(
        MUST_FINISH,
        "the node's GC worker removes old versions",
        || async { deleted().await >= 1.0 },
    )
    .await;
    // The newest version stays; the one it hid is gone.
    assert_eq!(read(&client, "gc/k").await, Some(val("v2")));
    let mut snap = client.snapshot(between, TransactionOptions::new_optimistic());
    assert_eq!(snap.get("gc/k".to_owned()).await.expect("get"), None);

    // unsafe_destroy_range removes data and locks of a range on every node.
    let keys: Vec<String> = (0..20).map(|i| format!("udr/{i:02}")).collect();
    let kvs: Vec<(&str, Vec<u8>)> = keys.iter().map(|k| (k.as_str(), val(k))).collect();
    put_txn(&client, &kvs).await;
    put_txn(&client, &[("udr0-outside", val("kept"))]).await;
    client
        .unsafe_destroy_range("udr/".to_owned().."udr0".to_owned())
        .await
        .expect("unsafe_destroy_range");
    for k in &keys {
        assert_eq!(read(&client, k).await, None, "{k}");
    }
    assert_eq!(read(&client, "udr0-outside").await, Some(val("kept")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_resolves_locks_before_it_advances_the_gc_safe_point() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    let mut manual = Manual::connect(&cluster).await;
    // A transaction committed its primary, then its client died: the secondary stays locked.
    let start = client.current_timestamp().await.expect("tso").version();
    let (p, s) = (v2("gcr/primary"), v2("gcr/secondary"));
    manual.prewrite(&[&p, &s], &p, start, 60_000).await;
    let commit_ts = client.current_timestamp().await.expect("tso").version();
    let resp = manual.commit(&[&p], start, commit_ts).await;
    assert!(resp.error.is_none() && resp.region_error.is_none(), "{resp:?}");
    // A newer version hides the primary's commit record from GC's point of view.
    put_txn(&client, &[("gcr/primary", val("newer"))]).await;

    // Advancing the safe point past the lock must resolve it first (as committed).
    let now = client.current_timestamp().await.expect("tso").version();
    let (status, body) = common::http_post(
        &cluster.pd_endpoint(),
        "/pd/api/v1/gc/safepoint",
        &format!("{{\"safe_point\": {now}}}"),
    )
    .await
    .expect("POST gc/safepoint");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ts = client.current_timestamp().await.expect("tso");
    let locks = client
        .scan_locks(&ts, "gcr/".to_owned().., 10)
        .await
        .expect("scan_locks");
    assert!(
        locks.is_empty(),
        "PD resolved the lock before advancing: {locks:?}"
    );
    wait_until(MUST_FINISH, "the node's GC worker runs", || async {
        cluster
            .kv_metric(0, "tikv_gcworker_autogc_safe_point", "")
            .await
            .unwrap_or(0.0)
            >= now as f64
    })
    .await;
    assert_eq!(
        read(&client, "gcr/secondary").await,
        Some(b"from an abandoned txn".to_vec())
    );
    assert_eq!(read(&client, "gcr/primary").await, Some(val("newer")));
}
