//! A process's journal file, mapped: made locked with its blocks
//! allocated, records written into its ring, and its positions stored in
//! its header (see the parent module's docs for the layout).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use super::record::{Payload, record_len};
use super::{HEADER, MAGIC, WRAP, peers};
use crate::tier::sqlite::outbox::Behind;
use crate::tier::sqlite::row::Row;

/// A record acknowledged and not yet committed to the file.
pub(super) struct Queued {
    pub(super) row: Row,
    /// Its outbox row: `None` for a write of a strategy that writes the
    /// source first or never.
    pub(super) behind: Option<Behind>,
    /// The journal position just past it.
    pub(super) end: u64,
    /// Its number among the writes journaled on the file (see [`peers`]);
    /// 0 when unknown (read back from a journal's bytes).
    pub(super) order: u64,
}

/// This process's journal file, mapped.
pub(super) struct Ring {
    pub(super) path: PathBuf,
    /// Holds the `flock` for as long as the ring lives.
    _file: File,
    pub(super) map: MmapMut,
    /// The ring's size: the file's, less the header.
    pub(super) ring: u64,
    pub(super) head: u64,
    pub(super) tail: u64,
    /// The position up to which the drainer has made the ring's pages
    /// writable (see [`Ring::take_warm_spans`]).
    pub(super) warmed: u64,
    pub(super) queued: VecDeque<Queued>,
}

impl Ring {
    /// Creates a journal in `dir`, locked, with its blocks allocated and
    /// the permissions `mode`.
    pub(super) fn create(dir: &Path, size: u64, mode: u32) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let name = format!(
            "{}-{:016x}",
            std::process::id(),
            crate::outbox::random_u64()
        );
        let path = dir.join(&name);
        let temporary = dir.join(format!(".{name}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        let made = (|| {
            file.try_lock().map_err(std::io::Error::other)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            // The counter follows a file shared since it was made (by its
            // owner: another's is left as it is).
            let _ = std::fs::set_permissions(
                dir.join(peers::GENERATION),
                std::fs::Permissions::from_mode(mode),
            );
            allocate(&file, size)?;
            // SAFETY: the file is this process's own (created above, locked,
            // not yet visible under a journal's name); nothing else maps it.
            let mut map = unsafe { MmapMut::map_mut(&file)? };
            map[..8].copy_from_slice(MAGIC);
            std::fs::rename(&temporary, &path)?;
            Ok(map)
        })();
        let map = match made {
            Ok(map) => map,
            Err(err) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(err);
            }
        };
        Ok(Self {
            path,
            _file: file,
            map,
            ring: size - HEADER,
            head: 0,
            tail: 0,
            warmed: 0,
            queued: VecDeque::new(),
        })
    }

    /// Writes one record at `tail` (wrapping first if it would cross the
    /// ring's end) and returns the position past it; `tail` is not yet
    /// stored in the header.
    pub(super) fn put(&mut self, payload: &Payload<'_>) -> u64 {
        let (size, len) = (payload.len(), record_len(payload.len()));
        let offset = self.tail % self.ring;
        if offset + len > self.ring {
            let at = (HEADER + offset) as usize;
            self.map[at..at + 4].copy_from_slice(&WRAP.to_le_bytes());
            self.tail += self.ring - offset;
        }
        let at = (HEADER + self.tail % self.ring) as usize;
        let body = &mut self.map[at + 8..at + 8 + size];
        payload.write(body);
        let crc = crc32fast::hash(body);
        self.map[at..at + 4].copy_from_slice(&(size as u32).to_le_bytes());
        self.map[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        self.tail += len;
        // The next record's place, as long as this one (see `value::prefetch`).
        let next = (HEADER + self.tail % self.ring) as usize;
        crate::value::prefetch(self.map[next..].as_ptr(), len as usize, true);
        self.tail
    }

    /// The spans of the mapping (address and length, whole pages) that
    /// cover the ring from what is warmed (or `tail`) to `ahead` bytes past
    /// `tail`, with the header's page; `warmed` is moved to their end.
    /// Empty when they are warmed already.
    pub(super) fn take_warm_spans(&mut self, ahead: u64) -> Vec<(usize, usize)> {
        let (from, to) = (self.warmed.max(self.tail), self.tail + ahead.min(self.ring));
        if from >= to {
            return Vec::new();
        }
        self.warmed = to;
        let page = page_size();
        let base = self.map.as_ptr() as usize;
        let span = |start: u64, end: u64| {
            let start = (base + (HEADER + start) as usize) & !(page - 1);
            let end = (base + (HEADER + end) as usize).next_multiple_of(page);
            (start, end - start)
        };
        let (start, end) = (from % self.ring, to % self.ring);
        let mut spans = vec![(base, page)];
        match start < end {
            true => spans.push(span(start, end)),
            false => spans.extend([span(start, self.ring), span(0, end)]),
        }
        spans
    }

    /// Stores `head` or `tail` in the header, where other caches read it
    /// (see [`peers`]).
    pub(super) fn store_position(&mut self, at: usize, position: u64) {
        // SAFETY: `at` is 8 or 16 of a page-aligned mapping of the header;
        // every reader loads the word atomically.
        let word = unsafe { &*(self.map.as_ptr().add(at) as *const AtomicU64) };
        word.store(position.to_le(), Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.queued.is_empty() && self.head == self.tail && !self.path.as_os_str().is_empty() {
            // Everything was committed: nothing to replay.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The size of a memory page.
fn page_size() -> usize {
    // SAFETY: a query with no arguments.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Allocates `len` bytes of `file` on disk.
fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and plain integers.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}
