//! `tierstack demo`: the cache's main job, shown step by step on embedded
//! defaults in a temporary directory, and last (step 7, [`github`]) GitHub
//! as the source of truth, against a GitHub-shaped origin on loopback.
//!
//! Every claim the demo prints with a check mark is tested first; a claim
//! that does not hold ends the demo with an error (exit status 2).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tierstack::blocking::Cache;
use tierstack::{
    BreakerState, Error, ErrorKind, Fetched, GetOptions, Lookup, Result, SetOptions, Stats, Tier,
    TierStats,
};

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, ColumnConstraint, Table, Width};

use crate::format;
use crate::out::Out;

/// Prints one formatted line, returning early on a write error.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}

mod github;

/// The memory budget of the eviction step.
const SMALL_MEMORY: u64 = 64 * 1024;
/// The SQLite budget of the eviction step.
const SMALL_SQLITE: u64 = 256 * 1024;
/// Entries written in the eviction step.
const ENTRIES: usize = 500;
/// Bytes per value in the eviction step.
const ENTRY_BYTES: usize = 1024;
/// Keys `item:000` … read again and again during the eviction step.
const HOT: usize = 10;
/// The hot keys are read after every this many writes.
const READ_EVERY: usize = 10;
/// Time to live of the TTL step.
const SHORT_TTL: Duration = Duration::from_millis(200);
/// How long the TTL step waits.
const SLEEP: Duration = Duration::from_millis(300);

/// Runs the demo, printing to `out`.
pub fn run(out: &mut Out) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tierstack-demo-")
        .tempdir()
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("creating a temporary directory: {e}"),
            )
            .with_source(e)
        })?;
    say!(
        out,
        "tierstack demo: L1 memory over an L2 SQLite file, on embedded defaults"
    );
    say!(
        out,
        "working in {} (a temporary directory, removed at the end)",
        dir.path().display()
    );
    restart_promotion_ttl(out, &dir.path().join("components.db"))?;
    eviction_and_stats(out, &dir.path().join("budget.db"))?;
    loading(out, &dir.path().join("loading.db"))?;
    github::run(out, &dir.path().join("github.db"))?;
    say!(out, "");
    say!(out, "every claim above was checked ✓");
    dir.close().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("removing the temporary directory: {e}"),
        )
        .with_source(e)
    })
}

/// Prints `claim` with a check mark if `holds`; otherwise fails with it and
/// what was seen instead.
fn check(out: &mut Out, holds: bool, claim: &str, seen: impl FnOnce() -> String) -> Result<()> {
    if !holds {
        return Err(Error::new(
            ErrorKind::Internal,
            format!("demo check failed: {claim}; instead: {}", seen()),
        ));
    }
    say!(out, "   ✓ {claim}");
    Ok(())
}

/// Looks `key` up and prints what came back.
fn lookup(out: &mut Out, cache: &Cache, key: &str) -> Result<Option<Lookup>> {
    let hit = cache.lookup(key)?;
    match &hit {
        Some(hit) => say!(
            out,
            "   lookup {key} -> hit from {} ({} bytes, age {} ms)",
            hit.tier,
            hit.value.len(),
            hit.age.as_millis()
        ),
        None => say!(out, "   lookup {key} -> miss"),
    }
    Ok(hit)
}

fn describe(hit: &Option<Lookup>) -> String {
    match hit {
        Some(hit) => format!("a hit from {} of {} bytes", hit.tier, hit.value.len()),
        None => "a miss".to_owned(),
    }
}

fn tier_stats(stats: &Stats, tier: Tier) -> Result<TierStats> {
    stats
        .tier(tier)
        .cloned()
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("no stats for tier {tier}")))
}

