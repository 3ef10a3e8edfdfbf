//! Splits: proposed by hand and found by the split checker, under concurrent writes and scans,
//! leader transfers, membership changes, a follower down, and restarts. Every acknowledged key
//! is read back exactly once, from scans across regions and from every replica's engine.

use super::*;

/// Splits found by the checker at tiny thresholds (TiKV's client tests use these).
fn tiny_split_config() -> raftstore::StoreConfig {
    raftstore::StoreConfig {
        split: raftstore::SplitConfig {
            region_split_keys: 7,
            region_max_keys: 10,
            check_diff: 1,
            check_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..test_config()
    }
}

/// Every region in key order covers the key space without gaps or overlaps, and has a peer on
/// each store of `stores`.
async fn check_regions_tile(c: &Client, stores: &[u64]) -> Vec<atoll_proto::metapb::Region> {
    let regions = c.regions().await;
    let mut expect_start: Vec<u8> = vec![];
    for r in &regions {
        assert_eq!(r.start_key, expect_start, "gap or overlap before region {}", r.id);
        let mut on: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        on.sort_unstable();
        assert_eq!(on, stores, "region {} peers", r.id);
        expect_start = r.end_key.clone();
    }
    assert!(expect_start.is_empty(), "the last region does not reach the end");
    regions
}

/// 1. A split by hand: both halves have leaders and all replicas, every key stays readable,
///    a request with the old epoch gets `EpochNotMatch`, and both halves take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_by_hand_keeps_every_key_and_fences_the_old_epoch() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let acked = put_many(&c, "k", 0..20).await;
    let old = c.leader_region(REGION).await;
    let regions = c.must_split(b"k0010").await;
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[1].id, REGION, "the original region keeps the right half");
    assert_eq!(regions[0].end_key, b"k0010");
    for r in &regions {
        c.leader_of(r.id).await;
    }
    check_regions_tile(&c, &[1, 2, 3]).await;
    assert_exactly(&c.must_scan(b"", b"").await, &acked);

    let leader = c.leader_of(REGION).await;
    let router = c.router(leader).expect("router");
    let header = raftstore::CmdHeader {
        region_id: REGION,
        conf_ver: old.region_epoch.unwrap_or_default().conf_ver,
        version: old.region_epoch.unwrap_or_default().version,
        ..Default::default()
    };
    let stale = router.write(header, vec![put(b"k0015", b"x")]).await;
    assert!(matches!(stale, Err(Error::EpochNotMatch { .. })), "{stale:?}");

    let mut all = acked.clone();
    for key in [&b"k0003"[..], b"k0017", b"a", b"z"] {
        c.must_put_key(key, b"new").await;
        all.retain(|(k, _)| k.as_slice() != key);
        all.push((key.to_vec(), b"new".to_vec()));
    }
    assert_exactly(&c.must_scan(b"", b"").await, &all);
    for s in [1, 2, 3] {
        c.must_have_on_store(s, &all).await;
    }
    assert!(c.fatal_events().is_empty());
}

/// 2. The checker splits a growing region at tiny thresholds while a writer and scanners
///    run; every acknowledged key is found exactly once by scans and on every replica, and
///    after a restart of all stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_splits_under_writes_and_scans() {
    let mut c = Cluster::run(3, 3, tiny_split_config()).await;
    let writer = Writer::start(c.client(), "w");
    let mut scans = 0;
    let deadline = Instant::now() + MUST_TIMEOUT;
    while c.regions().await.len() < 8 {
        assert!(
            Instant::now() < deadline,
            "the checker never split the region enough"
        );
        // A scan while regions split: keys in order, none twice.
        let scanned = c.must_scan(b"", b"").await;
        let keys: Vec<&Vec<u8>> = scanned.iter().map(|(k, _)| k).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "scan out of order or duplicated"
        );
        scans += 1;
    }
    writer.wait_more(20).await;
    let acked = writer.stop().await;
    assert!(scans > 0);
    let regions = check_regions_tile(&c, &[1, 2, 3]).await;
    assert!(regions.len() >= 8);
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    c.must_have_on_stores(&[1, 2, 3], &acked).await;

    for s in [1, 2, 3] {
        c.stop_store(s);
    }
    c.start();
    let after = check_regions_tile(&c, &[1, 2, 3]).await;
    assert!(after.len() >= regions.len(), "regions lost in a restart");
    for r in &after {
        c.leader_of(r.id).await;
    }
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    assert!(c.fatal_events().is_empty());
}

