//! A conformance suite every [`KvEngine`] must pass. Engines call [`run_all`] from a unit test
//! with a factory that opens a fresh, empty engine.

use crate::{
    EngineIterator, IterBounds, Iterable, KvEngine, Peekable, WriteBatch, CF_DEFAULT, CF_LOCK, CF_WRITE,
};

fn put(e: &impl KvEngine, cf: &'static str, k: &[u8], v: &[u8]) {
    let mut wb = WriteBatch::new();
    wb.put_cf(cf, k, v);
    e.write(&wb, false).expect("write");
}

fn keys_forward<I: EngineIterator>(mut it: I) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut ok = it.seek_to_first().expect("seek");
    while ok {
        out.push(it.key().to_vec());
        ok = it.next().expect("next");
    }
    out
}

fn keys_backward<I: EngineIterator>(mut it: I) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut ok = it.seek_to_last().expect("seek");
    while ok {
        out.push(it.key().to_vec());
        ok = it.prev().expect("prev");
    }
    out
}

/// Runs every check on fresh engines made by `new_engine`.
pub fn run_all<E: KvEngine>(new_engine: impl Fn() -> E) {
    point_ops(&new_engine());
    column_families_are_separate(&new_engine());
    batch_is_ordered_and_atomic(&new_engine());
    snapshot_isolation(&new_engine());
    iteration_and_bounds(&new_engine());
    seek_semantics(&new_engine());
    delete_range(&new_engine());
    unknown_cf_is_an_error(&new_engine());
}

fn point_ops<E: KvEngine>(e: &E) {
    assert_eq!(e.get_cf(CF_DEFAULT, b"a").expect("get"), None);
    put(e, CF_DEFAULT, b"a", b"1");
    assert_eq!(e.get_cf(CF_DEFAULT, b"a").expect("get"), Some(b"1".to_vec()));
    put(e, CF_DEFAULT, b"a", b"2");
    assert_eq!(e.get_cf(CF_DEFAULT, b"a").expect("get"), Some(b"2".to_vec()));
    put(e, CF_DEFAULT, b"", b"empty key");
    assert_eq!(
        e.get_cf(CF_DEFAULT, b"").expect("get"),
        Some(b"empty key".to_vec())
    );
    let mut wb = WriteBatch::new();
    wb.delete_cf(CF_DEFAULT, b"a");
    e.write(&wb, true).expect("write");
    assert_eq!(e.get_cf(CF_DEFAULT, b"a").expect("get"), None);
    e.sync().expect("sync");
}

fn column_families_are_separate<E: KvEngine>(e: &E) {
    put(e, CF_LOCK, b"k", b"lock");
    put(e, CF_WRITE, b"k", b"write");
    assert_eq!(e.get_cf(CF_DEFAULT, b"k").expect("get"), None);
    assert_eq!(e.get_cf(CF_LOCK, b"k").expect("get"), Some(b"lock".to_vec()));
    assert_eq!(e.get_cf(CF_WRITE, b"k").expect("get"), Some(b"write".to_vec()));
}

fn batch_is_ordered_and_atomic<E: KvEngine>(e: &E) {
    let mut wb = WriteBatch::new();
    wb.put_cf(CF_DEFAULT, b"x", b"1");
    wb.delete_cf(CF_DEFAULT, b"x");
    wb.put_cf(CF_DEFAULT, b"y", b"1");
    wb.put_cf(CF_DEFAULT, b"y", b"2");
    assert_eq!(wb.len(), 4);
    e.write(&wb, false).expect("write");
    assert_eq!(e.get_cf(CF_DEFAULT, b"x").expect("get"), None);
    assert_eq!(e.get_cf(CF_DEFAULT, b"y").expect("get"), Some(b"2".to_vec()));
    // A batch naming an unknown column family fails whole.
    let mut bad = WriteBatch::new();
    bad.put_cf(CF_DEFAULT, b"z", b"1");
    bad.put_cf("no-such-cf", b"z", b"1");
    assert!(e.write(&bad, false).is_err());
    assert_eq!(e.get_cf(CF_DEFAULT, b"z").expect("get"), None);
}

