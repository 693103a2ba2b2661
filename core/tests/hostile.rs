//! Attacks on L1's ordering and coherence within one process.
//!
//! - Promotions (by `get` and `mget`) racing `mset` of several keys, `clear`,
//!   `invalidate_tag`, deletes, a second writer of the same key (setting,
//!   deleting, clearing or invalidating the first one's tag), and writes
//!   of other keys of the same stripe: once the writes returned, L1 agrees
//!   with L2 (read through a cache on the same file without L1).
//! - A second cache on the same file (another origin, as another process
//!   would be) writing while this cache writes and polls.
//! - Every read method agrees with `get` right after another cache's change
//!   (`coherence_interval: 0`), and one interval after it.
//! - Values larger than an L1 shard; a wall clock stepped back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use tierstack::blocking::Cache;
use tierstack::source::{self, Fetched};
use tierstack::{Bytes, ManualClock, SetOptions, Strategy, Tier};

/// Scheduling and the coarse clock's resolution.
const SLACK: Duration = Duration::from_millis(15);

fn open(path: &Path, interval: Duration) -> Cache {
    open_with(path, interval, Strategy::ReadThrough)
}

/// With write-behind, a set goes through the journal (a source that
/// stores nothing takes the writes).
fn open_with(path: &Path, interval: Duration, strategy: Strategy) -> Cache {
    let source = source::from_blocking_fn(|_key: &str| Ok(Fetched::NotFound))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    Cache::builder()
        .sqlite_path(path)
        .coherence_interval(interval)
        .source(source)
        .strategy(strategy)
        .build_blocking()
        .unwrap()
}

/// A cache without L1: what the file holds.
fn file(path: &Path) -> Cache {
    Cache::builder()
        .sqlite_path(path)
        .memory(false)
        .build_blocking()
        .unwrap()
}

fn text(value: Option<Bytes>) -> Option<String> {
    value.map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn texts(values: Vec<Option<Bytes>>) -> Vec<Option<String>> {
    values.into_iter().map(text).collect()
}

/// After each round, what `cache` serves (from L1) against what the file
/// holds (`truth`, a cache on the file without L1).
struct Agrees<'a> {
    cache: &'a Cache,
    truth: &'a Cache,
    /// (round, L1, L2) where they differed.
    wrong: Vec<(usize, Option<String>, Option<String>)>,
}

impl<'a> Agrees<'a> {
    fn new(cache: &'a Cache, truth: &'a Cache) -> Self {
        Self {
            cache,
            truth,
            wrong: Vec::new(),
        }
    }

    fn check(&mut self, round: usize, key: &str) {
        let got = text(self.cache.get(key).unwrap());
        let want = text(self.truth.get(key).unwrap());
        if got != want {
            self.wrong.push((round, got, want));
        }
    }

    fn assert(&self) {
        assert!(
            self.wrong.is_empty(),
            "rounds where L1 disagreed with L2 (round, L1, L2): {:?}",
            self.wrong
        );
    }
}

