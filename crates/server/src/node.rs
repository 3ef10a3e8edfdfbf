//! Start-up and shutdown of a storage node: open engines, join the cluster (store id, first
//! regions), start raftstore, the gRPC services, the status server and the PD worker.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoll_proto::atollpb::raft_transport_server::RaftTransportServer;
use atoll_proto::metapb;
use atoll_proto::tikvpb::tikv_server::TikvServer;
use engine_rocks::RocksEngine;
use engine_traits::{KvEngine, Peekable, WriteBatch, ALL_CFS, CF_DEFAULT, CF_RAFT};
use raftstore::keys::{store_ident_key, StoreIdent};
use raftstore::StoreConfig;

use crate::config::Config;
use crate::pd_worker::PdWorker;
use crate::raftkv::RaftKv;
use crate::service::kv::KvService;
use crate::service::raft::RaftService;
use crate::{status_server, transport, GIT_HASH, VERSION};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(String),
    #[error("engine: {0}")]
    Engine(#[from] engine_traits::Error),
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    #[error("pd: {0}")]
    Pd(#[from] pd_client::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("store {0} was removed from the cluster (PD marks it Tombstone); it stops serving")]
    Removed(u64),
    #[error("this data directory belongs to cluster {local}, but PD runs cluster {pd}")]
    ClusterMismatch { local: u64, pd: u64 },
    #[error("grpc server: {0}")]
    Grpc(String),
}

/// The split keys of the initial regions: API V2 keyspace 0's raw and txn ranges, encoded.
pub fn initial_split_keys() -> Vec<Vec<u8>> {
    [&b"r\0\0\0"[..], b"r\0\0\x01", b"x\0\0\0", b"x\0\0\x01"]
        .iter()
        .map(|k| txn_types::memcomparable::encode_bytes(k))
        .collect()
}

fn open_engines(data_dir: &Path) -> Result<(RocksEngine, RocksEngine), NodeError> {
    std::fs::create_dir_all(data_dir)?;
    let kv = RocksEngine::open(&data_dir.join("db"), ALL_CFS)?;
    let raft = RocksEngine::open(&data_dir.join("raft"), &[CF_DEFAULT])?;
    Ok((kv, raft))
}

async fn store_ident(kv: &RocksEngine, pd: &pd_client::PdClient) -> Result<StoreIdent, NodeError> {
    if let Some(ident) = kv
        .get_cf(CF_RAFT, store_ident_key())?
        .and_then(|b| StoreIdent::decode(&b))
    {
        if ident.cluster_id != pd.cluster_id() {
            return Err(NodeError::ClusterMismatch {
                local: ident.cluster_id,
                pd: pd.cluster_id(),
            });
        }
        return Ok(ident);
    }
    let ident = StoreIdent {
        cluster_id: pd.cluster_id(),
        store_id: pd.alloc_id().await?,
    };
    let mut wb = WriteBatch::new();
    wb.put_cf(CF_RAFT, store_ident_key(), ident.encode());
    kv.write(&wb, true)?;
    tracing::info!(
        store_id = ident.store_id,
        cluster_id = ident.cluster_id,
        "store identity created"
    );
    Ok(ident)
}

/// Bootstraps the cluster with this store's initial regions if nobody has yet.
async fn maybe_bootstrap(
    kv: &RocksEngine,
    raft: &RocksEngine,
    pd: &pd_client::PdClient,
    store: &metapb::Store,
) -> Result<(), NodeError> {
    let prepared = kv
        .get_cf(CF_RAFT, prepare_bootstrap_key())?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes);
    if pd.is_bootstrapped().await? {
        if let Some(first_region_id) = prepared {
            resolve_lost_bootstrap(kv, raft, pd, first_region_id).await?;
        }
        return Ok(());
    }
    let mut regions: Vec<metapb::Region> = raftstore::load_regions(kv)?.into_iter().map(|(r, _)| r).collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    if !covers_key_space(&regions) {
        // A crash in the middle of preparing left part of them: start over.
        for r in &regions {
            raftstore::clear_prepared_region(kv, raft, r.id)?;
        }
        regions.clear();
    }
    if regions.is_empty() {
        let keys = initial_split_keys();
        let mut first_region_id = None;
        let mut bounds = vec![Vec::new()];
        bounds.extend(keys);
        bounds.push(Vec::new());
        for w in bounds.windows(2) {
            let region_id = pd.alloc_id().await?;
            let peer_id = pd.alloc_id().await?;
            if first_region_id.is_none() {
                // Recorded before any region is written: a restart must know these regions
                // were only prepared until PD accepts them.
                first_region_id = Some(region_id);
                let mut wb = WriteBatch::new();
                wb.put_cf(CF_RAFT, prepare_bootstrap_key(), region_id.to_be_bytes().to_vec());
                kv.write(&wb, true)?;
            }
            let region = metapb::Region {
                id: region_id,
                start_key: w[0].clone(),
                end_key: w[1].clone(),
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![metapb::Peer {
                    id: peer_id,
                    store_id: store.id,
                    ..Default::default()
                }],
                ..Default::default()
            };
            raftstore::bootstrap_region(kv, raft, &region)?;
            regions.push(region);
        }
    }
    // Sorted by start key either way: loaded regions were sorted above, new ones are made in order.
    let first = regions[0].clone();
    if prepared != Some(first.id) {
        let mut wb = WriteBatch::new();
        wb.put_cf(CF_RAFT, prepare_bootstrap_key(), first.id.to_be_bytes().to_vec());
        kv.write(&wb, true)?;
    }
    match pd.bootstrap(store.clone(), first).await {
        Ok(()) => {
            tracing::info!(regions = regions.len(), "cluster bootstrapped");
            clear_prepare_mark(kv)
        }
        Err(pd_client::Error::AlreadyBootstrapped) => {
            tracing::info!("cluster already bootstrapped by another store; dropping prepared regions");
            for r in &regions {
                raftstore::clear_prepared_region(kv, raft, r.id)?;
            }
            clear_prepare_mark(kv)
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks that this store prepared bootstrap regions that PD has not accepted yet.
fn prepare_bootstrap_key() -> &'static [u8] {
    raftstore::keys::prepare_bootstrap_key()
}

fn clear_prepare_mark(kv: &RocksEngine) -> Result<(), NodeError> {
    let mut wb = WriteBatch::new();
    wb.delete_cf(CF_RAFT, prepare_bootstrap_key());
    kv.write(&wb, true)?;
    Ok(())
}

/// A store that prepared bootstrap regions found the cluster bootstrapped on restart: if PD's
/// first region is ours, the bootstrap was ours (the crash came after PD accepted it);
/// otherwise another store won and the prepared regions must go, never be served.
async fn resolve_lost_bootstrap(
    kv: &RocksEngine,
    raft: &RocksEngine,
    pd: &pd_client::PdClient,
    first_region_id: u64,
) -> Result<(), NodeError> {
    let ours = pd
        .get_region(b"")
        .await?
        .is_some_and(|(region, _)| region.id == first_region_id);
    if !ours {
        let regions = raftstore::load_regions(kv)?;
        tracing::warn!(
            regions = regions.len(),
            "another store bootstrapped the cluster; clearing the regions prepared here"
        );
        for (r, _) in regions {
            raftstore::clear_prepared_region(kv, raft, r.id)?;
        }
    }
    clear_prepare_mark(kv)
}

/// Whether sorted `regions` tile the whole key space without gaps or overlaps.
fn covers_key_space(regions: &[metapb::Region]) -> bool {
    let (Some(first), Some(last)) = (regions.first(), regions.last()) else {
        return false;
    };
    first.start_key.is_empty()
        && last.end_key.is_empty()
        && regions
            .windows(2)
            .all(|w| !w[0].end_key.is_empty() && w[0].end_key == w[1].start_key)
}

/// A new leader of `region_id` (in `term`) raises the node's max read ts above every timestamp
/// PD handed out so far: reads served by earlier leaders on other nodes are then covered, and
/// async-commit and 1PC prewrites of the region stop fetching a timestamp each.
async fn sync_max_ts(cm: storage::ConcurrencyManager, pd: pd_client::PdClient, region_id: u64, term: u64) {
    let mut backoff = Duration::from_millis(100);
    for _ in 0..10 {
        match pd.get_tso().await {
            Ok(ts) => {
                cm.update_max_ts(txn_types::TimeStamp::new(ts));
                cm.set_max_ts_synced(region_id, term);
                return;
            }
            Err(e) => {
                tracing::warn!(region_id, error = %e, "max ts sync: no timestamp from PD yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let data_dir = PathBuf::from(&config.storage.data_dir);
    let (kv, raft) = open_engines(&data_dir)?;
    let addr: SocketAddr = tokio::net::lookup_host(&config.server.addr)
        .await?
        .next()
        .ok_or_else(|| NodeError::Config(format!("bad --addr {}", config.server.addr)))?;
    let grpc_listener = tokio::net::TcpListener::bind(addr).await?;
    let status_listener = status_server::bind(&config.server.status_addr).await?;

    let pd = pd_client::PdClient::connect(&config.pd.endpoints, Duration::from_secs(60)).await?;
    let ident = store_ident(&kv, &pd).await?;
    let start_ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let store = metapb::Store {
        id: ident.store_id,
        address: config.advertise_addr().to_owned(),
        peer_address: config.advertise_addr().to_owned(),
        status_address: config.advertise_status_addr().to_owned(),
        version: VERSION.to_owned(),
        git_hash: GIT_HASH.to_owned(),
        start_timestamp: start_ts as i64,
        deploy_path: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_default(),
        labels: config
            .server
            .labels
            .iter()
            .map(|(k, v)| metapb::StoreLabel {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    };
    maybe_bootstrap(&kv, &raft, &pd, &store).await?;
    pd.put_store(store.clone()).await?;

    let regions = raftstore::load_local_regions(&kv)?;
    tracing::info!(
        store_id = ident.store_id,
        regions = regions.iter().filter(|r| r.apply.is_some()).count(),
        "starting raftstore"
    );
    let snap_mgr = raftstore::SnapManager::new(data_dir.join("snap"))?;
    let rs = &config.raftstore;
    let store_cfg = StoreConfig {
        store_id: ident.store_id,
        tick_interval: rs.raft_base_tick_interval.0,
        election_tick: rs.raft_election_timeout_ticks,
        heartbeat_tick: rs.raft_heartbeat_ticks,
        max_entry_bytes: rs.raft_entry_max_size.0,
        log_gc_threshold: rs.raft_log_gc_threshold,
        log_gc_count_limit: rs.raft_log_gc_count_limit,
        max_peer_down: rs.max_peer_down_duration.0,
        store_io_pool_size: rs.store_io_pool_size.min(1),
        apply_pool_size: rs.apply_pool_size.min(1),
        split: config.split_config(),
        ..Default::default()
    };
    let disk_task = tokio::spawn(crate::disk::watch(
        data_dir.clone(),
        config.storage.reserve_space.0,
        store_cfg.disk_full.clone(),
    ));
    let (transport, router_slot) = transport::start(pd.clone(), snap_mgr.clone());
    let (events_tx, mut store_events) = tokio::sync::mpsc::unbounded_channel();
    let (router, mut store_handle) = raftstore::spawn_store(
        store_cfg,
        kv.clone(),
        raft.clone(),
        transport,
        regions,
        snap_mgr.clone(),
        events_tx,
    )?;
    let _ = router_slot.send(Some(router.clone()));
    // Store events go to the PD worker; a fatal one also stops the node.
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let cm = storage::ConcurrencyManager::default();
    {
        let (cm, pd) = (cm.clone(), pd.clone());
        tokio::spawn(async move {
            let mut fatal_tx = Some(fatal_tx);
            while let Some(ev) = store_events.recv().await {
                match &ev {
                    raftstore::StoreEvent::Fatal(why) => {
                        if let Some(tx) = fatal_tx.take() {
                            let _ = tx.send(why.clone());
                        }
                    }
                    raftstore::StoreEvent::LeaderChanged(info) if info.is_leader => {
                        if !cm.is_max_ts_synced(info.region.id, info.term) {
                            tokio::spawn(sync_max_ts(cm.clone(), pd.clone(), info.region.id, info.term));
                        }
                    }
                    raftstore::StoreEvent::LeaderChanged(_)
                    | raftstore::StoreEvent::AskSplit { .. }
                    | raftstore::StoreEvent::RegionSplit(_) => {}
                }
                let _ = events_tx.send(ev);
            }
        });
    }
    let pd_commands = tokio::spawn(crate::pd_worker::run_pd_commands(pd.clone(), router.clone()));
    let (removed_tx, removed_rx) = tokio::sync::oneshot::channel::<()>();

    // Keys and bytes read per region: counted by the kv service, reported by the PD worker.
    let read_stats = storage::ReadStats::new();
    let worker = PdWorker {
        pd: pd.clone(),
        read_stats: read_stats.clone(),
        router: router.clone(),
        kv: kv.clone(),
        store_id: ident.store_id,
        data_dir: data_dir.clone(),
        capacity: rs.capacity.0,
        start_time: start_ts as u32,
        region_interval: rs.pd_heartbeat_tick_interval.0,
        store_interval: rs.pd_store_heartbeat_tick_interval.0,
        removed: Some(removed_tx),
    };
    let pd_task = tokio::spawn(worker.run(events_rx));
    let load_split_task = tokio::spawn(crate::load_split::run(
        config.split.clone(),
        read_stats.clone(),
        router.clone(),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let status_task = tokio::spawn(status_server::serve(
        status_listener,
        ident.store_id,
        stop_signal(stop_rx.clone()),
    ));
    let raftkv = RaftKv::new(router.clone(), ident.store_id, kv.clone());
    let kv_service = KvService::new(
        raftkv,
        cm,
        std::sync::Arc::new(crate::tso::PdTso(pd.clone())),
        read_stats,
    )
    .with_splitter(crate::service::split::Splitter {
        pd: pd.clone(),
        router: router.clone(),
        store_id: ident.store_id,
    });
    let gc_task = tokio::spawn(
        crate::gc_worker::GcWorker {
            pd: pd.clone(),
            router: router.clone(),
            txn: kv_service.txn_storage().clone(),
            poll_interval: config.gc.poll_interval.0,
        }
        .run(),
    );
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(crate::service::guard::CatchPanicLayer)
        .add_service(
            TikvServer::new(kv_service)
                .max_decoding_message_size(config.server.max_grpc_recv_msg_len.0 as usize)
                .max_encoding_message_size(config.server.max_grpc_send_msg_len.0 as usize),
        )
        .add_service(
            RaftTransportServer::new(RaftService::new(router.clone(), snap_mgr.clone()))
                .max_decoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(
            // `Server::tcp_nodelay` does not reach sockets from an incoming stream: without
            // this, small responses wait for delayed ACKs (about 40 ms per request).
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                |conn| {
                    conn.inspect(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    })
                },
            ),
            stop_signal(stop_rx.clone()),
        );
    tracing::info!(addr = %addr, store_id = ident.store_id, version = VERSION, "atoll-kv serving");
    let grpc_task = tokio::spawn(grpc);

    let mut removed = false;
    let fatal = tokio::select! {
        _ = shutdown => None,
        why = fatal_rx => why.ok(),
        Ok(()) = removed_rx => {
            removed = true;
            None
        }
    };
    if let Some(why) = &fatal {
        tracing::error!(error = %why, "raftstore stopped; the node stops serving");
    } else if removed {
        tracing::warn!(
            store_id = ident.store_id,
            "PD says this store was removed; shutting down"
        );
    } else {
        tracing::info!("shutting down");
    }
    let _ = stop_tx.send(true);
    // Other nodes keep their Raft streams to this one open: give in-flight requests a moment,
    // then close the listener's connections without waiting for those streams to end.
    let grpc_abort = grpc_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), grpc_task)
        .await
        .is_err()
    {
        grpc_abort.abort();
    }
    let _ = status_task.await;
    tokio::task::spawn_blocking(move || store_handle.shutdown())
        .await
        .ok();
    pd_task.abort();
    pd_commands.abort();
    gc_task.abort();
    load_split_task.abort();
    disk_task.abort();
    if let Some(why) = fatal {
        return Err(NodeError::Raftstore(raftstore::Error::Engine(why)));
    }
    kv.sync()?;
    tracing::info!("stopped");
    if removed {
        return Err(NodeError::Removed(ident.store_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{covers_key_space, initial_split_keys};
    use atoll_proto::metapb::Region;

    fn region(start: &[u8], end: &[u8]) -> Region {
        Region {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn key_space_coverage() {
        assert!(!covers_key_space(&[]));
        assert!(covers_key_space(&[region(b"", b"")]));
        assert!(covers_key_space(&[region(b"", b"m"), region(b"m", b"")]));
        assert!(!covers_key_space(&[region(b"", b"m")]));
        assert!(!covers_key_space(&[region(b"", b"m"), region(b"n", b"")]));
    }

    #[test]
    fn split_keys_are_sorted_keyspace_bounds() {
        let keys = initial_split_keys();
        assert_eq!(keys.len(), 4);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys[0], b"r\0\0\0\0\0\0\0\xfb".to_vec());
    }
}
