//! Undecodable bytes at the gRPC layer: garbage protobuf payloads through tonic with a bytes
//! codec, broken gRPC framing over raw HTTP/2 (`h2`), and bytes that are not HTTP/2 at all.
//! Each must end in a gRPC status or HTTP error (or a closed connection for non-HTTP/2 bytes),
//! never in a dead server.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::transport::Channel;

use super::{excerpt, Outcome, CALL_TIMEOUT, G};

pub const RPCS: &[(&str, u32)] = &[("WireGarbage", 8), ("WireFrames", 3), ("WireNotHttp2", 1)];

/// Methods the garbage goes to, by server.
const KV_METHODS: &[&str] = &[
    "/tikvpb.Tikv/KvGet",
    "/tikvpb.Tikv/KvPrewrite",
    "/tikvpb.Tikv/KvCommit",
    "/tikvpb.Tikv/KvResolveLock",
    "/tikvpb.Tikv/RawPut",
    "/tikvpb.Tikv/RawBatchPut",
    "/tikvpb.Tikv/RawScan",
    "/tikvpb.Tikv/SplitRegion",
    "/tikvpb.Tikv/Coprocessor",
    "/tikvpb.Tikv/NoSuchMethod",
    "/nope.Nope/Nope",
];
const PD_METHODS: &[&str] = &[
    "/pdpb.PD/GetMembers",
    "/pdpb.PD/GetRegion",
    "/pdpb.PD/PutStore",
    "/pdpb.PD/StoreHeartbeat",
    "/pdpb.PD/ReportBatchSplit",
    "/pdpb.PD/UpdateGCSafePoint",
    "/pdpb.PD/NoSuchMethod",
    "/keyspacepb.Keyspace/LoadKeyspace",
];
/// Streaming methods (sent as streams of garbage messages).
const PD_STREAMS: &[&str] = &["/pdpb.PD/Tso", "/pdpb.PD/RegionHeartbeat"];

/// Passes bytes through unchanged.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Bytes that are (mostly) not a valid encoding of the method's request.
fn garbage(g: &mut G<'_>) -> Vec<u8> {
    // A valid request to start from: a RawPut with a real-looking context.
    let key = g.key();
    let valid = atoll_proto::kvrpcpb::RawPutRequest {
        context: g.context(&key, true).0,
        key,
        value: g.value(),
        ..Default::default()
    }
    .encode_to_vec();
    match g.below(9) {
        0 => g.small_bytes(200),
        1 => {
            // Cut short.
            let cut = g.below(valid.len().max(1));
            valid[..cut].to_vec()
        }
        2 => {
            // A varint that never ends.
            [&[0x08u8] as &[u8], &[0xff; 11]].concat()
        }
        3 => {
            // A length-delimited field claiming more bytes than follow.
            [&[0x12u8, 0xff, 0xff, 0xff, 0x7f] as &[u8], b"short"].concat()
        }
        4 => {
            // Field 1 (context, a message) with wire type 0 or 5, or the reserved group types.
            vec![*g.pick(&[0x08u8, 0x0d, 0x0b, 0x0c, 0x0f, 0x00]), 1, 2, 3]
        }
        5 => {
            // Messages nested deeper than any decoder allows.
            let mut msg: Vec<u8> = Vec::new();
            for _ in 0..200 {
                let mut outer = vec![0x0a];
                prost::encoding::encode_varint(msg.len() as u64, &mut outer);
                outer.extend_from_slice(&msg);
                msg = outer;
            }
            msg
        }
        6 => {
            // Flip bytes of a valid message.
            let mut v = valid;
            for _ in 0..1 + g.below(4) {
                if !v.is_empty() {
                    let i = g.below(v.len());
                    v[i] ^= 1 << g.below(8);
                }
            }
            v
        }
        7 => {
            // Invalid UTF-8 in a string field (RawPutRequest.cf = 4).
            let mut v = valid;
            v.extend_from_slice(&[0x22, 3, 0xff, 0xfe, 0xc0]);
            v
        }
        _ => {
            // Field number 0 and the largest field number.
            vec![0x00, 0x01, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]
        }
    }
}

fn bad(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Timeout)
        || matches!(outcome, Outcome::Status(c, m) if super::transport_failure(*c, m))
}

