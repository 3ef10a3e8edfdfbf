//! Read statistics against the real binaries: raw and transactional reads served by a node
//! reach PD through the leader's region heartbeats (`bytes_read` / `keys_read`), so PD's
//! region JSON shows `read_bytes` / `read_keys` and a region read hard enough is listed by
//! `/pd/api/v1/hotspot/regions/read`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{memcomparable, unhex, wait_until, Cluster, ClusterConfig};
use serde_json::Value as Json;

const CONFIG: &str = "[raftstore]
pd-heartbeat-tick-interval = \"1s\"
pd-store-heartbeat-tick-interval = \"1s\"
";

/// PD's region holding `key` (a stored, memcomparable-encoded key).
async fn region_of(cluster: &Cluster, key: &[u8]) -> Option<Json> {
    cluster.pd_regions().await.into_iter().find(|r| {
        let start = unhex(r["start_key"].as_str().unwrap_or_default());
        let end = unhex(r["end_key"].as_str().unwrap_or_default());
        start.as_slice() <= key && (end.is_empty() || key < end.as_slice())
    })
}

fn counter(region: &Json, name: &str) -> u64 {
    region[name].as_u64().unwrap_or(0)
}

/// Ids of the regions PD lists as read-hot (as leader, on any store).
async fn hot_read_regions(cluster: &Cluster) -> Vec<u64> {
    let Ok(v) = cluster.pd_get("/pd/api/v1/hotspot/regions/read").await else {
        return vec![];
    };
    v["as_leader"]
        .as_object()
        .into_iter()
        .flat_map(|stores| stores.values())
        .flat_map(|s| s["statistics"].as_array().cloned().unwrap_or_default())
        .filter_map(|st| st["region_id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_show_up_at_pd_as_read_bytes_and_hot_read_regions() {
    let cluster = Cluster::start_with(
        1,
        ClusterConfig {
            kv: CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    let raw = cluster.raw_v2().await;
    let txn = cluster.txn_v2().await;
    for i in 0..200 {
        raw.put(format!("rs/{i:04}"), vec![b'v'; 100])
            .await
            .expect("raw put");
    }
    let mut t = txn.begin_optimistic().await.expect("begin");
    for i in 0..20 {
        t.put(format!("ts/{i:04}"), vec![b'w'; 50])
            .await
            .expect("txn put");
    }
    t.commit().await.expect("commit");

    // Raw keys of keyspace 0 are stored as memcomparable("r\0\0\0" + key); transactional
    // ones as memcomparable("x\0\0\0" + key).
    let raw_stored = memcomparable(b"r\0\0\0rs/0000");
    let txn_stored = memcomparable(b"x\0\0\0ts/0000");

    // Point reads and scans of both APIs, over and over, until PD has seen them.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let pairs = raw
                    .scan("rs/".to_owned().."rs0".to_owned(), 200)
                    .await
                    .expect("raw scan");
                assert_eq!(pairs.len(), 200);
                let v = raw.get("rs/0007".to_owned()).await.expect("raw get");
                assert_eq!(v.map(|v| v.len()), Some(100));
                let ts = txn.current_timestamp().await.expect("timestamp");
                let mut snap = txn.snapshot(ts, tikv_client::TransactionOptions::new_optimistic());
                let got = snap.get("ts/0003".to_owned()).await.expect("txn get");
                assert_eq!(got.map(|v| v.len()), Some(50));
                let n = snap
                    .scan("ts/".to_owned().."ts0".to_owned(), 100)
                    .await
                    .expect("txn scan")
                    .count();
                assert_eq!(n, 20);
            }
        })
    };

    wait_until(
        Duration::from_secs(60),
        "PD shows read bytes and keys of the raw region",
        || async {
            region_of(&cluster, &raw_stored)
                .await
                .is_some_and(|r| counter(&r, "read_keys") > 0 && counter(&r, "read_bytes") > 0)
        },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "PD shows read bytes and keys of the txn region",
        || async {
            region_of(&cluster, &txn_stored)
                .await
                .is_some_and(|r| counter(&r, "read_keys") > 0 && counter(&r, "read_bytes") > 0)
        },
    )
    .await;
    let raw_region = region_of(&cluster, &raw_stored).await.expect("raw region")["id"]
        .as_u64()
        .expect("region id");
    // 200 keys of ~110 bytes per scan, many scans a second: well over PD's minimum hot read
    // rates, for the three heartbeats in a row the hot cache wants.
    wait_until(
        Duration::from_secs(60),
        "PD lists the raw region as read-hot",
        || async { hot_read_regions(&cluster).await.contains(&raw_region) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("reader task");
}