/// Reads that reached `tier` (answered there or passed on down).
fn reads_reaching(stats: &Stats, tier: Tier) -> Result<u64> {
    tier_stats(stats, tier).map(|t| t.hits + t.misses)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A component-like JSON document of about 1.5 KB.
fn component(name: &str) -> String {
    let title: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    let mut source = format!("export function {title}({{ variant, size, children }}) {{\n");
    let mut part = 0;
    while source.len() < 1300 {
        source.push_str(&format!(
            "  const part{part} = <span className=\"{name}__part-{part} {name}--${{variant}}\">{{children}}</span>;\n"
        ));
        part += 1;
    }
    source.push_str(&format!(
        "  return <div className=\"{name}\">{{part0}}</div>;\n}}\n"
    ));
    serde_json::json!({
        "name": name,
        "version": "2.4.1",
        "props": ["variant", "size", "children"],
        "source": source,
    })
    .to_string()
}

/// Steps 1–3 on one file: a restart, promotion, and TTL expiry.
fn restart_promotion_ttl(out: &mut Out, path: &Path) -> Result<()> {
    let items: Vec<(String, String)> = ["button", "card", "dialog"]
        .iter()
        .map(|name| (format!("component:{name}"), component(name)))
        .collect();
    let (key, value) = &items[0];

    say!(out, "");
    say!(out, "1. L2 survives a restart");
    let a = Cache::builder().sqlite_path(path).build_blocking()?;
    say!(
        out,
        "   cache A: opened {} (default budgets: memory {}, sqlite {})",
        path.display(),
        format::size(a.config().memory.max_bytes),
        format::size(a.config().sqlite.max_bytes)
    );
    for (k, v) in &items {
        a.set(k.as_str(), v.clone())?;
        say!(out, "   set {k:<18} {} bytes of JSON", v.len());
    }
    a.close()?;
    say!(out, "   cache A: closed; its memory tier is gone");
    let b = Cache::builder().sqlite_path(path).build_blocking()?;
    say!(
        out,
        "   cache B: opened the same file with an empty memory tier, as a restarted process would"
    );
    let hit = lookup(out, &b, key)?;
    check(
        out,
        hit.as_ref()
            .is_some_and(|h| h.tier == Tier::Sqlite && h.value == value.as_bytes()),
        "tier \"sqlite\": the value came back from the file, byte for byte",
        || describe(&hit),
    )?;
    let keys = b.keys("component:*")?;
    let expected: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    check(
        out,
        keys == expected,
        &format!(
            "cache B lists all {} keys: {}",
            expected.len(),
            expected.join(", ")
        ),
        || format!("{keys:?}"),
    )?;

    say!(out, "");
    say!(out, "2. Promotion into L1");
    let sqlite_reads = reads_reaching(&b.stats(), Tier::Sqlite)?;
    let hit = lookup(out, &b, key)?;
    check(
        out,
        hit.as_ref()
            .is_some_and(|h| h.tier == Tier::Memory && h.value == value.as_bytes()),
        "tier \"memory\": the sqlite hit was copied into memory",
        || describe(&hit),
    )?;
    let after = reads_reaching(&b.stats(), Tier::Sqlite)?;
    check(
        out,
        after == sqlite_reads,
        "this read never reached SQLite (its sqlite hit and miss counters did not move)",
        || format!("{} more sqlite reads", after - sqlite_reads),
    )?;

    say!(out, "");
    say!(out, "3. TTL expiry");
    let session = "session:42";
    b.set_with(
        session,
        r#"{"user":42,"theme":"dark"}"#,
        SetOptions::new().ttl(SHORT_TTL),
    )?;
    say!(
        out,
        "   set {session} with ttl {} s",
        SHORT_TTL.as_secs_f64()
    );
    let hit = lookup(out, &b, session)?;
    check(out, hit.is_some(), "fresh right after the write", || {
        describe(&hit)
    })?;
    std::thread::sleep(SLEEP);
    say!(out, "   slept {} ms", SLEEP.as_millis());
    let before = b.stats();
    let hit = lookup(out, &b, session)?;
    let after = b.stats();
    check(out, hit.is_none(), "a miss once the TTL has passed", || {
        describe(&hit)
    })?;
    let missed = |s: &Stats, t| tier_stats(s, t).map(|t| t.misses);
    check(
        out,
        missed(&after, Tier::Memory)? == missed(&before, Tier::Memory)? + 1
            && missed(&after, Tier::Sqlite)? == missed(&before, Tier::Sqlite)? + 1,
        "expired in both tiers: the read missed memory, then sqlite",
        || format!("before {before:?}, after {after:?}"),
    )?;
    let row = b.entry(session)?;
    check(
        out,
        row.as_ref().is_some_and(|e| !e.is_fresh(now_ms())),
        "the expired row stays in the file until fail_safe.max_stale, to be served stale",
        || format!("{row:?}"),
    )?;
    b.close()?;
    Ok(())
}

/// Step 6 on a third file: loading from a source (a loader standing in for
/// GitHub): one call for many callers, a stale copy when it fails, and the
/// breaker cutting it off.
fn loading(out: &mut Out, path: &Path) -> Result<()> {
    say!(out, "");
    say!(out, "6. Loading from the source of truth");
    let cache = Cache::builder()
        .sqlite_path(path)
        .sqlite_ttl(SHORT_TTL)
        .ttl_jitter(0.0)
        .refresh_ahead(0.0)
        .build_blocking()?;
    let calls = Arc::new(AtomicUsize::new(0));
    let key = "component:accordion";
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            std::thread::spawn(move || {
                let fetch = move |key: &str| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(Fetched::value(component(
                        key.trim_start_matches("component:"),
                    )))
                };
                cache.get_or_load(key, fetch, GetOptions::new())
            })
        })
        .collect();
    let mut answered = 0;
    for caller in callers {
        let value = caller
            .join()
            .map_err(|_| Error::new(ErrorKind::Internal, "a demo thread panicked"))??;
        answered += usize::from(value.is_some());
    }
    say!(
        out,
        "   50 threads missed {key} at once; the loader takes 100 ms"
    );
    let made = calls.load(Ordering::SeqCst);
    check(
        out,
        answered == 50 && made == 1,
        "all 50 got the value from one loader call (single-flight)",
        || format!("{answered} answered, {made} loader calls"),
    )?;
    std::thread::sleep(SLEEP);
    say!(
        out,
        "   slept {} ms: the value expired; now the source fails",
        SLEEP.as_millis()
    );
    let down = |_: &str| Err(Error::new(ErrorKind::Source, "GitHub answered 503"));
    let hit = cache.lookup_or_load(key, down, GetOptions::new())?;
    check(
        out,
        hit.as_ref()
            .is_some_and(|h| h.stale && h.tier == Tier::Sqlite),
        "the expired copy was served, marked stale, instead of the error",
        || describe(&hit),
    )?;
    for _ in 0..5 {
        let _ = cache.get_or_load("component:missing", down, GetOptions::new());
    }
    let status = cache.breaker_status();
    say!(
        out,
        "   5 more loads fail on keys with no copy: the breaker is {} ({} trip)",
        status.state,
        status.trips
    );
    let refused = cache.get_or_load("component:other", down, GetOptions::new());
    check(
        out,
        status.state == BreakerState::Open
            && refused
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::SourceUnavailable),
        "open: the source is not called; with no copy the caller gets source_unavailable",
        || format!("{status:?}, {refused:?}"),
    )?;
    cache.close()
}

