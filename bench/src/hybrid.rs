//! Scenario: tierstack against foyer, the hybrid memory + disk cache a
//! user might pick instead.
//!
//! Both caches hold the same components (1.5 KB values) with a memory tier
//! weighing a tenth of them and a disk tier with room for every entry the
//! scenario writes: tierstack's SQLite file, and foyer's block engine on a
//! directory device with pread/pwrite I/O, writing each entry to disk when it
//! is inserted (`WriteOnInsertion`, so that, as in tierstack, the disk tier
//! holds every key). Both weigh an entry alike: key, value and
//! [`tierstack::tier::MEMORY_ENTRY_OVERHEAD`].
//!
//! foyer's disk writes are queued, and its block engine drops an entry when
//! its flush buffer or its submit queue is full. So after preloading (one
//! `insert` per key, as a user would), the scenario waits for foyer's
//! flushers, counts the keys its disk holds, and inserts the missing ones
//! again in small batches until its disk holds all. Then every key is read
//! back through each cache and looked up in each disk tier alone.
//!
//! Measured, in this order:
//!
//! - reads: a seeded Zipf(0.9) trace over the keys, cut into one slice per
//!   reader, served by one reader and by two (alternating rounds);
//! - disk-tier latency: the reads of one more pass of the trace (one reader)
//!   that each cache says its disk tier served: tierstack's `Lookup::tier`,
//!   foyer's `HybridCacheEntry::source`;
//! - `close()`, right after the reads;
//! - reopen: from opening the existing disk tier to the first read served
//!   (from disk, the memory tier being empty);
//! - single-key writes of new keys, one thread: tierstack's `set` with the
//!   default strategy, `set` write-behind (a cache of its own with a source
//!   that stores at once, as in [`crate::write_strategies`]), and foyer's
//!   `insert`, and beside the default `set`, a bare rusqlite `INSERT`
//!   committed on its own (WAL, `synchronous = NORMAL`: the floor of one
//!   commit per write on this machine). Each `set` is read back, and found
//!   in the file (default) or delivered once to the source (write-behind);
//!   each bare insert is read back. After foyer's flushers
//!   finished, each insert is looked up in each of its tiers alone: a tier
//!   holding the key must hold its value, and the inserts are counted as on
//!   disk, in memory only, or in neither (dropped, a miss rather than a wrong
//!   value).
//!
//! foyer runs on a tokio runtime with two workers (the machine's cores in
//! the reference setup): its flushers, its recovery and its disk reads (each
//! a pread on the runtime's blocking pool) run there. Its readers are tasks
//! on that runtime, as in an async service, one task where tierstack has one
//! thread and two where it has two; the disk-latency pass and each reopen run
//! in one task too. tierstack's readers call the blocking facade on plain
//! threads.

mod ours;
mod peer;
mod report;
mod workload;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use report::{DiskReads, HybridReport, InsertsKept};
pub use workload::{ZIPF_EXPONENT, trace};

use crate::measure::{self, Contender, Samples};
use crate::{BenchResult, data};
use workload::Sizes;

/// Sizes and repetitions of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HybridScale {
    /// Keys preloaded into each cache.
    pub keys: usize,
    /// Requests in the Zipf trace.
    pub requests: usize,
    /// Measured read rounds per contender.
    pub rounds: usize,
    /// Single-key writes of new keys per write round.
    pub writes: usize,
    /// Measured write rounds per contender.
    pub write_rounds: usize,
    /// Measured reopen rounds per contender.
    pub reopen_rounds: usize,
}

/// The samples of `contenders`, in their order, after `rounds` alternating
/// rounds.
fn alternate<const N: usize>(
    rounds: usize,
    contenders: Vec<Contender<'_>>,
) -> BenchResult<[Samples; N]> {
    let samples = measure::alternate(rounds, contenders)?;
    let found = samples.len();
    samples
        .try_into()
        .map_err(|_| format!("{found} sample sets for {N} contenders").into())
}

