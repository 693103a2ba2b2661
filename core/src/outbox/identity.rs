//! The random nonce that names a process's writes and its hold on the
//! outbox's lease, drawn again in a forked child.

use std::sync::atomic::{AtomicU64, Ordering};

/// What names a process's writes (the idempotency keys' prefix) and its
/// hold on the file's lease: drawn at random at open, and again in a forked
/// child, whose writes and lease must not pass for the parent's. Atomics
/// only: a lock held by a parent's thread at the fork would never be
/// released in the child.
pub(super) struct Identity {
    nonce: AtomicU64,
    /// The fork generation (see [`crate::fork`]) `nonce` was drawn in.
    generation: AtomicU64,
    /// The generation a nonce is being drawn for, by one thread.
    drawing: AtomicU64,
}

impl Identity {
    pub(super) fn new() -> Self {
        let generation = crate::fork::fork_generation();
        Identity {
            nonce: AtomicU64::new(drawn()),
            generation: AtomicU64::new(generation),
            drawing: AtomicU64::new(generation),
        }
    }

    /// This process's nonce; in a forked child, one thread draws a new one
    /// and the others wait for it.
    pub(super) fn nonce(&self) -> u64 {
        let generation = crate::fork::fork_generation();
        if self.generation.load(Ordering::Acquire) != generation {
            let drawing = self.drawing.load(Ordering::Acquire);
            if drawing != generation
                && self
                    .drawing
                    .compare_exchange(drawing, generation, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.nonce.store(drawn(), Ordering::Release);
                self.generation.store(generation, Ordering::Release);
            }
            while self.generation.load(Ordering::Acquire) != generation {
                std::thread::yield_now();
            }
        }
        self.nonce.load(Ordering::Acquire)
    }
}

/// A nonce: random, never 0, which marks a journal record that has no
/// outbox row (see `tier::sqlite::journal`).
fn drawn() -> u64 {
    random_u64().max(1)
}

/// 64 random bits (from the standard library's randomly keyed hasher).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
