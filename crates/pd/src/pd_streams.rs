//! The two bidirectional streams of `pdpb.PD`: `Tso` and `RegionHeartbeat`.
//!
//! Each stream is served by a task reading the client's requests; responses go out through a
//! channel. Both end when the client closes its side, on a protocol error (sent as the
//! stream's final status), or when the server shuts down.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use atoll_proto::pdpb;
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Status, Streaming};

use crate::cluster::HeartbeatOutcome;
use crate::context::PdContext;
use crate::error::Error;
use crate::metrics;

/// A boxed response stream.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Resolves once the server is shutting down.
pub async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means the server is gone.
    let _ = rx.wait_for(|stopping| *stopping).await;
}

/// PD's error for a request carrying another cluster's id.
pub fn check_cluster_id(ctx: &PdContext, header: Option<&pdpb::RequestHeader>) -> Result<(), Status> {
    let got = header.map_or(0, |h| h.cluster_id);
    if got != ctx.cluster_id {
        return Err(Status::failed_precondition(format!(
            "mismatch cluster id, need {} but got {}",
            ctx.cluster_id, got
        )));
    }
    Ok(())
}

fn handle_tso(ctx: &PdContext, req: &pdpb::TsoRequest) -> Result<pdpb::TsoResponse, Status> {
    check_cluster_id(ctx, req.header.as_ref())?;
    let start = Instant::now();
    metrics::TSO_REQUESTS.inc();
    metrics::TSO_BATCH_SIZE.observe(f64::from(req.count));
    let ts = ctx
        .tso
        .generate(req.count)
        .map_err(|e| Status::unknown(e.to_string()))?;
    metrics::TSO_HANDLE_SECONDS.observe(start.elapsed().as_secs_f64());
    Ok(pdpb::TsoResponse {
        header: Some(ctx.header()),
        count: req.count,
        timestamp: Some(pdpb::Timestamp {
            physical: ts.physical,
            logical: ts.logical,
            suffix_bits: 0,
        }),
    })
}

/// Serves one `Tso` stream: one response per request, in order.
pub fn tso_stream(
    ctx: Arc<PdContext>,
    mut inbound: Streaming<pdpb::TsoRequest>,
) -> ResponseStream<pdpb::TsoResponse> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let stop = shutdown_signal(ctx.shutdown.clone());
        tokio::pin!(stop);
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = &mut stop => break,
            };
            let req = match msg {
                Ok(Some(req)) => req,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "tso stream receive failed");
                    break;
                }
            };
            let resp = handle_tso(&ctx, &req);
            let failed = resp.is_err();
            if tx.send(resp).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Whether a reported region's range is empty or inverted (`end_key` set and not above
/// `start_key`). Such a report overlaps no region, so the region tree's stale check passes it,
/// and it would take the start-key slot of the real region starting at the same key, leaving
/// that region unroutable (found by tests/fuzz_e2e.rs).
pub fn empty_range(region: &atoll_proto::metapb::Region) -> bool {
    !region.end_key.is_empty() && region.end_key <= region.start_key
}

/// Serves one `RegionHeartbeat` stream: requests update the region tree, then drive the
/// region's operator (whose current step goes back to the leader's store through the stream
/// bindings, see [`crate::schedule::coordinator`]); invalid requests get an error response
/// (PD's `SendErr`).
pub fn region_heartbeat_stream(
    ctx: Arc<PdContext>,
    mut inbound: Streaming<pdpb::RegionHeartbeatRequest>,
) -> ResponseStream<pdpb::RegionHeartbeatResponse> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stream_id = ctx.hb_streams.new_stream_id();
    tokio::spawn(async move {
        let stop = shutdown_signal(ctx.shutdown.clone());
        tokio::pin!(stop);
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = &mut stop => break,
            };
            let req = match msg {
                Ok(Some(req)) => req,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "region heartbeat stream receive failed");
                    break;
                }
            };
            if !ctx.cluster.is_bootstrapped() {
                let header = ctx.header_for(&Error::NotBootstrapped);
                let _ = tx.send(Ok(pdpb::RegionHeartbeatResponse {
                    header: Some(header),
                    ..Default::default()
                }));
                break;
            }
            if let Err(status) = check_cluster_id(&ctx, req.header.as_ref()) {
                let _ = tx.send(Err(status));
                break;
            }
            if let Some(leader) = req.leader {
                ctx.hb_streams.bind(leader.store_id, stream_id, &tx);
            }
            let outcome = match req.region.as_ref().filter(|r| empty_range(r)) {
                Some(r) => Err(Error::InvalidRequest(format!(
                    "invalid region {}, empty or inverted range",
                    r.id
                ))),
                None => ctx.cluster.region_heartbeat(&req),
            };
            let status = match outcome {
                Ok(HeartbeatOutcome::Applied) => {
                    if let Some(region) = &req.region {
                        crate::schedule::coordinator::on_region_heartbeat(&ctx, region.id);
                    }
                    "ok"
                }
                Ok(HeartbeatOutcome::Stale) => "stale",
                Ok(HeartbeatOutcome::FromTombstone) => "tombstone",
                Err(e) => {
                    tracing::warn!(error = %e, "region heartbeat rejected");
                    let header = ctx.error_header(pdpb::ErrorType::Unknown, e.to_string());
                    let resp = pdpb::RegionHeartbeatResponse {
                        header: Some(header),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).is_err() {
                        break;
                    }
                    "err"
                }
            };
            metrics::REGION_HEARTBEATS.with_label_values(&[status]).inc();
        }
        ctx.hb_streams.unbind_stream(stream_id);
    });
    Box::pin(UnboundedReceiverStream::new(rx))
}
