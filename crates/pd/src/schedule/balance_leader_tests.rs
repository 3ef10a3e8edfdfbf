use super::*;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{apply_ops, counts_of, regions_on, up, view, with_pending};
use crate::store_info::StoreStateName::{Disconnected, Down, Offline, Up};

fn cfg() -> BalanceLeaderConfig {
    BalanceLeaderConfig {
        by_size: false,
        tolerant_size_ratio: 0.0,
        max_replicas: 3,
        batch: 100,
        start: 0,
    }
}

fn transfers(ops: &[Operator]) -> Vec<(u64, u64, u64)> {
    ops.iter()
        .map(|op| match op.steps() {
            [OpStep::TransferLeader { from_store, to_store }] => (op.region_id(), *from_store, *to_store),
            other => panic!("not a transfer: {other:?}"),
        })
        .collect()
}

#[test]
fn leaders_spread_then_nothing() {
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1; 6]));
    let ops = schedule(&mut v, &cfg());
    assert!(ops
        .iter()
        .all(|o| o.desc() == NAME && o.kind().contains(OpKind::LEADER)));
    // Alternating targets (lowest score, then lowest id), from the first regions in key order.
    assert_eq!(transfers(&ops), vec![(1, 1, 2), (2, 1, 3), (3, 1, 2), (4, 1, 3)]);
    apply_ops(&mut v, &ops);
    assert_eq!(counts_of(&v), vec![(1, 6, 2), (2, 6, 2), (3, 6, 2)]);
    // Balanced: no operator, also with one leader of difference.
    assert!(schedule(&mut v, &cfg()).is_empty());
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1, 1, 1, 2, 2, 3, 3]));
    assert!(schedule(&mut v, &cfg()).is_empty());
}

#[test]
fn batch_and_start_are_honoured() {
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1; 6]));
    let ops = schedule(
        &mut v,
        &BalanceLeaderConfig {
            batch: 1,
            start: 4,
            ..cfg()
        },
    );
    assert_eq!(transfers(&ops), vec![(5, 1, 2)]);
}

#[test]
fn weights_decide_the_share() {
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1; 8]));
    v.stores.get_mut(&1).unwrap().weight.leader = 2.0;
    let ops = schedule(&mut v, &cfg());
    apply_ops(&mut v, &ops);
    assert_eq!(counts_of(&v), vec![(1, 8, 4), (2, 8, 2), (3, 8, 2)]);
    assert!(schedule(&mut v, &cfg()).is_empty());
}

#[test]
fn only_up_stores_and_healthy_idle_regions() {
    for bad in [Disconnected, Down, Offline] {
        let mut v = view(&[(1, Up), (2, Up), (3, bad)], regions_on(1, &[1, 2, 3], &[1; 4]));
        let ops = schedule(&mut v, &cfg());
        assert_eq!(transfers(&ops), vec![(1, 1, 2), (2, 1, 2)], "{bad:?}");
    }
    // Busy and unhealthy regions are left alone.
    let mut regions = regions_on(1, &[1, 2, 3], &[1; 4]);
    regions[0] = with_pending(regions[0].clone(), 11);
    let mut v = view(&up(3), regions);
    v.busy.insert(2);
    let ops = schedule(&mut v, &cfg());
    assert_eq!(transfers(&ops), vec![(3, 1, 2), (4, 1, 3)]);
}

#[test]
fn a_new_store_gets_its_share() {
    // 12 regions, each on 3 of 4 stores (store 4 is in 9 of them), leaders only on 1..3.
    let mut regions = Vec::new();
    for i in 0..12u64 {
        let missing = i % 4 + 1;
        let stores: Vec<u64> = (1..=4).filter(|s| *s != missing).collect();
        let leader = *stores.iter().find(|s| **s != 4).unwrap();
        regions.extend(regions_on(i + 1, &stores, &[leader]));
    }
    let mut v = view(&up(4), regions);
    assert_eq!(counts_of(&v)[3], (4, 9, 0));
    let ops = schedule(&mut v, &cfg());
    apply_ops(&mut v, &ops);
    let leaders: Vec<usize> = counts_of(&v).iter().map(|c| c.2).collect();
    assert_eq!(leaders, vec![3, 3, 3, 3]);
    assert!(schedule(&mut v, &cfg()).is_empty());
}
