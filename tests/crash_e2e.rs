//! Crash tests against the real binaries: `kill -9` of a node (and of PD) while clients write,
//! then a restart from the same data directory. An acknowledged write must survive; a write in
//! flight at the kill may be present or absent, but nothing that was never written may appear.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_ok, wait_until, Cluster, PRESPLIT_REGIONS};
use tikv_client::RawClient;

/// Acknowledged writes to wait for before the kill.
const ACKS_BEFORE_KILL: u64 = 300;

fn key(round: u32, i: u64) -> String {
    format!("crash/{round}/{i:08}")
}

fn value(round: u32, i: u64) -> Vec<u8> {
    format!("value-{round}-{i}").into_bytes()
}

/// How a sequential writer ended.
struct WriterEnd {
    /// Writes `0..acked` were all acknowledged.
    acked: u64,
    /// Whether write `acked` was sent and failed (so its outcome is unknown).
    in_flight: bool,
    error: Option<String>,
}

/// Puts `key(round, i) -> value(round, i)` for i = 0, 1, 2, … one at a time until a put fails
/// or `stop` is set; `progress` is the number of acknowledged puts so far.
fn spawn_writer(
    client: RawClient,
    round: u32,
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<WriterEnd> {
    tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            if stop.load(Ordering::SeqCst) {
                return WriterEnd {
                    acked: i,
                    in_flight: false,
                    error: None,
                };
            }
            match client.put(key(round, i), value(round, i)).await {
                Ok(()) => {
                    i += 1;
                    progress.store(i, Ordering::SeqCst);
                }
                Err(e) => {
                    return WriterEnd {
                        acked: i,
                        in_flight: true,
                        error: Some(format!("{e:?}")),
                    }
                }
            }
        }
    })
}

/// Every acknowledged key of `round` reads back with its value; the in-flight one (if any) is
/// either absent or complete; the one after it was never written.
async fn verify_round(client: &RawClient, round: u32, end: &WriterEnd) {
    let ids: Vec<u64> = (0..end.acked).collect();
    for chunk in ids.chunks(500) {
        let got = client
            .batch_get(chunk.iter().map(|&i| key(round, i)))
            .await
            .expect("batch_get");
        let mut found: Vec<(String, Vec<u8>)> = got
            .into_iter()
            .map(|p| (String::from_utf8_lossy(&Vec::from(p.0)).into_owned(), p.1))
            .collect();
        found.sort();
        let want: Vec<(String, Vec<u8>)> = chunk.iter().map(|&i| (key(round, i), value(round, i))).collect();
        if found != want {
            let missing: Vec<String> = want
                .iter()
                .filter(|w| !found.contains(w))
                .map(|(k, _)| k.clone())
                .take(20)
                .collect();
            panic!(
                "round {round}: {} of {} acknowledged keys in this chunk lost or wrong, e.g. {missing:?}",
                want.len() - found.len().min(want.len()),
                want.len()
            );
        }
    }
    let in_flight = client
        .get(key(round, end.acked))
        .await
        .expect("get in-flight key");
    if end.in_flight {
        assert!(
            in_flight.is_none() || in_flight == Some(value(round, end.acked)),
            "round {round}: in-flight key has a wrong value {in_flight:?}"
        );
    } else {
        assert_eq!(
            in_flight, None,
            "round {round}: key {} was never written",
            end.acked
        );
    }
    let after = client
        .get(key(round, end.acked + 1))
        .await
        .expect("get key after in-flight");
    assert_eq!(
        after,
        None,
        "round {round}: key {} was never written",
        end.acked + 1
    );
}

