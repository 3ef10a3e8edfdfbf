//! `atollpb.RaftTransport`: receives Raft messages and region snapshots from other stores.

use atoll_proto::atollpb::raft_transport_server::RaftTransport;
use atoll_proto::atollpb::{Done, RaftMessageBatch, SnapshotChunk};
use engine_rocks::RocksSnapshot;
use protobuf::Message as _;
use raftstore::{RaftEnvelope, Router, SnapKey, SnapManager, SnapMeta};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

pub struct RaftService {
    router: Router<RocksSnapshot>,
    snap_mgr: SnapManager,
}

impl RaftService {
    pub fn new(router: Router<RocksSnapshot>, snap_mgr: SnapManager) -> RaftService {
        RaftService { router, snap_mgr }
    }
}

/// Decodes one wire message into what raftstore consumes.
pub fn decode_envelope(m: atoll_proto::atollpb::RaftMessage) -> Result<RaftEnvelope, Status> {
    let message = raft::eraftpb::Message::parse_from_bytes(&m.message)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
    let (Some(from_peer), Some(to_peer)) = (m.from_peer, m.to_peer) else {
        return Err(Status::invalid_argument("raft message without from/to peer"));
    };
    Ok(RaftEnvelope {
        region_id: m.region_id,
        from_peer,
        to_peer,
        region_epoch: m.region_epoch.unwrap_or_default(),
        start_key: m.start_key,
        end_key: m.end_key,
        is_tombstone: m.is_tombstone,
        message,
    })
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn send(&self, req: Request<Streaming<RaftMessageBatch>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            for m in batch.msgs {
                // A message that does not decode is dropped alone; the stream goes on.
                let env = match decode_envelope(m) {
                    Ok(env) => env,
                    Err(status) => {
                        tracing::warn!(%status, "undecodable raft message dropped");
                        continue;
                    }
                };
                self.router
                    .send_raft(env)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        Ok(Response::new(Done {}))
    }

    async fn snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        let Some(msg) = first.message else {
            return Err(Status::invalid_argument(
                "snapshot stream must start with its message",
            ));
        };
        let env = decode_envelope(msg)?;
        let snap = env.message.get_snapshot();
        let meta = SnapMeta::decode(&snap.data).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = SnapKey {
            region_id: env.region_id,
            term: snap.get_metadata().term,
            index: snap.get_metadata().index,
        };
        let tmp = self.snap_mgr.recv_tmp_path(&key);
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Status::internal(format!("create {}: {e}", tmp.display())))?;
        let mut received = 0u64;
        let written = async {
            while let Some(chunk) = stream.message().await? {
                received += chunk.data.len() as u64;
                if received > meta.size {
                    return Err(Status::invalid_argument("snapshot longer than announced"));
                }
                file.write_all(&chunk.data)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            file.sync_all()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(())
        }
        .await;
        if let Err(status) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(status);
        }
        let mgr = self.snap_mgr.clone();
        tokio::task::spawn_blocking(move || mgr.finish_receive(&key, &meta))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::data_loss(e.to_string()))?;
        raftstore::metrics::SNAPSHOT_TOTAL
            .with_label_values(&["received"])
            .inc();
        tracing::info!(
            region_id = key.region_id,
            index = key.index,
            bytes = received,
            "snapshot received"
        );
        self.router
            .send_raft(env)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Done {}))
    }
}