/// Steps 4 and 5 on a second file with small budgets: eviction, then stats.
fn eviction_and_stats(out: &mut Out, path: &Path) -> Result<()> {
    let key = |i: usize| format!("item:{i:03}");
    let value = |i: usize| {
        let mut v = format!("item {i}: ").into_bytes();
        v.resize(ENTRY_BYTES, b'.');
        v
    };

    say!(out, "");
    say!(out, "4. Eviction under the byte budgets");
    let c = Cache::builder()
        .sqlite_path(path)
        .memory_max_bytes(SMALL_MEMORY)
        .sqlite_max_bytes(SMALL_SQLITE)
        .build_blocking()?;
    say!(
        out,
        "   cache C: opened {} with memory.max_bytes {} and sqlite.max_bytes {}",
        path.display(),
        format::size(SMALL_MEMORY),
        format::size(SMALL_SQLITE)
    );
    let mut reads = 0u64;
    let mut hot_misses = 0u64;
    for i in 0..ENTRIES {
        c.set(key(i), value(i))?;
        if i >= HOT && (i + 1) % READ_EVERY == 0 {
            for h in 0..HOT {
                reads += 1;
                if c.get(&key(h))?.is_none() {
                    hot_misses += 1;
                }
            }
        }
    }
    let hot_reads = reads;
    say!(
        out,
        "   wrote {ENTRIES} values of {ENTRY_BYTES} bytes ({} … {}), {} in all",
        key(0),
        key(ENTRIES - 1),
        format::size((ENTRIES * ENTRY_BYTES) as u64)
    );
    say!(
        out,
        "   read the {HOT} hot keys {} … {} after every {READ_EVERY} writes ({hot_reads} reads)",
        key(0),
        key(HOT - 1)
    );
    c.run_pending_tasks()?;
    say!(out, "   ran the pending maintenance (run_pending_tasks)");
    let stats = c.stats();
    let memory = tier_stats(&stats, Tier::Memory)?;
    let sqlite = tier_stats(&stats, Tier::Sqlite)?;
    for t in [&memory, &sqlite] {
        say!(
            out,
            "   {:<6}  {} entries, {} of {} ({} of {}), {} evictions",
            t.tier,
            t.entries,
            t.bytes,
            t.max_bytes,
            format::size(t.bytes),
            format::size(t.max_bytes),
            t.evictions
        );
    }
    check(
        out,
        memory.bytes <= memory.max_bytes && memory.evictions > 0,
        "memory bytes <= memory.max_bytes, and evictions were counted",
        || format!("{memory:?}"),
    )?;
    check(
        out,
        sqlite.bytes <= sqlite.max_bytes && sqlite.evictions > 0,
        "sqlite bytes <= sqlite.max_bytes, and evictions were counted",
        || format!("{sqlite:?}"),
    )?;
    let file = c
        .inspect()?
        .ok_or_else(|| Error::new(ErrorKind::Internal, "cache C has no sqlite tier"))?;
    check(
        out,
        file.bytes == sqlite.bytes && file.entries == sqlite.entries,
        &format!(
            "the file agrees: {} rows holding {}",
            file.entries,
            format::bytes(file.bytes)
        ),
        || format!("{file:?}"),
    )?;
    check(
        out,
        hot_misses == 0,
        &format!("the hot keys were served on every one of the {hot_reads} reads"),
        || format!("{hot_misses} misses"),
    )?;
    let mut tiers = (0u64, 0u64);
    for h in 0..HOT {
        reads += 1;
        match c.lookup(&key(h))? {
            Some(hit) if hit.tier == Tier::Memory => tiers.0 += 1,
            Some(_) => tiers.1 += 1,
            None => hot_misses += 1,
        }
    }
    check(
        out,
        hot_misses == 0,
        &format!(
            "after maintenance the recently read keys survived: {} from memory, {} from sqlite",
            tiers.0, tiers.1
        ),
        || format!("{hot_misses} of them missed"),
    )?;

    // The keys never read are ordered by write time in the L2 recency index,
    // so L2 must have kept exactly the newest of them. `entry` reads the file
    // without counting as a read.
    let mut kept = Vec::with_capacity(ENTRIES - HOT);
    for i in HOT..ENTRIES {
        kept.push(c.entry(&key(i))?.is_some());
    }
    let first_kept = HOT + kept.iter().position(|&k| k).unwrap_or(kept.len());
    let suffix = kept[first_kept - HOT..].iter().all(|&k| k);
    check(
        out,
        suffix && first_kept > HOT && first_kept < ENTRIES,
        &format!(
            "L2 evicted the least recently used first: {} … {} (never read) are gone, \
             {} … {} are kept",
            key(HOT),
            key(first_kept.saturating_sub(1)),
            key(first_kept),
            key(ENTRIES - 1)
        ),
        || format!("rows kept after {}: {kept:?}", key(HOT)),
    )?;
    let l2_hot = (0..HOT)
        .map(|h| c.entry(&key(h)).map(|e| e.is_some()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|&k| k)
        .count();
    say!(
        out,
        "   (one memory hit in 64 refreshes a key's L2 recency: {l2_hot} of the {HOT} hot keys still have an L2 row)"
    );

    let sample: Vec<String> = (first_kept..ENTRIES).take(20).map(key).collect();
    let mut sample_tiers = (0u64, 0u64);
    let mut sample_misses = 0u64;
    for k in &sample {
        reads += 1;
        match c.lookup(k)? {
            Some(hit) if hit.tier == Tier::Memory => sample_tiers.0 += 1,
            Some(_) => sample_tiers.1 += 1,
            None => sample_misses += 1,
        }
    }
    check(
        out,
        sample_misses == 0,
        &format!(
            "the {} oldest kept keys are served: {} from memory, {} from sqlite",
            sample.len(),
            sample_tiers.0,
            sample_tiers.1
        ),
        || format!("{sample_misses} misses"),
    )?;
    reads += 1;
    let hit = lookup(out, &c, "item:never-written")?;
    check(out, hit.is_none(), "a key never written misses", || {
        describe(&hit)
    })?;

    say!(out, "");
    say!(out, "5. Stats of cache C");
    let stats = c.stats();
    c.close()?;
    print_stats_table(out, &stats)?;
    let tier_hits: u64 = stats.tiers.iter().map(|t| t.hits).sum();
    check(
        out,
        stats.hits + stats.misses == reads && tier_hits == stats.hits,
        &format!("the counters add up to the {reads} reads made, and the tiers' hits to the total"),
        || format!("{stats:?}"),
    )?;
    say!(out, "   as JSON:");
    let json = serde_json::to_string_pretty(&stats).map_err(|e| {
        Error::new(ErrorKind::Internal, format!("encoding the stats: {e}")).with_source(e)
    })?;
    for line in json.lines() {
        say!(out, "   {line}");
    }
    Ok(())
}

/// Hits, misses, hit rate and average time per tier, then the totals.
fn print_stats_table(out: &mut Out, stats: &Stats) -> Result<()> {
    let rate = |hits: u64, misses: u64| match hits + misses {
        0 => "-".to_owned(),
        n => format!("{:.1} %", hits as f64 * 100.0 / n as f64),
    };
    let mut table = Table::new();
    let header = [
        "tier",
        "hits",
        "misses",
        "hit rate",
        "avg time",
        "evictions",
        "entries",
        "bytes",
    ];
    // Figures are right-aligned under headers right-aligned too.
    table
        .load_style(NOTHING)
        .set_header(header.iter().enumerate().map(|(i, h)| {
            Cell::new(h).set_alignment(if i == 0 {
                CellAlignment::Left
            } else {
                CellAlignment::Right
            })
        }));
    for t in &stats.tiers {
        table.add_row([
            t.tier.as_str().to_owned(),
            t.hits.to_string(),
            t.misses.to_string(),
            rate(t.hits, t.misses),
            format!("{:.2} µs", t.avg_time_us),
            t.evictions.to_string(),
            t.entries.to_string(),
            t.bytes.to_string(),
        ]);
    }
    table.add_row([
        "total".to_owned(),
        stats.hits.to_string(),
        stats.misses.to_string(),
        format!("{:.1} %", stats.hit_rate * 100.0),
    ]);
    // Fixed widths, so that the columns stay put whatever the figures.
    let widths = [7, 8, 8, 9, 12, 10, 8, 10];
    for (i, (column, width)) in table.column_iter_mut().zip(widths).enumerate() {
        if i > 0 {
            column.set_cell_alignment(CellAlignment::Right);
        }
        column
            .set_padding((0, 1))
            .set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(width + 1)));
    }
    for line in table.lines() {
        say!(out, "   {}", line.trim_end());
    }
    say!(out, "   sets {}, deletes {}", stats.sets, stats.deletes);
    Ok(())
}
