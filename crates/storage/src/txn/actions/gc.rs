use engine_traits::Snapshot;
use txn_types::{TimeStamp, WriteType};

use crate::mvcc::{MvccReader, MvccTxn};
use crate::Result;

/// Removes the versions of `key` that no read at or after `safe_point` can see: every record
/// older than the newest data change at or before the safe point, that change itself if it is
/// a delete, and `Lock`/`Rollback` records at or before the safe point. Returns how many
/// versions were removed.
pub fn gc_key<S: Snapshot>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: &[u8],
    safe_point: TimeStamp,
) -> Result<usize> {
    let mut removed = 0;
    let mut kept_visible = false;
    for (commit_ts, write) in reader.all_versions(key)? {
        if commit_ts > safe_point {
            continue;
        }
        let remove = if kept_visible {
            true
        } else {
            match write.write_type {
                WriteType::Put => {
                    kept_visible = true;
                    false
                }
                WriteType::Delete => {
                    kept_visible = true;
                    true
                }
                WriteType::Lock | WriteType::Rollback => true,
            }
        };
        if remove {
            if write.write_type == WriteType::Put && write.short_value.is_none() {
                txn.delete_value(key, write.start_ts);
            }
            txn.delete_write(key, commit_ts);
            removed += 1;
        }
    }
    Ok(removed)
}
