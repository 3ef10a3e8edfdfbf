//! gRPC clients of the storage nodes' `tikvpb.Tikv` service, one lazily connected channel per
//! store address, cached; a channel whose call failed is dropped and made again next time.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use atoll_proto::kvrpcpb;
use atoll_proto::tikvpb::tikv_client::TikvClient;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

/// How long connecting to a store may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request to a store may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer accepted (a scan of 1024 locks of async-commit primaries can be large).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 << 20;

/// The transactional RPCs lock resolution sends, addressed to a store by its address. The seam
/// lets tests stand in for the nodes.
pub trait KvRpc: Send + Sync {
    fn scan_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ScanLockRequest,
    ) -> impl Future<Output = Result<kvrpcpb::ScanLockResponse, Status>> + Send;

    fn check_txn_status(
        &self,
        addr: &str,
        req: kvrpcpb::CheckTxnStatusRequest,
    ) -> impl Future<Output = Result<kvrpcpb::CheckTxnStatusResponse, Status>> + Send;

    fn check_secondary_locks(
        &self,
        addr: &str,
        req: kvrpcpb::CheckSecondaryLocksRequest,
    ) -> impl Future<Output = Result<kvrpcpb::CheckSecondaryLocksResponse, Status>> + Send;

    fn resolve_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ResolveLockRequest,
    ) -> impl Future<Output = Result<kvrpcpb::ResolveLockResponse, Status>> + Send;
}

/// The url of a store address (`host:port`, or already a url).
pub fn store_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Cached `tikvpb.Tikv` clients by store address.
pub struct StoreClients {
    clients: Mutex<HashMap<String, TikvClient<Channel>>>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Default for StoreClients {
    fn default() -> Self {
        StoreClients::new(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }
}

impl StoreClients {
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> StoreClients {
        StoreClients {
            clients: Mutex::new(HashMap::new()),
            connect_timeout,
            request_timeout,
        }
    }

    /// The cached client of `addr`, or a new lazily connecting one.
    fn client(&self, addr: &str) -> Result<TikvClient<Channel>, Status> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let url = store_url(addr);
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::invalid_argument(format!("bad store address {url:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let client = TikvClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// The answer of a call to `addr`; a failed call drops the cached channel.
    fn finish<T>(&self, addr: &str, r: Result<Response<T>, Status>) -> Result<T, Status> {
        match r {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => {
                self.clients.lock().remove(addr);
                Err(status)
            }
        }
    }
}

impl KvRpc for StoreClients {
    async fn scan_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ScanLockRequest,
    ) -> Result<kvrpcpb::ScanLockResponse, Status> {
        let r = self.client(addr)?.kv_scan_lock(req).await;
        self.finish(addr, r)
    }

    async fn check_txn_status(
        &self,
        addr: &str,
        req: kvrpcpb::CheckTxnStatusRequest,
    ) -> Result<kvrpcpb::CheckTxnStatusResponse, Status> {
        let r = self.client(addr)?.kv_check_txn_status(req).await;
        self.finish(addr, r)
    }

    async fn check_secondary_locks(
        &self,
        addr: &str,
        req: kvrpcpb::CheckSecondaryLocksRequest,
    ) -> Result<kvrpcpb::CheckSecondaryLocksResponse, Status> {
        let r = self.client(addr)?.kv_check_secondary_locks(req).await;
        self.finish(addr, r)
    }

    async fn resolve_lock(
        &self,
        addr: &str,
        req: kvrpcpb::ResolveLockRequest,
    ) -> Result<kvrpcpb::ResolveLockResponse, Status> {
        let r = self.client(addr)?.kv_resolve_lock(req).await;
        self.finish(addr, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(store_url("127.0.0.1:20160"), "http://127.0.0.1:20160");
        assert_eq!(store_url("http://kv-1:20160"), "http://kv-1:20160");
    }

    #[tokio::test]
    async fn unreachable_store_fails_fast_and_is_not_cached() {
        // Nothing listens on a port just released.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let clients = StoreClients::new(Duration::from_millis(500), Duration::from_millis(500));
        let start = std::time::Instant::now();
        let r = clients
            .scan_lock(&addr, kvrpcpb::ScanLockRequest::default())
            .await;
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(clients.clients.lock().is_empty());
    }
}
