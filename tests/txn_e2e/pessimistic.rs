//! Pessimistic transactions: get_for_update, lock_keys, delete, rollback, waiting for a lock,
//! deadlock detection.

use super::*;

async fn waiters(cluster: &Cluster) -> f64 {
    cluster
        .kv_metric(0, "tikv_lock_manager_waiter_count", "")
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pessimistic_lock_read_write_and_rollback() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    put_txn(&client, &[("p/k", val("old")), ("p/gone", val("gone"))]).await;

    let mut txn = client.begin_pessimistic().await.expect("begin");
    assert_eq!(
        txn.get_for_update("p/k".to_owned())
            .await
            .expect("get_for_update"),
        Some(val("old"))
    );
    txn.put("p/k".to_owned(), val("new")).await.expect("put");
    txn.lock_keys(vec!["p/other".to_owned()])
        .await
        .expect("lock_keys");
    txn.delete("p/gone".to_owned()).await.expect("delete");
    // Readers are not blocked by pessimistic locks and still see the old data.
    assert_eq!(read(&client, "p/k").await, Some(val("old")));
    txn.commit().await.expect("commit");
    assert_eq!(read(&client, "p/k").await, Some(val("new")));
    assert_eq!(read(&client, "p/gone").await, None);

    // Rollback releases every lock and changes nothing.
    let mut txn = client.begin_pessimistic().await.expect("begin");
    txn.get_for_update("p/k".to_owned())
        .await
        .expect("get_for_update");
    txn.put("p/k".to_owned(), val("never")).await.expect("put");
    txn.lock_keys(vec!["p/x".to_owned(), "p/y".to_owned()])
        .await
        .expect("lock_keys");
    txn.rollback().await.expect("rollback");
    assert_eq!(read(&client, "p/k").await, Some(val("new")));
    let ts = client.current_timestamp().await.expect("tso");
    let locks = client
        .scan_locks(&ts, "p/".to_owned().., 100)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "rollback leaves no locks: {locks:?}");

    // A heartbeat extends the primary lock's TTL.
    let mut txn = client.begin_pessimistic().await.expect("begin");
    txn.lock_keys(vec!["p/hb".to_owned()]).await.expect("lock_keys");
    let ttl = txn.send_heart_beat().await.expect("heartbeat");
    assert!(
        ttl > 20_000,
        "heartbeat advised more than the 20 s lock TTL: {ttl}"
    );
    txn.rollback().await.expect("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waits_and_deadlocks() {
    let cluster = Cluster::start(1).await;
    let client = cluster.txn_v2().await;
    put_txn(
        &client,
        &[("w/k", val("0")), ("d/a", val("a")), ("d/b", val("b"))],
    )
    .await;

    // t2 waits for t1's lock and gets it once t1 rolls back.
    let mut t1 = client.begin_pessimistic().await.expect("begin");
    t1.lock_keys(vec!["w/k".to_owned()]).await.expect("t1 locks");
    let waiter = {
        let client = cluster.txn_v2().await;
        tokio::spawn(async move {
            let mut t2 = client.begin_pessimistic().await.expect("begin");
            let got = t2.get_for_update("w/k".to_owned()).await;
            t2.rollback().await.expect("rollback t2");
            got
        })
    };
    wait_until(MUST_FINISH, "t2 waits for t1's lock", || async {
        waiters(&cluster).await >= 1.0
    })
    .await;
    t1.rollback().await.expect("rollback t1");
    let got = tokio::time::timeout(MUST_FINISH, waiter)
        .await
        .expect("t2 finishes")
        .expect("t2 task");
    assert_eq!(got.expect("t2 gets the lock"), Some(val("0")));

    // Deadlock: t3 holds a and asks for b; t4 holds b and asks for a. Whichever asks second
    // closes the cycle and gets the deadlock error; it gives up, and the other gets its lock.
    let mut t3 = client.begin_pessimistic().await.expect("begin");
    let mut t4 = client.begin_pessimistic().await.expect("begin");
    t3.lock_keys(vec!["d/a".to_owned()]).await.expect("t3 locks a");
    t4.lock_keys(vec!["d/b".to_owned()]).await.expect("t4 locks b");
    let attempt = |mut txn: Transaction, key: &'static str| {
        tokio::spawn(async move {
            match txn.lock_keys(vec![key.to_owned()]).await {
                Ok(()) => (Some(txn), None),
                Err(e) => {
                    txn.rollback().await.expect("the victim rolls back");
                    (None, Some(format!("{e:?}")))
                }
            }
        })
    };
    let t3_task = attempt(t3, "d/b");
    let t4_task = attempt(t4, "d/a");
    let (r3, r4) = tokio::time::timeout(MUST_FINISH, async { (t3_task.await, t4_task.await) })
        .await
        .expect("both answered");
    let (r3, r4) = (r3.expect("t3 task"), r4.expect("t4 task"));
    let (survivor, victim_err) = match (r3, r4) {
        ((Some(t), None), (None, Some(e))) | ((None, Some(e)), (Some(t), None)) => (t, e),
        (a, b) => panic!(
            "exactly one transaction must lose to a deadlock: t3 {:?}, t4 {:?}",
            a.1, b.1
        ),
    };
    assert!(victim_err.contains("deadlock: Some"), "{victim_err}");
    let mut survivor = survivor;
    survivor
        .put("d/a".to_owned(), val("survivor"))
        .await
        .expect("put");
    survivor.commit().await.expect("the survivor commits");
    assert_eq!(read(&client, "d/a").await, Some(val("survivor")));
    let deadlocks = cluster
        .kv_metric(0, "tikv_lock_manager_deadlock_detect_total", "")
        .await
        .unwrap_or(0.0);
    assert!(deadlocks >= 1.0, "deadlock counted: {deadlocks}");
}
