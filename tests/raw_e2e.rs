//! End-to-end tests of raw KV: the real `atoll-pd` and `atoll-kv` binaries on loopback, driven
//! by the real `tikv-client` 0.4 `RawClient`, in API V1 (`Config::default()`) and API V2
//! (`with_default_keyspace()`, keyspace `DEFAULT` = id 0).
//!
//! Where keys live. A fresh cluster has five regions, split at the memcomparable encodings of
//! `r\0\0\0`, `r\0\0\x01`, `x\0\0\0`, `x\0\0\x01`:
//!
//! | region | range (decoded)            | V1 keys used here | V2               |
//! |--------|----------------------------|-------------------|------------------|
//! | 1      | .. `r\0\0\0`               | `a/…`, `b/…`      |                  |
//! | 2      | `r\0\0\0` .. `r\0\0\x01`   |                   | all of keyspace 0 |
//! | 3      | `r\0\0\x01` .. `x\0\0\0`   | `s/…`, `t/…`      |                  |
//! | 4      | `x\0\0\0` .. `x\0\0\x01`   | (txn keyspace 0)  |                  |
//! | 5      | `x\0\0\x01` ..             | `y/…`             |                  |
//!
//! So V1 operations over `a/`, `s/` and `y/` keys cross regions; V2 raw data of keyspace 0 is
//! one region, and V2 scans stay inside the keyspace.
//!
//! Two quirks of `tikv-client` 0.4's V1 `scan` (client bugs, not server behaviour) shape the V1
//! scans below: with an unbounded end it stops after the first region it touches, and with a
//! bounded end that lies beyond the start of the last region it wraps around to the first
//! region and returns duplicates. Hence V1 cross-region scans use bounded ends before region 5
//! (`"a/".."t"`), and scans in region 5 use an unbounded end. Its reverse scan sends the
//! request to the region of the range's *lower* bound, so reverse scans stay inside one region.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use common::{memcomparable, unhex, wait_ok, wait_until, Cluster, PRESPLIT_REGIONS};
use rand::Rng;
use tikv_client::{BoundRange, ColumnFamily, Key, KvPair, RawClient};

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// `[from, to)`.
fn range(from: &str, to: &str) -> BoundRange {
    (from.to_owned()..to.to_owned()).into()
}

/// `[from, to]`.
fn range_incl(from: &str, to: &str) -> BoundRange {
    (from.to_owned()..=to.to_owned()).into()
}

/// `[from, ∞)`.
fn range_from(from: &str) -> BoundRange {
    (from.to_owned()..).into()
}

fn text(bytes: impl Into<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes.into()).into_owned()
}

/// Scan results as `(key, value)` strings, in the order returned.
fn pairs(kvs: Vec<KvPair>) -> Vec<(String, String)> {
    kvs.into_iter().map(|KvPair(k, v)| (text(k), text(v))).collect()
}

/// Scan results as `(key, value)` strings, sorted by key (for unordered answers).
fn sorted_pairs(kvs: Vec<KvPair>) -> Vec<(String, String)> {
    let mut v = pairs(kvs);
    v.sort();
    v
}

fn key_strings(keys: Vec<Key>) -> Vec<String> {
    keys.into_iter().map(text).collect()
}

fn val(key: &str) -> String {
    format!("val-{key}")
}

/// `(key, val(key))` for each key.
fn expected(keys: &[String]) -> Vec<(String, String)> {
    keys.iter().map(|k| (k.clone(), val(k))).collect()
}

async fn put_all(client: &RawClient, keys: &[String]) {
    client
        .batch_put(keys.iter().map(|k| (k.clone(), val(k))))
        .await
        .expect("batch_put");
}

async fn get_str(client: &RawClient, key: &str) -> Option<String> {
    client
        .get(key.to_owned())
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e:?}"))
        .map(text)
}

/// `{prefix}{i:02}` for `i` in `ids`.
fn numbered(prefix: &str, ids: impl IntoIterator<Item = usize>) -> Vec<String> {
    ids.into_iter().map(|i| format!("{prefix}{i:02}")).collect()
}

