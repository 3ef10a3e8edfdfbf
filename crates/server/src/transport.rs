//! Outgoing Raft messages: raftstore hands envelopes to [`GrpcTransport`], which puts each
//! straight into its target store's queue (never blocking the store loop); a task per target
//! store keeps one client stream open to it, resolving the
//! address through PD, and reports the target unreachable when sending fails. Snapshot
//! messages go apart, each over its own `Snapshot` stream carrying the file in chunks.
//!
//! Queues are bounded: a message that finds its store's queue full is dropped and reported
//! unreachable (Raft resends). Batches are capped in messages and in bytes, well below the
//! receiver's gRPC message limit. Connections use a connect timeout and HTTP/2 keepalive;
//! reconnects back off exponentially with jitter.

use std::collections::HashMap;
use std::time::Duration;

use atoll_proto::atollpb::raft_transport_client::RaftTransportClient;
use atoll_proto::atollpb::{RaftMessage, RaftMessageBatch, SnapshotChunk};
use engine_rocks::RocksSnapshot;
use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raftstore::{RaftEnvelope, Router, SnapKey, SnapManager, Transport};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// Messages queued per target store before new ones are dropped.
const STORE_QUEUE: usize = 16_384;
/// At most this many messages, and about this many bytes, per batch.
const BATCH_MESSAGES: usize = 512;
const BATCH_BYTES: usize = 4 << 20;
/// Snapshot file bytes per chunk.
const SNAP_CHUNK: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// The raftstore side: called on the store thread, it hands each message straight to its
/// target store's queue (a sending task per store), never blocking.
pub struct GrpcTransport {
    handle: tokio::runtime::Handle,
    resolver: Resolver,
    snap_mgr: SnapManager,
    router: RouterCell,
    per_store: HashMap<u64, mpsc::Sender<RaftEnvelope>>,
}

/// The router, once raftstore started (tasks wait for it before reporting anything).
type RouterCell = tokio::sync::watch::Receiver<Option<Router<RocksSnapshot>>>;

/// Sets the router of the transport's tasks.
pub type RouterSlot = tokio::sync::watch::Sender<Option<Router<RocksSnapshot>>>;

async fn router_of(mut cell: RouterCell) -> Option<Router<RocksSnapshot>> {
    cell.wait_for(Option::is_some).await.ok().and_then(|r| r.clone())
}

impl Transport for GrpcTransport {
    fn send(&mut self, env: RaftEnvelope) {
        if env.message.get_msg_type() == MessageType::MsgSnapshot {
            let (resolver, mgr, cell) = (self.resolver.clone(), self.snap_mgr.clone(), self.router.clone());
            self.handle.spawn(async move {
                if let Some(router) = router_of(cell).await {
                    send_snapshot(resolver, mgr, router, env).await;
                }
            });
            return;
        }
        let store_id = env.to_peer.store_id;
        let (handle, resolver, cell) = (&self.handle, &self.resolver, &self.router);
        let sender = self
            .per_store
            .entry(store_id)
            .or_insert_with(|| spawn_store_sender(handle, store_id, resolver.clone(), cell.clone()));
        match sender.try_send(env) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(env)) => {
                tracing::debug!(store_id, "raft message queue full; message dropped");
                if let Some(router) = self.router.borrow().as_ref() {
                    let _ = router.report_unreachable(env.region_id, env.to_peer.id);
                }
            }
            Err(mpsc::error::TrySendError::Closed(env)) => {
                let fresh =
                    spawn_store_sender(&self.handle, store_id, self.resolver.clone(), self.router.clone());
                let _ = fresh.try_send(env);
                self.per_store.insert(store_id, fresh);
            }
        }
    }
}

/// Encodes an envelope for the wire.
pub fn encode(env: RaftEnvelope) -> Option<RaftMessage> {
    let message = env.message.write_to_bytes().ok()?;
    Some(RaftMessage {
        region_id: env.region_id,
        from_peer: Some(env.from_peer),
        to_peer: Some(env.to_peer),
        region_epoch: Some(env.region_epoch),
        is_tombstone: env.is_tombstone,
        start_key: env.start_key,
        end_key: env.end_key,
        message,
    })
}

/// Creates the transport (call within the node's tokio runtime); returns it with the slot
/// that receives raftstore's router once raftstore started.
pub fn start(pd: pd_client::PdClient, snap_mgr: SnapManager) -> (GrpcTransport, RouterSlot) {
    let (slot, cell) = tokio::sync::watch::channel(None);
    let transport = GrpcTransport {
        handle: tokio::runtime::Handle::current(),
        resolver: Resolver { pd },
        snap_mgr,
        router: cell,
        per_store: HashMap::new(),
    };
    (transport, slot)
}

/// Finds stores' addresses through PD and connects to them.
#[derive(Clone)]
struct Resolver {
    pd: pd_client::PdClient,
}

