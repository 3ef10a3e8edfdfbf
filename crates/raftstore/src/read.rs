//! Linearizable reads of one peer: lease reads on the leader, ReadIndex otherwise, and follower
//! (replica) reads through the leader's ReadIndex.
//!
//! A read is answered with a KV snapshot taken once the peer has applied a *read index*: an
//! index at or after every write acknowledged before the read arrived.
//! - **ReadIndex**: raft-rs confirms leadership with a quorum of heartbeats and hands back the
//!   commit index (on a follower, the leader's). Reads arriving in one loop share one request.
//! - **Lease**: when a quorum acknowledged this leader at time `t` (a ReadIndex round or a
//!   committed proposal sent at `t`), no other leader can be elected before `t + election
//!   timeout`: with `check_quorum`, followers refuse to vote while they heard from a leader
//!   within the election timeout. The lease is that window minus a clock-drift margin; while
//!   it holds, the leader serves reads at its commit index without a network round trip.
//!   A leadership transfer bypasses followers' lease check (the transferee campaigns at once),
//!   so starting one ends the lease and blocks renewals for two election timeouts, and once the
//!   leader sent the transferee `MsgTimeoutNow` (which may arrive late) there is no lease for the
//!   rest of that term.
//!
//! Every queued read has a deadline, whether or not its ReadIndex was sent yet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::router::ReadResponse;
use crate::{metrics, Error, Result};

pub(crate) type ReadCb<S> = oneshot::Sender<Result<ReadResponse<S>>>;

struct ReadBatch<S> {
    ctx: u64,
    index: Option<u64>,
    cbs: Vec<ReadCb<S>>,
    sent_at: Instant,
}

/// The leader lease.
#[derive(Debug)]
pub(crate) struct Lease {
    duration: Duration,
    until: Option<Instant>,
    term: u64,
    blocked_until: Option<Instant>,
    /// A term in which this leader told a transferee to campaign at once: the transferee may
    /// win whenever that message arrives, so no lease in that term.
    suspect_term: u64,
}

impl Lease {
    pub fn new(duration: Duration) -> Lease {
        Lease {
            duration,
            until: None,
            term: 0,
            blocked_until: None,
            suspect_term: 0,
        }
    }

    /// This leader sent `MsgTimeoutNow` in `term`: leases are over for that term.
    pub fn suspect(&mut self, term: u64) {
        self.suspect_term = self.suspect_term.max(term);
        self.until = None;
    }

    /// A quorum acknowledged this leader in `term` at or after `since`.
    pub fn renew(&mut self, since: Instant, term: u64) {
        if self.duration.is_zero()
            || term <= self.suspect_term
            || self.blocked_until.is_some_and(|b| Instant::now() < b)
        {
            return;
        }
        let until = since + self.duration;
        if self.term != term || self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
            self.term = term;
        }
    }

    pub fn is_valid(&self, term: u64) -> bool {
        let now = Instant::now();
        self.term == term
            && term > self.suspect_term
            && self.until.is_some_and(|u| now < u)
            && self.blocked_until.is_none_or(|b| now >= b)
    }

    /// Leadership may move soon (transfer) or moved: no lease reads for `block`.
    pub fn expire(&mut self, block: Duration) {
        self.until = None;
        if !block.is_zero() {
            self.blocked_until = Some(Instant::now() + block);
        }
    }
}

/// Reads waiting on one peer.
pub(crate) struct ReadQueue<S> {
    /// Waiting for a ReadIndex request to be sent (e.g. a new leader without a commit in its
    /// term yet).
    unsent: Vec<(ReadCb<S>, Instant)>,
    /// ReadIndex requests sent, in order.
    batches: VecDeque<ReadBatch<S>>,
    /// Lease reads: answered once the index they were given is applied.
    at_index: VecDeque<(u64, ReadCb<S>)>,
    next_ctx: u64,
}

impl<S: Clone> ReadQueue<S> {
    pub fn new() -> ReadQueue<S> {
        ReadQueue {
            unsent: vec![],
            batches: VecDeque::new(),
            at_index: VecDeque::new(),
            next_ctx: 1,
        }
    }

    pub fn push_unsent(&mut self, cb: ReadCb<S>) {
        self.unsent.push((cb, Instant::now()));
    }

    pub fn push_at_index(&mut self, index: u64, cb: ReadCb<S>) {
        metrics::PROPOSAL_TOTAL.with_label_values(&["local_read"]).inc();
        self.at_index.push_back((index, cb));
    }

    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Moves every unsent read to `index` (the leader holds a lease).
    pub fn unsent_to_index(&mut self, index: u64) {
        for (cb, _) in std::mem::take(&mut self.unsent) {
            self.push_at_index(index, cb);
        }
    }

    /// Makes the unsent reads one ReadIndex request; returns its context.
    pub fn send_batch(&mut self) -> Vec<u8> {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let cbs = std::mem::take(&mut self.unsent)
            .into_iter()
            .map(|(cb, _)| cb)
            .collect();
        self.batches.push_back(ReadBatch {
            ctx,
            index: None,
            cbs,
            sent_at: Instant::now(),
        });
        ctx.to_be_bytes().to_vec()
    }

