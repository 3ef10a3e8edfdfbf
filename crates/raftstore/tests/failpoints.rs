//! Crashes at raftstore's failpoints, then restarts over the same engines. A crash in process
//! is a panic on the store (or snapshot worker) thread of one store: that thread dies with
//! whatever it had not written yet, exactly as a process would at that point.
//!
//! Failpoints are process-global, so these tests take turns (one lock), and a failpoint that
//! must hit one store only checks which store's thread evaluates it.

mod cluster;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cluster::*;
use engine_traits::{Peekable, CF_DEFAULT};
use raftstore::keys::RaftLocalState;
use raftstore::{PeerChange, RegionState};

static FAILPOINTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Removes a failpoint when dropped (also when a test fails).
struct Failpoint(&'static str);

impl Failpoint {
    /// Panics the thread of `store`'s loop when it reaches `name`; `hit` is set first.
    fn crash_store(name: &'static str, net: &Arc<Net>, store: u64, hit: &Arc<AtomicBool>) -> Failpoint {
        let (net, hit) = (Arc::downgrade(net), hit.clone());
        fail::cfg_callback(name, move || {
            if net.upgrade().and_then(|n| n.current_store()) == Some(store) {
                hit.store(true, Ordering::SeqCst);
                panic!("store {store} crashes at failpoint {name}");
            }
        })
        .expect("failpoint");
        Failpoint(name)
    }

    /// Panics whichever thread reaches `name` (snapshot workers have no store identity; only
    /// the store receiving a snapshot applies one).
    fn crash_any(name: &'static str, hit: &Arc<AtomicBool>) -> Failpoint {
        let hit = hit.clone();
        fail::cfg_callback(name, move || {
            hit.store(true, Ordering::SeqCst);
            panic!("crash at failpoint {name}");
        })
        .expect("failpoint");
        Failpoint(name)
    }

    fn actions(name: &'static str, actions: &str) -> Failpoint {
        fail::cfg(name, actions).expect("failpoint");
        Failpoint(name)
    }
}

impl Drop for Failpoint {
    fn drop(&mut self) {
        fail::remove(self.0);
    }
}

fn pair(prefix: &str, i: usize, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut v = format!("{prefix}-value-{i}-").into_bytes();
    v.resize(size.max(v.len()), b'.');
    (format!("{prefix}{i:04}").into_bytes(), v)
}

async fn put_many(
    c: &Client,
    prefix: &str,
    range: std::ops::Range<usize>,
    size: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![];
    for i in range {
        let (k, v) = pair(prefix, i, size);
        c.must_put(&k, &v).await;
        out.push((k, v));
    }
    out
}

fn raft_state(c: &Cluster, store: u64) -> RaftLocalState {
    c.raft_engine(store)
        .get_cf(CF_DEFAULT, &raftstore::keys::raft_state_key(REGION))
        .expect("get")
        .and_then(|b| RaftLocalState::decode(&b))
        .expect("raft state")
}

async fn hit(flag: &Arc<AtomicBool>, name: &str) {
    wait_until(&format!("failpoint {name} is hit"), MUST_TIMEOUT, || {
        flag.load(Ordering::SeqCst)
    })
    .await
}

/// 8. Every store crashes after persisting (and committing) an entry and before applying it
///    to its KV engine (whichever thread writes applied entries): nothing is lost; the
///    restarted stores apply it from their own logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_log_persist_and_apply() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(3, 3, test_config()).await;
    let acked = put_many(&c, "a", 0..10, 8).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;

    let leader = c.leader_of(REGION).await;
    let applied = c.apply_state(leader, REGION).expect("apply").applied_index;
    let crashed = Arc::new(AtomicBool::new(false));
    let fp = Failpoint::crash_any("raftstore_before_apply_write", &crashed);
    let r = c
        .write_on(leader, REGION, vec![put(b"crash", b"v")], ATTEMPT_TIMEOUT)
        .await;
    assert!(r.is_err(), "a write answered though applying it crashed");
    hit(&crashed, "raftstore_before_apply_write").await;
    // Stopped before the failpoint goes: a store still running would apply the entry.
    for s in [1, 2, 3] {
        c.stop_store(s);
    }
    drop(fp);

    // The entry is in the leader's log (and was committed: the leader was applying it), in
    // no store's KV engine.
    let rs = raft_state(&c, leader);
    assert!(
        rs.last_index > applied,
        "log not persisted: {rs:?}, applied {applied}"
    );
    for s in [1, 2, 3] {
        assert_eq!(c.get_on_store(s, b"crash"), None, "store {s} applied it");
    }

    for s in [1, 2, 3] {
        c.start_store(s);
    }
    assert_eq!(c.must_get(b"crash").await, Some(b"v".to_vec()));
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    c.must_have_on_stores(&[1, 2, 3], &[(b"crash".to_vec(), b"v".to_vec())])
        .await;
    c.must_put(b"after", b"restart").await;
    c.must_have_on_stores(&[1, 2, 3], &[(b"after".to_vec(), b"restart".to_vec())])
        .await;
}

