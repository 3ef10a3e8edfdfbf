//! Per-store region-heartbeat response streams.
//!
//! Every `RegionHeartbeat` stream binds itself to the store of the leaders reporting on it, so
//! that schedulers can push a `RegionHeartbeatResponse` (an operator step) to that store.
//! A newer stream from the same store replaces the older binding.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use atoll_proto::pdpb::RegionHeartbeatResponse;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// The sending half of one heartbeat stream (errors end the stream).
pub type HeartbeatSender = mpsc::UnboundedSender<Result<RegionHeartbeatResponse, tonic::Status>>;

struct Binding {
    stream_id: u64,
    sender: HeartbeatSender,
}

/// Store id → the response sender of that store's latest heartbeat stream.
#[derive(Default)]
pub struct HeartbeatStreams {
    next_stream_id: AtomicU64,
    bindings: Mutex<HashMap<u64, Binding>>,
}

impl HeartbeatStreams {
    pub fn new() -> HeartbeatStreams {
        HeartbeatStreams::default()
    }

    /// A fresh id for a new stream.
    pub fn new_stream_id(&self) -> u64 {
        self.next_stream_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Binds `store_id` to the stream `stream_id` (no-op if already bound to it).
    pub fn bind(&self, store_id: u64, stream_id: u64, sender: &HeartbeatSender) {
        let mut b = self.bindings.lock();
        if b.get(&store_id).is_some_and(|x| x.stream_id == stream_id) {
            return;
        }
        b.insert(
            store_id,
            Binding {
                stream_id,
                sender: sender.clone(),
            },
        );
    }

    /// Drops every binding of the stream `stream_id` (it ended).
    pub fn unbind_stream(&self, stream_id: u64) {
        self.bindings.lock().retain(|_, x| x.stream_id != stream_id);
    }

    /// Sends `resp` to the stream bound to `store_id`; false if none or it is closed.
    pub fn send(&self, store_id: u64, resp: RegionHeartbeatResponse) -> bool {
        let mut b = self.bindings.lock();
        let Some(binding) = b.get(&store_id) else {
            return false;
        };
        if binding.sender.send(Ok(resp)).is_err() {
            b.remove(&store_id);
            return false;
        }
        true
    }

    /// Stores that currently have a bound stream.
    pub fn bound_stores(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.bindings.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_send_unbind() {
        let hs = HeartbeatStreams::new();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let s1 = hs.new_stream_id();
        let s2 = hs.new_stream_id();
        hs.bind(1, s1, &tx1);
        assert!(hs.send(
            1,
            RegionHeartbeatResponse {
                region_id: 5,
                ..Default::default()
            }
        ));
        assert_eq!(rx1.try_recv().unwrap().unwrap().region_id, 5);
        // A newer stream of the same store takes over.
        hs.bind(1, s2, &tx2);
        assert!(hs.send(
            1,
            RegionHeartbeatResponse {
                region_id: 6,
                ..Default::default()
            }
        ));
        assert_eq!(rx2.try_recv().unwrap().unwrap().region_id, 6);
        assert!(rx1.try_recv().is_err());
        hs.unbind_stream(s1);
        assert_eq!(hs.bound_stores(), vec![1]);
        hs.unbind_stream(s2);
        assert!(!hs.send(1, RegionHeartbeatResponse::default()));
        assert!(!hs.send(9, RegionHeartbeatResponse::default()));
    }
}
