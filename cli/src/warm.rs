//! `tierstack warm <key>...`: load keys from GitHub into the cache ahead of
//! need.
//!
//! Each key is read the way any reader would read it (a plain lookup:
//! memory, then the file, then GitHub behind the circuit breaker), so a
//! key already fresh in the file costs no request and a warmed key is
//! stored exactly as a first read would store it. A listing key (e.g.
//! `components:react`) is read, then every item it lists: the item keys
//! come from the route table ([`RouteTable::item_keys`]).
//!
//! The keys are loaded one after another, not concurrently. GitHub asks
//! clients to make the requests of one user or token serially (concurrent
//! requests count against its secondary rate limits), and a serial run
//! has no request in flight when one fails: after a rate limit or a trip
//! of the breaker, not one more request reaches GitHub. Over a kept-alive
//! connection a listing of a few dozen files takes a few seconds.
//!
//! Progress goes to stderr: a progress bar when stderr is a terminal,
//! otherwise one line a key (`warmed <key> (<tier>)` or
//! `failed <key>: <kind>: <message>`). The summary goes to stdout.

use std::collections::{HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tierstack::blocking::Cache;
use tierstack::key::quote;
use tierstack::source::github::RouteTable;
use tierstack::{BreakerState, BreakerStatus, Config, Error, ErrorKind, Lookup, Result, Tier};

use crate::out::Out;
use crate::{Outcome, check_key, format, with_cache};

/// Warms `keys` (each checked before the cache is opened) into the cache
/// of `config`, which must have an enabled `github` section.
pub fn run(out: &mut Out, config: Config, keys: Vec<String>) -> Result<Outcome> {
    let table = match &config.github {
        Some(github) if github.enabled => github.routes.table()?,
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "warm loads keys from GitHub, and the config's github section is disabled \
                 (github.enabled is false)",
            ));
        }
        None => {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "warm loads keys from GitHub, and the config has no github section: give \
                 --config a file with one (e.g. {\"github\": {}} for the shadcn-v4 routes)",
            ));
        }
    };
    for key in &keys {
        check_key(key)?;
        if table.resolve(key)?.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "key {}: no route in github.routes serves it, so GitHub has nothing to warm it with",
                    quote(key)
                ),
            ));
        }
    }
    let mut seen = HashSet::new();
    let queue: VecDeque<String> = keys
        .into_iter()
        .filter(|key| seen.insert(key.clone()))
        .collect();
    let progress = Progress::new(queue.len() as u64);
    let run = with_cache(config, |cache| {
        Ok(Warming {
            cache,
            table: &table,
            progress: &progress,
            seen,
            tally: Tally::default(),
        }
        .all(queue))
    })?;
    progress.finish();
    let Tally {
        total,
        warmed,
        cached,
        failed,
    } = run.tally;
    out.line(format_args!(
        "warmed {warmed} of {total} {}; {cached} already cached; {failed} failed",
        if total == 1 { "key" } else { "keys" }
    ))?;
    if let Some((status, left)) = &run.stopped {
        let until = match status.next_attempt_at {
            Some(at) => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                format!(
                    "until {} (in {} s)",
                    format::rfc3339(at),
                    wait.as_secs_f64().ceil()
                )
            }
            None => "until it is closed (it was opened by hand)".to_owned(),
        };
        let left = match left.len() {
            0 => String::new(),
            1 => "; 1 key not warmed".to_owned(),
            n => format!("; {n} keys not warmed"),
        };
        progress.line(format_args!(
            "tierstack: {}: GitHub is not asked while the circuit breaker is open, \
             {until}{left}: run warm again after that",
            ErrorKind::SourceUnavailable,
        ));
    }
    match failed == 0 && run.stopped.is_none() {
        true => Ok(Outcome::Done),
        false => Ok(Outcome::Miss),
    }
}

/// The counts of the summary line.
#[derive(Debug, Default)]
struct Tally {
    /// Keys known: those given, and the items of the listings read.
    total: u64,
    /// Keys now fresh in the cache.
    warmed: u64,
    /// Of those, the ones that were fresh before (no request).
    cached: u64,
    /// Keys that failed.
    failed: u64,
}

/// How a run ended: its tally and, if the breaker stopped it, the
/// breaker's status and the keys not warmed.
struct Run {
    tally: Tally,
    stopped: Option<(BreakerStatus, Vec<String>)>,
}

struct Warming<'a> {
    cache: &'a Cache,
    table: &'a RouteTable,
    progress: &'a Progress,
    /// Every key queued so far, so an item also given by name is read once.
    seen: HashSet<String>,
    tally: Tally,
}

