//! The backplane's stream as Redis holds it: entry ids, reads (`XREAD`),
//! what `XINFO STREAM` tells of gaps, and ids and epochs packed for the L2
//! file.

use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisResult, Value};

use super::{BLOCK, COUNT};

/// A stream entry id.
pub(super) type Id = (u64, u64);

/// What `XINFO STREAM` tells of where the stream stands.
pub(super) struct StreamInfo {
    pub(super) last_generated: Id,
    /// The first entry kept; `None` if none is.
    pub(super) first: Option<Id>,
    pub(super) max_deleted: Id,
    /// Whether any entry was ever trimmed or deleted (entries added
    /// exceed the length; Redis 7 reports both, and before it this is
    /// taken to be so).
    pub(super) removed_any: bool,
}

impl StreamInfo {
    /// Whether some change after `last` may be gone: deleted, trimmed
    /// (entries after `last` were added, and the first kept is later than
    /// `last`, or none is kept), or the stream is not the one `last` was
    /// read from (its last id is earlier). A stream trimmed to exactly the
    /// entry after `last` counts as a gap too: there is no telling.
    pub(super) fn missing_after(&self, last: Id) -> bool {
        self.max_deleted > last
            || self.last_generated < last
            || (self.removed_any
                && self.last_generated > last
                && self.first.is_none_or(|first| first > last))
    }
}

pub(super) async fn stream_info(
    connection: &mut MultiplexedConnection,
    stream: &str,
) -> RedisResult<StreamInfo> {
    let info: RedisResult<Vec<Value>> = ::redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(connection)
        .await;
    let info = match info {
        Ok(info) => info,
        // No stream yet (or any more): nothing was added, nothing trimmed.
        Err(err) if err.to_string().contains("no such key") => {
            return Ok(StreamInfo {
                last_generated: (0, 0),
                first: None,
                max_deleted: (0, 0),
                removed_any: false,
            });
        }
        Err(err) => return Err(err),
    };
    let field = |name: &str| {
        info.chunks(2)
            .find(|pair| pair.len() == 2 && k_is(&pair[0], name))
            .and_then(|pair| id_of(&pair[1]))
    };
    let first = info
        .chunks(2)
        .find(|pair| pair.len() == 2 && k_is(&pair[0], "first-entry"))
        .and_then(|pair| match &pair[1] {
            Value::Array(entry) => entry.first().and_then(id_of),
            _ => None,
        });
    let number = |name: &str| {
        info.chunks(2)
            .find(|pair| pair.len() == 2 && k_is(&pair[0], name))
            .and_then(|pair| match pair[1] {
                Value::Int(n) => Some(n),
                _ => None,
            })
    };
    let removed_any = match (number("entries-added"), number("length")) {
        (Some(added), Some(length)) => added > length,
        _ => true,
    };
    Ok(StreamInfo {
        last_generated: field("last-generated-id").unwrap_or((0, 0)),
        first,
        removed_any,
        // Redis 7 reports deletions (`XDEL`) here; trims show in `first`.
        max_deleted: field("max-deleted-entry-id").unwrap_or((0, 0)),
    })
}

pub(super) fn k_is(value: &Value, name: &str) -> bool {
    match value {
        Value::BulkString(k) => k == name.as_bytes(),
        Value::SimpleString(k) => k == name,
        _ => false,
    }
}

pub(super) fn id_of(value: &Value) -> Option<Id> {
    match value {
        Value::BulkString(b) => parse_id(std::str::from_utf8(b).ok()?),
        Value::SimpleString(s) => parse_id(s),
        _ => None,
    }
}

pub(super) fn parse_id(id: &str) -> Option<Id> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One stream entry: its id and its fields.
pub(super) type Entry = (String, Vec<Vec<u8>>);

pub(super) async fn xread(
    connection: &mut MultiplexedConnection,
    stream: &str,
    last: Id,
) -> RedisResult<Vec<Entry>> {
    let read: Option<Vec<(String, Vec<Entry>)>> = ::redis::cmd("XREAD")
        .arg("COUNT")
        .arg(COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream)
        .arg(format!("{}-{}", last.0, last.1))
        .query_async(connection)
        .await?;
    Ok(read
        .into_iter()
        .flatten()
        .flat_map(|(_, entries)| entries)
        .collect())
}

/// A stream id as one number: the milliseconds, then 16 bits of sequence
/// (a larger sequence is recorded as the largest: an earlier place, from
/// which a few changes are read again).
pub(super) fn pack((ms, seq): Id) -> i64 {
    ((ms << 16) | seq.min(0xffff)) as i64
}

pub(super) fn unpack(packed: i64) -> Id {
    let packed = packed as u64;
    (packed >> 16, packed & 0xffff)
}

/// The stream's epoch as a number, for the L2 file.
pub(super) fn epoch_id(epoch: &str) -> i64 {
    match u64::from_str_radix(epoch, 16) {
        Ok(n) => n as i64,
        Err(_) => {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut hasher = DefaultHasher::new();
            epoch.hash(&mut hasher);
            hasher.finish() as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse() {
        assert_eq!(parse_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_id("0-0"), Some((0, 0)));
        assert_eq!(parse_id("12"), None);
        assert_eq!(parse_id("a-1"), None);
    }

    #[test]
    fn a_gap_after_the_last_read_is_seen() {
        let info = |last_generated, first, max_deleted| StreamInfo {
            last_generated,
            first,
            max_deleted,
            removed_any: true,
        };
        // Nothing new; new entries all kept; the last read entry trimmed
        // but nothing after it.
        assert!(!info((5, 0), Some((1, 0)), (0, 0)).missing_after((5, 0)));
        assert!(!info((9, 0), Some((1, 0)), (0, 0)).missing_after((5, 0)));
        assert!(!info((5, 0), Some((5, 0)), (0, 0)).missing_after((5, 0)));
        assert!(!info((5, 0), None, (0, 0)).missing_after((5, 0)));
        // Trimmed past it; everything trimmed; an entry after it deleted;
        // a new stream.
        assert!(info((9, 0), Some((7, 0)), (0, 0)).missing_after((5, 0)));
        assert!(info((9, 0), None, (0, 0)).missing_after((5, 0)));
        assert!(info((9, 0), Some((1, 0)), (6, 0)).missing_after((5, 0)));
        assert!(info((2, 0), Some((1, 0)), (0, 0)).missing_after((5, 0)));
        // Nothing was ever removed: entries after it are all there.
        let untouched = StreamInfo {
            removed_any: false,
            ..info((9, 0), Some((7, 0)), (0, 0))
        };
        assert!(!untouched.missing_after((5, 0)));
    }

    #[test]
    fn ids_pack_in_order() {
        assert_eq!(unpack(pack((1_796_230_147_736, 3))), (1_796_230_147_736, 3));
        assert!(pack((10, 0)) < pack((10, 1)));
        assert!(pack((10, 70_000)) < pack((11, 0)));
        // A sequence past 16 bits is recorded earlier: read again, not skipped.
        assert_eq!(unpack(pack((10, 70_000))), (10, 0xffff));
    }
}
