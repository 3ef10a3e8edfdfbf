//! Merges against the real binaries: with tiny split thresholds a raw key range splits into
//! dozens of regions; once most of its keys are deleted, PD's merge checker merges the emptied
//! regions back (aligning peers, then `merge` to the source leader) while a client keeps
//! writing, and tikv-client reads every remaining key exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{memcomparable, wait_until, Cluster, ClusterConfig, TINY_SPLIT_CONFIG};

/// Regions of at most 3 keys merge one second after their split.
const PD_CONFIG: &str = "[schedule]
split-merge-interval = \"1s\"
max-merge-region-keys = 3
max-merge-region-size = 1
";

fn key(i: usize) -> Vec<u8> {
    format!("raw/{i:05}").into_bytes()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Regions starting in `[lo, hi)` (keys of the raw keyspace 0: `r\0\0\0` + key,
/// memcomparable-encoded as region boundaries are), as PD lists them.
async fn regions_starting_in(cluster: &Cluster, lo: &[u8], hi: &[u8]) -> usize {
    let bound = |k: &[u8]| hex(&memcomparable(&[&b"r\0\0\0"[..], k].concat()));
    let (lo, hi) = (bound(lo), bound(hi));
    cluster
        .pd_regions()
        .await
        .iter()
        .filter(|r| {
            let start = r["start_key"].as_str().unwrap_or_default().to_lowercase();
            start >= lo && start < hi
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emptied_regions_merge_back_and_every_key_stays_readable() {
    let cluster = Cluster::start_with(
        3,
        ClusterConfig {
            kv: TINY_SPLIT_CONFIG.into(),
            pd: PD_CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    let raw = cluster.raw_v2().await;
    const N: usize = 240;
    let mut acked = BTreeMap::new();
    for i in 0..N {
        let v = format!("value-{i}").into_bytes();
        raw.put(key(i), v.clone()).await.expect("raw put");
        acked.insert(key(i), v);
    }
    wait_until(
        Duration::from_secs(60),
        "the raw range split into at least 20 regions",
        || async { regions_starting_in(&cluster, b"", b"raw0").await >= 20 },
    )
    .await;
    let emptied = regions_starting_in(&cluster, b"", &key(200)).await;

    // Empty most of the range: its regions fall under the merge thresholds.
    raw.delete_range(key(0)..key(200)).await.expect("delete range");
    acked.retain(|k, _| k.as_slice() >= key(200).as_slice());

    // Writes and reads of the remaining keys go on while PD merges.
    let mut i = 0;
    wait_until(
        Duration::from_secs(120),
        "PD merged the emptied regions (at most 2 left below the remaining keys)",
        || {
            i += 1;
            let raw = raw.clone();
            // Overwrites only: new keys would keep splitting the last region.
            let (k, v) = (key(200 + i % 40), format!("late-{i}").into_bytes());
            acked.insert(k.clone(), v.clone());
            let cluster = &cluster;
            async move {
                raw.put(k.clone(), v.clone()).await.expect("put while merging");
                assert_eq!(raw.get(k).await.expect("get while merging"), Some(v));
                regions_starting_in(cluster, b"", &key(200)).await <= 2
            }
        },
    )
    .await;

    println!(
        "regions below the remaining keys: {emptied} after the writes, {} after merging",
        regions_starting_in(&cluster, b"", &key(200)).await
    );
    let want: Vec<(Vec<u8>, Vec<u8>)> = acked.into_iter().collect();
    let got: Vec<(Vec<u8>, Vec<u8>)> = raw
        .scan(b"raw/".to_vec()..b"raw0".to_vec(), 10_240)
        .await
        .expect("raw scan")
        .into_iter()
        .map(|p| (Vec::from(p.key().clone()), p.value().clone()))
        .collect();
    assert_eq!(got, want, "raw scan after merges");

    // PD's regions tile the key space, each with a leader and three peers.
    cluster.wait_regions_tile(3).await;
}
