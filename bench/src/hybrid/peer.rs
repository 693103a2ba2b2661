//! foyer's side of the scenario: opening it, its preload until its disk
//! holds every key, its readers as tokio tasks, its disk-tier reads, its
//! reopen and its inserts.

use std::cell::Cell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, Load, PsyncIoEngineConfig, RecoverMode, Source,
};
use tokio::runtime::Handle;

use super::report::InsertsKept;
use super::workload::{Sizes, weight};
use crate::measure::Round;
use crate::{BenchResult, data};

/// foyer's hybrid cache as this scenario types it.
pub type Foyer = HybridCache<String, Bytes>;

/// Keys foyer gets again per batch, with a wait for its flushers after each,
/// when its disk lacks them after the preload.
const REFILL_BATCH: usize = 1_000;

/// Times foyer's disk is checked for missing keys and they are inserted
/// again before the preload gives up.
const REFILL_PASSES: usize = 10;

/// Opens foyer on the device in `dir`, recovering what the device holds.
pub async fn open(dir: &Path, sizes: Sizes) -> BenchResult<Foyer> {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(sizes.disk as usize)
        .build()?;
    Ok(HybridCacheBuilder::new()
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(sizes.memory as usize)
        .with_weighter(|k: &String, v: &Bytes| weight(k, v) as usize)
        .storage()
        .with_io_engine_config(PsyncIoEngineConfig::new())
        .with_engine_config(BlockEngineConfig::new(device))
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await?)
}

/// Whether foyer's disk tier alone (not its write queue) holds `value`
/// under `key`.
async fn on_disk(foyer: &Foyer, key: &str, value: &[u8]) -> BenchResult<bool> {
    Ok(match foyer.storage().load(key).await? {
        Load::Entry { value: got, .. } => got == value,
        _ => false,
    })
}

/// The indices among `candidates` of the items foyer's disk lacks, once its
/// flushers have finished.
async fn missing_on_disk(
    foyer: &Foyer,
    items: &[(String, Bytes)],
    candidates: impl IntoIterator<Item = usize>,
) -> BenchResult<Vec<usize>> {
    foyer.storage().wait().await;
    let mut missing = Vec::new();
    for i in candidates {
        let (key, value) = &items[i];
        if !on_disk(foyer, key, value).await? {
            missing.push(i);
        }
    }
    Ok(missing)
}

/// Preloads `items` into foyer, one `insert` each, and returns how many its
/// disk held then; then inserts the missing ones again, a batch at a time
/// with a wait for the flushers after each, until its disk holds all.
pub async fn preload(foyer: &Foyer, items: &[(String, Bytes)]) -> BenchResult<usize> {
    for (key, value) in items {
        foyer.insert(key.clone(), value.clone());
    }
    let mut missing = missing_on_disk(foyer, items, 0..items.len()).await?;
    let first_pass = items.len() - missing.len();
    for _ in 0..REFILL_PASSES {
        if missing.is_empty() {
            return Ok(first_pass);
        }
        for batch in missing.chunks(REFILL_BATCH) {
            for &i in batch {
                foyer.insert(items[i].0.clone(), items[i].1.clone());
            }
            foyer.storage().wait().await;
        }
        missing = missing_on_disk(foyer, items, missing).await?;
    }
    Err(format!(
        "foyer's disk still lacks {} keys after refilling",
        missing.len()
    )
    .into())
}

/// Checks, before any timing, that every item reads back through foyer.
pub async fn verify_preload(foyer: &Foyer, items: &[(String, Bytes)]) -> BenchResult<()> {
    for (key, value) in items {
        if foyer.get(key.as_str()).await?.as_ref().map(|e| e.value()) != Some(value) {
            return Err(format!("foyer lost {key} after preloading").into());
        }
    }
    Ok(())
}

