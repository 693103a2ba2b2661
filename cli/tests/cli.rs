//! The `tierstack` binary, run as a real process: the demo, the file
//! commands across separate invocations, exit codes and error kinds.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tierstack_origin::{COMPONENTS, Fault, Host, Origin, RateLimit};

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("stdout is UTF-8")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).expect("stdout is JSON")
    }

    /// Asserts a success with exactly `stdout` and nothing on stderr.
    #[track_caller]
    fn ok(&self, stdout: &str) {
        assert_eq!((self.code, self.stderr.as_str()), (0, ""), "{self:?}");
        assert_eq!(self.stdout(), stdout);
    }

    /// Asserts an exit with `code`, exactly `stderr` and nothing on stdout.
    #[track_caller]
    fn fails(&self, code: i32, stderr: &str) {
        assert_eq!(
            (self.code, self.stdout(), self.stderr.as_str()),
            (code, "", stderr)
        );
    }
}

/// Runs the binary with `args`, with `env` set and `stdin` piped in; it
/// never sees the caller's `TIERSTACK_DB_PATH` nor a GitHub token.
fn run_with(args: &[&str], env: &[(&str, &Path)], stdin: Option<&[u8]>) -> Run {
    run_in(None, args, env, stdin)
}

/// [`run_with`] in the working directory `cwd` (or the caller's).
fn run_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &Path)], stdin: Option<&[u8]>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tierstack"));
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
        .args(args)
        .env_remove("TIERSTACK_DB_PATH")
        .env_remove("GITHUB_PERSONAL_ACCESS_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).expect("stdin accepts the value");
    }
    let output = child.wait_with_output().expect("the binary ends");
    Run {
        code: output.status.code().expect("the binary exits"),
        stdout: output.stdout,
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

fn run(args: &[&str]) -> Run {
    run_with(args, &[], None)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn demo_checks_every_claim_and_cleans_up() {
    let run = run(&["demo"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{}", run.stdout());
    let out = run.stdout();
    let markers = [
        "tierstack demo: L1 memory over an L2 SQLite file, on embedded defaults\n",
        "\n1. L2 survives a restart\n",
        "   cache A: opened ",
        "   set component:button ",
        "   cache A: closed; its memory tier is gone\n",
        "   lookup component:button -> hit from sqlite (",
        "   ✓ tier \"sqlite\": the value came back from the file, byte for byte\n",
        "   ✓ cache B lists all 3 keys: component:button, component:card, component:dialog\n",
        "\n2. Promotion into L1\n",
        "   lookup component:button -> hit from memory (",
        "   ✓ tier \"memory\": the sqlite hit was copied into memory\n",
        "   ✓ this read never reached SQLite",
        "\n3. TTL expiry\n",
        "   set session:42 with ttl 0.2 s\n",
        "   lookup session:42 -> hit from memory (",
        "   slept 300 ms\n   lookup session:42 -> miss\n",
        "   ✓ expired in both tiers: the read missed memory, then sqlite\n",
        "\n4. Eviction under the byte budgets\n",
        "with memory.max_bytes 64.0 KiB and sqlite.max_bytes 256.0 KiB\n",
        "   wrote 500 values of 1024 bytes (item:000 … item:499)",
        "   ✓ memory bytes <= memory.max_bytes, and evictions were counted\n",
        "   ✓ sqlite bytes <= sqlite.max_bytes, and evictions were counted\n",
        "   ✓ after maintenance the recently read keys survived: ",
        "   ✓ L2 evicted the least recently used first: item:010 … ",
        "   lookup item:never-written -> miss\n",
        "\n5. Stats of cache C\n",
        "   tier        hits   misses  hit rate     avg time  evictions  entries      bytes\n",
        "   memory ",
        "   sqlite ",
        "   total ",
        "   ✓ the counters add up to the ",
        "   as JSON:\n",
        "\n6. Loading from the source of truth\n",
        "   ✓ all 50 got the value from one loader call (single-flight)\n",
        "   ✓ the expired copy was served, marked stale, instead of the error\n",
        "   ✓ open: the source is not called; with no copy the caller gets source_unavailable\n",
        "\n7. GitHub as the source of truth (a GitHub-shaped origin on loopback: no network, no token)\n",
        "   read component:react:button -> from source (",
        "   ✓ tier \"source\": 1 request to the origin, GET /shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/button.tsx -> 200\n",
        "   read component:react:button -> from memory (",
        "   ✓ tier \"memory\": no further request\n",
        "   read component:react:button -> from sqlite (",
        "   ✓ tier \"sqlite\": the same bytes from the file, 0 requests\n",
        "   ✓ the origin failed (503): the expired copy was served, marked stale, instead of the error\n",
        "   ✓ 3 failures in a row (circuit_breaker.threshold): the breaker is open\n",
        "   ✓ open: the origin is not asked (0 requests); with no copy the caller gets source_unavailable\n",
        "   ✓ half-open: one probe was admitted (1 request)\n",
        "   ✓ the probe revalidated the expired copy: If-None-Match -> 304, no body; the copy is fresh again (stale false)\n",
        "   ✓ a second successful probe (circuit_breaker.success_threshold 2) closed the breaker\n",
        "   ✓ 403 with X-RateLimit-Remaining 0: an error of kind source naming the rate limit\n",
        "   ✓ the breaker is open until the reset exactly (next_attempt_at = X-RateLimit-Reset × 1000)\n",
        "   ✓ until the reset: source_unavailable, 0 requests (the raw host is not asked either)\n",
        "   ✓ after the reset: 1 request, and the listing names all 46 components\n",
        "   ✓ the stats carry GitHub's figures: source.rate_limit limit 60, remaining 59\n",
        "\nevery claim above was checked ✓\n",
    ];
    let mut from = 0;
    for marker in markers {
        let at = out[from..]
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} missing after byte {from} of:\n{out}"));
        from += at + marker.len();
    }
    assert_eq!(out.matches("   ✓ ").count(), 34, "{out}");

    // The stats JSON is the real snapshot: both budgets held, evictions counted.
    let json: String = out
        .lines()
        .skip_while(|l| *l != "   as JSON:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let stats: Value = serde_json::from_str(&json).expect("the demo prints stats JSON");
    let tiers = stats["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 2);
    for (tier, name, max) in [
        (&tiers[0], "memory", 65_536),
        (&tiers[1], "sqlite", 262_144),
    ] {
        assert_eq!(tier["tier"], name);
        assert_eq!(tier["max_bytes"], max);
        assert!(tier["bytes"].as_u64().unwrap() <= max, "{tier}");
        assert!(tier["evictions"].as_u64().unwrap() > 0, "{tier}");
    }
    assert_eq!(stats["sets"], 500);
    assert_eq!(stats["misses"], 1);

    let dir = out
        .lines()
        .find_map(|l| l.strip_prefix("working in "))
        .and_then(|l| l.split(" (").next())
        .expect("the demo names its directory");
    assert!(!Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn demo_takes_no_file_options() {
    run(&["demo", "--db", "x.db"]).fails(
        2,
        "tierstack: invalid_argument: demo runs on embedded defaults in a temporary \
         directory; it takes neither --db nor --config\n",
    );
}

#[test]
fn file_commands_round_trip_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("round.db");
    let db = path_str(&db);

    let before = now_ms();
    run(&["--db", db, "set", "greeting", "hello", "--ttl", "60"])
        .ok("stored \"greeting\" (5 bytes, ttl 60 s)\n");
    run_with(
        &["set", "--db", db, "blob", "-"],
        &[],
        Some(b"line 1\nline 2\0"),
    )
    .ok("stored \"blob\" (14 bytes, ttl 86400 s, the default)\n");
    run(&["--db", db, "set", "neg", "-5"])
        .ok("stored \"neg\" (2 bytes, ttl 86400 s, the default)\n");
    let after = now_ms();

    // Every command is a new process with an empty L1: values come from the file.
    run(&["--db", db, "get", "greeting"]).ok("hello");
    let blob = run(&["--db", db, "get", "blob"]);
    assert_eq!(
        (blob.code, blob.stdout.as_slice()),
        (0, &b"line 1\nline 2\0"[..])
    );
    run(&["--db", db, "get", "neg"]).ok("-5");
    let hit = run(&["get", "greeting", "--json", "--db", db]);
    assert_eq!((hit.code, hit.stderr.as_str()), (0, ""));
    let mut hit = hit.json();
    assert!(hit["age_ms"].as_u64().unwrap() < 60_000, "{hit}");
    hit.as_object_mut().unwrap().remove("age_ms");
    assert_eq!(
        hit,
        serde_json::json!({
            "key": "greeting", "value": "hello", "encoding": "utf8", "bytes": 5,
            "tier": "sqlite", "stale": false,
        })
    );

    run(&["--db", db, "keys"]).ok("blob\ngreeting\nneg\n");
    run(&["--db", db, "keys", "gr*"]).ok("greeting\n");
    run(&["--db", db, "keys", "nothing*"]).ok("");
    run(&["--db", db, "keys", "--json"]).ok("[\n  \"blob\",\n  \"greeting\",\n  \"neg\"\n]\n");

    // Bytes charged: key + value + 64 per row.
    let bytes = (8 + 5 + 64) + (4 + 14 + 64) + (3 + 2 + 64);
    let human = run(&["--db", db, "inspect"]);
    assert_eq!((human.code, human.stderr.as_str()), (0, ""));
    let lines: Vec<&str> = human.stdout().lines().collect();
    assert_eq!(
        lines[..6],
        [
            format!("path:           {db}"),
            format!("schema version: {}", tierstack::tier::SCHEMA_VERSION),
            "entries:        3".to_owned(),
            "expired:        0".to_owned(),
            format!("bytes:          {bytes} B"),
            "budget:         104857600 B (100.0 MiB), 0.0 % used".to_owned(),
        ]
    );
    assert_eq!(lines.len(), 13, "{lines:?}");
    assert!(lines[8].starts_with("file size:      "), "{lines:?}");
    assert_eq!(
        lines[9..],
        [
            "mode:           read-write",
            "outbox:         0 writes pending",
            "dead letters:   0",
            "tags:           0",
        ]
    );

    let json = run(&["--db", db, "inspect", "--json"]);
    assert_eq!((json.code, json.stderr.as_str()), (0, ""));
    let json = json.json();
    let oldest = json["oldest_ms"].as_u64().unwrap();
    let newest = json["newest_ms"].as_u64().unwrap();
    // The cache reads a coarse clock, up to one kernel tick behind.
    assert!(
        before - 50 <= oldest && oldest <= newest && newest <= after,
        "{before} {after} {json}"
    );
    assert!(json["file_bytes"].as_u64().unwrap() > 0, "{json}");
    for (name, line) in [("oldest", lines[6]), ("newest", lines[7])] {
        let rfc3339 = json[name].as_str().unwrap();
        assert_eq!(rfc3339.len(), "2024-01-01T00:00:00.000Z".len(), "{rfc3339}");
        let readable = rfc3339.replace('T', " ").replace('Z', " UTC");
        assert_eq!(line, format!("{:<16}{readable}", format!("{name}:")));
    }
    let mut rest = json.clone();
    for name in ["oldest_ms", "newest_ms", "oldest", "newest", "file_bytes"] {
        rest.as_object_mut().unwrap().remove(name);
    }
    assert_eq!(
        rest,
        serde_json::json!({
            "path": db, "schema_version": tierstack::tier::SCHEMA_VERSION, "entries": 3, "expired": 0,
            "bytes": bytes, "max_bytes": 104_857_600, "read_only": false,
            "outbox_pending": 0, "outbox_oldest": null, "dead_letters": 0, "tags": {},
        })
    );

    run(&["--db", db, "del", "greeting"]).ok("deleted \"greeting\"\n");
    run(&["--db", db, "del", "greeting"]).ok("\"greeting\" was not in the cache\n");
    run(&["--db", db, "get", "greeting"]).fails(1, "tierstack: no fresh value for \"greeting\"\n");
    run(&["--db", db, "keys"]).ok("blob\nneg\n");
}

#[test]
fn binary_values_print_raw_or_as_hex_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bin.db");
    let db = path_str(&db);
    run_with(
        &["--db", db, "set", "bin", "-"],
        &[],
        Some(&[0x00, 0xff, 0x10]),
    )
    .ok("stored \"bin\" (3 bytes, ttl 86400 s, the default)\n");
    let raw = run(&["--db", db, "get", "bin"]);
    assert_eq!(
        (raw.code, raw.stdout.as_slice()),
        (0, &[0x00, 0xff, 0x10][..])
    );
    let json = run(&["--db", db, "get", "bin", "--json"]).json();
    assert_eq!(
        (&json["value"], &json["encoding"]),
        (&"00ff10".into(), &"hex".into())
    );
}

#[test]
fn get_of_a_missing_key_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("miss.db");
    let db = path_str(&db);
    run(&["--db", db, "get", "nope"]).fails(1, "tierstack: no fresh value for \"nope\"\n");
    run(&["--db", db, "get", "nope", "--json"])
        .fails(1, "tierstack: no fresh value for \"nope\"\n");
}

#[test]
fn ttl_expires_and_bad_ttls_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttl.db");
    let db = path_str(&db);
    let start = Instant::now();
    run(&["--db", db, "set", "brief", "v", "--ttl", "1.5"])
        .ok("stored \"brief\" (1 byte, ttl 1.5 s)\n");
    let fresh = run(&["--db", db, "get", "brief"]);
    if start.elapsed() < Duration::from_millis(1500) {
        fresh.ok("v");
    }
    std::thread::sleep(Duration::from_millis(2000).saturating_sub(start.elapsed()));
    run(&["--db", db, "get", "brief"]).fails(1, "tierstack: no fresh value for \"brief\"\n");
    run(&["--db", db, "keys"]).ok("");
    // 0 is the default, as in every host.
    run(&["--db", db, "set", "zero", "v", "--ttl", "0"])
        .ok("stored \"zero\" (1 byte, ttl 86400 s, the default)\n");
    run(&["--db", db, "del", "zero"]).ok("deleted \"zero\"\n");
    let too_long = "seconds is longer than 100 years (3153600000 seconds)";
    for (ttl, message) in [
        (
            "-1",
            "ttl -1.0 is negative: give 0 (or no ttl) for the tier default".to_owned(),
        ),
        ("nan", "ttl NaN is not a number of seconds".to_owned()),
        (
            "inf",
            "ttl inf is not a finite number of seconds".to_owned(),
        ),
        (
            "-inf",
            "ttl -inf is not a finite number of seconds".to_owned(),
        ),
        ("1e12", format!("ttl 1000000000000.0 {too_long}")),
        ("1e20", format!("ttl 1e20 {too_long}")),
        ("3153600001", format!("ttl 3153600001.0 {too_long}")),
    ] {
        run(&["--db", db, "set", "k", "v", &format!("--ttl={ttl}")]).fails(
            2,
            &format!("tierstack: invalid_argument: --ttl: {message}\n"),
        );
    }
    run(&["--db", db, "keys"]).ok("");
    run(&["--db", db, "set", "century", "v", "--ttl", "3153600000"])
        .ok("stored \"century\" (1 byte, ttl 3153600000 s)\n");
}

#[test]
fn a_huge_key_gives_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("huge.db");
    let db = path_str(&db);
    // Near the kernel's limit for one argument (128 KiB).
    let key = "k".repeat(100_000);
    let expected = format!(
        "tierstack: invalid_key: key \"{}…\" (100000 bytes): \
         key is 100000 bytes long; at most 255 are allowed\n",
        "k".repeat(64)
    );
    run(&["--db", db, "set", &key, "v"]).fails(2, &expected);
    run(&["--db", db, "get", &key]).fails(2, &expected);
    run(&["--db", db, "del", &key]).fails(2, &expected);
}

#[test]
fn sqlite_names_that_are_not_paths_are_refused_and_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let memory = "tierstack: invalid_config: sqlite.path is \":memory:\", which is not a file: \
                  the sqlite tier is a file shared by every process; for a memory-only cache \
                  set sqlite.enabled to false\n";
    run_in(
        Some(cwd.path()),
        &["--db", ":memory:", "set", "k", "v"],
        &[],
        None,
    )
    .fails(2, memory);
    for uri in [
        "file:sub/dir/x.db",
        "file:/tmp/x.db?mode=memory",
        "file::memory:",
    ] {
        run_in(Some(cwd.path()), &["--db", uri, "set", "k", "v"], &[], None).fails(
            2,
            &format!(
                "tierstack: invalid_config: sqlite.path {uri:?} is a SQLite URI, \
                 which is not supported: give a file path\n"
            ),
        );
    }
    let env = [("TIERSTACK_DB_PATH", Path::new(":memory:"))];
    let refused = run_in(Some(cwd.path()), &["set", "k", "v"], &env, None);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .starts_with("tierstack: invalid_config: TIERSTACK_DB_PATH is \":memory:\""),
        "{refused:?}"
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn invalid_keys_exit_2_and_leave_the_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("keys.db");
    let db = path_str(&db_path);
    run(&["--db", db, "set", "good", "kept"])
        .ok("stored \"good\" (4 bytes, ttl 86400 s, the default)\n");
    let file = std::fs::read(&db_path).unwrap();

    let empty = "tierstack: invalid_key: key \"\": key is empty\n";
    let newline =
        "tierstack: invalid_key: key \"a\\nb\": key holds control character U+000A at byte 1\n";
    run(&["--db", db, "set", "", "v"]).fails(2, empty);
    run(&["--db", db, "set", "a\nb", "v"]).fails(2, newline);
    run(&["--db", db, "get", ""]).fails(2, empty);
    run(&["--db", db, "get", "a\nb"]).fails(2, newline);
    run(&["--db", db, "del", ""]).fails(2, empty);
    run(&["--db", db, "del", "a\nb"]).fails(2, newline);
    let long = "k".repeat(256);
    run(&["--db", db, "set", &long, "v"]).fails(
        2,
        &format!(
            "tierstack: invalid_key: key \"{}…\" (256 bytes): key is 256 bytes long; \
             at most 255 are allowed\n",
            &long[..64]
        ),
    );
    run(&["--db", db, "keys", "bad\npattern"]).fails(
        2,
        "tierstack: invalid_argument: glob pattern holds a control character\n",
    );

    assert!(std::fs::read(&db_path).unwrap() == file, "the file changed");
    run(&["--db", db, "get", "good"]).ok("kept");
    run(&["--db", db, "keys"]).ok("good\n");
}

#[test]
fn bad_configs_exit_2_with_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let db = path_str(&db);
    let config = dir.path().join("config.json");
    let cfg = path_str(&config);
    let cases = [
        (
            r#"{"memroy": {}}"#,
            "unknown field `memroy`, expected one of `namespace`, `memory`, `sqlite`, `fail_safe`, `circuit_breaker`, `negative_ttl`, `refresh_ahead`, `ttl_jitter`, `github`, `strategy`, `outbox`, `redis`, `test_clock` at line 1 column 9",
        ),
        (
            r#"{"memory": {"max_size": 1}}"#,
            "unknown field `max_size`, expected one of `enabled`, `max_bytes`, `ttl` at line 1 column 22",
        ),
        (
            r#"{"memory": {"ttl": 0}}"#,
            "memory.ttl must be greater than 0 seconds",
        ),
        ("[", "EOF while parsing a list at line 1 column 1"),
    ];
    for (json, message) in cases {
        std::fs::write(&config, json).unwrap();
        run(&["--config", cfg, "--db", db, "set", "k", "v"])
            .fails(2, &format!("tierstack: invalid_config: {cfg}: {message}\n"));
    }
    std::fs::write(&config, r#"{"sqlite": {"enabled": false}}"#).unwrap();
    run(&["--config", cfg, "keys"]).fails(
        2,
        "tierstack: invalid_config: the file commands work on the sqlite tier, which the \
         config disables (sqlite.enabled is false)\n",
    );
    assert!(!Path::new(db).exists(), "a bad config created the file");

    let missing = dir.path().join("missing.json");
    let missing = path_str(&missing);
    run(&["--config", missing, "keys"]).fails(
        2,
        &format!(
            "tierstack: io: reading config {missing}: No such file or directory (os error 2)\n"
        ),
    );
}

#[test]
fn the_file_comes_from_db_then_config_then_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (env_db, cfg_db, flag_db) = (
        dir.path().join("env.db"),
        dir.path().join("cfg.db"),
        dir.path().join("flag.db"),
    );
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"sqlite": {"path": cfg_db}}).to_string(),
    )
    .unwrap();
    let cfg = path_str(&config);
    let env = [("TIERSTACK_DB_PATH", env_db.as_path())];

    run_with(&["set", "from", "env"], &env, None)
        .ok("stored \"from\" (3 bytes, ttl 86400 s, the default)\n");
    run_with(&["--config", cfg, "set", "from", "config"], &env, None)
        .ok("stored \"from\" (6 bytes, ttl 86400 s, the default)\n");
    run_with(
        &[
            "--config",
            cfg,
            "--db",
            path_str(&flag_db),
            "set",
            "from",
            "flag",
        ],
        &env,
        None,
    )
    .ok("stored \"from\" (4 bytes, ttl 86400 s, the default)\n");

    run(&["--db", path_str(&env_db), "get", "from"]).ok("env");
    run(&["--db", path_str(&cfg_db), "get", "from"]).ok("config");
    run(&["--db", path_str(&flag_db), "get", "from"]).ok("flag");
    run_with(&["get", "from"], &env, None).ok("env");
}