/// Waits until the (restarted) node serves reads through `client`.
async fn wait_serving(client: &RawClient) {
    wait_ok(Duration::from_secs(60), "the restarted node serves a get", || {
        client.get("crash/probe".to_owned())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill_9_twice() {
    let mut cluster = Cluster::start(1).await;
    let client = cluster.raw_v1().await;
    let mut ends = Vec::new();

    for round in 0..2u32 {
        let progress = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = spawn_writer(client.clone(), round, progress.clone(), stop.clone());
        wait_until(
            Duration::from_secs(60),
            &format!("round {round}: {ACKS_BEFORE_KILL} acknowledged puts"),
            || {
                let progress = progress.clone();
                async move { progress.load(Ordering::SeqCst) >= ACKS_BEFORE_KILL }
            },
        )
        .await;

        // kill -9 while the writer is mid-stream; stop it before the node comes back.
        cluster.kill_kv(0);
        stop.store(true, Ordering::SeqCst);
        let end = writer.await.expect("writer task");
        eprintln!(
            "round {round}: {} acknowledged, in flight: {}, error: {:?}",
            end.acked, end.in_flight, end.error
        );
        assert!(end.acked >= ACKS_BEFORE_KILL);

        cluster.restart_kv(0).await;
        wait_serving(&client).await;
        // This round and every earlier one.
        ends.push(end);
        for (r, end) in ends.iter().enumerate() {
            verify_round(&client, r as u32, end).await;
        }
        // A brand-new client sees the same.
        let fresh = cluster.raw_v1().await;
        verify_round(&fresh, round, ends.last().expect("an end")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_from_concurrent_writers_survive_kill_9() {
    const WRITERS: u64 = 4;
    const BATCH: u64 = 50;
    let mut cluster = Cluster::start(1).await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;

    // Writers alternate API versions and spread over regions (V1: `a/`, `s/`, `y/`).
    fn batch_key(w: u64, b: u64, j: u64) -> String {
        let prefix = ["a", "s", "y", "a"][w as usize % 4];
        format!("{prefix}/cw/{w}/{b:06}/{j:03}")
    }
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = [&v1, &v2][(w % 2) as usize].clone();
        let stop = stop.clone();
        let total = total.clone();
        writers.push(tokio::spawn(async move {
            // Returns (acknowledged batches, whether one more was in flight).
            let mut b = 0u64;
            loop {
                if stop.load(Ordering::SeqCst) {
                    return (b, false);
                }
                let pairs: Vec<(String, String)> = (0..BATCH)
                    .map(|j| (batch_key(w, b, j), format!("v-{w}-{b}-{j}")))
                    .collect();
                match client.batch_put(pairs).await {
                    Ok(()) => {
                        b += 1;
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => return (b, true),
                }
            }
        }));
    }
    wait_until(Duration::from_secs(60), "100 acknowledged batches", || {
        let total = total.clone();
        async move { total.load(Ordering::SeqCst) >= 100 }
    })
    .await;
    cluster.kill_kv(0);
    stop.store(true, Ordering::SeqCst);
    let mut ends = Vec::new();
    for w in writers {
        ends.push(w.await.expect("writer"));
    }
    cluster.restart_kv(0).await;
    wait_serving(&v1).await;

    for (w, &(acked, in_flight)) in ends.iter().enumerate() {
        let w = w as u64;
        let client = [&v1, &v2][(w % 2) as usize];
        for b in 0..acked {
            let keys: Vec<String> = (0..BATCH).map(|j| batch_key(w, b, j)).collect();
            let got = wait_ok(Duration::from_secs(30), "batch_get after restart", || {
                client.batch_get(keys.clone())
            })
            .await;
            assert_eq!(
                got.len() as u64,
                BATCH,
                "writer {w} batch {b}: acknowledged batch incomplete"
            );
            for p in got {
                let k = String::from_utf8_lossy(&Vec::from(p.0)).into_owned();
                let j: u64 = k
                    .rsplit('/')
                    .next()
                    .and_then(|j| j.parse().ok())
                    .expect("key suffix");
                assert_eq!(
                    p.1,
                    format!("v-{w}-{b}-{j}").into_bytes(),
                    "writer {w} value of {k}"
                );
            }
        }
        // The batch in flight is all-or-nothing per region; the one after it was never written.
        let never: Vec<String> = (0..BATCH).map(|j| batch_key(w, acked + 1, j)).collect();
        let got = client.batch_get(never).await.expect("batch_get never-written");
        assert!(
            got.is_empty(),
            "writer {w}: batch {} was never written",
            acked + 1
        );
        let got = client
            .batch_get((0..BATCH).map(|j| batch_key(w, acked, j)))
            .await
            .expect("batch_get");
        if in_flight {
            // One writer's batch lies in one region: one Raft entry, applied entirely or not at all.
            assert!(
                got.is_empty() || got.len() as u64 == BATCH,
                "writer {w}: in-flight batch {acked} partially applied ({} of {BATCH} keys)",
                got.len()
            );
        } else {
            assert!(got.is_empty(), "writer {w}: batch {acked} was never written");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_restart_keeps_data_reachable() {
    let mut cluster = Cluster::start(1).await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;
    let keys: Vec<String> = ["a", "s", "y"]
        .iter()
        .flat_map(|p| (0..20).map(move |i| format!("{p}/pdr/{i:02}")))
        .collect();
    v1.batch_put(keys.iter().map(|k| (k.clone(), format!("v1-{k}"))))
        .await
        .expect("v1 batch_put");
    v2.batch_put(keys.iter().map(|k| (k.clone(), format!("v2-{k}"))))
        .await
        .expect("v2 batch_put");

    let region_ids = |regions: Vec<serde_json::Value>| {
        let mut ids: Vec<u64> = regions.iter().filter_map(|r| r["id"].as_u64()).collect();
        ids.sort_unstable();
        ids
    };
    let before = region_ids(cluster.pd_regions().await);
    assert!(before.len() >= PRESPLIT_REGIONS);

    cluster.stop_pd();
    cluster.restart_pd().await;

    // PD kept its region metadata (same region ids).
    let after = region_ids(cluster.pd_regions().await);
    assert_eq!(after, before, "region ids changed across a PD restart");

    // Fresh clients (which must go through the restarted PD) read everything.
    let fresh_v1 = cluster.raw_v1().await;
    let fresh_v2 = cluster.raw_v2().await;
    for (api, c) in [("v1", &fresh_v1), ("v2", &fresh_v2)] {
        let got = c
            .batch_get(keys.clone())
            .await
            .expect("batch_get after PD restart");
        assert_eq!(got.len(), keys.len(), "[{api}] keys readable after PD restart");
        for p in got {
            let k = String::from_utf8_lossy(&Vec::from(p.0)).into_owned();
            assert_eq!(p.1, format!("{api}-{k}").into_bytes(), "[{api}] value of {k}");
        }
    }
    // The clients from before the restart recover too, for reads and writes.
    for (api, c) in [("v1", &v1), ("v2", &v2)] {
        let got = wait_ok(
            Duration::from_secs(30),
            &format!("[{api}] old client reads after PD restart"),
            || c.get("s/pdr/07".to_owned()),
        )
        .await;
        assert_eq!(got, Some(format!("{api}-s/pdr/07").into_bytes()));
        let k = format!("y/pdr/after/{api}");
        wait_ok(
            Duration::from_secs(30),
            &format!("[{api}] old client writes after PD restart"),
            || c.put(k.clone(), b"after".to_vec()),
        )
        .await;
        assert_eq!(c.get(k).await.expect("get"), Some(b"after".to_vec()));
    }
}
