//! The other journals on the file: what a read or write of the file waits
//! for, so that a write acknowledged by any process (any cache) on the
//! file is seen by every access that starts after it.
//!
//! - **Finding them.** `<file>-wb/generation` holds a counter, mapped
//!   (`MAP_SHARED`) by every cache on the file, that a cache bumps once it
//!   has made a journal and before it writes to it. An access that finds
//!   the counter moved lists the directory again and maps the header of
//!   every journal but its own (read-only). An access that finds it
//!   unchanged costs a few atomic loads. The file's second word numbers
//!   the writes journaled on the file, in the order they are appended (see
//!   the journal's module docs, "Order"). The counter and the journals
//!   take the L2 file's permissions: a process that may only read the file
//!   maps them read-only, and waits as any other.
//! - **Waiting.** An access reads each peer's `tail` and waits until the
//!   peer's `head` has reached it: the records appended before the access
//!   began are committed. A peer's worker drains within milliseconds of a
//!   write. While it waits, a cache drains its own journal, which the peer
//!   may be waiting for in turn (two workers each about to take the
//!   outbox's lease, say): neither waits for the other's wait.
//! - **A dead peer.** Its journal is no longer locked: the waiter replays
//!   it (see [`SqliteTier::replay_orphans`]) and goes on.
//! - **A stuck peer.** A live process whose journal does not drain (it is
//!   stopped, or its drains fail) is waited for up to the busy timeout;
//!   then the access goes on with what the file holds, with a warning, and
//!   later accesses do not wait for that peer until its `head` moves.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut, MmapOptions};
use parking_lot::Mutex;

use super::{HEAD_AT, HEADER, MAGIC, TAIL_AT};
use crate::error::Result;
use crate::tier::sqlite::{BUSY_TIMEOUT, SqliteTier};

/// The counter's file in the journals' directory (never a journal).
pub(super) const GENERATION: &str = "generation";

/// How long a waiter sleeps between looks at a peer's `head`, at first;
/// the pause doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(20);
const LONGEST_PAUSE: Duration = Duration::from_millis(1);
/// How long a waiter waits before it first asks whether a peer is alive.
const ALIVE_AFTER: Duration = Duration::from_millis(5);
/// How long after a failure the counter is tried again.
const RETRY_COUNTER: Duration = Duration::from_secs(1);

/// A peer's journal, its header mapped.
struct Peer {
    name: OsString,
    file: File,
    header: Mmap,
    /// The `head` at which this peer was found stuck (`u64::MAX`: never).
    stuck_at: AtomicU64,
}

impl Peer {
    fn position(&self, at: usize) -> u64 {
        // SAFETY: the mapping is at least `HEADER` bytes, page-aligned, and
        // lives as long as `self`; the owner stores these words atomically.
        let word = unsafe { &*(self.header.as_ptr().add(at) as *const AtomicU64) };
        u64::from_le(word.load(Ordering::Acquire))
    }
}

/// What a cache knows of the other journals on its file.
pub(super) struct Peers {
    dir: PathBuf,
    /// The L2 file, whose permissions the counter takes.
    file: PathBuf,
    /// The mapped counter, once it could be made or read.
    generation: OnceLock<Counter>,
    /// When mapping it last failed (a process that may not make it, before
    /// any other did): it is tried again a second later.
    failed_at: Mutex<Option<Instant>>,
    /// The counter's value at the last listing (`u64::MAX`: never listed).
    seen: AtomicU64,
    /// How many peers are known: a lock-free check for the common case.
    count: AtomicUsize,
    known: Mutex<Vec<Arc<Peer>>>,
}

/// What [`Peers::wait`] found.
enum Waited {
    /// Every record appended before the wait began is committed.
    Settled,
    /// A peer's owner is gone: its journal is to be replayed.
    Orphaned,
}

