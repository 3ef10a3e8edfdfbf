//! A deliberately small HTTP/1.1 client for talking to PD's JSON API and the nodes' status
//! servers on loopback: plain `http://` only, `GET` and `POST` of a JSON body, one request per
//! connection (`Connection: close`). It understands `Content-Length`, `Transfer-Encoding:
//! chunked` and close-delimited bodies. The parsing is pure (byte slices in, values out) so it is
//! unit tested without sockets; [`get`] and [`post_json`] are the only functions doing I/O.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response we are willing to buffer. PD's region listing of a big cluster is a few MB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Largest response head (status line + headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Errors from parsing an endpoint, performing the request or decoding the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The endpoint string is not `host:port` / `http://host:port`.
    BadEndpoint(String),
    /// Connecting, writing or reading failed.
    Io(String),
    /// The whole exchange did not finish within the deadline.
    Timeout(Duration),
    /// The response is not valid HTTP/1.x.
    Malformed(String),
    /// The connection closed before the response was complete.
    Incomplete,
    /// The response is larger than we are willing to buffer.
    TooLarge,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadEndpoint(s) => write!(f, "bad endpoint: {s}"),
            HttpError::Io(s) => write!(f, "i/o error: {s}"),
            HttpError::Timeout(d) => write!(f, "no complete response within {d:?}"),
            HttpError::Malformed(s) => write!(f, "malformed HTTP response: {s}"),
            HttpError::Incomplete => write!(f, "connection closed before the response was complete"),
            HttpError::TooLarge => write!(f, "response larger than {MAX_RESPONSE_BYTES} bytes"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Where to send requests: a host (name, IPv4, or IPv6 without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port`, `http://host:port` or `http://host:port/`; IPv6 as `[::1]:2379`.
    pub fn parse(s: &str) -> Result<Endpoint, HttpError> {
        let bad = |why: &str| HttpError::BadEndpoint(format!("{s:?}: {why}"));
        let trimmed = s.trim();
        let rest = if let Some(r) = trimmed.strip_prefix("http://") {
            r
        } else if trimmed.starts_with("https://") {
            return Err(bad("https is not supported, use http://"));
        } else if trimmed.contains("://") {
            return Err(bad("only http:// is supported"));
        } else {
            trimmed
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("expected host:port without a path"));
        }
        let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
            let (host, tail) = after_bracket.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = tail.strip_prefix(':').ok_or_else(|| bad("missing port"))?;
            (host, port)
        } else {
            rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number in 1..=65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` as used for `connect` and the `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

/// A fully read response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names are lower-cased; values are trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, replacing invalid UTF-8.
    #[cfg(test)]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The bytes of a `GET path` request for `endpoint`.
pub fn build_get_request(endpoint: &Endpoint, path: &str) -> Vec<u8> {
    build_request("GET", endpoint, path, None)
}

/// The bytes of a `method path` request for `endpoint`, with a JSON `body` if given.
pub fn build_request(method: &str, endpoint: &Endpoint, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let body_headers = body.map_or_else(String::new, |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: atoll-cli\r\nAccept: application/json\r\n\
         {body_headers}Connection: close\r\n\r\n",
        endpoint.authority()
    )
    .into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Parses `HTTP/1.1 200 OK` into `(200, "OK")`. The reason phrase may be empty or absent.
pub fn parse_status_line(line: &str) -> Result<(u16, String), HttpError> {
    let malformed = || HttpError::Malformed(format!("status line {line:?}"));
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed());
    }
    let code = parts.next().ok_or_else(malformed)?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let status: u16 = code.parse().map_err(|_| malformed())?;
    if status < 100 {
        return Err(malformed());
    }
    let reason = parts.next().unwrap_or("").trim().to_string();
    Ok((status, reason))
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    framing: Framing,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("non-UTF-8 head".into()))?;
    let mut lines = text.split("\r\n");
    let (status, reason) = parse_status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let chunked = headers.iter().any(|(n, v)| {
        n == "transfer-encoding"
            && v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let mut length = None;
    for (n, v) in &headers {
        if n == "content-length" {
            let l: usize = v
                .parse()
                .map_err(|_| HttpError::Malformed(format!("content-length {v:?}")))?;
            if length.is_some_and(|prev| prev != l) {
                return Err(HttpError::Malformed("conflicting content-length headers".into()));
            }
            length = Some(l);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        reason,
        headers,
        framing,
    })
}

/// Decodes a chunked body. `Ok(None)` means more bytes are needed. Chunk extensions and
/// trailers are accepted and ignored.
pub fn decode_chunked(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&data[..eol])
            .map_err(|_| HttpError::Malformed("non-UTF-8 chunk size".into()))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_line:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailer section: header lines, then an empty line.
            loop {
                let Some(eol) = find(data, b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(out));
                }
                data = &data[eol + 2..];
            }
        }
        if out.len().saturating_add(size) > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
        }
        data = &data[size + 2..];
    }
}

