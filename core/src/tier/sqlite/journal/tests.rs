//! Tests of the journal: reading back, draining, order against
//! other processes' writes, replay of an ended process's journal, torn
//! records and wrapping around the ring.

use rusqlite::OptionalExtension;
use std::path::Path;
use std::sync::Arc;

use super::record::records;
use super::{Journal, Journaled};
use crate::config::OnCorrupt;
use crate::tier::sqlite::{Behind, Row, SqliteTier, Write, WriteId};

fn open(path: &Path) -> SqliteTier {
    SqliteTier::open(path, u64::MAX, OnCorrupt::Fail, Arc::default()).unwrap()
}

impl SqliteTier {
    /// A write-behind write through the journal: whether the drainer is
    /// to be woken.
    fn write_behind(
        &self,
        rows: Vec<(Row, Behind)>,
        appended: &mut dyn FnMut(),
    ) -> crate::Result<bool> {
        let rows = rows.into_iter().map(|(r, b)| (r, Some(b))).collect();
        Ok(match self.journal_write(rows, false, appended)? {
            Journaled::Appended { first } => first,
            Journaled::Committed(_) => true,
            Journaled::WouldWait => unreachable!("only with at_once"),
        })
    }
}

fn journaled(key: &str, value: &str, created_ms: u64) -> (Row, Behind) {
    let row = Row {
        created_ms,
        ..Row::fresh(key, value.to_owned())
    };
    let behind = Behind {
        idempotency: WriteId {
            nonce: key.len() as u64,
            n: created_ms,
        },
        now_ms: created_ms,
    };
    (row, behind)
}

/// The value the file holds under `key`, read by a tier of its own.
/// What the file holds under `key`, read with a plain connection (a
/// tier's read would wait for the journal).
fn in_file(path: &Path, key: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let value: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM entries WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .unwrap();
    value.map(|v| String::from_utf8(v).unwrap())
}

fn journals(path: &Path) -> Vec<String> {
    let dir = super::suffixed(path, "-wb");
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name != super::GENERATION)
                .collect()
        },
    )
}

#[test]
fn a_journaled_write_is_read_back_at_once_and_reaches_the_file_and_outbox_when_drained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    assert!(
        tier.write_behind(vec![journaled("k", "v1", 10)], &mut || {})
            .unwrap()
    );
    // Not yet in the file: another tier on it does not see it.
    assert_eq!(in_file(&path, "k"), None);
    assert!(tier.journal_pending());
    assert!(
        !tier
            .write_behind(vec![journaled("k", "v2", 11)], &mut || {})
            .unwrap()
    );
    // A read of this tier settles first: it reads its own writes.
    let found = tier.get("k", 0).unwrap().unwrap();
    assert_eq!(&found.value[..], b"v2");
    assert!(!tier.journal_pending());
    assert_eq!(in_file(&path, "k").as_deref(), Some("v2"));
    let pending = tier.outbox_pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].idempotency_key, "0000000000000001-11");
    assert_eq!(journals(&path).len(), 1);
    tier.close(0).unwrap();
    assert_eq!(journals(&path), Vec::<String>::new());
}

#[test]
fn a_journaled_write_older_than_the_files_does_not_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    tier.write_behind(
        vec![journaled("k", "older", 10), journaled("j", "mine", 10)],
        &mut || {},
    )
    .unwrap();
    // Another process writes `k` later than the journal's write, and
    // commits first (without waiting for the journal, as one does once the
    // busy timeout has passed: see `peers`).
    let other = open(&path);
    other
        .write_settled(vec![Write::Put(Row {
            created_ms: 20,
            ..Row::fresh("k", "newer")
        })])
        .unwrap();
    other.close(0).unwrap();
    tier.settle().unwrap();
    assert_eq!(in_file(&path, "k").as_deref(), Some("newer"));
    assert_eq!(in_file(&path, "j").as_deref(), Some("mine"));
    let queued: Vec<_> = tier
        .outbox_pending()
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(queued, ["j"]);
    tier.close(0).unwrap();
}

