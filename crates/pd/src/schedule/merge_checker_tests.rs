use std::time::Instant;

use atoll_proto::{metapb, pdpb};

use super::*;
use crate::schedule::controller::OperatorController;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{ranged, region, regions_on, up, view, V};

fn cfg() -> MergeConfig {
    MergeConfig {
        max_merge_region_size: 20,
        max_merge_region_keys: 200_000,
        enable_one_way_merge: false,
        max_replicas: 3,
    }
}

fn ids() -> impl FnMut() -> Option<u64> {
    let mut next = 1000;
    move || {
        next += 1;
        Some(next)
    }
}

/// Regions 1, 2, 3 side by side on stores 1, 2, 3, sized 5, 1 and 3 MiB.
fn three() -> Vec<RegionInfo> {
    let mut rs = regions_on(1, &[1, 2, 3], &[1, 1, 1]);
    for (r, size) in rs.iter_mut().zip([5, 1, 3]) {
        r.approximate_size = size;
        r.approximate_keys = 10;
    }
    rs
}

fn never(_: u64) -> bool {
    false
}

#[test]
fn a_small_region_merges_into_its_smaller_neighbour() {
    let rs = three();
    let v = view(&up(3), rs.clone());
    let (src, dst) = check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).unwrap();
    assert_eq!((src.region_id(), dst.region_id()), (2, 3));
    assert!(src.kind().contains(OpKind::MERGE) && dst.kind().contains(OpKind::MERGE));
    assert_eq!(src.desc(), DESC);
    assert_eq!(
        src.steps(),
        &[OpStep::MergeRegion {
            from: Box::new(rs[1].meta.clone()),
            to: Box::new(rs[2].meta.clone()),
            passive: false
        }]
    );
    assert_eq!(
        dst.steps(),
        &[OpStep::MergeRegion {
            from: Box::new(rs[1].meta.clone()),
            to: Box::new(rs[2].meta.clone()),
            passive: true
        }]
    );
    // On the wire: `merge{target}` to the source's leader; nothing to the target.
    let resp = src.steps()[0].to_response(&rs[1]).unwrap();
    assert_eq!(
        resp.merge,
        Some(pdpb::Merge {
            target: Some(rs[2].meta.clone())
        })
    );
    assert_eq!(resp.region_id, 2);
    assert!(resp.change_peer.is_none() && resp.split_region.is_none());
    assert!(dst.steps()[0].to_response(&rs[2]).is_none());
    // One-way: only into the next region, even if the previous one were smaller.
    let mut rs2 = three();
    rs2[0].approximate_size = 1;
    let one_way = MergeConfig {
        enable_one_way_merge: true,
        ..cfg()
    };
    let (_, dst) = check(
        &rs2[1],
        Some(&rs2[0]),
        Some(&rs2[2]),
        &v,
        &one_way,
        &never,
        &mut ids(),
    )
    .unwrap();
    assert_eq!(dst.region_id(), 3);
    let (_, dst) = check(
        &rs2[1],
        Some(&rs2[0]),
        Some(&rs2[2]),
        &v,
        &cfg(),
        &never,
        &mut ids(),
    )
    .unwrap();
    assert_eq!(dst.region_id(), 1);
}

#[test]
fn no_merge_when_big_busy_unhealthy_or_recently_split() {
    let rs = three();
    let v = view(&up(3), rs.clone());
    let run = |r: &RegionInfo, v: &ScheduleView, c: &MergeConfig, split: &dyn Fn(u64) -> bool| {
        check(r, Some(&rs[0]), Some(&rs[2]), v, c, split, &mut ids())
    };
    // Too big (size or keys).
    let mut big = rs[1].clone();
    big.approximate_size = 21;
    assert!(run(&big, &v, &cfg(), &never).is_none());
    big.approximate_size = 1;
    big.approximate_keys = 200_001;
    assert!(run(&big, &v, &cfg(), &never).is_none());
    // Split recently: neither the source nor a target.
    assert!(run(&rs[1], &v, &cfg(), &|id| id == 2).is_none());
    let (_, dst) = run(&rs[1], &v, &cfg(), &|id| id == 3).unwrap();
    assert_eq!(dst.region_id(), 1);
    // Busy targets.
    let mut busy = v.clone();
    busy.busy.extend([1, 3]);
    assert!(run(&rs[1], &busy, &cfg(), &never).is_none());
    // Not adjacent: no target.
    let far = ranged(rs[2].clone(), b"z1", b"z2");
    assert!(check(&rs[1], None, Some(&far), &v, &cfg(), &never, &mut ids()).is_none());
    // Unhealthy source (a learner).
    let r = region(
        2,
        &[(20, 1, V), (21, 2, V), (22, 3, crate::schedule::test_util::L)],
        1,
        (3, 1),
    );
    let r = ranged(r, b"r0002", b"r0003");
    assert!(run(&r, &v, &cfg(), &never).is_none());
}