#[test]
fn a_corrupt_file_exits_2_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let db = path_str(&path);
    // xorshift64: bytes that are not a SQLite header.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert!(!garbage.starts_with(b"SQLite format 3\0"));
    std::fs::write(&path, &garbage).unwrap();

    let corrupt = format!("tierstack: corrupt: {db}: sqlite: file is not a database\n");
    run(&["--db", db, "get", "k"]).fails(2, &corrupt);
    run(&["--db", db, "set", "k", "v"]).fails(2, &corrupt);
    run(&["--db", db, "del", "k"]).fails(2, &corrupt);
    run(&["--db", db, "keys"]).fails(2, &corrupt);
    run(&["--db", db, "inspect"]).fails(2, &corrupt);

    assert!(std::fs::read(&path).unwrap() == garbage, "the file changed");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["corrupt.db"], "no -wal or -shm file appeared");
}

/// A closed cache file of 2000 entries with eight pages in the middle
/// overwritten; its bytes.
fn damaged_cache(path: &Path) -> Vec<u8> {
    let cache = tierstack::blocking::Cache::builder()
        .sqlite_path(path)
        .build_blocking()
        .unwrap();
    let value = "v".repeat(1500);
    cache
        .mset((0..2000).map(|i| (format!("k{i:05}"), value.clone())))
        .unwrap();
    cache.close().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let page = 4096;
    let middle = bytes.len() / 2 / page * page;
    bytes[middle..middle + 8 * page].fill(0xA5);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn check_finds_damage_without_changing_the_file_and_clear_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let db = path_str(&path);
    run(&["--db", db, "set", "k", "v"]).ok("stored \"k\" (1 byte, ttl 86400 s, the default)\n");
    run(&["--db", db, "check"]).ok(&format!("{db}: ok\n"));
    let json = run(&["--db", db, "check", "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(
        json.json(),
        serde_json::json!({"path": db, "ok": true, "problems": []})
    );

    let damaged = damaged_cache(&path);
    let found = run(&["--db", db, "check"]);
    assert_eq!((found.code, found.stderr.as_str()), (1, ""), "{found:?}");
    let lines: Vec<&str> = found.stdout().lines().collect();
    assert_eq!(lines[0], format!("{db}: damaged"));
    assert!(lines.len() > 2, "{lines:?}");
    assert_eq!(
        lines[lines.len() - 1],
        format!(
            "`tierstack clear` sets it aside as {db}.corrupt-<unix time> and starts a fresh file"
        )
    );
    let json = run(&["--db", db, "check", "--json"]);
    assert_eq!(json.code, 1, "{json:?}");
    assert_eq!(json.json()["ok"], false);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "check changed the file"
    );

    // Even with on_corrupt = fail in the config, clear sets the damaged file
    // aside and starts afresh.
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"sqlite": {"on_corrupt": "fail"}}"#).unwrap();
    let cleared = run(&["--db", db, "--config", path_str(&config), "clear"]);
    assert_eq!(
        (cleared.code, cleared.stderr.as_str()),
        (0, ""),
        "{cleared:?}"
    );
    let lines: Vec<&str> = cleared.stdout().lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{db} was damaged: it was set aside as {db}.corrupt-<unix time> and a fresh file created"
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "cleared {db}: 0 entries removed; the file is now "
        )),
        "{lines:?}"
    );
    run(&["--db", db, "check"]).ok(&format!("{db}: ok\n"));
    run(&["--db", db, "keys"]).ok("");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("c.db.corrupt-") && !n.ends_with("-wal"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), damaged);
}

