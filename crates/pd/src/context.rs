//! Everything a running PD shares between its gRPC services, HTTP handlers and background
//! work: identity, allocators, cluster metadata, GC and keyspace state, the live
//! schedule/replication configuration and the operators.
//!
//! `config` is the configuration PD started with; its `[schedule]` and `[replication]`
//! sections may since have changed at runtime: read those from `options`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use atoll_proto::pdpb;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::PdConfig;
use crate::error::Result;
use crate::gc::GcManager;
use crate::gc_resolver::GcLockResolver;
use crate::hb_streams::HeartbeatStreams;
use crate::heatmap::{HeatmapConfig, HeatmapRecorder};
use crate::id_alloc::IdAllocator;
use crate::keyspace::KeyspaceManager;
use crate::options::PersistOptions;
use crate::schedule::Coordinator;
use crate::storage::MetaStorage;
use crate::tso::TsoAllocator;

/// The release version PD reports (the PD version whose API Atoll's PD follows).
pub const PD_RELEASE_VERSION: &str = "v8.5.0";

/// Shared state of one PD.
pub struct PdContext {
    pub config: PdConfig,
    pub cluster_id: u64,
    /// This (only) member; it is always the leader.
    pub member: pdpb::Member,
    pub storage: MetaStorage,
    pub tso: TsoAllocator,
    pub id_alloc: Arc<IdAllocator>,
    pub cluster: Cluster,
    pub gc: GcManager,
    /// Resolves the locks below a GC safe point before PD publishes it.
    pub gc_resolver: GcLockResolver,
    pub keyspaces: KeyspaceManager,
    pub hb_streams: HeartbeatStreams,
    /// The live `[schedule]` and `[replication]` sections.
    pub options: PersistOptions,
    /// Operators and scheduling state.
    pub coordinator: Coordinator,
    /// The key heatmap's history (the dashboard's), fed by region heartbeats.
    pub heatmap: HeatmapRecorder,
    /// Flips to `true` when the server shuts down; long-lived streams end on it.
    pub shutdown: watch::Receiver<bool>,
    pub start_time: SystemTime,
}

/// PD's way of making a cluster id: unix seconds in the high half, randomness in the low half.
fn new_cluster_id() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = (secs << 32) | u64::from(rand::random::<u32>());
    id.max(1)
}

fn load_or_create(
    load: impl Fn() -> Result<Option<u64>>,
    save: impl Fn(u64) -> Result<()>,
    make: impl Fn() -> u64,
) -> Result<u64> {
    if let Some(id) = load()?.filter(|id| *id != 0) {
        return Ok(id);
    }
    let id = make();
    save(id)?;
    Ok(id)
}

impl PdContext {
    /// Loads (or initializes) everything from `storage`. `config` must be adjusted.
    pub fn open(
        config: PdConfig,
        storage: MetaStorage,
        shutdown: watch::Receiver<bool>,
    ) -> Result<PdContext> {
        let cluster_id = load_or_create(
            || storage.load_cluster_id(),
            |id| storage.save_cluster_id(id),
            new_cluster_id,
        )?;
        let member_id = load_or_create(
            || storage.load_member_id(),
            |id| storage.save_member_id(id),
            || rand::random::<u64>().max(1),
        )?;
        let now = SystemTime::now();
        let deploy_path = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_default();
        let member = pdpb::Member {
            name: config.name.clone(),
            member_id,
            peer_urls: config.advertise_peer_url_list(),
            client_urls: config.advertise_client_url_list(),
            leader_priority: 0,
            deploy_path,
            binary_version: PD_RELEASE_VERSION.to_string(),
            git_hash: String::new(),
            dc_location: String::new(),
        };
        let id_alloc = Arc::new(IdAllocator::new(storage.clone())?);
        let tso = TsoAllocator::new(storage.clone())?;
        let options = PersistOptions::load(
            storage.clone(),
            config.schedule.clone(),
            config.replication.clone(),
        )?;
        let max_replicas = u32::try_from(options.max_replicas()).unwrap_or(u32::MAX);
        let cluster = Cluster::load(cluster_id, max_replicas, storage.clone(), id_alloc.clone(), now)?;
        cluster.set_max_replicas(max_replicas)?;
        let gc = GcManager::new(storage.clone())?;
        let unix_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let keyspaces = KeyspaceManager::new(&storage, unix_secs)?;
        let coordinator = Coordinator::new(storage.clone())?;
        tracing::info!(cluster_id, member_id, name = %config.name, "pd context ready");
        Ok(PdContext {
            config,
            cluster_id,
            member,
            storage,
            tso,
            id_alloc,
            cluster,
            gc,
            gc_resolver: GcLockResolver::new(),
            keyspaces,
            hb_streams: HeartbeatStreams::new(),
            options,
            coordinator,
            heatmap: HeatmapRecorder::new(HeatmapConfig::default()),
            shutdown,
            start_time: now,
        })
    }

    /// A response header without error.
    pub fn header(&self) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id: self.cluster_id,
            error: None,
        }
    }

    /// A response header carrying an error.
    pub fn error_header(&self, kind: pdpb::ErrorType, message: impl Into<String>) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id: self.cluster_id,
            error: Some(pdpb::Error {
                r#type: kind as i32,
                message: message.into(),
            }),
        }
    }

    /// A response header for `err`.
    pub fn header_for(&self, err: &crate::error::Error) -> pdpb::ResponseHeader {
        self.error_header(err.error_type(), err.to_string())
    }

    /// Whether the server is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
