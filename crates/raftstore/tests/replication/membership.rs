//! Membership changes: adding, promoting, demoting and removing peers under load, joint
//! configurations across restarts, unsafe changes refused, and removed peers destroyed for good
//! (also when they missed their removal) without stale messages bringing them back.

use super::*;

/// 5. Membership changes under a concurrent writer: add a 4th voter, remove one, then one
///    joint change that promotes a learner and demotes a voter. No acknowledged write is lost
///    and every member agrees on the final membership; the removed store holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conf_changes_under_concurrent_writes() {
    let c = Cluster::run(5, 3, test_config()).await;
    let writer = Writer::start(c.client(), "cc");
    writer.wait_more(10).await;

    let p4 = c.must_add_peer(REGION, 4).await;
    writer.wait_more(10).await;

    let leader = c.leader_of(REGION).await;
    let removed_store = [3, 2, 1].into_iter().find(|s| *s != leader).expect("a follower");
    let removed = c.must_remove_peer(REGION, removed_store).await;
    writer.wait_more(10).await;
    c.wait_region_gone(removed_store, REGION).await;

    let p5 = c.must_add_learner(REGION, 5).await;
    writer.wait_more(5).await;
    let leader = c.leader_of(REGION).await;
    let region = c.leader_region(REGION).await;
    let demoted = *region
        .peers
        .iter()
        .find(|p| p.store_id != leader && p.store_id != 5 && p.store_id != 4)
        .expect("a voter to demote");
    c.must_change_peer(
        REGION,
        vec![PeerChange::AddVoter(p5), PeerChange::AddLearner(demoted)],
    )
    .await;
    // raft-rs leaves the joint configuration by itself.
    wait_for(
        "the region left its joint configuration",
        MUST_TIMEOUT,
        || async {
            let r = c.leader_region(REGION).await;
            members(&r)
                .iter()
                .all(|(_, _, role)| matches!(role, PeerRole::Voter | PeerRole::Learner))
        },
    )
    .await;
    writer.wait_more(10).await;
    let acked = writer.stop().await;

    let region = c.leader_region(REGION).await;
    let got = members(&region);
    let leader = c.leader_of(REGION).await;
    let leader_peer = region
        .peers
        .iter()
        .find(|p| p.store_id == leader)
        .expect("leader peer")
        .id;
    let role_of = |id: u64| got.iter().find(|(p, _, _)| *p == id).map(|(_, _, r)| *r);
    assert_eq!(role_of(p4.id), Some(PeerRole::Voter), "{got:?}");
    assert_eq!(role_of(p5.id), Some(PeerRole::Voter), "{got:?}");
    assert_eq!(role_of(demoted.id), Some(PeerRole::Learner), "{got:?}");
    assert_eq!(role_of(removed.id), None, "{got:?}");
    assert_eq!(role_of(leader_peer), Some(PeerRole::Voter), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        region.region_epoch.expect("epoch").conf_ver,
        1 + 2 * 3 + 1 + 1 + 2 + 1
    );

    let member_stores: Vec<u64> = got.iter().map(|(_, s, _)| *s).collect();
    c.must_have_members(&member_stores, REGION, &got).await;
    c.must_have_on_stores(&member_stores, &acked).await;
    assert!(c.region_info(removed_store, REGION).await.is_none());
    assert_eq!(
        c.local_region(removed_store, REGION).expect("tombstone").state,
        RegionState::Tombstone
    );
    assert_eq!(c.data_key_count(removed_store, b"", b""), 0);
    for (k, v) in acked.iter().step_by(5) {
        assert_eq!(c.must_get(k).await.as_ref(), Some(v));
    }
}

/// 6. Leadership moves twice while a client writes: writes keep being answered (errors are
///    retried) and leadership ends where it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfer_under_concurrent_writes() {
    let c = Cluster::run(3, 3, test_config()).await;
    let writer = Writer::start(c.client(), "lt");
    writer.wait_more(10).await;

    let first = c.leader_of(REGION).await;
    let second = [1, 2, 3].into_iter().find(|s| *s != first).expect("follower");
    let third = [1, 2, 3]
        .into_iter()
        .find(|s| *s != first && *s != second)
        .expect("follower");
    c.must_transfer_leader(REGION, second).await;
    writer.wait_more(20).await;
    c.must_transfer_leader(REGION, third).await;
    writer.wait_more(20).await;
    let acked = writer.stop().await;

    assert_eq!(c.leader_of(REGION).await, third);
    let info = c.region_info(third, REGION).await.expect("region");
    assert!(info.is_leader);
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    for (k, v) in acked.iter().step_by(5) {
        assert_eq!(c.must_get(k).await.as_ref(), Some(v));
    }
}

