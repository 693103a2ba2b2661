//! The Redis tier's config and secrets: the URL's password never shows,
//! config errors name their key, and without a section (or disabled)
//! nothing connects. Against a real `redis-server` (found on PATH),
//! started by each test on a free loopback port.

#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/redis_tier.rs"]
mod redis_tier_support;

use std::net::TcpListener;

use redis_support::RedisServer;
use tierstack::blocking::Cache;
use tierstack::{Config, ErrorKind, ManualClock, RedisConfig, Tier};

use redis_tier_support::{hit, machine, redis_counts, tier};

thread_local! {
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes a log line to this thread's capture, if one is on.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| {
            if let Some(buffer) = c.borrow_mut().as_mut() {
                buffer.extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines written on this thread while `f` runs. (One subscriber for
/// the whole test binary: a scoped one misses events whose call sites
/// other tests' threads reached first.)
fn logged(f: impl FnOnce()) -> String {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .init();
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    f();
    let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_password_in_the_url_never_shows() {
    let password = "pa55-w0rd-secret";
    let server = RedisServer::start_with(Some(password));
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let url = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}/0", server.port);

    // The right password: the tier works.
    let a = machine(&dir, "a", &url(password), &clock)
        .build_blocking()
        .unwrap();
    let b = machine(&dir, "b", &url(password), &clock)
        .build_blocking()
        .unwrap();
    a.set("k", "v").unwrap();
    assert_eq!(tier(&b, "k"), hit("v", Tier::Redis));

    // A wrong one: the failure is counted and logged, without it.
    let wrong = "wr0ng-pa55-secret";
    let c = machine(&dir, "c", &url(wrong), &clock)
        .build_blocking()
        .unwrap();
    let log = logged(|| assert_eq!(tier(&c, "k"), None));
    assert_eq!(redis_counts(&c).1, (1, 0));
    assert!(log.contains("a Redis call failed"), "{log}");

    let stats = serde_json::to_string(&c.stats()).unwrap();
    let config = c.config().clone();
    let shown = [
        log,
        stats,
        format!("{config:?}"),
        config.to_json(),
        format!("{:?}", machine(&dir, "d", &url(wrong), &clock)),
        format!("{c:?}"),
    ];
    for text in &shown {
        assert!(!text.contains(wrong) && !text.contains(password), "{text}");
    }
    assert!(shown[2].contains("redis://:***@127.0.0.1"), "{}", shown[2]);

    // A URL redis-rs cannot read: the error names the key, not the password.
    let err = machine(
        &dir,
        "e",
        &format!("redis://:{wrong}@127.0.0.1:notaport/0"),
        &clock,
    )
    .build_blocking()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("redis.url"), "{}", err.message());
    assert!(!err.to_string().contains(wrong), "{err}");
    assert!(!format!("{err:?}").contains(wrong), "{err:?}");
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (r#"{"redis": {"prefix": "p"}}"#, "redis.url is required"),
        (r#"{"redis": {"url": "localhost:6379"}}"#, "redis.url"),
        (
            r#"{"redis": {"url": "redis://h", "timeout": 0}}"#,
            "redis.timeout",
        ),
        (
            r#"{"redis": {"url": "redis://h", "ttl": 1e20}}"#,
            "redis.ttl",
        ),
        (
            r#"{"redis": {"url": "redis://h", "prefix": "a\nb"}}"#,
            "redis.prefix",
        ),
        (
            r#"{"redis": {"url": "redis://h", "enabled": "yes"}}"#,
            "invalid type",
        ),
    ];
    for (json, needle) in cases {
        let err = Config::from_json(json).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
        assert!(err.message().contains(needle), "{json}: {}", err.message());
    }
}

#[test]
fn without_a_section_or_disabled_nothing_connects() {
    // No server runs on this port: any connection would fail and count.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let mut disabled = RedisConfig::new(format!("redis://127.0.0.1:{port}/0"));
    disabled.enabled = false;
    for builder in [
        Cache::builder().sqlite_path(dir.path().join("none.db")),
        Cache::builder()
            .sqlite_path(dir.path().join("off.db"))
            .redis(disabled.clone()),
    ] {
        let cache = builder.clock(clock.clone()).build_blocking().unwrap();
        cache.set("k", "v").unwrap();
        assert_eq!(cache.get("nope").unwrap(), None);
        let stats = cache.stats();
        assert!(stats.redis.is_none());
        assert_eq!(
            stats.tiers.iter().map(|t| t.tier).collect::<Vec<_>>(),
            [Tier::Memory, Tier::Sqlite]
        );
    }
}
