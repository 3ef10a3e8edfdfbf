//! Region snapshots: a follower behind a compacted log catches up by one, and a snapshot
//! replaces the follower's data exactly.

use super::*;

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
    // The snapshot worker writes the data before the store loop counts the apply: wait for it.
    wait_until("the applied snapshot is counted", MUST_TIMEOUT, || {
        raftstore::metrics::SNAPSHOT_TOTAL
            .with_label_values(&["applied"])
            .get()
            > metric_before
    })
    .await;
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