/// Whether a message may create a peer on a store that lacks its region (see the store loop).
fn is_creating(env: &raftstore::RaftEnvelope) -> bool {
    let m = &env.message;
    !env.is_tombstone
        && match m.get_msg_type() {
            MessageType::MsgHeartbeat => m.commit == 0,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
            _ => false,
        }
}

/// Replays `envs` to `store` and checks its loop handled them without answering for the
/// region (a recreated peer would answer a heartbeat or a vote at once).
async fn replay_creates_nothing(c: &Cluster, store: u64, envs: &[raftstore::RaftEnvelope]) {
    let before = c.net.sent_by(store, REGION);
    let router = c.router(store).expect("store running");
    for env in envs {
        router.send_raft(env.clone()).expect("send");
    }
    // Two round trips through the loop: every replayed message was stepped and any answer
    // handed to the transport by the time the second one returns.
    c.region_infos(store).await.expect("infos");
    c.region_infos(store).await.expect("infos");
    assert_eq!(
        c.net.sent_by(store, REGION),
        before,
        "a stale message brought the removed peer back to life"
    );
    assert!(c.region_info(store, REGION).await.is_none());
    assert_eq!(
        c.local_region(store, REGION).expect("tombstone").state,
        RegionState::Tombstone
    );
}

/// 7. A removed peer is destroyed: its store drops the region, its data and log, and keeps a
///    tombstone; stale messages addressed to it (replayed, also after a restart) do not bring
///    it back. A new peer on the same store is then added normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_is_destroyed_and_stays_dead() {
    let mut c = Cluster::new(3, test_config());
    c.bootstrap();
    c.start();
    c.leader_of(REGION).await;
    c.must_add_peer(REGION, 2).await;
    let (f, captured) = capture(|_, env| env.to_peer.store_id == 3 && is_creating(env));
    let capture_id = c.add_filter(f);
    let removed = c.must_add_peer(REGION, 3).await;
    c.remove_filter(capture_id);
    let stale: Vec<_> = captured.take().into_iter().map(|(_, e)| e).collect();
    assert!(
        !stale.is_empty(),
        "no peer-creating message to store 3 was captured"
    );

    let acked = put_many(&c, "d", 0..20).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    c.must_transfer_leader(REGION, 1).await;
    c.must_remove_peer(REGION, 3).await;
    c.wait_tombstone(3, REGION).await;
    let tomb = c.local_region(3, REGION).expect("tombstone");
    assert!(tomb.apply.is_none());
    assert!(tomb.region.peers.iter().any(|p| p.id == removed.id));
    assert_eq!(
        c.data_key_count(3, b"", b""),
        0,
        "the removed peer's data is left"
    );
    assert_eq!(c.raft_log_len(3, REGION), 0, "the removed peer's log is left");
    assert!(c.apply_state(3, REGION).is_none());

    replay_creates_nothing(&c, 3, &stale).await;
    c.restart_store(3);
    replay_creates_nothing(&c, 3, &stale).await;

    // The region goes on without store 3, and takes a new peer there.
    let more = put_many(&c, "e", 0..5).await;
    c.must_have_on_stores(&[1, 2], &more).await;
    let again = c.must_add_peer(REGION, 3).await;
    assert_ne!(again.id, removed.id);
    c.must_have_on_store(3, &acked).await;
    c.must_have_on_store(3, &more).await;
    assert_eq!(
        c.local_region(3, REGION).expect("region").state,
        RegionState::Normal
    );
}

/// 7b. A peer removed while cut off never sees its removal in its log; once back, the
///     others tell it (its votes come from outside the region) and it destroys itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_removed_while_partitioned_is_destroyed_after_heal() {
    let c = Cluster::run(3, 3, test_config()).await;
    let acked = put_many(&c, "p", 0..5).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    c.must_transfer_leader(REGION, 1).await;

    c.add_filter(isolate(3));
    c.must_remove_peer(REGION, 3).await;
    let more = put_many(&c, "q", 0..5).await;
    assert!(
        c.region_info(3, REGION).await.is_some(),
        "the isolated peer cannot know it was removed"
    );

    c.clear_filters();
    c.wait_tombstone(3, REGION).await;
    assert_eq!(c.data_key_count(3, b"", b""), 0);
    c.must_have_on_stores(&[1, 2], &more).await;
    let region = c.leader_region(REGION).await;
    assert_eq!(region.peers.len(), 2);
}

