//! A tierstack file with damaged pages: with `sqlite.on_corrupt` =
//! `rebuild` (the default) it is set aside as `<name>.corrupt-<unix time>`,
//! byte for byte as it was, and every call works on a fresh file; with
//! `fail`, calls report `corrupt` and the file is left byte-identical. A file
//! whose header does not show a tierstack cache is never touched.
//!
//! The damage is real: whole pages of a closed file overwritten in place,
//! chosen with SQLite's `dbstat` table so that the test knows which calls
//! reach them: leaf pages in the middle of the entries (found by the first
//! call that scans the table), or the table's root page (found at open).

use std::path::{Path, PathBuf};

use tierstack::blocking::Cache;
use tierstack::{ErrorKind, OnCorrupt};

const ROWS: usize = 2000;

fn open(path: &Path, on_corrupt: OnCorrupt) -> tierstack::Result<Cache> {
    Cache::builder()
        .sqlite_path(path)
        .sqlite_on_corrupt(on_corrupt)
        .build_blocking()
}

fn key(i: usize) -> String {
    format!("k{i:05}")
}

/// A closed cache file of [`ROWS`] entries of 1.5 KB.
fn filled(path: &Path) {
    let cache = open(path, OnCorrupt::Fail).unwrap();
    let value = "v".repeat(1500);
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(500) {
        cache
            .mset(chunk.iter().map(|&i| (key(i), value.clone())))
            .unwrap();
    }
    cache.close().unwrap();
}

/// Which pages to damage.
enum Damage {
    /// Leaf pages of the entries table in the middle of its key order.
    MiddleLeaves,
    /// The root page of the entries table.
    Root,
}

/// Overwrites the chosen pages of the closed file at `path` with a
/// pattern; the damaged file's bytes.
fn damage(path: &Path, which: Damage) -> Vec<u8> {
    let (page_size, pages) = {
        let conn = rusqlite::Connection::open(path).unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let pages: Vec<i64> = match which {
            Damage::Root => vec![
                conn.query_row(
                    "SELECT rootpage FROM sqlite_schema WHERE name = 'entries'",
                    [],
                    |r| r.get(0),
                )
                .unwrap(),
            ],
            Damage::MiddleLeaves => {
                let mut stmt = conn
                    .prepare(
                        "SELECT pageno FROM dbstat WHERE name = 'entries' \
                         AND pagetype = 'leaf' ORDER BY path",
                    )
                    .unwrap();
                let leaves: Vec<i64> = stmt
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert!(leaves.len() > 100, "{} leaves", leaves.len());
                leaves[leaves.len() * 2 / 5..leaves.len() * 3 / 5].to_vec()
            }
        };
        (page_size, pages)
    };
    let mut bytes = std::fs::read(path).unwrap();
    for page in pages {
        let start = ((page - 1) * page_size) as usize;
        bytes[start..start + page_size as usize].fill(0xA5);
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// The files in `dir` named `cache.db.corrupt-<digits>`.
fn set_aside_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.strip_prefix("cache.db.corrupt-")
                .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

/// Everything works on the fresh file that replaced a damaged one.
fn works(cache: &Cache) {
    cache.set("new", "1").unwrap();
    assert_eq!(cache.get("new").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(cache.keys("*").unwrap(), ["new"]);
    assert_eq!(cache.len().unwrap(), 1);
    assert!(cache.delete("new").unwrap());
    cache.set("other", "2").unwrap();
    cache.clear().unwrap();
    assert_eq!(cache.len().unwrap(), 0);
    cache.run_pending_tasks().unwrap();
}

#[test]
fn damage_found_by_a_call_is_set_aside_and_the_call_runs_on_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    let damaged = damage(&path, Damage::MiddleLeaves);

    let cache = open(&path, OnCorrupt::Rebuild).unwrap();
    // Opening reads only the first and last pages: the damage is not seen.
    assert_eq!(cache.stats().sqlite_rebuilds, 0);
    assert_eq!(cache.get(&key(0)).unwrap().unwrap().len(), 1500);
    // `keys` scans the table, reaches the damage, and runs again on a
    // fresh file; L1 no longer serves what the damaged file held.
    assert_eq!(cache.keys("*").unwrap(), Vec::<String>::new());
    assert_eq!(cache.stats().sqlite_rebuilds, 1);
    assert_eq!(cache.get(&key(0)).unwrap(), None);
    works(&cache);
    assert_eq!(cache.stats().sqlite_rebuilds, 1);

    let aside = set_aside_files(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), damaged);
    cache.close().unwrap();
    let integrity = tierstack::tier::check(&path).unwrap();
    assert!(integrity.is_ok(), "{integrity:?}");
}

#[test]
fn every_call_reaching_the_damage_rebuilds() {
    // Each call finds the damage first, in a file of its own; it then runs
    // on the fresh file (the set stores its value there: its drain of the
    // journal, here run by `run_pending_tasks`, is what reaches the file).
    type Call = fn(&Cache) -> tierstack::Result<()>;
    let calls: [(&str, Call, u64); 5] = [
        ("len", |c| c.len().map(drop), 0),
        ("clear", Cache::clear, 0),
        ("invalidate_tag", |c| c.invalidate_tag("t").map(drop), 0),
        (
            "set",
            |c| c.set(key(ROWS / 2), "x").and(c.run_pending_tasks()),
            1,
        ),
        ("delete", |c| c.delete(&key(ROWS / 2)).map(drop), 0),
    ];
    for (name, call, left) in calls {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        filled(&path);
        damage(&path, Damage::MiddleLeaves);
        let cache = open(&path, OnCorrupt::Rebuild).unwrap();
        call(&cache).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cache.stats().sqlite_rebuilds, 1, "{name}");
        assert_eq!(cache.len().unwrap(), left, "{name}");
        cache.clear().unwrap();
        works(&cache);
        assert_eq!(set_aside_files(dir.path()).len(), 1, "{name}");
    }
}

