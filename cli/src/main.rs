//! `tierstack`: the command line of the tierstack cache.
//!
//! - `tierstack demo` shows, and checks, what the cache does: L2 surviving a
//!   restart, promotion into L1, TTL expiry, eviction under the byte budgets,
//!   and the stats. It runs on embedded defaults in a temporary directory.
//!   A last chapter reads through GitHub as the source of truth, against a
//!   GitHub-shaped origin on loopback started in the process.
//! - `get`, `set`, `del`, `keys`, `inspect`, `check`, `clear` and `warm`
//!   work on a cache file: `--db`, else `sqlite.path` of the `--config`
//!   file, else `$TIERSTACK_DB_PATH`, else the default path of the config's
//!   namespace. `warm` loads keys from GitHub into it (the config needs a
//!   `github` section).
//!
//! Exit status: 0 on success, 1 when `get` finds no fresh value, `check`
//! finds damage or `warm` leaves a key unwarmed, 2 on an error (printed as
//! `tierstack: <kind>: <message>` on stderr).

mod demo;
mod format;
mod out;
mod warm;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use tierstack::blocking::Cache;
use tierstack::key::quote;
use tierstack::{Config, Error, ErrorKind, OnCorrupt, Result, SetOptions};

use crate::out::Out;

/// A hybrid cache: L1 memory over an L2 SQLite file shared by every process.
#[derive(Debug, Parser)]
#[command(name = "tierstack", version)]
struct Cli {
    /// The cache file [default: sqlite.path of the config, else
    /// $TIERSTACK_DB_PATH, else <user cache dir>/tierstack/<namespace>.db]
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,

    /// A JSON config (the schema of the tierstack crate; unknown keys are errors)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show, step by step, what the cache does; every claim is checked
    Demo,
    /// Print the value of KEY (raw bytes); exit 1 if it holds no fresh value
    Get {
        /// The key
        key: String,
        /// Print the value and where it came from as JSON
        #[arg(long)]
        json: bool,
    },
    /// Store VALUE under KEY
    Set {
        /// The key
        key: String,
        /// The value; `-` reads it from stdin
        #[arg(allow_hyphen_values = true)]
        value: std::ffi::OsString,
        /// Time to live in seconds (fractions allowed; 0: the default; at most
        /// 100 years) [default: sqlite.ttl]
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        ttl: Option<f64>,
    },
    /// Delete KEY; prints whether it held a fresh value
    Del {
        /// The key
        key: String,
    },
    /// List the fresh keys matching PATTERN (`*` is the only wildcard), sorted
    Keys {
        /// The glob pattern
        #[arg(default_value = "*")]
        pattern: String,
        /// Print the keys as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show what the cache file holds: entries, bytes, budget, ages, size
    Inspect {
        /// Print the inspection as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check the cache file for damage without changing it (every page, and
    /// the totals); exit 1 if it is damaged
    Check {
        /// Print the findings as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove every entry and give the space back to the file system; a
    /// damaged file is set aside as <name>.corrupt-<unix time> and replaced,
    /// whatever sqlite.on_corrupt says
    Clear,
    /// Load KEYs from GitHub into the cache ahead of need; a listing key
    /// (e.g. components:react) warms every item it lists too. Needs a config
    /// with a github section; exit 1 if a key could not be warmed
    Warm {
        /// The keys (e.g. components:react, component:react:button)
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// The write-behind outbox in the cache file: writes waiting for the
    /// source, and dead letters (writes that gave up)
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// List the writes waiting for the source and the dead letters
    List {
        /// Print them as JSON
        #[arg(long)]
        json: bool,
    },
    /// Queue every dead letter again (a process writing behind on this file
    /// delivers them); a key written since its write died has no dead
    /// letter any more
    Retry,
    /// Delete every dead letter
    Purge,
}

/// How a command ended when it did not fail.
enum Outcome {
    Done,
    /// `get` found no fresh value, `check` found damage, or `warm` left a
    /// key unwarmed.
    Miss,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Miss) => ExitCode::from(1),
        Err(err) => {
            eprintln!("tierstack: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    let mut out = Out::stdout();
    let config = || file_config(cli.config.as_deref(), cli.db.clone());
    match cli.command {
        Command::Demo => {
            if cli.db.is_some() || cli.config.is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "demo runs on embedded defaults in a temporary directory; \
                     it takes neither --db nor --config",
                ));
            }
            demo::run(&mut out)?;
            Ok(Outcome::Done)
        }
        Command::Get { key, json } => get(&mut out, config()?, &key, json),
        Command::Set { key, value, ttl } => set(&mut out, config()?, key, value, ttl),
        Command::Del { key } => del(&mut out, config()?, &key),
        Command::Keys { pattern, json } => keys(&mut out, config()?, &pattern, json),
        Command::Inspect { json } => inspect(&mut out, config()?, json),
        Command::Check { json } => check(&mut out, config()?, json),
        Command::Clear => clear(&mut out, config()?),
        Command::Warm { keys } => warm::run(&mut out, config()?, keys),
        Command::Outbox { action } => outbox(&mut out, config()?, action),
    }
}

/// The config of the file commands: the `--config` file (or the defaults)
/// with `--db` as `sqlite.path` when given.
fn file_config(config: Option<&Path>, db: Option<PathBuf>) -> Result<Config> {
    let mut config = match config {
        None => Config::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("reading config {}: {e}", path.display()),
                )
                .with_source(e)
            })?;
            Config::from_json(&text).map_err(|e| {
                let message = e.message();
                let message = message.strip_prefix("config: ").unwrap_or(message);
                Error::new(e.kind(), format!("{}: {message}", path.display()))
            })?
        }
    };
    if !config.sqlite.enabled {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            "the file commands work on the sqlite tier, which the config disables \
             (sqlite.enabled is false)",
        ));
    }
    if let Some(db) = db {
        config.sqlite.path = Some(db);
    }
    config.validate()?;
    Ok(config)
}