#[test]
fn clear_removes_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let db = path_str(&path);
    run(&["--db", db, "set", "a", "1"]).ok("stored \"a\" (1 byte, ttl 86400 s, the default)\n");
    run(&["--db", db, "set", "b", "2"]).ok("stored \"b\" (1 byte, ttl 86400 s, the default)\n");
    let cleared = run(&["--db", db, "clear"]);
    assert_eq!(
        (cleared.code, cleared.stderr.as_str()),
        (0, ""),
        "{cleared:?}"
    );
    assert!(
        cleared.stdout().starts_with(&format!(
            "cleared {db}: 2 entries removed; the file is now "
        )),
        "{cleared:?}"
    );
    run(&["--db", db, "keys"]).ok("");
}

#[test]
fn check_refuses_what_is_not_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let db = path_str(&path);
    std::fs::write(&path, b"not a database at all").unwrap();
    run(&["--db", db, "check"]).fails(
        2,
        &format!(
            "tierstack: corrupt: {db}: its header does not show a tierstack cache \
             (another program's file, or a cache whose first page is damaged)\n"
        ),
    );
    let missing = dir.path().join("missing.db");
    let run_missing = run(&["--db", path_str(&missing), "check"]);
    assert_eq!(run_missing.code, 2);
    assert!(
        run_missing.stderr.starts_with(&format!(
            "tierstack: io: {}: opening it: No such file",
            path_str(&missing)
        )),
        "{run_missing:?}"
    );
}

