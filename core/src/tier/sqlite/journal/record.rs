//! The journal's record format: a record's payload (times, the write's
//! idempotency key, key, tags and value), written straight into the ring,
//! its length in the ring, and the records read back from a journal's
//! bytes, checked against their CRC-32. A write with no outbox row has the
//! idempotency key `0-0` (no outbox nonce is 0).

use super::{HEAD_AT, HEADER, MAGIC, Queued, TAIL_AT, WRAP};
use crate::tier::sqlite::outbox::{Behind, WriteId};
use crate::tier::sqlite::row::Row;

/// A record's length in the ring: its 8-byte header and its payload,
/// rounded up to 8 bytes.
pub(super) fn record_len(payload: usize) -> u64 {
    8 + (payload as u64).next_multiple_of(8)
}

/// Bytes of a payload before its key: three times and the write's id
/// (`u64` each), and the lengths of the key, tags and value (`u32` each).
const FIXED: usize = 5 * 8 + 3 * 4;

/// A record's payload, written straight into the ring.
pub(super) struct Payload<'a> {
    row: &'a Row,
    idempotency: Option<WriteId>,
    tags: String,
}

impl<'a> Payload<'a> {
    pub(super) fn new(row: &'a Row, behind: Option<&'a Behind>) -> Self {
        let tags = match row.tags.is_empty() {
            true => String::new(),
            false => serde_json::to_string(&row.tags).expect("strings serialise"),
        };
        Self {
            row,
            idempotency: behind.map(|b| b.idempotency),
            tags,
        }
    }

    pub(super) fn len(&self) -> usize {
        FIXED + self.row.key.len() + self.tags.len() + self.row.value.len()
    }

    /// Writes the payload into `out`, which is [`Payload::len`] long.
    pub(super) fn write(&self, out: &mut [u8]) {
        let key = self.row.key.as_bytes();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.row.created_ms.to_le_bytes());
        put(&self.row.expires_ms.to_le_bytes());
        put(&self.row.stale_until_ms.to_le_bytes());
        let id = self.idempotency.unwrap_or(NO_OUTBOX);
        put(&id.nonce.to_le_bytes());
        put(&id.n.to_le_bytes());
        put(&(key.len() as u32).to_le_bytes());
        put(&(self.tags.len() as u32).to_le_bytes());
        put(&(self.row.value.len() as u32).to_le_bytes());
        put(key);
        put(self.tags.as_bytes());
        put(&self.row.value);
    }
}

/// The idempotency key of a record with no outbox row.
const NO_OUTBOX: WriteId = WriteId { nonce: 0, n: 0 };

fn decode(payload: &[u8]) -> Option<(Row, Option<Behind>)> {
    let u64_at = |at: usize| {
        Some(u64::from_le_bytes(
            payload.get(at..at + 8)?.try_into().ok()?,
        ))
    };
    let u32_at = |at: usize| {
        Some(u32::from_le_bytes(
            payload.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let (created_ms, expires_ms, stale_until_ms) = (u64_at(0)?, u64_at(8)?, u64_at(16)?);
    let idempotency = WriteId {
        nonce: u64_at(24)?,
        n: u64_at(32)?,
    };
    let (key_len, tags_len) = (u32_at(40)? as usize, u32_at(44)? as usize);
    let value_len = u32_at(48)? as usize;
    let mut rest = payload.get(FIXED..)?;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let key = String::from_utf8(take(key_len)?.to_vec()).ok()?;
    let tags = match take(tags_len)? {
        [] => Vec::new(),
        json => serde_json::from_slice(json).ok()?,
    };
    let value = crate::value::copy(take(value_len)?);
    Some((
        Row {
            key,
            value,
            created_ms,
            expires_ms,
            stale_until_ms,
            tags,
            etag: None,
        },
        (idempotency != NO_OUTBOX).then_some(Behind {
            idempotency,
            now_ms: created_ms,
        }),
    ))
}

/// The records of a journal's bytes from its `head` to its `tail`, in
/// order, stopping at the first that is torn.
pub(super) fn records(bytes: &[u8]) -> Vec<Queued> {
    let position = |at: usize| {
        bytes
            .get(at..at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if bytes.get(..8) != Some(MAGIC) || (bytes.len() as u64) < 2 * HEADER {
        return Vec::new();
    }
    between(bytes, position(HEAD_AT), position(TAIL_AT))
}

/// The records of a journal's bytes from position `at` to `to`, in order,
/// stopping at the first that is torn.
pub(super) fn between(bytes: &[u8], mut at: u64, to: u64) -> Vec<Queued> {
    let ring = bytes.len() as u64 - HEADER;
    let mut found = Vec::new();
    while at < to {
        let offset = (HEADER + at % ring) as usize;
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let (Some(len), Some(crc)) = (word(offset), word(offset + 4)) else {
            break;
        };
        if len == WRAP {
            at += ring - at % ring;
            continue;
        }
        let payload = bytes.get(offset + 8..offset + 8 + len as usize);
        let Some((row, behind)) = payload
            .filter(|p| crc32fast::hash(p) == crc)
            .and_then(decode)
        else {
            break;
        };
        at += record_len(len as usize);
        found.push(Queued {
            row,
            behind,
            end: at,
            order: 0,
        });
    }
    found
}
