//! Three-node clusters and the status server.

use super::*;

// ---------------------------------------------------------------------------------------------
// Three nodes
// ---------------------------------------------------------------------------------------------

async fn check_mixed_ops(api: &str, c: &RawClient) {
    let mut keys = Vec::new();
    for p in ["a", "s", "y"] {
        keys.extend(numbered(&format!("{p}/three/{api}/"), 0..10));
    }
    put_all(c, &keys).await;
    for k in &keys {
        assert_eq!(get_str(c, k).await, Some(val(k)), "[{api}] get {k}");
    }
    let got = c.batch_get(keys.clone()).await.expect("batch_get");
    let mut want = expected(&keys);
    want.sort();
    assert_eq!(sorted_pairs(got), want, "[{api}] batch_get");
    let (from, to) = if api == "v1" { ("a/", "t") } else { ("a/", "z") };
    let got = c.scan(range(from, to), 100).await.expect("scan");
    let want: Vec<String> = keys.iter().filter(|k| k.as_str() < to).cloned().collect();
    assert_eq!(pairs(got), expected(&want), "[{api}] scan {from}..{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_serves_raw_ops() {
    let cluster = Cluster::start(3).await;
    for (api, c) in both_apis(&cluster).await {
        check_mixed_ops(api, &c).await;
    }
}

/// Each region's peers' store ids, from PD's region listing.
fn peer_stores(region: &serde_json::Value) -> Vec<u64> {
    let mut stores: Vec<u64> = region["peers"]
        .as_array()
        .map(|peers| peers.iter().filter_map(|p| p["store_id"].as_u64()).collect())
        .unwrap_or_default();
    stores.sort_unstable();
    stores.dedup();
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_replicates_and_survives_losing_a_node() {
    let mut cluster = Cluster::start(3).await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;
    let keys: Vec<String> = ["a", "s", "y"]
        .iter()
        .flat_map(|p| numbered(&format!("{p}/repl/"), 0..10))
        .collect();
    put_all(&v1, &keys).await;
    put_all(&v2, &keys).await;

    // PD's scheduler gives every region three voters on three different stores, all caught up
    // (a learner still waiting for its snapshot does not count towards a quorum).
    wait_ok(
        Duration::from_secs(60),
        "every region has caught-up voters on 3 stores",
        || async {
            let regions = cluster.pd_regions().await;
            let spread: Vec<(u64, Vec<u64>)> = regions
                .iter()
                .map(|r| (r["id"].as_u64().unwrap_or(0), peer_stores(r)))
                .collect();
            let settled = regions.iter().all(|r| {
                let voters = r["peers"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .all(|p| p["role_name"].as_str().is_none_or(|n| n == "Voter"))
                });
                let pending = r["pending_peers"].as_array().is_some_and(|p| !p.is_empty());
                voters && !pending
            });
            if regions.len() >= PRESPLIT_REGIONS
                && settled
                && spread.iter().all(|(_, stores)| stores.len() == 3)
            {
                Ok(())
            } else {
                Err(format!("(region id, peer store ids): {spread:?}"))
            }
        },
    )
    .await;

    // Lose one node: the others elect leaders where needed and keep serving reads and writes.
    cluster.kill_kv(2);
    for (api, c) in [("v1", &v1), ("v2", &v2)] {
        for k in &keys {
            let got = wait_ok(
                Duration::from_secs(30),
                &format!("[{api}] get {k} with a node down"),
                || c.get(k.clone()),
            )
            .await;
            assert_eq!(got.map(text), Some(val(k)), "[{api}] {k} with a node down");
        }
        let k = format!("a/after-loss/{api}");
        wait_ok(
            Duration::from_secs(30),
            &format!("[{api}] put with a node down"),
            || c.put(k.clone(), val(&k)),
        )
        .await;
        assert_eq!(get_str(c, &k).await, Some(val(&k)));
    }
}

// ---------------------------------------------------------------------------------------------
// Status server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_status_server_serves_metrics_and_status() {
    let cluster = Cluster::start(1).await;
    let c = cluster.raw_v1().await;
    c.put("a/metrics".to_owned(), "x".to_owned()).await.expect("put");
    assert_eq!(get_str(&c, "a/metrics").await.as_deref(), Some("x"));

    assert!(cluster.kv_status_url(0).starts_with("http://127.0.0.1:"));
    let (status, body) = cluster.kv_status_get(0, "/metrics").await.expect("GET /metrics");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "/metrics: {body}");
    // Names a TiKV dashboard reads.
    for name in ["tikv_grpc_msg_duration_seconds", "tikv_raftstore_region_count"] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    let (status, body) = cluster.kv_status_get(0, "/status").await.expect("GET /status");
    assert_eq!(status, 200, "/status: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<serde_json::Value>(&body).expect("/status answers JSON");
}