/// A peer-creating message that arrives after its peer was removed (the peer never came up)
/// creates at most a short-lived uninitialized peer: the leader tells it it is gone, and a new
/// peer of the region can later be added on that store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_message_for_never_created_peer_leaves_no_zombie() {
    let c = Cluster::run(4, 3, test_config()).await;
    let acked = put_many(&c, "z", 0..5).await;
    let (cap, captured) = capture(|_, env| env.to_peer.store_id == 4 && is_creating(env));
    let cap = c.add_filter(cap);
    let cut = c.add_filter(isolate(4));
    let ghost = c.alloc_peer(4);
    c.must_change_peer(REGION, vec![PeerChange::AddLearner(ghost)])
        .await;
    wait_until("a message to the new learner", MUST_TIMEOUT, || {
        !captured.is_empty()
    })
    .await;
    c.must_change_peer(REGION, vec![PeerChange::Remove(ghost)]).await;
    c.remove_filter(cap);
    c.remove_filter(cut);

    // The message arrives now, long after the removal.
    let (_, late) = captured.take().into_iter().next().expect("captured");
    c.router(4).expect("store 4").send_raft(late).expect("send");
    wait_until("store 4 destroyed the late peer", MUST_TIMEOUT, || {
        c.local_region(4, REGION)
            .is_some_and(|r| r.state == RegionState::Tombstone)
    })
    .await;

    let real = c.must_add_learner(REGION, 4).await;
    assert_ne!(real.id, ghost.id);
    c.must_have_on_store(4, &acked).await;
}

/// A learner removed while cut off never learns of its removal by itself (learners do not
/// campaign, so no member ever answers it with a tombstone notice). A new learner of the
/// region added on the same store afterwards must still come up there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_readded_on_store_whose_removed_learner_missed_its_removal() {
    let c = Cluster::run(4, 3, test_config()).await;
    let acked = put_many(&c, "l", 0..5).await;
    let old = c.must_add_learner(REGION, 4).await;
    c.must_have_on_store(4, &acked).await;

    c.add_filter(isolate(4));
    c.must_change_peer(REGION, vec![PeerChange::Remove(old)]).await;
    c.clear_filters();
    let new = c.alloc_peer(4);
    c.must_change_peer(REGION, vec![PeerChange::AddLearner(new)])
        .await;
    let more = put_many(&c, "m", 0..5).await;

    c.wait_region_on(4, REGION, "the new learner", |i| {
        i.region.peers.iter().any(|p| p.id == new.id)
    })
    .await;
    c.must_have_on_store(4, &more).await;
}

/// Whether `env` carries the entry that leaves a joint configuration (a V2 conf change
/// without context).
fn carries_leave_joint(env: &raftstore::RaftEnvelope) -> bool {
    env.message
        .get_entries()
        .iter()
        .any(|e| e.get_entry_type() == raft::eraftpb::EntryType::EntryConfChangeV2 && e.context.is_empty())
}

/// The whole cluster restarts while the region is in a joint configuration (the entry that
/// would leave it never got out of the leader): after the restart the region leaves it by
/// itself, with the roles the joint change asked for, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_in_joint_configuration_leaves_it() {
    let mut c = Cluster::run(4, 3, test_config()).await;
    let acked = put_many(&c, "j", 0..10).await;
    let learner = c.must_add_learner(REGION, 4).await;
    let leader = c.leader_of(REGION).await;
    let demoted = c
        .peer_on(
            REGION,
            [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower"),
        )
        .await
        .expect("peer");

    c.add_filter(std::sync::Arc::new(|_: u64, env: &raftstore::RaftEnvelope| {
        if carries_leave_joint(env) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }));
    c.must_change_peer(
        REGION,
        vec![PeerChange::AddVoter(learner), PeerChange::AddLearner(demoted)],
    )
    .await;
    // Every store applied the joint configuration (followers learn its commit from
    // heartbeats); none can leave it.
    for s in [1, 2, 3, 4] {
        c.wait_region_on(s, REGION, "the joint configuration", |i| {
            members(&i.region)
                .iter()
                .any(|(_, _, r)| matches!(r, PeerRole::IncomingVoter | PeerRole::DemotingVoter))
        })
        .await;
    }

    for s in [1, 2, 3, 4] {
        c.stop_store(s);
    }
    c.clear_filters();
    for s in [1, 2, 3, 4] {
        c.start_store(s);
    }
    wait_for(
        "the region left the joint configuration",
        MUST_TIMEOUT,
        || async {
            members(&c.leader_region(REGION).await)
                .iter()
                .all(|(_, _, r)| matches!(r, PeerRole::Voter | PeerRole::Learner))
        },
    )
    .await;
    let region = c.leader_region(REGION).await;
    let got = members(&region);
    let role_of = |id: u64| got.iter().find(|(p, _, _)| *p == id).map(|(_, _, r)| *r);
    assert_eq!(role_of(learner.id), Some(PeerRole::Voter), "{got:?}");
    assert_eq!(role_of(demoted.id), Some(PeerRole::Learner), "{got:?}");
    c.must_have_members(&[1, 2, 3, 4], REGION, &got).await;
    let more = put_many(&c, "k", 0..5).await;
    c.must_have_on_stores(&[1, 2, 3, 4], &acked).await;
    c.must_have_on_stores(&[1, 2, 3, 4], &more).await;
}

