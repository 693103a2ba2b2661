//! One stored entry as one blob: the value with its metadata, for a store
//! that keeps a value as a single string (Redis; see `tier::redis`).
//!
//! L2 keeps the same fields as columns of a row ([`Row`]); this is that
//! row, minus its key, in one byte string:
//!
//! ```text
//! "TSE" 0x01                    magic and format version (4 bytes)
//! header length                 u32, big-endian
//! header                        JSON: {"created_ms", "expires_ms",
//!                               "stale_until_ms", "etag"?, "tags"?}
//! value                         the rest, the value's bytes as stored
//! ```
//!
//! Times are milliseconds since the Unix epoch, as in [`crate::Metadata`].
//! A blob without the magic, of another version or with a header that does
//! not parse is not an entry (reported as `None`): a later version adds a
//! version byte of its own rather than change this one.

#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::tier::sqlite::{Found, Row};

/// The magic and format version every blob starts with.
pub(crate) const MAGIC: [u8; 4] = *b"TSE\x01";

/// An entry read back from a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) stale_until_ms: u64,
    pub(crate) etag: Option<String>,
    pub(crate) tags: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    created_ms: u64,
    expires_ms: u64,
    stale_until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

/// The blob of `row`.
pub(crate) fn encode(row: &Row) -> Vec<u8> {
    let header = Header {
        created_ms: row.created_ms,
        expires_ms: row.expires_ms,
        stale_until_ms: row.stale_until_ms,
        etag: row.etag.clone(),
        tags: row.tags.clone(),
    };
    let header = serde_json::to_vec(&header).expect("a header always serialises");
    let mut out = Vec::with_capacity(8 + header.len() + row.value.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&row.value);
    out
}

/// The entry in `blob`; `None` if it is not one of this version's.
pub(crate) fn decode(blob: &[u8]) -> Option<Stored> {
    let rest = blob.strip_prefix(&MAGIC[..])?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (header, value) = rest.split_at(len);
    let header: Header = serde_json::from_slice(header).ok()?;
    Some(Stored {
        value: crate::value::copy(value),
        created_ms: header.created_ms,
        expires_ms: header.expires_ms,
        stale_until_ms: header.stale_until_ms,
        etag: header.etag,
        tags: header.tags,
    })
}

impl Stored {
    /// The L2 row that holds this entry under `key`.
    pub(crate) fn to_row(&self, key: &str) -> Row {
        Row {
            key: key.to_owned(),
            value: self.value.clone(),
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            stale_until_ms: self.stale_until_ms,
            tags: self.tags.clone(),
            etag: self.etag.clone(),
        }
    }

    /// The entry as a stale copy the load path may fall back on (held in
    /// no L2 row).
    pub(crate) fn into_found(self) -> Found {
        Found {
            value: self.value,
            created_ms: self.created_ms,
            first_ms: self.created_ms,
            expires_ms: self.expires_ms,
            stale_until_ms: self.stale_until_ms,
            etag: self.etag,
            row: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(etag: Option<&str>, tags: &[&str], value: &'static [u8]) -> Row {
        Row {
            key: "k".to_owned(),
            value: Bytes::from_static(value),
            created_ms: 1_000,
            expires_ms: 2_000,
            stale_until_ms: 3_000,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn round_trips_every_field() {
        for row in [
            row(Some("\"abc\""), &["a", "b"], b"{\"x\": 1}"),
            row(None, &[], b""),
            row(None, &[], b"TSE\x01\x00\x00"),
        ] {
            let stored = decode(&encode(&row)).unwrap();
            assert_eq!(stored.to_row("k"), row);
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let blob = encode(&row(None, &[], b"v"));
        let header = br#"{"created_ms":1000,"expires_ms":2000,"stale_until_ms":3000}"#;
        let mut expected = b"TSE\x01".to_vec();
        expected.extend_from_slice(&(header.len() as u32).to_be_bytes());
        expected.extend_from_slice(header);
        expected.push(b'v');
        assert_eq!(blob, expected);
    }

    #[test]
    fn foreign_or_damaged_blobs_are_not_entries() {
        let good = encode(&row(Some("e"), &["t"], b"value"));
        assert_eq!(decode(b"plain value"), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&good[..6]), None);
        assert_eq!(decode(&good[..12]), None);
        let mut other_version = good.clone();
        other_version[3] = 2;
        assert_eq!(decode(&other_version), None);
    }
}
