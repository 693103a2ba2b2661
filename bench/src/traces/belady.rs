//! Bélády's MIN: the offline optimum, the ceiling of every hit ratio.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Aside, Trace};
use crate::BenchResult;

/// Marks a request never followed by another of its item.
const NEVER: u32 = u32::MAX;

/// For each request, the position of the next request of the same item,
/// or `u32::MAX` if none follows.
pub fn next_uses(trace: &Trace) -> Vec<u32> {
    let mut seen = vec![NEVER; trace.items()];
    let mut next = vec![NEVER; trace.requests.len()];
    for (at, &item) in trace.requests.iter().enumerate().rev() {
        next[at] = std::mem::replace(&mut seen[item as usize], at as u32);
    }
    next
}

/// Bélády's MIN: the most hits any cache of `capacity` entries can get on
/// a trace known in advance. On a miss it admits the key only if its next
/// use comes before that of some held key, and then evicts the held key
/// used farthest ahead.
///
/// Held entries are keyed by the position of their next request. Positions
/// are unique to a request, so the request at `at` finds its item's entry
/// under `at` if it is held, and the entry to evict is the last in the map.
/// A key not requested again is not admitted, and one whose last request
/// was a hit is dropped: holding either can only crowd out a later hit.
#[derive(Debug)]
pub struct Belady<'a> {
    capacity: usize,
    next: &'a [u32],
    held: BTreeMap<u32, Bytes>,
}

impl<'a> Belady<'a> {
    /// An empty cache of `capacity` entries for the trace of `next` (from
    /// [`next_uses`]).
    pub fn new(capacity: usize, next: &'a [u32]) -> Self {
        Self {
            capacity,
            next,
            held: BTreeMap::new(),
        }
    }
}

impl Aside for Belady<'_> {
    fn get(&mut self, at: usize, _: &str) -> BenchResult<Option<Bytes>> {
        let Some(value) = self.held.remove(&(at as u32)) else {
            return Ok(None);
        };
        if self.next[at] != NEVER {
            self.held.insert(self.next[at], value.clone());
        }
        Ok(Some(value))
    }

    fn set(&mut self, at: usize, _: &str, value: Bytes) -> BenchResult<()> {
        let next = self.next[at];
        if next == NEVER {
            return Ok(());
        }
        if self.held.len() >= self.capacity {
            match self.held.last_key_value() {
                Some((&farthest, _)) if farthest > next => {
                    self.held.pop_last();
                }
                _ => return Ok(()),
            }
        }
        self.held.insert(next, value);
        Ok(())
    }
}

/// The reference string of the textbook page-replacement examples
/// (Silberschatz et al., *Operating System Concepts*), with 3 frames.
#[cfg(test)]
pub(super) const TEXTBOOK: [u32; 20] = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1];

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Zipf};

    use super::*;
    use crate::data::SEED;
    use crate::traces::serve;

    /// MIN's verified hits on `requests` with `capacity` entries.
    fn min_hits(requests: &[u32], capacity: usize) -> usize {
        let trace = Trace::new("hand-made", requests.to_vec()).unwrap();
        let next = next_uses(&trace);
        serve("Bélády", &mut Belady::new(capacity, &next), &trace).unwrap()
    }

    /// The most hits any cache of `capacity` entries can get on `trace`:
    /// every choice tried (on a miss: not admitting, admitting into a free
    /// slot, or admitting in place of each held item).
    fn exhaustive(trace: &[u32], capacity: usize) -> usize {
        fn best(
            trace: &[u32],
            at: usize,
            held: Vec<u32>,
            capacity: usize,
            memo: &mut HashMap<(usize, Vec<u32>), usize>,
        ) -> usize {
            let Some(&item) = trace.get(at) else {
                return 0;
            };
            if let Some(&known) = memo.get(&(at, held.clone())) {
                return known;
            }
            let result = if held.contains(&item) {
                1 + best(trace, at + 1, held.clone(), capacity, memo)
            } else {
                let mut options = vec![held.clone()];
                if held.len() < capacity {
                    options.push([held.as_slice(), &[item]].concat());
                }
                for out in &held {
                    let mut with = held.clone();
                    with.retain(|h| h != out);
                    with.push(item);
                    options.push(with);
                }
                options
                    .into_iter()
                    .map(|mut option| {
                        option.sort_unstable();
                        best(trace, at + 1, option, capacity, memo)
                    })
                    .max()
                    .unwrap_or(0)
            };
            memo.insert((at, held), result);
            result
        }
        best(trace, 0, Vec::new(), capacity, &mut HashMap::new())
    }

    #[test]
    fn next_uses_point_to_the_next_request_of_the_item() {
        let trace = Trace::new("hand-made", vec![1, 2, 1, 1, 3]).unwrap();
        assert_eq!(next_uses(&trace), [2, NEVER, 3, NEVER, NEVER]);
    }

    #[test]
    fn exact_on_the_textbook_string() {
        // 6 items, so 6 misses are certain. At position 3 (the first 2),
        // items 7 (next at 17), 0 (at 4), 1 (at 13) and 2 (at 8) all have
        // a request to come: 4 of them for 3 slots, so one of those
        // requests misses. At position 5 (the first 3), 0 (at 6), 2 (at 8)
        // and 3 (at 9) are again all due, with whichever of 7 and 1 was
        // kept at position 3 if one of those was, or with both if 0 or 2
        // was dropped instead: one more miss. So at least 8 misses; MIN
        // misses at 0, 1, 2, 3, 5, 7 (4, never requested again, is not
        // admitted), 13 and 17: 8 misses, 12 hits. (The textbook's OPT,
        // which must admit every page, has 9 faults.)
        assert_eq!(min_hits(&TEXTBOOK, 3), 12);
        assert_eq!(exhaustive(&TEXTBOOK, 3), 12);
    }

    #[test]
    fn matches_an_exhaustive_search_on_small_traces() {
        let mut rng = StdRng::seed_from_u64(SEED);
        let zipf = Zipf::new(6.0, 0.8).unwrap();
        for capacity in 1..=3 {
            for _ in 0..20 {
                let requests: Vec<u32> =
                    (0..14).map(|_| zipf.sample(&mut rng) as u32 - 1).collect();
                assert_eq!(
                    min_hits(&requests, capacity),
                    exhaustive(&requests, capacity),
                    "{requests:?} in {capacity}"
                );
            }
        }
    }
}