/// A config file in `dir` pointing `github` at `origin`, with the cache
/// file `warm.db` beside it; its path.
fn github_config(dir: &Path, origin: &Origin) -> std::path::PathBuf {
    let config = dir.join("github.json");
    let json = serde_json::json!({
        "sqlite": {"path": dir.join("warm.db")},
        "github": {"api_url": origin.api_url(), "raw_url": origin.raw_url(), "timeout": 5},
    });
    std::fs::write(&config, json.to_string()).unwrap();
    config
}

/// The seeded components' keys in the order the listing names them.
fn component_keys() -> Vec<String> {
    let mut names: Vec<&str> = COMPONENTS.to_vec();
    names.sort_unstable();
    names
        .into_iter()
        .map(|n| format!("component:react:{n}"))
        .collect()
}

/// One `warmed <key> (<tier>)` line a key.
fn warmed_lines<'a>(keys: impl IntoIterator<Item = &'a str>, tier: &str) -> String {
    keys.into_iter()
        .map(|k| format!("warmed {k} ({tier})\n"))
        .collect()
}

fn now_s() -> u64 {
    now_ms() / 1000
}

#[test]
fn warm_loads_a_listing_and_its_items_once() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = github_config(dir.path(), &origin);
    let cfg = path_str(&config);
    let items = component_keys();
    assert_eq!(items.len(), 46);

    // Cold: the listing, then each item, in its order; button, given
    // first, is not read twice.
    let cold = run(&[
        "--config",
        cfg,
        "warm",
        "component:react:button",
        "components:react",
    ]);
    assert_eq!(cold.code, 0, "{cold:?}");
    assert_eq!(
        cold.stdout(),
        "warmed 47 of 47 keys; 0 already cached; 0 failed\n"
    );
    let rest = items
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "component:react:button");
    let expected = warmed_lines(
        ["component:react:button", "components:react"]
            .into_iter()
            .chain(rest),
        "source",
    );
    assert_eq!(cold.stderr, expected);
    let requests = origin.requests();
    assert_eq!(requests.len(), 47);
    assert_eq!(
        requests.iter().filter(|r| r.host == Host::Api).count(),
        1,
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");

    // Warm again: everything is in the file already; no request.
    let again = run(&["--config", cfg, "warm", "components:react"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.stdout(),
        "warmed 47 of 47 keys; 47 already cached; 0 failed\n"
    );
    assert_eq!(
        again.stderr,
        warmed_lines(
            std::iter::once("components:react").chain(items.iter().map(String::as_str)),
            "sqlite"
        )
    );
    assert_eq!(origin.count(), 47);

    // The warmed file serves a plain get with no request either.
    let hit = run(&["--config", cfg, "get", "component:react:tooltip", "--json"]);
    assert_eq!(hit.code, 0, "{hit:?}");
    let hit = hit.json();
    assert_eq!(hit["tier"], "sqlite");
    // A file is stored as a JSON string of its text.
    let text: String = serde_json::from_str(hit["value"].as_str().unwrap()).unwrap();
    assert!(
        text.starts_with("// apps/v4/registry/new-york-v4/ui/tooltip.tsx\n"),
        "{hit}"
    );
    assert_eq!(origin.count(), 47);
}

#[test]
fn warm_stops_at_a_rate_limit_and_says_when_to_retry() {
    let origin = Origin::start().unwrap();
    let reset = now_s() + 60;
    origin.rate_limit(RateLimit {
        limit: 60,
        remaining: 0,
        reset,
    });
    let dir = tempfile::tempdir().unwrap();
    let config = github_config(dir.path(), &origin);
    let cfg = path_str(&config);
    let retry = format!(
        "tierstack: source_unavailable: GitHub is not asked while the circuit breaker is open, \
         until {} (in ",
        rfc3339(reset * 1000)
    );

    let limited = run(&["--config", cfg, "warm", "components:react"]);
    assert_eq!(limited.code, 1, "{limited:?}");
    assert_eq!(
        limited.stdout(),
        "warmed 0 of 1 key; 0 already cached; 1 failed\n"
    );
    let lines: Vec<&str> = limited.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "failed components:react: source: GitHub rate limit reached loading \
             \"components:react\" (HTTP 403); it resets at {} ms since the Unix epoch",
            reset * 1000
        )
    );
    assert!(lines[1].starts_with(&retry), "{lines:?}");
    assert!(
        lines[1].ends_with(" s): run warm again after that"),
        "{lines:?}"
    );
    let requests = origin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!((requests[0].host, requests[0].status), (Host::Api, 403));

    // Another process on the same file honours the open breaker: no request.
    let again = run(&["--config", cfg, "warm", "components:react"]);
    assert_eq!(again.code, 1, "{again:?}");
    let lines: Vec<&str> = again.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("failed components:react: source_unavailable: "),
        "{lines:?}"
    );
    assert!(lines[1].starts_with(&retry), "{lines:?}");
    assert_eq!(origin.count(), 1);
}

