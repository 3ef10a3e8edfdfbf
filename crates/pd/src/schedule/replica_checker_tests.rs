use super::*;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{region, with_down, with_pending, L, V};
use crate::schedule::view::{ScheduleView, StoreView};
use crate::store_info::StoreStateName::{Disconnected, Down, Offline, Tombstone, Up};

/// Runs the checker with peer ids handed out from 100.
fn run(
    region: &RegionInfo,
    st: &[(u64, StoreStateName)],
    cnt: &[(u64, usize)],
    cfg: CheckerConfig,
) -> Option<Operator> {
    let mut view = ScheduleView::default();
    for (id, state) in st {
        let mut s = StoreView::new(*id, *state);
        s.region_count = cnt.iter().find(|(c, _)| c == id).map_or(0, |(_, n)| *n);
        view.stores.insert(*id, s);
    }
    let mut next = 100;
    let mut alloc = || {
        next += 1;
        Some(next - 1)
    };
    check(region, &view, &cfg, &mut alloc)
}

fn cfg(max_replicas: usize) -> CheckerConfig {
    CheckerConfig {
        max_replicas,
        ..CheckerConfig::default()
    }
}

#[test]
fn missing_replica_goes_to_the_emptiest_up_store() {
    let r = region(2, &[(10, 1, V)], 1, (1, 1));
    let st = [
        (1, Up),
        (2, Up),
        (3, Up),
        (4, Up),
        (5, Up),
        (6, Down),
        (7, Disconnected),
        (8, Offline),
    ];
    let cnt = [(1, 20), (2, 10), (3, 5), (4, 5), (5, 7)];
    let op = run(&r, &st, &cnt, cfg(3)).unwrap();
    assert_eq!(op.desc(), "make-up-replica");
    assert!(op.kind().contains(OpKind::REPLICA));
    assert_eq!(
        op.steps(),
        &[
            OpStep::AddLearner {
                store_id: 3,
                peer_id: 100
            },
            OpStep::PromoteLearner {
                store_id: 3,
                peer_id: 100
            },
        ]
    );
    // With two replicas present, the third goes to the next emptiest store without one.
    let r = region(2, &[(10, 1, V), (11, 3, V)], 1, (2, 1));
    let op = run(&r, &st, &cnt, cfg(3)).unwrap();
    assert_eq!(
        op.steps()[0],
        OpStep::AddLearner {
            store_id: 4,
            peer_id: 100
        }
    );
    // Fully replicated: nothing.
    let r = region(2, &[(10, 1, V), (11, 3, V), (12, 4, V)], 1, (3, 1));
    assert!(run(&r, &st, &cnt, cfg(3)).is_none());
    // Disabled.
    let off = CheckerConfig {
        enable_make_up_replica: false,
        ..cfg(3)
    };
    assert!(run(&region(2, &[(10, 1, V)], 1, (1, 1)), &st, &cnt, off).is_none());
}

#[test]
fn no_target_store_no_operator() {
    let r = region(2, &[(10, 1, V)], 1, (1, 1));
    let st = [(1, Up), (2, Down), (3, Disconnected), (4, Tombstone)];
    assert!(run(&r, &st, &[], cfg(3)).is_none());
    // Replacing a down peer needs a target too.
    let r = region(2, &[(10, 1, V), (11, 2, V)], 1, (2, 1));
    assert!(run(&r, &[(1, Up), (2, Down)], &[], cfg(2)).is_none());
}

#[test]
fn down_peer_is_replaced() {
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 1, (3, 1));
    let st = [(1, Up), (2, Up), (3, Down), (4, Up), (5, Up)];
    let cnt = [(4, 3), (5, 1)];
    let op = run(&r, &st, &cnt, cfg(3)).unwrap();
    assert_eq!(op.desc(), "replace-down-replica");
    assert_eq!(
        op.steps(),
        &[
            OpStep::AddLearner {
                store_id: 5,
                peer_id: 100
            },
            OpStep::PromoteLearner {
                store_id: 5,
                peer_id: 100
            },
            OpStep::RemovePeer { store_id: 3 },
        ]
    );
    // Also when the leader reports it down.
    let reported = with_down(r.clone(), 12);
    assert_eq!(
        run(&reported, &st, &cnt, cfg(3)).unwrap().desc(),
        "replace-down-replica"
    );
    // Disabled.
    let off = CheckerConfig {
        enable_remove_down_replica: false,
        ..cfg(3)
    };
    assert!(run(&r, &st, &cnt, off).is_none());
    // With more voters than wanted, the down one is just removed.
    let r4 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V), (13, 4, V)], 1, (4, 1));
    let op = run(&r4, &st, &cnt, cfg(3)).unwrap();
    assert_eq!(op.desc(), "remove-extra-down-replica");
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 3 }]);
    // A leader on a down store is stale news: wait for the new leader.
    let led_by_down = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 3, (3, 1));
    assert!(run(&led_by_down, &st, &cnt, cfg(3)).is_none());
}

