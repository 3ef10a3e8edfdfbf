use std::time::SystemTime;

use super::*;
use crate::schedule::operator::OpStep;
use crate::schedule::test_util::{apply_ops, regions_on, up, view};

fn stat(region_id: u64, byte_rate: f64) -> HotRegionStat {
    HotRegionStat {
        region_id,
        byte_rate,
        key_rate: 0.0,
        hot_degree: 3,
        anti_count: 2,
        leader_store: 0,
        peers: Vec::new(),
        start_key: Vec::new(),
        end_key: Vec::new(),
        last_update: SystemTime::UNIX_EPOCH,
    }
}

fn cfg() -> HotRegionConfig {
    HotRegionConfig {
        max_replicas: 3,
        batch: 10,
    }
}

fn ids() -> impl FnMut() -> Option<u64> {
    let mut next = 1000;
    move || {
        next += 1;
        Some(next)
    }
}

#[test]
fn hot_write_peers_spread_to_an_idle_store() {
    // Regions 1..4 on stores 1, 2, 3 (leaders spread), region 1 and 2 hot; store 4 idle.
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &[1, 2, 3, 1]));
    let write = [stat(1, 100_000.0), stat(2, 60_000.0)];
    assert!(schedule(
        &mut v.clone(),
        &write,
        &[],
        &HotRegionConfig { batch: 0, ..cfg() },
        &mut ids()
    )
    .is_empty());
    let ops = schedule(&mut v, &write, &[], &cfg(), &mut ids());
    // Loads are 160k on stores 1, 2 and 3. Region 1 (100k) would overshoot on store 4
    // (100k > 160k - 100k); region 2 (60k) moves, from store 1 (lowest id of the busiest).
    // Then store 2 and 3 are at 160k, 4 at 60k: region 1 would still overshoot. One move.
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].desc(), "move-hot-write-peer");
    assert!(ops[0].kind().contains(OpKind::HOT_REGION));
    assert_eq!(ops[0].region_id(), 2);
    assert_eq!(
        ops[0].steps(),
        &[
            OpStep::AddLearner {
                store_id: 4,
                peer_id: 1001
            },
            OpStep::PromoteLearner {
                store_id: 4,
                peer_id: 1001
            },
            OpStep::RemovePeer { store_id: 1 },
        ]
    );
    apply_ops(&mut v, &ops);
    // Spread now: nothing more (stable, no move back).
    assert!(schedule(&mut v, &write, &[], &cfg(), &mut ids()).is_empty());
}

#[test]
fn hot_leaders_are_spread_over_followers() {
    // Three stores only (no peer can move), every hot region led by store 1.
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1, 1, 1, 1]));
    let read = [stat(1, 50_000.0), stat(2, 50_000.0), stat(3, 50_000.0)];
    let ops = schedule(&mut v, &[], &read, &cfg(), &mut ids());
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| o.desc() == "move-hot-read-leader"));
    apply_ops(&mut v, &ops);
    let leaders: Vec<u64> = (0..3).map(|i| v.regions[i].leader.unwrap().store_id).collect();
    let mut sorted = leaders.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 3]);
    assert!(schedule(&mut v, &[], &read, &cfg(), &mut ids()).is_empty());
    // Write leaders too, when no peer can move.
    let mut v = view(&up(3), regions_on(1, &[1, 2, 3], &[1, 1]));
    let write = [stat(1, 50_000.0), stat(2, 50_000.0)];
    let ops = schedule(&mut v, &write, &[], &cfg(), &mut ids());
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].desc(), "move-hot-write-leader");
}

#[test]
fn cold_or_busy_regions_are_left_alone() {
    let mut v = view(&up(4), regions_on(1, &[1, 2, 3], &[1, 1]));
    assert!(schedule(&mut v, &[], &[], &cfg(), &mut ids()).is_empty());
    v.busy.insert(1);
    assert!(schedule(&mut v, &[stat(1, 1e6)], &[], &cfg(), &mut ids()).is_empty());
}