#[test]
fn warm_makes_no_request_after_a_403_in_the_middle_of_a_listing() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = github_config(dir.path(), &origin);
    // The last item is in the file already.
    let tooltip = "component:react:tooltip";
    let first = run(&["--config", path_str(&config), "warm", tooltip]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.stderr, format!("warmed {tooltip} (source)\n"));
    assert_eq!(origin.count(), 1);
    origin.clear_log();

    let reset = now_s() + 60;
    origin.fault(Fault {
        host: Some(Host::Raw),
        path_contains: Some("/ui/card.tsx".into()),
        status: Some(403),
        headers: vec![
            ("X-RateLimit-Remaining".into(), "0".into()),
            ("X-RateLimit-Reset".into(), reset.to_string()),
        ],
        body: Some(r#"{"message":"rate limit exceeded"}"#.into()),
        ..Fault::default()
    });
    let limited = run(&["--config", path_str(&config), "warm", "components:react"]);
    assert_eq!(limited.code, 1, "{limited:?}");
    assert_eq!(
        limited.stdout(),
        "warmed 11 of 47 keys; 1 already cached; 1 failed\n"
    );

    // The listing and the nine items before card, then card's 403, then
    // not one more request: the rest are read from the file alone.
    let items = component_keys();
    let card = items
        .iter()
        .position(|k| k == "component:react:card")
        .unwrap();
    assert_eq!(card, 9);
    let requests = origin.requests();
    assert_eq!(requests.len(), 1 + card + 1, "{requests:?}");
    let last = requests.last().unwrap();
    assert_eq!(
        (last.path.as_str(), last.status),
        (
            "/shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/card.tsx",
            403
        )
    );

    let mut expected = warmed_lines(
        std::iter::once("components:react").chain(items[..card].iter().map(String::as_str)),
        "source",
    );
    expected.push_str(&format!(
        "failed component:react:card: source: GitHub rate limit reached loading \
         \"component:react:card\" (HTTP 403); it resets at {} ms since the Unix epoch\n",
        reset * 1000
    ));
    for key in &items[card + 1..] {
        match key == tooltip {
            true => expected.push_str(&format!("warmed {key} (sqlite)\n")),
            false => expected.push_str(&format!("not warmed {key}\n")),
        }
    }
    let (head, last_line) = limited
        .stderr
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .unwrap();
    assert_eq!(format!("{head}\n"), expected);
    assert!(
        last_line.starts_with(&format!(
            "tierstack: source_unavailable: GitHub is not asked while the circuit breaker is \
             open, until {} (in ",
            rfc3339(reset * 1000)
        )),
        "{last_line}"
    );
    assert!(
        last_line.ends_with(" s); 35 keys not warmed: run warm again after that"),
        "{last_line}"
    );
}