#[test]
fn offline_leader_is_replaced_after_handing_over_leadership() {
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 1, (3, 1));
    let st = [(1, Offline), (2, Up), (3, Up), (4, Up)];
    let op = run(&r, &st, &[], cfg(3)).unwrap();
    assert_eq!(op.desc(), "replace-offline-replica");
    assert_eq!(
        op.steps(),
        &[
            OpStep::AddLearner {
                store_id: 4,
                peer_id: 100
            },
            OpStep::PromoteLearner {
                store_id: 4,
                peer_id: 100
            },
            OpStep::TransferLeader {
                from_store: 1,
                to_store: 4
            },
            OpStep::RemovePeer { store_id: 1 },
        ]
    );
    // Extra voters: the leader's removal is preceded by a transfer to another healthy voter.
    let r4 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V), (13, 4, V)], 1, (4, 1));
    let op = run(&r4, &st, &[], cfg(3)).unwrap();
    assert_eq!(op.desc(), "remove-extra-offline-replica");
    assert_eq!(
        op.steps(),
        &[
            OpStep::TransferLeader {
                from_store: 1,
                to_store: 2
            },
            OpStep::RemovePeer { store_id: 1 },
        ]
    );
    // A tombstone store's peer is replaced the same way.
    let st = [(1, Up), (2, Up), (3, Tombstone), (4, Up)];
    assert_eq!(
        run(&r, &st, &[], cfg(3)).unwrap().desc(),
        "replace-offline-replica"
    );
}

#[test]
fn extra_replica_removes_the_preferred_peer() {
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V), (13, 4, V)], 1, (4, 1));
    // A peer on a store that is not Up goes first.
    let st = [(1, Up), (2, Up), (3, Up), (4, Disconnected)];
    let op = run(&r, &st, &[(2, 50), (3, 9)], cfg(3)).unwrap();
    assert_eq!(op.desc(), "remove-extra-replica");
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 4 }]);
    // Else the non-leader on the store with the most regions (the leader's store is busiest).
    let st = [(1, Up), (2, Up), (3, Up), (4, Up)];
    let op = run(&r, &st, &[(1, 100), (2, 5), (3, 9), (4, 7)], cfg(3)).unwrap();
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 3 }]);
    // Ties: the lowest store id.
    let op = run(&r, &st, &[(2, 9), (3, 9), (4, 9)], cfg(3)).unwrap();
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 2 }]);
    // Down to one replica, one by one.
    let op = run(&r, &st, &[], cfg(1)).unwrap();
    assert_eq!(op.steps().len(), 1);
    let off = CheckerConfig {
        enable_remove_extra_replica: false,
        ..cfg(3)
    };
    assert!(run(&r, &st, &[], off).is_none());
}

#[test]
fn leftover_learners_are_promoted_or_removed() {
    let st = [(1, Up), (2, Up), (3, Up), (4, Up)];
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, L)], 1, (3, 1));
    let op = run(&r, &st, &[], cfg(3)).unwrap();
    assert_eq!(op.desc(), "promote-learner");
    assert_eq!(
        op.steps(),
        &[OpStep::PromoteLearner {
            store_id: 3,
            peer_id: 12
        }]
    );
    // Still catching up: wait for it rather than adding another peer.
    assert!(run(&with_pending(r.clone(), 12), &st, &[], cfg(3)).is_none());
    // Not needed: removed.
    let op = run(&r, &st, &[], cfg(2)).unwrap();
    assert_eq!(op.desc(), "remove-orphan-learner");
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 3 }]);
    // On a down store: removed even while voters are lacking.
    let st_down = [(1, Up), (2, Up), (3, Down), (4, Up)];
    let op = run(&r, &st_down, &[], cfg(3)).unwrap();
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 3 }]);
}

