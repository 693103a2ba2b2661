//! Writes: stores, deletes, a tag's keys and a clear, each announced on the
//! backplane in the same pipeline.

use std::time::Duration;

use ::redis::RedisResult;
use ::redis::aio::ConnectionManager;

use super::stream::Change;
use super::{OWN, RedisTier};
use crate::tier::envelope;
use crate::tier::sqlite::Row;

/// How long a clear may walk and unlink this prefix's keys.
pub const CLEAR_LIMIT: Duration = Duration::from_secs(10);

/// Keys asked for per `SCAN` round of a clear.
const SCAN_COUNT: u32 = 1000;

impl RedisTier {
    /// Writes `rows` in one pipeline of `SET … PX`; a row past its
    /// stale-until time at `now` is left out. Whether the write went
    /// through (`false`: skipped or failed, counted and logged).
    pub(crate) fn put(&self, rows: &[Row], now: u64) -> bool {
        let mut pipe = ::redis::pipe();
        let mut any = false;
        let changes: Vec<Change> = rows.iter().map(|r| Change::Set(r.key.clone())).collect();
        for row in rows {
            let mut px = row.stale_until_ms.saturating_sub(now);
            if let Some(ttl) = self.ttl {
                px = px.min(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            }
            if px == 0 {
                // Nothing to store, but an older copy must not outlive it.
                pipe.cmd("DEL").arg(self.key(&row.key)).ignore();
                any = true;
                continue;
            }
            pipe.cmd("SET")
                .arg(self.key(&row.key))
                .arg(envelope::encode(row))
                .arg("PX")
                .arg(px)
                .ignore();
            any = true;
        }
        if !any {
            return true;
        }
        self.announce(&mut pipe, &changes);
        self.send(pipe, changes)
    }
    /// Removes `keys` (announced as deleted unless `quietly`: removals the
    /// other machines already heard of); whether the call went through.
    pub(crate) fn delete(&self, keys: &[&str], quietly: bool) -> bool {
        if keys.is_empty() {
            return true;
        }
        let mut pipe = ::redis::pipe();
        pipe.cmd("DEL")
            .arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>())
            .ignore();
        let changes: Vec<Change> = match quietly {
            true => Vec::new(),
            false => keys
                .iter()
                .map(|k| Change::Delete((*k).to_owned()))
                .collect(),
        };
        self.announce(&mut pipe, &changes);
        self.send(pipe, changes)
    }
    /// Removes the keys a tag invalidation removed here and announces the
    /// tag, so that the other machines remove theirs.
    pub(crate) fn invalidate_tag(&self, tag: &str, keys: &[&str]) -> bool {
        let mut pipe = ::redis::pipe();
        if !keys.is_empty() {
            pipe.cmd("DEL")
                .arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>())
                .ignore();
        }
        let changes = vec![Change::Tag(tag.to_owned())];
        self.announce(&mut pipe, &changes);
        if !self.backplane && keys.is_empty() {
            return true;
        }
        self.send(pipe, changes)
    }
    /// Unlinks every key of this cache (not its own keys: see the module
    /// docs), for at most [`CLEAR_LIMIT`], and announces the clear; how
    /// many, or `None` if the call was skipped or failed (keys already
    /// unlinked stay unlinked, and the clear is remembered as missed).
    pub(crate) fn clear(&self) -> Option<u64> {
        let (pattern, own) = self.scan_pattern();
        let removed = self.call(CLEAR_LIMIT, move |mut c| async move {
            unlink_matching(&mut c, &pattern, &own).await
        });
        let changes = vec![Change::Clear];
        match removed {
            Some(_) if self.backplane => {
                let mut pipe = ::redis::pipe();
                self.announce(&mut pipe, &changes);
                self.send(pipe, changes);
            }
            Some(_) => {}
            None => self.remember_missed(changes),
        }
        removed
    }
    /// [`RedisTier::clear`]'s unlinking, from async code.
    pub(super) async fn unlink_all_async(&self) -> Option<u64> {
        let (pattern, own) = self.scan_pattern();
        self.call_async(CLEAR_LIMIT, move |mut c| async move {
            unlink_matching(&mut c, &pattern, &own).await
        })
        .await
    }
    /// The `SCAN MATCH` pattern of this cache's keys, and the start of its
    /// own keys, which it leaves.
    fn scan_pattern(&self) -> (String, Vec<u8>) {
        (
            format!("{}*", glob_escape(&self.prefix)),
            format!("{}{OWN}", self.prefix).into_bytes(),
        )
    }
}

/// Unlinks the keys matching `pattern`, except those starting with `own`;
/// how many.
async fn unlink_matching(c: &mut ConnectionManager, pattern: &str, own: &[u8]) -> RedisResult<u64> {
    let mut cursor = 0u64;
    let mut removed = 0u64;
    loop {
        let (next, mut keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(c)
            .await?;
        keys.retain(|k| !k.starts_with(own));
        if !keys.is_empty() {
            removed += ::redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<u64>(c)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// `text` with the characters `SCAN MATCH` treats specially escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(glob_escape("tierstack:ns-1.a_b:"), "tierstack:ns-1.a_b:");
        assert_eq!(glob_escape(r"a*b?c[d]e\f^"), r"a\*b\?c\[d\]e\\f\^");
    }
}