/// Checks `key` before the cache is opened, so a bad key touches no file.
/// (Past this check a key is at most 255 bytes, so the output shows it whole.)
fn check_key(key: &str) -> Result<()> {
    tierstack::key::validate(key)
        .map_err(|e| Error::new(e.kind(), format!("key {}: {}", quote(key), e.message())))
}

/// Runs `f` on a cache opened with `config`, then closes it.
fn with_cache<R>(config: Config, f: impl FnOnce(&Cache) -> Result<R>) -> Result<R> {
    let cache = Cache::open(config)?;
    let result = f(&cache);
    let closed = cache.close();
    let value = result?;
    closed?;
    Ok(value)
}

fn get(out: &mut Out, config: Config, key: &str, json: bool) -> Result<Outcome> {
    check_key(key)?;
    let Some(hit) = with_cache(config, |cache| cache.lookup(key))? else {
        eprintln!("tierstack: no fresh value for {key:?}");
        return Ok(Outcome::Miss);
    };
    if json {
        let (value, encoding) = match std::str::from_utf8(&hit.value) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (format::hex(&hit.value), "hex"),
        };
        let doc = serde_json::json!({
            "key": key,
            "value": value,
            "encoding": encoding,
            "bytes": hit.value.len(),
            "tier": hit.tier.as_str(),
            "stale": hit.stale,
            "age_ms": u64::try_from(hit.age.as_millis()).unwrap_or(u64::MAX),
        });
        out.json(&doc)?;
    } else {
        out.bytes(&hit.value)?;
    }
    Ok(Outcome::Done)
}

fn set(
    out: &mut Out,
    config: Config,
    key: String,
    value: std::ffi::OsString,
    ttl: Option<f64>,
) -> Result<Outcome> {
    check_key(&key)?;
    let ttl = ttl.map(ttl_from_flag).transpose()?.flatten();
    let value = if value == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(|e| {
            Error::new(ErrorKind::Io, format!("reading the value from stdin: {e}")).with_source(e)
        })?;
        buf
    } else {
        std::os::unix::ffi::OsStringExt::into_vec(value)
    };
    let len = value.len();
    let default_ttl = config.sqlite.ttl;
    let options = match ttl {
        Some(ttl) => SetOptions::new().ttl(ttl),
        None => SetOptions::new(),
    };
    with_cache(config, |cache| {
        cache.set_with(key.as_str(), Bytes::from(value), options)
    })?;
    let ttl_note = match ttl {
        Some(ttl) => format!("ttl {} s", ttl.as_secs_f64()),
        None => format!("ttl {} s, the default", default_ttl.as_secs_f64()),
    };
    let unit = if len == 1 { "byte" } else { "bytes" };
    out.line(format_args!("stored {key:?} ({len} {unit}, {ttl_note})"))?;
    Ok(Outcome::Done)
}

