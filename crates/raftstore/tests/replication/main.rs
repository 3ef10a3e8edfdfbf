//! Replication through raftstore: a multi-store cluster in one process (see `cluster/mod.rs`)
//! under leader failures, partitions, lagging followers, membership changes and leader
//! transfers. Every test checks that no acknowledged write is lost, on every replica's engine.

mod chaos;
#[path = "../cluster/mod.rs"]
mod cluster;
mod lease;
mod membership;
mod merge;
mod snapshots;
mod split;

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

/// Asserts `scanned` (a scan's pairs, in its order) holds each key of `acked` exactly once, in
/// key order, with the last value acknowledged for it.
fn assert_exactly(scanned: &[(Vec<u8>, Vec<u8>)], acked: &[(Vec<u8>, Vec<u8>)]) {
    let mut want: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    for (k, v) in acked {
        want.insert(k.clone(), v.clone());
    }
    let want: Vec<(Vec<u8>, Vec<u8>)> = want.into_iter().collect();
    let keys: Vec<&Vec<u8>> = scanned.iter().map(|(k, _)| k).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "a scan returned keys out of order or twice"
    );
    assert_eq!(
        scanned.len(),
        want.len(),
        "scan found {} of {} keys",
        scanned.len(),
        want.len()
    );
    assert_eq!(scanned, want.as_slice());
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