impl Peers {
    pub(super) fn new(dir: &Path, file: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file: file.to_path_buf(),
            generation: OnceLock::new(),
            failed_at: Mutex::new(None),
            seen: AtomicU64::new(u64::MAX),
            count: AtomicUsize::new(0),
            known: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    fn mapped(&self) -> Option<&Counter> {
        match self.generation.get() {
            Some(counter) => Some(counter),
            None => self.map_counter(),
        }
    }

    #[cold]
    fn map_counter(&self) -> Option<&Counter> {
        let mut failed_at = self.failed_at.lock();
        if let Some(counter) = self.generation.get() {
            return Some(counter);
        }
        if failed_at.is_some_and(|at| at.elapsed() < RETRY_COUNTER) {
            return None;
        }
        match Counter::map(&self.dir, &self.file) {
            Ok(counter) => Some(self.generation.get_or_init(|| counter)),
            Err(err) => {
                tracing::debug!(dir = %self.dir.display(), error = %err,
                    "no journal counter yet: no journal to wait for");
                *failed_at = Some(Instant::now());
                None
            }
        }
    }

    fn counter(&self) -> Option<&AtomicU64> {
        self.mapped().map(|counter| counter.word(GENERATION_AT))
    }

    /// Announces a journal just made, before anything is written to it.
    pub(super) fn bump(&self) {
        if let Some(Counter::Written(map)) = self.mapped() {
            Counter::written(map, GENERATION_AT).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Numbers `count` writes being journaled: the first of their numbers,
    /// which follow every number taken before on the file; 0 when there is
    /// no counter to take them from.
    pub(super) fn take_orders(&self, count: usize) -> u64 {
        match self.mapped() {
            Some(Counter::Written(map)) => {
                Counter::written(map, ORDER_AT).fetch_add(count as u64, Ordering::SeqCst) + 1
            }
            _ => 0,
        }
    }

    /// Raises the last number taken to `last` if it is lower.
    pub(super) fn resume_orders(&self, last: u64) {
        if let Some(Counter::Written(map)) = self.mapped() {
            Counter::written(map, ORDER_AT).fetch_max(last, Ordering::SeqCst);
        }
    }

    /// The last number taken (0: none, or no counter).
    pub(super) fn order_now(&self) -> u64 {
        self.mapped()
            .map_or(0, |counter| counter.word(ORDER_AT).load(Ordering::SeqCst))
    }

    /// Whether there is no other journal to wait for, known without a lock:
    /// none was made since the last listing, which found none (or there is
    /// no counter: no journal can be made).
    #[inline]
    fn quiet(&self) -> bool {
        match self.generation.get() {
            Some(counter) => {
                counter.word(GENERATION_AT).load(Ordering::SeqCst)
                    == self.seen.load(Ordering::Acquire)
                    && self.count.load(Ordering::Acquire) == 0
            }
            None => false,
        }
    }

    /// Whether a peer holds records not yet committed (without waiting).
    fn pending(&self, own: impl FnOnce() -> Option<OsString>) -> bool {
        self.list(own);
        self.known
            .lock()
            .iter()
            .any(|peer| peer.position(HEAD_AT) < peer.position(TAIL_AT))
    }

    /// Waits until every peer has committed the records it appended
    /// before the call (see the module docs). `own` names this cache's
    /// journal, which is not a peer.
    fn wait(&self, own: impl FnOnce() -> Option<OsString>, drain_own: &mut dyn FnMut()) -> Waited {
        self.list(own);
        // Those with records to wait for, and how far (usually none: no
        // allocation, and no peer copied).
        let behind: Vec<(Arc<Peer>, u64)> = self
            .known
            .lock()
            .iter()
            .filter_map(|peer| {
                let target = peer.position(TAIL_AT);
                (peer.position(HEAD_AT) < target).then(|| (peer.clone(), target))
            })
            .collect();
        for (peer, target) in &behind {
            if !self.wait_for(peer, *target, drain_own) {
                return Waited::Orphaned;
            }
        }
        Waited::Settled
    }

    /// Lists the peers again if the counter moved since the last listing.
    fn list(&self, own: impl FnOnce() -> Option<OsString>) {
        let Some(counter) = self.counter() else {
            return;
        };
        let generation = counter.load(Ordering::SeqCst);
        if generation == self.seen.load(Ordering::Acquire) {
            return;
        }
        let mut known = self.known.lock();
        let own = own();
        let mut kept: HashMap<OsString, Arc<Peer>> =
            known.drain(..).map(|p| (p.name.clone(), p)).collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let skip = name == GENERATION
                    || name.as_encoded_bytes().starts_with(b".")
                    || own.as_ref() == Some(&name);
                if skip {
                    continue;
                }
                match kept.remove(&name) {
                    Some(peer) => known.push(peer),
                    None => {
                        if let Ok(peer) = open_peer(&entry.path(), name) {
                            known.push(Arc::new(peer));
                        }
                    }
                }
            }
        }
        self.count.store(known.len(), Ordering::Release);
        self.seen.store(generation, Ordering::Release);
    }

    /// Waits for `peer`'s `head` to reach `target`; `false` when its owner
    /// is gone and its journal waits to be replayed.
    #[cold]
    fn wait_for(&self, peer: &Peer, target: u64, drain_own: &mut dyn FnMut()) -> bool {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut asked = false;
        loop {
            let head = peer.position(HEAD_AT);
            if head >= target || peer.stuck_at.load(Ordering::Relaxed) == head {
                return true;
            }
            let waited = started.elapsed();
            if waited >= ALIVE_AFTER || asked {
                asked = true;
                match peer.file.metadata() {
                    // Deleted: committed and closed, or replayed.
                    Ok(metadata) if metadata.nlink() == 0 => return true,
                    Err(_) => return true,
                    Ok(_) => {}
                }
                if peer.file.try_lock().is_ok() {
                    // No process holds it: its owner ended.
                    let _ = peer.file.unlock();
                    return false;
                }
            }
            if waited >= BUSY_TIMEOUT {
                tracing::warn!(journal = %self.dir.join(&peer.name).display(),
                    waited_ms = waited.as_millis() as u64,
                    "another process's journal does not drain; going on without its writes");
                peer.stuck_at.store(head, Ordering::Relaxed);
                return true;
            }
            // The peer may be waiting for this cache's journal meanwhile:
            // draining it lets both go on.
            drain_own();
            std::thread::sleep(pause);
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// In a forked child: the parent's journal is now a peer, and the
    /// parent's threads may have held the locks.
    ///
    /// # Safety
    /// As [`crate::fork::unlock_abandoned`].
    pub(super) unsafe fn forget_after_fork(&self) {
        // SAFETY: as the caller promises.
        unsafe {
            crate::fork::unlock_abandoned(&self.known);
            crate::fork::unlock_abandoned(&self.failed_at);
        }
        self.seen.store(u64::MAX, Ordering::Release);
    }
}

impl SqliteTier {
    /// Waits until the other caches on the file have committed the records
    /// they journaled before the call, replaying the journal of one whose
    /// process ended (see the module docs).
    #[inline]
    pub(crate) fn wait_for_peers(&self) -> Result<()> {
        // No other journal, and none made since the last look: a few loads,
        // no lock and no write to memory another thread reads (reading
        // threads share nothing here). Not in a forked child before it
        // reset: the parent's journal is its peer from then on.
        if !self.forked() && self.journal.peers.quiet() {
            return Ok(());
        }
        self.wait_for_peers_slow()
    }

    #[cold]
    fn wait_for_peers_slow(&self) -> Result<()> {
        // In a forked child, resets what the parent's threads held first.
        drop(self.enter()?);
        // Each round replays at least one journal, or finds it replayed.
        for _ in 0..8 {
            let mut drain_own = || {
                if self.journal.pending()
                    && let Err(err) = self.drain(false)
                {
                    tracing::debug!(error = %err, "a drain while waiting for another journal failed");
                }
            };
            match self
                .journal
                .peers
                .wait(|| self.journal.own_name(), &mut drain_own)
            {
                Waited::Settled => return Ok(()),
                Waited::Orphaned => {
                    self.replay_orphans()?;
                }
            }
        }
        Ok(())
    }

    /// Whether another cache's journal holds records not yet committed.
    pub(crate) fn peers_pending(&self) -> bool {
        self.journal.peers.pending(|| self.journal.own_name())
    }
}

/// Where `<dir>/generation` keeps the count of journals made.
const GENERATION_AT: usize = 0;
/// Where it keeps the last number given to a journaled write.
const ORDER_AT: usize = 8;
/// Its length.
const COUNTER_BYTES: u64 = 16;

/// `<dir>/generation`, mapped: writable, or read-only for a process that
/// may not write it (nor make a journal).
enum Counter {
    Written(MmapMut),
    Read(Mmap),
}

impl Counter {
    /// Maps the counter, making the directory and the file (with the
    /// permissions of the L2 file at `file`) if need be; read-only when it
    /// may not be written.
    fn map(dir: &Path, file: &Path) -> std::io::Result<Self> {
        let path = dir.join(GENERATION);
        let writable = std::fs::create_dir_all(dir).and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(super::shared_mode(file))
                .open(&path)
        });
        let opened = match writable {
            Ok(opened) => opened,
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                let opened = File::open(&path)?;
                if opened.metadata()?.len() < COUNTER_BYTES {
                    return Err(std::io::Error::other("the journal counter is not made yet"));
                }
                // SAFETY: the counter is only ever read through atomics.
                let map = unsafe {
                    MmapOptions::new()
                        .len(COUNTER_BYTES as usize)
                        .map(&opened)?
                };
                return Ok(Self::Read(map));
            }
            Err(err) => return Err(err),
        };
        if opened.metadata()?.len() < COUNTER_BYTES {
            // Every process sets the same length: none loses a bump.
            opened.set_len(COUNTER_BYTES)?;
        }
        // SAFETY: the counter is only ever read and written through atomics.
        Ok(Self::Written(unsafe {
            MmapOptions::new()
                .len(COUNTER_BYTES as usize)
                .map_mut(&opened)?
        }))
    }

