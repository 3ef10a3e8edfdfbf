//! PD endpoint strings: `host:port` or `http://host:port`, as given on a command line or
//! advertised by PD members in `client_urls`.

use crate::error::{Error, Result};

/// Turns an endpoint into the URL tonic dials: trims blanks and trailing slashes and adds
/// `http://` when no scheme is given. `https://` and other schemes are rejected (no TLS).
pub fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let trimmed = endpoint.trim();
    let (scheme, rest) = match trimmed.find("://") {
        Some(i) => (trimmed[..i].to_ascii_lowercase(), &trimmed[i + 3..]),
        None => ("http".to_owned(), trimmed),
    };
    if scheme != "http" {
        return Err(Error::Other(format!(
            "unsupported PD endpoint scheme in {endpoint:?} (TLS is not supported)"
        )));
    }
    let rest = rest.trim_end_matches('/');
    let valid = !rest.contains('/')
        && !rest.chars().any(char::is_whitespace)
        && rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(Error::Other(format!(
            "invalid PD endpoint {endpoint:?}, want host:port"
        )));
    }
    Ok(format!("http://{rest}"))
}

/// Appends the normalized `urls` to `known`, skipping invalid ones and duplicates (order of
/// first appearance is kept).
pub(crate) fn merge_endpoints<'a>(known: &mut Vec<String>, urls: impl IntoIterator<Item = &'a String>) {
    for url in urls {
        match normalize_endpoint(url) {
            Ok(url) => {
                if !known.contains(&url) {
                    known.push(url);
                }
            }
            Err(e) => tracing::debug!(error = %e, "ignoring PD member url"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_plain_and_http_endpoints() {
        let ok = |s: &str| normalize_endpoint(s).expect(s);
        assert_eq!(ok("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(ok("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(ok(" HTTP://pd-0:2379/ "), "http://pd-0:2379");
        assert_eq!(ok("localhost:2379//"), "http://localhost:2379");
        assert_eq!(ok("[::1]:2379"), "http://[::1]:2379");
    }

    #[test]
    fn rejects_bad_endpoints() {
        for bad in [
            "",
            "  ",
            "https://pd:2379",
            "grpc://pd:2379",
            "http://",
            "pd:2379/path",
            "a b:1",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn merge_dedups_and_keeps_order() {
        let mut known = vec!["http://a:1".to_owned()];
        let urls = ["a:1", "http://b:2", "https://c:3", "b:2/"].map(String::from);
        merge_endpoints(&mut known, urls.iter());
        assert_eq!(known, vec!["http://a:1", "http://b:2"]);
    }
}