impl Resolver {
    async fn connect(&self, store_id: u64) -> Result<RaftTransportClient<Channel>, String> {
        let store = self.pd.get_store(store_id).await.map_err(|e| e.to_string())?;
        let addr = if store.peer_address.is_empty() {
            store.address
        } else {
            store.peer_address
        };
        if addr.is_empty() {
            return Err(format!("store {store_id} has no address"));
        }
        let url = if addr.starts_with("http") {
            addr
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|e| e.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(RaftTransportClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}

/// Exponential backoff with full jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_BASE }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_BASE;
    }

    async fn wait(&mut self) {
        let cap = self.next.as_millis() as u64;
        let ms = rand::random::<u64>() % cap.max(1) + cap / 2;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn spawn_store_sender(
    handle: &tokio::runtime::Handle,
    store_id: u64,
    resolver: Resolver,
    cell: RouterCell,
) -> mpsc::Sender<RaftEnvelope> {
    let (tx, mut rx) = mpsc::channel::<RaftEnvelope>(STORE_QUEUE);
    handle.spawn(async move {
        let Some(router) = router_of(cell).await else {
            return;
        };
        let mut backoff = Backoff::new();
        loop {
            let mut client = match resolver.connect(store_id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(store_id, error = %e, "cannot reach store");
                    if !drain_unreachable(&mut rx, &router) {
                        return;
                    }
                    backoff.wait().await;
                    continue;
                }
            };
            let (batch_tx, batch_rx) = mpsc::channel::<RaftMessageBatch>(8);
            let call = tokio::spawn(async move {
                client
                    .send(tokio_stream::wrappers::ReceiverStream::new(batch_rx))
                    .await
            });
            let mut sent_any = false;
            // Forward batches until the stream breaks.
            loop {
                let Some(first) = rx.recv().await else { return };
                let mut msgs = Vec::with_capacity(16);
                let mut bytes = 0usize;
                let mut regions = vec![(first.region_id, first.to_peer.id)];
                if let Some(m) = encode(first) {
                    bytes += m.message.len();
                    msgs.push(m);
                }
                while msgs.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
                    let Ok(more) = rx.try_recv() else { break };
                    regions.push((more.region_id, more.to_peer.id));
                    if let Some(m) = encode(more) {
                        bytes += m.message.len();
                        msgs.push(m);
                    }
                }
                if batch_tx.send(RaftMessageBatch { msgs }).await.is_err() {
                    for (region_id, peer_id) in regions {
                        let _ = router.report_unreachable(region_id, peer_id);
                    }
                    break;
                }
                if !sent_any {
                    sent_any = true;
                    backoff.reset();
                }
            }
            if let Ok(Err(status)) = call.await {
                tracing::debug!(store_id, %status, "raft stream to store ended");
            }
            backoff.wait().await;
        }
    });
    tx
}

/// Reports queued messages unreachable; false once the queue is closed.
fn drain_unreachable(rx: &mut mpsc::Receiver<RaftEnvelope>, router: &Router<RocksSnapshot>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(env) => {
                let _ = router.report_unreachable(env.region_id, env.to_peer.id);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

/// Streams one snapshot (message, then the file in chunks) and reports the outcome to Raft.
async fn send_snapshot(
    resolver: Resolver,
    snap_mgr: SnapManager,
    router: Router<RocksSnapshot>,
    env: RaftEnvelope,
) {
    let (region_id, to_peer_id, store_id) = (env.region_id, env.to_peer.id, env.to_peer.store_id);
    let md = env.message.get_snapshot().get_metadata();
    let key = SnapKey {
        region_id,
        term: md.term,
        index: md.index,
    };
    let result = stream_snapshot(&resolver, &snap_mgr, key, env).await;
    match &result {
        Ok(bytes) => {
            tracing::info!(
                region_id,
                to_peer_id,
                store_id,
                index = key.index,
                bytes,
                "snapshot sent"
            );
            raftstore::metrics::SNAPSHOT_TOTAL
                .with_label_values(&["sent"])
                .inc();
        }
        Err(e) => {
            tracing::warn!(region_id, to_peer_id, store_id, error = %e, "sending snapshot failed");
            raftstore::metrics::SNAPSHOT_TOTAL
                .with_label_values(&["send_failed"])
                .inc();
        }
    }
    let _ = router.report_snapshot(region_id, to_peer_id, result.is_ok());
}

async fn stream_snapshot(
    resolver: &Resolver,
    snap_mgr: &SnapManager,
    key: SnapKey,
    env: RaftEnvelope,
) -> Result<u64, String> {
    let store_id = env.to_peer.store_id;
    let mut file = tokio::fs::File::open(snap_mgr.gen_path(&key))
        .await
        .map_err(|e| format!("open snapshot {key:?}: {e}"))?;
    let mut client = resolver.connect(store_id).await?;
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let call = tokio::spawn(async move {
        client
            .snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let first = SnapshotChunk {
        message: encode(env),
        data: vec![],
    };
    let mut total = 0u64;
    let feed = async {
        tx.send(first)
            .await
            .map_err(|_| "snapshot stream closed".to_owned())?;
        let mut buf = vec![0u8; SNAP_CHUNK];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            total += n as u64;
            tx.send(SnapshotChunk {
                message: None,
                data: buf[..n].to_vec(),
            })
            .await
            .map_err(|_| "snapshot stream closed".to_owned())?;
        }
        Ok::<(), String>(())
    };
    let fed = feed.await;
    drop(tx);
    let answer = call.await.map_err(|e| e.to_string())?;
    fed?;
    answer.map_err(|s| s.to_string())?;
    Ok(total)
}