fn snapshot_isolation<E: KvEngine>(e: &E) {
    put(e, CF_DEFAULT, b"s", b"old");
    let snap = e.snapshot();
    put(e, CF_DEFAULT, b"s", b"new");
    put(e, CF_DEFAULT, b"t", b"new");
    assert_eq!(snap.get_cf(CF_DEFAULT, b"s").expect("get"), Some(b"old".to_vec()));
    assert_eq!(snap.get_cf(CF_DEFAULT, b"t").expect("get"), None);
    let it = snap.iterator_cf(CF_DEFAULT, IterBounds::all()).expect("iter");
    assert_eq!(keys_forward(it), vec![b"s".to_vec()]);
    assert_eq!(e.get_cf(CF_DEFAULT, b"s").expect("get"), Some(b"new".to_vec()));
}

fn iteration_and_bounds<E: KvEngine>(e: &E) {
    for k in [b"a1", b"a3", b"b1", b"b2", b"c1"] {
        put(e, CF_WRITE, k, k);
    }
    let snap = e.snapshot();
    let all = keys_forward(snap.iterator_cf(CF_WRITE, IterBounds::all()).expect("iter"));
    assert_eq!(all.len(), 5);
    let b = IterBounds::new(Some(b"a2".to_vec()), Some(b"b2".to_vec()));
    assert_eq!(
        keys_forward(snap.iterator_cf(CF_WRITE, b.clone()).expect("iter")),
        vec![b"a3".to_vec(), b"b1".to_vec()]
    );
    assert_eq!(
        keys_backward(snap.iterator_cf(CF_WRITE, b).expect("iter")),
        vec![b"b1".to_vec(), b"a3".to_vec()]
    );
    let mut seen = vec![];
    e.scan_cf(CF_WRITE, b"b", None, |k, v| {
        assert_eq!(k, v);
        seen.push(k.to_vec());
        Ok(seen.len() < 2)
    })
    .expect("scan");
    assert_eq!(seen, vec![b"b1".to_vec(), b"b2".to_vec()]);
}

fn seek_semantics<E: KvEngine>(e: &E) {
    for k in [b"k2", b"k4", b"k6"] {
        put(e, CF_LOCK, k, b"v");
    }
    let snap = e.snapshot();
    let mut it = snap
        .iterator_cf(
            CF_LOCK,
            IterBounds::new(Some(b"k3".to_vec()), Some(b"k6".to_vec())),
        )
        .expect("iter");
    assert!(it.seek(b"k1").expect("seek"));
    assert_eq!(it.key(), b"k4");
    assert!(it.seek(b"k4").expect("seek"));
    assert_eq!(it.key(), b"k4");
    assert_eq!(it.value(), b"v");
    assert!(!it.seek(b"k5").expect("seek"));
    assert!(!it.valid().expect("valid"));
    assert!(it.seek_for_prev(b"k9").expect("seek"));
    assert_eq!(it.key(), b"k4");
    assert!(!it.seek_for_prev(b"k3").expect("seek"));
    assert!(!it.prev().expect("prev") || it.valid().expect("valid"));
}

fn delete_range<E: KvEngine>(e: &E) {
    for k in [b"d1", b"d2", b"d3", b"d4"] {
        put(e, CF_DEFAULT, k, b"v");
    }
    let mut wb = WriteBatch::new();
    wb.delete_range_cf(CF_DEFAULT, b"d2", b"d4");
    e.write(&wb, false).expect("write");
    let left = keys_forward(
        e.iterator_cf(
            CF_DEFAULT,
            IterBounds::new(Some(b"d".to_vec()), Some(b"e".to_vec())),
        )
        .expect("iter"),
    );
    assert_eq!(left, vec![b"d1".to_vec(), b"d4".to_vec()]);
    assert!(e.approximate_size_cf(CF_DEFAULT).is_ok());
    assert!(e.approximate_size_range(CF_DEFAULT, b"d", b"e").is_ok());
    assert_eq!(e.approximate_size_range(CF_DEFAULT, b"e", b"d").expect("size"), 0);
    assert!(e.approximate_size_range("nope", b"d", b"e").is_err());
}

fn unknown_cf_is_an_error<E: KvEngine>(e: &E) {
    assert!(e.get_cf("nope", b"k").is_err());
    assert!(e.iterator_cf("nope", IterBounds::all()).is_err());
}
