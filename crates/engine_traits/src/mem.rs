//! An in-memory engine for unit tests. Never used on a served path.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{
    EngineIterator, Error, IterBounds, Iterable, KvEngine, Modify, Peekable, Result, Snapshot, WriteBatch,
    ALL_CFS,
};

type Cf = Arc<BTreeMap<Vec<u8>, Vec<u8>>>;

/// An engine keeping each column family in a copy-on-write ordered map.
#[derive(Clone)]
pub struct MemEngine {
    cfs: Arc<RwLock<HashMap<&'static str, Cf>>>,
}

impl Default for MemEngine {
    fn default() -> Self {
        MemEngine::new()
    }
}

impl MemEngine {
    pub fn new() -> MemEngine {
        let cfs = ALL_CFS.iter().map(|cf| (*cf, Cf::default())).collect();
        MemEngine {
            cfs: Arc::new(RwLock::new(cfs)),
        }
    }
}

/// A frozen copy of every column family.
#[derive(Clone)]
pub struct MemSnapshot {
    cfs: HashMap<&'static str, Cf>,
}

fn cf_of<'a>(cfs: &'a HashMap<&'static str, Cf>, cf: &str) -> Result<&'a Cf> {
    cfs.get(cf).ok_or_else(|| Error::UnknownCf(cf.to_owned()))
}

impl Peekable for MemSnapshot {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(cf_of(&self.cfs, cf)?.get(key).cloned())
    }
}

impl Iterable for MemSnapshot {
    type Iter<'a> = MemIterator<'a>;
    fn iterator_cf(&self, cf: &str, bounds: IterBounds) -> Result<MemIterator<'_>> {
        Ok(MemIterator {
            map: cf_of(&self.cfs, cf)?,
            bounds,
            cur: None,
        })
    }
}

impl Snapshot for MemSnapshot {}

impl Peekable for MemEngine {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(cf_of(&self.cfs.read(), cf)?.get(key).cloned())
    }
}

impl Iterable for MemEngine {
    type Iter<'a> = OwnedMemIterator;
    fn iterator_cf(&self, cf: &str, bounds: IterBounds) -> Result<OwnedMemIterator> {
        let map = cf_of(&self.cfs.read(), cf)?.clone();
        Ok(OwnedMemIterator {
            map,
            bounds,
            cur: None,
        })
    }
}

impl KvEngine for MemEngine {
    type Snap = MemSnapshot;

    fn snapshot(&self) -> MemSnapshot {
        MemSnapshot {
            cfs: self.cfs.read().clone(),
        }
    }

