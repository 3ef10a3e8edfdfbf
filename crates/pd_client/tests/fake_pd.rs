//! In-process tests against a minimal fake PD (test-only; real PD tests live with `crates/pd`).
//! The fake serves GetMembers, Tso, AllocID, Bootstrap, IsBootstrapped, GetRegion and
//! RegionHeartbeat; several fakes can share one "cluster" to simulate a leader change.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_proto::pdpb::pd_server::{Pd, PdServer};
use atoll_proto::{metapb, pdpb};
use parking_lot::Mutex;
use pd_client::{Config, Error, PdClient};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

const CLUSTER_ID: u64 = 42;

/// State shared by the members of one fake cluster.
#[derive(Default)]
struct Cluster {
    leader: Mutex<String>,
    members: Mutex<Vec<String>>,
    /// (physical, logical) of the last timestamp handed out.
    tso: Mutex<(i64, i64)>,
    tso_requests: AtomicU64,
    tso_timestamps: AtomicU64,
    next_id: AtomicU64,
    bootstrapped: AtomicBool,
    bootstrap_calls: AtomicU64,
    /// The member that accepted each region heartbeat (after checking its header).
    heartbeats_served_by: Mutex<Vec<String>>,
}

struct FakePd {
    me: String,
    cluster_id: u64,
    cluster: Arc<Cluster>,
}

impl FakePd {
    fn header(&self, error: Option<pdpb::ErrorType>) -> Option<pdpb::ResponseHeader> {
        Some(pdpb::ResponseHeader {
            cluster_id: self.cluster_id,
            error: error.map(|t| pdpb::Error {
                r#type: t as i32,
                message: "fake".to_owned(),
            }),
        })
    }

    fn check(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), Status> {
        if *self.cluster.leader.lock() != self.me {
            return Err(Status::unavailable("not leader"));
        }
        let got = header.map_or(0, |h| h.cluster_id);
        if got != self.cluster_id {
            return Err(Status::failed_precondition(format!("mismatch cluster id {got}")));
        }
        Ok(())
    }
}

fn member(url: &str) -> pdpb::Member {
    pdpb::Member {
        name: url.to_owned(),
        client_urls: vec![url.to_owned()],
        ..Default::default()
    }
}

