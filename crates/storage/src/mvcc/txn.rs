//! `MvccTxn`: the writes one transactional command makes, collected as `Modify`s for one Raft
//! proposal. Keys are encoded user keys (range-key space).

use engine_traits::{Modify, CF_DEFAULT, CF_LOCK, CF_WRITE};
use txn_types::{mvcc_key, Lock, TimeStamp, Write};

#[derive(Debug, Default)]
pub struct MvccTxn {
    pub modifies: Vec<Modify>,
}

impl MvccTxn {
    pub fn new() -> MvccTxn {
        MvccTxn::default()
    }

    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.modifies.push(Modify::Put {
            cf: CF_LOCK,
            key: key.to_vec(),
            value: lock.encode(),
        });
    }

    pub fn unlock_key(&mut self, key: &[u8]) {
        self.modifies.push(Modify::Delete {
            cf: CF_LOCK,
            key: key.to_vec(),
        });
    }

    pub fn put_value(&mut self, key: &[u8], start_ts: TimeStamp, value: Vec<u8>) {
        self.modifies.push(Modify::Put {
            cf: CF_DEFAULT,
            key: mvcc_key::append_ts(key, start_ts),
            value,
        });
    }

    pub fn delete_value(&mut self, key: &[u8], start_ts: TimeStamp) {
        self.modifies.push(Modify::Delete {
            cf: CF_DEFAULT,
            key: mvcc_key::append_ts(key, start_ts),
        });
    }

    pub fn put_write(&mut self, key: &[u8], commit_ts: TimeStamp, write: &Write) {
        self.modifies.push(Modify::Put {
            cf: CF_WRITE,
            key: mvcc_key::append_ts(key, commit_ts),
            value: write.encode(),
        });
    }

    pub fn delete_write(&mut self, key: &[u8], commit_ts: TimeStamp) {
        self.modifies.push(Modify::Delete {
            cf: CF_WRITE,
            key: mvcc_key::append_ts(key, commit_ts),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.modifies.is_empty()
    }

    pub fn into_modifies(self) -> Vec<Modify> {
        self.modifies
    }
}
