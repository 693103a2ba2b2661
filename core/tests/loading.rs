//! Loading from a source: single-flight in a process and across processes
//! (with a holder killed mid-load).
//!
//! Children are this test binary run again with an ignored test selected,
//! each a real process on the same SQLite file.

#[path = "support/loading.rs"]
mod loading_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tierstack::blocking::Cache;
use tierstack::{Fetched, GetOptions};

use loading_support::{KEY, counted, open, text};

const CHILD_ENV: &str = "TIERSTACK_LOADING_CHILD";

#[test]
fn a_hundred_threads_missing_one_key_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(&dir.path().join("c.db"));
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, start) = (cache.clone(), calls.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let loader = counted(&calls, "loaded", Duration::from_millis(100));
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().as_deref(), Some("loaded"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats().source;
    assert_eq!((stats.requests, stats.successes), (1, 1));
    assert_eq!(stats.coalesced + 1, 100, "every other caller waited");
}

#[test]
fn a_hundred_tasks_missing_one_key_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let cache = tierstack::Cache::builder()
        .sqlite_path(dir.path().join("c.db"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let values = runtime.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    let loader = move |key: String| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Fetched::value(format!("async {key}")))
                    };
                    cache.get_or_load(KEY, loader, GetOptions::new()).await
                })
            })
            .collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(text(t.await.unwrap().unwrap()));
        }
        values
    });
    assert!(
        values
            .iter()
            .all(|v| v.as_deref() == Some("async component:button"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The file every child appends a line to when its loader runs.
fn calls_file(dir: &Path) -> std::path::PathBuf {
    dir.join("calls")
}

fn child(test: &str, spec: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn four_processes_of_ten_threads_make_one_loader_call() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let children: Vec<_> = (0..4)
        .map(|_| {
            child("loading_child", &dir.path().display().to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every child opens its cache and waits for the file `go`, so that
    // their misses overlap.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"").unwrap();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("values 10 x shared"), "{stdout}");
    }
    let calls = std::fs::read_to_string(calls_file(dir.path())).unwrap();
    assert_eq!(calls.lines().count(), 1, "loader calls: {calls:?}");
}

#[test]
#[ignore = "run as a child process by four_processes_of_ten_threads_make_one_loader_call"]
fn loading_child() {
    let dir = std::path::PathBuf::from(std::env::var(CHILD_ENV).unwrap());
    let cache = open(&dir.join("c.db"));
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (cache, dir) = (cache.clone(), dir.clone());
            std::thread::spawn(move || {
                let loader = move |_key: &str| {
                    let mut calls = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(calls_file(&dir))
                        .unwrap();
                    writeln!(calls, "{}", std::process::id()).unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(Fetched::value("shared"))
                };
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    let values: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(values.iter().all(|v| v.as_deref() == Some("shared")));
    println!("values {} x shared", values.len());
}

#[test]
fn a_killed_lease_holder_is_taken_over_and_every_caller_gets_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    // The holder announces that its loader is running, then hangs.
    let mut holder = child("hanging_holder", &path.display().to_string())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("loading") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the holder exited before loading"
        );
    }
    let cache = Cache::builder()
        .sqlite_path(&path)
        .hard_timeout(Duration::from_secs(1))
        .build_blocking()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            std::thread::spawn(move || {
                let loader = counted(&calls, "taken over", Duration::from_millis(50));
                text(cache.get_or_load(KEY, loader, GetOptions::new()).unwrap())
            })
        })
        .collect();
    // The waiters find the lease held and wait on the file, longer than
    // their own hard timeout: it bounds their fetch, not their wait.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the lease held them off");
    let killed_at = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap().as_deref(), Some("taken over"));
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "taken over within the lease ({:?})",
        killed_at.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().source.coalesced_processes, 0);
}

#[test]
#[ignore = "run as a child process by a_killed_lease_holder_is_taken_over_and_every_caller_gets_the_value"]
fn hanging_holder() {
    let path = std::env::var(CHILD_ENV).unwrap();
    // Its lease would last a minute: only its death frees it sooner.
    let cache = Cache::builder()
        .sqlite_path(&path)
        .hard_timeout(Duration::from_secs(60))
        .build_blocking()
        .unwrap();
    let loader = |_key: &str| {
        println!("loading");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(600));
        Ok(Fetched::value("never"))
    };
    let _ = cache.get_or_load(KEY, loader, GetOptions::new());
}
