//! The snapshot worker: generates and applies region snapshots off the store loop, and reports
//! back to it through the router.
//!
//! Applying is atomic per region as seen by a restart: the store loop first persists the
//! region in state `Applying` (with the snapshot's position as the apply state), then this
//! worker clears the region's range, writes the file's keys, and finally persists `Normal`.
//! A crash anywhere in between leaves `Applying`, and the restart redoes the whole apply from
//! the received file, which is removed only after `Normal` is durable.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use atoll_proto::metapb;
use crossbeam_channel::{Receiver, Sender};
use engine_traits::{KvEngine, WriteBatch};
use txn_types::keys::{data_end_key, data_key};

use crate::peer_storage::{write_region_state, RegionState};
use crate::router::{Msg, Router};
use crate::snap::{load_file, SnapKey, SnapManager, SNAP_CFS};
use crate::{Error, Result};

/// Keys are written in batches of about this many bytes.
const APPLY_BATCH_BYTES: usize = 4 << 20;

/// Lets the store loop stop an apply (the peer was destroyed meanwhile). The worker writes each
/// batch while holding the lock and only if not cancelled, so once [`ApplyCancel::cancel`]
/// returns, the worker writes nothing more for that apply.
#[derive(Clone, Default)]
pub(crate) struct ApplyCancel(Arc<Mutex<bool>>);

impl ApplyCancel {
    pub fn cancel(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Runs `write` unless cancelled.
    fn write_unless_cancelled(&self, write: impl FnOnce() -> Result<()>) -> Result<()> {
        let cancelled = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *cancelled {
            return Err(Error::Engine(
                "snapshot apply cancelled: the peer was destroyed".into(),
            ));
        }
        write()
    }
}

pub(crate) enum SnapTask<S> {
    /// Write `region`'s data as of `snap` (taken at `key.index`) to a file.
    Generate {
        key: SnapKey,
        snap: S,
        region: metapb::Region,
    },
    /// Replace the data of `old` and `region`'s ranges with the received file of `key`.
    Apply {
        key: SnapKey,
        region: metapb::Region,
        old: Option<metapb::Region>,
        cancel: ApplyCancel,
    },
}

/// The worker's task queue and thread.
pub(crate) type Worker<S> = (Sender<SnapTask<S>>, JoinHandle<()>);

pub(crate) fn spawn<EK: KvEngine>(
    kv: EK,
    mgr: SnapManager,
    router: Router<EK::Snap>,
) -> Result<Worker<EK::Snap>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = std::thread::Builder::new()
        .name("snap-worker".into())
        .spawn(move || run(kv, mgr, router, rx))
        .map_err(|e| Error::Engine(e.to_string()))?;
    Ok((tx, handle))
}

fn run<EK: KvEngine>(kv: EK, mgr: SnapManager, router: Router<EK::Snap>, rx: Receiver<SnapTask<EK::Snap>>) {
    while let Ok(task) = rx.recv() {
        let msg = match task {
            SnapTask::Generate { key, snap, region } => {
                let t = std::time::Instant::now();
                let result = mgr.generate(&key, &snap, &region);
                match &result {
                    Ok(meta) => tracing::info!(
                        region_id = key.region_id,
                        index = key.index,
                        keys = meta.keys,
                        bytes = meta.size,
                        took = ?t.elapsed(),
                        "snapshot generated"
                    ),
                    Err(e) => {
                        tracing::error!(region_id = key.region_id, error = %e, "snapshot generation failed")
                    }
                }
                Msg::SnapGenerated {
                    region_id: key.region_id,
                    key,
                    result,
                }
            }
            SnapTask::Apply {
                key,
                region,
                old,
                cancel,
            } => {
                let t = std::time::Instant::now();
                let result = apply(&kv, &mgr, &key, &region, old.as_ref(), &cancel);
                match &result {
                    Ok(keys) => tracing::info!(
                        region_id = key.region_id,
                        index = key.index,
                        keys,
                        took = ?t.elapsed(),
                        "snapshot applied"
                    ),
                    Err(e) => tracing::error!(region_id = key.region_id, error = %e, "snapshot apply failed"),
                }
                Msg::SnapApplied {
                    region_id: key.region_id,
                    key,
                    result: result.map(|_| ()),
                }
            }
        };
        if router.send(msg).is_err() {
            return;
        }
    }
}

fn clear_range(wb: &mut WriteBatch, region: &metapb::Region) {
    for cf in SNAP_CFS {
        wb.delete_range_cf(cf, data_key(&region.start_key), data_end_key(&region.end_key));
    }
}

fn apply<EK: KvEngine>(
    kv: &EK,
    mgr: &SnapManager,
    key: &SnapKey,
    region: &metapb::Region,
    old: Option<&metapb::Region>,
    cancel: &ApplyCancel,
) -> Result<u64> {
    let path = mgr.recv_path(key);
    if !path.exists() {
        return Err(Error::Engine(format!(
            "snapshot file {} is missing",
            path.display()
        )));
    }
    fail::fail_point!("snap_before_apply", |_| Err(Error::Engine("failpoint".into())));
    let mut wb = WriteBatch::new();
    if let Some(old) = old.filter(|o| !o.peers.is_empty()) {
        clear_range(&mut wb, old);
    }
    clear_range(&mut wb, region);
    cancel.write_unless_cancelled(|| kv.write(&wb, false).map_err(Error::from))?;
    let mut first = true;
    let keys = load_file(&path, APPLY_BATCH_BYTES, |wb| {
        if !first {
            fail::fail_point!("snap_apply_between_batches", |_| Err(Error::Engine(
                "failpoint".into()
            )));
        }
        first = false;
        cancel.write_unless_cancelled(|| kv.write(&wb, false).map_err(Error::from))
    })?;
    let mut wb = WriteBatch::new();
    write_region_state(&mut wb, region, RegionState::Normal);
    cancel.write_unless_cancelled(|| kv.write(&wb, true).map_err(Error::from))?;
    let _ = std::fs::remove_file(&path);
    Ok(keys)
}
