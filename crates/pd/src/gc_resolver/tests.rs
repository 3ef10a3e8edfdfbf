//! Rounds against fake nodes ([`super::fake`]).

use std::collections::HashMap;

use atoll_proto::metapb;

use super::fake::FakeKv;
use super::*;

const ADDR_1: &str = "kv-1:20160";
const ADDR_2: &str = "kv-2:20160";

fn region(id: u64, start: &[u8], end: &[u8], store_id: u64) -> RegionInfo {
    let leader = metapb::Peer {
        id: id * 10,
        store_id,
        ..Default::default()
    };
    RegionInfo {
        meta: metapb::Region {
            id,
            start_key: if start.is_empty() {
                vec![]
            } else {
                decide::range_key(start)
            },
            end_key: if end.is_empty() {
                vec![]
            } else {
                decide::range_key(end)
            },
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![leader],
            ..Default::default()
        },
        leader: Some(leader),
        ..Default::default()
    }
}

struct FakeTopology {
    regions: Vec<RegionInfo>,
    stores: HashMap<u64, String>,
}

impl FakeTopology {
    /// Regions [ "", "m" ) on store 1 and [ "m", "" ) on store 2.
    fn two_regions() -> FakeTopology {
        FakeTopology {
            regions: vec![region(1, b"", b"m", 1), region(2, b"m", b"", 2)],
            stores: HashMap::from([(1, ADDR_1.to_string()), (2, ADDR_2.to_string())]),
        }
    }
}

fn fake_kv(topo: &FakeTopology) -> FakeKv {
    FakeKv::new(topo.regions.clone(), topo.stores.clone())
}

impl Topology for FakeTopology {
    fn regions(&self) -> Vec<RegionInfo> {
        self.regions.clone()
    }

    fn region_by_key(&self, key: &[u8]) -> Option<RegionInfo> {
        self.regions.iter().find(|r| r.contains(key)).cloned()
    }

    fn store_address(&self, store_id: u64) -> Option<String> {
        self.stores.get(&store_id).cloned()
    }
}

#[tokio::test]
async fn committed_primary_commits_its_secondaries() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    // Transaction 100 committed its primary "a" at 150 and crashed; "x" is still locked.
    kv.put_commit("a", 100, 150);
    kv.put_lock("x", "a", 100);
    kv.put_lock("y", "a", 100);
    let stats = resolve_locks(&topo, &kv, 200).await.unwrap();
    assert_eq!(kv.committed("x", 100), Some(150));
    assert_eq!(kv.committed("y", 100), Some(150));
    assert!(kv.lock_keys().is_empty());
    assert_eq!(
        stats,
        ResolveStats {
            regions: 2,
            locks: 2,
            txns: 1,
            committed: 1
        }
    );
    assert_eq!(kv.calls("check_txn_status"), 1);
}

#[tokio::test]
async fn orphan_transactions_are_rolled_back_and_newer_locks_kept() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    // 100: primary and secondary locked (a crashed prewrite); 300: after the safe point.
    kv.put_lock("b", "b", 100);
    kv.put_lock("z", "b", 100);
    kv.put_lock("c", "c", 300);
    kv.put_lock("q", "c", 300);
    // 110: primary gone without a trace (its prewrite never arrived).
    kv.put_lock("r", "d", 110);
    resolve_locks(&topo, &kv, 200).await.unwrap();
    assert!(kv.rolled_back("b", 100) && kv.rolled_back("z", 100));
    assert!(kv.rolled_back("d", 110) && kv.rolled_back("r", 110));
    assert_eq!(kv.lock_keys(), vec!["c", "q"]);
}

#[tokio::test]
async fn async_commit_with_all_keys_locked_commits_at_max_min_commit_ts() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    kv.put_async_lock("a", "a", 100, 120, &["b", "x", "y"]);
    kv.put_async_lock("b", "a", 100, 130, &[]);
    kv.put_async_lock("x", "a", 100, 125, &[]);
    kv.put_async_lock("y", "a", 100, 110, &[]);
    resolve_locks(&topo, &kv, 200).await.unwrap();
    for k in ["a", "b", "x", "y"] {
        assert_eq!(kv.committed(k, 100), Some(130), "{k}");
    }
    assert!(kv.lock_keys().is_empty());
}

#[tokio::test]
async fn async_commit_with_a_committed_secondary_commits() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    kv.put_async_lock("a", "a", 100, 120, &["b", "x"]);
    kv.put_async_lock("b", "a", 100, 120, &[]);
    kv.put_commit("x", 100, 140);
    resolve_locks(&topo, &kv, 200).await.unwrap();
    assert_eq!(kv.committed("a", 100), Some(140));
    assert_eq!(kv.committed("b", 100), Some(140));
    assert!(kv.lock_keys().is_empty());
}

#[tokio::test]
async fn async_commit_with_a_missing_secondary_rolls_back() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    // "x" was never prewritten.
    kv.put_async_lock("a", "a", 100, 120, &["b", "x"]);
    kv.put_async_lock("b", "a", 100, 120, &[]);
    resolve_locks(&topo, &kv, 200).await.unwrap();
    for k in ["a", "b", "x"] {
        assert!(kv.rolled_back(k, 100), "{k}");
        assert_eq!(kv.committed(k, 100), None, "{k}");
    }
    assert!(kv.lock_keys().is_empty());
}

