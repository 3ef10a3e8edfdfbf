//! `atollpb.RaftTransport`: receives Raft messages from other stores.

use atoll_proto::atollpb::raft_transport_server::RaftTransport;
use atoll_proto::atollpb::{Done, RaftMessageBatch};
use engine_rocks::RocksSnapshot;
use protobuf::Message as _;
use raftstore::{RaftEnvelope, Router};
use tonic::{Request, Response, Status, Streaming};

pub struct RaftService {
    router: Router<RocksSnapshot>,
}

impl RaftService {
    pub fn new(router: Router<RocksSnapshot>) -> RaftService {
        RaftService { router }
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
        message,
    })
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn send(&self, req: Request<Streaming<RaftMessageBatch>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            for m in batch.msgs {
                let env = decode_envelope(m)?;
                self.router
                    .send_raft(env)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        Ok(Response::new(Done {}))
    }
}
