use super::*;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{counts, region, states, with_down, with_pending, L, V};
use crate::store_info::StoreStateName::{Disconnected, Down, Offline, Tombstone, Up};

/// Runs the checker with peer ids handed out from 100.
fn run(
    region: &RegionInfo,
    st: &[(u64, StoreStateName)],
    cnt: &[(u64, usize)],
    cfg: CheckerConfig,
) -> Option<Operator> {
    let (st, cnt) = (states(st), counts(cnt));
    let view = ClusterView {
        stores: &st,
        region_counts: &cnt,
    };
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