/// Runs `rounds` rounds: `prepare(round)` alone, then `workers` (each on
/// its own thread) and `main(round)` at once, then `check(round)` alone.
fn rounds(
    rounds: usize,
    mut prepare: impl FnMut(usize),
    workers: Vec<Box<dyn Fn(usize) + Send>>,
    mut main: impl FnMut(usize),
    mut check: impl FnMut(usize),
) {
    let start = Arc::new(Barrier::new(workers.len() + 1));
    let done = Arc::new(Barrier::new(workers.len() + 1));
    let threads: Vec<_> = workers
        .into_iter()
        .map(|work| {
            let (start, done) = (start.clone(), done.clone());
            thread::spawn(move || {
                for round in 0..rounds {
                    start.wait();
                    work(round);
                    done.wait();
                }
            })
        })
        .collect();
    for round in 0..rounds {
        prepare(round);
        start.wait();
        main(round);
        done.wait();
        check(round);
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn mget_promotions_never_undo_an_mset_a_clear_a_tag_invalidation_or_a_delete() {
    mget_promotions_racing_writes(Strategy::ReadThrough);
}

#[test]
fn mget_promotions_never_undo_a_journaled_mset_a_clear_a_tag_invalidation_or_a_delete() {
    mget_promotions_racing_writes(Strategy::WriteBehind);
}

fn mget_promotions_racing_writes(strategy: Strategy) {
    const ROUNDS: usize = 800;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mget.db");
    let cache = open_with(&path, Duration::from_millis(50), strategy);
    let (seeder, truth) = (file(&path), file(&path));
    let keys = |round: usize| -> Vec<String> { (0..4).map(|i| format!("r{round}:{i}")).collect() };
    let reader = cache.clone();
    let mut wrong = Vec::new();
    rounds(
        ROUNDS,
        // The round's keys are in L2 only, as far as `cache` knows.
        |round| {
            let tagged = SetOptions::new().tags([format!("t{round}")]);
            let old = keys(round).into_iter().map(|k| (k, "old"));
            seeder.mset_with(old, tagged).unwrap();
        },
        vec![Box::new(move |round| {
            drop(reader.mget(&keys(round)).unwrap())
        })],
        |round| {
            let keys = keys(round);
            match round % 4 {
                0 => cache.mset(keys.iter().map(|k| (k.clone(), "new"))).unwrap(),
                1 => cache.clear().unwrap(),
                2 => assert_eq!(cache.invalidate_tag(&format!("t{round}")).unwrap(), 4),
                _ => {
                    cache
                        .mset(keys[..2].iter().map(|k| (k.clone(), "new")))
                        .unwrap();
                    assert!(cache.delete(&keys[2]).unwrap());
                }
            }
        },
        |round| {
            let keys = keys(round);
            let new = Some("new".to_owned());
            let expected = match round % 4 {
                0 => vec![new.clone(); 4],
                1 | 2 => vec![None; 4],
                _ => vec![new.clone(), new, None, Some("old".to_owned())],
            };
            assert_eq!(texts(truth.mget(&keys).unwrap()), expected);
            let got = texts(cache.mget(&keys).unwrap());
            let one_by_one: Vec<_> = keys.iter().map(|k| text(cache.get(k).unwrap())).collect();
            if got != expected || one_by_one != expected {
                wrong.push((round, got, one_by_one));
            }
        },
    );
    assert!(
        wrong.is_empty(),
        "rounds where L1 disagreed with L2: {wrong:?}"
    );
}

#[test]
fn two_writers_and_a_reader_of_one_key_leave_l1_agreeing_with_l2() {
    two_writers_and_a_reader(Strategy::ReadThrough);
}

#[test]
fn two_journaling_writers_and_a_reader_of_one_key_leave_l1_agreeing_with_l2() {
    two_writers_and_a_reader(Strategy::WriteBehind);
}

fn two_writers_and_a_reader(strategy: Strategy) {
    const ROUNDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writers.db");
    let cache = open_with(&path, Duration::from_millis(50), strategy);
    let (seeder, truth) = (file(&path), file(&path));
    let key = |round: usize| format!("k{round}");
    let (a, b, reader) = (cache.clone(), cache.clone(), cache.clone());
    let mut agrees = Agrees::new(&cache, &truth);
    rounds(
        ROUNDS,
        |round| seeder.set(key(round), "old").unwrap(),
        vec![
            Box::new(move |round| {
                let tagged = SetOptions::new().tags(["a"]);
                a.set_with(key(round), format!("a{round}"), tagged).unwrap();
            }),
            // The second writer sets, deletes, clears or invalidates the
            // first one's tag.
            Box::new(move |round| match round % 5 {
                2 => drop(b.delete(&key(round)).unwrap()),
                3 => b.clear().unwrap(),
                4 => drop(b.invalidate_tag("a").unwrap()),
                _ => b.set(key(round), format!("b{round}")).unwrap(),
            }),
            Box::new(move |round| drop(reader.get(&key(round)).unwrap())),
        ],
        |_| {},
        |round| agrees.check(round, &key(round)),
    );
    agrees.assert();
}

/// A load committed directly while a journaled set of its key is applied
/// to L1: which of the two L2 ends with depends on the drain, and L1 must
/// end with the same (or without the key).
#[test]
fn a_load_racing_a_journaled_set_leaves_l1_agreeing_with_l2() {
    const ROUNDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loads.db");
    let source = source::from_blocking_fn(|_key: &str| Ok(Fetched::value("loaded")))
        .with_writes(|_key, _value, _id| Ok(()), |_key, _id| Ok(()));
    let cache = Cache::builder()
        .sqlite_path(&path)
        .coherence_interval(Duration::from_millis(50))
        .source(source)
        .strategy(Strategy::WriteBehind)
        .build_blocking()
        .unwrap();
    let truth = file(&path);
    let key = |round: usize| format!("k{round}");
    let (writer, loader) = (cache.clone(), cache.clone());
    let mut agrees = Agrees::new(&cache, &truth);
    rounds(
        ROUNDS,
        |_| {},
        vec![
            Box::new(move |round| writer.set(key(round), format!("w{round}")).unwrap()),
            Box::new(move |round| drop(loader.get(&key(round)).unwrap())),
        ],
        |_| {},
        |round| agrees.check(round, &key(round)),
    );
    agrees.assert();
}

#[test]
fn writes_of_keys_sharing_a_stripe_never_let_a_promotion_through() {
    // Four times as many keys as L1 has stripes: many share one.
    const KEYS: usize = 256;
    const ROUNDS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stripes.db");
    let cache = open(&path, Duration::from_millis(50));
    let (seeder, truth) = (file(&path), file(&path));
    let keys =
        |round: usize| -> Vec<String> { (0..KEYS).map(|i| format!("s{round}:{i}")).collect() };
    let (setter, deleter, reader) = (cache.clone(), cache.clone(), cache.clone());
    let mut wrong = Vec::new();
    rounds(
        ROUNDS,
        |round| {
            seeder
                .mset(keys(round).into_iter().map(|k| (k, "old")))
                .unwrap()
        },
        vec![
            Box::new(move |round| {
                let even = keys(round).into_iter().step_by(2).map(|k| (k, "new"));
                setter.mset(even).unwrap();
            }),
            Box::new(move |round| {
                for key in keys(round).iter().skip(1).step_by(2) {
                    assert!(deleter.delete(key).unwrap());
                }
            }),
            Box::new(move |round| drop(reader.mget(&keys(round)).unwrap())),
        ],
        |round| {
            // Single reads too, promoting one key at a time.
            for key in keys(round).iter().step_by(7) {
                drop(cache.get(key).unwrap());
            }
        },
        |round| {
            let keys = keys(round);
            let expected: Vec<_> = (0..KEYS)
                .map(|i| (i % 2 == 0).then(|| "new".to_owned()))
                .collect();
            assert_eq!(texts(truth.mget(&keys).unwrap()), expected);
            let got = texts(cache.mget(&keys).unwrap());
            let bad: Vec<_> = (0..KEYS).filter(|&i| got[i] != expected[i]).collect();
            if !bad.is_empty() {
                wrong.push((round, bad));
            }
        },
    );
    assert!(
        wrong.is_empty(),
        "rounds and keys where L1 disagreed with L2: {wrong:?}"
    );
}

#[test]
fn mget_of_a_key_twice_agrees_with_get() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twice.db");
    let cache = open(&path, Duration::from_millis(50));
    // In L2 only, as far as `cache` knows: both occurrences are read there.
    file(&path).set("k", "v").unwrap();
    let v = Some("v".to_owned());
    assert_eq!(
        texts(cache.mget(&["k", "missing", "k"]).unwrap()),
        [v.clone(), None, v.clone()]
    );
    // Now from L1.
    assert_eq!(cache.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(texts(cache.mget(&["k", "k"]).unwrap()), [v.clone(), v]);
}

/// How [`batch_racing`] changes the batch's last key: with this cache and
/// another one on the same file, the key and the round.
type Change = fn(&Cache, &Cache, &str, usize);

/// This cache writes a batch of keys (tagged `batch`); right after the batch
/// committed, and while this cache is still putting it into L1, `change`
/// changes its last key, and a thread of this cache keeps polling the file
/// (`coherence_interval: 0`). Afterwards this cache must read the last key
/// as the file holds it. Returns the rounds where it did not: (round,
/// served, file).
fn batch_racing(change: Change) -> Vec<(usize, Option<String>, Option<String>)> {
    const BATCH: usize = 2000;
    const ROUNDS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.db");
    let cache = open(&path, Duration::ZERO);
    let other = open(&path, Duration::from_millis(50));
    let truth = file(&path);
    let keys: Arc<Vec<String>> = Arc::new((0..BATCH).map(|i| format!("k{i}")).collect());
    let last = keys[BATCH - 1].clone();

    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (cache, stop) = (cache.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                cache.has("probe").unwrap();
            }
        })
    };
    let (go, rounds) = mpsc::channel::<usize>();
    let (changed, done) = mpsc::channel::<()>();
    let changer = {
        let (keys, truth, cache) = (keys.clone(), file(&path), cache.clone());
        thread::spawn(move || {
            for round in rounds {
                // As soon as the batch is in the file.
                let mark = Some(format!("a{round}"));
                while text(truth.get(&keys[0]).unwrap()) != mark {
                    thread::yield_now();
                }
                change(&cache, &other, &keys[BATCH - 1], round);
                changed.send(()).unwrap();
            }
        })
    };
    let mut wrong = Vec::new();
    let tagged = SetOptions::new().tags(["batch"]);
    for round in 0..ROUNDS {
        go.send(round).unwrap();
        let batch = keys.iter().map(|k| (k.clone(), format!("a{round}")));
        cache.mset_with(batch, tagged.clone()).unwrap();
        done.recv().unwrap();
        let (got, want) = (
            text(cache.get(&last).unwrap()),
            text(truth.get(&last).unwrap()),
        );
        if got != want {
            wrong.push((round, got, want));
        }
    }
    drop(go);
    stop.store(true, Ordering::Relaxed);
    changer.join().unwrap();
    poller.join().unwrap();
    wrong
}

