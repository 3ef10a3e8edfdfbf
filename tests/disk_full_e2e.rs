//! A full data disk against the real binaries. One of three nodes moves onto a 256 MiB tmpfs
//! (mounted by the test; CI runs as root), which the test then fills with files. With the
//! default `storage.reserve-space` (5 GiB, at most 5% of the disk: 12.8 MiB here) that node
//! refuses writes to the regions it leads with TiKV's `errorpb.DiskFull`, keeps serving reads,
//! and its regions led elsewhere keep committing without it. Once the file is deleted it takes
//! writes again and catches up, and after a kill -9 it restarts on intact engines.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atoll_proto::kvrpcpb::{Context, RawGetRequest, RawPutRequest};
use atoll_proto::metapb::{Peer, RegionEpoch};
use atoll_proto::tikvpb::tikv_client::TikvClient;
use common::{http_post, wait_ok, wait_until, Cluster, ClusterConfig};
use serde_json::Value as Json;

/// Unmounts (lazily: the node may still hold files) when the test ends, also on failure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed (needs root)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn available_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's available bytes")
}

/// Writes `bytes` of zeros (tmpfs has no holes to hide them in).
fn fill(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write the filler");
        left -= n as u64;
    }
    f.sync_all().expect("sync the filler");
}

/// The store id of node `i` (by its address in PD's store list).
async fn store_id(cluster: &Cluster, i: usize) -> u64 {
    let addr = cluster.kv_addr(i);
    let stores = cluster.pd_get("/pd/api/v1/stores").await.expect("stores");
    stores["stores"]
        .as_array()
        .and_then(|ss| {
            ss.iter()
                .find(|s| s["store"]["address"].as_str() == Some(addr.as_str()))
                .and_then(|s| s["store"]["id"].as_u64())
        })
        .expect("the node's store")
}

/// PD's view of the region whose start key (hex) is `start`.
async fn region_at(cluster: &Cluster, start: &str) -> Json {
    cluster
        .pd_regions()
        .await
        .into_iter()
        .find(|r| r["start_key"].as_str() == Some(start))
        .expect("the region")
}

