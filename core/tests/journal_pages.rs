//! Once it has drained, the drainer maps the journal's next pages for
//! writing (the outbox's worker with write-behind, the maintenance task
//! otherwise), so that the `set`s that write them take no page fault. Read
//! from this process's page table: `/proc/self/maps` and
//! `/proc/self/pagemap`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use tierstack::source::{self, Fetched};
use tierstack::tier::JOURNAL_BYTES;
use tierstack::{Cache, Strategy};

const PAGE: usize = 4096;

/// The address range of this process's mapping of its journal of `db`.
fn journal_mapping(db: &Path) -> (usize, usize) {
    let dir = format!("{}-wb/", db.display());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.contains(&dir))
        .unwrap_or_else(|| panic!("no mapping of a journal in {dir}"));
    let range = line.split(' ').next().unwrap();
    let (start, end) = range.split_once('-').unwrap();
    let parse = |s| usize::from_str_radix(s, 16).unwrap();
    (parse(start), parse(end))
}

/// How many of the pages from `start`, `count` of them, are in this
/// process's page table.
fn present_pages(start: usize, count: usize) -> usize {
    let mut pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
    pagemap
        .seek(SeekFrom::Start((start / PAGE * 8) as u64))
        .unwrap();
    let mut entries = vec![0u8; count * 8];
    pagemap.read_exact(&mut entries).unwrap();
    entries
        .chunks(8)
        .filter(|e| u64::from_le_bytes((*e).try_into().unwrap()) >> 63 == 1)
        .count()
}

/// Pages in the first half of a journal, where its first records go.
const HALF: usize = JOURNAL_BYTES as usize / 2 / PAGE;

/// How many pages of the first half of `db`'s journal are in the page
/// table, polled for up to 10 s until all of them are.
fn first_half_present(db: &Path) -> usize {
    let (start, end) = journal_mapping(db);
    assert_eq!(end - start, JOURNAL_BYTES as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let present = present_pages(start, HALF);
        if present == HALF || Instant::now() > deadline {
            return present;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_outbox_worker_maps_the_journals_next_pages_after_its_drain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound))
        .with_writes(|_, _, _| Ok(()), |_, _| Ok(()));
    let cache = Cache::builder()
        .sqlite_path(&db)
        .source(source)
        .strategy(Strategy::WriteBehind)
        .build_blocking()
        .unwrap();
    cache.set("k", "v").unwrap();
    cache.flush().unwrap();
    assert_eq!(first_half_present(&db), HALF);
    cache.close().unwrap();
}

#[test]
fn the_maintenance_task_maps_the_journals_next_pages_after_its_drain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let cache = Cache::builder().sqlite_path(&db).build_blocking().unwrap();
    cache.set("k", "v").unwrap();
    assert_eq!(first_half_present(&db), HALF);
    assert_eq!(cache.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    cache.close().unwrap();
}
