//! The batching timestamp oracle client.
//!
//! One background task owns the `Tso` bidi stream to the leader. `get_tso` callers send a
//! oneshot over an mpsc channel; the task takes every waiter queued at that moment (up to
//! `max_tso_batch`), sends ONE `TsoRequest { count: N }`, and hands out the N contiguous
//! timestamps of the answer in queue order. While a round trip is in flight new waiters queue
//! up and form the next batch, so the batch size adapts to the load.
//!
//! Invariant: every timestamp handed out is strictly greater than all the ones before it
//! (checked here; a PD answer that goes backwards is rejected).

use std::sync::Arc;

use atoll_proto::pdpb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::connection::Connection;
use crate::error::{check_header, Error, Result};
use crate::metrics;

/// Bits of the logical part of a timestamp.
pub(crate) const LOGICAL_BITS: u32 = 18;

/// A caller waiting for one timestamp.
pub(crate) type TsoWaiter = oneshot::Sender<Result<u64>>;

/// `physical << 18 | logical`.
pub(crate) fn compose_ts(physical: i64, logical: i64) -> u64 {
    ((physical as u64) << LOGICAL_BITS) | logical as u64
}

/// The `count` timestamps of a TSO response whose `timestamp` is the LAST of the block:
/// `ts_i = physical << 18 | (logical - count + 1 + i)` for `i in 0..count`, ascending.
pub(crate) fn tso_block(physical: i64, logical: i64, count: u32) -> Result<Vec<u64>> {
    let count_i = i64::from(count);
    let max_logical = 1i64 << LOGICAL_BITS;
    if count == 0 || physical < 0 || logical >= max_logical || logical - count_i + 1 < 0 {
        return Err(Error::Other(format!(
            "invalid TSO block: physical {physical}, logical {logical}, count {count}"
        )));
    }
    let first = logical - count_i + 1;
    Ok((0..count_i).map(|i| compose_ts(physical, first + i)).collect())
}

/// Checks one `TsoResponse` against the request and expands it.
fn parse_response(resp: &pdpb::TsoResponse, cluster_id: u64, count: u32) -> Result<Vec<u64>> {
    check_header(resp.header.as_ref(), cluster_id)?;
    if resp.count != count {
        return Err(Error::Other(format!(
            "PD returned {} timestamps, {count} were asked",
            resp.count
        )));
    }
    let ts = resp
        .timestamp
        .as_ref()
        .ok_or_else(|| Error::Other("TSO response without timestamp".to_owned()))?;
    tso_block(ts.physical, ts.logical, count)
}

struct TsoStream {
    generation: u64,
    requests: mpsc::Sender<pdpb::TsoRequest>,
    responses: tonic::Streaming<pdpb::TsoResponse>,
}

/// The task owning the `Tso` stream; ends when every sender of `waiters` is gone.
pub(crate) async fn run_tso_task(conn: Arc<Connection>, mut waiters: mpsc::Receiver<TsoWaiter>) {
    let max_batch = conn.config().max_tso_batch.max(1) as usize;
    let mut stream: Option<TsoStream> = None;
    let mut last_ts = 0u64;
    while let Some(first) = waiters.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match waiters.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        // Callers that gave up need no timestamp.
        batch.retain(|w| !w.is_closed());
        let Ok(count) = u32::try_from(batch.len()) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        metrics::TSO_BATCH_SIZE.observe(f64::from(count));
        let timer = metrics::REQUEST_DURATION
            .with_label_values(&["tso"])
            .start_timer();
        let (generation, result) = round_trip(&conn, &mut stream, count).await;
        timer.observe_duration();
        let result = result.and_then(|block| match block.first() {
            Some(&first_ts) if first_ts <= last_ts => Err(Error::Other(format!(
                "PD timestamp went backwards: {first_ts} after {last_ts}"
            ))),
            _ => Ok(block),
        });
        match result {
            Ok(block) => {
                last_ts = block.last().copied().unwrap_or(last_ts);
                for (waiter, ts) in batch.into_iter().zip(block) {
                    let _ = waiter.send(Ok(ts));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, count, "TSO request failed");
                stream = None;
                for waiter in batch {
                    let _ = waiter.send(Err(e.clone()));
                }
                if e.is_retryable() {
                    if let Err(e) = conn.reconnect(generation).await {
                        tracing::debug!(error = %e, "PD rediscovery after TSO failure failed");
                    }
                }
            }
        }
    }
}