/// The poll can consume the other cache's change before this cache has put
/// its own, older write of that key into L1.
#[test]
fn own_writes_racing_another_caches_change_and_a_poll_never_leave_l1_stale() {
    let wrong = batch_racing(|_, other, last, round| match round % 3 {
        0 => other.set(last, format!("b{round}")).unwrap(),
        1 => assert!(other.delete(last).unwrap()),
        _ => other.clear().unwrap(),
    });
    assert!(
        wrong.is_empty(),
        "rounds where this cache served its own older write after the other cache's \
         change (round, served, file): {wrong:?}"
    );
}

/// The same with this cache's own clear, tag invalidation or delete, on
/// another thread.
#[test]
fn own_writes_racing_own_clear_tag_invalidation_or_delete_never_leave_l1_stale() {
    let wrong = batch_racing(|cache, _, last, round| match round % 3 {
        0 => cache.clear().unwrap(),
        1 => assert_eq!(cache.invalidate_tag("batch").unwrap(), 2000),
        _ => assert!(cache.delete(last).unwrap()),
    });
    assert!(
        wrong.is_empty(),
        "rounds where this cache served its write after its own later change \
         (round, served, file): {wrong:?}"
    );
}

/// Every read method of `cache`, against what it should see.
fn agree(cache: &Cache, expected: &[(&str, Option<&str>)], after: &str) {
    let names: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    let want: Vec<Option<String>> = expected.iter().map(|(_, v)| v.map(str::to_owned)).collect();
    let present: Vec<String> = expected
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| (*k).to_owned())
        .collect();
    let gets: Vec<_> = names.iter().map(|k| text(cache.get(k).unwrap())).collect();
    assert_eq!(gets, want, "get after {after}");
    let lookups: Vec<_> = names
        .iter()
        .map(|k| text(cache.lookup(k).unwrap().map(|l| l.value)))
        .collect();
    assert_eq!(lookups, want, "lookup after {after}");
    assert_eq!(
        texts(cache.mget(&names).unwrap()),
        want,
        "mget after {after}"
    );
    let has: Vec<_> = names.iter().map(|k| cache.has(k).unwrap()).collect();
    let want_has: Vec<_> = want.iter().map(Option::is_some).collect();
    assert_eq!(has, want_has, "has after {after}");
    assert_eq!(cache.keys("*").unwrap(), present, "keys after {after}");
    assert_eq!(
        cache.len().unwrap(),
        present.len() as u64,
        "len after {after}"
    );
}

