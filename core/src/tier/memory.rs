//! L1: this process's memory.
//!
//! A byte-bounded [`quick_cache`] (its CLOCK-Pro-style policy keeps a hot
//! set and a ghost list, so a one-off scan does not flush the hot set),
//! sharded so that readers take only their shard's read lock. Each entry
//! carries its own expiry, checked against the cache's clock on every read.
//!
//! quick_cache was chosen by measurement (see `bench/`): its hit is about
//! 2–4× cheaper than moka's and its hit ratio on a Zipf(0.99) trace matches
//! moka's TinyLFU within a fraction of a point.
//!
//! # Ordering writes and promotions
//!
//! L1 is a copy of L2, filled by two kinds of callers that race: writers,
//! who store their value after committing it to L2, and readers, who copy a
//! value they read from L2 (promotion). Keys are spread over [`STRIPES`]
//! stripes, each with counters of the writes started and finished and, under
//! its lock, the change number (see [`crate::coherence`]) of the latest write
//! applied to L1:
//!
//! - a writer announces itself ([`MemoryTier::begin`]) before it writes L2,
//!   and applies its write to L1 under the stripe lock only if no later
//!   write of the stripe was applied there first; otherwise it removes the
//!   key, and the next read goes to L2;
//! - a reader takes a [`Ticket`] before it reads L2, and its promotion is
//!   applied under the stripe lock only if no write of the stripe started
//!   since (nor was running when the ticket was taken);
//! - a clear, a tag invalidation, and a poll of other processes' changes
//!   (read up to change N of the log) count as a write of every stripe
//!   numbered N: a write of this process committed before N but not yet
//!   applied is dropped instead. Otherwise a poll could consume another
//!   process's change of a key and the older write of this process be
//!   applied after it, to be served until it expires.
//!
//! So a promotion never puts back a value older than a write that returned,
//! nor resurrects a deleted key, and L1 ends a burst of writes to one key
//! with the value L2 holds (or without the key).
//!
//! # Fork
//!
//! A child process created by `fork()` must not touch a lock that one of the
//! parent's threads held at that instant. [`L1`] holds the tier behind a
//! pointer and gives a forked child a new, empty tier on its first use; the
//! parent's copy is leaked in the child (its pages are shared with the
//! parent until written, and nothing in the child reads them again).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use bytes::Bytes;
use compact_str::CompactString;
use parking_lot::Mutex;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::runtime;
use crate::stats::Counters;

/// How many stripes order the writes and promotions of L1 (see the module
/// docs); a power of two.
pub(crate) const STRIPES: usize = 64;

/// Bytes charged per L1 entry on top of its key and value: the map slot, the
/// key header (keys up to 24 bytes are held inside it), the value handle
/// and the timestamps.
pub const ENTRY_OVERHEAD: u64 = 96;

/// Reads taken from L1 for L2: `(row id, reads)`.
pub(crate) type TakenReads = Vec<(i64, u64)>;

