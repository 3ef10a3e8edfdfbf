//! [`PdClient`]: the unary RPCs, with retries and leader follow, and the handles of the TSO and
//! region heartbeat tasks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use atoll_proto::{metapb, pdpb};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Backoff, Config};
use crate::connection::{Connection, GrpcClient};
use crate::error::{check_header, Error, Result};
use crate::heartbeat::{run_heartbeat_task, ResponseSink};
use crate::metrics;
use crate::tso::{run_tso_task, TsoWaiter};

/// A PD response type: everything carries a `header`.
trait PdResponse {
    fn header(&self) -> Option<&pdpb::ResponseHeader>;
}

macro_rules! pd_responses {
    ($($t:ident),* $(,)?) => {
        $(impl PdResponse for pdpb::$t {
            fn header(&self) -> Option<&pdpb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

pd_responses!(
    GetMembersResponse,
    BootstrapResponse,
    IsBootstrappedResponse,
    AllocIdResponse,
    GetStoreResponse,
    PutStoreResponse,
    GetAllStoresResponse,
    StoreHeartbeatResponse,
    GetRegionResponse,
    AskBatchSplitResponse,
    ReportBatchSplitResponse,
    GetGcSafePointResponse,
);

struct Inner {
    conn: Arc<Connection>,
    tso: mpsc::Sender<TsoWaiter>,
    heartbeats: mpsc::Sender<pdpb::RegionHeartbeatRequest>,
    heartbeat_sink: ResponseSink,
}

/// A client of the PD cluster, following its leader. Cheap to clone; clones share the
/// connection, the TSO batcher and the region heartbeat stream. The background tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdClient")
            .field("cluster_id", &self.cluster_id())
            .field("leader", &self.leader_url())
            .finish()
    }
}

impl PdClient {
    /// Connects through `endpoints` (`host:port` or `http://host:port`), retrying for up to
    /// `timeout` until a PD answers `GetMembers` with a leader, then connects to the leader's
    /// first client url. Must be called inside a tokio runtime (it spawns the TSO and region
    /// heartbeat tasks).
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<PdClient> {
        PdClient::connect_with_config(
            endpoints,
            Config {
                connect_timeout: timeout,
                ..Config::default()
            },
        )
        .await
    }

    /// [`PdClient::connect`] with every tunable given.
    pub async fn connect_with_config(endpoints: &[String], config: Config) -> Result<PdClient> {
        let tso_queue = config.max_tso_batch.max(1) as usize * 4;
        let heartbeat_queue = config.heartbeat_queue.max(1);
        let conn = Arc::new(Connection::connect(endpoints, config).await?);
        let (tso_tx, tso_rx) = mpsc::channel(tso_queue);
        let (hb_tx, hb_rx) = mpsc::channel(heartbeat_queue);
        let heartbeat_sink: ResponseSink = Arc::new(Mutex::new(None));
        tokio::spawn(run_tso_task(conn.clone(), tso_rx));
        tokio::spawn(run_heartbeat_task(conn.clone(), hb_rx, heartbeat_sink.clone()));
        Ok(PdClient {
            inner: Arc::new(Inner {
                conn,
                tso: tso_tx,
                heartbeats: hb_tx,
                heartbeat_sink,
            }),
        })
    }

    /// The cluster id learned at connect time; fixed for the client's life.
    pub fn cluster_id(&self) -> u64 {
        self.inner.conn.cluster_id()
    }

    /// The url of the PD leader currently used (`http://host:port`).
    pub fn leader_url(&self) -> String {
        self.inner.conn.leader_url()
    }

    fn header(&self) -> Option<pdpb::RequestHeader> {
        Some(self.inner.conn.header())
    }

    /// Runs one unary RPC: a deadline per attempt, retries with backoff and leader
    /// rediscovery on transport errors, the response header checked. PD header errors are
    /// returned at once.
    async fn unary<Req, Resp, F, Fut>(&self, kind: &'static str, req: Req, call: F) -> Result<Resp>
    where
        Req: Clone,
        Resp: PdResponse,
        F: Fn(GrpcClient, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let _timer = metrics::REQUEST_DURATION.with_label_values(&[kind]).start_timer();
        let conn = &self.inner.conn;
        let config = conn.config();
        let mut backoff = Backoff::from_config(config);
        let mut attempt = 0;
        loop {
            let (generation, client) = conn.current();
            let error = match tokio::time::timeout(config.rpc_timeout, call(client, req.clone())).await {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    check_header(resp.header(), conn.cluster_id())?;
                    return Ok(resp);
                }
                Ok(Err(status)) => Error::from_status(&status),
                Err(_) => Error::Timeout,
            };
            if !error.is_retryable() || attempt >= config.max_retries {
                return Err(error);
            }
            attempt += 1;
            tracing::warn!(rpc = kind, attempt, %error, "PD request failed, retrying");
            match conn.reconnect(generation).await {
                Ok(()) => {}
                // Configuration error (endpoints of two clusters): retrying cannot help.
                Err(e @ Error::ClusterIdMismatch { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "PD rediscovery failed");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Whether the cluster has been bootstrapped.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let req = pdpb::IsBootstrappedRequest {
            header: self.header(),
        };
        let resp = self
            .unary("is_bootstrapped", req, |mut c, r| async move {
                c.is_bootstrapped(r).await
            })
            .await?;
        Ok(resp.bootstrapped)
    }

    /// Bootstraps the cluster with its first store and region. A cluster bootstrapped before
    /// gives [`Error::AlreadyBootstrapped`].
    pub async fn bootstrap(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        let req = pdpb::BootstrapRequest {
            header: self.header(),
            store: Some(store),
            region: Some(region),
        };
        self.unary("bootstrap", req, |mut c, r| async move { c.bootstrap(r).await })
            .await?;
        Ok(())
    }

    /// A new cluster-unique id (for stores, regions, peers).
    pub async fn alloc_id(&self) -> Result<u64> {
        let req = pdpb::AllocIdRequest {
            header: self.header(),
        };
        let resp = self
            .unary("alloc_id", req, |mut c, r| async move { c.alloc_id(r).await })
            .await?;
        if resp.id == 0 {
            return Err(Error::Other("PD allocated id 0".to_owned()));
        }
        Ok(resp.id)
    }

    /// Registers or updates a store.
    pub async fn put_store(&self, store: metapb::Store) -> Result<()> {
        let req = pdpb::PutStoreRequest {
            header: self.header(),
            store: Some(store),
        };
        self.unary("put_store", req, |mut c, r| async move { c.put_store(r).await })
            .await?;
        Ok(())
    }

    /// One store's metadata.
    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        let req = pdpb::GetStoreRequest {
            header: self.header(),
            store_id,
        };
        let resp = self
            .unary("get_store", req, |mut c, r| async move { c.get_store(r).await })
            .await?;
        resp.store
            .ok_or_else(|| Error::Other(format!("PD returned no store for id {store_id}")))
    }

    /// Every store, tombstones included unless `exclude_tombstone`.
    pub async fn get_all_stores(&self, exclude_tombstone: bool) -> Result<Vec<metapb::Store>> {
        let req = pdpb::GetAllStoresRequest {
            header: self.header(),
            exclude_tombstone_stores: exclude_tombstone,
        };
        let resp = self
            .unary("get_all_stores", req, |mut c, r| async move {
                c.get_all_stores(r).await
            })
            .await?;
        Ok(resp.stores)
    }

    /// Reports a store's statistics; the answer may carry instructions (awaken regions, …).
    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<pdpb::StoreHeartbeatResponse> {
        let req = pdpb::StoreHeartbeatRequest {
            header: self.header(),
            stats: Some(stats),
        };
        self.unary("store_heartbeat", req, |mut c, r| async move {
            c.store_heartbeat(r).await
        })
        .await
    }

    /// The region containing `key` (an encoded key) and its leader, if PD knows one.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<(metapb::Region, Option<metapb::Peer>)>> {
        let req = pdpb::GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
            need_buckets: false,
        };
        let resp = self
            .unary("get_region", req, |mut c, r| async move { c.get_region(r).await })
            .await;
        region_result(resp)
    }

    /// A region by id and its leader, if PD knows it.
    pub async fn get_region_by_id(
        &self,
        region_id: u64,
    ) -> Result<Option<(metapb::Region, Option<metapb::Peer>)>> {
        let req = pdpb::GetRegionByIdRequest {
            header: self.header(),
            region_id,
            need_buckets: false,
        };
        let resp = self
            .unary("get_region_by_id", req, |mut c, r| async move {
                c.get_region_by_id(r).await
            })
            .await;
        region_result(resp)
    }

    /// New region and peer ids for splitting `region` into `count + 1` regions.
    pub async fn ask_batch_split(&self, region: metapb::Region, count: u32) -> Result<Vec<pdpb::SplitId>> {
        let req = pdpb::AskBatchSplitRequest {
            header: self.header(),
            region: Some(region),
            split_count: count,
        };
        let resp = self
            .unary("ask_batch_split", req, |mut c, r| async move {
                c.ask_batch_split(r).await
            })
            .await?;
        if resp.ids.len() != count as usize {
            return Err(Error::Other(format!(
                "PD returned {} split ids, {count} were asked",
                resp.ids.len()
            )));
        }
        Ok(resp.ids)
    }

    /// Reports the regions a batch split produced.
    pub async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        let req = pdpb::ReportBatchSplitRequest {
            header: self.header(),
            regions,
        };
        self.unary("report_batch_split", req, |mut c, r| async move {
            c.report_batch_split(r).await
        })
        .await?;
        Ok(())
    }

    /// The cluster's GC safe point.
    pub async fn get_gc_safe_point(&self) -> Result<u64> {
        let req = pdpb::GetGcSafePointRequest {
            header: self.header(),
        };
        let resp = self
            .unary("get_gc_safe_point", req, |mut c, r| async move {
                c.get_gc_safe_point(r).await
            })
            .await?;
        Ok(resp.safe_point)
    }

    /// A timestamp (`physical << 18 | logical`) from PD's oracle. Concurrent calls are batched
    /// into one stream request; results are strictly increasing per client.
    pub async fn get_tso(&self) -> Result<u64> {
        let config = self.inner.conn.config();
        let mut backoff = Backoff::from_config(config);
        // The task bounds each round trip by rpc_timeout, plus a rediscovery after a failure.
        let wait = config.rpc_timeout.saturating_mul(3);
        let mut attempt = 0;
        loop {
            let (tx, rx) = oneshot::channel();
            self.inner
                .tso
                .send(tx)
                .await
                .map_err(|_| Error::Other("TSO task stopped".to_owned()))?;
            let result = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(Error::Other("TSO task stopped".to_owned())),
                Err(_) => Err(Error::Timeout),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < config.max_retries => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "TSO failed, retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }

    /// Queues a region heartbeat for the long-lived heartbeat stream (the header is filled in).
    /// Never blocks; fails when the queue is full or the stream task is gone. A heartbeat not
    /// sent yet is replaced by a newer one of the same region.
    pub fn region_heartbeat(&self, req: pdpb::RegionHeartbeatRequest) -> Result<()> {
        self.inner.heartbeats.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Other("region heartbeat queue is full".to_owned()),
            mpsc::error::TrySendError::Closed(_) => Error::Other("region heartbeat task stopped".to_owned()),
        })
    }

    /// The receiver of PD's answers on the region heartbeat stream (operators for the regions
    /// this node leads). Only the first call gets it; answers arriving before are discarded.
    pub fn take_region_heartbeat_responses(
        &self,
    ) -> Option<mpsc::UnboundedReceiver<pdpb::RegionHeartbeatResponse>> {
        let mut sink = self.inner.heartbeat_sink.lock();
        if sink.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *sink = Some(tx);
        Some(rx)
    }
}

/// `GetRegion`/`GetRegionByID`: no region (or `REGION_NOT_FOUND`) is `None`.
fn region_result(
    resp: Result<pdpb::GetRegionResponse>,
) -> Result<Option<(metapb::Region, Option<metapb::Peer>)>> {
    match resp {
        Ok(resp) => Ok(resp.region.map(|region| (region, resp.leader))),
        Err(e) if e.pd_error_type() == Some(pdpb::ErrorType::RegionNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
