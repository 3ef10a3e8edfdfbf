//! Replication through raftstore: a multi-store cluster in one process (see `cluster/mod.rs`)
//! under leader failures, partitions, lagging followers, membership changes and leader
//! transfers. Every test checks that no acknowledged write is lost, on every replica's engine.

mod cluster;

use std::time::{Duration, Instant};

use atoll_proto::metapb::PeerRole;
use cluster::*;
use engine_traits::{Modify, Peekable, CF_DEFAULT};
use raft::eraftpb::MessageType;
use raftstore::{Error, PeerChange, RegionState};

fn pair(prefix: &str, i: usize) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{prefix}{i:04}").into_bytes(),
        format!("{prefix}-value-{i}").into_bytes(),
    )
}

async fn put_many(c: &Client, prefix: &str, range: std::ops::Range<usize>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![];
    for i in range {
        let (k, v) = pair(prefix, i);
        c.must_put(&k, &v).await;
        out.push((k, v));
    }
    out
}

/// Waits until a store other than `old` leads the region (a newer term than `old`'s).
async fn wait_new_leader(c: &Client, old: u64) -> u64 {
    let deadline = Instant::now() + MUST_TIMEOUT;
    loop {
        if let Some((s, _)) = c.leader(REGION).await {
            if s != old {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "no leader other than store {old}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// 1. The leader's store stops: the other two elect a leader and keep taking writes; the
///    stopped store, restarted over its engines, catches up with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_down_elects_new_leader_and_restarted_store_catches_up() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "a", 0..10).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;

    let old = c.leader_of(REGION).await;
    c.stop_store(old);
    let new = wait_new_leader(&c, old).await;
    assert_ne!(new, old);
    acked.extend(put_many(&c, "b", 0..10).await);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != old).collect();
    c.must_have_on_stores(&others, &acked).await;
    assert!(
        c.get_on_store(old, b"b0000").is_none(),
        "a stopped store applied a write"
    );

    c.start_store(old);
    c.must_have_on_store(old, &acked).await;
    for (k, v) in &acked {
        assert_eq!(c.must_get(k).await.as_ref(), Some(v));
    }
    // The restarted store is a working replica again: it follows and applies new writes.
    let more = put_many(&c, "c", 0..3).await;
    c.must_have_on_stores(&[1, 2, 3], &more).await;
    assert!(c.fatal_events().is_empty());
}

/// 2. The leader is cut off from the two others while a client keeps writing: every write
///    acknowledged before, during and after the partition is on every store once it heals,
///    and the old leader stepped down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_loses_no_acknowledged_write() {
    let c = Cluster::run(3, 3, test_config()).await;
    let writer = Writer::start(c.client(), "w");
    writer.wait_more(20).await;

    let old = c.leader_of(REGION).await;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != old).collect();
    c.add_filter(partition(&[old], &others));
    let new = wait_new_leader(&c, old).await;
    writer.wait_more(20).await;

    c.clear_filters();
    writer.wait_more(20).await;
    let acked = writer.stop().await;
    assert!(acked.len() >= 60);
    c.must_have_on_stores(&[1, 2, 3], &acked).await;

    let new_term = c
        .region_info(new, REGION)
        .await
        .expect("new leader's region")
        .term;
    let old_info = c
        .wait_region_on(old, REGION, "the old leader following", |i| {
            !i.is_leader && i.term >= new_term
        })
        .await;
    assert!(!old_info.is_leader);
    for (k, v) in acked.iter().step_by(7) {
        assert_eq!(c.must_get(k).await.as_ref(), Some(v));
    }
}

fn refused(outcome: &Outcome<Option<Vec<u8>>>) -> bool {
    matches!(
        outcome,
        Err(Failure::Raft(
            Error::NotLeader { .. } | Error::ReadIndexNotReady { .. }
        )) | Err(Failure::Timeout)
    )
}

