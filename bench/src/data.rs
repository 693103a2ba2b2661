//! The keys and values the scenarios read and write.
//!
//! A component value is a 1,500-byte JSON-ish string that names its own key
//! at a fixed offset, so a timed read can check cheaply that it got the value
//! of the key it asked for, not just some value.

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Length of every component value, in bytes.
pub const VALUE_LEN: usize = 1500;

/// Where a component value holds its key: right after `{"key":"`.
const KEY_AT: usize = 8;

/// Seed of every random choice, so that runs are comparable.
pub const SEED: u64 = 0x7469_6572;

const SOURCE: &str = "export default function Button(props) { \
    const { label, onClick, disabled } = props; \
    return h('button', { class: 'btn btn-primary', onClick, disabled }, label); } ";

/// The key of component `i`: `component:000042`.
pub fn component_key(i: usize) -> String {
    format!("component:{i:06}")
}

/// The value stored under `key`: exactly [`VALUE_LEN`] bytes of JSON.
pub fn component_value(key: &str) -> Bytes {
    let mut value = format!(r#"{{"key":"{key}","source":""#);
    let room = VALUE_LEN
        .checked_sub(value.len() + 2)
        .expect("keys are far shorter than a value");
    value.extend(SOURCE.chars().cycle().take(room));
    value.push_str("\"}");
    debug_assert_eq!(value.len(), VALUE_LEN);
    Bytes::from(value)
}

/// Whether `value` has the length of a component value and names `key`.
///
/// A few byte comparisons: cheap enough to run on every timed read.
#[inline]
pub fn value_matches(key: &str, value: &[u8]) -> bool {
    value.len() == VALUE_LEN && value.get(KEY_AT..KEY_AT + key.len()) == Some(key.as_bytes())
}

/// `n` components, keys in order.
pub fn components(n: usize) -> Vec<(String, Bytes)> {
    (0..n)
        .map(|i| {
            let key = component_key(i);
            let value = component_value(&key);
            (key, value)
        })
        .collect()
}

/// The indices `0..n` in a fixed random order: the order of the timed reads.
pub fn read_order(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(SEED));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_names_its_key_and_no_other() {
        let value = component_value("component:000007");
        assert_eq!(value.len(), VALUE_LEN);
        assert!(value.starts_with(br#"{"key":"component:000007","source":"export"#));
        assert!(value.ends_with(b"\"}"));
        assert!(value_matches("component:000007", &value));
        assert!(!value_matches("component:000008", &value));
        assert!(!value_matches("component:000007", &value[..VALUE_LEN - 1]));
    }

    #[test]
    fn read_order_is_a_fixed_permutation() {
        let order = read_order(100);
        assert_eq!(order, read_order(100));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(order, sorted);
    }
}
