use super::*;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{apply_ops, counts_of, regions_on, up, view, with_locations};
use crate::store_info::StoreStateName::{Down, Up};

fn cfg() -> BalanceRegionConfig {
    BalanceRegionConfig {
        tolerant_size_ratio: 0.0,
        low_space_ratio: 0.8,
        max_replicas: 3,
        max_pending_peer_count: 64,
        batch: 4,
        start: 0,
    }
}

fn ids() -> impl FnMut() -> Option<u64> {
    let mut next = 1000;
    move || {
        next += 1;
        Some(next)
    }
}

/// Rounds until the scheduler returns nothing; every round's operators are applied.
fn converge(v: &mut ScheduleView, cfg: &BalanceRegionConfig) -> usize {
    let mut alloc = ids();
    let mut total = 0;
    for _ in 0..100 {
        let ops = schedule(v, cfg, &mut alloc);
        if ops.is_empty() {
            return total;
        }
        total += ops.len();
        apply_ops(v, &ops);
    }
    panic!("no convergence: {:?}", counts_of(v));
}

fn moves(ops: &[Operator]) -> Vec<(u64, u64)> {
    ops.iter()
        .map(|op| {
            let from = op.steps().iter().find_map(|s| match s {
                OpStep::RemovePeer { store_id } => Some(*store_id),
                _ => None,
            });
            let to = op.steps().iter().find_map(|s| match s {
                OpStep::AddLearner { store_id, .. } => Some(*store_id),
                _ => None,
            });
            (from.unwrap(), to.unwrap())
        })
        .collect()
}

#[test]
fn a_new_store_fills_up_then_nothing() {
    let leaders: Vec<u64> = (0..12).map(|i| i % 3 + 1).collect();
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &leaders));
    let mut alloc = ids();
    let ops = schedule(&mut v, &cfg(), &mut alloc);
    // Pending moves count five times: two moves fit in the first round, not four.
    assert_eq!(ops.len(), 2);
    assert!(ops
        .iter()
        .all(|o| o.desc() == NAME && o.kind().contains(OpKind::REGION)));
    // Followers move first: region 1 is led by store 1, so store 1 gives region 2.
    assert_eq!(
        ops[0].steps(),
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
    assert_eq!(ops[0].region_id(), 2);
    apply_ops(&mut v, &ops);
    converge(&mut v, &cfg());
    let counts: Vec<usize> = counts_of(&v).iter().map(|c| c.1).collect();
    assert_eq!(counts.iter().sum::<usize>(), 36);
    assert!(counts.iter().all(|c| (8..=10).contains(c)), "{counts:?}");
    // Every region still has three voters on three stores.
    for r in &v.regions {
        let mut stores: Vec<u64> = r.meta.peers.iter().map(|p| p.store_id).collect();
        stores.dedup();
        assert_eq!(stores.len(), 3);
    }
}

#[test]
fn balanced_cluster_gets_nothing() {
    // 8 regions, each on 3 of the 4 stores: 6 per store.
    let mut regions = Vec::new();
    for i in 0..8u64 {
        let missing = i % 4 + 1;
        let stores: Vec<u64> = (1..=4).filter(|s| *s != missing).collect();
        regions.extend(regions_on(i + 1, &stores, &[stores[0]]));
    }
    let mut v = view(&up(4), regions);
    assert!(
        schedule(&mut v, &cfg(), &mut ids()).is_empty(),
        "{:?}",
        counts_of(&v)
    );
    // One region of difference (7, 6, 6, 5) is within the tolerance too.
    let r = v.regions[3].clone();
    let mut moved = r.clone();
    moved.meta.peers[2].store_id = 4;
    let _ = r;
    v.regions[3] = moved;
    v.count_regions();
    assert!(
        schedule(&mut v, &cfg(), &mut ids()).is_empty(),
        "{:?}",
        counts_of(&v)
    );
}

#[test]
fn store_limits_are_honoured() {
    let leaders: Vec<u64> = (0..12).map(|i| i % 3 + 1).collect();
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &leaders));
    // Room for two small regions on store 4.
    v.stores.get_mut(&4).unwrap().add_tokens = 400.0;
    let ops = schedule(&mut v, &BalanceRegionConfig { batch: 10, ..cfg() }, &mut ids());
    assert_eq!(ops.len(), 2);
    assert_eq!(v.stores[&4].add_tokens, 0.0);
    // A source without remove tokens gives nothing: only stores 2 and 3 give.
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &leaders));
    v.stores.get_mut(&1).unwrap().remove_tokens = 100.0;
    let ops = schedule(&mut v, &BalanceRegionConfig { batch: 10, ..cfg() }, &mut ids());
    assert!(!ops.is_empty());
    assert!(
        moves(&ops).iter().all(|(from, _)| *from != 1),
        "{:?}",
        moves(&ops)
    );
}

#[test]
fn placement_is_never_made_worse() {
    // Zones z1, z2, z3 and a second store in z1: only store 1 (same zone) may give regions
    // to store 4, with or without an isolation level.
    let leaders: Vec<u64> = (0..12).map(|i| i % 3 + 1).collect();
    for isolation in [None, Some(0)] {
        let v = view(&up(4), regions_on(1, &[1, 2, 3], &leaders));
        let mut v = with_locations(v, &[&["z1"], &["z2"], &["z3"], &["z1"]]);
        v.isolation = isolation;
        let mut alloc = ids();
        let mut all = Vec::new();
        loop {
            let ops = schedule(&mut v, &cfg(), &mut alloc);
            if ops.is_empty() {
                break;
            }
            all.extend(moves(&ops));
            apply_ops(&mut v, &ops);
        }
        assert!(!all.is_empty());
        assert!(all.iter().all(|(from, to)| (*from, *to) == (1, 4)), "{all:?}");
        assert_eq!(v.stores[&1].region_count + v.stores[&4].region_count, 12);
        assert!(v.stores[&1].region_count.abs_diff(v.stores[&4].region_count) <= 2);
    }
}

#[test]
fn weights_and_down_stores() {
    let leaders: Vec<u64> = (0..12).map(|i| i % 3 + 1).collect();
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &leaders));
    v.stores.get_mut(&4).unwrap().weight.region = 0.5;
    converge(&mut v, &cfg());
    // Half the weight: about half the share of the others.
    let c: Vec<usize> = counts_of(&v).iter().map(|c| c.1).collect();
    assert!((4..=6).contains(&c[3]), "{c:?}");
    // A Down store is neither source nor target.
    let mut v = view(
        &[(1, Up), (2, Up), (3, Up), (4, Down)],
        regions_on(1, &[1, 2, 3], &leaders),
    );
    assert!(schedule(&mut v, &cfg(), &mut ids()).is_empty());
}