/// A `--ttl` in seconds, by the rule of every host
/// ([`tierstack::config::ttl_from_seconds`]): `0` is the default; negative,
/// NaN, infinite or over 100 years is an invalid argument.
fn ttl_from_flag(secs: f64) -> Result<Option<Duration>> {
    tierstack::config::ttl_from_seconds(secs)
        .map_err(|e| Error::new(e.kind(), format!("--ttl: {}", e.message())))
}

fn del(out: &mut Out, config: Config, key: &str) -> Result<Outcome> {
    check_key(key)?;
    if with_cache(config, |cache| cache.delete(key))? {
        out.line(format_args!("deleted {key:?}"))?;
    } else {
        out.line(format_args!("{key:?} was not in the cache"))?;
    }
    Ok(Outcome::Done)
}

fn keys(out: &mut Out, config: Config, pattern: &str, json: bool) -> Result<Outcome> {
    // A bad pattern is refused before the file is opened.
    tierstack::key::Glob::new(pattern)?;
    let keys = with_cache(config, |cache| cache.keys(pattern))?;
    if json {
        out.json(&serde_json::json!(keys))?;
    } else {
        for key in &keys {
            out.line(format_args!("{key}"))?;
        }
    }
    Ok(Outcome::Done)
}

fn inspect(out: &mut Out, config: Config, json: bool) -> Result<Outcome> {
    let (inspection, pending, dead, tags) = with_cache(config, |cache| {
        Ok((
            cache.inspect()?,
            cache.pending_writes()?,
            cache.dead_letters()?,
            cache.tags()?,
        ))
    })?;
    let inspection = inspection.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "the cache was opened with the sqlite tier but has none",
        )
    })?;
    let oldest_pending = pending.iter().map(|p| p.created_ms).min();
    // Opening the file migrated it to this version's schema or refused it.
    let schema = tierstack::tier::SCHEMA_VERSION;
    if json {
        let mut doc = serde_json::to_value(&inspection).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("encoding the inspection: {e}"))
        })?;
        let fields = doc.as_object_mut().ok_or_else(|| {
            Error::new(ErrorKind::Internal, "the inspection is not a JSON object")
        })?;
        fields.insert("schema_version".into(), schema.into());
        fields.insert(
            "oldest".into(),
            inspection.oldest_ms.map(format::rfc3339).into(),
        );
        fields.insert(
            "newest".into(),
            inspection.newest_ms.map(format::rfc3339).into(),
        );
        fields.insert("outbox_pending".into(), pending.len().into());
        fields.insert(
            "outbox_oldest".into(),
            oldest_pending.map(format::rfc3339).into(),
        );
        fields.insert("dead_letters".into(), dead.len().into());
        let tags: serde_json::Map<String, serde_json::Value> =
            tags.into_iter().map(|(t, n)| (t, n.into())).collect();
        fields.insert("tags".into(), tags.into());
        out.json(&doc)?;
        return Ok(Outcome::Done);
    }
    let used = match inspection.max_bytes {
        0 => 0.0,
        max => inspection.bytes as f64 * 100.0 / max as f64,
    };
    let when = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), format::utc);
    let rows = [
        ("path", inspection.path.display().to_string()),
        ("schema version", schema.to_string()),
        ("entries", inspection.entries.to_string()),
        ("expired", inspection.expired.to_string()),
        ("bytes", format::bytes(inspection.bytes)),
        (
            "budget",
            format!("{}, {used:.1} % used", format::bytes(inspection.max_bytes)),
        ),
        ("oldest", when(inspection.oldest_ms)),
        ("newest", when(inspection.newest_ms)),
        ("file size", format::bytes(inspection.file_bytes)),
        (
            "mode",
            match inspection.read_only {
                true => "read-only (this process may not write the file)".to_owned(),
                false => "read-write".to_owned(),
            },
        ),
        (
            "outbox",
            match oldest_pending {
                None => "0 writes pending".to_owned(),
                Some(oldest) => format!(
                    "{} write(s) pending for the source, the oldest from {}",
                    pending.len(),
                    format::utc(oldest)
                ),
            },
        ),
        ("dead letters", dead.len().to_string()),
        ("tags", tag_summary(&tags)),
    ];
    for (name, value) in rows {
        out.line(format_args!("{:<16}{value}", format!("{name}:")))?;
    }
    Ok(Outcome::Done)
}