/// Moves the leadership of the region starting at `start` to `store` and waits for it.
async fn lead_from(cluster: &Cluster, start: &str, store: u64) {
    let id = region_at(cluster, start).await["id"].as_u64().expect("region id");
    wait_until(
        Duration::from_secs(60),
        &format!("store {store} leads region {id}"),
        || async {
            let r = region_at(cluster, start).await;
            if r["leader"]["store_id"].as_u64() == Some(store) {
                return true;
            }
            let body = format!(r#"{{"name":"transfer-leader","region_id":{id},"to_store_id":{store}}}"#);
            let _ = http_post(&cluster.pd_endpoint(), "/pd/api/v1/operators", &body).await;
            false
        },
    )
    .await;
}

/// A context addressing the region starting at `start` at its leader, as PD knows them.
async fn context_at(cluster: &Cluster, start: &str) -> Context {
    let r = region_at(cluster, start).await;
    Context {
        region_id: r["id"].as_u64().unwrap_or(0),
        region_epoch: Some(RegionEpoch {
            conf_ver: r["epoch"]["conf_ver"].as_u64().unwrap_or(0),
            version: r["epoch"]["version"].as_u64().unwrap_or(0),
        }),
        peer: Some(Peer {
            id: r["leader"]["id"].as_u64().unwrap_or(0),
            store_id: r["leader"]["store_id"].as_u64().unwrap_or(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    // Leaders stay where the test puts them (PD's balancing would move them away).
    let mut cluster = Cluster::start_with(
        3,
        ClusterConfig {
            pd: "[schedule]\nleader-schedule-limit = 0\nhot-region-schedule-limit = 0\n".into(),
            ..Default::default()
        },
    )
    .await;
    let v1 = cluster.raw_v1().await;
    let v2 = cluster.raw_v2().await;
    for i in 0..50 {
        v1.put(format!("a/{i:03}"), format!("before-{i}"))
            .await
            .expect("v1 put");
        v2.put(format!("b/{i:03}"), format!("before-{i}"))
            .await
            .expect("v2 put");
    }

    // Node 0's data moves onto a small tmpfs.
    let full = 0;
    let dir = cluster.dir().join(format!("kv-{full}"));
    let saved = cluster.dir().join("kv-saved");
    cluster.kill_kv(full);
    std::fs::rename(&dir, &saved).expect("move the data dir aside");
    std::fs::create_dir(&dir).expect("create the mount point");
    let _tmpfs = Tmpfs::mount(&dir, "256m");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&dir)
        .status()
        .expect("run cp");
    assert!(copied.success(), "copying the data dir onto the tmpfs failed");
    cluster.restart_kv(full).await;
    let full_store = store_id(&cluster, full).await;
    let other_store = store_id(&cluster, 1).await;

    // The V1 region (from the start of the key space) is led by the full node; the V2 raw
    // region ("r\0\0\0" memcomparable-encoded) by another one.
    let v1_region = "";
    let v2_region = "7200000000000000FB";
    lead_from(&cluster, v1_region, full_store).await;
    lead_from(&cluster, v2_region, other_store).await;
    // Every region has three voters and nothing in flight: with one node full, the other two
    // must make a quorum on their own (a region still adding its third voter would not).
    wait_until(
        Duration::from_secs(60),
        "every region has three voters and no operator runs",
        || async {
            let settled = cluster.pd_regions().await.iter().all(|r| {
                let peers = r["peers"].as_array().cloned().unwrap_or_default();
                peers.len() == 3
                    && peers.iter().all(|p| p["role_name"].as_str() == Some("Voter"))
                    && r["pending_peers"].as_array().is_none_or(|p| p.is_empty())
            });
            let idle = cluster
                .pd_get("/pd/api/v1/operators")
                .await
                .is_ok_and(|ops| ops.as_array().is_some_and(|a| a.is_empty()));
            settled && idle
        },
    )
    .await;
    let mut kv = wait_ok(Duration::from_secs(10), "connect to the full node", || {
        TikvClient::connect(format!("http://{}", cluster.kv_addr(full)))
    })
    .await;

    // Fill the disk to 8 MiB below its end: under the reserve, with room left for RocksDB's
    // own flushes. The node's engines may free space meanwhile (obsolete WAL files go after a
    // flush), so each attempt below tops the fillers up again.
    let mut fillers: Vec<PathBuf> = Vec::new();
    let top_up = |fillers: &mut Vec<PathBuf>| {
        if available_bytes(&dir) > 10 << 20 {
            let f = dir.join(format!("filler-{}", fillers.len()));
            fill(&f, available_bytes(&dir).saturating_sub(8 << 20));
            fillers.push(f);
        }
    };
    let free = |fillers: &mut Vec<PathBuf>| {
        for f in fillers.drain(..) {
            std::fs::remove_file(&f).expect("delete a filler");
        }
    };

    // Until the node notices (within a second), writes may still go through: each attempt
    // writes its own key, and the refused one must never appear. A full node that loses its
    // leadership (an election under CI load) cannot take it back while it drops appends: then
    // space is freed, leadership moved back, and the disk filled again.
    let mut attempt = 0;
    let mut refused = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while refused.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write was refused with DiskFull and served a read after it\n{}",
            cluster.log_tails()
        );
        if region_at(&cluster, v1_region).await["leader"]["store_id"].as_u64() != Some(full_store) {
            free(&mut fillers);
            lead_from(&cluster, v1_region, full_store).await;
        }
        top_up(&mut fillers);
        attempt += 1;
        let key = format!("a/during/{attempt}").into_bytes();
        let ctx = context_at(&cluster, v1_region).await;
        let req = RawPutRequest {
            context: Some(ctx.clone()),
            key: key.clone(),
            value: b"x".to_vec(),
            ..Default::default()
        };
        let disk_full = match kv.raw_put(req).await {
            Ok(resp) => resp.into_inner().region_error.and_then(|e| e.disk_full),
            Err(_) => None,
        };
        let Some(disk_full) = disk_full else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        assert_eq!(disk_full.store_id, vec![full_store]);
        // Reads are served by the full node, which leads the region.
        let resp = kv
            .raw_get(RawGetRequest {
                context: Some(ctx),
                key: b"a/007".to_vec(),
                ..Default::default()
            })
            .await
            .expect("RawGet")
            .into_inner();
        match resp.region_error {
            None => {
                assert_eq!(resp.value, b"before-7");
                refused = Some(key);
            }
            Some(e) if e.not_leader.is_some() => continue,
            Some(e) => panic!("a read from the full node failed: {e:?}"),
        }
    }
    let refused_key = refused.unwrap_or_default();
    assert!(
        cluster.kv_running(full),
        "the full node exited\n{}",
        cluster.log_tails()
    );
    assert_eq!(
        v1.get("a/013".to_owned()).await.expect("v1 get"),
        Some(b"before-13".to_vec())
    );

    // A region led elsewhere commits without the full node.
    for i in 0..20 {
        v2.put(format!("b/during/{i:03}"), format!("during-{i}"))
            .await
            .expect("v2 put while a follower's disk is full");
    }

    // Space comes back: writes resume by themselves.
    free(&mut fillers);
    wait_ok(Duration::from_secs(30), "a write accepted again", || {
        let mut kv = kv.clone();
        let cluster = &cluster;
        async move {
            let req = RawPutRequest {
                context: Some(context_at(cluster, v1_region).await),
                key: b"a/after".to_vec(),
                value: b"after".to_vec(),
                ..Default::default()
            };
            let resp = kv.raw_put(req).await.map_err(|e| e.to_string())?.into_inner();
            match (resp.region_error, resp.error.is_empty()) {
                (None, true) => Ok(()),
                (e, _) => Err(format!("{e:?} {}", resp.error)),
            }
        }
    })
    .await;
    v1.put("a/after2".to_owned(), "after".to_owned())
        .await
        .expect("v1 put after recovery");

    // The full node caught up on what it missed: leading the V2 region, it serves it all.
    lead_from(&cluster, v2_region, full_store).await;
    for i in 0..20 {
        assert_eq!(
            v2.get(format!("b/during/{i:03}")).await.expect("v2 get"),
            Some(format!("during-{i}").into_bytes())
        );
    }

    // Its engines are intact: killed and restarted, it serves everything.
    cluster.kill_kv(full);
    cluster.restart_kv(full).await;
    lead_from(&cluster, v1_region, full_store).await;
    for i in 0..50 {
        assert_eq!(
            v1.get(format!("a/{i:03}")).await.expect("v1 get after restart"),
            Some(format!("before-{i}").into_bytes())
        );
        assert_eq!(
            v2.get(format!("b/{i:03}")).await.expect("v2 get after restart"),
            Some(format!("before-{i}").into_bytes())
        );
    }
    assert_eq!(
        v1.get("a/after".to_owned()).await.expect("get"),
        Some(b"after".to_vec())
    );
    assert_eq!(
        v1.get(refused_key).await.expect("get"),
        None,
        "a refused write was applied"
    );
}