/// Sends one request for `count` timestamps on the stream (opening it if needed) and waits for
/// the answer. Returns the connection generation used, for rediscovery on failure.
async fn round_trip(conn: &Connection, slot: &mut Option<TsoStream>, count: u32) -> (u64, Result<Vec<u64>>) {
    let request = pdpb::TsoRequest {
        header: Some(conn.header()),
        count,
        dc_location: String::new(),
    };
    let timeout = conn.config().rpc_timeout;
    let stream = match slot {
        Some(stream) => {
            if stream.requests.send(request).await.is_err() {
                return (
                    stream.generation,
                    Err(Error::Transport("TSO stream closed".to_owned())),
                );
            }
            stream
        }
        None => {
            let (generation, mut client) = conn.current();
            let (tx, rx) = mpsc::channel(4);
            // Queued before the call so that a server answering headers only after the first
            // message cannot stall the call.
            if tx.try_send(request).is_err() {
                return (
                    generation,
                    Err(Error::Other("TSO request queue unusable".to_owned())),
                );
            }
            match tokio::time::timeout(timeout, client.tso(ReceiverStream::new(rx))).await {
                Ok(Ok(resp)) => slot.insert(TsoStream {
                    generation,
                    requests: tx,
                    responses: resp.into_inner(),
                }),
                Ok(Err(status)) => return (generation, Err(Error::from_status(&status))),
                Err(_) => return (generation, Err(Error::Timeout)),
            }
        }
    };
    let generation = stream.generation;
    let response = match tokio::time::timeout(timeout, stream.responses.message()).await {
        Ok(Ok(Some(resp))) => resp,
        Ok(Ok(None)) => {
            return (
                generation,
                Err(Error::Transport("TSO stream closed by PD".to_owned())),
            )
        }
        Ok(Err(status)) => return (generation, Err(Error::from_status(&status))),
        Err(_) => return (generation, Err(Error::Timeout)),
    };
    (generation, parse_response(&response, conn.cluster_id(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_shifts_physical() {
        assert_eq!(compose_ts(0, 0), 0);
        assert_eq!(compose_ts(1, 0), 1 << 18);
        assert_eq!(compose_ts(1_700_000_000_000, 5), (1_700_000_000_000u64 << 18) | 5);
    }

    #[test]
    fn block_ends_at_the_returned_timestamp() {
        let p = 1_000i64;
        assert_eq!(tso_block(p, 10, 1).expect("one"), vec![compose_ts(p, 10)]);
        assert_eq!(
            tso_block(p, 10, 3).expect("three"),
            vec![compose_ts(p, 8), compose_ts(p, 9), compose_ts(p, 10)]
        );
        // A block may start at logical 0.
        let block = tso_block(p, 4, 5).expect("five");
        assert_eq!(block.first(), Some(&compose_ts(p, 0)));
        assert_eq!(block.last(), Some(&compose_ts(p, 4)));
        assert!(block.windows(2).all(|w| w[1] == w[0] + 1));
        // The top of the logical space.
        let top = (1i64 << LOGICAL_BITS) - 1;
        let block = tso_block(p, top, 2).expect("top");
        assert_eq!(block, vec![compose_ts(p, top - 1), compose_ts(p, top)]);
        assert!(block[1] < compose_ts(p + 1, 0));
    }

    #[test]
    fn block_rejects_impossible_answers() {
        assert!(tso_block(1, 0, 0).is_err());
        assert!(tso_block(1, 1, 3).is_err());
        assert!(tso_block(-1, 5, 1).is_err());
        assert!(tso_block(1, 1 << LOGICAL_BITS, 1).is_err());
    }

    #[test]
    fn response_is_checked_against_the_request() {
        let resp = |count, ts: Option<(i64, i64)>, error: Option<pdpb::ErrorType>| pdpb::TsoResponse {
            header: Some(pdpb::ResponseHeader {
                cluster_id: 9,
                error: error.map(|t| pdpb::Error {
                    r#type: t as i32,
                    message: "m".to_owned(),
                }),
            }),
            count,
            timestamp: ts.map(|(physical, logical)| pdpb::Timestamp {
                physical,
                logical,
                suffix_bits: 0,
            }),
        };
        assert_eq!(
            parse_response(&resp(2, Some((5, 7)), None), 9, 2),
            Ok(vec![compose_ts(5, 6), compose_ts(5, 7)])
        );
        assert!(parse_response(&resp(1, Some((5, 7)), None), 9, 2).is_err());
        assert!(parse_response(&resp(2, None, None), 9, 2).is_err());
        assert!(matches!(
            parse_response(&resp(2, Some((5, 7)), Some(pdpb::ErrorType::Unknown)), 9, 2),
            Err(Error::Pd { .. })
        ));
        assert!(matches!(
            parse_response(&resp(2, Some((5, 7)), None), 8, 2),
            Err(Error::ClusterIdMismatch {
                expected: 8,
                actual: 9
            })
        ));
    }
}
