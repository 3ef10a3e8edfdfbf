//! gRPC services of a node.

/// Fills `region_error` and `error` (a string) of a response from a storage error.
macro_rules! fill_err {
    ($resp:ident, $e:expr) => {{
        let (region_error, error) = crate::errors::split_storage_error($e);
        $resp.region_error = region_error;
        $resp.error = error;
    }};
}

pub mod guard;
/// Longest message a gRPC status carries. The message travels in the `grpc-message` header,
/// and an error naming a 1 MiB key would exceed every client's header-list limit: the client
/// then sees an HTTP/2 protocol error instead of the status (found by tests/fuzz_e2e.rs).
const MAX_STATUS_MESSAGE: usize = 1024;

/// `msg` cut to [`MAX_STATUS_MESSAGE`] bytes (at a character boundary), saying how long it was.
pub(crate) fn status_message(msg: String) -> String {
    if msg.len() <= MAX_STATUS_MESSAGE {
        return msg;
    }
    let mut cut = MAX_STATUS_MESSAGE;
    while !msg.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &msg[..cut], msg.len())
}

pub mod kv;
pub mod raft;
pub mod split;
mod txn;

#[cfg(test)]
mod tests {
    use super::status_message;

    #[test]
    fn long_status_messages_are_cut_at_a_char_boundary() {
        assert_eq!(status_message("short".into()), "short");
        let msg = format!("key {:?} is not in the raw key space", vec![0x92u8; 1 << 20]);
        let cut = status_message(msg.clone());
        assert!(cut.len() < 1100, "{} bytes", cut.len());
        assert!(cut.ends_with(&format!("({} bytes in all)", msg.len())), "{cut}");
        let wide = status_message("é".repeat(1000));
        assert!(
            wide.starts_with("éé") && wide.ends_with("(2000 bytes in all)"),
            "{wide}"
        );
    }
}