#[test]
fn peers_are_aligned_first() {
    let rs = three();
    // The target lives on stores 2, 3, 4.
    let mut target = regions_on(3, &[2, 3, 4], &[2]).remove(0);
    target.approximate_size = 1;
    let v = view(&up(4), vec![rs[1].clone(), target.clone()]);
    let (src, _) = check(&rs[1], None, Some(&target), &v, &cfg(), &never, &mut ids()).unwrap();
    assert_eq!(
        &src.steps()[..3],
        &[
            OpStep::AddLearner {
                store_id: 4,
                peer_id: 1001
            },
            OpStep::PromoteLearner {
                store_id: 4,
                peer_id: 1001
            },
            OpStep::RemovePeer { store_id: 1 },
        ]
    );
    assert!(matches!(
        src.steps()[3],
        OpStep::MergeRegion { passive: false, .. }
    ));
}

#[test]
fn both_operators_end_when_the_target_absorbed_the_source() {
    let rs = three();
    let v = view(&up(3), rs.clone());
    let (src, dst) = check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).unwrap();
    let c = OperatorController::new();
    c.add(src, None).unwrap();
    c.add(dst, None).unwrap();
    let now = Instant::now();
    let none = |_: &RegionInfo, _: u64| None;
    assert!(matches!(
        c.dispatch(&rs[1], now, false, &none),
        Some(OpStep::MergeRegion { passive: false, .. })
    ));
    // The source prepared the merge (its version moved): it waits, it is not stale.
    let mut prepared = rs[1].clone();
    prepared.meta.region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 4,
        version: 2,
    });
    assert_eq!(c.dispatch(&prepared, now, false, &none), None);
    assert!(c.has(2));
    // The target grew over the source's range: both finish.
    let mut merged = rs[2].clone();
    merged.meta.start_key = rs[1].start_key().to_vec();
    merged.meta.region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 3,
        version: 3,
    });
    assert_eq!(c.dispatch(&merged, now, false, &none), None);
    assert!(!c.has(2) && !c.has(3));
    assert_eq!(c.status(2).unwrap().status, pdpb::OperatorStatus::Success);
    assert_eq!(c.status(3).unwrap().status, pdpb::OperatorStatus::Success);
    // A source that prepared and then rolled back (its version moved twice) ends at once.
    let (src, dst) = check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).unwrap();
    let c = OperatorController::new();
    c.add(src, None).unwrap();
    c.add(dst, None).unwrap();
    assert_eq!(c.dispatch(&prepared, now, false, &none), None);
    assert!(c.has(2));
    let mut rolled_back = prepared.clone();
    rolled_back.meta.region_epoch = Some(metapb::RegionEpoch {
        conf_ver: 4,
        version: 3,
    });
    assert_eq!(c.dispatch(&rolled_back, now, false, &none), None);
    assert!(!c.has(2), "the rolled-back source's operator still runs");
    // A source that disappears first (the target's report removed it) also succeeded.
    let (src, _) = check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).unwrap();
    let c = OperatorController::new();
    c.add(src, None).unwrap();
    c.region_gone(2);
    assert_eq!(c.status(2).unwrap().status, pdpb::OperatorStatus::Success);
}

#[test]
fn keyspace_boundaries_are_never_merged_across() {
    let encoded_raw: &[u8] = &[b'r', 0, 0, 0, 0, 0, 0, 0, 0xFB];
    let encoded_txn: &[u8] = &[b'x', 0, 0, 1, 0, 0, 0, 0, 0xFB];
    for k in [encoded_raw, encoded_txn, b"r\0\0\x07", b"x\0\0\0"] {
        assert!(is_keyspace_boundary(k), "{k:?}");
    }
    for k in [
        &b"r\0\0\0a"[..],
        b"k0001",
        b"",
        &[b'r', 0, 0, 0, b'a', 0, 0, 0, 0xFC],
    ] {
        assert!(!is_keyspace_boundary(k), "{k:?}");
    }
    // The middle region starts and ends at keyspace boundaries: it merges with neither side.
    let mut rs = three();
    rs[0] = ranged(rs[0].clone(), b"", encoded_raw);
    rs[1] = ranged(rs[1].clone(), encoded_raw, encoded_txn);
    rs[2] = ranged(rs[2].clone(), encoded_txn, b"");
    let v = view(&up(3), rs.clone());
    assert!(check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).is_none());
    // Inside a keyspace's range, merging goes on.
    rs[2] = ranged(rs[2].clone(), encoded_txn, b"x\0\0\x01zz");
    rs[1] = ranged(rs[1].clone(), b"x\0\0\x01a", encoded_txn);
    rs[0] = ranged(rs[0].clone(), encoded_raw, b"x\0\0\x01a");
    let v = view(&up(3), rs.clone());
    let (src, dst) = check(&rs[1], Some(&rs[0]), Some(&rs[2]), &v, &cfg(), &never, &mut ids()).unwrap();
    assert_eq!((src.region_id(), dst.region_id()), (2, 1));
}