/// Sends one piece of undecodable input. `kv` are the nodes' channels, `pd` PD's; `addrs` the
/// nodes' and then PD's `host:port`.
pub async fn call(
    g: &mut G<'_>,
    rpc: usize,
    kv: &[Channel],
    pd: &Channel,
    addrs: &[String],
) -> (Outcome, Option<String>) {
    match RPCS[rpc].0 {
        "WireGarbage" => {
            let to_pd = g.chance(1, 3);
            let (channel, path) = if to_pd {
                let methods = if g.chance(1, 4) { PD_STREAMS } else { PD_METHODS };
                (pd.clone(), *g.pick(methods))
            } else {
                (kv[g.below(kv.len())].clone(), *g.pick(KV_METHODS))
            };
            let payloads: Vec<Vec<u8>> = (0..1 + g.below(2)).map(|_| garbage(g)).collect();
            let shown = excerpt(format!("{path} {payloads:?}"), 2000);
            let mut grpc = tonic::client::Grpc::new(channel);
            let path = http::uri::PathAndQuery::from_static(path);
            let streaming = PD_STREAMS.contains(&path.as_str());
            let run = async move {
                grpc.ready()
                    .await
                    .map_err(|e| tonic::Status::unavailable(format!("transport error: {e}")))?;
                if streaming {
                    let mut s = grpc
                        .streaming(tonic::Request::new(tokio_stream::iter(payloads)), path, RawCodec)
                        .await?
                        .into_inner();
                    while s.message().await?.is_some() {}
                    Ok(())
                } else {
                    let body = payloads.into_iter().next().unwrap_or_default();
                    grpc.unary(tonic::Request::new(body), path, RawCodec)
                        .await
                        .map(|_| ())
                }
            };
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, run).await {
                Err(_) => Outcome::Timeout,
                Ok(Err(s)) => Outcome::Status(s.code(), s.message().to_owned()),
                Ok(Ok(())) => Outcome::Ok,
            };
            let detail = bad(&outcome).then_some(shown);
            (outcome, detail)
        }
        "WireFrames" => {
            let i = g.below(addrs.len());
            let addr = addrs[i].clone();
            let path = if i + 1 == addrs.len() {
                *g.pick(PD_METHODS)
            } else {
                *g.pick(KV_METHODS)
            };
            let (body, headers) = frames(g);
            let shown = excerpt(format!("{addr}{path} headers {headers:?} body {body:?}"), 2000);
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, h2_call(&addr, path, headers, body)).await
            {
                Err(_) => Outcome::Timeout,
                Ok(Err(e)) => Outcome::Status(tonic::Code::Unavailable, format!("transport error: {e}")),
                Ok(Ok(None)) => Outcome::Ok,
                Ok(Ok(Some(code))) => Outcome::Status(tonic::Code::from_i32(code), "grpc-status".into()),
            };
            let detail = bad(&outcome).then_some(shown);
            (outcome, detail)
        }
        "WireNotHttp2" => {
            let addr = addrs[g.below(addrs.len())].clone();
            let junk = match g.below(3) {
                0 => g.small_bytes(300),
                1 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                // The HTTP/2 preface, then a frame header announcing a 16 MiB SETTINGS frame.
                _ => [
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" as &[u8],
                    &[0xff, 0xff, 0xff, 0x04, 0, 0, 0, 0, 0],
                ]
                .concat(),
            };
            let run = async {
                let mut s = tokio::net::TcpStream::connect(&addr).await?;
                s.write_all(&junk).await?;
                s.shutdown().await
            };
            // Only the connection must be accepted; what the server does with the bytes is its
            // own business (processes are checked alive afterwards).
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, run).await {
                Err(_) => Outcome::Timeout,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Outcome::Status(tonic::Code::Unavailable, format!("connection refused: {e}"))
                }
                Ok(_) => Outcome::Ok,
            };
            let detail = bad(&outcome).then(|| format!("{addr} {junk:?}"));
            (outcome, detail)
        }
        other => unreachable!("unknown wire rpc {other}"),
    }
}

/// A gRPC request body with broken framing, and extra headers.
fn frames(g: &mut G<'_>) -> (Vec<u8>, Vec<(&'static str, &'static str)>) {
    let body: Vec<u8> = match g.below(7) {
        // Compressed flag without a grpc-encoding.
        0 => vec![1, 0, 0, 0, 3, 1, 2, 3],
        // A 4 GiB message that never comes.
        1 => vec![0, 0xff, 0xff, 0xff, 0xff],
        // A frame header cut short.
        2 => vec![0, 0, 0],
        // A message shorter than its header says.
        3 => vec![0, 0, 0, 0, 9, 1, 2],
        // An undefined flag.
        4 => vec![7, 0, 0, 0, 0],
        // Two messages for a unary method.
        5 => vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        _ => Vec::new(),
    };
    let headers = match g.below(5) {
        0 => vec![("grpc-encoding", "gzip")],
        1 => vec![("grpc-encoding", "nope")],
        2 => vec![("grpc-timeout", "garbage")],
        3 => vec![("content-type", "application/json")],
        _ => Vec::new(),
    };
    (body, headers)
}

/// One HTTP/2 request with a raw body. `Ok(Some(code))`: the grpc-status the server answered;
/// `Ok(None)`: an answer without grpc-status (e.g. an HTTP error status).
async fn h2_call(
    addr: &str,
    path: &str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> Result<Option<i32>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("te", "trailers");
    if !headers.iter().any(|(k, _)| *k == "content-type") {
        builder = builder.header("content-type", "application/grpc");
    }
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    let req = builder.body(()).map_err(|e| e.to_string())?;
    let result = async {
        let (resp, mut stream) = send.send_request(req, false).map_err(|e| e.to_string())?;
        // The server may answer (and close the stream) before it has read the body: that is
        // its right, and the answer below tells.
        let _ = stream.send_data(Bytes::from(body), true);
        let resp = resp.await.map_err(|e| e.to_string())?;
        let status_of = |h: &http::HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
        };
        if let Some(code) = status_of(resp.headers()) {
            return Ok(Some(code));
        }
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?;
        Ok(trailers.as_ref().and_then(status_of))
    }
    .await;
    conn.abort();
    result
}