/// A change by name, and what every read sees after it.
type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, Vec<(&'a str, Option<&'a str>)>);

/// `writer` changes the file while `reader` (another cache on it) holds the
/// old state in L1; after `wait`, every read of `reader` sees the change.
fn every_read_follows_another_cache(interval: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reads.db");
    let writer = open(&path, interval);
    let reader = open(&path, interval);
    let wait = || {
        if !interval.is_zero() {
            thread::sleep(interval + SLACK);
        }
    };
    let tagged = SetOptions::new().tags(["t"]);
    let steps: Vec<Step<'_>> = vec![
        (
            "set",
            Box::new(|| writer.set("a", "1").unwrap()),
            vec![("a", Some("1")), ("b", None)],
        ),
        (
            "a second set",
            Box::new(|| writer.set("a", "2").unwrap()),
            vec![("a", Some("2")), ("b", None)],
        ),
        (
            "mset",
            Box::new(|| writer.mset([("a", "3"), ("b", "1")]).unwrap()),
            vec![("a", Some("3")), ("b", Some("1"))],
        ),
        (
            "delete",
            Box::new(|| assert!(writer.delete("a").unwrap())),
            vec![("a", None), ("b", Some("1"))],
        ),
        (
            "a tagged set",
            Box::new(|| writer.set_with("a", "4", tagged.clone()).unwrap()),
            vec![("a", Some("4")), ("b", Some("1"))],
        ),
        (
            "invalidate_tag",
            Box::new(|| assert_eq!(writer.invalidate_tag("t").unwrap(), 1)),
            vec![("a", None), ("b", Some("1"))],
        ),
        (
            "a set after it",
            Box::new(|| writer.set("a", "5").unwrap()),
            vec![("a", Some("5")), ("b", Some("1"))],
        ),
        (
            "clear",
            Box::new(|| writer.clear().unwrap()),
            vec![("a", None), ("b", None)],
        ),
    ];
    for (name, change, expected) in steps {
        // The reader holds the state before the change in L1 (as far as it
        // promotes: a miss is not cached).
        for key in ["a", "b"] {
            drop(reader.get(key).unwrap());
        }
        change();
        wait();
        agree(&reader, &expected, name);
    }
}