#[tokio::test]
async fn async_commit_fallen_back_to_2pc_asks_the_primary_again() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    kv.put_async_lock("a", "a", 100, 120, &["x"]);
    // "x" was prewritten again without async commit.
    kv.put_lock("x", "a", 100);
    resolve_locks(&topo, &kv, 200).await.unwrap();
    assert_eq!(kv.calls("check_txn_status"), 2);
    assert!(kv.rolled_back("a", 100) && kv.rolled_back("x", 100));
    assert!(kv.lock_keys().is_empty());
}

#[tokio::test]
async fn pages_through_many_locks() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    // One transaction per lock (a node resolves every lock of a named transaction in the
    // region, so a page's transactions must differ for every page to find locks).
    kv.put_commit("a", 100, 150);
    let n = SCAN_LOCK_LIMIT as usize * 2 + 10;
    for i in 0..n {
        kv.put_lock(&format!("b{i:05}"), "a", 100 + i as u64);
    }
    kv.put_lock("x", "x", 90);
    let stats = resolve_locks(&topo, &kv, 10_000).await.unwrap();
    assert_eq!(stats.locks, n + 1);
    assert_eq!((stats.txns, stats.committed), (n + 1, 1));
    assert!(kv.lock_keys().is_empty());
    // Region 1: three pages; region 2: one.
    assert_eq!(kv.calls("scan_lock"), 4);
    assert_eq!(kv.calls("resolve_lock"), 4);
    assert_eq!(kv.committed("b00000", 100), Some(150));
    assert!(kv.rolled_back("b02057", 2157));
}

#[tokio::test]
async fn region_errors_and_unreachable_stores_fail_the_round() {
    // PD's view of region 2 is stale.
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    if let Some(epoch) = kv.regions.lock()[1].meta.region_epoch.as_mut() {
        epoch.version = 2;
    }
    kv.put_lock("x", "x", 100);
    let err = resolve_locks(&topo, &kv, 200).await.unwrap_err();
    assert!(
        matches!(
            err,
            ResolveLocksError::Region {
                region_id: 2,
                rpc: "KvScanLock",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(kv.lock_keys(), vec!["x"]);

    // The primary's region is stale: the status check fails, nothing is resolved.
    let kv = fake_kv(&topo);
    if let Some(epoch) = kv.regions.lock()[0].meta.region_epoch.as_mut() {
        epoch.version = 2;
    }
    let topo_region_2_only = FakeTopology {
        regions: vec![topo.regions[1].clone()],
        stores: topo.stores.clone(),
    };
    let lookups = FakeTopology {
        regions: topo.regions.clone(),
        stores: topo.stores.clone(),
    };
    kv.put_lock("x", "a", 100);
    struct Split<'a>(&'a FakeTopology, &'a FakeTopology);
    impl Topology for Split<'_> {
        fn regions(&self) -> Vec<RegionInfo> {
            self.0.regions()
        }
        fn region_by_key(&self, key: &[u8]) -> Option<RegionInfo> {
            self.1.region_by_key(key)
        }
        fn store_address(&self, store_id: u64) -> Option<String> {
            self.1.store_address(store_id)
        }
    }
    let err = resolve_locks(&Split(&topo_region_2_only, &lookups), &kv, 200)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ResolveLocksError::Region {
                region_id: 1,
                rpc: "KvCheckTxnStatus",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(kv.lock_keys(), vec!["x"]);

    // A store that does not answer.
    let kv = fake_kv(&topo);
    kv.down.lock().insert(ADDR_2.to_string());
    let err = resolve_locks(&topo, &kv, 200).await.unwrap_err();
    assert!(
        matches!(err, ResolveLocksError::Rpc { region_id: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(ADDR_2), "{err}");

    // No leader known, no store address, a key in no region.
    let mut no_leader = FakeTopology::two_regions();
    no_leader.regions[1].leader = None;
    let err = resolve_locks(&no_leader, &fake_kv(&topo), 200).await.unwrap_err();
    assert!(
        matches!(err, ResolveLocksError::NoLeader { region_id: 2 }),
        "{err}"
    );
    let mut no_store = FakeTopology::two_regions();
    no_store.stores.remove(&2);
    let err = resolve_locks(&no_store, &fake_kv(&topo), 200).await.unwrap_err();
    assert!(
        matches!(
            err,
            ResolveLocksError::NoStoreAddress {
                store_id: 2,
                region_id: 2
            }
        ),
        "{err}"
    );
    let hole = FakeTopology {
        regions: vec![topo.regions[0].clone()],
        stores: topo.stores.clone(),
    };
    let kv = fake_kv(&topo);
    kv.put_lock("b", "z", 100);
    let err = resolve_locks(&hole, &kv, 200).await.unwrap_err();
    assert!(matches!(err, ResolveLocksError::NoRegion { .. }), "{err}");
    assert!(err.to_string().contains("7a"), "{err}");
}

#[tokio::test]
async fn a_key_error_fails_the_round() {
    let topo = FakeTopology::two_regions();
    let kv = fake_kv(&topo);
    // The commit ts a secondary reports is below another secondary's min_commit_ts: the node
    // refuses the commit.
    kv.put_async_lock("a", "a", 100, 120, &["b", "x"]);
    kv.put_async_lock("b", "a", 100, 160, &[]);
    kv.put_commit("x", 100, 140);
    let err = resolve_locks(&topo, &kv, 200).await.unwrap_err();
    assert!(
        matches!(
            err,
            ResolveLocksError::Key {
                rpc: "KvResolveLock",
                ..
            }
        ),
        "{err}"
    );
}