/// 3. A leader partitioned alone serves neither reads nor writes: its reads fail in bounded
///    time (even while it still believes it leads), its writes are never acknowledged, and
///    nothing it accepted alone survives the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_leader_serves_neither_reads_nor_writes() {
    let c = Cluster::run(3, 3, test_config()).await;
    c.must_put(b"k", b"v1").await;
    let old = c.leader_of(REGION).await;
    assert_eq!(
        c.read_on(old, REGION, b"k", ATTEMPT_TIMEOUT)
            .await
            .expect("read on the leader"),
        Some(b"v1".to_vec())
    );

    c.add_filter(isolate(old));
    // Right away, while the isolated peer still believes it leads (and may hold a lease).
    let early_read = {
        let client = c.client();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = client.read_on(old, REGION, b"k", Duration::from_secs(5)).await;
            (r, t, t.elapsed())
        })
    };
    let minority_write = {
        let client = c.client();
        tokio::spawn(async move {
            client
                .write_on(old, REGION, vec![put(b"m", b"minority")], Duration::from_secs(60))
                .await
        })
    };

    let new = wait_new_leader(&c, old).await;
    c.must_put(b"k", b"v2").await;
    let v2_acked = Instant::now();

    // Issued before the majority acknowledged anything newer: a lease read of v1 is fine.
    let (r, started, took) = early_read.await.expect("read task");
    assert!(
        refused(&r) || (matches!(&r, Ok(Some(v)) if v == b"v1") && started < v2_acked),
        "isolated leader answered a read with {r:?}"
    );
    assert!(took < Duration::from_secs(3), "read refused only after {took:?}");

    // After the majority acknowledged v2: the old leader must not serve v1 (or anything).
    let t = Instant::now();
    let r = c.read_on(old, REGION, b"k", Duration::from_secs(5)).await;
    assert!(
        refused(&r),
        "isolated leader answered a read after a newer write: {r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "read refused only after {:?}",
        t.elapsed()
    );
    let w = c
        .write_on(old, REGION, vec![put(b"m2", b"minority")], Duration::from_secs(1))
        .await;
    assert!(w.is_err(), "isolated peer acknowledged a write");
    let info = c
        .region_info(old, REGION)
        .await
        .expect("region on the old leader");
    assert!(
        !info.is_leader,
        "check-quorum should have made the isolated leader step down"
    );

    c.clear_filters();
    c.must_put(b"k", b"v3").await;
    c.must_have_on_stores(&[1, 2, 3], &[(b"k".to_vec(), b"v3".to_vec())])
        .await;
    let w = tokio::time::timeout(MUST_TIMEOUT, minority_write)
        .await
        .expect("the minority write is answered once the partition heals")
        .expect("write task");
    assert!(
        w.is_err(),
        "a write accepted by an isolated leader was acknowledged"
    );
    for s in [1, 2, 3] {
        assert_eq!(
            c.get_on_store(s, b"m"),
            None,
            "store {s} applied a minority write"
        );
        assert_eq!(
            c.get_on_store(s, b"m2"),
            None,
            "store {s} applied a minority write"
        );
    }
    assert_eq!(c.must_get(b"m").await, None);
    assert_eq!(c.leader_of(REGION).await, new);
}

/// 4. A follower cut off while the leader compacts its log past the follower's position
///    catches up by snapshot once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let c = Cluster::run(3, 3, snapshot_config()).await;
    let mut acked = put_many(&c, "s", 0..10).await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &acked).await;

    let applied_before = c
        .apply_state(follower, REGION)
        .expect("apply state")
        .applied_index;
    let snaps_before = c.net.snapshots_received(follower);
    let metric_before = raftstore::metrics::SNAPSHOT_TOTAL
        .with_label_values(&["applied"])
        .get();

    c.add_filter(isolate(follower));
    acked.extend(put_many(&c, "t", 0..60).await);
    let leader = c.leader_of(REGION).await;
    wait_until(
        "the leader compacted its log past the follower",
        MUST_TIMEOUT,
        || {
            c.apply_state(leader, REGION)
                .is_some_and(|a| a.truncated_index > applied_before)
        },
    )
    .await;
    assert_eq!(c.get_on_store(follower, b"t0000"), None);

    // The first transfer arrives corrupted: the receiver refuses it, the leader sends again.
    c.net.corrupt_next_snapshots(1);
    c.clear_filters();
    c.must_have_on_store(follower, &acked).await;
    assert!(
        c.net.snapshots_received(follower) > snaps_before,
        "the follower caught up without a snapshot"
    );
    let after = c.apply_state(follower, REGION).expect("apply state");
    assert!(
        after.truncated_index > applied_before,
        "the follower's log start did not jump: {after:?} (applied before: {applied_before})"
    );
    assert!(
        raftstore::metrics::SNAPSHOT_TOTAL
            .with_label_values(&["applied"])
            .get()
            > metric_before
    );
    assert_eq!(
        c.local_region(follower, REGION).expect("region").state,
        RegionState::Normal
    );
    assert!(
        c.net.stats().snapshots_failed >= 1,
        "the corrupted transfer was not refused"
    );
    // And it keeps replicating by log afterwards.
    let more = put_many(&c, "u", 0..5).await;
    c.must_have_on_stores(&[1, 2, 3], &more).await;
}

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
    c.wait_region_gone(3, REGION).await;

    wait_until("store 3 persisted a tombstone", MUST_TIMEOUT, || {
        c.local_region(3, REGION)
            .is_some_and(|r| r.state == RegionState::Tombstone)
    })
    .await;
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
    c.wait_region_gone(3, REGION).await;
    wait_until("store 3 persisted a tombstone", MUST_TIMEOUT, || {
        c.local_region(3, REGION)
            .is_some_and(|r| r.state == RegionState::Tombstone)
    })
    .await;
    assert_eq!(c.data_key_count(3, b"", b""), 0);
    c.must_have_on_stores(&[1, 2], &more).await;
    let region = c.leader_region(REGION).await;
    assert_eq!(region.peers.len(), 2);
}

/// Delayed and dropped messages: writes commit through a slow network, and through a
/// follower that loses every append (the other one is enough); the follower catches up once
/// the appends flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_dropped_messages() {
    let c = Cluster::run(3, 3, test_config()).await;
    let delay = c.add_filter(delay_region(REGION, Duration::from_millis(30)));
    let t = Instant::now();
    let mut acked = put_many(&c, "x", 0..5).await;
    assert!(
        t.elapsed() >= Duration::from_millis(5 * 60),
        "writes were not delayed: {:?}",
        t.elapsed()
    );
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    c.remove_filter(delay);

    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.add_filter(drop_type_to(MessageType::MsgAppend, follower));
    let cut = put_many(&c, "y", 0..10).await;
    assert_eq!(c.get_on_store(follower, b"y0000"), None);
    acked.extend(cut);
    c.clear_filters();
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
}