/// Parses what has been received so far. `Ok(None)` means the response is not complete yet;
/// with `eof` set (the peer closed the connection) an incomplete response is an error, and a
/// close-delimited body ends here.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HttpError::Malformed("response head too large".into()));
        }
        return if eof { Err(HttpError::Incomplete) } else { Ok(None) };
    };
    let head = parse_head(&buf[..head_end])?;
    let rest = &buf[head_end + 4..];
    let body = match head.framing {
        Framing::Empty => Some(Vec::new()),
        Framing::Length(l) if l > MAX_RESPONSE_BYTES => return Err(HttpError::TooLarge),
        Framing::Length(l) => (rest.len() >= l).then(|| rest[..l].to_vec()),
        Framing::Chunked => decode_chunked(rest)?,
        Framing::UntilClose => eof.then(|| rest.to_vec()),
    };
    match body {
        Some(body) => Ok(Some(Response {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body,
        })),
        None if eof => Err(HttpError::Incomplete),
        None => Ok(None),
    }
}

/// `GET http://endpoint/path`, the whole exchange bounded by `timeout`.
pub async fn get(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    exchange(endpoint, build_get_request(endpoint, path), timeout).await
}

/// `DELETE http://endpoint/path`, the whole exchange bounded by `timeout`.
pub async fn delete(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    exchange(endpoint, build_request("DELETE", endpoint, path, None), timeout).await
}

/// `POST http://endpoint/path` with a JSON `body`, the whole exchange bounded by `timeout`.
pub async fn post_json(
    endpoint: &Endpoint,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    exchange(
        endpoint,
        build_request("POST", endpoint, path, Some(body)),
        timeout,
    )
    .await
}

async fn exchange(endpoint: &Endpoint, request: Vec<u8>, timeout: Duration) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, exchange_inner(endpoint, &request)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

