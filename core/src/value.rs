//! The buffers of values the cache copies in: rows read from the file for
//! an L1 (`SqliteTier::below_memory`), replies from Redis, records of the
//! write-behind journal, and what the C and Python libraries are handed;
//! and [`prefetch`], which asks for a value's cache lines before a write
//! copies it.
//!
//! They are allocated by mimalloc, kept beside the process's own allocator
//! (which it does not replace), not by `malloc`. An L1 entry is freed by
//! the thread whose insert evicts it, which is often not the thread that
//! read it from the file. glibc's `malloc` keeps a cache per thread only
//! for blocks of up to 1,032 bytes; a larger block freed by another thread
//! goes back to its own thread's arena under that arena's lock, and waits
//! while the owner allocates or frees in it. Values of a kilobyte or two
//! are common, so two threads reading through L2 waited on each other's
//! arena (futex waits under `free` and `malloc` in the profile), and a
//! second reading thread added a quarter where the file alone allows
//! more than half. mimalloc hands a block freed by another thread back to
//! its page without a lock. It is built without its advice to the kernel
//! to back its memory with 2 MiB pages (see the workspace's `Cargo.toml`).
//! Figures: `README.md`, under Benchmarks, the paragraph on a second
//! reading thread.
//!
//! A value the caller hands over as [`Bytes`] is kept as it is, with the
//! caller's allocation.
//!
//! A forked child copies its values with `malloc`. mimalloc takes locks of
//! its own when a thread first allocates, when one ends and when it
//! reserves memory from the system, and unlike glibc's `malloc` it does
//! not take them across `fork()` (it has no fork handlers): a lock another
//! thread of the parent held at that moment would stay held in the child,
//! and the child's first allocation needing it would wait forever. The
//! child still frees the parent's mimalloc values. A free takes such a
//! lock only in a rarer case, a page whose thread had ended in the parent
//! and that the free empties or takes over: that risk stays with values
//! the parent copied. A block allocated by a thread the child does not
//! have is not reused: at most an L1's worth of values, once.

use std::alloc::{Layout, handle_alloc_error};
use std::ptr::NonNull;

use bytes::Bytes;

/// A copy of `bytes` in a buffer of its own (see the module's docs).
///
/// ```
/// let value = tierstack::value::copy(b"button.tsx");
/// assert_eq!(value, &b"button.tsx"[..]);
/// assert!(tierstack::value::copy(b"").is_empty());
/// ```
pub fn copy(bytes: &[u8]) -> Bytes {
    if bytes.is_empty() {
        return Bytes::new();
    }
    // Counts forks from the first copy on (and from the first cache opened).
    crate::fork::watch_forks();
    if crate::fork::fork_generation() != 0 {
        return Bytes::copy_from_slice(bytes);
    }
    // SAFETY: mi_malloc takes any size and returns a block of at least
    // that many bytes, or null when out of memory.
    let block = unsafe { libmimalloc_sys::mi_malloc(bytes.len()) }.cast::<u8>();
    let Some(block) = NonNull::new(block) else {
        handle_alloc_error(Layout::for_value(bytes));
    };
    // SAFETY: the block is `bytes.len()` bytes long, new, and so apart from `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), block.as_ptr(), bytes.len()) };
    Bytes::from_owner(Buffer {
        block,
        len: bytes.len(),
    })
}

/// How much of a value [`prefetch`] asks for: a value is copied whole, but
/// past a few kilobytes the copy's own streaming keeps up.
const PREFETCH_MAX: usize = 4096;

