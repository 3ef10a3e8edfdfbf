//! The log writer: persists Raft log batches off the store loop, so that the loop keeps
//! stepping messages and taking proposals while a batch is fsynced (raft-rs
//! `advance_append_async`, then `on_persist_ready` once written).
//!
//! Batches are written in the order submitted; batches that queue up while one is being
//! written are merged into one write and one fsync (group commit across loop iterations). A
//! done batch goes back to the store loop with, per region, the number of the last Ready it
//! covered and the messages that may only be sent once it is durable (a follower's answers, a
//! vote).

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use engine_traits::{KvEngine, WriteBatch};

use crate::{metrics, Error, Result};

/// One loop iteration's Raft log changes.
pub(crate) struct LogJob {
    pub seq: u64,
    pub wb: WriteBatch,
    pub sync: bool,
    pub readies: Vec<PersistedReady>,
}

/// A region's Ready in a job, and what waits for it to be durable.
pub(crate) struct PersistedReady {
    pub region_id: u64,
    pub number: u64,
    pub messages: Vec<raft::eraftpb::Message>,
}

/// Jobs written, up to and including `seq`.
pub(crate) type LogDone = std::result::Result<(u64, Vec<PersistedReady>), String>;

pub(crate) struct LogWriter {
    tx: Option<Sender<LogJob>>,
    pub done_rx: Receiver<LogDone>,
    in_flight: usize,
    next_seq: u64,
    thread: Option<JoinHandle<()>>,
    /// Inline mode keeps the sending half, so `done_rx` never reads as disconnected.
    _inline_done_tx: Option<Sender<LogDone>>,
}

impl LogWriter {
    /// No thread: the store loop writes each batch itself (`store-io-pool-size = 0`).
    pub fn is_inline(&self) -> bool {
        self.tx.is_none() && self.thread.is_none()
    }
}

impl LogWriter {
    pub fn spawn<ER: KvEngine>(raft_engine: ER, store_id: u64, threads: usize) -> Result<LogWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<LogJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        if threads == 0 {
            return Ok(LogWriter {
                tx: None,
                done_rx,
                in_flight: 0,
                next_seq: 1,
                thread: None,
                _inline_done_tx: Some(done_tx),
            });
        }
        let thread = std::thread::Builder::new()
            .name(format!("raft-log-writer-{store_id}"))
            .spawn(move || run(raft_engine, rx, done_tx))
            .map_err(|e| Error::Engine(e.to_string()))?;
        Ok(LogWriter {
            tx: Some(tx),
            done_rx,
            in_flight: 0,
            next_seq: 1,
            thread: Some(thread),
            _inline_done_tx: None,
        })
    }

    /// The sequence number the next submitted job will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn submit(&mut self, wb: WriteBatch, sync: bool, readies: Vec<PersistedReady>) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::ShuttingDown)?;
        let seq = self.next_seq;
        tx.send(LogJob {
            seq,
            wb,
            sync,
            readies,
        })
        .map_err(|_| Error::Engine("the raft log writer stopped".into()))?;
        self.next_seq += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Counts `n` finished jobs received straight from `done_rx`.
    pub fn note_done(&mut self, jobs: usize) {
        self.in_flight = self.in_flight.saturating_sub(jobs);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Stops the thread after it wrote everything submitted.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<ER: KvEngine>(raft_engine: ER, rx: Receiver<LogJob>, done: Sender<LogDone>) {
    while let Ok(first) = rx.recv() {
        // Everything queued meanwhile goes into the same write and fsync.
        let mut job = first;
        let mut merged = 1usize;
        while let Ok(next) = rx.try_recv() {
            job.wb.extend(next.wb);
            job.sync |= next.sync;
            job.seq = next.seq;
            job.readies.extend(next.readies);
            merged += 1;
        }
        let t = Instant::now();
        if !job.wb.is_empty() {
            fail::fail_point!("raftstore_before_append_log");
            if let Err(e) = raft_engine.write(&job.wb, job.sync) {
                let _ = done.send(Err(format!("persisting the raft log failed: {e}")));
                return;
            }
            metrics::APPEND_LOG_DURATION.observe(t.elapsed().as_secs_f64());
            fail::fail_point!("raftstore_after_append_log");
        }
        metrics::LOG_JOBS_PER_WRITE.observe(merged as f64);
        // One answer per merged job keeps the store loop's in-flight count exact.
        let mut readies = Some(job.readies);
        for i in 0..merged {
            let r = if i + 1 == merged {
                readies.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            if done.send(Ok((job.seq, r))).is_err() {
                return;
            }
        }
    }
}
