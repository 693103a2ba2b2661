//! The GitHub token never leaves the request that needs it: every log line
//! (tracing at TRACE, and the `log` records of the HTTP stack), every error
//! message, the stats, `Debug` of the config and the cache, and the bytes of
//! the cache file and its WAL are searched for it, and it is found 0 times.
//! (Its own test binary: it installs the process's global subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tierstack::blocking::Cache;
use tierstack::{Config, ErrorKind, ManualClock};
use tierstack_origin::{Fault, Host, Origin};

const TOKEN: &str = "ghp_SeCrEt0123456789abcdefghijklmnopqrstu";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[test]
fn the_token_appears_in_no_log_error_stats_debug_output_or_file() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let config = Config::from_json(
        &json!({
            "sqlite": {"path": path, "ttl": 1},
            "memory": {"ttl": 1},
            "github": {"api_url": origin.api_url(), "raw_url": origin.raw_url(),
                       "token": TOKEN, "timeout": 2},
            "circuit_breaker": {"threshold": 100},
        })
        .to_string(),
    )
    .unwrap();
    let mut shown = format!("{config:?}\n{}\n", config.to_json());
    let clock = ManualClock::starting_now();
    let cache = Cache::builder()
        .config(config)
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    shown.push_str(&format!("{cache:?}\n"));

    // Every path the token could take: the API with it, a redirect
    // elsewhere, failures, a rate limit, a revalidation.
    cache.get("components:react").unwrap().unwrap();
    cache.get("component:react:button").unwrap().unwrap();
    origin.fault(Fault {
        host: Some(Host::Api),
        redirect: Some(origin.other_url()),
        times: Some(1),
        ..Fault::default()
    });
    let mut errors = Vec::new();
    errors.push(cache.get("blocks:react"));
    for fault in [
        Fault {
            status: Some(500),
            ..Fault::default()
        },
        Fault {
            truncate: true,
            ..Fault::default()
        },
        Fault {
            status: Some(401),
            body: Some(r#"{"message":"Bad credentials"}"#.into()),
            ..Fault::default()
        },
    ] {
        origin.fault(Fault {
            times: Some(1),
            host: Some(Host::Api),
            ..fault
        });
        errors.push(cache.get("components:react"));
        cache.delete("components:react").unwrap();
    }
    clock.advance(Duration::from_millis(1100));
    errors.push(cache.get("component:react:button").map(|_| None));
    origin.fault(Fault {
        status: Some(403),
        headers: vec![("X-RateLimit-Remaining".into(), "0".into())],
        host: Some(Host::Api),
        times: Some(1),
        ..Fault::default()
    });
    cache.delete("components:react").unwrap();
    errors.push(cache.get("components:react"));
    errors.push(cache.get("components:react"));
    let kinds: Vec<Option<ErrorKind>> = errors
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.kind()))
        .collect();
    assert!(
        kinds.iter().filter(|k| k.is_some()).count() >= 4,
        "the failures were exercised: {kinds:?}"
    );
    for result in &errors {
        if let Err(err) = result {
            shown.push_str(&format!("{err}\n{err:?}\n"));
            let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(err);
            while let Some(c) = cause {
                shown.push_str(&format!("{c}\n{c:?}\n"));
                cause = c.source();
            }
        }
    }
    let stats = cache.stats();
    shown.push_str(&format!(
        "{stats:?}\n{}\n{:?}\n",
        serde_json::to_string(&stats).unwrap(),
        cache.breaker_status()
    ));
    let api_saw = origin
        .requests()
        .iter()
        .filter(|r| r.authorization.is_some())
        .count();
    assert!(api_saw >= 3, "the token was sent to the API: {api_saw}");

    cache.flush().unwrap();
    let mut file = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(&name) {
            file.extend_from_slice(&bytes);
        }
    }
    assert!(file.len() > 4096, "the file holds the cache");
    let logs = captured.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "TRACE logging captured something");

    assert_eq!(count(shown.as_bytes(), TOKEN), 0, "{shown}");
    assert_eq!(count(&logs, TOKEN), 0);
    assert_eq!(count(&file, TOKEN), 0);
    // Nor its tail, in case of a partial leak.
    assert_eq!(count(&logs, &TOKEN[8..]), 0);
    assert_eq!(count(shown.as_bytes(), &TOKEN[8..]), 0);
}
