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

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod load;
mod ttl_and_cf;

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