/// The cache lines a write will read from or write to, fetched ahead:
/// `for_write` when they will be written (the journal's next record), so
/// that the store that comes later finds its lines held for writing. A
/// hint only: it reads nothing and changes nothing, and is a no-op off
/// x86-64. At most [`PREFETCH_MAX`] bytes from `start`.
///
/// A write-behind `set` copies its value into the journal before it
/// returns, and a value the caller has not touched lately is in main
/// memory: asked for when the `set` begins, its lines arrive while the key
/// is checked and its L1 entry made; and the journal asks for the lines
/// of its next record's place when it has written one (a `set` that
/// followed another wrote into lines no core held).
#[inline]
pub(crate) fn prefetch(start: *const u8, len: usize, for_write: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};
        let line = (start as usize) & !63;
        let end = (start as usize).saturating_add(len.min(PREFETCH_MAX));
        for at in (line..end).step_by(64) {
            let at = at as *const i8;
            // SAFETY: a prefetch is a hint: it does not fault and reads
            // nothing into the program, whatever the address.
            unsafe {
                match for_write {
                    true => _mm_prefetch::<_MM_HINT_ET0>(at),
                    false => _mm_prefetch::<_MM_HINT_T0>(at),
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len, for_write);
}

/// A block from mimalloc holding `len` initialized bytes, freed on drop.
struct Buffer {
    block: NonNull<u8>,
    len: usize,
}

// SAFETY: a Buffer owns its block, which nothing else reaches but through
// shared `&[u8]` reads, and mimalloc frees a block from any thread.
unsafe impl Send for Buffer {}
// SAFETY: as above: `&Buffer` gives only reads.
unsafe impl Sync for Buffer {}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `block` holds `len` initialized bytes for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.block.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: `block` came from mi_malloc and is freed once, here.
        unsafe { libmimalloc_sys::mi_free(self.block.as_ptr().cast()) }
    }
}

// In the linked mimalloc, declared by `libmimalloc-sys` only with its
// `extended` feature.
#[cfg(test)]
unsafe extern "C" {
    /// Whether `p` points into memory mimalloc manages.
    safe fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
}

/// Whether `value`'s bytes are in a block of mimalloc's (test support).
#[cfg(test)]
pub(crate) fn is_mimallocs(value: &Bytes) -> bool {
    mi_is_in_heap_region(value.as_ptr().cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_the_bytes_and_outlives_them_on_any_thread() {
        let source = vec![7u8; 1700];
        let value = copy(&source);
        drop(source);
        assert_eq!(value.len(), 1700);
        assert!(value.iter().all(|&b| b == 7));
        // Clones share the block; the last one, dropped on another thread, frees it.
        let clone = value.clone();
        assert_eq!(clone.as_ptr(), value.as_ptr());
        drop(value);
        std::thread::spawn(move || {
            assert_eq!(clone.slice(1..3), &[7u8, 7][..]);
        })
        .join()
        .unwrap();
        // A slice is a view of the block, not a copy.
        let value = copy(b"0123456789");
        let tail = value.slice(5..);
        assert_eq!(tail, &b"56789"[..]);
        assert_eq!(tail.as_ptr(), value[5..].as_ptr());
        assert_eq!(copy(b"").len(), 0);
    }

    #[test]
    fn a_prefetch_of_any_address_does_not_fault_or_write() {
        let mut value = vec![3u8; 100];
        // Within, past the end of and far from any allocation, for reading
        // and for writing: a hint, which never faults.
        prefetch(value.as_ptr(), 10 * PREFETCH_MAX, false);
        prefetch(value.as_ptr(), 10 * PREFETCH_MAX, true);
        prefetch(std::ptr::null(), PREFETCH_MAX, true);
        prefetch(usize::MAX as *const u8, PREFETCH_MAX, false);
        prefetch(value.as_mut_ptr().wrapping_add(1 << 40), 64, true);
        assert_eq!(value, vec![3u8; 100]);
    }

    fn from_mimalloc(value: &Bytes) -> bool {
        is_mimallocs(value)
    }

    #[test]
    fn the_block_is_mimallocs_but_in_a_forked_child() {
        let parents = copy(&[1u8; 1500]);
        assert!(from_mimalloc(&parents));
        assert!(!from_mimalloc(&Bytes::copy_from_slice(&[1u8; 1500])));
        let child = crate::fork::testing::in_child(move || {
            let own = copy(&[2u8; 1500]);
            let read = parents.iter().all(|&b| b == 1);
            drop(parents);
            !from_mimalloc(&own) && own.iter().all(|&b| b == 2) && read
        });
        assert_eq!(child, Some(0));
    }
}
