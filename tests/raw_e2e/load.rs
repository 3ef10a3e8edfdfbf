//! The 100k-key loads and V1/V2 key-space isolation.

use super::*;

// ---------------------------------------------------------------------------------------------
// 100k-key load
// ---------------------------------------------------------------------------------------------

const LOAD_KEYS: usize = 100_000;
const LOAD_CHUNK: usize = 2_000;
const LOAD_IN_FLIGHT: usize = 4;
const SCAN_PAGE: u32 = 10_000;

fn load_value(i: usize) -> String {
    format!("value-{i:06}-{}", "x".repeat(i % 17))
}

/// Loads `LOAD_KEYS` keys (`key(i)` sorts in `i` order) with chunked, concurrent batch_puts,
/// then reads them back exactly with paged scans over `[from, to)`, spot gets and a batch_get.
async fn load_and_verify(api: &str, c: &RawClient, key: impl Fn(usize) -> String, from: &str, to: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk_start in (0..LOAD_KEYS).step_by(LOAD_CHUNK) {
        if tasks.len() >= LOAD_IN_FLIGHT {
            tasks.join_next().await.expect("a task").expect("load task");
        }
        let pairs: Vec<(String, String)> = (chunk_start..(chunk_start + LOAD_CHUNK).min(LOAD_KEYS))
            .map(|i| (key(i), load_value(i)))
            .collect();
        let c = c.clone();
        tasks.spawn(async move {
            let first = pairs[0].0.clone();
            c.batch_put(pairs)
                .await
                .unwrap_or_else(|e| panic!("batch_put chunk at {first}: {e:?}"));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("load task");
    }

    // Paged scans: every key exactly once, in order, with its value.
    let mut next = 0usize;
    let mut start = from.as_bytes().to_vec();
    loop {
        let bounds = (
            Bound::Included(start.clone()),
            Bound::Excluded(to.as_bytes().to_vec()),
        );
        let page = c.scan(bounds, SCAN_PAGE).await.expect("scan page");
        let n = page.len();
        for KvPair(k, v) in page {
            let k: Vec<u8> = k.into();
            assert!(
                next < LOAD_KEYS,
                "[{api}] scan returned extra key {}",
                text(k.clone())
            );
            assert_eq!(text(k.clone()), key(next), "[{api}] scan position {next}");
            assert_eq!(text(v), load_value(next), "[{api}] value of {}", key(next));
            next += 1;
            start = [k, vec![0]].concat();
        }
        if n < SCAN_PAGE as usize {
            break;
        }
    }
    assert_eq!(next, LOAD_KEYS, "[{api}] keys found by paged scans");

    // Spot gets and one batch_get of random keys.
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let i = rng.gen_range(0..LOAD_KEYS);
        assert_eq!(
            get_str(c, &key(i)).await,
            Some(load_value(i)),
            "[{api}] get {}",
            key(i)
        );
    }
    let ids: Vec<usize> = (0..1000).map(|_| rng.gen_range(0..LOAD_KEYS)).collect();
    let got = c.batch_get(ids.iter().map(|&i| key(i))).await.expect("batch_get");
    let got: BTreeMap<String, String> = pairs(got).into_iter().collect();
    for &i in &ids {
        assert_eq!(
            got.get(&key(i)),
            Some(&load_value(i)),
            "[{api}] batch_get {}",
            key(i)
        );
    }
    assert_eq!(
        get_str(c, &key(LOAD_KEYS)).await,
        None,
        "[{api}] key past the load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_load_100k_keys_v1_across_regions() {
    let cluster = Cluster::start(1).await;
    let c = cluster.raw_v1().await;
    // First half in region 1 (`b/`), second half in region 3 (`t/`).
    let key = |i: usize| format!("{}/{i:06}", if i < LOAD_KEYS / 2 { "b" } else { "t" });
    load_and_verify("v1", &c, key, "b/", "u").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_load_100k_keys_v2() {
    let cluster = Cluster::start(1).await;
    let c = cluster.raw_v2().await;
    load_and_verify("v2", &c, |i| format!("bulk/{i:06}"), "bulk/", "bulk0").await;
}

// ---------------------------------------------------------------------------------------------
// V1 / V2 isolation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_v1_and_v2_key_spaces_are_isolated() {
    let cluster = Cluster::start(1).await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;

    // The same user key in both: two different entries.
    v1.put("k".to_owned(), "from-v1".to_owned())
        .await
        .expect("v1 put k");
    v2.put("k".to_owned(), "from-v2".to_owned())
        .await
        .expect("v2 put k");
    assert_eq!(get_str(&v1, "k").await.as_deref(), Some("from-v1"));
    assert_eq!(get_str(&v2, "k").await.as_deref(), Some("from-v2"));
    v2.delete("k".to_owned()).await.expect("v2 delete k");
    assert_eq!(get_str(&v2, "k").await, None);
    assert_eq!(
        get_str(&v1, "k").await.as_deref(),
        Some("from-v1"),
        "v2 delete removed the v1 key"
    );

    // A key written through one API is absent through the other.
    v2.put("only-v2".to_owned(), "x".to_owned())
        .await
        .expect("v2 put");
    assert_eq!(get_str(&v1, "only-v2").await, None, "v2 key visible to v1");
    v1.put("only-v1".to_owned(), "y".to_owned())
        .await
        .expect("v1 put");
    assert_eq!(get_str(&v2, "only-v1").await, None, "v1 key visible to v2");
    let got = v1
        .batch_get(["only-v2".to_owned(), "k".to_owned()])
        .await
        .expect("v1 batch_get");
    assert_eq!(pairs(got), [("k".to_owned(), "from-v1".to_owned())]);
    let got = v2
        .batch_get(["only-v1".to_owned(), "only-v2".to_owned()])
        .await
        .expect("v2 batch_get");
    assert_eq!(pairs(got), [("only-v2".to_owned(), "x".to_owned())]);

    // Scans: V2 sees only its keyspace; a V1 scan of the user-key range sees only V1 keys.
    let got = v2.scan(.., 100).await.expect("v2 scan");
    assert_eq!(pairs(got), [("only-v2".to_owned(), "x".to_owned())], "v2 scan");
    let got = v1.scan(range("k", "p"), 100).await.expect("v1 scan");
    assert_eq!(
        pairs(got),
        [
            ("k".to_owned(), "from-v1".to_owned()),
            ("only-v1".to_owned(), "y".to_owned())
        ],
        "v1 scan"
    );
}
