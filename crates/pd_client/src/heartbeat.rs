//! The region heartbeat stream.
//!
//! One background task owns the long-lived `RegionHeartbeat` bidi stream to the leader.
//! Heartbeats arrive over an mpsc channel and wait in a map keyed by region id, so a region
//! whose heartbeat could not be sent yet (stream congested, or being re-established after an
//! error) is sent once, with its latest state. The task fills in the request header. PD's
//! answers (scheduling operators) go to the receiver handed out by
//! `PdClient::take_region_heartbeat_responses`; answers carrying an error header are logged
//! and dropped, as are answers arriving while nobody has taken the receiver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atoll_proto::pdpb;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Backoff;
use crate::connection::Connection;
use crate::error::{check_header, Error};

/// Where PD's heartbeat answers go once someone takes the receiver.
pub(crate) type ResponseSink = Arc<Mutex<Option<mpsc::UnboundedSender<pdpb::RegionHeartbeatResponse>>>>;

/// Requests buffered in the stream itself; the rest wait (coalesced) in the pending map.
const STREAM_BUFFER: usize = 64;

/// A stream that lived this long before breaking resets the reconnection backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

type Pending = HashMap<u64, pdpb::RegionHeartbeatRequest>;

fn region_id(req: &pdpb::RegionHeartbeatRequest) -> u64 {
    req.region.as_ref().map_or(0, |r| r.id)
}

/// Removes one pending heartbeat (any region) and stamps the header on it.
fn take_one(pending: &mut Pending, header: &pdpb::RequestHeader) -> Option<pdpb::RegionHeartbeatRequest> {
    let key = *pending.keys().next()?;
    let mut req = pending.remove(&key)?;
    req.header = Some(*header);
    Some(req)
}

/// The task owning the stream; ends when every sender of `requests` is gone.
pub(crate) async fn run_heartbeat_task(
    conn: Arc<Connection>,
    mut requests: mpsc::Receiver<pdpb::RegionHeartbeatRequest>,
    sink: ResponseSink,
) {
    let header = conn.header();
    let config = conn.config().clone();
    let mut backoff = Backoff::new(
        config.base_backoff.max(Duration::from_millis(100)),
        config.max_backoff,
    );
    let mut pending = Pending::new();
    loop {
        // A stream is opened only once there is something to say: PD binds the stream to a
        // store from the heartbeats it carries.
        if pending.is_empty() {
            match requests.recv().await {
                Some(req) => {
                    pending.insert(region_id(&req), req);
                }
                None => return,
            }
        }
        let (generation, mut client) = conn.current();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        // Pre-load the stream so that a server answering headers only after the first message
        // cannot stall the call.
        while let Ok(permit) = tx.try_reserve() {
            match take_one(&mut pending, &header) {
                Some(req) => permit.send(req),
                None => break,
            }
        }
        let opened = tokio::time::timeout(
            config.rpc_timeout,
            client.region_heartbeat(ReceiverStream::new(rx)),
        )
        .await;
        let mut responses = match opened {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(status)) => {
                let error = Error::from_status(&status);
                tracing::warn!(%error, "opening the region heartbeat stream failed");
                if !pause(
                    &conn,
                    generation,
                    &error,
                    backoff.next_delay(),
                    &mut requests,
                    &mut pending,
                )
                .await
                {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!("opening the region heartbeat stream timed out");
                if !pause(
                    &conn,
                    generation,
                    &Error::Timeout,
                    backoff.next_delay(),
                    &mut requests,
                    &mut pending,
                )
                .await
                {
                    return;
                }
                continue;
            }
        };
        let opened_at = Instant::now();
        tracing::debug!(leader = %conn.leader_url(), "region heartbeat stream open");
        let error = loop {
            tokio::select! {
                msg = responses.message() => match msg {
                    Ok(Some(resp)) => forward(&sink, resp, conn.cluster_id()),
                    Ok(None) => break Error::Transport("region heartbeat stream closed by PD".to_owned()),
                    Err(status) => break Error::from_status(&status),
                },
                permit = tx.reserve(), if !pending.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(req) = take_one(&mut pending, &header) {
                            permit.send(req);
                        }
                    }
                    Err(_) => break Error::Transport("region heartbeat stream closed".to_owned()),
                },
                req = requests.recv() => match req {
                    Some(req) => {
                        pending.insert(region_id(&req), req);
                    }
                    None => return,
                },
            }
        };
        drop(tx);
        tracing::warn!(%error, "region heartbeat stream broken");
        if opened_at.elapsed() >= HEALTHY_STREAM {
            backoff.reset();
        }
        if !pause(
            &conn,
            generation,
            &error,
            backoff.next_delay(),
            &mut requests,
            &mut pending,
        )
        .await
        {
            return;
        }
    }
}

/// After a stream failure: rediscovers the leader if the failure was a transport one, then
/// waits `delay` while still collecting heartbeats. Returns false when the client is gone.
async fn pause(
    conn: &Connection,
    generation: u64,
    error: &Error,
    delay: Duration,
    requests: &mut mpsc::Receiver<pdpb::RegionHeartbeatRequest>,
    pending: &mut Pending,
) -> bool {
    if error.is_retryable() {
        if let Err(e) = conn.reconnect(generation).await {
            tracing::debug!(error = %e, "PD rediscovery after heartbeat stream failure failed");
        }
    }
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            req = requests.recv() => match req {
                Some(req) => {
                    pending.insert(region_id(&req), req);
                }
                None => return false,
            },
        }
    }
}

fn forward(sink: &ResponseSink, resp: pdpb::RegionHeartbeatResponse, cluster_id: u64) {
    if let Err(error) = check_header(resp.header.as_ref(), cluster_id) {
        tracing::warn!(%error, region_id = resp.region_id, "PD answered a region heartbeat with an error");
        return;
    }
    match sink.lock().as_ref() {
        Some(tx) => {
            if tx.send(resp).is_err() {
                tracing::debug!("region heartbeat response receiver dropped; response discarded");
            }
        }
        None => tracing::debug!(
            region_id = resp.region_id,
            "no region heartbeat response receiver yet; discarded"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_proto::metapb;

    fn hb(region: u64, approximate_size: u64) -> pdpb::RegionHeartbeatRequest {
        pdpb::RegionHeartbeatRequest {
            region: Some(metapb::Region {
                id: region,
                ..Default::default()
            }),
            approximate_size,
            ..Default::default()
        }
    }

    #[test]
    fn pending_keeps_the_latest_per_region_and_stamps_headers() {
        let mut pending = Pending::new();
        for req in [hb(1, 10), hb(2, 20), hb(1, 11)] {
            pending.insert(region_id(&req), req);
        }
        let header = pdpb::RequestHeader {
            cluster_id: 42,
            sender_id: 0,
        };
        let mut sent = Vec::new();
        while let Some(req) = take_one(&mut pending, &header) {
            sent.push(req);
        }
        sent.sort_by_key(region_id);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].approximate_size, 11);
        assert_eq!(sent[1].approximate_size, 20);
        assert!(sent.iter().all(|r| r.header == Some(header)));
    }
}