#[test]
fn warm_needs_a_github_section_and_routed_keys() {
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let no_github = "tierstack: invalid_config: warm loads keys from GitHub, and the config has \
                     no github section: give --config a file with one (e.g. {\"github\": {}} for \
                     the shadcn-v4 routes)\n";
    run(&["--db", path_str(&db), "warm", "components:react"]).fails(2, no_github);
    let plain = dir.path().join("plain.json");
    std::fs::write(&plain, r#"{"sqlite": {"ttl": 60}}"#).unwrap();
    run(&[
        "--config",
        path_str(&plain),
        "--db",
        path_str(&db),
        "warm",
        "components:react",
    ])
    .fails(2, no_github);
    let disabled = dir.path().join("disabled.json");
    std::fs::write(&disabled, r#"{"github": {"enabled": false}}"#).unwrap();
    run(&[
        "--config",
        path_str(&disabled),
        "--db",
        path_str(&db),
        "warm",
        "components:react",
    ])
    .fails(
        2,
        "tierstack: invalid_config: warm loads keys from GitHub, and the config's github \
         section is disabled (github.enabled is false)\n",
    );

    let config = github_config(dir.path(), &origin);
    let cfg = path_str(&config);
    run(&["--config", cfg, "warm", "components:react", "session:1"]).fails(
        2,
        "tierstack: invalid_argument: key \"session:1\": no route in github.routes serves it, \
         so GitHub has nothing to warm it with\n",
    );
    let bad = run(&["--config", cfg, "warm", "component:react:../x"]);
    assert_eq!((bad.code, bad.stdout()), (2, ""), "{bad:?}");
    assert!(
        bad.stderr
            .starts_with("tierstack: invalid_key: key \"component:react:../x\": "),
        "{bad:?}"
    );
    run(&["--config", cfg, "warm"]).fails(
        2,
        "error: the following required arguments were not provided:\n  <KEY>...\n\n\
         Usage: tierstack warm <KEY>...\n\nFor more information, try '--help'.\n",
    );
    assert_eq!(origin.count(), 0);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".db"))
        .collect();
    assert!(left.is_empty(), "a refused warm created {left:?}");
}