/// 8b. A follower crashes right after persisting appended entries (before answering or
///     applying): it restarts and catches up; the others never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_crash_after_log_persist() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "f", 0..5, 8).await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");

    let crashed = Arc::new(AtomicBool::new(false));
    let fp = Failpoint::crash_store("raftstore_after_append_log", &c.net, follower, &crashed);
    acked.extend(put_many(&c, "g", 0..5, 8).await);
    hit(&crashed, "raftstore_after_append_log").await;
    c.wait_store_dead(follower).await;
    drop(fp);
    acked.extend(put_many(&c, "h", 0..5, 8).await);

    c.restart_store(follower);
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
}

/// Cuts `follower` off, writes until the leader compacted its log past it, and returns the
/// acknowledged writes. The follower will need a snapshot.
async fn leave_behind(c: &Cluster, follower: u64, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let applied = c.apply_state(follower, REGION).expect("apply").applied_index;
    c.add_filter(isolate(follower));
    let acked = put_many(c, prefix, 0..40, 8).await;
    let leader = c.leader_of(REGION).await;
    wait_until("the leader compacted past the follower", MUST_TIMEOUT, || {
        c.apply_state(leader, REGION)
            .is_some_and(|a| a.truncated_index > applied)
    })
    .await;
    acked
}

/// Restarts `store`, waits until its region is `Normal` again with every acknowledged write,
/// and checks that `more` new writes reach all three stores.
async fn restart_and_catch_up(c: &mut Cluster, store: u64, acked: &[(Vec<u8>, Vec<u8>)], more: usize) {
    c.start_store(store);
    wait_state(c, store, RegionState::Normal).await;
    c.must_have_on_store(store, acked).await;
    let more = put_many(c, "u", 0..more, 8).await;
    c.must_have_on_stores(&[1, 2, 3], &more).await;
}

async fn wait_state(c: &Cluster, store: u64, state: RegionState) {
    wait_until(
        &format!("region state {state:?} on store {store}"),
        MUST_TIMEOUT,
        || c.local_region(store, REGION).is_some_and(|r| r.state == state),
    )
    .await
}

/// 9. The snapshot worker fails before writing a received snapshot: the region stays
///    `Applying` (out of service), and a restart redoes the apply from the received file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_apply_failure_is_redone_on_restart() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(3, 3, snapshot_config()).await;
    let mut acked = put_many(&c, "s", 0..10, 8).await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &acked).await;
    acked.extend(leave_behind(&c, follower, "t").await);

    let fp = Failpoint::actions("snap_before_apply", "return");
    let received = c.net.snapshots_received(follower);
    c.clear_filters();
    wait_until("the follower received a snapshot", MUST_TIMEOUT, || {
        c.net.snapshots_received(follower) > received
    })
    .await;
    wait_state(&c, follower, RegionState::Applying).await;
    c.stop_store(follower);
    drop(fp);
    assert_eq!(
        c.local_region(follower, REGION).expect("region").state,
        RegionState::Applying
    );

    restart_and_catch_up(&mut c, follower, &acked, 5).await;
}

/// 9b. The snapshot worker crashes halfway through writing a snapshot's data (between two
///     batches): the restart clears the half-written range and redoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_apply_crash_between_batches_is_redone() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(3, 3, snapshot_config()).await;
    // More than one apply batch (4 MiB) of data.
    let mut acked = put_many(&c, "big", 0..40, 128 << 10).await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &acked).await;
    acked.extend(leave_behind(&c, follower, "t").await);

    let crashed = Arc::new(AtomicBool::new(false));
    let fp = Failpoint::crash_any("snap_apply_between_batches", &crashed);
    c.clear_filters();
    hit(&crashed, "snap_apply_between_batches").await;
    c.stop_store(follower);
    drop(fp);
    assert_eq!(
        c.local_region(follower, REGION).expect("region").state,
        RegionState::Applying
    );

    restart_and_catch_up(&mut c, follower, &acked, 3).await;
}

