//! TTL expiry and column families.

use super::*;

// ---------------------------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------------------------

async fn check_ttl(api: &str, c: &RawClient) {
    let p = format!("a/ttl/{api}/");
    let short = format!("{p}short");
    let long = format!("{p}long");
    let plain = format!("{p}plain");
    let batch_short = format!("{p}batch-short");
    let batch_plain = format!("{p}batch-plain");

    c.put_with_ttl(short.clone(), val(&short), 2)
        .await
        .expect("put_with_ttl 2s");
    c.put_with_ttl(long.clone(), val(&long), 3600)
        .await
        .expect("put_with_ttl 3600s");
    c.put(plain.clone(), val(&plain)).await.expect("put without ttl");
    c.batch_put_with_ttl(
        [
            (batch_short.clone(), val(&batch_short)),
            (batch_plain.clone(), val(&batch_plain)),
        ],
        [1, 0],
    )
    .await
    .expect("batch_put_with_ttl");

    let ttl = c.get_key_ttl_secs(long.clone()).await.expect("get_key_ttl long");
    assert!(
        matches!(ttl, Some(t) if (3500..=3600).contains(&t)),
        "[{api}] ttl of long key: {ttl:?}"
    );
    let ttl = c
        .get_key_ttl_secs(short.clone())
        .await
        .expect("get_key_ttl short");
    assert!(ttl.is_none_or(|t| t <= 2), "[{api}] ttl of 2 s key: {ttl:?}");
    let ttl = c
        .get_key_ttl_secs(plain.clone())
        .await
        .expect("get_key_ttl plain");
    assert_eq!(ttl, Some(0), "[{api}] ttl of a key without TTL");
    let ttl = c
        .get_key_ttl_secs(format!("{p}missing"))
        .await
        .expect("get_key_ttl missing");
    assert_eq!(ttl, None, "[{api}] ttl of a missing key");

    // Expiry, observed by polling (no sleep-and-assert).
    for k in [&short, &batch_short] {
        wait_until(
            Duration::from_secs(20),
            &format!("[{api}] {k} expires"),
            || async { c.get(k.clone()).await.expect("get").is_none() },
        )
        .await;
    }
    // Once expired, invisible to every read path; others unaffected.
    let all = vec![
        short.clone(),
        long.clone(),
        plain.clone(),
        batch_short.clone(),
        batch_plain.clone(),
    ];
    let got = c.batch_get(all).await.expect("batch_get after expiry");
    let mut want = expected(&[long.clone(), plain.clone(), batch_plain.clone()]);
    want.sort();
    assert_eq!(sorted_pairs(got), want, "[{api}] batch_get after expiry");
    let got = c
        .scan(range(&p, &format!("{p}\u{7f}")), 100)
        .await
        .expect("scan after expiry");
    assert_eq!(pairs(got), want, "[{api}] scan after expiry");
    let got = c
        .scan_keys(range(&p, &format!("{p}\u{7f}")), 100)
        .await
        .expect("scan_keys after expiry");
    let want_keys: Vec<String> = want.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(key_strings(got), want_keys, "[{api}] scan_keys after expiry");
    let ttl = c
        .get_key_ttl_secs(short.clone())
        .await
        .expect("get_key_ttl expired");
    assert_eq!(ttl, None, "[{api}] ttl of an expired key");

    // An expired key can be written again, and lives without TTL.
    c.put(short.clone(), "again".to_owned()).await.expect("put again");
    assert_eq!(get_str(c, &short).await.as_deref(), Some("again"));
    assert_eq!(c.get_key_ttl_secs(short.clone()).await.expect("ttl"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ttl_and_expiry_v1_and_v2() {
    let cluster = Cluster::start(1).await;
    // Both API versions concurrently: the waits for expiry overlap.
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;
    tokio::join!(check_ttl("v1", &v1), check_ttl("v2", &v2));
}

// ---------------------------------------------------------------------------------------------
// Column families
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_column_families() {
    let cluster = Cluster::start(1).await;

    // V1: default / lock / write are separate namespaces.
    let c = cluster.raw_v1().await;
    let write = c.with_cf(ColumnFamily::Write);
    let lock = c.with_cf(ColumnFamily::Lock);
    let k = "a/cf".to_owned();
    write
        .put(k.clone(), b"in-write".to_vec())
        .await
        .expect("put in write cf");
    assert_eq!(get_str(&c, &k).await, None, "write-cf key visible in default cf");
    assert_eq!(get_str(&lock, &k).await, None, "write-cf key visible in lock cf");
    assert_eq!(get_str(&write, &k).await.as_deref(), Some("in-write"));
    c.put(k.clone(), b"in-default".to_vec())
        .await
        .expect("put in default cf");
    assert_eq!(get_str(&write, &k).await.as_deref(), Some("in-write"));
    assert_eq!(get_str(&c, &k).await.as_deref(), Some("in-default"));
    let got = write.scan(range("a/", "a0"), 10).await.expect("scan write cf");
    assert_eq!(
        pairs(got),
        [(k.clone(), "in-write".to_owned())],
        "scan of write cf"
    );
    write.delete(k.clone()).await.expect("delete in write cf");
    assert_eq!(get_str(&write, &k).await, None);
    assert_eq!(
        get_str(&c, &k).await.as_deref(),
        Some("in-default"),
        "default cf after write-cf delete"
    );

    // V2: TiKV rejects non-default column families in API V2; if Atoll accepts them they must
    // at least be separate namespaces too.
    let c = cluster.raw_v2().await;
    let write = c.with_cf(ColumnFamily::Write);
    match write.put(k.clone(), b"in-write".to_vec()).await {
        Err(_) => {}
        Ok(()) => {
            assert_eq!(
                get_str(&c, &k).await,
                None,
                "v2 write-cf key visible in default cf"
            );
            assert_eq!(get_str(&write, &k).await.as_deref(), Some("in-write"));
        }
    }
    c.put(k.clone(), b"v2-default".to_vec()).await.expect("v2 put");
    assert_eq!(get_str(&c, &k).await.as_deref(), Some("v2-default"));
}
