//! The region tree: every known region, indexed by start key and by id.
//!
//! Invariants: the regions in the tree never overlap; `by_start` and `by_id` hold exactly the
//! same regions. Keys compare bytewise; an empty end key is +infinity.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::error::{Error, Result};
use crate::region_info::RegionInfo;

/// What a [`RegionTree::put`] changed.
#[derive(Debug, Default)]
pub struct PutOutcome {
    /// The previous version of the same region, if any.
    pub origin: Option<RegionInfo>,
    /// Other regions removed because they overlapped the new one.
    pub removed: Vec<RegionInfo>,
}

/// Non-overlapping regions by start key and by id.
#[derive(Debug, Default)]
pub struct RegionTree {
    by_start: BTreeMap<Vec<u8>, u64>,
    by_id: HashMap<u64, RegionInfo>,
}

impl RegionTree {
    pub fn new() -> RegionTree {
        RegionTree::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&RegionInfo> {
        self.by_id.get(&id)
    }

    /// The region containing `key`.
    pub fn search(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        self.by_id.get(id).filter(|r| r.contains(key))
    }

    /// The region right before the one containing `key`, if the two are adjacent.
    pub fn search_prev(&self, key: &[u8]) -> Option<&RegionInfo> {
        let cur = self.search(key)?;
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(cur.start_key())))
            .next_back()?;
        self.by_id
            .get(id)
            .filter(|prev| prev.end_key() == cur.start_key())
    }

    /// Regions from the one containing `start` (or the first after it) while their start key is
    /// below `end` (empty = unbounded), at most `limit` of them (`limit <= 0` = unlimited).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: i32) -> Vec<&RegionInfo> {
        let from = match self.search(start) {
            Some(r) => r.start_key().to_vec(),
            None => start.to_vec(),
        };
        let mut out = Vec::new();
        for (_, id) in self
            .by_start
            .range::<[u8], _>((Bound::Included(from.as_slice()), Bound::Unbounded))
        {
            let Some(r) = self.by_id.get(id) else { continue };
            if !end.is_empty() && r.start_key() >= end {
                break;
            }
            if limit > 0 && out.len() >= limit as usize {
                break;
            }
            out.push(r);
        }
        out
    }

    /// Every region in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> {
        self.by_start.values().filter_map(|id| self.by_id.get(id))
    }

    /// Regions (other than `region` itself) whose range intersects `region`'s.
    pub fn overlaps(&self, region: &RegionInfo) -> Vec<&RegionInfo> {
        let mut out = Vec::new();
        // The region containing the start key may begin before it.
        if let Some(first) = self.search(region.start_key()) {
            if first.id() != region.id() && first.start_key() < region.start_key() {
                out.push(first);
            }
        }
        for (start, id) in self
            .by_start
            .range::<[u8], _>((Bound::Included(region.start_key()), Bound::Unbounded))
        {
            if !region.end_key().is_empty() && start.as_slice() >= region.end_key() {
                break;
            }
            if let Some(r) = self.by_id.get(id) {
                if r.id() != region.id() {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Whether `region` may replace what the tree holds (PD's stale check): its version must not
    /// be below any overlapping region's, and against the same region its version, conf_ver and
    /// (when reported) term must not go back.
    pub fn check(&self, region: &RegionInfo) -> Result<()> {
        let epoch = region.epoch();
        let origin = self.by_id.get(&region.id());
        let range_changed = origin.is_none_or(|o| !o.same_range(region));
        if range_changed {
            for o in self.overlaps(region) {
                if epoch.version < o.epoch().version {
                    return Err(Error::StaleRegion(format!(
                        "region {} epoch {:?} is older than overlapping region {} epoch {:?}",
                        region.id(),
                        epoch,
                        o.id(),
                        o.epoch()
                    )));
                }
            }
        }
        if let Some(o) = origin {
            let oe = o.epoch();
            let term_behind = region.term > 0 && region.term < o.term;
            if term_behind || epoch.version < oe.version || epoch.conf_ver < oe.conf_ver {
                return Err(Error::StaleRegion(format!(
                    "region {} epoch {:?} term {} is older than the known epoch {:?} term {}",
                    region.id(),
                    epoch,
                    region.term,
                    oe,
                    o.term
                )));
            }
        }
        Ok(())
    }

    /// Inserts or replaces `region`, removing every region it overlaps. Does not check epochs:
    /// call [`RegionTree::check`] first.
    pub fn put(&mut self, region: RegionInfo) -> PutOutcome {
        let origin = self.by_id.remove(&region.id());
        if let Some(o) = &origin {
            if self.by_start.get(o.start_key()) == Some(&o.id()) {
                self.by_start.remove(o.start_key());
            }
        }
        let overlapped: Vec<u64> = self.overlaps(&region).iter().map(|r| r.id()).collect();
        let mut removed = Vec::with_capacity(overlapped.len());
        for id in overlapped {
            if let Some(r) = self.by_id.remove(&id) {
                if self.by_start.get(r.start_key()) == Some(&id) {
                    self.by_start.remove(r.start_key());
                }
                removed.push(r);
            }
        }
        self.by_start.insert(region.start_key().to_vec(), region.id());
        self.by_id.insert(region.id(), region);
        PutOutcome { origin, removed }
    }

    /// Removes a region by id.
    pub fn remove(&mut self, id: u64) -> Option<RegionInfo> {
        let r = self.by_id.remove(&id)?;
        if self.by_start.get(r.start_key()) == Some(&id) {
            self.by_start.remove(r.start_key());
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use atoll_proto::metapb;

    use super::*;

    fn region(id: u64, start: &str, end: &str, version: u64, conf_ver: u64) -> RegionInfo {
        RegionInfo::from_meta(metapb::Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
            peers: vec![metapb::Peer {
                id: id * 10,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn must_put(t: &mut RegionTree, r: RegionInfo) -> PutOutcome {
        t.check(&r).unwrap();
        t.put(r)
    }

    fn ids(rs: &[&RegionInfo]) -> Vec<u64> {
        rs.iter().map(|r| r.id()).collect()
    }

    #[test]
    fn insert_and_lookup_by_key() {
        let mut t = RegionTree::new();
        must_put(&mut t, region(1, "", "b", 1, 1));
        must_put(&mut t, region(2, "b", "d", 1, 1));
        must_put(&mut t, region(3, "d", "", 1, 1));
        assert_eq!(t.len(), 3);
        assert_eq!(t.search(b"").unwrap().id(), 1);
        assert_eq!(t.search(b"a").unwrap().id(), 1);
        assert_eq!(t.search(b"b").unwrap().id(), 2);
        assert_eq!(t.search(b"c\xff").unwrap().id(), 2);
        assert_eq!(t.search(b"d").unwrap().id(), 3);
        // Empty end key is +infinity.
        assert_eq!(t.search(b"\xff\xff\xff").unwrap().id(), 3);
        assert_eq!(t.get(2).unwrap().start_key(), b"b");
    }

    #[test]
    fn holes_are_not_found() {
        let mut t = RegionTree::new();
        must_put(&mut t, region(1, "a", "c", 1, 1));
        must_put(&mut t, region(2, "e", "g", 1, 1));
        assert!(t.search(b"").is_none());
        assert!(t.search(b"c").is_none());
        assert!(t.search(b"d").is_none());
        assert!(t.search(b"g").is_none());
        // Not adjacent: no prev region.
        assert!(t.search_prev(b"f").is_none());
    }

    #[test]
    fn prev_region() {
        let mut t = RegionTree::new();
        must_put(&mut t, region(1, "", "b", 1, 1));
        must_put(&mut t, region(2, "b", "d", 1, 1));
        must_put(&mut t, region(3, "d", "", 1, 1));
        assert!(t.search_prev(b"a").is_none());
        assert_eq!(t.search_prev(b"b").unwrap().id(), 1);
        assert_eq!(t.search_prev(b"c").unwrap().id(), 1);
        assert_eq!(t.search_prev(b"z").unwrap().id(), 2);
    }

    #[test]
    fn newer_epoch_replaces_overlaps() {
        let mut t = RegionTree::new();
        must_put(&mut t, region(1, "", "", 1, 1));
        // Split: region 1 keeps [ "", "m" ), region 2 takes [ "m", "" ).
        let out = must_put(&mut t, region(2, "m", "", 2, 1));
        assert_eq!(out.removed.iter().map(|r| r.id()).collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.len(), 1);
        let out = must_put(&mut t, region(1, "", "m", 2, 1));
        assert!(out.origin.is_none() && out.removed.is_empty());
        assert_eq!(ids(&t.scan(b"", b"", 0)), vec![1, 2]);

        // Merge: region 2 absorbs region 1.
        let out = must_put(&mut t, region(2, "", "", 3, 1));
        assert_eq!(out.origin.unwrap().start_key(), b"m");
        assert_eq!(out.removed.iter().map(|r| r.id()).collect::<Vec<_>>(), vec![1]);
        assert_eq!(ids(&t.scan(b"", b"", 0)), vec![2]);
        assert_eq!(t.search(b"a").unwrap().id(), 2);
    }

    #[test]
    fn stale_epoch_is_rejected() {
        let mut t = RegionTree::new();
        must_put(&mut t, region(1, "", "m", 5, 3));
        must_put(&mut t, region(2, "m", "", 5, 3));
        // Same region, older version or conf_ver.
        assert!(t.check(&region(1, "", "m", 4, 3)).is_err());
        assert!(t.check(&region(1, "", "m", 5, 2)).is_err());
        // Same epoch is fine (a plain heartbeat).
        assert!(t.check(&region(1, "", "m", 5, 3)).is_ok());
        // A new region overlapping one with a newer version.
        assert!(t.check(&region(9, "a", "z", 4, 1)).is_err());
        // Older term of the same region.
        let mut newer = region(1, "", "m", 5, 3);
        newer.term = 7;
        must_put(&mut t, newer);
        let mut older = region(1, "", "m", 5, 3);
        older.term = 6;
        assert!(t.check(&older).is_err());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn scan_with_bounds_and_limit() {
        let mut t = RegionTree::new();
        for (i, (s, e)) in [("", "b"), ("b", "d"), ("d", "f"), ("f", "h"), ("h", "")]
            .iter()
            .enumerate()
        {
            must_put(&mut t, region(i as u64 + 1, s, e, 1, 1));
        }
        assert_eq!(ids(&t.scan(b"", b"", 0)), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&t.scan(b"c", b"", 2)), vec![2, 3]);
        assert_eq!(ids(&t.scan(b"c", b"f", 0)), vec![2, 3]);
        assert_eq!(ids(&t.scan(b"c", b"f\x00", 0)), vec![2, 3, 4]);
        assert_eq!(ids(&t.scan(b"z", b"", -1)), vec![5]);
        assert_eq!(t.iter().count(), 5);
        assert!(t.remove(3).is_some());
        assert!(t.search(b"e").is_none());
    }
}