/// `N: a (rows), b (rows), …`: the most used tags first, at most 8 named.
fn tag_summary(tags: &[(String, u64)]) -> String {
    const NAMED: usize = 8;
    if tags.is_empty() {
        return "0".to_owned();
    }
    let named: Vec<String> = tags
        .iter()
        .take(NAMED)
        .map(|(t, n)| format!("{} ({n})", quote(t)))
        .collect();
    let more = match tags.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(", and {n} more"),
    };
    format!("{}: {}{more}", tags.len(), named.join(", "))
}

fn check(out: &mut Out, config: Config, json: bool) -> Result<Outcome> {
    let path = config.resolved_sqlite_path()?;
    let integrity = tierstack::tier::check(&path)?;
    let outcome = match integrity.is_ok() {
        true => Outcome::Done,
        false => Outcome::Miss,
    };
    if json {
        out.json(&serde_json::json!({
            "path": integrity.path,
            "ok": integrity.is_ok(),
            "problems": integrity.problems,
        }))?;
        return Ok(outcome);
    }
    if integrity.is_ok() {
        out.line(format_args!("{}: ok", path.display()))?;
        return Ok(outcome);
    }
    out.line(format_args!("{}: damaged", path.display()))?;
    for problem in &integrity.problems {
        out.line(format_args!("  {problem}"))?;
    }
    out.line(format_args!(
        "`tierstack clear` sets it aside as {}.corrupt-<unix time> and starts a fresh file",
        path.display()
    ))?;
    Ok(outcome)
}

fn outbox(out: &mut Out, config: Config, action: OutboxAction) -> Result<Outcome> {
    match action {
        OutboxAction::List { json } => {
            let (pending, dead) =
                with_cache(config, |c| Ok((c.pending_writes()?, c.dead_letters()?)))?;
            if json {
                out.json(&serde_json::json!({"pending": pending, "dead_letters": dead}))?;
                return Ok(Outcome::Done);
            }
            out.line(format_args!("pending: {}", pending.len()))?;
            for p in &pending {
                let error = p
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(", last error: {e}"));
                out.line(format_args!(
                    "  {} {} (written {}, {} failed attempt(s){error})",
                    p.op,
                    quote(&p.key),
                    format::utc(p.created_ms),
                    p.attempts
                ))?;
            }
            out.line(format_args!("dead letters: {}", dead.len()))?;
            for d in &dead {
                out.line(format_args!(
                    "  {} {} (gave up {} after {} attempt(s): {})",
                    d.op,
                    quote(&d.key),
                    format::utc(d.failed_ms),
                    d.attempts,
                    d.last_error
                ))?;
            }
        }
        OutboxAction::Retry => {
            let queued = with_cache(config, Cache::retry_dead_letters)?;
            out.line(format_args!("{queued} dead letter(s) queued again"))?;
        }
        OutboxAction::Purge => {
            let purged = with_cache(config, Cache::purge_dead_letters)?;
            out.line(format_args!("{purged} dead letter(s) deleted"))?;
        }
    }
    Ok(Outcome::Done)
}

fn clear(out: &mut Out, mut config: Config) -> Result<Outcome> {
    // Whoever clears wants an empty cache: a damaged file is set aside (not
    // deleted) and replaced, whatever the config says.
    config.sqlite.on_corrupt = OnCorrupt::Rebuild;
    let path = config.resolved_sqlite_path()?;
    let (removed, file_bytes, rebuilt) = with_cache(config, |cache| {
        let missing = || Error::new(ErrorKind::Internal, "the cache has no sqlite tier");
        let removed = cache.inspect()?.ok_or_else(missing)?.entries;
        cache.clear()?;
        let file_bytes = cache.inspect()?.ok_or_else(missing)?.file_bytes;
        Ok((removed, file_bytes, cache.stats().sqlite_rebuilds > 0))
    })?;
    if rebuilt {
        out.line(format_args!(
            "{} was damaged: it was set aside as {}.corrupt-<unix time> and a fresh file created",
            path.display(),
            path.display()
        ))?;
    }
    let unit = if removed == 1 { "entry" } else { "entries" };
    out.line(format_args!(
        "cleared {}: {removed} {unit} removed; the file is now {}",
        path.display(),
        format::bytes(file_bytes)
    ))?;
    Ok(Outcome::Done)
}