/// Follower reads: a follower whose appends arrive late answers a read only once it applied
/// everything acknowledged before the read (it never serves its stale value), and a follower
/// cut off from the leader answers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_read_never_returns_stale_data() {
    let c = Cluster::run(3, 3, test_config()).await;
    c.must_put(b"k", b"v1").await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &[(b"k".to_vec(), b"v1".to_vec())])
        .await;
    assert_eq!(
        c.replica_read_on(follower, REGION, b"k", ATTEMPT_TIMEOUT)
            .await
            .expect("follower read"),
        Some(b"v1".to_vec())
    );

    let slow = std::sync::Arc::new(move |_: u64, env: &raftstore::RaftEnvelope| {
        if env.to_peer.store_id == follower && env.message.get_msg_type() == MessageType::MsgAppend {
            Verdict::Delay(Duration::from_millis(700))
        } else {
            Verdict::Pass
        }
    });
    let slow = c.add_filter(slow);
    c.must_put(b"k", b"v2").await;
    let lagging = c.get_on_store(follower, b"k") == Some(b"v1".to_vec());
    let r = c
        .replica_read_on(follower, REGION, b"k", Duration::from_secs(5))
        .await;
    assert_eq!(
        r.expect("follower read"),
        Some(b"v2".to_vec()),
        "follower read (follower lagging when asked: {lagging})"
    );
    c.remove_filter(slow);

    c.add_filter(isolate(follower));
    c.must_put(b"k", b"v3").await;
    let r = c
        .replica_read_on(follower, REGION, b"k", Duration::from_secs(3))
        .await;
    assert!(
        matches!(
            r,
            Err(Failure::Raft(
                Error::NotLeader { .. } | Error::ReadIndexNotReady { .. }
            )) | Err(Failure::Timeout)
        ),
        "a cut-off follower answered a read: {r:?}"
    );
    c.clear_filters();
    assert_eq!(
        c.replica_read_on(follower, REGION, b"k", Duration::from_secs(5))
            .await
            .expect("follower read after heal"),
        Some(b"v3".to_vec())
    );
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

/// Lease reads versus a restarted follower. The leader holds a lease (a quorum acknowledged
/// it recently) and serves reads locally, trusting that no follower votes for anyone else
/// within an election timeout of hearing from it. A follower that restarts forgets it heard
/// from the leader and votes at once: here the leader is cut off from one follower (which
/// keeps asking for pre-votes), renews its lease with the other, then loses that one too while
/// it restarts; the restarted follower grants the waiting candidate its votes, the new leader
/// acknowledges a newer value, and the old leader must not serve the old one from its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_read_after_follower_restart_is_not_stale() {
    // Election timeout 1 s (lease 0.9 s): the whole sequence below fits in the lease.
    let cfg = raftstore::StoreConfig {
        election_tick: 50,
        ..test_config()
    };
    let mut c = Cluster::run(3, 3, cfg).await;
    c.must_put(b"k", b"v1").await;
    c.must_have_on_stores(&[1, 2, 3], &[(b"k".to_vec(), b"v1".to_vec())])
        .await;
    // No transfer here: starting one would block the leader's lease for a while.
    let leader = c.leader_of(REGION).await;
    let mut others = [1, 2, 3].into_iter().filter(|s| *s != leader);
    let (follower, candidate) = (others.next().expect("store"), others.next().expect("store"));

    let (cap, pre_votes) = capture(move |from, env| {
        from == candidate
            && env.to_peer.store_id == follower
            && env.message.get_msg_type() == MessageType::MsgRequestPreVote
    });
    c.add_filter(cap);
    c.add_filter(partition(&[leader], &[candidate]));
    wait_until("the cut-off follower asks for pre-votes", MUST_TIMEOUT, || {
        !pre_votes.is_empty()
    })
    .await;
    // No write since the cut: the candidate's log is as up to date as the follower's. The
    // candidate asks only after an election timeout without the leader, so the lease of the
    // last write lapsed by now.

    // A read through ReadIndex (the follower answers) renews the lease now.
    assert_eq!(
        c.read_on(leader, REGION, b"k", ATTEMPT_TIMEOUT)
            .await
            .expect("read renewing the lease"),
        Some(b"v1".to_vec())
    );
    let renewed = Instant::now();

    // The follower restarts, out of the leader's reach, and hears the candidate first.
    c.add_filter(isolate(leader));
    c.restart_store(follower);
    let (_, pre_vote) = pre_votes.take().pop().expect("pre-vote");
    c.router(follower)
        .expect("follower")
        .send_raft(pre_vote)
        .expect("send");
    let new = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.leader(REGION).await {
                Some((s, _)) if s != leader => break s,
                _ => {}
            }
            assert!(Instant::now() < deadline, "the candidate was not elected");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    // With the fix, the restarted follower ignores vote requests for an election timeout, so
    // the new leader may be either of the two; what matters is what the old one serves below.
    c.write_on(new, REGION, vec![put(b"k", b"v2")], ATTEMPT_TIMEOUT)
        .await
        .expect("write on the new leader");
    let v2_acked = Instant::now();

    let r = c.read_on(leader, REGION, b"k", ATTEMPT_TIMEOUT).await;
    let within_lease = v2_acked.duration_since(renewed) < Duration::from_millis(900);
    assert!(
        !matches!(&r, Ok(Some(v)) if v == b"v1"),
        "the old leader served v1 after v2 was acknowledged (lease renewed {:?} before v2 was acked, \
         within lease: {within_lease})",
        v2_acked.duration_since(renewed)
    );
}