    fn write(&self, batch: &WriteBatch, _sync: bool) -> Result<()> {
        let mut cfs = self.cfs.write();
        for op in batch.ops() {
            let cf = match op {
                Modify::Put { cf, .. } | Modify::Delete { cf, .. } | Modify::DeleteRange { cf, .. } => cf,
            };
            if !cfs.contains_key(cf) {
                return Err(Error::UnknownCf((*cf).to_owned()));
            }
        }
        for op in batch.ops() {
            match op {
                Modify::Put { cf, key, value } => {
                    if let Some(m) = cfs.get_mut(cf) {
                        Arc::make_mut(m).insert(key.clone(), value.clone());
                    }
                }
                Modify::Delete { cf, key } => {
                    if let Some(m) = cfs.get_mut(cf) {
                        Arc::make_mut(m).remove(key);
                    }
                }
                Modify::DeleteRange { cf, start, end } => {
                    if let Some(m) = cfs.get_mut(cf) {
                        if start < end {
                            let m = Arc::make_mut(m);
                            let doomed: Vec<Vec<u8>> = m
                                .range(start.clone()..end.clone())
                                .map(|(k, _)| k.clone())
                                .collect();
                            for k in doomed {
                                m.remove(&k);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn approximate_size_range(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<u64> {
        let cfs = self.cfs.read();
        let map = cf_of(&cfs, cf)?;
        if start >= end {
            return Ok(0);
        }
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }

    fn approximate_size_cf(&self, cf: &str) -> Result<u64> {
        let cfs = self.cfs.read();
        Ok(cf_of(&cfs, cf)?
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

/// Cursor logic over an ordered map, shared by the borrowed and owned iterators.
fn position(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    bounds: &IterBounds,
    from: Bound<&[u8]>,
    forward: bool,
) -> Option<Vec<u8>> {
    let lower: Bound<&[u8]> = bounds.lower.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let upper: Bound<&[u8]> = bounds.upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let range = if forward {
        (tighter_lower(lower, from), upper)
    } else {
        (lower, tighter_upper(upper, from))
    };
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = range {
        if a > b || (a == b && !matches!(range, (Bound::Included(_), Bound::Included(_)))) {
            return None;
        }
    }
    let mut it = map.range::<[u8], _>(range);
    let found = if forward { it.next() } else { it.next_back() };
    found.map(|(k, _)| k.clone())
}

fn tighter_lower<'a>(a: Bound<&'a [u8]>, b: Bound<&'a [u8]>) -> Bound<&'a [u8]> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) if x != y => {
            if x > y {
                a
            } else {
                b
            }
        }
        (Bound::Excluded(_), _) => a,
        _ => b,
    }
}

fn tighter_upper<'a>(a: Bound<&'a [u8]>, b: Bound<&'a [u8]>) -> Bound<&'a [u8]> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) if x != y => {
            if x < y {
                a
            } else {
                b
            }
        }
        (Bound::Excluded(_), _) => a,
        _ => b,
    }
}

macro_rules! mem_iterator_impl {
    ($ty:ty) => {
        impl EngineIterator for $ty {
            fn seek(&mut self, key: &[u8]) -> Result<bool> {
                self.cur = position(&self.map, &self.bounds, Bound::Included(key), true);
                Ok(self.cur.is_some())
            }
            fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool> {
                self.cur = position(&self.map, &self.bounds, Bound::Included(key), false);
                Ok(self.cur.is_some())
            }
            fn seek_to_first(&mut self) -> Result<bool> {
                self.cur = position(&self.map, &self.bounds, Bound::Unbounded, true);
                Ok(self.cur.is_some())
            }
            fn seek_to_last(&mut self) -> Result<bool> {
                self.cur = position(&self.map, &self.bounds, Bound::Unbounded, false);
                Ok(self.cur.is_some())
            }
            fn next(&mut self) -> Result<bool> {
                self.cur = match self.cur.take() {
                    Some(k) => position(&self.map, &self.bounds, Bound::Excluded(&k), true),
                    None => None,
                };
                Ok(self.cur.is_some())
            }
            fn prev(&mut self) -> Result<bool> {
                self.cur = match self.cur.take() {
                    Some(k) => position(&self.map, &self.bounds, Bound::Excluded(&k), false),
                    None => None,
                };
                Ok(self.cur.is_some())
            }
            fn valid(&self) -> Result<bool> {
                Ok(self.cur.is_some())
            }
            fn key(&self) -> &[u8] {
                self.cur.as_deref().unwrap_or_default()
            }
            fn value(&self) -> &[u8] {
                self.cur
                    .as_ref()
                    .and_then(|k| self.map.get(k))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            }
        }
    };
}

/// Iterator borrowing a [`MemSnapshot`].
pub struct MemIterator<'a> {
    map: &'a Cf,
    bounds: IterBounds,
    cur: Option<Vec<u8>>,
}

/// Iterator over a frozen copy of one column family of a [`MemEngine`].
pub struct OwnedMemIterator {
    map: Cf,
    bounds: IterBounds,
    cur: Option<Vec<u8>>,
}

mem_iterator_impl!(MemIterator<'_>);
mem_iterator_impl!(OwnedMemIterator);

#[cfg(test)]
mod tests {
    #[test]
    fn mem_engine_conforms() {
        crate::conformance::run_all(super::MemEngine::new);
    }
}