thread_local! {
    /// Set while the map copies entries out for something that is not a
    /// read (a peek, a walk); see [`Reads`].
    static PEEKING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, whose copies of entries are not reads (see [`Reads`]).
fn peeking<R>(f: impl FnOnce() -> R) -> R {
    PEEKING.set(true);
    let out = f();
    PEEKING.set(false);
    out
}

/// The reads of one L1 entry not yet handed to L2.
///
/// The map hands an entry out only as a copy (`Clone`), made under its
/// shard's read lock from the entry in its slot, and a copy is a read
/// unless made inside [`peeking`] (which every peek and walk of this
/// module is): it adds one to the slot's count, an atomic add on a cache
/// line the lookup has just read, with no lock and no second probe. The hit
/// path reads the thread-local flag once and writes nothing but the count.
/// Threads reading one key at once share that cache line, as they share the
/// value's refcount.
#[derive(Debug, Default)]
struct Reads(AtomicU64);

impl Reads {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for Reads {
    #[inline]
    fn clone(&self) -> Self {
        let n = if PEEKING.get() {
            self.get()
        } else {
            self.0.fetch_add(1, Ordering::Relaxed) + 1
        };
        Self(AtomicU64::new(n))
    }
}

/// One L1 entry. Cloning it bumps the value's refcount and copies seven
/// integers (and counts a read, for the copy a hit takes: see [`Reads`]).
#[derive(Clone, Debug)]
pub(crate) struct MemEntry {
    pub(crate) value: Bytes,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    /// Set by [`MemoryTier::insert`]: unique to this stored value.
    pub(crate) version: u64,
    /// The id of the L2 row the value was written to or read from (0: no
    /// L2), so that a hit can mark the row used without a lookup by key.
    pub(crate) row: i64,
    /// When a hit should refresh the value from the source in the
    /// background (`refresh_ahead`; `u64::MAX`: never).
    pub(crate) refresh_ms: u64,
    /// When the key was first written, as far as this L1 knows (a rewrite
    /// keeps it).
    pub(crate) first_ms: u64,
    /// Reads of this entry, and of the one it replaced in the same row,
    /// not yet handed to L2.
    reads: Reads,
}

impl MemEntry {
    /// An entry to insert; its version is assigned on insertion.
    pub(crate) fn new(value: Bytes, created_ms: u64, expires_ms: u64) -> Self {
        Self {
            value,
            created_ms,
            expires_ms,
            version: 0,
            row: 0,
            refresh_ms: u64::MAX,
            first_ms: created_ms,
            reads: Reads::default(),
        }
    }

    /// The entry of a key first written at `first_ms`.
    pub(crate) fn first_written(mut self, first_ms: u64) -> Self {
        self.first_ms = first_ms;
        self
    }

    /// The entry, refreshed ahead from `refresh_ms` on.
    pub(crate) fn refresh_at(mut self, refresh_ms: u64) -> Self {
        self.refresh_ms = refresh_ms;
        self
    }

    /// The entry, as held in L2 row `row`.
    pub(crate) fn in_row(mut self, row: i64) -> Self {
        self.row = row;
        self
    }
}

/// Bytes an entry of `key` and a value of `value_len` bytes is charged in L1.
#[inline]
pub fn entry_size(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64 + ENTRY_OVERHEAD
}

#[derive(Clone, Copy)]
struct ByteWeighter;

impl Weighter<Key, MemEntry> for ByteWeighter {
    #[inline]
    fn weight(&self, key: &Key, val: &MemEntry) -> u64 {
        entry_size(key, val.value.len())
    }
}

/// Counts evictions, and keeps the reads of an evicted entry for L2.
#[derive(Clone)]
struct OnEvict {
    counters: Arc<Counters>,
    departed: Arc<Mutex<TakenReads>>,
}

impl Lifecycle<Key, MemEntry> for OnEvict {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, val: MemEntry) {
        self.counters.memory.evictions.incr();
        depart(&self.departed, &val, 0);
    }
}

/// Keeps the reads of `entry`, which leaves L1, for L2 to count (but
/// `not_reads` of them, lookups that turned out not to be reads).
fn depart(departed: &Mutex<TakenReads>, entry: &MemEntry, not_reads: u64) {
    let reads = entry.reads.get().saturating_sub(not_reads);
    if entry.row != 0 && reads > 0 {
        departed.lock().push((entry.row, reads));
    }
}

/// Keys of up to 24 bytes are stored inline in the map's slot, so a lookup
/// compares them without following a pointer to the heap.
type Key = CompactString;

type Map = QuickCache<Key, MemEntry, ByteWeighter, DefaultHashBuilder, OnEvict>;

/// One stripe of keys; see the module docs.
#[repr(align(64))]
#[derive(Default)]
struct Stripe {
    progress: crate::tier::Progress,
    /// The change number of the latest write applied to L1.
    applied: Mutex<u64>,
}

/// A write in progress, from [`MemoryTier::begin`] until dropped.
#[must_use = "the write is in progress until this is dropped"]
pub(crate) struct Pending<'a> {
    stripes: &'a [Stripe],
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        for stripe in self.stripes {
            stripe.progress.end();
        }
    }
}

/// Taken before reading L2; allows a promotion only if no write of the key's
/// stripe started since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    stripe: usize,
    started: Option<u64>,
}