#[test]
fn leaderless_and_joint_regions_are_left_alone() {
    let st = [(1, Up), (2, Up), (3, Up)];
    let mut r = region(2, &[(10, 1, V)], 1, (1, 1));
    r.leader = None;
    assert!(run(&r, &st, &[], cfg(3)).is_none());
    let joint = region(
        2,
        &[(10, 1, V), (11, 2, metapb::PeerRole::IncomingVoter)],
        1,
        (2, 1),
    );
    assert!(run(&joint, &st, &[], cfg(3)).is_none());
}

/// Six Up stores in three zones (1, 2: z1; 3, 4: z2; 5, 6: z3) with `counts` regions.
fn zoned(counts: &[usize; 6]) -> ScheduleView {
    let mut view = ScheduleView::default();
    for id in 1..=6u64 {
        let mut s = StoreView::new(id, Up);
        s.location = vec![format!("z{}", id.div_ceil(2))];
        s.region_count = counts[id as usize - 1];
        view.stores.insert(id, s);
    }
    view
}

fn check_view(r: &RegionInfo, view: &ScheduleView, cfg: CheckerConfig) -> Option<Operator> {
    let mut next = 100;
    let mut alloc = || {
        next += 1;
        Some(next - 1)
    };
    check(r, view, &cfg, &mut alloc)
}

fn first_add(op: &Operator) -> u64 {
    match &op.steps()[0] {
        OpStep::AddLearner { store_id, .. } => *store_id,
        other => panic!("not an add: {other}"),
    }
}

#[test]
fn new_replicas_go_to_other_zones() {
    let view = zoned(&[0, 0, 5, 1, 3, 0]);
    let r = region(2, &[(10, 1, V)], 1, (1, 1));
    let op = check_view(&r, &view, cfg(3)).unwrap();
    // z2 or z3 (distinct score 100 each): the fewest regions among them is store 6.
    assert_eq!((op.desc(), first_add(&op)), ("make-up-replica", 6));
    let r = region(2, &[(10, 1, V), (11, 3, V)], 1, (2, 1));
    let op = check_view(&r, &view, cfg(3)).unwrap();
    assert_eq!(first_add(&op), 6);
    // A replaced offline peer stays in its zone's place: z3 again.
    let mut view_off = zoned(&[0, 0, 0, 0, 0, 0]);
    view_off.stores.get_mut(&5).unwrap().state = Offline;
    let r = region(2, &[(10, 1, V), (11, 3, V), (12, 5, V)], 1, (3, 1));
    let op = check_view(&r, &view_off, cfg(3)).unwrap();
    assert_eq!((op.desc(), first_add(&op)), ("replace-offline-replica", 6));
}

#[test]
fn replicas_move_to_a_better_location() {
    let view = zoned(&[0, 0, 0, 0, 0, 0]);
    // Two replicas in z1: the one on store 1 moves to z3.
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 2, (3, 1));
    let op = check_view(&r, &view, cfg(3)).unwrap();
    assert_eq!(op.desc(), "move-to-better-location");
    assert_eq!(first_add(&op), 5);
    assert_eq!(op.steps().last(), Some(&OpStep::RemovePeer { store_id: 1 }));
    // Already one per zone: nothing.
    let r = region(2, &[(10, 1, V), (11, 3, V), (12, 6, V)], 1, (3, 1));
    assert!(check_view(&r, &view, cfg(3)).is_none());
    // Disabled.
    let off = CheckerConfig {
        enable_location_replacement: false,
        ..cfg(3)
    };
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 2, (3, 1));
    assert!(check_view(&r, &view, off).is_none());
    // The extra replica to remove is the least distinct one.
    let r = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V), (13, 5, V)], 5, (4, 1));
    let op = check_view(&r, &view, cfg(3)).unwrap();
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 1 }]);
}

#[test]
fn isolation_level_is_strict() {
    let mut view = zoned(&[0, 0, 0, 0, 0, 0]);
    view.isolation = Some(0);
    for id in 3..=6 {
        view.stores.get_mut(&id).unwrap().state = Down;
    }
    // Only z1 stores are Up: no second replica in z1.
    let r = region(2, &[(10, 1, V)], 1, (1, 1));
    assert!(check_view(&r, &view, cfg(3)).is_none());
    view.stores.get_mut(&4).unwrap().state = Up;
    let op = check_view(&r, &view, cfg(3)).unwrap();
    assert_eq!(first_add(&op), 4);
}