/// A deterministic pseudo-random sequence (xorshift64*), so a failing schedule can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
enum OpKind {
    /// A write of `value` to the register; `ok`: acknowledged (else indeterminate).
    Write { value: u64, ok: bool },
    /// A read that returned `value` (0: never written).
    Read { value: u64 },
}

#[derive(Debug, Clone)]
struct Op {
    register: usize,
    kind: OpKind,
    start: Instant,
    end: Instant,
}

type History = std::sync::Arc<std::sync::Mutex<Vec<Op>>>;

fn register_key(r: usize) -> Vec<u8> {
    format!("register-{r}").into_bytes()
}

fn decode_value(v: Option<Vec<u8>>) -> u64 {
    v.map(|b| String::from_utf8_lossy(&b).parse().expect("register value"))
        .unwrap_or(0)
}

/// Checks a register history against linearizability for one sequential writer with strictly
/// increasing values: a read returns a value at least as new as every write acknowledged
/// before it started, and never a value whose write started after it ended.
fn check_register_history(history: &[Op], register: usize) {
    let ops: Vec<&Op> = history.iter().filter(|o| o.register == register).collect();
    let writes: Vec<(u64, bool, Instant, Instant)> = ops
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::Write { value, ok } => Some((value, ok, o.start, o.end)),
            OpKind::Read { .. } => None,
        })
        .collect();
    for o in &ops {
        let OpKind::Read { value } = o.kind else {
            continue;
        };
        let floor = writes
            .iter()
            .filter(|(_, ok, _, end)| *ok && *end < o.start)
            .map(|(v, ..)| *v)
            .max()
            .unwrap_or(0);
        let ceiling = writes
            .iter()
            .filter(|(_, _, start, _)| *start < o.end)
            .map(|(v, ..)| *v)
            .max()
            .unwrap_or(0);
        assert!(
            value >= floor,
            "register {register}: stale read of {value}, while {floor} was acknowledged before the read"
        );
        assert!(
            value <= ceiling,
            "register {register}: read {value} before it was written (latest write started: {ceiling})"
        );
        assert!(
            value == 0 || writes.iter().any(|(v, ..)| *v == value),
            "register {register}: read {value}, which nobody wrote"
        );
    }
}

/// Writers, a reader and a nemesis (partitions, isolated leaders, leader transfers, store
/// crashes and restarts) on one cluster. Afterwards every acknowledged write is on every
/// store and the read history of each register is linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_acknowledged_writes_and_linearizable_reads() {
    chaos_run(snapshot_config()).await;
}

/// The same with the Raft log and applied entries written by their own threads
/// (`store-io-pool-size = 1`, `apply-pool-size = 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_writer_threads() {
    chaos_run(raftstore::StoreConfig {
        store_io_pool_size: 1,
        apply_pool_size: 1,
        ..snapshot_config()
    })
    .await;
}