pub(crate) struct MemoryTier {
    map: Map,
    /// Reads of entries that left L1 (evicted, expired, dropped after
    /// another process's change) before they were handed to L2; see
    /// [`MemoryTier::take_reads`].
    departed: Arc<Mutex<TakenReads>>,
    /// Whether a hit was served since [`MemoryTier::take_reads`] last
    /// walked the map. Written by a hit only when it is false (once a
    /// pass), so hits on many threads do not share a written cache line.
    unwalked: AtomicBool,
    max_bytes: u64,
    /// The largest entry L1 keeps ([`entry_size`]): one shard's share of
    /// `max_bytes`.
    max_entry: u64,
    next_version: AtomicU64,
    /// Tag -> the (key, version) pairs written with it. Kept beside the map
    /// so that untagged entries (and the hit path) carry nothing for tags; a
    /// pair whose key now holds another version is stale and ignored.
    tagged: Mutex<HashMap<String, Vec<(Key, u64)>>>,
    stripes: Box<[Stripe]>,
    hasher: DefaultHashBuilder,
    /// When (clock milliseconds) this L1 last checked the L2 file for other
    /// processes' changes (see [`crate::coherence`] and
    /// [`MemoryTier::check_due`]). `u64::MAX` in a new L1 that watches a
    /// file: its first use checks.
    pub(crate) checked_at: AtomicU64,
    /// How long a check holds, in milliseconds (`sqlite.coherence_interval`);
    /// `u64::MAX` when there is nothing to watch.
    check_every: u64,
}

