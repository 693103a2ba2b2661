//! What callers hand the writer (see [`super::writer`]): rows, and the
//! writes of a batch.

use bytes::Bytes;

use super::outbox::Behind;

/// Bytes charged per row on top of its key and value: the row's integer
/// columns, its slots in the key and recency indexes, and page slack.
pub const ROW_OVERHEAD: u64 = 64;

/// A row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) stale_until_ms: u64,
    pub(crate) tags: Vec<String>,
    /// The source's validator (ETag), for conditional refreshes.
    pub(crate) etag: Option<String>,
}

impl Row {
    /// A row written at 1 ms that stays fresh, for the tier's unit tests.
    #[cfg(test)]
    pub(crate) fn fresh(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            created_ms: 1,
            expires_ms: u64::MAX / 2,
            stale_until_ms: u64::MAX / 2,
            tags: Vec::new(),
            etag: None,
        }
    }

    pub(crate) fn size(&self) -> u64 {
        row_size(&self.key, self.value.len())
    }
}

pub(crate) fn row_size(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64 + ROW_OVERHEAD
}

/// One write in a batch.
#[derive(Debug)]
pub(crate) enum Write {
    Put(Row),
    /// A copy of a value read from a tier shared with other hosts (Redis):
    /// stored unless the file holds a write of the key made since (created
    /// at or after it), which a process on the file made while the copy was
    /// read. Its outcome's `row` is `None` when it was not stored.
    Copy(Row),
    Delete(String),
    /// A put whose write the source gets through the outbox (write-behind).
    PutBehind(Row, Behind),
    /// A delete whose removal the source gets through the outbox.
    DeleteBehind(String, Behind),
    /// A put from a journal (see [`super::journal`]), with its outbox row
    /// for write-behind, its file-wide number (0: unknown) and whose
    /// journal it was: stored (with the outbox row), unless the file holds
    /// a later write of the key, which then stands. Later: numbered after
    /// it, or, where either number is unknown, created later. Its outcome's
    /// `row` is `None` when it was not stored.
    Replay(Row, Option<Behind>, u64, Replayed),
}

/// Whose journal a replayed write comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replayed {
    /// This cache's own: its L1 holds the write already.
    Own,
    /// That of a process that ended: a change of another process, which
    /// every cache's L1 follows, the replaying one's too (logged with no
    /// cache's origin; see [`crate::coherence`]).
    Ended,
}

impl Write {
    pub(super) fn key(&self) -> &str {
        match self {
            Write::Put(row)
            | Write::Copy(row)
            | Write::PutBehind(row, _)
            | Write::Replay(row, ..) => &row.key,
            Write::Delete(key) | Write::DeleteBehind(key, _) => key,
        }
    }

    pub(super) fn behind(&self) -> Option<&Behind> {
        match self {
            Write::PutBehind(_, behind) | Write::DeleteBehind(_, behind) => Some(behind),
            Write::Replay(_, behind, ..) => behind.as_ref(),
            Write::Put(_) | Write::Copy(_) | Write::Delete(_) => None,
        }
    }
}