async fn chaos_run(cfg: raftstore::StoreConfig) {
    const WRITERS: usize = 2;
    // Aggressive log GC: stores that were down or cut off catch up by snapshot.
    let mut c = Cluster::run(3, 3, cfg).await;
    let history: History = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_logs: std::sync::Arc<std::sync::Mutex<Acked>> = Default::default();
    let mut tasks = vec![];
    for w in 0..WRITERS {
        let (client, history, stop, acked_logs) =
            (c.client(), history.clone(), stop.clone(), acked_logs.clone());
        tasks.push(tokio::spawn(async move {
            let mut value = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                value += 1;
                let v = value.to_string().into_bytes();
                let log = format!("log-{w}-{value:06}").into_bytes();
                let start = Instant::now();
                let r = client
                    .try_write(vec![put(&register_key(w), &v), put(&log, &v)])
                    .await;
                let end = Instant::now();
                history.lock().expect("history").push(Op {
                    register: w,
                    kind: OpKind::Write { value, ok: r.is_ok() },
                    start,
                    end,
                });
                if r.is_ok() {
                    acked_logs.lock().expect("acked").push((log, v));
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    {
        let (client, history, stop) = (c.client(), history.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                r = (r + 1) % WRITERS;
                let start = Instant::now();
                let Some((leader, _)) = client.leader(REGION).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let res = client
                    .read_on(leader, REGION, &register_key(r), ATTEMPT_TIMEOUT)
                    .await;
                let end = Instant::now();
                match res {
                    Ok(v) => history.lock().expect("history").push(Op {
                        register: r,
                        kind: OpKind::Read {
                            value: decode_value(v),
                        },
                        start,
                        end,
                    }),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }
    {
        // Follower reads, on every store in turn.
        let (client, history, stop) = (c.client(), history.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (r, store) = (i % WRITERS, 1 + (i / WRITERS % 3) as u64);
                let start = Instant::now();
                let res = client
                    .replica_read_on(store, REGION, &register_key(r), ATTEMPT_TIMEOUT)
                    .await;
                let end = Instant::now();
                match res {
                    Ok(v) => history.lock().expect("history").push(Op {
                        register: r,
                        kind: OpKind::Read {
                            value: decode_value(v),
                        },
                        start,
                        end,
                    }),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }

    // CHAOS_SEED=<n> replays another schedule (timing still varies from run to run).
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001u64);
    let mut rng = Rng(seed.max(1));
    let mut down: Option<u64> = None;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        match rng.below(8) {
            0 => c.clear_filters(),
            7 => {
                c.clear_filters();
                c.add_filter(lossy(rng.next(), 10, Duration::from_millis(30)));
            }
            1 => {
                c.clear_filters();
                c.add_filter(isolate(1 + rng.below(3)));
            }
            2 => {
                if let Some((leader, _)) = c.leader(REGION).await {
                    c.clear_filters();
                    c.add_filter(isolate(leader));
                }
            }
            3 => {
                if let Some((leader, _)) = c.leader(REGION).await {
                    let other = [1, 2, 3]
                        .into_iter()
                        .filter(|s| *s != leader)
                        .nth(rng.below(2) as usize)
                        .expect("store");
                    c.clear_filters();
                    c.add_filter(partition(&[leader], &[other]));
                }
            }
            4 => {
                if let Some((leader, info)) = c.leader(REGION).await {
                    let to = 1 + rng.below(3);
                    if let (Some(peer), Some(router)) = (
                        info.region.peers.iter().find(|p| p.store_id == to).copied(),
                        c.router(leader),
                    ) {
                        let epoch = info.region.region_epoch.unwrap_or_default();
                        let header = raftstore::CmdHeader {
                            region_id: REGION,
                            conf_ver: epoch.conf_ver,
                            version: epoch.version,
                            ..Default::default()
                        };
                        let _ =
                            tokio::time::timeout(ATTEMPT_TIMEOUT, router.transfer_leader(header, peer)).await;
                    }
                }
            }
            5 => match down.take() {
                Some(s) => c.start_store(s),
                None => {
                    let s = 1 + rng.below(3);
                    c.stop_store(s);
                    down = Some(s);
                }
            },
            _ => {
                // Crash and restart at once.
                let s = 1 + rng.below(3);
                if down != Some(s) {
                    c.restart_store(s);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150 + rng.below(300))).await;
    }

    c.clear_filters();
    if let Some(s) = down.take() {
        c.start_store(s);
    }
    // Some writes after the storm: the cluster recovered.
    c.must_put(b"after-chaos", b"1").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }

    let history = history.lock().expect("history").clone();
    let acked = acked_logs.lock().expect("acked").clone();
    let reads = history
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Read { .. }))
        .count();
    assert!(acked.len() >= 20, "only {} writes acknowledged", acked.len());
    assert!(reads >= 20, "only {reads} reads answered");
    eprintln!(
        "chaos seed {seed}: {} writes acknowledged of {}, {reads} reads, {} snapshots",
        acked.len(),
        history.len() - reads,
        c.net.stats().snapshots_received.values().sum::<u64>()
    );
    for w in 0..WRITERS {
        check_register_history(&history, w);
    }
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    // Every store ends with the same register values, at least the last acknowledged ones.
    for w in 0..WRITERS {
        let last_acked = history
            .iter()
            .filter_map(|o| match o.kind {
                OpKind::Write { value, ok: true } if o.register == w => Some(value),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let leader_value = decode_value(c.must_get(&register_key(w)).await);
        assert!(leader_value >= last_acked);
        c.must_have_on_stores(
            &[1, 2, 3],
            &[(register_key(w), leader_value.to_string().into_bytes())],
        )
        .await;
    }
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
    c.wait_region_gone(3, REGION).await;
    wait_until("store 3 persisted a tombstone", MUST_TIMEOUT, || {
        c.local_region(3, REGION)
            .is_some_and(|r| r.state == RegionState::Tombstone)
    })
    .await;
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

/// Membership changes (learners added, promoted, voters demoted in joint changes, peers
/// removed, leadership moved) mixed with partitions and crashes, under writers and readers.
/// Afterwards the region settles on one membership that every member agrees on, every member
/// has every acknowledged write, and reads were linearizable throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_membership_changes() {
    const WRITERS: usize = 2;
    // Writer threads on: membership changes, snapshots and destroys drain them.
    let cfg = raftstore::StoreConfig {
        store_io_pool_size: 1,
        apply_pool_size: 1,
        ..snapshot_config()
    };
    let mut c = Cluster::run(5, 3, cfg).await;
    let history: History = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_logs: std::sync::Arc<std::sync::Mutex<Acked>> = Default::default();
    let mut tasks = vec![];
    for w in 0..WRITERS {
        let (client, history, stop, acked_logs) =
            (c.client(), history.clone(), stop.clone(), acked_logs.clone());
        tasks.push(tokio::spawn(async move {
            let mut value = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                value += 1;
                let v = value.to_string().into_bytes();
                let log = format!("log-{w}-{value:06}").into_bytes();
                let start = Instant::now();
                let r = client
                    .try_write(vec![put(&register_key(w), &v), put(&log, &v)])
                    .await;
                let end = Instant::now();
                history.lock().expect("history").push(Op {
                    register: w,
                    kind: OpKind::Write { value, ok: r.is_ok() },
                    start,
                    end,
                });
                if r.is_ok() {
                    acked_logs.lock().expect("acked").push((log, v));
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    {
        let (client, history, stop) = (c.client(), history.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let r = i % WRITERS;
                // Leader reads and follower reads on every store in turn.
                let start = Instant::now();
                let res = if (i / WRITERS) % 2 == 1 {
                    match client.leader(REGION).await {
                        Some((leader, _)) => {
                            client
                                .read_on(leader, REGION, &register_key(r), ATTEMPT_TIMEOUT)
                                .await
                        }
                        None => Err(Failure::Timeout),
                    }
                } else {
                    let store = 1 + (i / 2 % 5) as u64;
                    client
                        .replica_read_on(store, REGION, &register_key(r), ATTEMPT_TIMEOUT)
                        .await
                };
                let end = Instant::now();
                match res {
                    Ok(v) => history.lock().expect("history").push(Op {
                        register: r,
                        kind: OpKind::Read {
                            value: decode_value(v),
                        },
                        start,
                        end,
                    }),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }

    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0002u64);
    let mut rng = Rng(seed.max(1));
    let mut changes = 0;
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let Some((leader, info)) = c.leader(REGION).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let region = info.region;
        let m = members(&region);
        let joint = m
            .iter()
            .any(|(_, _, r)| matches!(r, PeerRole::IncomingVoter | PeerRole::DemotingVoter));
        let voters: Vec<_> = region
            .peers
            .iter()
            .filter(|p| PeerRole::try_from(p.role).unwrap_or(PeerRole::Voter) == PeerRole::Voter)
            .copied()
            .collect();
        let learners: Vec<_> = region
            .peers
            .iter()
            .filter(|p| PeerRole::try_from(p.role).unwrap_or(PeerRole::Voter) == PeerRole::Learner)
            .copied()
            .collect();
        let free: Vec<u64> = (1..=5)
            .filter(|s| !region.peers.iter().any(|p| p.store_id == *s))
            .collect();
        let followers: Vec<_> = voters.iter().filter(|p| p.store_id != leader).copied().collect();
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        let change = match rng.below(10) {
            _ if joint => None,
            0 | 1 if !free.is_empty() => {
                let store = free[pick(&mut rng, free.len())];
                Some(vec![PeerChange::AddLearner(c.alloc_peer(store))])
            }
            2 if !learners.is_empty() => {
                let l = learners[pick(&mut rng, learners.len())];
                Some(vec![PeerChange::AddVoter(l)])
            }
            3 if !learners.is_empty() => {
                let l = learners[pick(&mut rng, learners.len())];
                Some(vec![PeerChange::Remove(l)])
            }
            4 if voters.len() > 3 && !followers.is_empty() => {
                let v = followers[pick(&mut rng, followers.len())];
                Some(vec![PeerChange::Remove(v)])
            }
            5 if !learners.is_empty() && !followers.is_empty() => {
                let l = learners[pick(&mut rng, learners.len())];
                let v = followers[pick(&mut rng, followers.len())];
                Some(vec![PeerChange::AddVoter(l), PeerChange::AddLearner(v)])
            }
            6 if !followers.is_empty() => {
                let to = followers[pick(&mut rng, followers.len())];
                if let Some(router) = c.router(leader) {
                    let epoch = region.region_epoch.unwrap_or_default();
                    let header = raftstore::CmdHeader {
                        region_id: REGION,
                        conf_ver: epoch.conf_ver,
                        version: epoch.version,
                        ..Default::default()
                    };
                    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, router.transfer_leader(header, to)).await;
                }
                None
            }
            7 => {
                c.clear_filters();
                c.add_filter(isolate(1 + rng.below(5)));
                None
            }
            8 => {
                let s = 1 + rng.below(5);
                c.restart_store(s);
                None
            }
            _ => {
                c.clear_filters();
                None
            }
        };
        if let Some(change) = change {
            if c.change_peer(REGION, change).await.is_ok() {
                changes += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
    }

    c.clear_filters();
    wait_for("the region settles out of joint", MUST_TIMEOUT, || async {
        members(&c.leader_region(REGION).await)
            .iter()
            .all(|(_, _, r)| matches!(r, PeerRole::Voter | PeerRole::Learner))
    })
    .await;
    c.must_put(b"after-chaos", b"1").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }

    let history = history.lock().expect("history").clone();
    let acked = acked_logs.lock().expect("acked").clone();
    eprintln!(
        "membership chaos seed {seed}: {changes} conf changes, {} writes acknowledged, {} ops",
        acked.len(),
        history.len()
    );
    assert!(acked.len() >= 20, "only {} writes acknowledged", acked.len());
    for w in 0..WRITERS {
        check_register_history(&history, w);
    }
    let region = c.leader_region(REGION).await;
    let got = members(&region);
    let stores: Vec<u64> = got.iter().map(|(_, s, _)| *s).collect();
    c.must_have_members(&stores, REGION, &got).await;
    c.must_have_on_stores(&stores, &acked).await;
    // Stores without a peer hold nothing of the region once its removed voters learned it.
    for s in (1..=5).filter(|s| !stores.contains(s)) {
        if let Some(info) = c.region_info(s, REGION).await {
            let me = info.region.peers.iter().find(|p| p.store_id == s);
            eprintln!("store {s} still holds a removed peer {me:?}");
        }
    }
}

/// A snapshot replaces the follower's data of the region exactly: keys deleted on the leader
/// while the follower was away are gone after it catches up, and every column family comes
/// across. While it is behind, the leader reports it as a pending peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_replaces_data_exactly_in_every_column_family() {
    use engine_traits::{CF_LOCK, CF_WRITE};
    let c = Cluster::run(3, 3, snapshot_config()).await;
    let in_cf = |cf: &'static str, k: &[u8], v: &[u8]| Modify::Put {
        cf,
        key: k.to_vec(),
        value: v.to_vec(),
    };
    c.must_write(vec![
        in_cf(CF_DEFAULT, b"gone", b"1"),
        in_cf(CF_LOCK, b"gone", b"1"),
        in_cf(CF_WRITE, b"gone", b"1"),
        in_cf(CF_DEFAULT, b"range-a", b"1"),
        in_cf(CF_DEFAULT, b"range-b", b"1"),
    ])
    .await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &[(b"range-b".to_vec(), b"1".to_vec())])
        .await;
    let applied = c.apply_state(follower, REGION).expect("apply").applied_index;
    let follower_peer = c.peer_on(REGION, follower).await.expect("peer");

    c.add_filter(isolate(follower));
    c.must_write(vec![
        Modify::Delete {
            cf: CF_DEFAULT,
            key: b"gone".to_vec(),
        },
        Modify::Delete {
            cf: CF_LOCK,
            key: b"gone".to_vec(),
        },
        Modify::Delete {
            cf: CF_WRITE,
            key: b"gone".to_vec(),
        },
        Modify::DeleteRange {
            cf: CF_DEFAULT,
            start: b"range-".to_vec(),
            end: b"range-z".to_vec(),
        },
        in_cf(CF_LOCK, b"lock-new", b"2"),
        in_cf(CF_WRITE, b"write-new", b"3"),
    ])
    .await;
    let acked = put_many(&c, "fill", 0..40).await;
    let leader = c.leader_of(REGION).await;
    wait_until("the leader compacted past the follower", MUST_TIMEOUT, || {
        c.apply_state(leader, REGION)
            .is_some_and(|a| a.truncated_index > applied)
    })
    .await;
    c.wait_region_on(leader, REGION, "the follower pending", |i| {
        i.pending_peers.iter().any(|p| p.id == follower_peer.id)
    })
    .await;

    let snaps = c.net.snapshots_received(follower);
    c.clear_filters();
    c.must_have_on_store(follower, &acked).await;
    assert!(c.net.snapshots_received(follower) > snaps);
    let kv = c.kv(follower);
    let get = |cf: &str, k: &[u8]| kv.get_cf(cf, &txn_types::keys::data_key(k)).expect("get");
    for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
        assert_eq!(get(cf, b"gone"), None, "deleted key survived in {cf}");
    }
    assert_eq!(get(CF_DEFAULT, b"range-a"), None);
    assert_eq!(get(CF_DEFAULT, b"range-b"), None);
    assert_eq!(get(CF_LOCK, b"lock-new"), Some(b"2".to_vec()));
    assert_eq!(get(CF_WRITE, b"write-new"), Some(b"3".to_vec()));
    c.wait_region_on(leader, REGION, "no pending peer", |i| i.pending_peers.is_empty())
        .await;
}

/// A write computed from a read in one term is refused once leadership moved on (even back
/// to the same store), and a learner serves follower reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_term_write_refused_and_learner_reads() {
    let c = Cluster::run(4, 3, test_config()).await;
    c.must_put(b"k", b"v1").await;
    let leader = c.leader_of(REGION).await;
    let region = c.leader_region(REGION).await;
    let epoch = region.region_epoch.expect("epoch");
    let router = c.router(leader).expect("router");
    let header = raftstore::CmdHeader {
        region_id: REGION,
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        ..Default::default()
    };
    let read = router.read(header).await.expect("read");
    let with_term = raftstore::CmdHeader {
        term: read.term,
        ..header
    };
    router
        .write(with_term, vec![put(b"k", b"v2")])
        .await
        .expect("write in the read's term");

    let other = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_transfer_leader(REGION, other).await;
    c.must_transfer_leader(REGION, leader).await;
    let r = router.write(with_term, vec![put(b"k", b"v3")]).await;
    assert!(
        matches!(r, Err(Error::StaleCommand)),
        "a write from an older term's read was accepted: {r:?}"
    );
    assert_eq!(c.must_get(b"k").await, Some(b"v2".to_vec()));

    c.must_add_learner(REGION, 4).await;
    c.must_put(b"k", b"v4").await;
    assert_eq!(
        c.replica_read_on(4, REGION, b"k", Duration::from_secs(5))
            .await
            .expect("learner read"),
        Some(b"v4".to_vec())
    );
}

/// Lease reads versus a leader transfer whose `MsgTimeoutNow` is delayed. A transfer lets the
/// target campaign at once, and the others vote for it even within the leader's lease (the
/// vote is forced). The leader stops serving lease reads when it starts a transfer, for a
/// while; but the `MsgTimeoutNow` it sent can arrive much later, after the transfer was given
/// up and the lease renewed. The forced election then happens inside the renewed lease: the
/// old leader, cut off, must not serve the old value from its lease once the new leader
/// acknowledged a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_read_after_delayed_timeout_now_is_not_stale() {
    // Election timeout 1 s (lease 0.9 s).
    let cfg = raftstore::StoreConfig {
        election_tick: 50,
        ..test_config()
    };
    let c = Cluster::run(3, 3, cfg).await;
    c.must_put(b"k", b"v1").await;
    c.must_have_on_stores(&[1, 2, 3], &[(b"k".to_vec(), b"v1".to_vec())])
        .await;
    let leader = c.leader_of(REGION).await;
    let target = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");

    // The network holds the leader's MsgTimeoutNow back (here: until the test lets it go).
    let (cap, timeout_now) = capture(|_, env| env.message.get_msg_type() == MessageType::MsgTimeoutNow);
    let held = c.add_filter(cap);
    let hold = c.add_filter(drop_type(MessageType::MsgTimeoutNow));
    let region = c.leader_region(REGION).await;
    let epoch = region.region_epoch.expect("epoch");
    let header = raftstore::CmdHeader {
        region_id: REGION,
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        ..Default::default()
    };
    let to = *region
        .peers
        .iter()
        .find(|p| p.store_id == target)
        .expect("target peer");
    let started = Instant::now();
    c.router(leader)
        .expect("leader")
        .transfer_leader(header, to)
        .await
        .expect("transfer started");
    wait_until("the leader sent MsgTimeoutNow", MUST_TIMEOUT, || {
        !timeout_now.is_empty()
    })
    .await;
    c.remove_filter(held);
    c.remove_filter(hold);

    // The transfer is given up after an election timeout; the lease block after starting it
    // lasts two. Time is what this test is about: let both pass.
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(started.elapsed())).await;
    assert_eq!(c.leader_of(REGION).await, leader);
    // A read through ReadIndex renews the lease.
    assert_eq!(
        c.read_on(leader, REGION, b"k", ATTEMPT_TIMEOUT)
            .await
            .expect("read"),
        Some(b"v1".to_vec())
    );
    let renewed = Instant::now();

    // The old MsgTimeoutNow arrives now; the leader is cut off from the others.
    c.add_filter(isolate(leader));
    let (_, late) = timeout_now.take().pop().expect("MsgTimeoutNow");
    c.router(target).expect("target").send_raft(late).expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((s, _)) = c.leader(REGION).await {
            if s != leader {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the transferee was not elected");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.write_on(target, REGION, vec![put(b"k", b"v2")], ATTEMPT_TIMEOUT)
        .await
        .expect("write on the new leader");
    let v2_acked = Instant::now();

    let r = c.read_on(leader, REGION, b"k", ATTEMPT_TIMEOUT).await;
    assert!(
        !matches!(&r, Ok(Some(v)) if v == b"v1"),
        "the old leader served v1 after v2 was acknowledged ({:?} after its lease was renewed)",
        v2_acked.duration_since(renewed)
    );
}

/// Two regions side by side on the same stores: each is replicated, fails over and catches
/// up on its own (peers of one region created next to the other's, leaders on different
/// stores, one region's partition not touching the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_replicate_and_fail_over_independently() {
    const LEFT: u64 = 1;
    const RIGHT: u64 = 2;
    let mut c = Cluster::new(3, snapshot_config());
    c.bootstrap_regions(&[(LEFT, b"", b"m"), (RIGHT, b"m", b"")]);
    c.start();
    for region in [LEFT, RIGHT] {
        c.leader_of(region).await;
        for store in [2, 3] {
            c.must_add_peer(region, store).await;
        }
    }
    let client = c.client();
    let write_both = |i: usize| {
        let c = client.clone();
        async move {
            let (l, r) = (format!("a{i:04}").into_bytes(), format!("x{i:04}").into_bytes());
            c.must_write_in(LEFT, vec![put(&l, b"left")]).await;
            c.must_write_in(RIGHT, vec![put(&r, b"right")]).await;
            [(l, b"left".to_vec()), (r, b"right".to_vec())]
        }
    };
    let mut acked = vec![];
    for i in 0..10 {
        acked.extend(write_both(i).await);
    }
    // A key outside a region is refused by it.
    let r = c
        .write_on(
            c.leader_of(LEFT).await,
            LEFT,
            vec![put(b"x", b"?")],
            ATTEMPT_TIMEOUT,
        )
        .await;
    assert!(
        matches!(r, Err(Failure::Raft(Error::KeyNotInRegion { .. }))),
        "{r:?}"
    );

    // Leaders on different stores, then only the left region's messages are dropped.
    c.must_transfer_leader(LEFT, 2).await;
    c.must_transfer_leader(RIGHT, 3).await;
    c.add_filter(drop_region(LEFT));
    for i in 10..15 {
        let k = format!("x{i:04}").into_bytes();
        c.must_write_in(RIGHT, vec![put(&k, b"right")]).await;
        acked.push((k, b"right".to_vec()));
    }
    c.clear_filters();

    // The left region's leader store stops: only that region elects anew.
    c.stop_store(2);
    let deadline = Instant::now() + MUST_TIMEOUT;
    while c.leader_of(LEFT).await == 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 15..40 {
        acked.extend(write_both(i).await);
    }
    c.start_store(2);
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    for (region, n) in [(LEFT, 3), (RIGHT, 3)] {
        let got = members(&c.leader_region(region).await);
        assert_eq!(got.len(), n);
        c.must_have_members(&[1, 2, 3], region, &got).await;
    }
}

/// What PD hears from the stores: the store whose peer becomes leader reports the region at
/// once, and the leader reports again when the region's membership changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_reports_leadership_and_membership_changes() {
    let mut c = Cluster::run(4, 3, test_config()).await;
    let leader = c.leader_of(REGION).await;
    let target = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    for s in [1, 2, 3, 4] {
        c.take_events(s);
    }
    c.must_transfer_leader(REGION, target).await;
    let reported = c.take_events(target);
    assert!(
        reported
            .iter()
            .any(|i| i.region.id == REGION && i.is_leader && i.leader.is_some_and(|l| l.store_id == target)),
        "the new leader did not report: {reported:?}"
    );

    let learner = c.must_add_learner(REGION, 4).await;
    let reported = c.take_events(target);
    assert!(
        reported
            .iter()
            .any(|i| i.region.id == REGION && i.region.peers.iter().any(|p| p.id == learner.id)),
        "the leader did not report the new membership: {reported:?}"
    );
    assert!(c.fatal_events().is_empty());
}