impl MemoryTier {
    /// A tier whose first entry version is `first_version`; `check_every`:
    /// how often (milliseconds) an L2 file is checked for other processes'
    /// changes, `None` if there is none to watch.
    pub(crate) fn new(
        max_bytes: u64,
        counters: Arc<Counters>,
        first_version: u64,
        check_every: Option<u64>,
    ) -> Self {
        // quick_cache sizes its ghost list (recently evicted keys, which let a
        // returning key back in) from the estimated entry count; it allocates
        // nothing up front. Under-estimating shortens the ghost list and costs
        // hit ratio on small entries, so assume small ones: 64 bytes of key and
        // value per entry.
        let estimated = (max_bytes / (ENTRY_OVERHEAD + 64)).clamp(64, 1 << 24) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated)
            .weight_capacity(max_bytes)
            .build()
            .expect("estimated capacity and weight are set");
        let departed = Arc::new(Mutex::new(TakenReads::new()));
        let map = Map::with_options(
            options,
            ByteWeighter,
            DefaultHashBuilder::default(),
            OnEvict {
                counters,
                departed: departed.clone(),
            },
        );
        // A shard holds at most its share of the budget; larger entries are not kept in L1.
        let max_entry = map.shard_capacity();
        Self {
            map,
            departed,
            unwalked: AtomicBool::new(false),
            max_bytes,
            max_entry,
            next_version: AtomicU64::new(first_version),
            tagged: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            checked_at: AtomicU64::new(if check_every.is_some() { u64::MAX } else { 0 }),
            check_every: check_every.unwrap_or(u64::MAX),
        }
    }

    /// Whether a check for other processes' changes is due at `now_ms`: one
    /// interval after the last check, or at once if the clock now reads
    /// earlier than it did then. The clock is the wall clock, which can be
    /// stepped back (NTP, an administrator); waiting for it to catch up
    /// would put the checks off for as long as the step, and L1 would serve
    /// what other processes replaced meanwhile. (A thread whose `now_ms` was
    /// read just before another thread's check also checks again: a cheap
    /// `data_version` read, and rare.) Never due without a file to watch.
    #[inline]
    pub(crate) fn check_due(&self, now_ms: u64) -> bool {
        let last = self.checked_at.load(Ordering::Relaxed);
        now_ms >= last.saturating_add(self.check_every) || now_ms < last
    }

    fn stripe_of(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize & (STRIPES - 1)
    }

    /// Announces a write of `key`, before it goes to L2.
    pub(crate) fn begin(&self, key: &str) -> Pending<'_> {
        let i = self.stripe_of(key);
        let stripes = &self.stripes[i..=i];
        stripes[0].progress.begin();
        Pending { stripes }
    }

    /// Announces a write that may touch any key (a clear, a tag
    /// invalidation, another process's changes).
    pub(crate) fn begin_all(&self) -> Pending<'_> {
        for stripe in &self.stripes[..] {
            stripe.progress.begin();
        }
        Pending {
            stripes: &self.stripes,
        }
    }

    /// Applies a write of `key` that L2 committed as change `seq` (`None`:
    /// there is no L2, and the write is numbered here): stores `entry`
    /// (remembered under `tags`), or removes the key when `entry` is `None`.
    /// If a later write of the key's stripe was applied first, the key is
    /// removed instead. Returns the stored entry's version.
    pub(crate) fn apply(
        &self,
        _pending: &Pending<'_>,
        key: &str,
        entry: Option<MemEntry>,
        tags: &[String],
        seq: Option<u64>,
    ) -> Option<u64> {
        let stripe = &self.stripes[self.stripe_of(key)];
        let mut applied = stripe.applied.lock();
        let seq = seq.unwrap_or(*applied + 1);
        let deleted = entry.is_none();
        match entry {
            Some(entry) if seq > *applied => {
                *applied = seq;
                self.insert_tagged(key, entry, tags)
            }
            _ => {
                *applied = (*applied).max(seq);
                match (deleted, self.map.remove(key)) {
                    (true, Some((_, old))) => self.forget_reads(old.row),
                    // Superseded by a later write of the row: its reads stay.
                    (false, Some((_, old))) => depart(&self.departed, &old, 0),
                    (_, None) => {}
                }
                None
            }
        }
    }

    /// A ticket for promoting `key` (see [`MemoryTier::promote`]), to be
    /// taken before L2 is read.
    pub(crate) fn ticket(&self, key: &str) -> Ticket {
        let i = self.stripe_of(key);
        Ticket {
            stripe: i,
            started: self.stripes[i].progress.idle_at(),
        }
    }

    /// Stores an entry read from L2 with `ticket`, unless a write of its
    /// stripe ran since the ticket was taken; returns its version.
    pub(crate) fn promote(&self, ticket: Ticket, key: &str, entry: MemEntry) -> Option<u64> {
        let stripe = &self.stripes[ticket.stripe];
        let _applied = stripe.applied.lock();
        match stripe.progress.unchanged_since(ticket.started) {
            true => self.insert(key, entry),
            false => None,
        }
    }

    /// Drops `keys` and every entry tagged with one of `tags`, after
    /// `pending` (from [`MemoryTier::begin_all`]) was announced; `seq`: the
    /// number of the last change this invalidation covers (this process's
    /// own tag invalidation, or the head of the log other processes'
    /// changes were read up to), so that writes of this process committed
    /// before it are not applied after it. Returns how many of `keys` L1
    /// held, and the keys of the tagged entries that were fresh at `now_ms`.
    pub(crate) fn invalidate(
        &self,
        _pending: &Pending<'_>,
        keys: &[String],
        tags: &[String],
        seq: Option<u64>,
        now_ms: u64,
    ) -> (u64, Vec<String>) {
        self.with_every_stripe(seq, || {
            // Another process rewrote these keys (an upsert keeps the row):
            // the reads counted here still belong to it.
            let dropped = keys
                .iter()
                .filter_map(|key| self.map.remove(key.as_str()))
                .inspect(|(_, old)| depart(&self.departed, old, 0))
                .count() as u64;
            let fresh = tags
                .iter()
                .flat_map(|tag| self.remove_tagged(tag, now_ms))
                .collect();
            (dropped, fresh)
        })
    }

    /// Drops every entry, after `pending` (from [`MemoryTier::begin_all`])
    /// was announced; `seq`: as in [`MemoryTier::invalidate`] (this
    /// process's clear, or the head of the log when another process's
    /// changes cannot be told apart).
    pub(crate) fn invalidate_all(&self, _pending: &Pending<'_>, seq: Option<u64>) {
        self.with_every_stripe(seq, || {
            self.map.clear();
            self.tagged.lock().clear();
            self.departed.lock().clear();
        });
    }

    /// Runs `f` with every stripe locked (no write is applied and no
    /// promotion made meanwhile), then records `seq`, if any, as applied in
    /// every stripe.
    fn with_every_stripe<R>(&self, seq: Option<u64>, f: impl FnOnce() -> R) -> R {
        let mut held: Vec<_> = self.stripes.iter().map(|s| s.applied.lock()).collect();
        let out = f();
        if let Some(seq) = seq {
            for applied in &mut held {
                **applied = (**applied).max(seq);
            }
        }
        out
    }

    /// The version the next stored entry will get.
    pub(crate) fn next_version(&self) -> u64 {
        self.next_version.load(Ordering::Relaxed)
    }

    /// A fresh entry, or `None`, counted as a read of it (see [`Reads`]).
    /// An expired entry is removed on the way.
    #[inline]
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<MemEntry> {
        let entry = self.map.get(key)?;
        if now_ms < entry.expires_ms {
            if !self.unwalked.load(Ordering::Relaxed) {
                self.unwalked.store(true, Ordering::Relaxed);
            }
            return Some(entry);
        }
        self.remove_expired(key, now_ms);
        None
    }

    #[cold]
    fn remove_expired(&self, key: &str, now_ms: u64) {
        // L2 may keep the row longer than L1 (`memory.ttl`): its reads stay,
        // but for the lookup that found it expired.
        if let Some((_, old)) = self.map.remove_if(key, |e| now_ms >= e.expires_ms) {
            depart(&self.departed, &old, 1);
        }
    }

    /// The fresh entry of `key`, not counted as a read.
    pub(crate) fn peek_fresh(&self, key: &str, now_ms: u64) -> Option<MemEntry> {
        self.peek(key).filter(|e| now_ms < e.expires_ms)
    }

    /// Reads of `key` counted here and not yet handed to L2 (`row`: the L2
    /// row the count belongs to; 0: no L2): its entry's, and those of its
    /// entries that left L1.
    pub(crate) fn pending_reads(&self, key: &str, row: i64) -> u64 {
        let held = self
            .peek(key)
            .filter(|e| e.row == row)
            .map_or(0, |e| e.reads.get());
        let departed: u64 = match row {
            0 => 0,
            _ => self
                .departed
                .lock()
                .iter()
                .filter(|(r, _)| *r == row)
                .map(|(_, n)| n)
                .sum(),
        };
        held + departed
    }

    /// Takes the reads counted since the last call, of the entries held in
    /// an L2 row and of those that left L1 meanwhile, for L2 to add to the
    /// rows' read counts. Walks L1 (a shard at a time, under its write
    /// lock) only if it served a hit since the last walk.
    pub(crate) fn take_reads(&self) -> TakenReads {
        let taken = RefCell::new(std::mem::take(&mut *self.departed.lock()));
        if self.unwalked.swap(false, Ordering::Relaxed) {
            self.map.retain(|_, entry| {
                let reads = entry.reads.0.swap(0, Ordering::Relaxed);
                if entry.row != 0 && reads > 0 {
                    taken.borrow_mut().push((entry.row, reads));
                }
                true
            });
        }
        taken.into_inner()
    }

    /// Forgets the reads kept for row `row` of a deleted key: a new row
    /// given the same id must not inherit them.
    pub(crate) fn forget_reads(&self, row: i64) {
        if row != 0 {
            self.departed.lock().retain(|(r, _)| *r != row);
        }
    }

    /// Whether `key` holds a fresh entry; does not count as a use.
    pub(crate) fn contains_fresh(&self, key: &str, now_ms: u64) -> bool {
        self.peek(key).is_some_and(|e| now_ms < e.expires_ms)
    }

    /// Stores an entry under a new version, which it returns; one too large
    /// for L1 is dropped (and any older value for the key removed, so a read
    /// never sees it), and `None` returned.
    fn insert(&self, key: &str, mut entry: MemEntry) -> Option<u64> {
        if entry_size(key, entry.value.len()) > self.max_entry {
            if let Some((_, old)) = self.map.remove(key) {
                depart(&self.departed, &old, 0);
            }
            return None;
        }
        // A rewrite of the key keeps its first write, and the reads of the
        // row it rewrites not yet handed to L2 (insertions of a key are
        // ordered by its stripe's lock, held by every caller).
        let old = match self.peek(key) {
            // No L2: no walk hands reads over, so a copy of the count is
            // exact but for hits racing this write.
            Some(old) if old.row == 0 && entry.row == 0 => Some(old),
            // Removed first, so that its count is final: no hit adds to it
            // and no walk hands it over after this. Meanwhile a read of the
            // key goes to L2, which holds the value being written.
            Some(_) => self.map.remove(key).map(|(_, old)| old),
            None => None,
        };
        if let Some(old) = old {
            if old.row == entry.row {
                entry.first_ms = old.first_ms;
                entry.reads = old.reads;
            } else {
                depart(&self.departed, &old, 0);
            }
        }
        entry.version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let version = entry.version;
        self.map.insert(Key::new(key), entry);
        Some(version)
    }

    /// [`MemoryTier::insert`], remembering the entry under each of `tags`.
    fn insert_tagged(&self, key: &str, entry: MemEntry, tags: &[String]) -> Option<u64> {
        let version = self.insert(key, entry)?;
        if tags.is_empty() {
            return Some(version);
        }
        let mut tagged = self.tagged.lock();
        for tag in tags {
            tagged
                .entry(tag.clone())
                .or_default()
                .push((Key::new(key), version));
        }
        // Pairs go stale as keys are rewritten or evicted; drop them once
        // they could outnumber the entries.
        let pairs: usize = tagged.values().map(Vec::len).sum();
        if pairs > 2 * self.map.len() + 1024 {
            for list in tagged.values_mut() {
                list.retain(|(k, v)| self.peek(k).is_some_and(|e| e.version == *v));
            }
            tagged.retain(|_, list| !list.is_empty());
        }
        Some(version)
    }

    /// Removes every entry still holding a value written with `tag`;
    /// returns the keys of those that were fresh.
    pub(crate) fn remove_tagged(&self, tag: &str, now_ms: u64) -> Vec<String> {
        let pairs = self.tagged.lock().remove(tag).unwrap_or_default();
        pairs
            .into_iter()
            .filter(|(key, version)| {
                self.map
                    .remove_if(key, |e| e.version == *version)
                    .inspect(|(_, e)| self.forget_reads(e.row))
                    .is_some_and(|(_, e)| now_ms < e.expires_ms)
            })
            .map(|(key, _)| key.into_string())
            .collect()
    }

    /// Fresh keys, in no particular order.
    pub(crate) fn fresh_keys(&self, now_ms: u64) -> impl Iterator<Item = String> + '_ {
        let keys: Vec<String> = peeking(|| {
            self.map
                .iter()
                .filter(move |(_, e)| now_ms < e.expires_ms)
                .map(|(k, _)| k.into_string())
                .collect()
        });
        keys.into_iter()
    }

    /// `key`'s entry, fresh or not, not counted as a read.
    fn peek(&self, key: &str) -> Option<MemEntry> {
        peeking(|| self.map.peek(key))
    }

    pub(crate) fn entries(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.map.weight()
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The largest entry ([`entry_size`]) L1 keeps: the budget is split
    /// over the map's shards, and an entry must fit in one.
    pub(crate) fn max_entry(&self) -> u64 {
        self.max_entry
    }

    /// How many shards the budget is split over.
    pub(crate) fn shards(&self) -> usize {
        self.map.num_shards()
    }
}

