//! Merges: under concurrent writes in both regions, with a leader change and a store restart
//! between prepare and commit, with a source peer that missed the prepare (caught up from the
//! log the commit carries), and rolled back when the target splits first. No acknowledged write
//! is lost or duplicated, on any replica, also after restarts.

use super::*;
use atoll_proto::metapb;
use raftstore::RaftEnvelope;

const SPLIT_KEY: &[u8] = b"k0010";

/// Splits the bootstrap region at `SPLIT_KEY`: returns (left, right) — the right keeps
/// `REGION`'s id.
async fn split_in_two(c: &Cluster) -> (metapb::Region, metapb::Region) {
    let regions = c.must_split(SPLIT_KEY).await;
    assert_eq!(regions.len(), 2);
    for r in &regions {
        c.leader_of(r.id).await;
    }
    (regions[0].clone(), regions[1].clone())
}

async fn wait_state(c: &Cluster, store: u64, region: u64, state: RegionState) {
    wait_until(
        &format!("store {store} persists region {region} as {state:?}"),
        MUST_TIMEOUT,
        || c.local_region(store, region).is_some_and(|r| r.state == state),
    )
    .await
}

/// 1. Writers in both regions while the left merges into the right: the right covers the key
///    space, the left is a tombstone everywhere, every acknowledged write reads back once, on
///    every replica and after a restart of all stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_under_writes_keeps_every_key() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..20).await;
    let (left, right) = split_in_two(&c).await;
    let in_left = Writer::start(c.client(), "a");
    let in_right = Writer::start(c.client(), "w");
    in_left.wait_more(10).await;
    in_right.wait_more(10).await;

    let merged = c.must_merge(left.id, right.id).await;
    assert!(merged.start_key.is_empty() && merged.end_key.is_empty());
    let (l, r) = (left.region_epoch.unwrap(), right.region_epoch.unwrap());
    assert_eq!(
        merged.region_epoch.unwrap().version,
        (l.version + 1).max(r.version) + 1
    );
    in_left.wait_more(10).await;
    in_right.wait_more(10).await;
    acked.extend(in_left.stop().await);
    acked.extend(in_right.stop().await);

    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    for s in [1, 2, 3] {
        wait_state(&c, s, left.id, RegionState::Tombstone).await;
        c.must_have_on_store(s, &acked).await;
    }
    for s in [1, 2, 3] {
        c.restart_store(s);
    }
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    for s in [1, 2, 3] {
        assert!(
            c.region_info(s, left.id).await.is_none(),
            "the merged region came back on {s}"
        );
    }
    c.must_put_key(b"a-after", b"v").await;
    c.must_put_key(b"z-after", b"v").await;
    assert!(c.fatal_events().is_empty());
}

/// 2. The right region merges into the left. Between prepare and commit the target can commit
///    nothing (its messages are dropped), the source's leadership moves, and the store that led
///    the source stops; once the network heals the other two merge, and the restarted store
///    merges from its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_survives_a_leader_change_and_a_restart_in_the_middle() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..20).await;
    let (left, right) = split_in_two(&c).await;
    let blocked = c.add_filter(drop_region(left.id));
    retry_ok("prepare merge never applied", || {
        c.try_prepare_merge(right.id, left.id)
    })
    .await;
    for s in [1, 2, 3] {
        wait_state(&c, s, right.id, RegionState::Merging).await;
    }
    // A merging source refuses writes with TiKV's error.
    let leader = c.leader_of(right.id).await;
    let refused = c
        .write_on(leader, right.id, vec![put(b"k0015", b"x")], ATTEMPT_TIMEOUT)
        .await;
    assert!(
        matches!(refused, Err(Failure::Raft(Error::ProposalInMergingMode(_)))),
        "{refused:?}"
    );
    let next = [1, 2, 3]
        .into_iter()
        .find(|s| *s != leader)
        .expect("another store");
    c.must_transfer_leader(right.id, next).await;
    c.stop_store(next);
    c.remove_filter(blocked);

    let running: Vec<u64> = c.running_stores();
    for s in &running {
        c.wait_region_gone(*s, right.id).await;
    }
    c.restart_store(next);
    let merged = c.wait_merged(&right, &left).await;
    assert!(merged.start_key.is_empty() && merged.end_key.is_empty());
    for key in [&b"k0003"[..], b"k0015", b"z"] {
        c.must_put_key(key, b"after").await;
        acked.retain(|(k, _)| k.as_slice() != key);
        acked.push((key.to_vec(), b"after".to_vec()));
    }
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    for s in [1, 2, 3] {
        wait_state(&c, s, right.id, RegionState::Tombstone).await;
        c.must_have_on_store(s, &acked).await;
    }
    assert!(c.fatal_events().is_empty());
}

/// 3. A store is down while the source takes writes and prepares; the other two merge. When it
///    comes back its source peer has neither the writes nor the prepare, and its group is gone:
///    the target's commit carries that log, and the store applies it before merging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_source_catches_up_from_the_log_the_commit_carries() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..20).await;
    let (left, right) = split_in_two(&c).await;
    let lagging = 3;
    if c.leader_of(left.id).await == lagging {
        c.must_transfer_leader(left.id, 1).await;
    }
    if c.leader_of(right.id).await == lagging {
        c.must_transfer_leader(right.id, 1).await;
    }
    c.stop_store(lagging);
    for i in 0..15 {
        let (k, v) = pair("a", i);
        c.must_put_key(&k, &v).await;
        acked.push((k, v));
    }
    c.must_merge(left.id, right.id).await;
    c.restart_store(lagging);
    c.wait_region_gone(lagging, left.id).await;
    wait_state(&c, lagging, left.id, RegionState::Tombstone).await;
    c.must_have_on_store(lagging, &acked).await;
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    assert!(c.fatal_events().is_empty());
}

/// 4. The target splits after the source prepared and before any store could propose the
///    commit (the store leading the target never got the prepare): the source's leader sees the
///    target moved on and rolls back; the source serves again at a newer version, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_rolls_back_when_the_target_splits_first() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..20).await;
    let (left, right) = split_in_two(&c).await;
    c.must_transfer_leader(right.id, 2).await;
    c.must_transfer_leader(left.id, 1).await;
    let source = left.id;
    let cut: FilterRef = std::sync::Arc::new(move |_: u64, env: &RaftEnvelope| {
        if env.region_id == source && env.to_peer.store_id == 2 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let cut = c.add_filter(cut);
    retry_ok("prepare merge never applied", || {
        c.try_prepare_merge(left.id, right.id)
    })
    .await;
    wait_state(&c, 1, left.id, RegionState::Merging).await;
    c.must_split(b"k0015").await;

    let prepared = left.region_epoch.unwrap().version + 1;
    for s in [1, 3] {
        wait_state(&c, s, left.id, RegionState::Normal).await;
    }
    c.remove_filter(cut);
    wait_state(&c, 2, left.id, RegionState::Normal).await;
    for s in [1, 2, 3] {
        c.wait_region_on(s, left.id, "the rolled-back version", move |i| {
            i.region.region_epoch.unwrap_or_default().version == prepared + 1
        })
        .await;
    }
    for key in [&b"k0003"[..], b"k0012", b"k0017"] {
        c.must_put_key(key, b"after").await;
        acked.retain(|(k, _)| k.as_slice() != key);
        acked.push((key.to_vec(), b"after".to_vec()));
    }
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    for s in [1, 2, 3] {
        c.must_have_on_store(s, &acked).await;
    }
    assert!(c.fatal_events().is_empty());
}
