//! Load-based split against the real binaries: with a low `[split] qps-threshold`, point reads
//! spread over a region's keys make the node split it between them (no write, no size
//! threshold involved), PD learns the new region, and every key still reads back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{memcomparable, unhex, wait_until, Cluster, ClusterConfig};

const CONFIG: &str = "[raftstore]
pd-heartbeat-tick-interval = \"1s\"
pd-store-heartbeat-tick-interval = \"1s\"
[split]
qps-threshold = 20
detect-times = 2
";

fn key(i: usize) -> String {
    format!("ls/{i:04}")
}

/// Id of PD's region holding stored key `key`.
async fn region_id_of(cluster: &Cluster, key: &[u8]) -> Option<u64> {
    cluster
        .pd_regions()
        .await
        .into_iter()
        .find(|r| {
            let start = unhex(r["start_key"].as_str().unwrap_or_default());
            let end = unhex(r["end_key"].as_str().unwrap_or_default());
            start.as_slice() <= key && (end.is_empty() || key < end.as_slice())
        })
        .and_then(|r| r["id"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spread_point_reads_over_the_threshold_split_the_region() {
    let cluster = Cluster::start_with(
        1,
        ClusterConfig {
            kv: CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    let raw = cluster.raw_v2().await;
    const N: usize = 100;
    for i in 0..N {
        raw.put(key(i), format!("v{i}")).await.expect("raw put");
    }
    let stored = |i: usize| memcomparable(format!("r\0\0\0{}", key(i)).as_bytes());
    let first = region_id_of(&cluster, &stored(0)).await.expect("region");
    assert_eq!(region_id_of(&cluster, &stored(N - 1)).await, Some(first));

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, raw) = (stop.clone(), raw.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = raw.get(key(i % N)).await.expect("raw get");
                assert_eq!(v, Some(format!("v{}", i % N).into_bytes()));
                i += 7;
            }
        })
    };
    wait_until(
        Duration::from_secs(60),
        "the read-hot region is split",
        || async {
            let a = region_id_of(&cluster, &stored(0)).await;
            let b = region_id_of(&cluster, &stored(N - 1)).await;
            a.is_some() && b.is_some() && a != b
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader task");
    for i in 0..N {
        assert_eq!(
            raw.get(key(i)).await.expect("raw get after split"),
            Some(format!("v{i}").into_bytes())
        );
    }
}