/// Implements `Pd` with the `served` methods; the others answer `Unimplemented` (the generated
/// trait has no default methods).
macro_rules! fake_pd_impl {
    ({ $($served:tt)* } unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }) => {
        #[tonic::async_trait]
        impl Pd for FakePd {
            $($served)*
            $(
                async fn $name(&self, _req: Request<pdpb::$req>) -> Result<Response<pdpb::$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

fake_pd_impl! {
{
    type TsoStream = BoxStream<pdpb::TsoResponse>;
    type RegionHeartbeatStream = BoxStream<pdpb::RegionHeartbeatResponse>;
    async fn get_members(
        &self,
        _req: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let leader = self.cluster.leader.lock().clone();
        let members = self.cluster.members.lock().iter().map(|u| member(u)).collect();
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(None),
            members,
            leader: Some(member(&leader)),
            ..Default::default()
        }))
    }

    async fn tso(
        &self,
        req: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let mut inbound = req.into_inner();
        let pd = FakePd { me: self.me.clone(), cluster_id: self.cluster_id, cluster: self.cluster.clone() };
        let out = async_stream::try_stream! {
            while let Some(req) = inbound.message().await? {
                pd.check(req.header.as_ref())?;
                // Answer a little later, so that concurrent callers pile up into batches.
                tokio::time::sleep(Duration::from_millis(2)).await;
                let (physical, logical) = {
                    let mut tso = pd.cluster.tso.lock();
                    tso.1 += i64::from(req.count);
                    *tso
                };
                pd.cluster.tso_requests.fetch_add(1, Ordering::SeqCst);
                pd.cluster.tso_timestamps.fetch_add(u64::from(req.count), Ordering::SeqCst);
                yield pdpb::TsoResponse {
                    header: pd.header(None),
                    count: req.count,
                    timestamp: Some(pdpb::Timestamp { physical, logical, suffix_bits: 0 }),
                };
            }
        };
        Ok(Response::new(Box::pin(out)))
    }

    async fn alloc_id(&self, req: Request<pdpb::AllocIdRequest>) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        self.check(req.get_ref().header.as_ref())?;
        let id = self.cluster.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Response::new(pdpb::AllocIdResponse { header: self.header(None), id }))
    }

    async fn bootstrap(
        &self,
        req: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        self.check(req.get_ref().header.as_ref())?;
        self.cluster.bootstrap_calls.fetch_add(1, Ordering::SeqCst);
        let error = self
            .cluster
            .bootstrapped
            .swap(true, Ordering::SeqCst)
            .then_some(pdpb::ErrorType::AlreadyBootstrapped);
        Ok(Response::new(pdpb::BootstrapResponse { header: self.header(error) }))
    }

    async fn is_bootstrapped(
        &self,
        req: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        self.check(req.get_ref().header.as_ref())?;
        let bootstrapped = self.cluster.bootstrapped.load(Ordering::SeqCst);
        Ok(Response::new(pdpb::IsBootstrappedResponse { header: self.header(None), bootstrapped }))
    }

    async fn get_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        self.check(req.get_ref().header.as_ref())?;
        if req.get_ref().region_key == b"missing" {
            return Ok(Response::new(pdpb::GetRegionResponse {
                header: self.header(Some(pdpb::ErrorType::RegionNotFound)),
                ..Default::default()
            }));
        }
        let leader = metapb::Peer { id: 3, store_id: 1, ..Default::default() };
        let region = metapb::Region { id: 2, peers: vec![leader], ..Default::default() };
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(None),
            region: Some(region),
            leader: Some(leader),
            ..Default::default()
        }))
    }

    async fn region_heartbeat(
        &self,
        req: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let mut inbound = req.into_inner();
        let pd = FakePd { me: self.me.clone(), cluster_id: self.cluster_id, cluster: self.cluster.clone() };
        let out = async_stream::try_stream! {
            while let Some(req) = inbound.message().await? {
                pd.check(req.header.as_ref())?;
                pd.cluster.heartbeats_served_by.lock().push(pd.me.clone());
                let region_id = req.region.as_ref().map_or(0, |r| r.id);
                // An error answer first (the client must drop it), then an operator.
                yield pdpb::RegionHeartbeatResponse {
                    header: pd.header(Some(pdpb::ErrorType::Unknown)),
                    region_id,
                    ..Default::default()
                };
                yield pdpb::RegionHeartbeatResponse {
                    header: pd.header(None),
                    region_id,
                    transfer_leader: Some(pdpb::TransferLeader { peer: req.leader, peers: vec![] }),
                    ..Default::default()
                };
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}
unimplemented {
    get_store(GetStoreRequest) -> GetStoreResponse;
    put_store(PutStoreRequest) -> PutStoreResponse;
    get_all_stores(GetAllStoresRequest) -> GetAllStoresResponse;
    store_heartbeat(StoreHeartbeatRequest) -> StoreHeartbeatResponse;
    get_prev_region(GetRegionRequest) -> GetRegionResponse;
    get_region_by_id(GetRegionByIdRequest) -> GetRegionResponse;
    scan_regions(ScanRegionsRequest) -> ScanRegionsResponse;
    ask_split(AskSplitRequest) -> AskSplitResponse;
    report_split(ReportSplitRequest) -> ReportSplitResponse;
    ask_batch_split(AskBatchSplitRequest) -> AskBatchSplitResponse;
    report_batch_split(ReportBatchSplitRequest) -> ReportBatchSplitResponse;
    get_cluster_config(GetClusterConfigRequest) -> GetClusterConfigResponse;
    put_cluster_config(PutClusterConfigRequest) -> PutClusterConfigResponse;
    get_gc_safe_point(GetGcSafePointRequest) -> GetGcSafePointResponse;
    update_gc_safe_point(UpdateGcSafePointRequest) -> UpdateGcSafePointResponse;
    update_service_gc_safe_point(UpdateServiceGcSafePointRequest) -> UpdateServiceGcSafePointResponse;
    get_operator(GetOperatorRequest) -> GetOperatorResponse;
    get_min_ts(GetMinTsRequest) -> GetMinTsResponse;
    scatter_region(ScatterRegionRequest) -> ScatterRegionResponse;
    split_regions(SplitRegionsRequest) -> SplitRegionsResponse;
    split_and_scatter_regions(SplitAndScatterRegionsRequest) -> SplitAndScatterRegionsResponse;
}
}

/// Starts a fake PD member on `listener` and registers it in `cluster`.
fn serve_on(listener: TcpListener, cluster: &Arc<Cluster>, cluster_id: u64) -> String {
    let me = format!("http://{}", listener.local_addr().unwrap());
    cluster.members.lock().push(me.clone());
    let pd = FakePd {
        me: me.clone(),
        cluster_id,
        cluster: cluster.clone(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PdServer::new(pd))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    me
}

async fn serve(cluster: &Arc<Cluster>) -> String {
    serve_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        cluster,
        CLUSTER_ID,
    )
}

fn new_cluster() -> Arc<Cluster> {
    let cluster = Arc::new(Cluster::default());
    *cluster.tso.lock() = (1_000, 0);
    cluster
}

fn test_config(connect_timeout: Duration) -> Config {
    Config {
        connect_timeout,
        dial_timeout: Duration::from_secs(1),
        rpc_timeout: Duration::from_secs(2),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        ..Config::default()
    }
}

async fn must_connect(endpoints: &[String]) -> PdClient {
    PdClient::connect_with_config(endpoints, test_config(Duration::from_secs(5)))
        .await
        .unwrap()
}

/// Strips the scheme: endpoints are usually given as plain `host:port`.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_to_the_leader_through_a_follower_and_follows_a_leader_change() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    let b = serve(&cluster).await;
    *cluster.leader.lock() = b.clone();

    let client = must_connect(&[host_port(&a)]).await;
    assert_eq!(client.cluster_id(), CLUSTER_ID);
    assert_eq!(client.leader_url(), b);
    assert_eq!(client.alloc_id().await.unwrap(), 1);

    // B steps down: the next call fails with "not leader", rediscovers A and succeeds.
    *cluster.leader.lock() = a.clone();
    assert_eq!(client.alloc_id().await.unwrap(), 2);
    assert_eq!(client.leader_url(), a);
    assert!(!client.is_bootstrapped().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tso_batches_concurrent_calls_and_stays_increasing_across_a_leader_change() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    let b = serve(&cluster).await;
    *cluster.leader.lock() = a.clone();
    let client = must_connect(&[a.clone(), b.clone()]).await;

    let calls = 400;
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_tso().await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        assert!(seen.insert(task.await.unwrap()), "duplicate timestamp");
    }
    let requests = cluster.tso_requests.load(Ordering::SeqCst);
    assert_eq!(cluster.tso_timestamps.load(Ordering::SeqCst), calls);
    assert!(
        requests < calls,
        "no batching: {requests} requests for {calls} calls"
    );
    // Every timestamp came from the fake's block: physical 1000, logical 1..=calls.
    let expected: HashSet<u64> = (1..=calls).map(|l| (1_000u64 << 18) | l).collect();
    assert_eq!(seen, expected);

    let mut last = client.get_tso().await.unwrap();
    *cluster.leader.lock() = b.clone();
    for _ in 0..20 {
        let ts = client.get_tso().await.unwrap();
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    assert_eq!(client.leader_url(), b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_pd_that_starts_late() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let connecting =
        tokio::spawn(async move { PdClient::connect(&[addr.to_string()], Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cluster = new_cluster();
    let me = serve_on(TcpListener::bind(addr).await.unwrap(), &cluster, CLUSTER_ID);
    *cluster.leader.lock() = me.clone();
    let client = connecting.await.unwrap().unwrap();
    assert_eq!(client.leader_url(), me);
    assert_eq!(client.cluster_id(), CLUSTER_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gives_up_after_its_timeout() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let started = Instant::now();
    let err = PdClient::connect_with_config(&[addr.to_string()], test_config(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(PdClient::connect(&[], Duration::from_secs(1)).await.is_err());
    assert!(
        PdClient::connect(&["https://x:1".to_owned()], Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_twice_is_already_bootstrapped_and_header_errors_are_not_retried() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    *cluster.leader.lock() = a.clone();
    let client = must_connect(&[a]).await;

    let store = metapb::Store {
        id: 1,
        address: "127.0.0.1:20160".to_owned(),
        ..Default::default()
    };
    let region = metapb::Region {
        id: 2,
        ..Default::default()
    };
    client.bootstrap(store.clone(), region.clone()).await.unwrap();
    assert!(client.is_bootstrapped().await.unwrap());
    assert_eq!(
        client.bootstrap(store, region).await,
        Err(Error::AlreadyBootstrapped)
    );
    assert_eq!(cluster.bootstrap_calls.load(Ordering::SeqCst), 2);

    let (region, leader) = client.get_region(b"k").await.unwrap().unwrap();
    assert_eq!(region.id, 2);
    assert_eq!(leader.map(|p| p.id), Some(3));
    assert_eq!(client.get_region(b"missing").await.unwrap(), None);
    // Not served by the fake: a gRPC answer, not a transport failure.
    let err = client.get_all_stores(false).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_of_another_cluster_is_refused() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    let other = serve_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        &cluster,
        CLUSTER_ID + 1,
    );
    *cluster.leader.lock() = a.clone();
    let client = must_connect(&[a]).await;
    assert_eq!(client.alloc_id().await.unwrap(), 1);

    *cluster.leader.lock() = other;
    let err = client.alloc_id().await.unwrap_err();
    assert_eq!(
        err,
        Error::ClusterIdMismatch {
            expected: CLUSTER_ID,
            actual: CLUSTER_ID + 1
        }
    );
    assert_eq!(client.cluster_id(), CLUSTER_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_heartbeats_carry_the_header_and_operators_come_back() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    *cluster.leader.lock() = a.clone();
    let client = must_connect(std::slice::from_ref(&a)).await;
    let mut responses = client.take_region_heartbeat_responses().unwrap();
    assert!(client.take_region_heartbeat_responses().is_none());

    let leader = metapb::Peer {
        id: 11,
        store_id: 1,
        ..Default::default()
    };
    for region_id in [5u64, 6] {
        let req = pdpb::RegionHeartbeatRequest {
            region: Some(metapb::Region {
                id: region_id,
                ..Default::default()
            }),
            leader: Some(leader),
            ..Default::default()
        };
        client.region_heartbeat(req).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let resp = tokio::time::timeout(Duration::from_secs(5), responses.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.transfer_leader.and_then(|t| t.peer), Some(leader));
        got.push(resp.region_id);
    }
    got.sort_unstable();
    assert_eq!(got, vec![5, 6]);
    assert_eq!(*cluster.heartbeats_served_by.lock(), vec![a.clone(), a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_heartbeat_stream_moves_to_the_new_leader() {
    let cluster = new_cluster();
    let a = serve(&cluster).await;
    let b = serve(&cluster).await;
    *cluster.leader.lock() = a.clone();
    let client = must_connect(std::slice::from_ref(&a)).await;
    let mut responses = client.take_region_heartbeat_responses().unwrap();
    let heartbeat = |region_id| pdpb::RegionHeartbeatRequest {
        region: Some(metapb::Region {
            id: region_id,
            ..Default::default()
        }),
        ..Default::default()
    };
    client.region_heartbeat(heartbeat(1)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.region_id, 1);

    // A steps down and breaks the stream; heartbeats are periodic, so keep sending until the
    // re-established stream (to B) answers.
    *cluster.leader.lock() = b.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no answer from the new leader");
        client.region_heartbeat(heartbeat(2)).unwrap();
        if let Ok(Some(resp)) = tokio::time::timeout(Duration::from_millis(100), responses.recv()).await {
            assert_eq!(resp.region_id, 2);
            break;
        }
    }
    assert_eq!(cluster.heartbeats_served_by.lock().last(), Some(&b));
    assert_eq!(client.leader_url(), b);
}
