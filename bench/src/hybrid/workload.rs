//! The scenario's workload: the Zipf read trace, the weight both caches give
//! an entry, and the sizes of both tiers.

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

use crate::{BenchResult, data};

/// The Zipf exponent of the read trace.
pub const ZIPF_EXPONENT: f64 = 0.9;

/// foyer's block size (its default), the unit its disk is cut into.
const BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// `requests` draws from Zipf(0.9) over `keys` keys, as indices (0 is the
/// most popular); seeded, so every run sees the same trace.
pub fn trace(keys: usize, requests: usize) -> BenchResult<Vec<u32>> {
    let zipf = Zipf::new(keys as f64, ZIPF_EXPONENT)?;
    let mut rng = StdRng::seed_from_u64(data::SEED);
    Ok((0..requests)
        .map(|_| (zipf.sample(&mut rng) as usize).clamp(1, keys) as u32 - 1)
        .collect())
}

/// What both caches count for an entry in memory.
pub fn weight(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + tierstack::tier::MEMORY_ENTRY_OVERHEAD
}

/// The two tiers' sizes, shared by every cache of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Memory tier, in weighed bytes.
    pub memory: u64,
    /// Disk tier: foyer's device, tierstack's `sqlite_max_bytes`.
    pub disk: u64,
}

impl Sizes {
    /// A memory tier weighing a tenth of the preloaded `items`; a disk tier
    /// with two 4 KiB pages for each of the `written` entries (foyer puts
    /// every entry in whole pages, and a small flush adds a page of index)
    /// and four spare blocks, so that foyer never reclaims a block.
    pub fn of(items: &[(String, Bytes)], written: usize) -> Self {
        let data: u64 = items.iter().map(|(k, v)| weight(k, v)).sum();
        let disk = (written * 2 * 4096).div_ceil(BLOCK_BYTES) * BLOCK_BYTES + 4 * BLOCK_BYTES;
        Self {
            memory: data / 10,
            disk: disk as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_seeded_and_in_range() {
        let t = trace(1000, 20_000).unwrap();
        assert_eq!(t, trace(1000, 20_000).unwrap());
        assert_eq!(t.len(), 20_000);
        assert!(t.iter().all(|&i| i < 1000));
        let count = |k: u32| t.iter().filter(|&&i| i == k).count();
        assert!(count(0) > count(1) && count(1) > count(999));
    }

    #[test]
    fn memory_is_a_tenth_and_disk_whole_blocks() {
        let items = data::components(1000);
        let per_entry = 16 + 1500 + tierstack::tier::MEMORY_ENTRY_OVERHEAD;
        let sizes = Sizes::of(&items, 3000);
        assert_eq!(sizes.memory, 1000 * per_entry / 10);
        // 3,000 entries of two pages: 24,576,000 bytes, two blocks; four more.
        assert_eq!(sizes.disk, 6 * BLOCK_BYTES as u64);
    }
}
