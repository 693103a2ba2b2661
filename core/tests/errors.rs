//! Bad input gets its documented error kind and leaves stored data intact.

use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::{Config, ErrorKind, SetOptions};

fn open(path: &std::path::Path) -> Cache {
    Cache::builder().sqlite_path(path).build_blocking().unwrap()
}

#[test]
fn invalid_keys_are_rejected_by_every_operation_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let cache = open(&path);
    cache.mset([("good", "1"), ("other", "2")]).unwrap();
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "line\nbreak", "nul\0", "esc\u{1b}[0m"] {
        let errors = [
            cache.get(bad).unwrap_err(),
            cache.lookup(bad).unwrap_err(),
            cache.set(bad, "x").unwrap_err(),
            cache.delete(bad).unwrap_err(),
            cache.has(bad).unwrap_err(),
            cache.entry(bad).unwrap_err(),
            cache.mget(&["good", bad]).unwrap_err(),
            cache.mset([("new", "x"), (bad, "x")]).unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{bad:?}: {err}");
        }
    }
    // The mset with one bad key wrote nothing, not even its good key.
    assert_eq!(cache.get("new").unwrap(), None);
    assert_eq!(cache.keys("*").unwrap(), ["good", "other"]);
    assert_eq!(
        open(&path).mget(&["good", "other"]).unwrap(),
        vec![Some("1".into()), Some("2".into())]
    );
}

#[test]
fn bad_arguments_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("a.db"))
        .sqlite_max_bytes(10_000)
        .build_blocking()
        .unwrap();
    cache.set("keep", "v").unwrap();
    let cases = [
        cache.set("big", vec![0u8; 20_000]).unwrap_err(),
        cache
            .set_with(
                "k",
                "v",
                SetOptions::new().ttl(Duration::from_secs(u64::MAX)),
            )
            .unwrap_err(),
        cache
            .set_with("k", "v", SetOptions::new().tags([""]))
            .unwrap_err(),
        cache.keys("bad\npattern").unwrap_err(),
    ];
    for err in cases {
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    assert!(
        cache
            .set("big", vec![0u8; 20_000])
            .unwrap_err()
            .message()
            .contains("sqlite.max_bytes is 10000")
    );
    assert_eq!(cache.keys("*").unwrap(), ["keep"]);
}

#[test]
fn invalid_configs_are_rejected_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.db");
    let bad = [
        format!(r#"{{"sqlite": {{"path": {:?}, "max_bytes": 0}}}}"#, path),
        format!(r#"{{"sqlite": {{"path": {:?}, "ttl": -5}}}}"#, path),
        format!(
            r#"{{"sqlite": {{"path": {:?}}}, "strategy": "write-around"}}"#,
            path
        ),
        format!(r#"{{"sqlite": {{"path": {:?}, "max_size": 5}}}}"#, path),
        r#"{"namespace": "a/b"}"#.to_owned(),
    ];
    for json in bad {
        let err = Config::from_json(&json).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
    }
    assert!(!path.exists());
    let mut config = Config::default();
    config.memory.ttl = Duration::ZERO;
    config.sqlite.path = Some(path.clone());
    assert_eq!(
        Cache::open(config).unwrap_err().kind(),
        ErrorKind::InvalidConfig
    );
    assert!(!path.exists());
}

#[test]
fn a_corrupt_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("corrupt.db"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users(name TEXT); INSERT INTO users VALUES ('ada');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("another program"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!path.with_extension("db-wal").exists());
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let cache = open(&path);
    cache.set("k", "v").unwrap();
    cache.close().unwrap();
    drop(cache);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", tierstack::tier::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Cache::builder()
        .sqlite_path(&path)
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let value: Vec<u8> = conn
        .query_row("SELECT value FROM entries WHERE key = 'k'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(value, b"v");
}

#[test]
fn an_unwritable_location_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = Cache::builder()
        .sqlite_path(blocker.join("cache.db"))
        .build_blocking()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
}
