//! Keeps PD informed: store heartbeats on a timer, region heartbeats for the regions this store
//! leads (at once when leadership changes, then on a timer).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoll_proto::{metapb, pdpb};
use engine_rocks::{RocksEngine, RocksSnapshot};
use engine_traits::{KvEngine, ALL_CFS, CF_DEFAULT, CF_LOCK, CF_WRITE};
use raftstore::{RegionInfo, Router, SplitRequest, StoreEvent};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::metrics::{ENGINE_SIZE, STORE_SIZE};

pub struct PdWorker {
    pub pd: pd_client::PdClient,
    pub router: Router<RocksSnapshot>,
    pub kv: RocksEngine,
    /// Keys and bytes the kv service's reads returned per region, taken at each heartbeat.
    pub read_stats: storage::ReadStats,
    pub store_id: u64,
    pub data_dir: PathBuf,
    /// Configured capacity; 0 = the disk's size.
    pub capacity: u64,
    pub start_time: u32,
    pub region_interval: Duration,
    pub store_interval: Duration,
    /// Told once PD answers that this store is removed (Tombstone): the node stops.
    pub removed: Option<tokio::sync::oneshot::Sender<()>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PdWorker {
    /// Runs until `events` closes (the store stopped).
    pub async fn run(mut self, mut events: UnboundedReceiver<StoreEvent>) {
        let mut region_tick = tokio::time::interval(self.region_interval);
        let mut store_tick = tokio::time::interval(self.store_interval);
        // Last reported written bytes/keys per region, to send deltas.
        let mut last: HashMap<u64, (u64, u64, u64)> = HashMap::new();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(StoreEvent::LeaderChanged(info)) => {
                        let flow = self.read_stats.take(info.region.id);
                        self.region_heartbeat(&info, flow, &mut last)
                    }
                    Some(StoreEvent::AskSplit { region, split_keys }) => {
                        let (pd, router) = (self.pd.clone(), self.router.clone());
                        tokio::spawn(async move {
                            let region_id = region.id;
                            if let Err(e) = split_region(&pd, &router, region, split_keys).await {
                                tracing::info!(region_id, error = %e, "split not done");
                            }
                        });
                    }
                    Some(StoreEvent::RegionSplit(regions)) => {
                        let pd = self.pd.clone();
                        tokio::spawn(async move {
                            if let Err(e) = pd.report_batch_split(regions).await {
                                tracing::warn!(error = %e, "split not reported to PD");
                            }
                        });
                    }
                    Some(StoreEvent::Fatal(_)) | None => return,
                },
                _ = region_tick.tick() => {
                    if let Ok(infos) = self.router.region_infos().await {
                        // Reads of regions this node does not lead (follower reads) are
                        // dropped here: only leaders heartbeat, and a leader reports what it
                        // served itself.
                        let mut reads = self.read_stats.take_all();
                        for info in infos.iter().filter(|i| i.is_leader) {
                            let flow = reads.remove(&info.region.id).unwrap_or_default();
                            self.region_heartbeat(info, flow, &mut last);
                        }
                    }
                }
                _ = store_tick.tick() => {
                    if self.store_heartbeat().await {
                        if let Some(tx) = self.removed.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
        }
    }

    /// `reads`: what this node's reads returned from the region since its last heartbeat.
    fn region_heartbeat(
        &self,
        info: &RegionInfo,
        reads: storage::ReadFlow,
        last: &mut HashMap<u64, (u64, u64, u64)>,
    ) {
        let now = now_secs();
        let (prev_bytes, prev_keys, prev_ts) = last
            .insert(info.region.id, (info.written_bytes, info.written_keys, now))
            .unwrap_or((0, 0, now));
        // The split checker's count is exact; until a region was checked, RocksDB's estimate.
        // PD reads a size of 0 as "not measured" and keeps the old one: a region measured empty
        // reports 1 byte (PD rounds it up to its 1 MiB minimum), so its keys reach 0 and the
        // merge checker sees it.
        let approximate_size = info.approximate_size.map(|s| s.max(1)).unwrap_or_else(|| {
            let start = txn_types::keys::data_key(&info.region.start_key);
            let end = txn_types::keys::data_end_key(&info.region.end_key);
            [CF_DEFAULT, CF_LOCK, CF_WRITE]
                .iter()
                .filter_map(|cf| self.kv.approximate_size_range(cf, &start, &end).ok())
                .sum()
        });
        let req = pdpb::RegionHeartbeatRequest {
            region: Some(info.region.clone()),
            leader: info.leader,
            bytes_written: info.written_bytes.saturating_sub(prev_bytes),
            keys_written: info.written_keys.saturating_sub(prev_keys),
            bytes_read: reads.bytes,
            keys_read: reads.keys,
            interval: Some(pdpb::TimeInterval {
                start_timestamp: prev_ts,
                end_timestamp: now,
            }),
            term: info.term,
            approximate_size,
            approximate_keys: info.approximate_keys.unwrap_or(0),
            pending_peers: info.pending_peers.clone(),
            down_peers: info
                .down_peers
                .iter()
                .map(|(peer, secs)| pdpb::PeerStats {
                    peer: Some(*peer),
                    down_seconds: *secs,
                })
                .collect(),
            ..Default::default()
        };
        if let Err(e) = self.pd.region_heartbeat(req) {
            tracing::warn!(region_id = info.region.id, error = %e, "region heartbeat not sent");
        }
    }

    /// Sends a store heartbeat; returns whether PD says this store is removed (Tombstone).
    async fn store_heartbeat(&self) -> bool {
        let (disk_total, disk_avail) = match (
            fs4::total_space(&self.data_dir),
            fs4::available_space(&self.data_dir),
        ) {
            (Ok(t), Ok(a)) => (t, a),
            _ => (0, 0),
        };
        let mut used = 0u64;
        for cf in ALL_CFS {
            if let Ok(size) = self.kv.approximate_size_cf(cf) {
                ENGINE_SIZE.with_label_values(&["kv", cf]).set(size as i64);
                used += size;
            }
        }
        // A configured capacity is the operator's promise of room for this store (e.g. several
        // stores sharing one disk, as in a playground): its available space is what is left of
        // it. Otherwise the store has the disk, and what the disk has left is available.
        let (capacity, available) = if self.capacity > 0 {
            (self.capacity, self.capacity.saturating_sub(used))
        } else {
            (disk_total, disk_avail.min(disk_total.saturating_sub(used)))
        };
        STORE_SIZE.with_label_values(&["capacity"]).set(capacity as i64);
        STORE_SIZE.with_label_values(&["available"]).set(available as i64);
        STORE_SIZE.with_label_values(&["used"]).set(used as i64);
        let region_count = self.router.region_infos().await.map(|r| r.len()).unwrap_or(0);
        let stats = pdpb::StoreStats {
            store_id: self.store_id,
            capacity,
            available,
            used_size: used,
            region_count: region_count as u32,
            start_time: self.start_time,
            ..Default::default()
        };
        match self.pd.store_heartbeat(stats).await {
            Ok(_) => false,
            Err(e) if e.pd_error_type() == Some(pdpb::ErrorType::StoreTombstone) => {
                tracing::warn!(store_id = self.store_id, "PD says this store is a tombstone");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "store heartbeat failed");
                false
            }
        }
    }
}