/// `s` quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn warm_draws_a_progress_bar_on_a_terminal() {
    let script = Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "this test runs warm under a pseudo-terminal with util-linux's script (Debian: bsdutils)"
    );
    let origin = Origin::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = github_config(dir.path(), &origin);
    let command = [
        env!("CARGO_BIN_EXE_tierstack"),
        "--config",
        path_str(&config),
        "warm",
        "components:react",
    ]
    .map(sh_quote)
    .join(" ");
    let output = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env_remove("TIERSTACK_DB_PATH")
        .env_remove("GITHUB_PERSONAL_ACCESS_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{shown:?}");
    assert_eq!(origin.count(), 47);
    // The bar, redrawn in place, instead of a line a key.
    assert!(shown.contains("warming ["), "{shown:?}");
    assert!(shown.contains("] 47/47 done"), "{shown:?}");
    assert!(shown.contains("\x1b["), "{shown:?}");
    assert!(
        !shown.contains("warmed components:react (source)"),
        "{shown:?}"
    );
    assert!(
        !shown.contains("warmed component:react:button (source)"),
        "{shown:?}"
    );
    assert!(
        shown.contains("warmed 47 of 47 keys; 0 already cached; 0 failed\r\n"),
        "{shown:?}"
    );
}

/// Milliseconds since the Unix epoch as RFC 3339 (`2024-05-01T12:00:00.250Z`),
/// as `date(1)` tells it, so that the CLI's own conversion is checked
/// against another.
fn rfc3339(ms: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}", ms / 1000), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    assert!(out.status.success(), "date failed");
    format!(
        "{}.{:03}Z",
        String::from_utf8(out.stdout).unwrap().trim(),
        ms % 1000
    )
}