/// L1 as the engine holds it: replaced by a new, empty tier on the first use
/// in a forked child (see the module docs).
pub(crate) struct L1 {
    current: AtomicPtr<MemoryTier>,
    /// The fork generation (see [`crate::runtime`]) `current` belongs to.
    generation: AtomicU64,
    /// The generation a new tier is being built for, by one thread.
    building: AtomicU64,
    max_bytes: u64,
    counters: Arc<Counters>,
    check_every: Option<u64>,
}

impl L1 {
    /// `check_every`: as in [`MemoryTier::new`].
    pub(crate) fn new(max_bytes: u64, counters: Arc<Counters>, check_every: Option<u64>) -> Self {
        let tier = MemoryTier::new(max_bytes, counters.clone(), 1, check_every);
        // A fork must be seen even by a cache without a file.
        runtime::watch_forks();
        let generation = runtime::fork_generation();
        Self {
            current: AtomicPtr::new(Box::into_raw(Box::new(tier))),
            generation: AtomicU64::new(generation),
            building: AtomicU64::new(generation),
            max_bytes,
            counters,
            check_every,
        }
    }

    /// The tier of this process.
    #[inline]
    pub(crate) fn get(&self) -> &MemoryTier {
        if runtime::fork_generation() != self.generation.load(Ordering::Acquire) {
            return self.after_fork();
        }
        // SAFETY: `current` always points to a live tier: tiers are freed
        // only by `drop`, never replaced ones (see `after_fork`).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// In a forked child: installs a new tier (one thread builds it, the
    /// others wait), leaking the parent's, whose locks may be held forever.
    #[cold]
    fn after_fork(&self) -> &MemoryTier {
        let generation = runtime::fork_generation();
        let building = self.building.load(Ordering::Acquire);
        // A build for an older generation was abandoned by a fork: take over.
        if building != generation
            && self
                .building
                .compare_exchange(building, generation, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: as in `get`; the parent's tier is only read here.
            let old = unsafe { &*self.current.load(Ordering::Acquire) };
            // Versions go on from the parent's, so a host's value kept under
            // an old version never matches a new entry.
            let tier = MemoryTier::new(
                self.max_bytes,
                self.counters.clone(),
                old.next_version(),
                self.check_every,
            );
            self.current
                .store(Box::into_raw(Box::new(tier)), Ordering::Release);
            self.generation.store(generation, Ordering::Release);
        }
        while self.generation.load(Ordering::Acquire) != generation {
            std::thread::yield_now();
        }
        // SAFETY: as in `get`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }
}

impl Drop for L1 {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw` and nothing else
        // frees it; `&mut self` means no reference from `get` is alive.
        drop(unsafe { Box::from_raw(*self.current.get_mut()) });
    }
}
