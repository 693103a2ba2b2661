//! Several processes on one SQLite file at once: no error, no lost write.
//!
//! The test re-runs its own binary as child processes (`child_writer`).

use std::process::Command;

use tierstack::blocking::Cache;

const CHILD_ENV: &str = "TIERSTACK_TEST_CHILD";
const WRITES: usize = 2000;

#[test]
fn two_processes_write_and_read_one_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let spawned: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{id}|{}", path.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in spawned {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("child done"), "{stdout}");
    }

    let cache = Cache::builder()
        .sqlite_path(&path)
        .memory(false)
        .build_blocking()
        .unwrap();
    for id in ["a", "b"] {
        for i in 0..WRITES {
            let key = format!("{id}:{i}");
            assert_eq!(
                cache.get(&key).unwrap().as_deref(),
                Some(value(id, i).as_bytes()),
                "{key}"
            );
        }
    }
    for i in 0..WRITES / 10 {
        let shared = cache.get(&format!("shared:{i}")).unwrap().unwrap();
        assert!(shared == value("a", i).as_bytes() || shared == value("b", i).as_bytes());
    }
    let inspection = cache.inspect().unwrap().unwrap();
    assert_eq!(inspection.entries as usize, 2 * WRITES + WRITES / 10);
    let row = |k: &str, v: &str| (k.len() + v.len()) as u64 + tierstack::tier::SQLITE_ROW_OVERHEAD;
    let mut expected = 0;
    for id in ["a", "b"] {
        expected += (0..WRITES)
            .map(|i| row(&format!("{id}:{i}"), &value(id, i)))
            .sum::<u64>();
    }
    expected += (0..WRITES / 10)
        .map(|i| row(&format!("shared:{i}"), &value("a", i)))
        .sum::<u64>();
    assert_eq!(inspection.bytes, expected);
}

fn value(id: &str, i: usize) -> String {
    format!("{id}-{i:04}-{}", "x".repeat(200))
}

#[test]
#[ignore = "run as a child process by two_processes_write_and_read_one_file_at_once"]
fn child_writer() {
    let spec = std::env::var(CHILD_ENV).expect("started by the parent test with its spec");
    let (id, path) = spec.split_once('|').unwrap();
    let cache = Cache::builder()
        .sqlite_path(path)
        .memory(false)
        .build_blocking()
        .unwrap();
    for i in 0..WRITES {
        let key = format!("{id}:{i}");
        if i % 20 == 0 {
            // Half the writes as batches, so transactions of both sizes interleave.
            let batch: Vec<_> = (i..i + 10)
                .map(|j| (format!("{id}:{j}"), value(id, j)))
                .collect();
            cache.mset(batch).unwrap();
        } else if i % 20 >= 10 {
            cache.set(key.as_str(), value(id, i)).unwrap();
        }
        assert_eq!(
            cache.get(&key).unwrap().as_deref(),
            Some(value(id, i).as_bytes()),
            "{key}"
        );
        if i % 10 == 0 {
            cache
                .set(format!("shared:{}", i / 10), value(id, i / 10))
                .unwrap();
            let other = if id == "a" { "b" } else { "a" };
            let _ = cache.mget(&[format!("{other}:{i}")]).unwrap();
        }
    }
    println!("child done");
}