impl Warming<'_> {
    /// Reads the keys in `queue` in order, a listing's items right after
    /// it. Once a failure leaves the breaker open, GitHub is asked nothing
    /// more: the keys left are read from the tiers alone, and those not
    /// fresh there are not warmed.
    fn all(mut self, mut queue: VecDeque<String>) -> Run {
        self.tally.total = queue.len() as u64;
        let mut stopped = None;
        let mut left = Vec::new();
        while let Some(key) = queue.pop_front() {
            self.progress.loading(&key);
            let read = match stopped {
                None => self.cache.lookup(&key),
                Some(_) => self.cache.lookup_cached(&key),
            };
            let failed = match read {
                Ok(Some(hit)) if stopped.is_none() || !hit.stale => {
                    let stale = self.hit(&key, &hit);
                    // Even an expired listing names the items worth having.
                    for (i, item) in self.items(&key, &hit).into_iter().enumerate() {
                        queue.insert(i, item);
                    }
                    stale
                }
                Ok(_) if stopped.is_some() => {
                    self.progress.line(format_args!("not warmed {key}"));
                    left.push(key);
                    continue;
                }
                Ok(_) => {
                    let message = "GitHub has no such file (a 404, remembered for negative_ttl)";
                    self.fail(&key, ErrorKind::Source, message);
                    true
                }
                Err(err) => {
                    self.fail(&key, err.kind(), err.message());
                    true
                }
            };
            if failed && stopped.is_none() {
                let status = self.cache.breaker_status();
                if status.state == BreakerState::Open && !status.allows_request {
                    stopped = Some(status);
                }
            }
        }
        Run {
            tally: self.tally,
            stopped: stopped.map(|status| (status, left)),
        }
    }

    /// Counts and reports a hit; `true` if it was only a stale copy.
    fn hit(&mut self, key: &str, hit: &Lookup) -> bool {
        if hit.stale {
            let message = format!(
                "GitHub did not answer; only an expired copy is cached (served from {})",
                hit.tier
            );
            self.fail(key, ErrorKind::Source, &message);
            return true;
        }
        self.tally.warmed += 1;
        if hit.tier != Tier::Source {
            self.tally.cached += 1;
        }
        self.progress.warmed(key, hit.tier);
        false
    }

    fn fail(&mut self, key: &str, kind: ErrorKind, message: &str) {
        self.tally.failed += 1;
        self.progress.failed(key, kind, message);
    }

    /// The keys not yet seen of the items `key` lists, if it is a listing
    /// whose route names its items; a name that makes no safe key is a
    /// failure of the listing.
    fn items(&mut self, key: &str, hit: &Lookup) -> Vec<String> {
        if !matches!(self.table.item_keys(key, &[]), Ok(Some(_))) {
            return Vec::new();
        }
        let names: Vec<String> = match serde_json::from_slice(&hit.value) {
            Ok(names) => names,
            Err(e) => {
                self.tally.total += 1;
                let message = format!("its value is not a JSON array of names: {e}");
                self.fail(key, ErrorKind::InvalidValue, &message);
                return Vec::new();
            }
        };
        let mut items = Vec::with_capacity(names.len());
        for name in &names {
            match self.table.item_keys(key, std::slice::from_ref(name)) {
                Ok(Some(keys)) => items.extend(keys),
                Ok(None) => {}
                Err(e) => {
                    self.tally.total += 1;
                    let message = format!("it lists {name:?}, which makes no safe key: skipped");
                    self.fail(key, e.kind(), &message);
                }
            }
        }
        items.retain(|item| self.seen.insert(item.clone()));
        self.tally.total += items.len() as u64;
        self.progress.add(items.len() as u64);
        items
    }
}

/// Progress on stderr: a bar on a terminal, else a line a key.
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(len: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let style = ProgressStyle::with_template("warming [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style);
        Progress::Bar(bar)
    }

    /// `n` more keys to warm.
    fn add(&self, n: u64) {
        if let Progress::Bar(bar) = self {
            bar.inc_length(n);
        }
    }

    /// `key` is being read.
    fn loading(&self, key: &str) {
        if let Progress::Bar(bar) = self {
            bar.set_message(key.to_owned());
        }
    }

    fn warmed(&self, key: &str, tier: Tier) {
        match self {
            Progress::Bar(bar) => bar.inc(1),
            Progress::Lines => self.line(format_args!("warmed {key} ({tier})")),
        }
    }

    fn failed(&self, key: &str, kind: ErrorKind, message: &str) {
        self.line(format_args!("failed {key}: {kind}: {message}"));
        if let Progress::Bar(bar) = self {
            bar.inc(1);
        }
    }

    /// A line on stderr (above the bar while it is drawn). A stderr that
    /// cannot be written is no reason to stop warming.
    fn line(&self, args: std::fmt::Arguments<'_>) {
        match self {
            Progress::Bar(bar) if !bar.is_finished() => bar.println(args.to_string()),
            _ => {
                let _ = writeln!(std::io::stderr().lock(), "{args}");
            }
        }
    }

    /// Leaves the bar as it stands (keys not warmed are not counted), on a
    /// line of its own.
    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.abandon_with_message("done");
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