/// Executes what PD asks of the regions this store leads (operator steps in region heartbeat
/// responses): membership changes and leader transfers. Runs until PD's client goes away.
pub async fn run_pd_commands(pd: pd_client::PdClient, router: Router<RocksSnapshot>) {
    let Some(mut responses) = pd.take_region_heartbeat_responses() else {
        return;
    };
    while let Some(resp) = responses.recv().await {
        let router = router.clone();
        tokio::spawn(async move { execute_pd_command(&router, resp).await });
    }
}

fn change_of(kind: i32, peer: atoll_proto::metapb::Peer) -> Option<raftstore::PeerChange> {
    use atoll_proto::eraftpb::ConfChangeType;
    Some(match ConfChangeType::try_from(kind).ok()? {
        ConfChangeType::AddNode => raftstore::PeerChange::AddVoter(peer),
        ConfChangeType::AddLearnerNode => raftstore::PeerChange::AddLearner(peer),
        ConfChangeType::RemoveNode => raftstore::PeerChange::Remove(peer),
    })
}

async fn execute_pd_command(router: &Router<RocksSnapshot>, resp: pdpb::RegionHeartbeatResponse) {
    let epoch = resp.region_epoch.unwrap_or_default();
    let header = raftstore::CmdHeader {
        region_id: resp.region_id,
        peer_id: 0,
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        ..Default::default()
    };
    let mut changes = Vec::new();
    if let Some(cp) = &resp.change_peer {
        changes.extend(cp.peer.and_then(|p| change_of(cp.change_type, p)));
    }
    if let Some(v2) = &resp.change_peer_v2 {
        changes.extend(
            v2.changes
                .iter()
                .filter_map(|cp| cp.peer.and_then(|p| change_of(cp.change_type, p))),
        );
    }
    let result = if !changes.is_empty() {
        tracing::info!(
            region_id = resp.region_id,
            ?changes,
            "PD asks for a membership change"
        );
        router.change_peer(header, changes).await
    } else if let Some(peer) = resp.transfer_leader.as_ref().and_then(|t| t.peer) {
        tracing::info!(region_id = resp.region_id, to = ?peer, "PD asks to transfer leadership");
        router.transfer_leader(header, peer).await
    } else if let Some(split) = &resp.split_region {
        tracing::info!(
            region_id = resp.region_id,
            policy = split.policy,
            keys = split.keys.len(),
            "PD asks to split"
        );
        router.split_region(header, split.keys.clone())
    } else if let Some(target) = resp.merge.as_ref().and_then(|m| m.target.clone()) {
        tracing::info!(region_id = resp.region_id, target = target.id, "PD asks to merge");
        router.prepare_merge(header, target).await
    } else {
        return;
    };
    if let Err(e) = result {
        tracing::info!(region_id = resp.region_id, error = %e, "PD's operator step not executed");
    }
}