    /// Records raft-rs's answers; returns when the answered requests were sent (a quorum
    /// acknowledged the leader after that).
    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) -> Option<Instant> {
        let mut confirmed = None;
        for rs in states {
            let Ok(b) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            let ctx = u64::from_be_bytes(b);
            if let Some(batch) = self.batches.iter_mut().find(|b| b.ctx == ctx) {
                batch.index = Some(rs.index);
                confirmed = confirmed.max(Some(batch.sent_at));
            }
        }
        confirmed
    }

    pub fn has_ready(&self, applied: u64) -> bool {
        self.batches
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
            || self.at_index.front().is_some_and(|(i, _)| *i <= applied)
    }

    /// Answers every read whose index is applied, with `make(snapshot)`.
    pub fn finish(&mut self, applied: u64, mut respond: impl FnMut() -> ReadResponse<S>) {
        while self
            .batches
            .front()
            .is_some_and(|b| b.index.is_some_and(|i| i <= applied))
        {
            if let Some(batch) = self.batches.pop_front() {
                metrics::READ_INDEX_DURATION.observe(batch.sent_at.elapsed().as_secs_f64());
                for cb in batch.cbs {
                    let _ = cb.send(Ok(respond()));
                }
            }
        }
        while self.at_index.front().is_some_and(|(i, _)| *i <= applied) {
            if let Some((_, cb)) = self.at_index.pop_front() {
                let _ = cb.send(Ok(respond()));
            }
        }
    }

    /// Fails reads that waited longer than `timeout` without a read index (raft-rs drops a
    /// request it cannot serve, e.g. across a leader change; a read may also never get sent).
    pub fn expire(&mut self, timeout: Duration, err: impl Fn() -> Error) {
        let now = Instant::now();
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsent)
            .into_iter()
            .partition(|(_, at)| now.saturating_duration_since(*at) > timeout);
        self.unsent = keep;
        for (cb, _) in old {
            let _ = cb.send(Err(err()));
        }
        while self
            .batches
            .front()
            .is_some_and(|b| b.index.is_none() && now.saturating_duration_since(b.sent_at) > timeout)
        {
            if let Some(batch) = self.batches.pop_front() {
                for cb in batch.cbs {
                    let _ = cb.send(Err(err()));
                }
            }
        }
    }

    /// Fails every waiting read.
    pub fn fail_all(&mut self, err: &Error) {
        let unsent = self.unsent.drain(..).map(|(cb, _)| cb);
        let sent = self.batches.drain(..).flat_map(|b| b.cbs);
        let local = self.at_index.drain(..).map(|(_, cb)| cb);
        for cb in unsent.chain(sent).chain(local) {
            let _ = cb.send(Err(err.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_renews_expires_and_blocks() {
        let mut l = Lease::new(Duration::from_secs(5));
        assert!(!l.is_valid(1));
        l.renew(Instant::now(), 1);
        assert!(l.is_valid(1));
        assert!(!l.is_valid(2), "a lease belongs to one term");
        l.expire(Duration::from_secs(60));
        assert!(!l.is_valid(1));
        l.renew(Instant::now(), 1);
        assert!(!l.is_valid(1), "no renewal while blocked by a transfer");
        let mut t = Lease::new(Duration::from_secs(5));
        t.renew(Instant::now(), 4);
        t.suspect(4);
        assert!(!t.is_valid(4));
        t.renew(Instant::now(), 4);
        assert!(
            !t.is_valid(4),
            "no lease for the rest of a term with a forced campaign"
        );
        t.renew(Instant::now(), 5);
        assert!(t.is_valid(5));
        let mut stale = Lease::new(Duration::from_millis(1));
        stale.renew(Instant::now() - Duration::from_secs(1), 3);
        assert!(!stale.is_valid(3));
    }

    #[test]
    fn reads_wait_for_their_index_and_expire() {
        let mut q: ReadQueue<u8> = ReadQueue::new();
        let (tx, mut rx) = oneshot::channel();
        q.push_unsent(tx);
        let ctx = q.send_batch();
        assert!(!q.has_ready(100));
        let sent = q.on_read_states(vec![raft::ReadState {
            index: 7,
            request_ctx: ctx,
        }]);
        assert!(sent.is_some());
        assert!(!q.has_ready(6));
        assert!(q.has_ready(7));
        let resp = || ReadResponse {
            snapshot: 1u8,
            region: Default::default(),
            term: 2,
        };
        q.finish(7, resp);
        assert!(rx.try_recv().unwrap().is_ok());

        let (tx, mut rx) = oneshot::channel();
        q.push_unsent(tx);
        q.expire(Duration::ZERO, || Error::StaleCommand);
        std::thread::sleep(Duration::from_millis(2));
        q.expire(Duration::ZERO, || Error::StaleCommand);
        assert!(rx.try_recv().unwrap().is_err(), "unsent reads time out too");
    }
}
