//! tierstack's side of the scenario: opening it, its readers on plain
//! threads, its disk-tier reads, its reopen and its single-key writes.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tierstack::blocking::Cache;

use tierstack::{OutboxConfig, Strategy, Tier};

use super::workload::Sizes;
use crate::measure::Round;
use crate::write_strategies::{Received, recording_source};
use crate::{BenchResult, data};

/// tierstack with both tiers at `sizes`, on the file at `path`.
pub fn open(path: &Path, sizes: Sizes) -> BenchResult<Cache> {
    Ok(Cache::builder()
        .sqlite_path(path)
        .memory_max_bytes(sizes.memory)
        .sqlite_max_bytes(sizes.disk)
        .build_blocking()?)
}

/// The file at `path` alone, without a memory tier: what a read of it
/// finds is on disk.
pub fn open_file(path: &Path, sizes: Sizes) -> BenchResult<Cache> {
    Ok(Cache::builder()
        .memory(false)
        .sqlite_path(path)
        .sqlite_max_bytes(sizes.disk)
        .build_blocking()?)
}

/// Checks, before any timing, that every item reads back through `cache`
/// and that the file at `path` holds it.
pub fn verify_preload(
    cache: &Cache,
    path: &Path,
    sizes: Sizes,
    items: &[(String, Bytes)],
) -> BenchResult<()> {
    let file = open_file(path, sizes)?;
    for (key, value) in items {
        if !in_file(&file, key, value)? {
            return Err(format!("tierstack's file does not hold {key}").into());
        }
        if cache.get(key)?.as_ref() != Some(value) {
            return Err(format!("tierstack lost {key} after preloading").into());
        }
    }
    file.close()?;
    Ok(())
}

/// Whether `file` (opened by [`open_file`]) holds `value` under `key`.
fn in_file(file: &Cache, key: &str, value: &[u8]) -> BenchResult<bool> {
    Ok(file
        .lookup(key)?
        .is_some_and(|l| l.tier == Tier::Sqlite && l.value == value))
}

/// Reads the keys of `part` of the trace through `cache` and returns how
/// many came back with their own value.
pub fn serve(cache: &Cache, keys: &[&str], part: &[u32]) -> BenchResult<usize> {
    let mut verified = 0;
    for &i in part {
        let key = keys[i as usize];
        if let Some(v) = black_box(cache.get(black_box(key))?) {
            verified += usize::from(data::value_matches(key, &v));
        }
    }
    Ok(verified)
}

/// Runs `serve` on `threads` threads, each given its own slice of `trace`;
/// the round lasts from the first thread's start to the last one's end.
pub fn threaded<F>(trace: &[u32], threads: usize, serve: &F) -> BenchResult<Round>
where
    F: Fn(&[u32]) -> BenchResult<usize> + Sync,
{
    let slice = trace.len().div_ceil(threads);
    let start = Instant::now();
    let verified = std::thread::scope(|s| {
        let readers: Vec<_> = trace
            .chunks(slice)
            .map(|part| s.spawn(move || serve(part)))
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().map_err(|_| "a reader thread panicked")?)
            .sum::<BenchResult<usize>>()
    })?;
    Ok(Round {
        elapsed: start.elapsed(),
        ops: trace.len(),
        verified,
    })
}

/// Times each read of `trace` through `lookup` and returns the times of
/// those the SQLite file served; fails on a miss or a wrong value.
pub fn disk_reads(cache: &Cache, keys: &[&str], trace: &[u32]) -> BenchResult<Vec<f64>> {
    let mut ns = Vec::new();
    for &i in trace {
        let key = keys[i as usize];
        let start = Instant::now();
        let lookup = cache.lookup(key)?;
        let elapsed = start.elapsed();
        match lookup {
            Some(l) if data::value_matches(key, &l.value) => {
                if l.tier == Tier::Sqlite {
                    ns.push(elapsed.as_nanos() as f64);
                }
            }
            _ => return Err(format!("tierstack did not read {key} back").into()),
        }
    }
    Ok(ns)
}

/// Opens the existing file and serves `key` (from the file: the new memory
/// tier is empty); the round is timed up to that read, then the cache is
/// closed.
pub fn reopen(path: &Path, sizes: Sizes, key: &str) -> BenchResult<Round> {
    let start = Instant::now();
    let cache = open(path, sizes)?;
    let lookup = cache.lookup(key)?;
    let elapsed = start.elapsed();
    cache.close()?;
    let served =
        lookup.is_some_and(|l| l.tier == Tier::Sqlite && data::value_matches(key, &l.value));
    Ok(Round {
        elapsed,
        ops: 1,
        verified: usize::from(served),
    })
}

/// Times one `set` call per item.
fn timed_sets(cache: &Cache, batch: &[(String, Bytes)]) -> BenchResult<Duration> {
    let start = Instant::now();
    for (key, value) in batch {
        cache.set(key.as_str(), value.clone())?;
    }
    Ok(start.elapsed())
}

/// A round of default-strategy `set`s through `cache`; after the timing,
/// each write must read back through it and be in its file (`file`, opened
/// by [`open_file`] on the same path).
pub fn set_round(cache: &Cache, file: &Cache, batch: &[(String, Bytes)]) -> BenchResult<Round> {
    let elapsed = timed_sets(cache, batch)?;
    let mut verified = 0;
    for (key, value) in batch {
        let read = cache.get(key)?.as_ref() == Some(value);
        verified += usize::from(read && in_file(file, key, value)?);
    }
    Ok(Round {
        elapsed,
        ops: batch.len(),
        verified,
    })
}

/// A write-behind tierstack with a source that stores at once.
pub struct WriteBehind {
    /// The cache, on a file of its own.
    pub cache: Cache,
    received: Received,
}

impl WriteBehind {
    /// Opens it on a new file at `path`.
    pub fn open(path: PathBuf, sizes: Sizes) -> BenchResult<Self> {
        let (source, received) = recording_source();
        let cache = Cache::builder()
            .sqlite_path(path)
            .memory_max_bytes(sizes.memory)
            .sqlite_max_bytes(sizes.disk)
            .source(source)
            .strategy(Strategy::WriteBehind)
            .outbox(OutboxConfig::default())
            .build_blocking()?;
        Ok(Self { cache, received })
    }

    /// A round of write-behind `set`s; after the timing, the outbox is
    /// flushed and each write is read back and found delivered once.
    pub fn round(&self, batch: &[(String, Bytes)]) -> BenchResult<Round> {
        let elapsed = timed_sets(&self.cache, batch)?;
        self.cache.flush()?;
        let mut verified = 0;
        for (key, value) in batch {
            let delivered = self
                .received
                .lock()
                .expect("not poisoned")
                .get(key)
                .is_some_and(|(v, n)| v == value && *n == 1);
            verified += usize::from(delivered && self.cache.get(key)?.as_ref() == Some(value));
        }
        Ok(Round {
            elapsed,
            ops: batch.len(),
            verified,
        })
    }
}
