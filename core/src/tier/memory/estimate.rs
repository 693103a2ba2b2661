//! How L1 sizes quick_cache's count-based parts: the number of shards and
//! the ghost list, both set from an estimate of how many entries the byte
//! budget holds.

use quick_cache::OptionsBuilder;

use super::ENTRY_OVERHEAD;

/// Bytes of key and value per entry the estimate assumes: a short key and
/// a 100-byte value (see [`map_options`]).
const ASSUMED_KEY_AND_VALUE: u64 = 108;

/// The options of L1's map for a budget of `max_bytes`.
///
/// quick_cache bounds its residents by weight (bytes here) but counts the
/// rest in entries, from `estimated_items_capacity`: it keeps at least 32
/// estimated entries a shard (fewer shards for a small budget), and a ghost
/// list (keys recently evicted, which go straight to the hot section if
/// they come back) of half the estimate. It allocates nothing up front from
/// the estimate, and cannot change it later.
///
/// The ghost list works best at quick_cache's own proportion, half the
/// entries held. On the Zipf 0.9 and 0.99 traces of the bench
/// (`bench/src/traces.rs`, 0.1 % to 25 % of 100,000 keys; means of several
/// hash seeds), against an estimate equal to the count held: 0.8× the count
/// scored within 0.07 points either way; 1.275× lost 0.02–0.26 points, 2×
/// 0.2–0.45 and 4× 0.3–1.5 (a longer list sends more keys straight to the
/// hot section); 0.33× lost up to 0.6 (and gained 0.3 at 0.1 %). An
/// over-estimate also keeps more ghosts, each a slot of the map's slab (the
/// size of a resident's, outside the byte budget). The estimate assumes
/// small entries, those of the traces (an 8-byte key, a 100-byte value):
/// with [`ENTRY_OVERHEAD`], 204 bytes an entry, where the map is set up as
/// quick_cache counting entries would be. For larger entries it is an
/// over-estimate by their size over 204: the list is longer than tuned, and
/// holds 0.5 × size / 204 ghosts per resident (about 4 for 1.5 KB values).
pub(super) fn map_options(max_bytes: u64) -> OptionsBuilder {
    let estimated =
        (max_bytes / (ENTRY_OVERHEAD + ASSUMED_KEY_AND_VALUE)).clamp(64, 1 << 24) as usize;
    let mut options = OptionsBuilder::new();
    options
        .estimated_items_capacity(estimated)
        .weight_capacity(max_bytes);
    options
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;

    use bytes::Bytes;
    use quick_cache::sync::{Cache, DefaultLifecycle};
    use quick_cache::{OptionsBuilder, UnitWeighter};

    use super::*;
    use crate::tier::memory::entry::ByteWeighter;
    use crate::tier::memory::{Key, MemEntry};

    /// A hasher without a random seed, so that keys land in the same shard
    /// in every run and in both caches.
    type Fixed = BuildHasherDefault<DefaultHasher>;

    /// Shards of both caches, fixed so that the outcome does not depend on
    /// the machine's core count (quick_cache's default is 4 a core).
    const SHARDS: usize = 8;

    /// `requests` draws from Zipf(`exponent`) over `keys` items, 0 the most
    /// popular, from a fixed seed.
    fn zipf(keys: usize, requests: usize, exponent: f64) -> Vec<u32> {
        let mut cdf = Vec::with_capacity(keys);
        let mut sum = 0.0;
        for rank in 1..=keys {
            sum += (rank as f64).powf(-exponent);
            cdf.push(sum);
        }
        let mut state: u64 = 0x5eed;
        (0..requests)
            .map(|_| {
                // splitmix64
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                let u = (z >> 11) as f64 / (1u64 << 53) as f64 * sum;
                cdf.partition_point(|&c| c < u).min(keys - 1) as u32
            })
            .collect()
    }

    /// Hits of L1's map, on a budget of `capacity` entries of an 8-byte key
    /// and a `value_len`-byte value, and of quick_cache counting `capacity`
    /// entries, each serving `trace` cache-aside.
    fn hits(trace: &[u32], capacity: usize, value_len: usize) -> (usize, usize) {
        let keys: Vec<Key> = (0..=*trace.iter().max().unwrap())
            .map(|i| Key::new(format!("k{i:07}")))
            .collect();
        let value = Bytes::from(vec![b'v'; value_len]);
        let budget = capacity as u64 * super::super::entry_size(&keys[0], value_len);
        let l1: Cache<Key, MemEntry, ByteWeighter, Fixed> = Cache::with_options(
            map_options(budget).shards(SHARDS).build().unwrap(),
            ByteWeighter,
            Fixed::default(),
            DefaultLifecycle::default(),
        );
        let peer: Cache<Key, (), UnitWeighter, Fixed> = Cache::with_options(
            OptionsBuilder::new()
                .estimated_items_capacity(capacity)
                .weight_capacity(capacity as u64)
                .shards(SHARDS)
                .build()
                .unwrap(),
            UnitWeighter,
            Fixed::default(),
            DefaultLifecycle::default(),
        );
        let (mut ours, mut theirs) = (0, 0);
        for &i in trace {
            let key = &keys[i as usize];
            match l1.get(key) {
                Some(_) => ours += 1,
                None => l1.insert(key.clone(), MemEntry::new(value.clone(), 0, u64::MAX)),
            }
            match peer.get(key) {
                Some(()) => theirs += 1,
                None => peer.insert(key.clone(), ()),
            }
        }
        (ours, theirs)
    }

    #[test]
    fn small_entries_hit_as_often_as_quick_cache_counting_them() {
        // The shape of the entries of the bench's hit-ratio traces: an
        // 8-byte key and a 100-byte value. Sizes of 1 %, 5 % and 12.5 %
        // of the keys, none a multiple of 100 entries a shard (where the
        // hot section's 97 % would round alike only by chance).
        let trace = zipf(20_000, 200_000, 0.99);
        for capacity in [8 * 25, 8 * 125, 8 * 313] {
            let (ours, theirs) = hits(&trace, capacity, 100);
            assert_eq!(ours, theirs, "{capacity} entries");
        }
    }
}
