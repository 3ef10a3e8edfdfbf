use std::time::{Duration, Instant};

use atoll_proto::{eraftpb, metapb};

use super::*;
use crate::schedule::builder;
use crate::schedule::test_util::{region, with_pending, L, V};

fn no_target(_: &RegionInfo, _: u64) -> Option<u64> {
    None
}

fn target(store: u64) -> impl Fn(&RegionInfo, u64) -> Option<u64> {
    move |_: &RegionInfo, _: u64| Some(store)
}

#[test]
fn add_peer_advances_with_heartbeats() {
    let now = Instant::now();
    // One voter on store 1 (leader); add a peer on store 4 as peer 40.
    let r0 = region(2, &[(10, 1, V)], 1, (1, 1));
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    assert_eq!(op.kind().to_string(), "region,replica");
    assert_eq!(op.timeout(), REGION_OPERATOR_TIMEOUT);
    let add = OpStep::AddLearner {
        store_id: 4,
        peer_id: 40,
    };
    let promote = OpStep::PromoteLearner {
        store_id: 4,
        peer_id: 40,
    };
    assert_eq!(op.check(&r0, now, &no_target), OpProgress::Running(add.clone()));
    // Same heartbeat again: the same step again.
    assert_eq!(op.check(&r0, now, &no_target), OpProgress::Running(add.clone()));
    // The learner shows but is pending: not done yet.
    let r1 = with_pending(region(2, &[(10, 1, V), (40, 4, L)], 1, (2, 1)), 40);
    assert_eq!(op.check(&r1, now, &no_target), OpProgress::Running(add.clone()));
    // Caught up: promote.
    let r2 = region(2, &[(10, 1, V), (40, 4, L)], 1, (2, 1));
    assert_eq!(
        op.check(&r2, now, &no_target),
        OpProgress::Running(promote.clone())
    );
    assert_eq!(op.current_step(), 1);
    let r3 = region(2, &[(10, 1, V), (40, 4, V)], 1, (3, 1));
    assert_eq!(op.check(&r3, now, &no_target), OpProgress::Finished);
}

#[test]
fn missed_heartbeats_skip_done_steps() {
    let r0 = region(2, &[(10, 1, V)], 1, (1, 1));
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    let done = region(2, &[(10, 1, V), (40, 4, V)], 1, (3, 1));
    assert_eq!(op.check(&done, Instant::now(), &no_target), OpProgress::Finished);
}

#[test]
fn timeout_and_stale() {
    let now = Instant::now();
    let r0 = region(2, &[(10, 1, V), (11, 2, V)], 1, (1, 1));
    let mut op = builder::transfer_leader("admin-transfer-leader", OpKind::ADMIN, &r0, 2).unwrap();
    assert_eq!(op.timeout(), LEADER_OPERATOR_TIMEOUT);
    assert_eq!(op.kind().to_string(), "leader,admin");
    op.set_created(now - LEADER_OPERATOR_TIMEOUT - Duration::from_secs(1));
    assert_eq!(op.check(&r0, now, &no_target), OpProgress::TimedOut);
    // Done beats timed out.
    let moved = region(2, &[(10, 1, V), (11, 2, V)], 2, (1, 1));
    assert_eq!(op.check(&moved, now, &no_target), OpProgress::Finished);

    // A split (version) or someone else's conf change (conf_ver) makes it stale.
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    let split = region(2, &[(10, 1, V), (11, 2, V)], 1, (1, 2));
    assert!(matches!(op.check(&split, now, &no_target), OpProgress::Stale(_)));
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    let other = region(2, &[(10, 1, V)], 1, (2, 1));
    assert!(matches!(op.check(&other, now, &no_target), OpProgress::Stale(_)));
    // Its own change is not someone else's.
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    let own = with_pending(region(2, &[(10, 1, V), (11, 2, V), (40, 4, L)], 1, (2, 1)), 40);
    assert!(matches!(op.check(&own, now, &no_target), OpProgress::Running(_)));
    // Another peer appeared on the target store: impossible.
    let mut op = builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap();
    let taken = region(2, &[(10, 1, V), (11, 2, V), (99, 4, L)], 1, (1, 1));
    assert!(matches!(op.check(&taken, now, &no_target), OpProgress::Stale(_)));
}

