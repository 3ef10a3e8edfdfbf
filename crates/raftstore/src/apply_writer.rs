//! The apply writer: writes the KV batches of applied entries off the store loop, so that the
//! loop persists (fsyncs) the next Raft log batch while the previous iteration's committed
//! entries are written to the KV engine.
//!
//! The store loop still decides what applying an entry does (in memory: data modifications,
//! region and apply state, conf changes to raft-rs); this thread performs the write and answers
//! the proposals once it is done. Batches are written in the order they were submitted; the
//! store loop learns which applied index of each region is in the engine ([`ApplyDone`]) and
//! serves reads, generates snapshots, deletes compacted log entries and destroys peers only
//! from what is written (draining the writer first where it must).

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use engine_traits::{KvEngine, WriteBatch};

use crate::peer::WriteCb;
use crate::{metrics, Error, Result};

/// One store loop iteration's applied entries, as one KV write.
pub(crate) struct ApplyJob {
    pub wb: WriteBatch,
    /// Durable before the answer (the batch records a log truncation).
    pub sync: bool,
    pub regions: Vec<AppliedRegion>,
    pub responses: Vec<(WriteCb, Result<()>)>,
    /// When each answered write was handed to the router.
    pub answered_sent_at: Vec<Instant>,
    pub started: Instant,
}

/// What a written job made true for one region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppliedRegion {
    pub region_id: u64,
    pub applied_index: u64,
    /// Log entries `[from, to]` may be deleted from the raft engine now.
    pub compacted: Option<(u64, u64)>,
}

pub(crate) type ApplyDone = std::result::Result<Vec<AppliedRegion>, String>;

pub(crate) struct ApplyWriter {
    tx: Option<Sender<ApplyJob>>,
    pub done_rx: Receiver<ApplyDone>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl ApplyWriter {
    pub fn spawn<EK: KvEngine>(kv: EK, store_id: u64) -> Result<ApplyWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<ApplyJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("apply-writer-{store_id}"))
            .spawn(move || run(kv, rx, done_tx))
            .map_err(|e| Error::Engine(e.to_string()))?;
        Ok(ApplyWriter {
            tx: Some(tx),
            done_rx,
            in_flight: 0,
            thread: Some(thread),
        })
    }

    pub fn submit(&mut self, job: ApplyJob) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::ShuttingDown)?;
        tx.send(job)
            .map_err(|_| Error::Engine("the apply writer stopped".into()))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Counts a finished job received straight from `done_rx`.
    pub fn note_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A finished job, if any (non-blocking).
    pub fn try_done(&mut self) -> Option<ApplyDone> {
        let d = self.done_rx.try_recv().ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(d)
    }

    /// Waits for the next finished job (`None` if none is in flight or the writer is gone).
    pub fn wait_done(&mut self) -> Option<ApplyDone> {
        if self.in_flight == 0 {
            return None;
        }
        let d = self.done_rx.recv().ok()?;
        self.in_flight -= 1;
        Some(d)
    }

    /// Stops the thread after it wrote everything submitted.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<EK: KvEngine>(kv: EK, rx: Receiver<ApplyJob>, done: Sender<ApplyDone>) {
    while let Ok(job) = rx.recv() {
        fail::fail_point!("raftstore_before_apply_write");
        if let Err(e) = kv.write(&job.wb, job.sync) {
            let msg = format!("applying committed entries to the KV engine failed: {e}");
            for (cb, _) in job.responses {
                let _ = cb.send(Err(Error::Engine(msg.clone())));
            }
            let _ = done.send(Err(msg));
            return;
        }
        metrics::APPLY_DURATION.observe(job.started.elapsed().as_secs_f64());
        for (cb, res) in job.responses {
            let _ = cb.send(res);
        }
        for sent_at in job.answered_sent_at {
            metrics::PROPOSE_TO_APPLY_DURATION.observe(sent_at.elapsed().as_secs_f64());
        }
        if done.send(Ok(job.regions)).is_err() {
            return;
        }
    }
}
