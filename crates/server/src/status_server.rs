//! The status HTTP server: `/metrics` (Prometheus text) and `/status`.

use std::future::Future;
use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, TextEncoder};

async fn metrics() -> impl IntoResponse {
    let mut buf = Vec::new();
    let families = prometheus::gather();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TextEncoder::new().format_type().to_owned())],
            buf,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            e.to_string().into_bytes(),
        ),
    }
}

/// Serves the status endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store_id: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let status = serde_json::json!({
        "store_id": store_id,
        "version": crate::VERSION,
        "git_hash": crate::GIT_HASH,
        "status": "ok",
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(move || async move { Json(status.clone()) }));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Binds the status address early so a bad address fails start-up.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr}"))
    })?;
    tokio::net::TcpListener::bind(addr).await
}