/// Both API versions against one cluster: `("v1", client)`, `("v2", client)`. V1 runs first, so
/// V1 scans never meet V2 data (which lives in region 2).
async fn both_apis(cluster: &Cluster) -> Vec<(&'static str, RawClient)> {
    vec![("v1", cluster.raw_v1().await), ("v2", cluster.raw_v2().await)]
}

// ---------------------------------------------------------------------------------------------
// put / get / delete
// ---------------------------------------------------------------------------------------------

async fn check_put_get_delete(api: &str, c: &RawClient) {
    // One key in each of the V1 regions 1, 3 and 5 (all in one region for V2).
    let keys = [
        format!("a/pgd/{api}"),
        format!("s/pgd/{api}"),
        format!("y/pgd/{api}"),
    ];
    for k in &keys {
        assert_eq!(get_str(c, k).await, None, "[{api}] {k} before any put");
        c.put(k.clone(), "first".to_owned()).await.expect("put");
        assert_eq!(
            get_str(c, k).await.as_deref(),
            Some("first"),
            "[{api}] {k} after put"
        );
        c.put(k.clone(), "second".to_owned()).await.expect("overwrite");
        assert_eq!(
            get_str(c, k).await.as_deref(),
            Some("second"),
            "[{api}] {k} after overwrite"
        );
    }
    for k in &keys {
        c.delete(k.clone()).await.expect("delete");
        assert_eq!(get_str(c, k).await, None, "[{api}] {k} after delete");
        // Deleting a missing key is not an error.
        c.delete(k.clone()).await.expect("delete of a missing key");
    }

    // Binary keys and values: NUL and 0xFF bytes, every byte value.
    let bin_key = [&[0u8, 0xFF, 0][..], b"bin-", api.as_bytes(), &[0xFF, 0]].concat();
    let bin_val: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    c.put(bin_key.clone(), bin_val.clone()).await.expect("put binary");
    assert_eq!(
        c.get(bin_key.clone()).await.expect("get binary"),
        Some(bin_val),
        "[{api}] binary"
    );

    // A large (256 KiB) value round-trips unchanged.
    let big: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let big_key = format!("a/big/{api}");
    c.put(big_key.clone(), big.clone())
        .await
        .expect("put 256 KiB value");
    assert_eq!(
        c.get(big_key).await.expect("get big"),
        Some(big),
        "[{api}] 256 KiB value"
    );

    // A never-written key in every region is absent.
    for k in ["a/never", "s/never", "y/never", "\u{0}"] {
        assert_eq!(get_str(c, k).await, None, "[{api}] {k:?} was never written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_put_get_delete_v1_and_v2() {
    let cluster = Cluster::start(1).await;
    for (api, c) in both_apis(&cluster).await {
        check_put_get_delete(api, &c).await;
    }
}

// ---------------------------------------------------------------------------------------------
// batch_put / batch_get / batch_delete
// ---------------------------------------------------------------------------------------------

async fn check_batch_ops(api: &str, c: &RawClient) {
    let mut keys = Vec::new();
    for p in ["a", "s", "y"] {
        keys.extend(numbered(&format!("{p}/batch/{api}/"), 0..20));
    }
    put_all(c, &keys).await;

    // batch_get of every key plus missing ones (in every region) returns exactly the written.
    let mut asked = keys.clone();
    asked.extend(["a/batch/missing", "s/batch/missing", "y/batch/missing"].map(str::to_owned));
    let got = c.batch_get(asked.clone()).await.expect("batch_get");
    let mut want = expected(&keys);
    want.sort();
    assert_eq!(sorted_pairs(got), want, "[{api}] batch_get after batch_put");

    // Point gets agree.
    for k in keys.iter().step_by(7) {
        assert_eq!(
            get_str(c, k).await,
            Some(val(k)),
            "[{api}] get {k} after batch_put"
        );
    }

    // batch_delete every even key (across all regions).
    let (even, odd): (Vec<String>, Vec<String>) = keys.iter().cloned().partition(|k| {
        let n: usize = k
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("numbered key");
        matches!(n % 2, 0)
    });
    c.batch_delete(even.clone()).await.expect("batch_delete");
    let got = c.batch_get(asked).await.expect("batch_get after batch_delete");
    let mut want = expected(&odd);
    want.sort();
    assert_eq!(sorted_pairs(got), want, "[{api}] batch_get after batch_delete");
    for k in even.iter().step_by(5) {
        assert_eq!(get_str(c, k).await, None, "[{api}] {k} after batch_delete");
    }

    // Overwrite by batch_put; a batch_get of only missing keys is empty.
    c.batch_put(odd.iter().map(|k| (k.clone(), format!("new-{k}"))))
        .await
        .expect("batch_put again");
    for k in odd.iter().step_by(4) {
        assert_eq!(
            get_str(c, k).await,
            Some(format!("new-{k}")),
            "[{api}] {k} after overwrite"
        );
    }
    let none = c.batch_get(even).await.expect("batch_get of deleted keys");
    assert!(
        none.is_empty(),
        "[{api}] deleted keys came back: {:?}",
        pairs(none)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_batch_put_get_delete_v1_and_v2() {
    let cluster = Cluster::start(1).await;
    for (api, c) in both_apis(&cluster).await {
        check_batch_ops(api, &c).await;
    }
}

// ---------------------------------------------------------------------------------------------
// scans
// ---------------------------------------------------------------------------------------------

/// Which PD region (by id) holds the raw (V1) key `key`, comparing with the boundaries PD
/// reports (the client compares V1 keys with them byte-wise, undecoded).
fn region_of(regions: &[serde_json::Value], key: &[u8]) -> u64 {
    regions
        .iter()
        .find(|r| {
            let start = unhex(r["start_key"].as_str().unwrap_or_default());
            let end = unhex(r["end_key"].as_str().unwrap_or_default());
            start.as_slice() <= key && (end.is_empty() || key < end.as_slice())
        })
        .and_then(|r| r["id"].as_u64())
        .unwrap_or_else(|| panic!("no region holds {key:?}: {regions:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_scans_v1_across_regions_and_v2_in_keyspace() {
    let cluster = Cluster::start(1).await;

    // PD pre-split at the keyspace-0 boundaries, encoded.
    let regions = cluster.pd_regions().await;
    assert_eq!(regions.len(), PRESPLIT_REGIONS, "regions: {regions:?}");
    let starts: Vec<Vec<u8>> = regions
        .iter()
        .map(|r| unhex(r["start_key"].as_str().unwrap_or_default()))
        .collect();
    for boundary in [&b"r\0\0\0"[..], b"r\0\0\x01", b"x\0\0\0", b"x\0\0\x01"] {
        assert!(
            starts.contains(&memcomparable(boundary)),
            "no region starts at enc({boundary:?}): {regions:?}"
        );
    }
    let (ra, rs, ry) = (
        region_of(&regions, b"a/"),
        region_of(&regions, b"s/"),
        region_of(&regions, b"y/"),
    );
    assert!(
        ra != rs && rs != ry && ra != ry,
        "a/, s/, y/ should be in different regions"
    );

    // ---- V1 ----
    let c = cluster.raw_v1().await;
    let a = numbered("a/", 0..10);
    let s = numbered("s/", 0..10);
    let y = numbered("y/", 0..10);
    for keys in [&a, &s, &y] {
        put_all(&c, keys).await;
    }
    let a_s: Vec<String> = a.iter().chain(&s).cloned().collect();

    // Forward across regions 1 -> 2 (empty) -> 3.
    let got = c.scan(range("a/", "t"), 100).await.expect("scan a/..t");
    assert_eq!(pairs(got), expected(&a_s), "v1 scan a/..t");
    // Limit counted across regions.
    let got = c.scan(range("a/", "t"), 15).await.expect("scan a/..t limit 15");
    assert_eq!(pairs(got), expected(&a_s[..15]), "v1 scan a/..t limit 15");
    // Start and end inside different regions.
    let got = c.scan(range("a/05", "s/03"), 100).await.expect("scan a/05..s/03");
    assert_eq!(pairs(got), expected(&a_s[5..13]), "v1 scan a/05..s/03");
    // Inclusive end.
    let got = c
        .scan(range_incl("a/03", "a/07"), 100)
        .await
        .expect("scan a/03..=a/07");
    assert_eq!(pairs(got), expected(&a[3..=7]), "v1 scan a/03..=a/07");
    // Keys only.
    let got = c.scan_keys(range("a/", "t"), 100).await.expect("scan_keys a/..t");
    assert_eq!(key_strings(got), a_s, "v1 scan_keys a/..t");
    let got = c
        .scan_keys(range("s/04", "t"), 3)
        .await
        .expect("scan_keys s/04..t limit 3");
    assert_eq!(key_strings(got), &s[4..7], "v1 scan_keys s/04..t limit 3");
    // The last region, unbounded end.
    let got = c.scan(range_from("y/"), 100).await.expect("scan y/..");
    assert_eq!(pairs(got), expected(&y), "v1 scan y/..");
    let got = c.scan(range_from("y/07"), 100).await.expect("scan y/07..");
    assert_eq!(pairs(got), expected(&y[7..]), "v1 scan y/07..");
    // Empty ranges.
    let got = c.scan(range("b", "c"), 10).await.expect("scan b..c");
    assert!(got.is_empty(), "v1 scan b..c: {:?}", pairs(got));
    let got = c.scan(range("a/05", "a/05"), 10).await.expect("scan a/05..a/05");
    assert!(got.is_empty(), "v1 empty range: {:?}", pairs(got));

    // Reverse, inside one region.
    let got = c
        .scan_reverse(range("a/02", "a/08"), 3)
        .await
        .expect("scan_reverse a/02..a/08 limit 3");
    assert_eq!(
        pairs(got),
        expected(&["a/07", "a/06", "a/05"].map(str::to_owned)),
        "v1 reverse limit 3"
    );
    let got = c
        .scan_reverse(range("a/02", "a/08"), 100)
        .await
        .expect("scan_reverse a/02..a/08");
    let want: Vec<String> = a[2..8].iter().rev().cloned().collect();
    assert_eq!(pairs(got), expected(&want), "v1 reverse a/02..a/08");
    let got = c
        .scan_reverse(range_incl("s/", "s/05"), 100)
        .await
        .expect("scan_reverse s/..=s/05");
    let want: Vec<String> = s[..=5].iter().rev().cloned().collect();
    assert_eq!(pairs(got), expected(&want), "v1 reverse s/..=s/05");
    let got = c
        .scan_keys_reverse(range_from("y/"), 4)
        .await
        .expect("scan_keys_reverse y/..");
    assert_eq!(
        key_strings(got),
        ["y/09", "y/08", "y/07", "y/06"],
        "v1 scan_keys_reverse y/.. limit 4"
    );

    // batch_scan over two ranges in two regions.
    let got = c
        .batch_scan([range("a/00", "a/03"), range("s/05", "s/07")], 10)
        .await
        .expect("batch_scan");
    let want = expected(&["a/00", "a/01", "a/02", "s/05", "s/06"].map(str::to_owned));
    assert_eq!(sorted_pairs(got), want, "v1 batch_scan");

    // ---- V2 ----
    let c = cluster.raw_v2().await;
    let k = numbered("k/", 0..30);
    put_all(&c, &k).await;

    // The whole keyspace holds exactly these keys (none of the V1 keys above).
    let got = c.scan(.., 100).await.expect("v2 scan ..");
    assert_eq!(pairs(got), expected(&k), "v2 scan ..");
    let got = c.scan(.., 7).await.expect("v2 scan .. limit 7");
    assert_eq!(pairs(got), expected(&k[..7]), "v2 scan .. limit 7");
    let got = c
        .scan(range("k/10", "k/20"), 100)
        .await
        .expect("v2 scan k/10..k/20");
    assert_eq!(pairs(got), expected(&k[10..20]), "v2 scan k/10..k/20");
    let got = c
        .scan(range_incl("k/10", "k/20"), 100)
        .await
        .expect("v2 scan k/10..=k/20");
    assert_eq!(pairs(got), expected(&k[10..=20]), "v2 scan k/10..=k/20");
    let got = c
        .scan_keys(range_from("k/25"), 100)
        .await
        .expect("v2 scan_keys k/25..");
    assert_eq!(key_strings(got), &k[25..], "v2 scan_keys k/25..");
    let got = c.scan(range_from("l"), 10).await.expect("v2 scan l..");
    assert!(got.is_empty(), "v2 scan l..: {:?}", pairs(got));

    let got = c
        .scan_reverse(range("k/05", "k/20"), 4)
        .await
        .expect("v2 scan_reverse k/05..k/20 limit 4");
    assert_eq!(
        pairs(got),
        expected(&["k/19", "k/18", "k/17", "k/16"].map(str::to_owned)),
        "v2 reverse"
    );
    let got = c.scan_reverse(.., 3).await.expect("v2 scan_reverse .. limit 3");
    assert_eq!(
        pairs(got),
        expected(&["k/29", "k/28", "k/27"].map(str::to_owned)),
        "v2 reverse .."
    );
    let got = c
        .scan_keys_reverse(range_incl("k/", "k/03"), 10)
        .await
        .expect("v2 scan_keys_reverse");
    assert_eq!(
        key_strings(got),
        ["k/03", "k/02", "k/01", "k/00"],
        "v2 scan_keys_reverse k/..=k/03"
    );

    let got = c
        .batch_scan([range("k/00", "k/03"), range("k/20", "k/22")], 10)
        .await
        .expect("v2 batch_scan");
    let want = expected(&["k/00", "k/01", "k/02", "k/20", "k/21"].map(str::to_owned));
    assert_eq!(sorted_pairs(got), want, "v2 batch_scan");
}

// ---------------------------------------------------------------------------------------------
// delete_range
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_delete_range_v1_and_v2() {
    let cluster = Cluster::start(1).await;

    // ---- V1: within one region, then across regions 3 -> 4 -> 5 ----
    let c = cluster.raw_v1().await;
    let a = numbered("a/dr/", 0..10);
    let s = numbered("s/dr/", 0..10);
    let y = numbered("y/dr/", 0..10);
    for keys in [&a, &s, &y] {
        put_all(&c, keys).await;
    }
    c.delete_range(range("a/dr/03", "a/dr/07"))
        .await
        .expect("delete_range a/dr/03..a/dr/07");
    let got = c.scan(range("a/dr/", "a/dr0"), 100).await.expect("scan a/dr/");
    let want: Vec<String> = [0, 1, 2, 7, 8, 9].iter().map(|&i| a[i].clone()).collect();
    assert_eq!(pairs(got), expected(&want), "v1 after delete_range in one region");

    c.delete_range(range("s/dr/05", "y/dr/05"))
        .await
        .expect("delete_range s/dr/05..y/dr/05");
    let got = c.scan(range("s/dr/", "s/dr0"), 100).await.expect("scan s/dr/");
    assert_eq!(
        pairs(got),
        expected(&s[..5]),
        "v1 region 3 after cross-region delete_range"
    );
    let got = c.batch_get(y.clone()).await.expect("batch_get y/dr/");
    assert_eq!(
        sorted_pairs(got),
        expected(&y[5..]),
        "v1 region 5 after cross-region delete_range"
    );
    let got = c.scan(range_from("y/dr/"), 100).await.expect("scan y/dr/..");
    assert_eq!(
        pairs(got),
        expected(&y[5..]),
        "v1 scan of region 5 after delete_range"
    );
    // Deleting an empty range is fine.
    c.delete_range(range("b", "c"))
        .await
        .expect("delete_range of an empty range");

    // ---- V2 ----
    let c = cluster.raw_v2().await;
    let k = numbered("dr/", 0..20);
    put_all(&c, &k).await;
    c.delete_range(range("dr/05", "dr/15"))
        .await
        .expect("v2 delete_range dr/05..dr/15");
    let got = c.scan(.., 100).await.expect("v2 scan");
    let want: Vec<String> = k[..5].iter().chain(&k[15..]).cloned().collect();
    assert_eq!(pairs(got), expected(&want), "v2 after delete_range dr/05..dr/15");
    c.delete_range(range_from("dr/18"))
        .await
        .expect("v2 delete_range dr/18..");
    let got = c.scan(.., 100).await.expect("v2 scan");
    let want: Vec<String> = k[..5].iter().chain(&k[15..18]).cloned().collect();
    assert_eq!(pairs(got), expected(&want), "v2 after delete_range dr/18..");

    // Deleting the whole keyspace leaves V1 data alone.
    c.delete_range(..).await.expect("v2 delete_range ..");
    let got = c.scan(.., 100).await.expect("v2 scan after delete_range ..");
    assert!(got.is_empty(), "v2 keyspace not empty: {:?}", pairs(got));
    let v1 = cluster.raw_v1().await;
    assert_eq!(
        get_str(&v1, "a/dr/00").await,
        Some(val("a/dr/00")),
        "V1 key after V2 delete_range .."
    );
    assert_eq!(
        get_str(&v1, "y/dr/09").await,
        Some(val("y/dr/09")),
        "V1 key after V2 delete_range .."
    );
}

// ---------------------------------------------------------------------------------------------
// compare_and_swap
// ---------------------------------------------------------------------------------------------

async fn check_cas(api: &str, c: &RawClient) {
    let atomic = c.with_atomic_for_cas();
    let k = format!("a/cas/{api}");
    let v = |s: &str| s.as_bytes().to_vec();

    // `None` previous = "must not exist".
    let r = atomic
        .compare_and_swap(k.clone(), None, v("one"))
        .await
        .expect("cas on missing");
    assert_eq!(r, (None, true), "[{api}] cas(None -> one) on a missing key");
    assert_eq!(get_str(c, &k).await.as_deref(), Some("one"));

    let r = atomic
        .compare_and_swap(k.clone(), None, v("two"))
        .await
        .expect("cas None on existing");
    assert_eq!(
        r,
        (Some(v("one")), false),
        "[{api}] cas(None -> two) on an existing key"
    );
    assert_eq!(get_str(c, &k).await.as_deref(), Some("one"));

    let r = atomic
        .compare_and_swap(k.clone(), Some(v("wrong")), v("three"))
        .await
        .expect("cas mismatch");
    assert_eq!(r, (Some(v("one")), false), "[{api}] cas(wrong -> three)");
    assert_eq!(get_str(c, &k).await.as_deref(), Some("one"));

    let r = atomic
        .compare_and_swap(k.clone(), Some(v("one")), v("four"))
        .await
        .expect("cas match");
    assert_eq!(r, (Some(v("one")), true), "[{api}] cas(one -> four)");
    assert_eq!(get_str(c, &k).await.as_deref(), Some("four"));

    // Expecting a value on a missing key fails and reports "not there".
    let missing = format!("a/cas-missing/{api}");
    let r = atomic
        .compare_and_swap(missing.clone(), Some(v("x")), v("y"))
        .await
        .expect("cas on missing");
    assert_eq!(r, (None, false), "[{api}] cas(x -> y) on a missing key");
    assert_eq!(get_str(c, &missing).await, None);

    // Atomic-mode put and delete interoperate with CAS.
    atomic.put(k.clone(), v("p")).await.expect("atomic put");
    let r = atomic
        .compare_and_swap(k.clone(), Some(v("p")), v("q"))
        .await
        .expect("cas after put");
    assert_eq!(r, (Some(v("p")), true), "[{api}] cas after atomic put");
    atomic.delete(k.clone()).await.expect("atomic delete");
    let r = atomic
        .compare_and_swap(k.clone(), None, v("r"))
        .await
        .expect("cas after delete");
    assert_eq!(r, (None, true), "[{api}] cas(None -> r) after atomic delete");

    // Contention: 6 tasks x 10 increments of one counter through CAS loops; none may be lost.
    let counter = format!("s/cas-counter/{api}");
    atomic
        .put(counter.clone(), b"0".to_vec())
        .await
        .expect("counter init");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let atomic = atomic.clone();
        let counter = counter.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                loop {
                    let cur = atomic.get(counter.clone()).await.expect("counter get");
                    let n: u64 = text(cur.clone().expect("counter exists"))
                        .parse()
                        .expect("number");
                    let next = (n + 1).to_string().into_bytes();
                    let (_, swapped) = atomic
                        .compare_and_swap(counter.clone(), cur, next)
                        .await
                        .expect("cas");
                    if swapped {
                        break;
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("cas task");
    }
    assert_eq!(
        get_str(c, &counter).await.as_deref(),
        Some("60"),
        "[{api}] lost CAS increments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_compare_and_swap_v1_and_v2() {
    let cluster = Cluster::start(1).await;
    for (api, c) in both_apis(&cluster).await {
        check_cas(api, &c).await;
    }
}

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

// ---------------------------------------------------------------------------------------------
// Three nodes
// ---------------------------------------------------------------------------------------------

async fn check_mixed_ops(api: &str, c: &RawClient) {
    let mut keys = Vec::new();
    for p in ["a", "s", "y"] {
        keys.extend(numbered(&format!("{p}/three/{api}/"), 0..10));
    }
    put_all(c, &keys).await;
    for k in &keys {
        assert_eq!(get_str(c, k).await, Some(val(k)), "[{api}] get {k}");
    }
    let got = c.batch_get(keys.clone()).await.expect("batch_get");
    let mut want = expected(&keys);
    want.sort();
    assert_eq!(sorted_pairs(got), want, "[{api}] batch_get");
    let (from, to) = if api == "v1" { ("a/", "t") } else { ("a/", "z") };
    let got = c.scan(range(from, to), 100).await.expect("scan");
    let want: Vec<String> = keys.iter().filter(|k| k.as_str() < to).cloned().collect();
    assert_eq!(pairs(got), expected(&want), "[{api}] scan {from}..{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_serves_raw_ops() {
    let cluster = Cluster::start(3).await;
    for (api, c) in both_apis(&cluster).await {
        check_mixed_ops(api, &c).await;
    }
}

/// Each region's peers' store ids, from PD's region listing.
fn peer_stores(region: &serde_json::Value) -> Vec<u64> {
    let mut stores: Vec<u64> = region["peers"]
        .as_array()
        .map(|peers| peers.iter().filter_map(|p| p["store_id"].as_u64()).collect())
        .unwrap_or_default();
    stores.sort_unstable();
    stores.dedup();
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs replication: conf change in raftstore and PD's replica checker (next issue)"]
async fn three_node_cluster_replicates_and_survives_losing_a_node() {
    let mut cluster = Cluster::start(3).await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;
    let keys: Vec<String> = ["a", "s", "y"]
        .iter()
        .flat_map(|p| numbered(&format!("{p}/repl/"), 0..10))
        .collect();
    put_all(&v1, &keys).await;
    put_all(&v2, &keys).await;

    // PD's scheduler gives every region three replicas on three different stores.
    wait_ok(
        Duration::from_secs(60),
        "every region has replicas on 3 stores",
        || async {
            let regions = cluster.pd_regions().await;
            let spread: Vec<(u64, Vec<u64>)> = regions
                .iter()
                .map(|r| (r["id"].as_u64().unwrap_or(0), peer_stores(r)))
                .collect();
            if regions.len() >= PRESPLIT_REGIONS && spread.iter().all(|(_, stores)| stores.len() == 3) {
                Ok(())
            } else {
                Err(format!("(region id, peer store ids): {spread:?}"))
            }
        },
    )
    .await;

    // Lose one node: the others elect leaders where needed and keep serving reads and writes.
    cluster.kill_kv(2);
    for (api, c) in [("v1", &v1), ("v2", &v2)] {
        for k in &keys {
            let got = wait_ok(
                Duration::from_secs(30),
                &format!("[{api}] get {k} with a node down"),
                || c.get(k.clone()),
            )
            .await;
            assert_eq!(got.map(text), Some(val(k)), "[{api}] {k} with a node down");
        }
        let k = format!("a/after-loss/{api}");
        wait_ok(
            Duration::from_secs(30),
            &format!("[{api}] put with a node down"),
            || c.put(k.clone(), val(&k)),
        )
        .await;
        assert_eq!(get_str(c, &k).await, Some(val(&k)));
    }
}

// ---------------------------------------------------------------------------------------------
// Status server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_status_server_serves_metrics_and_status() {
    let cluster = Cluster::start(1).await;
    let c = cluster.raw_v1().await;
    c.put("a/metrics".to_owned(), "x".to_owned()).await.expect("put");
    assert_eq!(get_str(&c, "a/metrics").await.as_deref(), Some("x"));

    assert!(cluster.kv_status_url(0).starts_with("http://127.0.0.1:"));
    let (status, body) = cluster.kv_status_get(0, "/metrics").await.expect("GET /metrics");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "/metrics: {body}");
    // Names a TiKV dashboard reads.
    for name in ["tikv_grpc_msg_duration_seconds", "tikv_raftstore_region_count"] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    let (status, body) = cluster.kv_status_get(0, "/status").await.expect("GET /status");
    assert_eq!(status, 200, "/status: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<serde_json::Value>(&body).expect("/status answers JSON");
}
