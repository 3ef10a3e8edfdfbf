//! An engine-agnostic batch of writes, applied atomically by [`crate::KvEngine::write`].

/// Ordered operations applied atomically; later operations win over earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Modify>,
    data_size: usize,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn put_cf(&mut self, cf: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.data_size += key.len() + value.len();
        self.ops.push(Modify::Put { cf, key, value });
    }

    pub fn delete_cf(&mut self, cf: &'static str, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.data_size += key.len();
        self.ops.push(Modify::Delete { cf, key });
    }

    pub fn delete_range_cf(&mut self, cf: &'static str, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        let (start, end) = (start.into(), end.into());
        self.data_size += start.len() + end.len();
        self.ops.push(Modify::DeleteRange { cf, start, end });
    }

    /// Appends every operation of `other`.
    pub fn extend(&mut self, other: WriteBatch) {
        self.data_size += other.data_size;
        self.ops.extend(other.ops);
    }

    pub fn ops(&self) -> &[Modify] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Bytes of keys and values carried.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    pub fn clear(&mut self) {
        self.ops.clear();
        self.data_size = 0;
    }
}

/// One change to a KV engine. In a [`WriteBatch`] keys are engine keys; in a Raft command
/// (`raftstore::RaftCmd`) they are range keys, and a range is clamped to the region (an empty
/// `end` meaning the region's end) when applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modify {
    Put {
        cf: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: &'static str,
        key: Vec<u8>,
    },
    /// Deletes `[start, end)` clamped to the region; an empty `end` means the region's end.
    DeleteRange {
        cf: &'static str,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

impl Modify {
    /// The keys this change touches (the start key for a range).
    pub fn key(&self) -> &[u8] {
        match self {
            Modify::Put { key, .. } | Modify::Delete { key, .. } => key,
            Modify::DeleteRange { start, .. } => start,
        }
    }

    pub fn size(&self) -> usize {
        match self {
            Modify::Put { key, value, .. } => key.len() + value.len(),
            Modify::Delete { key, .. } => key.len(),
            Modify::DeleteRange { start, end, .. } => start.len() + end.len(),
        }
    }
}