#[test]
fn removing_the_leader_transfers_leadership_first() {
    let now = Instant::now();
    let r0 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 2, (3, 1));
    let is_up = |_: u64| true;
    // The builder puts a transfer in front when the leader's peer goes.
    let op = builder::remove_peer("admin-remove-peer", OpKind::ADMIN, &r0, 2, &is_up).unwrap();
    assert_eq!(
        op.steps(),
        &[
            OpStep::TransferLeader {
                from_store: 2,
                to_store: 1
            },
            OpStep::RemovePeer { store_id: 2 }
        ]
    );
    // Leadership moved to the removed store after the operator was made: the operator
    // inserts a transfer itself, and waits if no voter can take over.
    let r1 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 1, (3, 1));
    let mut op = builder::remove_peer("remove-extra-replica", OpKind::REPLICA, &r1, 3, &is_up).unwrap();
    assert_eq!(op.steps(), &[OpStep::RemovePeer { store_id: 3 }]);
    let led_by_3 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 3, (3, 1));
    assert_eq!(op.check(&led_by_3, now, &no_target), OpProgress::Waiting);
    let transfer = OpStep::TransferLeader {
        from_store: 3,
        to_store: 2,
    };
    assert_eq!(
        op.check(&led_by_3, now, &target(2)),
        OpProgress::Running(transfer.clone())
    );
    assert_eq!(op.steps().len(), 2);
    assert!(op.kind().contains(OpKind::LEADER));
    let led_by_2 = region(2, &[(10, 1, V), (11, 2, V), (12, 3, V)], 2, (3, 1));
    assert_eq!(
        op.check(&led_by_2, now, &no_target),
        OpProgress::Running(OpStep::RemovePeer { store_id: 3 })
    );
    let removed = region(2, &[(10, 1, V), (11, 2, V)], 2, (4, 1));
    assert_eq!(op.check(&removed, now, &no_target), OpProgress::Finished);
    // The last voter is never removed.
    let single = region(5, &[(50, 1, V)], 1, (1, 1));
    assert!(builder::remove_peer("x", OpKind::ADMIN, &single, 1, &is_up).is_err());
}

#[test]
fn steps_on_the_wire() {
    let r = region(2, &[(10, 1, V), (11, 2, V), (40, 4, L)], 1, (5, 3));
    let leader = r.leader.unwrap();
    let check_common = |resp: &pdpb::RegionHeartbeatResponse| {
        assert_eq!(resp.region_id, 2);
        assert_eq!(
            resp.region_epoch,
            Some(metapb::RegionEpoch {
                conf_ver: 5,
                version: 3
            })
        );
        assert_eq!(resp.target_peer, Some(leader));
    };
    let resp = OpStep::AddLearner {
        store_id: 5,
        peer_id: 50,
    }
    .to_response(&r)
    .unwrap();
    check_common(&resp);
    let cp = resp.change_peer.unwrap();
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::AddLearnerNode as i32);
    assert_eq!(
        cp.peer.unwrap(),
        metapb::Peer {
            id: 50,
            store_id: 5,
            role: metapb::PeerRole::Learner as i32,
            ..Default::default()
        }
    );
    assert!(resp.transfer_leader.is_none());

    let resp = OpStep::PromoteLearner {
        store_id: 4,
        peer_id: 40,
    }
    .to_response(&r)
    .unwrap();
    check_common(&resp);
    let cp = resp.change_peer.unwrap();
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::AddNode as i32);
    assert_eq!(cp.peer.unwrap().role, metapb::PeerRole::Voter as i32);

    let resp = OpStep::RemovePeer { store_id: 2 }.to_response(&r).unwrap();
    check_common(&resp);
    let cp = resp.change_peer.unwrap();
    assert_eq!(cp.change_type, eraftpb::ConfChangeType::RemoveNode as i32);
    assert_eq!(cp.peer.unwrap().id, 11);

    let resp = OpStep::TransferLeader {
        from_store: 1,
        to_store: 2,
    }
    .to_response(&r)
    .unwrap();
    check_common(&resp);
    assert!(resp.change_peer.is_none());
    let tl = resp.transfer_leader.unwrap();
    assert_eq!(tl.peer.unwrap().id, 11);
    assert!(tl.peers.is_empty());
    assert!(resp.change_peer_v2.is_none());

    // Nothing to send without a leader.
    let mut leaderless = r.clone();
    leaderless.leader = None;
    assert!(OpStep::RemovePeer { store_id: 2 }
        .to_response(&leaderless)
        .is_none());
}

#[test]
fn text_like_pd() {
    let r0 = region(2, &[(10, 1, V), (11, 2, V)], 1, (2, 7));
    let op = builder::replace_peer("replace-down-replica", OpKind::REPLICA, &r0, 1, 4, 40).unwrap();
    let text = op.to_string();
    assert!(
        text.starts_with("replace-down-replica {mv peer: store [1] to [4]} (kind:leader,region,replica, region:2(7, 2), createAt:"),
        "{text}"
    );
    assert!(
        text.contains("steps:[0:{add learner peer 40 on store 4}, 1:{promote learner peer 40 on store 4 to voter}, 2:{transfer leader from store 1 to store 4}, 3:{remove peer on store 1}], timeout:[10m0s])"),
        "{text}"
    );
}
