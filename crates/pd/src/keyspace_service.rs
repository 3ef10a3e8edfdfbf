//! The `keyspacepb.Keyspace` gRPC service.

use std::sync::Arc;

use atoll_proto::keyspacepb::{self, keyspace_server::Keyspace};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::context::PdContext;
use crate::pd_streams::{check_cluster_id, shutdown_signal, ResponseStream};

/// The `keyspacepb.Keyspace` implementation.
#[derive(Clone)]
pub struct KeyspaceService {
    ctx: Arc<PdContext>,
}

impl KeyspaceService {
    pub fn new(ctx: Arc<PdContext>) -> KeyspaceService {
        KeyspaceService { ctx }
    }
}

#[tonic::async_trait]
impl Keyspace for KeyspaceService {
    async fn load_keyspace(
        &self,
        request: Request<keyspacepb::LoadKeyspaceRequest>,
    ) -> Result<Response<keyspacepb::LoadKeyspaceResponse>, Status> {
        let req = request.into_inner();
        check_cluster_id(&self.ctx, req.header.as_ref())?;
        let resp = match self.ctx.keyspaces.load_by_name(&req.name) {
            Ok(meta) => keyspacepb::LoadKeyspaceResponse {
                header: Some(self.ctx.header()),
                keyspace: Some(meta),
            },
            Err(e) => keyspacepb::LoadKeyspaceResponse {
                header: Some(self.ctx.header_for(&e)),
                keyspace: None,
            },
        };
        Ok(Response::new(resp))
    }

    type WatchKeyspacesStream = ResponseStream<keyspacepb::WatchKeyspacesResponse>;

    /// Sends every keyspace once, then keeps the stream open (keyspaces never change yet).
    async fn watch_keyspaces(
        &self,
        request: Request<keyspacepb::WatchKeyspacesRequest>,
    ) -> Result<Response<Self::WatchKeyspacesStream>, Status> {
        let req = request.into_inner();
        check_cluster_id(&self.ctx, req.header.as_ref())?;
        let (tx, rx) = mpsc::channel(1);
        let first = keyspacepb::WatchKeyspacesResponse {
            header: Some(self.ctx.header()),
            keyspaces: self.ctx.keyspaces.load_range(0, 0),
        };
        let shutdown = self.ctx.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => {}
                _ = shutdown_signal(shutdown) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_all_keyspaces(
        &self,
        request: Request<keyspacepb::GetAllKeyspacesRequest>,
    ) -> Result<Response<keyspacepb::GetAllKeyspacesResponse>, Status> {
        let req = request.into_inner();
        check_cluster_id(&self.ctx, req.header.as_ref())?;
        Ok(Response::new(keyspacepb::GetAllKeyspacesResponse {
            header: Some(self.ctx.header()),
            keyspaces: self.ctx.keyspaces.load_range(req.start_id, req.limit as usize),
        }))
    }
}
