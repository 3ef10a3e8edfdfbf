//! Outgoing Raft messages: raftstore hands envelopes to [`GrpcTransport`] (never blocking the
//! store loop); a task per target store keeps one client stream open to it, resolving the
//! address through PD, and reports the target unreachable when sending fails.

use std::collections::HashMap;
use std::time::Duration;

use atoll_proto::atollpb::raft_transport_client::RaftTransportClient;
use atoll_proto::atollpb::{RaftMessage, RaftMessageBatch};
use engine_rocks::RocksSnapshot;
use protobuf::Message as _;
use raftstore::{RaftEnvelope, Router, Transport};
use tokio::sync::mpsc;

/// The raftstore side: a channel into the sending tasks.
pub struct GrpcTransport {
    tx: mpsc::UnboundedSender<RaftEnvelope>,
}

impl Transport for GrpcTransport {
    fn send(&mut self, msg: RaftEnvelope) {
        let _ = self.tx.send(msg);
    }
}

fn encode(env: RaftEnvelope) -> Option<RaftMessage> {
    let message = env.message.write_to_bytes().ok()?;
    Some(RaftMessage {
        region_id: env.region_id,
        from_peer: Some(env.from_peer),
        to_peer: Some(env.to_peer),
        region_epoch: Some(env.region_epoch),
        is_tombstone: false,
        start_key: env.start_key,
        end_key: env.end_key,
        message,
    })
}

/// Starts the dispatcher; returns the transport to give raftstore and a setter for the router
/// (which exists only once raftstore has started).
pub fn start(
    pd: pd_client::PdClient,
) -> (GrpcTransport, tokio::sync::oneshot::Sender<Router<RocksSnapshot>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<RaftEnvelope>();
    let (router_tx, router_rx) = tokio::sync::oneshot::channel::<Router<RocksSnapshot>>();
    tokio::spawn(async move {
        let Ok(router) = router_rx.await else { return };
        let mut per_store: HashMap<u64, mpsc::UnboundedSender<RaftEnvelope>> = HashMap::new();
        while let Some(env) = rx.recv().await {
            let store_id = env.to_peer.store_id;
            let sender = per_store
                .entry(store_id)
                .or_insert_with(|| spawn_store_sender(store_id, pd.clone(), router.clone()));
            if let Err(mpsc::error::SendError(env)) = sender.send(env) {
                let fresh = spawn_store_sender(store_id, pd.clone(), router.clone());
                let _ = fresh.send(env);
                per_store.insert(store_id, fresh);
            }
        }
    });
    (GrpcTransport { tx }, router_tx)
}

fn spawn_store_sender(
    store_id: u64,
    pd: pd_client::PdClient,
    router: Router<RocksSnapshot>,
) -> mpsc::UnboundedSender<RaftEnvelope> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RaftEnvelope>();
    tokio::spawn(async move {
        loop {
            let addr = match pd.get_store(store_id).await {
                Ok(store) if !store.peer_address.is_empty() => store.peer_address,
                Ok(store) => store.address,
                Err(e) => {
                    tracing::warn!(store_id, error = %e, "cannot resolve store address");
                    if !drain_unreachable(&mut rx, &router).await {
                        return;
                    }
                    continue;
                }
            };
            let endpoint = if addr.starts_with("http") {
                addr.clone()
            } else {
                format!("http://{addr}")
            };
            let client = match RaftTransportClient::connect(endpoint).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(store_id, addr, error = %e, "cannot connect to store");
                    if !drain_unreachable(&mut rx, &router).await {
                        return;
                    }
                    continue;
                }
            };
            let (batch_tx, batch_rx) = mpsc::channel::<RaftMessageBatch>(64);
            let mut client = client;
            let call = tokio::spawn(async move {
                client
                    .send(tokio_stream::wrappers::ReceiverStream::new(batch_rx))
                    .await
            });
            // Forward batches until the stream breaks.
            loop {
                let Some(first) = rx.recv().await else { return };
                let mut msgs = Vec::with_capacity(16);
                let mut regions = vec![(first.region_id, first.to_peer.id)];
                msgs.extend(encode(first));
                while let Ok(more) = rx.try_recv() {
                    regions.push((more.region_id, more.to_peer.id));
                    msgs.extend(encode(more));
                    if msgs.len() >= 256 {
                        break;
                    }
                }
                if batch_tx.send(RaftMessageBatch { msgs }).await.is_err() {
                    for (region_id, peer_id) in regions {
                        let _ = router.report_unreachable(region_id, peer_id);
                    }
                    break;
                }
            }
            let _ = call.await;
        }
    });
    tx
}

/// Reports queued messages unreachable and waits a little before retrying; false once closed.
async fn drain_unreachable(
    rx: &mut mpsc::UnboundedReceiver<RaftEnvelope>,
    router: &Router<RocksSnapshot>,
) -> bool {
    loop {
        match rx.try_recv() {
            Ok(env) => {
                let _ = router.report_unreachable(env.region_id, env.to_peer.id);
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    true
}
