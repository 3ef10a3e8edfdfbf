//! Minimal HTTP/1.1 for the harness: GET and POST against PD's and the nodes' HTTP servers,
//! with the whole exchange bounded by a timeout.

use std::io;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or_else(|| bad_data("chunk size line"))?;
        let line = std::str::from_utf8(&body[..line_end]).map_err(|_| bad_data("chunk size utf8"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| bad_data(format!("chunk size {hex:?}")))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err(bad_data("truncated chunk"));
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Splits a raw HTTP/1.1 response into status code and (de-chunked) body.
pub fn parse_http_response(raw: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad_data("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| bad_data("headers not utf8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad_data(format!("status line {status_line:?}")))?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if name == "content-length" {
                content_length = value.parse::<usize>().ok();
            }
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = content_length {
        body[..n.min(body.len())].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// `GET http://{addr}{path}`: status code and body.
pub async fn http_get(addr: &str, path: &str) -> io::Result<(u16, Vec<u8>)> {
    http_exchange(addr, "GET", path, None).await
}

/// `POST http://{addr}{path}` with a JSON body: status code and body.
pub async fn http_post(addr: &str, path: &str, json: &str) -> io::Result<(u16, Vec<u8>)> {
    http_exchange(addr, "POST", path, Some(json)).await
}

/// `DELETE http://{addr}{path}`: status code and body.
pub async fn http_delete(addr: &str, path: &str) -> io::Result<(u16, Vec<u8>)> {
    http_exchange(addr, "DELETE", path, None).await
}

async fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> io::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = json.unwrap_or_default();
        let content = match json {
            Some(b) => format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ),
            None => String::new(),
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{content}Connection: close\r\n\r\n{body}"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_http_response(&raw)
    };
    match tokio::time::timeout(HTTP_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{method} {addr}{path} timed out"),
        )),
    }
}

/// `GET` that must answer 200 with a JSON body.
pub async fn http_get_json(addr: &str, path: &str) -> Result<Json, String> {
    let (status, body) = http_get(addr, path)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if status != 200 {
        return Err(format!(
            "GET {path}: status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("GET {path}: bad JSON ({e}): {}", String::from_utf8_lossy(&body)))
}