/// Serves `trace` through foyer from `tasks` tokio tasks on `handle`'s
/// runtime, each given its own slice; the round lasts from the first
/// task's spawn to the last one's end.
pub fn tasks(
    handle: &Handle,
    foyer: &Foyer,
    keys: &Arc<[String]>,
    trace: &Arc<[u32]>,
    tasks: usize,
) -> BenchResult<Round> {
    let slice = trace.len().div_ceil(tasks);
    let start = Instant::now();
    let verified = handle.block_on(async {
        let readers: Vec<_> = (0..trace.len())
            .step_by(slice)
            .map(|from| {
                let (foyer, keys, trace) = (foyer.clone(), keys.clone(), trace.clone());
                tokio::spawn(async move {
                    let mut verified = 0;
                    for &i in &trace[from..(from + slice).min(trace.len())] {
                        let key = keys[i as usize].as_str();
                        if let Some(e) = black_box(foyer.get(black_box(key)).await?) {
                            verified += usize::from(data::value_matches(key, e.value()));
                        }
                    }
                    BenchResult::Ok(verified)
                })
            })
            .collect();
        let mut verified = 0;
        for reader in readers {
            verified += reader.await??;
        }
        BenchResult::Ok(verified)
    })?;
    Ok(Round {
        elapsed: start.elapsed(),
        ops: trace.len(),
        verified,
    })
}

/// Times each read of `trace` through `get` and returns the times of those
/// foyer's disk tier served; fails on a miss or a wrong value.
pub async fn disk_reads(
    foyer: Foyer,
    keys: Arc<[String]>,
    trace: Arc<[u32]>,
) -> BenchResult<Vec<f64>> {
    let mut ns = Vec::new();
    for &i in trace.iter() {
        let key = keys[i as usize].as_str();
        let start = Instant::now();
        let entry = foyer.get(key).await?;
        let elapsed = start.elapsed();
        match entry {
            Some(e) if data::value_matches(key, e.value()) => {
                if e.source() == Source::Disk {
                    ns.push(elapsed.as_nanos() as f64);
                }
            }
            _ => return Err(format!("foyer did not read {key} back").into()),
        }
    }
    Ok(ns)
}

/// Opens foyer on its existing device, recovering its index, and serves
/// `key` from disk; timed up to that read, then closed.
pub async fn reopen(dir: PathBuf, sizes: Sizes, key: String) -> BenchResult<Round> {
    let start = Instant::now();
    let foyer = open(&dir, sizes).await?;
    let entry = foyer.get(key.as_str()).await?;
    let elapsed = start.elapsed();
    let served =
        entry.is_some_and(|e| e.source() == Source::Disk && data::value_matches(&key, e.value()));
    foyer.close().await?;
    Ok(Round {
        elapsed,
        ops: 1,
        verified: usize::from(served),
    })
}

/// A round of `insert`s of new keys. After the timing and a wait for the
/// flushers, each key is looked up in each tier alone: a tier holding it
/// must hold its value. A key neither tier holds is a write foyer dropped:
/// a miss, not a wrong value, so it is verified and counted in `kept` as
/// lost, as the others are counted as on disk or in memory only.
pub async fn insert_round(
    foyer: &Foyer,
    batch: &[(String, Bytes)],
    kept: &Cell<InsertsKept>,
) -> BenchResult<Round> {
    let start = Instant::now();
    for (key, value) in batch {
        black_box(foyer.insert(key.clone(), value.clone()));
    }
    let elapsed = start.elapsed();
    foyer.storage().wait().await;
    let (mut verified, mut counts) = (0, kept.get());
    for (key, value) in batch {
        let disk = match foyer.storage().load(key.as_str()).await? {
            Load::Entry { value: got, .. } => Some(got == *value),
            _ => None,
        };
        let memory = foyer.memory().get(key.as_str()).map(|e| e.value() == value);
        let right = disk != Some(false) && memory != Some(false);
        verified += usize::from(right);
        match (disk, memory) {
            (Some(_), _) => counts.on_disk += 1,
            (None, Some(_)) => counts.memory_only += 1,
            (None, None) => counts.lost += 1,
        }
    }
    kept.set(counts);
    Ok(Round {
        elapsed,
        ops: batch.len(),
        verified,
    })
}