/// A write-behind cache on `db` whose source refuses every write: `dead`
/// gives up at once (one attempt), `pending` waits a minute between tries.
fn refused_writes(db: &str) {
    use tierstack::source::{self, Fetched};
    use tierstack::{Cache, Error, ErrorKind, OutboxConfig, SetOptions, Strategy};
    let refuse = |_: &str, _: &str| Err(Error::new(ErrorKind::Source, "the store is down"));
    let open = |max_attempts| {
        let source = source::from_blocking_fn(|_: &str| Ok(Fetched::NotFound))
            .with_writes(move |k, _: &[u8], id| refuse(k, id), refuse);
        Cache::builder()
            .sqlite_path(db)
            .source(source)
            .strategy(Strategy::WriteBehind)
            .outbox(OutboxConfig {
                max_attempts,
                retry_base: Duration::from_secs(60),
                retry_max: Duration::from_secs(60),
                close_timeout: Duration::ZERO,
                ..OutboxConfig::default()
            })
            .build_blocking()
            .unwrap()
    };
    let cache = open(1);
    cache
        .set_with("dead", "v", SetOptions::new().tags(["ui", "react"]))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.outbox_stats().unwrap().dead == 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.outbox_stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    cache.close().unwrap();
    let cache = open(5);
    cache
        .set_with("pending", "v", SetOptions::new().tags(["ui"]))
        .unwrap();
    while cache.outbox_stats().unwrap().retrying == 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.outbox_stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    cache.close().unwrap();
}

#[test]
fn outbox_lists_retries_and_purges_what_a_write_behind_cache_left() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let db = db.to_str().unwrap();
    refused_writes(db);

    let list = run(&["--db", db, "outbox", "list", "--json"]);
    let json = list.json();
    let pick = |v: &Value, fields: &[&str]| -> Value {
        fields
            .iter()
            .map(|f| (f.to_string(), v[*f].clone()))
            .collect()
    };
    let fields = ["key", "op", "attempts", "last_error"];
    assert_eq!(
        json["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| pick(p, &fields))
            .collect::<Vec<_>>(),
        [
            serde_json::json!({"key": "pending", "op": "store", "attempts": 1,
            "last_error": "source: the store is down"})
        ]
    );
    assert_eq!(
        json["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| pick(p, &fields))
            .collect::<Vec<_>>(),
        [
            serde_json::json!({"key": "dead", "op": "store", "attempts": 1,
            "last_error": "source: the store is down"})
        ]
    );
    let text = run(&["--db", db, "outbox", "list"]);
    let lines: Vec<&str> = text.stdout().lines().collect();
    assert_eq!(lines[0], "pending: 1");
    assert!(
        lines[1].starts_with("  store \"pending\" (written "),
        "{lines:?}"
    );
    assert!(lines[1].ends_with(", 1 failed attempt(s), last error: source: the store is down)"));
    assert_eq!(lines[2], "dead letters: 1");
    assert!(
        lines[3].starts_with("  store \"dead\" (gave up "),
        "{lines:?}"
    );
    assert!(lines[3].ends_with(" after 1 attempt(s): source: the store is down)"));

    let inspect = run(&["--db", db, "inspect", "--json"]).json();
    assert_eq!(
        pick(&inspect, &["outbox_pending", "dead_letters", "tags"]),
        serde_json::json!({"outbox_pending": 1, "dead_letters": 1,
            "tags": {"ui": 2, "react": 1}})
    );
    let inspect = run(&["--db", db, "inspect"]);
    let rows: Vec<&str> = inspect.stdout().lines().collect();
    assert!(
        rows.iter().any(|r| r
            .starts_with("outbox:         1 write(s) pending for the source, the oldest from ")),
        "{rows:?}"
    );
    assert!(rows.contains(&"dead letters:   1"), "{rows:?}");
    assert!(
        rows.contains(&"tags:           2: \"ui\" (2), \"react\" (1)"),
        "{rows:?}"
    );

    // `dead` has no newer write: queued again. Then nothing is dead.
    run(&["--db", db, "outbox", "retry"]).ok("1 dead letter(s) queued again\n");
    run(&["--db", db, "outbox", "purge"]).ok("0 dead letter(s) deleted\n");
    let json = run(&["--db", db, "outbox", "list", "--json"]).json();
    let keys: Vec<&str> = json["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["dead", "pending"]);
    assert_eq!(json["dead_letters"], serde_json::json!([]));
}
