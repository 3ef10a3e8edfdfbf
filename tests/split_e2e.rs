//! Splits against the real binaries, driven by tikv-client: with TiKV's tiny test thresholds
//! (`region-split-keys = 7`, `region-max-keys = 10`, a fast check tick) raw and transactional
//! writes (API V2) make dozens of regions while they run, PD learns every one, and scans forward
//! and reverse, raw and transactional, return every acknowledged key exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{wait_until, Cluster, ClusterConfig, TINY_SPLIT_CONFIG};
use tikv_client::TransactionClient;

fn raw_key(i: usize) -> Vec<u8> {
    format!("raw/{i:05}").into_bytes()
}

fn txn_key(i: usize) -> Vec<u8> {
    format!("txn/{i:05}").into_bytes()
}

async fn txn_scan(client: &TransactionClient, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let ts = client.current_timestamp().await.expect("timestamp");
    let mut snap = client.snapshot(ts, tikv_client::TransactionOptions::new_optimistic());
    let range = "txn/".to_owned().into_bytes()..b"txn0".to_vec();
    let pairs: Vec<tikv_client::KvPair> = if reverse {
        snap.scan_reverse(range, 100_000)
            .await
            .expect("txn reverse scan")
            .collect()
    } else {
        snap.scan(range, 100_000).await.expect("txn scan").collect()
    };
    pairs
        .into_iter()
        .map(|p| (Vec::from(p.key().clone()), p.value().clone()))
        .collect()
}

/// Raw and transactional keys written while regions split are each read back exactly once,
/// by raw and transactional scans in both directions, and PD knows every region.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiny_thresholds_split_into_dozens_of_regions_and_lose_nothing() {
    let cluster = Cluster::start_with(
        3,
        ClusterConfig {
            kv: TINY_SPLIT_CONFIG.into(),
            ..Default::default()
        },
    )
    .await;
    // API V2 (keyspace DEFAULT): raw and transactional keys live in ranges split apart at
    // bootstrap. (Under V1, a region boundary at a raw key cannot be decoded by a
    // transactional client; TiKV asks for one API per key range too.)
    let raw = cluster.raw_v2().await;
    let txn = cluster.txn_v2().await;
    const N: usize = 300;
    let mut raw_acked = BTreeMap::new();
    let mut txn_acked = BTreeMap::new();
    for i in 0..N {
        let v = format!("raw-value-{i}").into_bytes();
        raw.put(raw_key(i), v.clone()).await.expect("raw put");
        raw_acked.insert(raw_key(i), v);
        if i % 3 == 0 {
            let mut t = txn.begin_optimistic().await.expect("begin");
            for j in i..i + 3 {
                t.put(txn_key(j), format!("txn-value-{j}"))
                    .await
                    .expect("txn put");
            }
            t.commit().await.expect("commit");
            for j in i..i + 3 {
                txn_acked.insert(txn_key(j), format!("txn-value-{j}").into_bytes());
            }
        }
    }
    // The splits found by the checker reach PD.
    wait_until(
        Duration::from_secs(60),
        "PD lists at least 40 regions",
        || async { cluster.pd_regions().await.len() >= 40 },
    )
    .await;

    let want_raw: Vec<(Vec<u8>, Vec<u8>)> = raw_acked.into_iter().collect();
    let got: Vec<(Vec<u8>, Vec<u8>)> = raw
        .scan(b"raw/".to_vec()..b"raw0".to_vec(), 10_240)
        .await
        .expect("raw scan")
        .into_iter()
        .map(|p| (Vec::from(p.key().clone()), p.value().clone()))
        .collect();
    assert_eq!(got, want_raw, "raw scan");
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = raw
        .scan_reverse(b"raw/".to_vec()..b"raw0".to_vec(), 10_240)
        .await
        .expect("raw reverse scan")
        .into_iter()
        .map(|p| (Vec::from(p.key().clone()), p.value().clone()))
        .collect();
    // tikv-client 0.4 walks regions forward even when scanning in reverse (each region's part
    // comes back reversed, the parts in key order): compare the pairs, each exactly once.
    got.sort();
    assert_eq!(got, want_raw, "raw reverse scan");
    let keys: Vec<Vec<u8>> = want_raw.iter().map(|(k, _)| k.clone()).collect();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = raw
        .batch_get(keys)
        .await
        .expect("raw batch get")
        .into_iter()
        .map(|p| (Vec::from(p.key().clone()), p.value().clone()))
        .collect();
    got.sort();
    assert_eq!(got, want_raw, "raw batch get");

    let want_txn: Vec<(Vec<u8>, Vec<u8>)> = txn_acked.into_iter().collect();
    assert_eq!(txn_scan(&txn, false).await, want_txn, "txn scan");
    let mut got = txn_scan(&txn, true).await;
    got.reverse();
    assert_eq!(got, want_txn, "txn reverse scan");

    // Every region PD lists has a leader and three peers (PD may still be adding the third
    // replica to regions split from one that had two), and the regions tile the key space.
    cluster.wait_regions_tile(3).await;
}