#[test]
fn damage_found_at_open_is_set_aside_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    let damaged = damage(&path, Damage::Root);

    let cache = open(&path, OnCorrupt::Rebuild).unwrap();
    assert_eq!(cache.stats().sqlite_rebuilds, 1);
    assert_eq!(cache.len().unwrap(), 0);
    works(&cache);
    let aside = set_aside_files(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), damaged);
}

#[test]
fn with_fail_every_call_reaching_the_damage_is_corrupt_and_the_file_stays_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    let damaged = damage(&path, Damage::MiddleLeaves);

    let cache = open(&path, OnCorrupt::Fail).unwrap();
    let errors = [
        cache.keys("*").unwrap_err(),
        cache.len().unwrap_err(),
        cache.clear().unwrap_err(),
        cache.invalidate_tag("t").unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.message().contains(
                "cache.db is damaged and was left as it is (sqlite.on_corrupt is \"fail\")"
            ),
            "{err}"
        );
    }
    // A set is journaled, and acknowledged: its drain reaches the damage,
    // and the next write reports it.
    cache.set(key(ROWS / 2), "x").unwrap();
    let err = cache.run_pending_tasks().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let err = cache.set(key(ROWS / 2 + 1), "y").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(cache.stats().sqlite_rebuilds, 0);
    // Closing reports it too; the journal stays, holding the write.
    let err = cache.close().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(cache.is_closed());
    let journals = std::fs::read_dir(dir.path().join("cache.db-wb"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "generation")
        .count();
    assert_eq!(journals, 1);
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
    assert_eq!(set_aside_files(dir.path()), Vec::<PathBuf>::new());

    let err = tierstack::tier::check(&path).unwrap();
    assert!(!err.is_ok());
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
}

#[test]
fn with_fail_damage_found_at_open_refuses_to_open_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    let damaged = damage(&path, Damage::Root);
    let err = open(&path, OnCorrupt::Fail).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.message().contains("sqlite.on_corrupt is \"fail\""),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
    assert_eq!(set_aside_files(dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_damaged_file_whose_header_is_not_tierstacks_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    damage(&path, Damage::Root);
    // Another program's database: application_id 0.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[68..72].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    for on_corrupt in [OnCorrupt::Rebuild, OnCorrupt::Fail] {
        let err = open(&path, on_corrupt).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
    assert_eq!(set_aside_files(dir.path()), Vec::<PathBuf>::new());
    let err = tierstack::tier::check(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains("does not show a tierstack cache"),
        "{err}"
    );
}

#[test]
fn check_reports_every_damaged_page_and_a_sound_file_as_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    filled(&path);
    assert_eq!(
        tierstack::tier::check(&path).unwrap(),
        tierstack::tier::Integrity {
            path: path.clone(),
            problems: Vec::new()
        }
    );
    assert!(!dir.path().join("cache.db-wal").exists());
    damage(&path, Damage::MiddleLeaves);
    let integrity = tierstack::tier::check(&path).unwrap();
    assert!(!integrity.is_ok());
    assert!(
        integrity.problems.iter().any(|p| p.contains("Tree")),
        "{integrity:?}"
    );
    assert!(!dir.path().join("cache.db-wal").exists());
}

#[test]
fn on_corrupt_is_a_config_key() {
    let config = tierstack::Config::from_json(r#"{"sqlite": {"on_corrupt": "fail"}}"#).unwrap();
    assert_eq!(config.sqlite.on_corrupt, OnCorrupt::Fail);
    assert_eq!(
        tierstack::Config::default().sqlite.on_corrupt,
        OnCorrupt::Rebuild
    );
}