/// Why a split was not done: raftstore refused it (a region error for the client), or PD
/// could not give ids.
#[derive(Debug)]
pub enum SplitError {
    Raft(raftstore::Error),
    Pd(String),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Raft(e) => write!(f, "{e}"),
            SplitError::Pd(e) => write!(f, "PD: {e}"),
        }
    }
}

/// Splits `region` at `split_keys`: new ids from PD (`AskBatchSplit`), then the split through
/// Raft. Returns the regions it made (new ones in key order, then `region` shrunk).
pub async fn split_region(
    pd: &pd_client::PdClient,
    router: &Router<RocksSnapshot>,
    region: metapb::Region,
    split_keys: Vec<Vec<u8>>,
) -> Result<Vec<metapb::Region>, SplitError> {
    raftstore::split::check_split_keys(&region, &split_keys).map_err(SplitError::Raft)?;
    let ids = pd
        .ask_batch_split(region.clone(), split_keys.len() as u32)
        .await
        .map_err(|e| SplitError::Pd(e.to_string()))?;
    let requests: Vec<SplitRequest> = split_keys
        .into_iter()
        .zip(ids)
        .map(|(split_key, id)| SplitRequest {
            split_key,
            new_region_id: id.new_region_id,
            new_peer_ids: id.new_peer_ids,
        })
        .collect();
    let regions = raftstore::split::split_regions(&region, &requests).map_err(SplitError::Raft)?;
    let epoch = region.region_epoch.unwrap_or_default();
    let header = raftstore::CmdHeader {
        region_id: region.id,
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        ..Default::default()
    };
    router
        .batch_split(header, requests)
        .await
        .map_err(SplitError::Raft)?;
    tracing::info!(
        region_id = region.id,
        new_regions = ?regions.iter().map(|r| r.id).collect::<Vec<_>>(),
        "region split"
    );
    Ok(regions)
}