#[test]
fn the_journal_of_a_process_that_ended_is_replayed_by_the_next_to_open_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    tier.write_behind(
        vec![journaled("a", "1", 10), journaled("b", "2", 10)],
        &mut || {},
    )
    .unwrap();
    tier.write_behind(vec![journaled("a", "3", 11)], &mut || {})
        .unwrap();
    // As a process that ends without closing: the journal's lock goes,
    // its file stays.
    drop(tier);
    assert_eq!(journals(&path).len(), 1);
    let next = open(&path);
    assert_eq!(journals(&path), Vec::<String>::new());
    let value = |key| String::from_utf8(next.get(key, 0).unwrap().unwrap().value.to_vec());
    assert_eq!(value("a").unwrap(), "3");
    assert_eq!(value("b").unwrap(), "2");
    let keys: Vec<_> = next
        .outbox_pending()
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.idempotency_key))
        .collect();
    assert_eq!(
        keys,
        [
            ("b".into(), "0000000000000001-10".into()),
            ("a".into(), "0000000000000001-11".into())
        ]
    );
    next.close(0).unwrap();
}

#[test]
fn a_live_processs_journal_is_not_replayed_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    tier.write_behind(vec![journaled("k", "v", 10)], &mut || {})
        .unwrap();
    let other = open(&path);
    assert_eq!(other.replay_orphans().unwrap(), 0);
    // A read of the other waits for it: here, once it is drained.
    assert!(other.peers_pending());
    tier.settle().unwrap();
    assert!(!other.peers_pending());
    assert_eq!(&other.get("k", 0).unwrap().unwrap().value[..], b"v");
    other.close(0).unwrap();
    tier.close(0).unwrap();
    assert_eq!(in_file(&path, "k").as_deref(), Some("v"));
}

#[test]
fn a_torn_record_ends_the_replay_and_what_came_before_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        tier.write_behind(vec![journaled(key, key, 10 + i as u64)], &mut || {})
            .unwrap();
    }
    drop(tier);
    let file = super::suffixed(&path, "-wb").join(&journals(&path)[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(records(&bytes).len(), 3);
    // A byte of the second record's payload is lost: a power loss
    // before the journal reached the disk.
    let (row, behind) = journaled("a", "a", 10);
    let second = 64 + super::record_len(super::Payload::new(&row, Some(&behind)).len()) as usize;
    bytes[second + 20] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(records(&bytes).len(), 1);
    let next = open(&path);
    assert!(next.get("a", 0).unwrap().is_some());
    assert!(next.get("b", 0).unwrap().is_none());
    assert!(next.get("c", 0).unwrap().is_none());
    next.close(0).unwrap();
}

#[test]
fn records_that_wrap_around_the_ring_are_drained_and_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut tier = open(&path);
    // A ring of ~8 KB: 500-byte values wrap it every dozen writes.
    tier.journal = Journal::sized(&path, 64 + 8192);
    let value = |i: u64| format!("{i:0>500}");
    for i in 0..100u64 {
        tier.write_behind(
            vec![journaled(&format!("k{}", i % 7), &value(i), i)],
            &mut || {},
        )
        .unwrap();
    }
    tier.settle().unwrap();
    for i in 93..100u64 {
        assert_eq!(in_file(&path, &format!("k{}", i % 7)), Some(value(i)));
    }
    // Past a wrap, undrained, then replayed by the next opener.
    for i in 100..110u64 {
        tier.write_behind(
            vec![journaled(&format!("k{}", i % 7), &value(i), i)],
            &mut || {},
        )
        .unwrap();
    }
    drop(tier);
    let next = open(&path);
    for i in 103..110u64 {
        let found = next.get(&format!("k{}", i % 7), 0).unwrap().unwrap();
        assert_eq!(found.value, value(i).into_bytes());
    }
    next.close(0).unwrap();
}

#[test]
fn a_drain_that_fails_leaves_the_records_queued_in_order() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    tier.write_behind(
        vec![journaled("k", "1", 10), journaled("j", "1", 10)],
        &mut || {},
    )
    .unwrap();
    tier.write_behind(vec![journaled("k", "2", 11)], &mut || {})
        .unwrap();
    // The commit fails (as a closed tier's does).
    tier.closed.store(true, Ordering::Release);
    let err = tier.settle().unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Closed);
    assert!(tier.journal_pending());
    tier.closed.store(false, Ordering::Release);
    tier.write_behind(vec![journaled("j", "2", 12)], &mut || {})
        .unwrap();
    tier.settle().unwrap();
    assert_eq!(in_file(&path, "k").as_deref(), Some("2"));
    assert_eq!(in_file(&path, "j").as_deref(), Some("2"));
    let versions: Vec<_> = tier
        .outbox_pending()
        .unwrap()
        .into_iter()
        .map(|p| p.idempotency_key)
        .collect();
    assert_eq!(versions, ["0000000000000001-11", "0000000000000001-12"]);
    tier.close(0).unwrap();
}