/// 3. A follower is down during splits: it catches up on the log, creates the new regions'
///    peers from the split entries, and holds every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_down_during_split_catches_up() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..10).await;
    let leader = c.leader_of(REGION).await;
    let down = [1, 2, 3].into_iter().find(|s| *s != leader).expect("a follower");
    c.stop_store(down);
    let left = c.must_split(b"k0005").await;
    let middle = c.must_split(b"k0008").await;
    for i in 10..20 {
        let (k, v) = pair("k", i);
        c.must_put_key(&k, &v).await;
        acked.push((k, v));
    }
    let (k, _) = pair("k", 2);
    c.must_put_key(&k, b"changed").await;
    acked.retain(|(key, _)| key != &k);
    acked.push((k, b"changed".to_vec()));
    c.start_store(down);
    c.must_have_on_store(down, &acked).await;
    c.wait_region_on(down, left[0].id, "the split region", |i| {
        i.region.end_key == b"k0005"
    })
    .await;
    // The second split's region too (also when the follower applies both splits in one batch).
    c.wait_region_on(down, middle[0].id, "the second split region", |i| {
        i.region.end_key == b"k0008"
    })
    .await;
    check_regions_tile(&c, &[1, 2, 3]).await;
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    assert!(c.fatal_events().is_empty());
}

/// 4. Splits racing leader transfers and membership changes: whatever order they land in,
///    the regions tile the key space with full membership and no key is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_races_leader_transfer_and_conf_change() {
    let mut c = Cluster::run(4, 3, test_config()).await;
    let mut acked = put_many(&c, "k", 0..30).await;
    // Split while leadership moves.
    let leader = c.leader_of(REGION).await;
    let target = [1, 2, 3]
        .into_iter()
        .find(|s| *s != leader)
        .expect("another voter");
    let (split, _) = tokio::join!(c.must_split(b"k0010"), c.must_transfer_leader(REGION, target));
    assert_eq!(split.len(), 2);
    // Split while a learner is added on store 4 and then promoted.
    let (split, learner) = tokio::join!(c.must_split(b"k0020"), c.must_add_learner(REGION, 4));
    assert!(split.len() <= 2);
    c.must_change_peer(REGION, vec![PeerChange::AddVoter(learner)])
        .await;
    // The region split off before store 4 joined has no peer there.
    let regions = c.regions().await;
    for r in &regions {
        c.leader_of(r.id).await;
        let stores: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        if r.id == REGION {
            assert!(
                stores.contains(&4),
                "region {} lacks the new voter: {stores:?}",
                r.id
            );
        }
    }
    for i in 30..40 {
        let (k, v) = pair("k", i);
        c.must_put_key(&k, &v).await;
        acked.push((k, v));
    }
    assert_exactly(&c.must_scan(b"", b"").await, &acked);
    assert!(c.fatal_events().is_empty());
}

/// 5. A follower cut off from appends during two splits gets both splits' entries in one append
///    once healed and may apply them in one batch: the regions of both splits are created there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_applying_two_splits_together_creates_both_regions() {
    let mut c = Cluster::run(3, 3, test_config()).await;
    let acked = put_many(&c, "k", 0..10).await;
    c.must_have_on_stores(&[1, 2, 3], &acked).await;
    let leader = c.leader_of(REGION).await;
    let lagging = [1, 2, 3].into_iter().find(|s| *s != leader).expect("a follower");
    let cut = c.add_filter(drop_type_to(MessageType::MsgAppend, lagging));
    let first = c.must_split(b"k0003").await;
    let second = c.must_split(b"k0006").await;
    c.remove_filter(cut);
    for (region, end) in [(first[0].id, &b"k0003"[..]), (second[0].id, &b"k0006"[..])] {
        c.wait_region_on(lagging, region, "a split region", |i| i.region.end_key == end)
            .await;
    }
    check_regions_tile(&c, &[1, 2, 3]).await;
    c.must_have_on_store(lagging, &acked).await;
    assert!(c.fatal_events().is_empty());
}