    /// The word at `at`, to load.
    fn word(&self, at: usize) -> &AtomicU64 {
        let ptr = match self {
            Self::Written(map) => map.as_ptr(),
            Self::Read(map) => map.as_ptr(),
        };
        // SAFETY: `at` is 0 or 8 of a page-aligned mapping of
        // `COUNTER_BYTES`, which lives as long as `self`; every process
        // updates the words atomically (a read-only mapping is only loaded
        // from).
        unsafe { &*(ptr.add(at) as *const AtomicU64) }
    }

    /// The word at `at` of a writable mapping, to update.
    fn written(map: &MmapMut, at: usize) -> &AtomicU64 {
        // SAFETY: as in `Counter::word`.
        unsafe { &*(map.as_ptr().add(at) as *const AtomicU64) }
    }
}

fn open_peer(path: &Path, name: OsString) -> std::io::Result<Peer> {
    let file = File::open(path)?;
    if file.metadata()?.len() < 2 * HEADER {
        return Err(std::io::Error::other("not a journal"));
    }
    // SAFETY: read through atomics only (the owner writes the header);
    // the file is never truncated while it exists.
    let header = unsafe { MmapOptions::new().len(HEADER as usize).map(&file)? };
    if &header[..8] != MAGIC {
        return Err(std::io::Error::other("not a journal"));
    }
    Ok(Peer {
        name,
        file,
        header,
        stuck_at: AtomicU64::new(u64::MAX),
    })
}