#[test]
fn a_journal_being_made_is_left_alone_and_an_abandoned_one_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journals = super::suffixed(&path, "-wb");
    std::fs::create_dir_all(&journals).unwrap();
    // Created by another process a moment ago, not yet locked.
    let fresh = journals.join(".1-00000000000000aa.new");
    std::fs::write(&fresh, b"").unwrap();
    // Left by a process that died while making it.
    let abandoned = journals.join(".2-00000000000000bb.new");
    let file = std::fs::File::create(&abandoned).unwrap();
    let long_ago = std::time::SystemTime::now() - super::ABANDONED_AFTER * 2;
    file.set_modified(long_ago).unwrap();
    drop(file);
    let tier = open(&path);
    assert!(fresh.exists());
    assert!(!abandoned.exists());
    tier.close(0).unwrap();
}

#[test]
fn a_later_record_with_an_earlier_time_still_replaces_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    // Two threads' sets: the second took its time first but was appended
    // last, and so applied to L1 last.
    tier.write_behind(vec![journaled("k", "first", 20)], &mut || {})
        .unwrap();
    tier.write_behind(vec![journaled("k", "second", 10)], &mut || {})
        .unwrap();
    // A direct write that began at 30, then a record that began at 25.
    tier.write(vec![Write::Put(Row {
        created_ms: 30,
        ..Row::fresh("j", "direct")
    })])
    .unwrap();
    tier.write_behind(vec![journaled("j", "journaled", 25)], &mut || {})
        .unwrap();
    tier.settle().unwrap();
    assert_eq!(in_file(&path, "k").as_deref(), Some("second"));
    assert_eq!(in_file(&path, "j").as_deref(), Some("journaled"));
    tier.close(0).unwrap();
}

#[test]
fn the_spans_to_warm_run_from_tail_past_the_rings_end_and_are_warmed_once() {
    let dir = tempfile::tempdir().unwrap();
    let page = 4096u64;
    // A header page's worth of ring less the header, then 16 pages.
    let mut ring = super::ring::Ring::create(dir.path(), 17 * page, 0o600).unwrap();
    let base = ring.map.as_ptr() as usize;
    let at = |offset: u64| base + offset as usize;
    assert_eq!(ring.ring, 17 * page - 64);
    // 4 pages ahead of a tail in page 2 of the file: the header's page,
    // then pages 2 to 6 (the last one partly).
    ring.tail = 2 * page;
    let spans = ring.take_warm_spans(4 * page);
    assert_eq!(spans, vec![(base, 4096), (at(2 * page), 5 * 4096)]);
    assert_eq!(ring.warmed, 6 * page);
    // Warmed already: nothing, until `tail` moves.
    assert!(ring.take_warm_spans(4 * page).is_empty());
    ring.tail = 3 * page;
    assert_eq!(
        ring.take_warm_spans(4 * page),
        vec![(base, 4096), (at(6 * page), 2 * 4096)]
    );
    // Past the ring's end: its last pages, then its first.
    ring.tail = ring.ring * 3 - page;
    ring.warmed = ring.tail;
    assert_eq!(
        ring.take_warm_spans(4 * page),
        vec![(base, 4096), (at(16 * page), 4096), (at(0), 4 * 4096)]
    );
    // The whole ring at most, within the mapping.
    ring.tail += 1;
    ring.warmed = 0;
    assert_eq!(
        ring.take_warm_spans(u64::MAX),
        vec![(base, 4096), (at(16 * page), 4096), (at(0), 17 * 4096)]
    );
}

#[test]
fn a_drain_swaps_the_rings_queue_for_a_spare_so_each_keeps_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let tier = open(&path);
    let capacity = || {
        let ring = tier.journal.ring.lock();
        ring.as_ref().map_or(0, |r| r.queued.capacity())
    };
    let round = |from: u64| {
        for i in from..from + 100 {
            tier.write_behind(vec![journaled(&format!("k{i}"), "v", i)], &mut || {})
                .unwrap();
        }
        tier.drain_journal().unwrap();
    };
    round(0);
    // The ring's queue is the spare now (empty, never grown); the spare
    // holds the 100 records' queue, emptied.
    assert!(tier.journal.draining.lock().capacity() >= 100);
    round(100);
    // Swapped back: the ring's queue took the 100 records of this round
    // without growing, then became the spare; the ring has the other.
    assert!(capacity() >= 100 && tier.journal.draining.lock().capacity() >= 100);
    assert_eq!(in_file(&path, "k199").as_deref(), Some("v"));
    assert!(!tier.journal_pending());
}