#[test]
fn with_interval_zero_every_read_follows_another_cache_at_once() {
    every_read_follows_another_cache(Duration::ZERO);
}

#[test]
fn every_read_follows_another_cache_within_the_interval() {
    every_read_follows_another_cache(Duration::from_millis(30));
}

#[test]
fn values_larger_than_an_l1_shard_are_never_served_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.db");
    let small_l1 = |path: &Path| {
        Cache::builder()
            .sqlite_path(path)
            .memory_max_bytes(1 << 20)
            .coherence_interval(Duration::ZERO)
            .build_blocking()
            .unwrap()
    };
    let (a, b) = (small_l1(&path), small_l1(&path));
    // Larger than the whole L1, so larger than any of its shards.
    let big = Bytes::from(vec![b'x'; 3 << 19]);
    a.set("k", "small").unwrap();
    assert_eq!(b.lookup("k").unwrap().unwrap().tier, Tier::Sqlite);
    assert_eq!(b.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    a.set("k", big.clone()).unwrap();
    for _ in 0..2 {
        let found = b.lookup("k").unwrap().unwrap();
        assert_eq!((found.value.len(), found.tier), (big.len(), Tier::Sqlite));
        assert_eq!(
            b.mget(&["k"]).unwrap()[0].as_ref().map(Bytes::len),
            Some(big.len())
        );
    }
    // This cache's own writes: a large value replaces a small one in L1.
    b.set("k", "small again").unwrap();
    assert_eq!(b.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    b.set("k", big.clone()).unwrap();
    let found = b.lookup("k").unwrap().unwrap();
    assert_eq!((found.value.len(), found.tier), (big.len(), Tier::Sqlite));
    a.set("k", "small from a").unwrap();
    assert_eq!(text(b.get("k").unwrap()).as_deref(), Some("small from a"));
}

#[test]
fn a_wall_clock_stepped_back_does_not_stop_the_checks_for_other_caches_changes() {
    let interval = Duration::from_millis(50);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clock.db");
    let clock = ManualClock::starting_now();
    let reader = Cache::builder()
        .sqlite_path(&path)
        .coherence_interval(interval)
        .clock(clock.clone())
        .build_blocking()
        .unwrap();
    let writer = open(&path, interval);
    writer.set("k", "before").unwrap();
    assert_eq!(text(reader.get("k").unwrap()).as_deref(), Some("before"));
    assert_eq!(reader.lookup("k").unwrap().unwrap().tier, Tier::Memory);
    // The wall clock is stepped back an hour (NTP, an administrator), then
    // runs on.
    clock.set(clock.now_ms() - 3_600_000);
    writer.set("k", "after").unwrap();
    thread::sleep(interval + SLACK);
    clock.advance(interval + SLACK);
    assert_eq!(text(reader.get("k").unwrap()).as_deref(), Some("after"));
}
