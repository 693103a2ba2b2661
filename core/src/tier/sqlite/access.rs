//! Reads this tier served and holds until a maintenance pass writes them:
//! a log of its own reads, folded in batches into a count and latest time
//! per row, where the reads served above it (L1's) are added directly.

use std::collections::HashMap;

/// Rows with reads held in memory (a count and the latest time per row)
/// before a maintenance pass is asked for; past [`ACCESS_CAP`] rows, reads
/// of further rows are not recorded until the next pass. A pass commits,
/// and every commit makes every reader of the file, in every process,
/// drop its page cache and memory map and fault the pages in again. At
/// 16,384 rows, two threads reading a Zipf trace over 100,000 rows (the
/// bench's hybrid scenario) asked for a pass several times a second, and
/// their file was unmapped three times as often as with the one-second
/// tick alone. The map holds some 28 bytes a row (3.5 MiB at this many
/// rows, twice that at the cap).
const ACCESS_FLUSH_AT: usize = 131_072;
const ACCESS_CAP: usize = 262_144;

/// This tier's own reads logged (row, time) before they are folded into
/// the count per row: a read appends 16 bytes to a buffer where an update
/// of the map would look its row up (a cache miss per read, with the
/// SQLite work between two reads evicting the map's lines), and the fold
/// looks up a batch at once. 64 KiB.
pub(super) const ACCESS_LOG: usize = 4096;

/// Reads waiting to be written: per row, the latest time and how many.
#[derive(Default)]
pub(super) struct Access {
    /// Reads counted per row id; see [`Access::by_id`].
    by_id: HashMap<i64, (u64, i64)>,
    /// This tier's own reads not yet in `by_id`, in order (see [`ACCESS_LOG`]).
    log: Vec<(i64, u64)>,
}

impl Access {
    /// Every read held, per row id: the latest time and how many. Folds
    /// the log in first, so that it is exact.
    pub(super) fn by_id(&mut self) -> &mut HashMap<i64, (u64, i64)> {
        if !self.log.is_empty() {
            self.fold();
        }
        &mut self.by_id
    }

    /// Rows in `by_id` (the log's reads not counted).
    fn rows(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no read is held.
    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.log.is_empty()
    }

    /// Logs a read of each of rows `ids` at `now_ms`; folds the log when
    /// it is full. Returns whether a maintenance pass should be asked for
    /// (the rows held just reached [`ACCESS_FLUSH_AT`]).
    pub(super) fn record(&mut self, ids: &[i64], now_ms: u64) -> bool {
        self.log.extend(ids.iter().map(|&id| (id, now_ms)));
        if self.log.len() < ACCESS_LOG {
            return false;
        }
        let before = self.rows();
        self.fold();
        before < ACCESS_FLUSH_AT && self.rows() >= ACCESS_FLUSH_AT
    }

    /// Adds `n` reads of row `id`, the latest at `at_ms`.
    pub(super) fn add(&mut self, id: i64, at_ms: u64, n: i64) {
        let (last, count) = self.by_id.entry(id).or_insert((at_ms, 0));
        *last = (*last).max(at_ms);
        *count += n;
    }

    /// Moves the log's reads into `by_id`; past [`ACCESS_CAP`] rows, those
    /// of rows not held yet are dropped.
    #[inline(never)]
    fn fold(&mut self) {
        let mut log = std::mem::take(&mut self.log);
        for &(id, at_ms) in &log {
            if self.by_id.len() < ACCESS_CAP || self.by_id.contains_key(&id) {
                self.add(id, at_ms, 1);
            }
        }
        log.clear();
        self.log = log;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::ACCESS_LOG;
    use crate::config::OnCorrupt;
    use crate::tier::sqlite::{Row, SqliteTier, Write};

    #[test]
    fn reads_past_the_log_are_folded_and_each_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let tier = SqliteTier::open(&path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap();
        let row = |i: usize| Row::fresh(format!("k{i:05}"), vec![b'v'; 100]);
        tier.write((0..3).map(|i| Write::Put(row(i))).collect())
            .unwrap();
        // Twice what the log holds, and some left in it, at rising times.
        let reads = ACCESS_LOG * 2 + 5;
        for i in 0..reads {
            assert!(
                tier.get(&format!("k{:05}", i % 3), 10 + i as u64)
                    .unwrap()
                    .is_some()
            );
        }
        let expected = |r: usize| {
            let of_r = (0..reads).filter(|i| i % 3 == r);
            (of_r.clone().count() as u64, 10 + of_r.max().unwrap() as u64)
        };
        let counted = |tier: &SqliteTier, r: usize| {
            let (entry, _) = tier.entry(&format!("k{r:05}")).unwrap().unwrap();
            (entry.meta.access_count, entry.meta.last_access_ms)
        };
        for r in 0..3 {
            assert_eq!(counted(&tier, r), expected(r), "row {r}, held in memory");
        }
        assert_eq!(tier.maintain(reads as u64 + 10, true).unwrap().touched, 3);
        for r in 0..3 {
            assert_eq!(counted(&tier, r), expected(r), "row {r}, written");
        }
        tier.close(reads as u64 + 11).unwrap();
    }
}
