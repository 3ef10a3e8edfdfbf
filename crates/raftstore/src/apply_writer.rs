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

/// Writes a KV batch (with sync when asked).
type WriteFn = Box<dyn Fn(&WriteBatch, bool) -> engine_traits::Result<()> + Send>;

pub(crate) struct ApplyWriter {
    tx: Option<Sender<ApplyJob>>,
    pub done_rx: Receiver<ApplyDone>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
    /// Inline mode (no thread): jobs are written in `submit`, their reports queued here.
    inline: Option<WriteFn>,
    inline_done: std::collections::VecDeque<ApplyDone>,
    /// Inline mode keeps the sending half, so `done_rx` never reads as disconnected.
    _inline_done_tx: Option<Sender<ApplyDone>>,
}

impl ApplyWriter {
    /// With `threads == 0` (`apply-pool-size = 0`) batches are written on the store thread
    /// itself, in `submit`; otherwise by one writer thread.
    pub fn spawn<EK: KvEngine>(kv: EK, store_id: u64, threads: usize) -> Result<ApplyWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<ApplyJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        if threads == 0 {
            let write: WriteFn = Box::new(move |wb: &WriteBatch, sync: bool| kv.write(wb, sync));
            return Ok(ApplyWriter {
                tx: None,
                done_rx,
                in_flight: 0,
                thread: None,
                inline: Some(write),
                inline_done: Default::default(),
                _inline_done_tx: Some(done_tx),
            });
        }
        let thread = std::thread::Builder::new()
            .name(format!("apply-writer-{store_id}"))
            .spawn(move || run(kv, rx, done_tx))
            .map_err(|e| Error::Engine(e.to_string()))?;
        Ok(ApplyWriter {
            tx: Some(tx),
            done_rx,
            in_flight: 0,
            thread: Some(thread),
            inline: None,
            inline_done: Default::default(),
            _inline_done_tx: None,
        })
    }

    pub fn submit(&mut self, job: ApplyJob) -> Result<()> {
        if let Some(write) = &self.inline {
            let done = write_job(job, |wb, sync| write(wb, sync));
            self.inline_done.push_back(done);
            self.in_flight += 1;
            return Ok(());
        }
        let tx = self.tx.as_ref().ok_or(Error::ShuttingDown)?;
        tx.send(job)
            .map_err(|_| Error::Engine("the apply writer stopped".into()))?;
        self.in_flight += 1;
        Ok(())
    }

    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }

    /// Counts a finished job received straight from `done_rx`.
    pub fn note_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A finished job, if any (non-blocking).
    pub fn try_done(&mut self) -> Option<ApplyDone> {
        if let Some(d) = self.inline_done.pop_front() {
            self.in_flight = self.in_flight.saturating_sub(1);
            return Some(d);
        }
        let d = self.done_rx.try_recv().ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(d)
    }

    /// Waits for the next finished job (`None` if none is in flight or the writer is gone).
    pub fn wait_done(&mut self) -> Option<ApplyDone> {
        if self.in_flight == 0 {
            return None;
        }
        if let Some(d) = self.inline_done.pop_front() {
            self.in_flight -= 1;
            return Some(d);
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
        let d = write_job(job, |wb, sync| kv.write(wb, sync));
        let failed = d.is_err();
        if done.send(d).is_err() || failed {
            return;
        }
    }
}

/// Writes one job and answers its proposals.
fn write_job(job: ApplyJob, write: impl Fn(&WriteBatch, bool) -> engine_traits::Result<()>) -> ApplyDone {
    fail::fail_point!("raftstore_before_apply_write");
    if let Err(e) = write(&job.wb, job.sync) {
        let msg = format!("applying committed entries to the KV engine failed: {e}");
        for (cb, _) in job.responses {
            let _ = cb.send(Err(Error::Engine(msg.clone())));
        }
        return Err(msg);
    }
    metrics::APPLY_DURATION.observe(job.started.elapsed().as_secs_f64());
    for (cb, res) in job.responses {
        let _ = cb.send(res);
    }
    for sent_at in job.answered_sent_at {
        metrics::PROPOSE_TO_APPLY_DURATION.observe(sent_at.elapsed().as_secs_f64());
    }
    Ok(job.regions)
}