async fn exchange_inner(endpoint: &Endpoint, request: &[u8]) -> Result<Response, HttpError> {
    let io = |e: std::io::Error| HttpError::Io(format!("{endpoint}: {e}"));
    let mut stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(io)?;
    stream.write_all(request).await.map_err(io)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        let eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_BYTES + MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge);
        }
        if let Some(response) = parse_response(&buf, eof)? {
            return Ok(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> Response {
        parse_response(raw, false).unwrap().expect("complete response")
    }

    #[test]
    fn endpoint_forms() {
        let ep = Endpoint::parse("127.0.0.1:2379").unwrap();
        assert_eq!(
            ep,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 2379
            }
        );
        assert_eq!(
            Endpoint::parse("http://localhost:2379/").unwrap().authority(),
            "localhost:2379"
        );
        let v6 = Endpoint::parse("[::1]:2379").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:2379");
        for bad in [
            "127.0.0.1",
            "https://a:1",
            "grpc://a:1",
            ":2379",
            "a:0",
            "a:70000",
            "a:1/pd",
            "[::1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn request_bytes() {
        let ep = Endpoint::parse("127.0.0.1:2379").unwrap();
        let req = String::from_utf8(build_get_request(&ep, "pd/api/v1/health")).unwrap();
        assert!(req.starts_with("GET /pd/api/v1/health HTTP/1.1\r\n"));
        assert!(req.contains("\r\nHost: 127.0.0.1:2379\r\n"));
        assert!(req.contains("\r\nConnection: close\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(!req.contains("Content-Length"));
        let body = br#"{"retention":"10m"}"#;
        let req =
            String::from_utf8(build_request("POST", &ep, "/pd/api/v1/gc/safepoint", Some(body))).unwrap();
        assert!(req.starts_with("POST /pd/api/v1/gc/safepoint HTTP/1.1\r\n"));
        assert!(req.contains("\r\nContent-Type: application/json\r\nContent-Length: 19\r\n"));
        assert!(req.ends_with("\r\n\r\n{\"retention\":\"10m\"}"));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK").unwrap(), (200, "OK".into()));
        assert_eq!(
            parse_status_line("HTTP/1.0 404 Not Found").unwrap(),
            (404, "Not Found".into())
        );
        assert_eq!(parse_status_line("HTTP/1.1 500").unwrap(), (500, String::new()));
        assert_eq!(parse_status_line("HTTP/1.1 204 ").unwrap(), (204, String::new()));
        for bad in [
            "",
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 abc OK",
            "SIP/2.0 200 OK",
            "HTTP/1.1",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let r = complete(raw);
        assert_eq!(r.status, 200);
        assert!(r.is_success());
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
        // Not all of the body yet.
        assert_eq!(parse_response(&raw[..raw.len() - 1], false).unwrap(), None);
        assert_eq!(
            parse_response(&raw[..raw.len() - 1], true),
            Err(HttpError::Incomplete)
        );
        // Head not complete yet.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap(),
            None
        );
    }

    #[test]
    fn content_length_conflicts_and_garbage() {
        let conflict = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
        assert!(matches!(
            parse_response(conflict, false),
            Err(HttpError::Malformed(_))
        ));
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(complete(same).body, b"{}");
        let garbage = b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\n{}";
        assert!(matches!(
            parse_response(garbage, false),
            Err(HttpError::Malformed(_))
        ));
        let no_colon = b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n";
        assert!(matches!(
            parse_response(no_colon, true),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(complete(raw).body, b"Wikipedia in \r\n\r\nchunks.");
        // Every strict prefix is incomplete, never an error.
        for cut in 0..raw.len() {
            assert_eq!(parse_response(&raw[..cut], false).unwrap(), None, "cut at {cut}");
        }
        // Transfer-Encoding wins over Content-Length.
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
                     2\r\nok\r\n0\r\n\r\n";
        assert_eq!(complete(both).body, b"ok");
    }

    #[test]
    fn chunked_with_trailers_and_errors() {
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")
                .unwrap()
                .unwrap(),
            b"abc"
        );
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n").unwrap(),
            None
        );
        assert!(decode_chunked(b"zz\r\nabc\r\n0\r\n\r\n").is_err());
        assert!(decode_chunked(b"3\r\nabcd\r\n0\r\n\r\n").is_err());
        assert_eq!(decode_chunked(b"0\r\n\r\n").unwrap().unwrap(), b"");
    }

    #[test]
    fn close_delimited_and_bodyless() {
        let raw = b"HTTP/1.0 500 Internal Server Error\r\nServer: x\r\n\r\nboom";
        assert_eq!(parse_response(raw, false).unwrap(), None);
        let r = parse_response(raw, true).unwrap().unwrap();
        assert_eq!(r.status, 500);
        assert!(!r.is_success());
        assert_eq!(r.text(), "boom");
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(complete(no_content).body, b"");
        assert_eq!(parse_response(b"", true), Err(HttpError::Incomplete));
    }

    #[tokio::test]
    async fn get_against_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while find(&req, b"\r\n\r\n").is_none() {
                let n = sock.read(&mut b).await.unwrap();
                req.extend_from_slice(&b[..n]);
            }
            // Split writes exercise incremental parsing.
            sock.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":")
                .await
                .unwrap();
            sock.flush().await.unwrap();
            sock.write_all(b"\r\n2\r\n1}\r\n0\r\n\r\n").await.unwrap();
            String::from_utf8(req).unwrap()
        });
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let r = get(&ep, "/pd/api/v1/health", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "{\"a\":1}");
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /pd/api/v1/health HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn get_times_out_on_a_silent_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(sock);
        });
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let err = get(&ep, "/", Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(err, HttpError::Timeout(Duration::from_millis(200)));
    }
}
