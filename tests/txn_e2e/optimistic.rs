//! Optimistic transactions: CRUD, scans in both directions and across regions, duplicate
//! inserts, write conflicts, async commit and 1PC.

use tikv_client::{TransactionOptions, Value};

use super::*;

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

fn pairs_of(it: impl Iterator<Item = tikv_client::KvPair>) -> Vec<(Vec<u8>, Value)> {
    it.map(|p| (Vec::<u8>::from(p.0), p.1)).collect()
}

fn expected(keys: &[String]) -> Vec<(Vec<u8>, Value)> {
    keys.iter().map(|k| (k.clone().into_bytes(), val(k))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_crud_and_scans() {
    let cluster = Cluster::start(1).await;
    // V1 first: its cross-region scans below would also see V2's keys (`x\0\0\0…` sorts
    // between `s/` and `y/`), while V2 scans never leave their keyspace.
    for (api, client) in [("v1", cluster.txn_v1().await), ("v2", cluster.txn_v2().await)] {
        // Put, read your own writes, commit, read back in a new transaction.
        let mut txn = client.begin_optimistic().await.expect("begin");
        txn.put("a/crud/1".to_owned(), val("1")).await.expect("put");
        txn.put("s/crud/2".to_owned(), val("2")).await.expect("put");
        assert_eq!(
            txn.get("a/crud/1".to_owned()).await.expect("get"),
            Some(val("1")),
            "[{api}]"
        );
        assert!(txn.commit().await.expect("commit").is_some(), "[{api}]");
        assert_eq!(read(&client, "a/crud/1").await, Some(val("1")), "[{api}]");

        // Update and delete, batch get.
        let mut txn = client.begin_optimistic().await.expect("begin");
        txn.put("a/crud/1".to_owned(), val("1b")).await.expect("put");
        txn.delete("s/crud/2".to_owned()).await.expect("delete");
        txn.commit().await.expect("commit");
        let mut txn = client.begin_optimistic().await.expect("begin");
        let got: Vec<_> = txn
            .batch_get(vec![
                "a/crud/1".to_owned(),
                "s/crud/2".to_owned(),
                "y/absent".to_owned(),
            ])
            .await
            .expect("batch_get")
            .map(|p| (Vec::<u8>::from(p.0), p.1))
            .collect();
        assert_eq!(got, vec![(b"a/crud/1".to_vec(), val("1b"))], "[{api}]");
        txn.rollback().await.expect("rollback read-only txn");

        // Scans: keys in three regions under V1, one keyspace under V2.
        let mut all = Vec::new();
        for p in ["a/scan/", "s/scan/", "y/scan/"] {
            all.extend(keys(p, 10));
        }
        let kvs: Vec<(&str, Vec<u8>)> = all.iter().map(|k| (k.as_str(), val(k))).collect();
        put_txn(&client, &kvs).await;
        let mut txn = client.begin_optimistic().await.expect("begin");
        let fwd = pairs_of(
            txn.scan("a/scan/".to_owned().."z".to_owned(), 100)
                .await
                .expect("scan"),
        );
        assert_eq!(fwd, expected(&all), "[{api}] forward scan across regions");
        let limited = pairs_of(
            txn.scan("a/scan/005".to_owned().."z".to_owned(), 7)
                .await
                .expect("scan"),
        );
        assert_eq!(limited, expected(&all[5..12]), "[{api}] scan with limit");
        let rev = pairs_of(
            txn.scan_reverse("a/scan/".to_owned().."z".to_owned(), 100)
                .await
                .expect("scan_reverse"),
        );
        let mut want = expected(&all);
        want.reverse();
        assert_eq!(rev, want, "[{api}] reverse scan across regions");
        let rev_limited = pairs_of(
            txn.scan_reverse("a/scan/".to_owned().."s/scan/003".to_owned(), 4)
                .await
                .expect("scan_reverse"),
        );
        assert_eq!(
            rev_limited,
            want[17..21].to_vec(),
            "[{api}] reverse scan with limit"
        );
        // The transaction's own buffered writes show in its scans.
        txn.delete("s/scan/000".to_owned()).await.expect("delete");
        let keys_only: Vec<Vec<u8>> = txn
            .scan_keys("s/scan/".to_owned().."s/scan/003".to_owned(), 10)
            .await
            .expect("scan_keys")
            .map(Vec::<u8>::from)
            .collect();
        assert_eq!(
            keys_only,
            vec![b"s/scan/001".to_vec(), b"s/scan/002".to_vec()],
            "[{api}]"
        );
        txn.rollback().await.expect("rollback");
        assert_eq!(
            read(&client, "s/scan/000").await,
            Some(val("s/scan/000")),
            "[{api}] rolled back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_insert_and_write_conflict_fail() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    put_txn(&client, &[("dup", val("dup"))]).await;

    let mut txn = client.begin_optimistic().await.expect("begin");
    txn.insert("dup".to_owned(), val("again"))
        .await
        .expect("buffered insert");
    let err = txn
        .commit()
        .await
        .expect_err("insert of an existing key must fail");
    assert!(format!("{err:?}").contains("already_exist: Some"), "{err:?}");
    abandon(txn).await;
    assert_eq!(read(&client, "dup").await, Some(val("dup")));
    // Insert of a new key works.
    let mut txn = client.begin_optimistic().await.expect("begin");
    txn.insert("fresh".to_owned(), val("fresh"))
        .await
        .expect("insert");
    txn.commit().await.expect("commit");
    assert_eq!(read(&client, "fresh").await, Some(val("fresh")));

    // Two transactions write the same key; the one that commits second loses.
    let mut t1 = client.begin_optimistic().await.expect("begin");
    let mut t2 = client.begin_optimistic().await.expect("begin");
    t1.put("contended".to_owned(), val("t1")).await.expect("put");
    t2.put("contended".to_owned(), val("t2")).await.expect("put");
    t1.commit().await.expect("first commit wins");
    let err = t2.commit().await.expect_err("second commit conflicts");
    assert!(format!("{err:?}").contains("conflict: Some"), "{err:?}");
    abandon(t2).await;
    assert_eq!(read(&client, "contended").await, Some(val("t1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commit_and_one_pc() {
    use tikv_client::TimestampExt;
    let cluster = Cluster::start(1).await;
    // Async commit across three regions (V1).
    let v1 = cluster.txn_v1().await;
    let keys = ["a/async", "s/async", "y/async"];
    let mut txn = v1
        .begin_with_options(TransactionOptions::new_optimistic().use_async_commit())
        .await
        .expect("begin");
    for k in keys {
        txn.put(k.to_owned(), val(k)).await.expect("put");
    }
    let commit_ts = txn
        .commit()
        .await
        .expect("async commit")
        .expect("commit ts")
        .version();
    // The commit ts is at least the largest max-read-ts the regions saw, so a read at any later
    // timestamp sees every key (the client commits the locks in the background; reads resolve them).
    for k in keys {
        assert_eq!(
            read(&v1, k).await,
            Some(val(k)),
            "{k} after async commit at {commit_ts}"
        );
    }

    // 1PC: a transaction in one region commits with its prewrite (V2: one keyspace, one region).
    let v2 = cluster.txn_v2().await;
    let before = v2.current_timestamp().await.expect("tso").version();
    let mut txn = v2
        .begin_with_options(TransactionOptions::new_optimistic().try_one_pc())
        .await
        .expect("begin");
    txn.put("one-pc/1".to_owned(), val("1")).await.expect("put");
    txn.put("one-pc/2".to_owned(), val("2")).await.expect("put");
    let ts = txn
        .commit()
        .await
        .expect("1pc commit")
        .expect("commit ts")
        .version();
    assert!(ts > before, "1PC commit ts {ts} after {before}");
    assert_eq!(read(&v2, "one-pc/1").await, Some(val("1")));
    assert_eq!(read(&v2, "one-pc/2").await, Some(val("2")));
    let locks = v2
        .scan_locks(
            &v2.current_timestamp().await.expect("tso"),
            "one-pc/".to_owned()..,
            100,
        )
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "1PC leaves no locks: {locks:?}");
}
