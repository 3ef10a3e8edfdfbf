//! Serving: one TCP port carries gRPC (h2c) and the HTTP/1.1 JSON API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_proto::keyspacepb::keyspace_server::KeyspaceServer;
use atoll_proto::pdpb::pd_server::PdServer as PdGrpcServer;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Router;
use engine_traits::{KvEngine, CF_DEFAULT};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::PdConfig;
use crate::context::PdContext;
use crate::error::{Error, Result};
use crate::keyspace_service::KeyspaceService;
use crate::metrics;
use crate::pd_service::PdService;
use crate::storage::MetaStorage;

/// How long [`PdServer::stop`] waits for connections to drain.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Records `grpc_server_*` metrics for requests to a gRPC path (`/<service>/<method>`).
async fn grpc_metrics(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    if let (Some(service), Some(method)) = (parts.next(), parts.next()) {
        // A status in the headers means a trailers-only (usually error) response; a streaming
        // or successful response carries its status in the trailers, counted as OK here.
        let code = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map_or_else(|| "OK".to_string(), |c| format!("{:?}", tonic::Code::from_i32(c)));
        metrics::GRPC_HANDLED
            .with_label_values(&[service, method, code.as_str()])
            .inc();
        metrics::GRPC_HANDLING_SECONDS
            .with_label_values(&[service, method])
            .observe(start.elapsed().as_secs_f64());
    }
    resp
}

/// A panic in a handler (a bug) is caught here, logged with the path, counted in
/// `atoll_pd_request_panics_total`, and answered as gRPC `Internal` or HTTP 500; PD keeps serving.
async fn catch_panic(req: Request, next: Next) -> Response {
    use futures::FutureExt;
    let path = req.uri().path().to_string();
    let is_grpc = is_grpc(&req);
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            tracing::error!(%path, panic = %message, "a request handler panicked; answered as an error");
            metrics::REQUEST_PANICS.with_label_values(&[path.as_str()]).inc();
            let text = format!("PD failed handling {path}: {message}");
            if is_grpc {
                tonic::Status::internal(text).into_http()
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
            }
        }
    }
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Unknown paths: gRPC `Unimplemented` for gRPC requests, PD's 404 text otherwise.
async fn fallback(req: Request) -> Response {
    if is_grpc(&req) {
        tonic::Status::unimplemented(format!("unknown method {}", req.uri().path())).into_http()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

/// The whole service: both gRPC services and the HTTP API.
pub fn build_router(ctx: Arc<PdContext>) -> Router {
    let grpc = tonic::service::Routes::new(PdGrpcServer::new(PdService::new(ctx.clone())))
        .add_service(KeyspaceServer::new(KeyspaceService::new(ctx.clone())))
        .into_axum_router()
        .layer(axum::middleware::from_fn(grpc_metrics));
    crate::http::router(ctx)
        .merge(grpc)
        .fallback(fallback)
        .layer(axum::middleware::from_fn(catch_panic))
}

/// A running PD. Dropping it without [`PdServer::stop`] also shuts the server down.
pub struct PdServer {
    ctx: Arc<PdContext>,
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<bool>,
    serve: JoinHandle<std::io::Result<()>>,
    /// The automatic GC safe point advance (none if disabled).
    gc_driver: Option<JoinHandle<()>>,
    /// The scheduling patrol.
    patrol: JoinHandle<()>,
}

impl PdServer {
    /// Binds the first client URL (port 0 picks a free port, which then also becomes the
    /// advertised URL) and serves with `engine` as metadata storage.
    pub async fn start<E: KvEngine>(mut config: PdConfig, engine: E) -> Result<PdServer> {
        config.adjust()?;
        let addr = config.listen_addr()?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        if addr.port() == 0 {
            let url = format!("http://{local_addr}");
            if config.advertise_client_urls == config.client_urls {
                config.advertise_client_urls = url.clone();
            }
            config.client_urls = url;
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(PdContext::open(
            config,
            MetaStorage::new(engine),
            shutdown_rx.clone(),
        )?);
        let gc_driver = crate::gc_driver::spawn(ctx.clone(), shutdown_rx.clone());
        let patrol = crate::schedule::coordinator::spawn_patrol(ctx.clone());
        let app = build_router(ctx.clone());
        let (done_tx, done_rx) = watch::channel(false);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(crate::pd_streams::shutdown_signal(shutdown_rx))
                .await;
            let _ = done_tx.send(true);
            r
        });
        tracing::info!(addr = %local_addr, cluster_id = ctx.cluster_id, "pd is serving");
        Ok(PdServer {
            ctx,
            local_addr,
            shutdown_tx,
            done_rx,
            serve,
            gc_driver,
            patrol,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn cluster_id(&self) -> u64 {
        self.ctx.cluster_id
    }

    /// The shared state (for embedding and tests).
    pub fn context(&self) -> &Arc<PdContext> {
        &self.ctx
    }

    /// Resolves when the server stopped serving (normally only after [`PdServer::stop`]).
    pub async fn closed(&self) {
        let mut rx = self.done_rx.clone();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Stops accepting, ends long-lived streams, and waits (bounded) for connections to drain.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown_tx.send(true);
        if let Some(gc_driver) = self.gc_driver {
            // It ends at the next select on the shutdown signal; a panic there is not ours.
            let _ = gc_driver.await;
        }
        // Ends at its next select on the shutdown signal.
        let _ = self.patrol.await;
        let mut serve = self.serve;
        match tokio::time::timeout(STOP_TIMEOUT, &mut serve).await {
            Ok(Ok(r)) => r.map_err(Error::Io),
            Ok(Err(join)) => Err(Error::Io(std::io::Error::other(join.to_string()))),
            Err(_) => {
                tracing::warn!("connections did not drain in time; aborting them");
                serve.abort();
                Ok(())
            }
        }
    }
}

/// Runs PD with RocksDB metadata under `config.data_dir` until `shutdown` resolves.
pub async fn run(mut config: PdConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    config.adjust()?;
    std::fs::create_dir_all(&config.data_dir)?;
    let engine = engine_rocks::RocksEngine::open(&config.data_dir.join("meta"), &[CF_DEFAULT])?;
    let server = PdServer::start(config, engine).await?;
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        _ = server.closed() => tracing::warn!("server stopped unexpectedly"),
    }
    server.stop().await
}

#[cfg(test)]
mod panic_tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_is_answered_and_counted() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = Router::new()
            .route("/pd/api/v1/boom", axum::routing::get(boom))
            .route("/pdpb.PD/Boom", axum::routing::post(boom))
            .layer(axum::middleware::from_fn(catch_panic));
        let before = metrics::REQUEST_PANICS
            .with_label_values(&["/pd/api/v1/boom"])
            .get();
        let resp = app
            .clone()
            .oneshot(
                Request::get("/pd/api/v1/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            metrics::REQUEST_PANICS
                .with_label_values(&["/pd/api/v1/boom"])
                .get(),
            before + 1
        );
        let resp = app
            .oneshot(
                Request::post("/pdpb.PD/Boom")
                    .header(header::CONTENT_TYPE, "application/grpc")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).expect("a grpc status");
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
