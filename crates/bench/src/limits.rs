//! What the machine allows, measured in the same run as the benchmark: how many fsyncs per
//! second the data disk does (one durable write can never be faster than one fsync), and what
//! one gRPC round trip over loopback costs (no request can be faster than that).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::proto::atollbench::ping_client::PingClient;
use crate::proto::atollbench::ping_server::{Ping, PingServer};
use crate::proto::atollbench::{PingRequest, PingResponse};
use crate::stats::{rate, LatencyHistogram, LatencySummary};
use crate::BenchError;

/// Bytes appended before each fsync (a small Raft log write).
pub const FSYNC_WRITE_BYTES: usize = 4096;
/// Payload of each ping (the size of a small put).
pub const PING_PAYLOAD_BYTES: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct FsyncLimit {
    pub dir: PathBuf,
    pub write_bytes: usize,
    pub fsyncs_per_sec: f64,
    pub latency_us: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct PingLimit {
    pub payload_bytes: usize,
    /// One request at a time.
    pub serial_per_sec: f64,
    pub serial_latency_us: LatencySummary,
    /// `concurrency` requests in flight on one connection.
    pub concurrency: usize,
    pub concurrent_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub fsync: FsyncLimit,
    pub grpc_ping: PingLimit,
}

/// Appends [`FSYNC_WRITE_BYTES`] and `fdatasync`s, over and over for `duration`, in a scratch
/// file under `dir` (removed afterwards). Blocking: call it off the async runtime.
pub fn measure_fsync(dir: &Path, duration: Duration) -> Result<FsyncLimit, BenchError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".atoll-bench-fsync-{}", std::process::id()));
    let result = fsync_loop(&path, duration);
    let _ = std::fs::remove_file(&path);
    let (count, elapsed, hist) = result?;
    Ok(FsyncLimit {
        dir: dir.to_path_buf(),
        write_bytes: FSYNC_WRITE_BYTES,
        fsyncs_per_sec: rate(count, elapsed),
        latency_us: hist.summary(),
    })
}

fn fsync_loop(path: &Path, duration: Duration) -> Result<(u64, Duration, LatencyHistogram), BenchError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let block = vec![0x5au8; FSYNC_WRITE_BYTES];
    let mut hist = LatencyHistogram::new();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        hist.record(t.elapsed());
        count += 1;
    }
    Ok((count, start.elapsed(), hist))
}

struct Echo;

#[tonic::async_trait]
impl Ping for Echo {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            payload: req.into_inner().payload,
        }))
    }
}

/// Serves [`Echo`] on an ephemeral loopback port until the returned sender is dropped or fired.
async fn serve_echo() -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // `Server::tcp_nodelay` only applies to listeners tonic binds itself; sockets handed in
    // through `serve_with_incoming` need it set here, or Nagle's algorithm meets delayed ACKs
    // and every small round trip costs ~40 ms.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok::<_, std::io::Error>(conn)
    });
    tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        let served = Server::builder()
            .add_service(PingServer::new(Echo))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "ping server failed");
        }
    });
    Ok((addr, tx))
}

async fn ping_once(client: &mut PingClient<Channel>, payload: &[u8]) -> Result<(), BenchError> {
    client
        .ping(PingRequest {
            payload: payload.to_vec(),
        })
        .await
        .map(|_| ())
        .map_err(|s| BenchError::Transport(s.to_string()))
}

/// Measures gRPC (tonic, HTTP/2, loopback TCP) round trips: one at a time for half of
/// `duration`, then `concurrency` at a time on the same connection for the other half.
pub async fn measure_grpc_ping(duration: Duration, concurrency: usize) -> Result<PingLimit, BenchError> {
    let (addr, stop) = serve_echo().await?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::Transport(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError::Transport(e.to_string()))?;
    let payload: Arc<Vec<u8>> = Arc::new(vec![7u8; PING_PAYLOAD_BYTES]);
    let mut client = PingClient::new(channel);
    // Warm the connection up.
    for _ in 0..100 {
        ping_once(&mut client, &payload).await?;
    }
    let half = duration / 2;
    let mut hist = LatencyHistogram::new();
    let start = Instant::now();
    while start.elapsed() < half {
        let t = Instant::now();
        ping_once(&mut client, &payload).await?;
        hist.record(t.elapsed());
    }
    let serial_elapsed = start.elapsed();

    let concurrency = concurrency.max(1);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let mut c = client.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < half {
                ping_once(&mut c, &payload).await?;
                n += 1;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await.map_err(|e| BenchError::Transport(e.to_string()))??;
    }
    let concurrent_elapsed = start.elapsed();
    let _ = stop.send(());
    Ok(PingLimit {
        payload_bytes: PING_PAYLOAD_BYTES,
        serial_per_sec: rate(hist.count(), serial_elapsed),
        serial_latency_us: hist.summary(),
        concurrency,
        concurrent_per_sec: rate(total, concurrent_elapsed),
    })
}

/// Both limits: fsync in `dir` and loopback gRPC, each for `duration`.
pub async fn measure(dir: &Path, duration: Duration, concurrency: usize) -> Result<Limits, BenchError> {
    let d = dir.to_path_buf();
    let fsync = tokio::task::spawn_blocking(move || measure_fsync(&d, duration))
        .await
        .map_err(|e| BenchError::Transport(e.to_string()))??;
    let grpc_ping = measure_grpc_ping(duration, concurrency).await?;
    Ok(Limits { fsync, grpc_ping })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_probe_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = measure_fsync(dir.path(), Duration::from_millis(30)).unwrap();
        assert!(r.latency_us.count > 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn ping_probe_round_trips() {
        let r = measure_grpc_ping(Duration::from_millis(100), 4).await.unwrap();
        assert!(r.serial_latency_us.count > 0);
        assert_eq!(r.concurrency, 4);
    }
}