/// 9c. A new peer's store crashes after persisting `Applying` for its first snapshot and
///     before the apply task starts: it restarts, applies the snapshot and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_peer_crash_before_snapshot_apply_task() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(4, 3, test_config()).await;
    let acked = put_many(&c, "n", 0..10, 8).await;

    let crashed = Arc::new(AtomicBool::new(false));
    let fp = Failpoint::crash_store("raftstore_before_snapshot_apply_task", &c.net, 4, &crashed);
    let p4 = c.alloc_peer(4);
    c.must_change_peer(REGION, vec![PeerChange::AddLearner(p4)]).await;
    hit(&crashed, "raftstore_before_snapshot_apply_task").await;
    c.wait_store_dead(4).await;
    drop(fp);
    c.stop_store(4);
    assert_eq!(
        c.local_region(4, REGION).expect("region").state,
        RegionState::Applying
    );

    c.start_store(4);
    c.wait_region_on(4, REGION, "the learner", |i| {
        i.region.peers.iter().any(|p| p.id == p4.id)
    })
    .await;
    wait_state(&c, 4, RegionState::Normal).await;
    c.must_have_on_store(4, &acked).await;
    c.must_change_peer(REGION, vec![PeerChange::AddVoter(p4)]).await;
    let more = put_many(&c, "o", 0..5, 8).await;
    c.must_have_on_stores(&[1, 2, 3, 4], &more).await;
}

/// 9d. An existing follower's store crashes after persisting `Applying` for a catch-up
///     snapshot and before the apply task starts (its raft state still describes its old
///     log): the restart redoes the apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_crash_before_snapshot_apply_task() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(3, 3, snapshot_config()).await;
    let mut acked = put_many(&c, "s", 0..10, 8).await;
    let leader = c.leader_of(REGION).await;
    let follower = [1, 2, 3].into_iter().find(|s| *s != leader).expect("follower");
    c.must_have_on_store(follower, &acked).await;
    acked.extend(leave_behind(&c, follower, "t").await);

    let crashed = Arc::new(AtomicBool::new(false));
    let fp = Failpoint::crash_store("raftstore_before_snapshot_apply_task", &c.net, follower, &crashed);
    c.clear_filters();
    hit(&crashed, "raftstore_before_snapshot_apply_task").await;
    c.wait_store_dead(follower).await;
    drop(fp);
    c.stop_store(follower);
    assert_eq!(
        c.local_region(follower, REGION).expect("region").state,
        RegionState::Applying
    );

    restart_and_catch_up(&mut c, follower, &acked, 5).await;
}

/// A peer told it was removed (by a tombstone notice) while the snapshot worker is halfway
/// through applying a snapshot for it: once destroyed, the peer must stay destroyed. The
/// worker must not write the rest of the data and the `Normal` state over the tombstone, and
/// the store must restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_destroyed_while_applying_snapshot_stays_destroyed() {
    let _turn = FAILPOINTS.lock().await;
    let mut c = Cluster::run(4, 3, test_config()).await;
    // More than one apply batch of data, so the worker can be stopped halfway.
    put_many(&c, "big", 0..40, 128 << 10).await;
    let leader = c.leader_of(REGION).await;

    let (cap, from_learner) = capture(move |from, env| from == 4 && env.to_peer.store_id == leader);
    c.add_filter(cap);
    let fp = Failpoint::actions("snap_apply_between_batches", "pause");
    let learner = c.alloc_peer(4);
    c.must_change_peer(REGION, vec![PeerChange::AddLearner(learner)])
        .await;
    wait_state(&c, 4, RegionState::Applying).await;
    wait_until("the worker wrote its first batch", MUST_TIMEOUT, || {
        c.data_key_count(4, b"", b"") > 0
    })
    .await;

    // Removed meanwhile; a message it sent before arrives late at the leader, which answers
    // with a tombstone notice.
    c.must_change_peer(REGION, vec![PeerChange::Remove(learner)])
        .await;
    let (_, late) = from_learner
        .take()
        .into_iter()
        .next()
        .expect("a message from the learner");
    c.router(leader).expect("leader").send_raft(late).expect("send");
    wait_state(&c, 4, RegionState::Tombstone).await;

    // The worker resumes and finishes; stopping the store waits for it.
    drop(fp);
    c.stop_store(4);
    let loaded = raftstore::load_local_regions(c.kv(4));
    assert!(
        loaded.is_ok(),
        "store 4 can no longer load its regions: {:?}",
        loaded.err()
    );
    let state = c.local_region(4, REGION).expect("region").state;
    let keys = c.data_key_count(4, b"", b"");
    assert_eq!(
        (state, keys),
        (RegionState::Tombstone, 0),
        "the destroyed peer's region state and data came back"
    );
    c.start_store(4);
    assert!(c.region_info(4, REGION).await.is_none());
}