/// A conf change that would leave fewer live voters than a quorum is refused, and the region
/// stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_conf_change_is_refused() {
    // Peers silent for 300 ms are reported down: by then the leader's check-quorum round
    // (every election timeout, 200 ms) has marked them inactive too.
    let cfg = raftstore::StoreConfig {
        max_peer_down: Duration::from_millis(300),
        ..test_config()
    };
    let mut c = Cluster::run(3, 3, cfg).await;
    c.must_put(b"a", b"1").await;
    let leader = c.leader_of(REGION).await;
    let mut followers = [1, 2, 3].into_iter().filter(|s| *s != leader);
    let (down, other) = (followers.next().expect("store"), followers.next().expect("store"));
    let before = c.leader_region(REGION).await;
    let down_peer = c.peer_on(REGION, down).await.expect("peer");
    let other_peer = c.peer_on(REGION, other).await.expect("peer");
    c.stop_store(down);
    c.wait_region_on(leader, REGION, "the stopped follower reported down", |i| {
        i.down_peers.iter().any(|(p, _)| p.id == down_peer.id)
    })
    .await;

    // Removing (or demoting) the live follower would leave {leader, down}: refused.
    for change in [PeerChange::Remove(other_peer), PeerChange::AddLearner(other_peer)] {
        let r = c.change_peer(REGION, vec![change.clone()]).await;
        assert!(
            matches!(r, Err(Failure::Raft(Error::InvalidConfChange { .. }))),
            "{change:?} was not refused: {r:?}"
        );
    }
    assert_eq!(members(&c.leader_region(REGION).await), members(&before));
    // Removing the dead one is fine.
    c.must_change_peer(REGION, vec![PeerChange::Remove(down_peer)])
        .await;
    c.must_put(b"b", b"2").await;
    c.must_have_on_stores(&[leader, other], &[(b"b".to_vec(), b"2".to_vec())])
        .await;
}

/// A voter removed while its store was down restarts believing it is still a member; the
/// others answer its campaign with a tombstone notice and it destroys itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_removed_while_down_is_destroyed_after_restart() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let acked = put_many(&c, "r", 0..5).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    c.must_transfer_leader(REGION, 1).await;
    c.stop_store(3);
    c.must_remove_peer(REGION, 3).await;
    let more = put_many(&c, "s", 0..5).await;
    c.start_store(3);
    c.wait_tombstone(3, REGION).await;
    assert_eq!(c.data_key_count(3, b"", b""), 0);
    c.must_have_on_stores(&[1, 2], &more).await;
}

/// A learner removed while cut off never hears of its removal (it does not campaign, and no
/// member sends it anything any more): it should still be cleaned up once it can reach the
/// others again, not keep the region's data on its store forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_removed_while_partitioned_is_destroyed_after_heal() {
    let c = Cluster::run(4, 3, test_config()).await;
    let acked = put_many(&c, "l", 0..5).await;
    let learner = c.must_add_learner(REGION, 4).await;
    c.must_have_on_store(4, &acked).await;

    c.add_filter(isolate(4));
    c.must_change_peer(REGION, vec![PeerChange::Remove(learner)])
        .await;
    put_many(&c, "m", 0..5).await;
    c.clear_filters();
    c.wait_region_gone(4, REGION).await;
    assert_eq!(c.data_key_count(4, b"", b""), 0);
}
