//! Splitting a region: which regions a batch split makes, and where a split may cut.
//!
//! A batch split with keys `k1 < k2 < … < kn` cuts region `[start, end)` into `n + 1` regions.
//! As in TiKV (`right-derive-when-split`), the original region keeps the rightmost piece
//! `[kn, end)`; the `n` new regions take `[start, k1)`, `[k1, k2)`, …, each with the id and
//! peer ids PD allocated (`AskBatchSplit`), one new peer per existing peer, on the same stores
//! with the same roles. Every resulting region's epoch `version` is the old version plus `n`;
//! `conf_ver` is unchanged.
//!
//! Split keys are range keys (as region boundaries) and never cut between the versions of one
//! MVCC key: a key that looks like an encoded key followed by a timestamp loses the timestamp.

use atoll_proto::metapb;
use txn_types::memcomparable;
use txn_types::mvcc_key::TS_LEN;

use crate::{Error, Result};

/// One cut of a batch split: the key where the new region ends, and its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRequest {
    pub split_key: Vec<u8>,
    pub new_region_id: u64,
    /// One per peer of the region being split, in the order of its `peers`.
    pub new_peer_ids: Vec<u64>,
}

fn invalid(region: &metapb::Region, why: String) -> Error {
    Error::InvalidSplit {
        region_id: region.id,
        message: why,
    }
}

/// Checks that `keys` can split `region`: non-empty, strictly increasing, each strictly inside
/// the region's range.
pub fn check_split_keys(region: &metapb::Region, keys: &[Vec<u8>]) -> Result<()> {
    if keys.is_empty() {
        return Err(invalid(region, "no split key".into()));
    }
    let mut prev: &[u8] = &region.start_key;
    for (i, k) in keys.iter().enumerate() {
        if k.is_empty() {
            return Err(invalid(region, "empty split key".into()));
        }
        if k.as_slice() <= prev && !(i == 0 && prev.is_empty()) {
            return Err(invalid(
                region,
                format!("split key {k:?} is not above the region start or the previous key"),
            ));
        }
        if !region.end_key.is_empty() && k.as_slice() >= region.end_key.as_slice() {
            return Err(invalid(
                region,
                format!("split key {k:?} is not below the region end"),
            ));
        }
        prev = k;
    }
    Ok(())
}

/// The regions `region` becomes after the batch split `reqs`: the new regions in key order,
/// then the original (derived) region last.
pub fn split_regions(region: &metapb::Region, reqs: &[SplitRequest]) -> Result<Vec<metapb::Region>> {
    let keys: Vec<Vec<u8>> = reqs.iter().map(|r| r.split_key.clone()).collect();
    check_split_keys(region, &keys)?;
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.version += reqs.len() as u64;
    let mut out = Vec::with_capacity(reqs.len() + 1);
    let mut start = region.start_key.clone();
    for r in reqs {
        if r.new_peer_ids.len() != region.peers.len() {
            return Err(invalid(
                region,
                format!(
                    "{} new peer ids for {} peers",
                    r.new_peer_ids.len(),
                    region.peers.len()
                ),
            ));
        }
        if r.new_region_id == region.id || r.new_region_id == 0 {
            return Err(invalid(region, format!("bad new region id {}", r.new_region_id)));
        }
        let peers = region
            .peers
            .iter()
            .zip(&r.new_peer_ids)
            .map(|(p, id)| metapb::Peer { id: *id, ..*p })
            .collect();
        out.push(metapb::Region {
            id: r.new_region_id,
            start_key: std::mem::replace(&mut start, r.split_key.clone()),
            end_key: r.split_key.clone(),
            region_epoch: Some(epoch),
            peers,
            ..region.clone()
        });
    }
    out.push(metapb::Region {
        start_key: start,
        region_epoch: Some(epoch),
        ..region.clone()
    });
    Ok(out)
}

/// The range key a split may cut at for a stored key (without the data prefix): an encoded
/// MVCC key with its timestamp loses the timestamp, any other key is kept whole.
pub fn split_point(key: &[u8]) -> &[u8] {
    if key.len() > TS_LEN {
        let head = &key[..key.len() - TS_LEN];
        if let Ok((_, rest)) = memcomparable::decode_bytes(head) {
            if rest.is_empty() {
                return head;
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use txn_types::{mvcc_key, TimeStamp};

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 5,
            }),
            peers: vec![
                metapb::Peer {
                    id: 11,
                    store_id: 1,
                    ..Default::default()
                },
                metapb::Peer {
                    id: 12,
                    store_id: 2,
                    role: metapb::PeerRole::Learner as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn req(key: &[u8], id: u64) -> SplitRequest {
        SplitRequest {
            split_key: key.to_vec(),
            new_region_id: id,
            new_peer_ids: vec![id * 10 + 1, id * 10 + 2],
        }
    }

    #[test]
    fn batch_split_keeps_the_original_region_on_the_right() {
        let out = split_regions(&region(), &[req(b"f", 7), req(b"m", 8)]).expect("split");
        let ranges: Vec<_> = out
            .iter()
            .map(|r| (r.id, r.start_key.clone(), r.end_key.clone()))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (7, b"a".to_vec(), b"f".to_vec()),
                (8, b"f".to_vec(), b"m".to_vec()),
                (1, b"m".to_vec(), b"z".to_vec()),
            ]
        );
        for r in &out {
            assert_eq!(
                r.region_epoch,
                Some(metapb::RegionEpoch {
                    conf_ver: 3,
                    version: 7
                })
            );
        }
        assert_eq!(out[0].peers[0].id, 71);
        assert_eq!(out[0].peers[1].store_id, 2);
        assert_eq!(out[0].peers[1].role, metapb::PeerRole::Learner as i32);
        assert_eq!(out[2].peers, region().peers);
    }

    #[test]
    fn bad_splits_are_refused() {
        let r = region();
        for keys in [
            vec![],
            vec![b"a".to_vec()],
            vec![b"z".to_vec()],
            vec![b"0".to_vec()],
            vec![b"m".to_vec(), b"f".to_vec()],
            vec![b"m".to_vec(), b"m".to_vec()],
        ] {
            assert!(check_split_keys(&r, &keys).is_err(), "{keys:?} accepted");
        }
        let mut wrong_peers = req(b"f", 7);
        wrong_peers.new_peer_ids.pop();
        assert!(split_regions(&r, &[wrong_peers]).is_err());
        assert!(split_regions(&r, &[req(b"f", 1)]).is_err());
        let unbounded = metapb::Region {
            start_key: vec![],
            end_key: vec![],
            ..r
        };
        assert!(check_split_keys(&unbounded, &[b"\x00".to_vec()]).is_ok());
        assert!(check_split_keys(&unbounded, &[vec![]]).is_err());
    }

    #[test]
    fn split_points_keep_versions_together() {
        let enc = mvcc_key::encode(b"user-key");
        let versioned = mvcc_key::append_ts(&enc, TimeStamp::new(42));
        assert_eq!(split_point(&versioned), enc.as_slice());
        assert_eq!(split_point(&enc), enc.as_slice());
        assert_eq!(split_point(b"raw-key-00001"), b"raw-key-00001");
        assert_eq!(split_point(b"k"), b"k");
    }
}