/// Runs the scenario at `scale`.
pub fn run(scale: HybridScale) -> BenchResult<HybridReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handle = runtime.handle();
    let dir = tempfile::tempdir()?;
    let (db, device) = (dir.path().join("tierstack.db"), dir.path().join("foyer"));
    let items = data::components(scale.keys);
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let fresh: Vec<(String, Bytes)> = (scale.keys
        ..scale.keys + scale.writes * (scale.write_rounds + 1))
        .map(|i| {
            let key = data::component_key(i);
            let value = data::component_value(&key);
            (key, value)
        })
        .collect();
    let sizes = Sizes::of(&items, items.len() + fresh.len());
    let trace = trace(scale.keys, scale.requests)?;

    let ours = ours::open(&db, sizes)?;
    for chunk in items.chunks(10_000) {
        ours.mset(chunk.iter().map(|(k, v)| (k.as_str(), v.clone())))?;
    }
    let foyer = handle.block_on(peer::open(&device, sizes))?;
    let foyer_preload_on_disk = handle.block_on(peer::preload(&foyer, &items))?;
    ours::verify_preload(&ours, &db, sizes, &items)?;
    handle.block_on(peer::verify_preload(&foyer, &items))?;

    let serve_ours = |part: &[u32]| ours::serve(&ours, &keys, part);
    let foyer_keys: Arc<[String]> = items.iter().map(|(k, _)| k.clone()).collect();
    let foyer_trace: Arc<[u32]> = trace.iter().copied().collect();
    let (trace_ref, serve_ref) = (&trace, &serve_ours);
    let (foyer_ref, keys_arc, trace_arc) = (&foyer, &foyer_keys, &foyer_trace);
    let [tierstack_1t, foyer_1t, tierstack_2t, foyer_2t] = alternate(
        scale.rounds,
        vec![
            (
                "tierstack, 1 thread",
                Box::new(move || ours::threaded(trace_ref, 1, serve_ref)),
            ),
            (
                "foyer, 1 task",
                Box::new(move || peer::tasks(handle, foyer_ref, keys_arc, trace_arc, 1)),
            ),
            (
                "tierstack, 2 threads",
                Box::new(move || ours::threaded(trace_ref, 2, serve_ref)),
            ),
            (
                "foyer, 2 tasks",
                Box::new(move || peer::tasks(handle, foyer_ref, keys_arc, trace_arc, 2)),
            ),
        ],
    )?;

    let tierstack_disk = DiskReads::of(&ours::disk_reads(&ours, &keys, &trace)?);
    let foyer_disk = DiskReads::of(&handle.block_on(handle.spawn(peer::disk_reads(
        foyer.clone(),
        foyer_keys.clone(),
        foyer_trace.clone(),
    )))??);

    let start = Instant::now();
    ours.close()?;
    let tierstack_close = start.elapsed();
    let start = Instant::now();
    handle.block_on(foyer.close())?;
    let foyer_close = start.elapsed();
    drop(foyer);

    let first = keys[trace[0] as usize];
    let (db_ref, device_ref) = (&db, &device);
    let [tierstack_reopen, foyer_reopen] = alternate(
        scale.reopen_rounds,
        vec![
            (
                "tierstack",
                Box::new(move || ours::reopen(db_ref, sizes, first)),
            ),
            (
                "foyer",
                Box::new(move || {
                    let reopen = peer::reopen(device_ref.clone(), sizes, first.to_owned());
                    handle.block_on(handle.spawn(reopen))?
                }),
            ),
        ],
    )?;

    let ours = ours::open(&db, sizes)?;
    let file = ours::open_file(&db, sizes)?;
    let foyer = handle.block_on(peer::open(&device, sizes))?;
    let behind = ours::WriteBehind::open(dir.path().join("behind.db"), sizes)?;
    let bare = crate::bare::open(&dir.path().join("bare.db"))?;
    let kept = Cell::new(InsertsKept::default());
    let (ours_ref, file_ref, foyer_ref, behind_ref, kept_ref, bare_ref) =
        (&ours, &file, &foyer, &behind, &kept, &bare);
    let [
        mut set_batches,
        mut behind_batches,
        mut insert_batches,
        mut commit_batches,
    ] = [0, 1, 2, 3].map(|_| fresh.chunks(scale.writes));
    let out_of_keys = || -> Box<dyn std::error::Error + Send + Sync> { "out of new keys".into() };
    let [set, set_behind, foyer_insert, bare_commit] = alternate(
        scale.write_rounds,
        vec![
            (
                "set",
                Box::new(move || {
                    let batch = set_batches.next().ok_or_else(out_of_keys)?;
                    ours::set_round(ours_ref, file_ref, batch)
                }),
            ),
            (
                "set write-behind",
                Box::new(move || behind_ref.round(behind_batches.next().ok_or_else(out_of_keys)?)),
            ),
            (
                "foyer insert",
                Box::new(move || {
                    let batch = insert_batches.next().ok_or_else(out_of_keys)?;
                    handle.block_on(peer::insert_round(foyer_ref, batch, kept_ref))
                }),
            ),
            (
                "rusqlite commit",
                Box::new(move || {
                    let batch = commit_batches.next().ok_or_else(out_of_keys)?;
                    crate::bare::commit_each(bare_ref, batch)
                }),
            ),
        ],
    )?;

    file.close()?;
    ours.close()?;
    behind.cache.close()?;
    handle.block_on(foyer.close())?;
    Ok(HybridReport {
        scale,
        memory_bytes: sizes.memory,
        disk_bytes: sizes.disk,
        foyer_preload_on_disk,
        tierstack_1t,
        foyer_1t,
        tierstack_2t,
        foyer_2t,
        tierstack_disk,
        foyer_disk,
        tierstack_close,
        foyer_close,
        tierstack_reopen,
        foyer_reopen,
        set,
        set_behind,
        foyer_insert,
        bare_commit,
        foyer_inserts: kept.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_and_write_of_both_caches_is_verified() {
        let scale = HybridScale {
            keys: 500,
            requests: 4_000,
            rounds: 1,
            writes: 100,
            write_rounds: 1,
            reopen_rounds: 1,
        };
        let report = run(scale).unwrap();
        let reads = scale.requests * (scale.rounds + 1);
        for s in [
            &report.tierstack_1t,
            &report.foyer_1t,
            &report.tierstack_2t,
            &report.foyer_2t,
        ] {
            assert_eq!((s.ops, s.verified), (reads, reads), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), scale.rounds);
        }
        let writes = scale.writes * (scale.write_rounds + 1);
        for s in [
            &report.set,
            &report.set_behind,
            &report.foyer_insert,
            &report.bare_commit,
        ] {
            assert_eq!((s.ops, s.verified), (writes, writes), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), scale.write_rounds);
        }
        for s in [&report.tierstack_reopen, &report.foyer_reopen] {
            assert_eq!((s.ops, s.verified), (2, 2), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), scale.reopen_rounds);
        }
        let kept = report.foyer_inserts;
        assert_eq!(kept.on_disk + kept.memory_only + kept.lost, writes);
        assert!(report.foyer_preload_on_disk <= scale.keys);
        let sizes = Sizes::of(&data::components(scale.keys), scale.keys + writes);
        assert_eq!(
            (report.memory_bytes, report.disk_bytes),
            (sizes.memory, sizes.disk)
        );
        // A tenth of the keys fits in memory, so a pass of the trace reads
        // some keys from each disk tier.
        assert!(report.tierstack_disk.reads > 0 && report.foyer_disk.reads > 0);
        assert!(report.tierstack_disk.p50_ns <= report.tierstack_disk.p99_ns);
        assert!(report.foyer_disk.p50_ns <= report.foyer_disk.p99_ns);

        let rows = report.rows();
        assert_eq!(rows.len(), 12);
        assert_eq!(rows[0].ours, "500 of 500");
        assert_eq!(rows[7].peer, "rusqlite commit");
        assert_eq!(rows[9].peer_figure, format!("{} of {writes}", kept.on_disk));
        assert!(rows.iter().all(|r| r.ratio.is_none_or(f64::is_finite)));
    }
}