/// `tikvpb.Tikv/SplitRegion` (client-driven split, as TiDB's `SPLIT TABLE` sends it): the
/// region of the request's context splits where the client asks, PD learns both halves, keys on
/// both sides stay readable through tikv-client, and a stale epoch gets `EpochNotMatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_region_rpc_splits_where_the_client_asks() {
    use atoll_proto::{kvrpcpb, metapb, tikvpb::tikv_client::TikvClient};
    let cluster = Cluster::start(3).await;
    let raw = cluster.raw_v1().await;
    for k in ["a1", "k1"] {
        raw.put(k.to_owned(), k.to_owned()).await.expect("put");
    }
    // The first region ("" to the raw keyspace) holds both keys; find its leader's address.
    let (region, leader_addr) = {
        let regions = cluster.pd_regions().await;
        let r = regions
            .iter()
            .find(|r| r["start_key"].as_str() == Some(""))
            .expect("the first region")
            .clone();
        let leader_store = r["leader"]["store_id"].as_u64().expect("a leader");
        let stores = cluster.pd_get("/pd/api/v1/stores").await.expect("stores");
        let addr = stores["stores"]
            .as_array()
            .and_then(|ss| {
                ss.iter()
                    .find(|s| s["store"]["id"].as_u64() == Some(leader_store))
                    .and_then(|s| s["store"]["address"].as_str().map(str::to_owned))
            })
            .expect("the leader's address");
        (r, addr)
    };
    let epoch = metapb::RegionEpoch {
        conf_ver: region["epoch"]["conf_ver"].as_u64().unwrap_or(0),
        version: region["epoch"]["version"].as_u64().unwrap_or(0),
    };
    let context = kvrpcpb::Context {
        region_id: region["id"].as_u64().expect("region id"),
        region_epoch: Some(epoch),
        ..Default::default()
    };
    let mut client = TikvClient::connect(format!("http://{leader_addr}"))
        .await
        .expect("connect");
    let resp = client
        .split_region(kvrpcpb::SplitRegionRequest {
            context: Some(context.clone()),
            split_keys: vec![b"h".to_vec()],
            is_raw_kv: true,
            ..Default::default()
        })
        .await
        .expect("split rpc")
        .into_inner();
    assert!(resp.region_error.is_none(), "{:?}", resp.region_error);
    let bounds: Vec<(Vec<u8>, Vec<u8>)> = resp
        .regions
        .iter()
        .map(|r| (r.start_key.clone(), r.end_key.clone()))
        .collect();
    assert_eq!(bounds.len(), 2);
    assert_eq!(
        (bounds[0].1.as_slice(), bounds[1].0.as_slice()),
        (&b"h"[..], &b"h"[..])
    );
    wait_until(
        Duration::from_secs(30),
        "PD lists a region starting at h",
        || async {
            cluster
                .pd_regions()
                .await
                .iter()
                .any(|r| r["start_key"].as_str() == Some("68"))
        },
    )
    .await;
    for k in ["a1", "k1"] {
        assert_eq!(
            raw.get(k.to_owned()).await.expect("get"),
            Some(k.as_bytes().to_vec())
        );
    }
    // The old epoch is refused with the region as it is now.
    let stale = client
        .split_region(kvrpcpb::SplitRegionRequest {
            context: Some(context),
            split_keys: vec![b"c".to_vec()],
            is_raw_kv: true,
            ..Default::default()
        })
        .await
        .expect("split rpc")
        .into_inner();
    let err = stale.region_error.expect("a region error");
    assert!(err.epoch_not_match.is_some(), "{err:?}");
}
