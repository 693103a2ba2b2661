//! Key validation and `*` glob patterns.
//!
//! A key is 1 to [`MAX_KEY_LEN`] bytes of UTF-8 with no control character
//! (neither C0, DEL, nor C1). Every operation validates its keys before it
//! touches a tier, so a bad key never reaches storage.

use crate::error::{Error, ErrorKind, Result};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// The most bytes of a key that [`quote`] shows.
pub const QUOTE_MAX_BYTES: usize = 64;

/// `key` as error messages name it: quoted and escaped like Rust's `{:?}`,
/// and, when it is longer than [`QUOTE_MAX_BYTES`] bytes, cut to at most
/// that many (on a character boundary) with an ellipsis and followed by its
/// length in bytes, so that a huge key never makes a huge message.
///
/// ```
/// use tierstack::key::quote;
///
/// assert_eq!(quote("user:1"), r#""user:1""#);
/// assert_eq!(quote("a\nb"), r#""a\nb""#);
/// let long = "k".repeat(1 << 20);
/// assert_eq!(quote(&long), format!("\"{}…\" (1048576 bytes)", "k".repeat(64)));
/// ```
pub fn quote(key: &str) -> String {
    if key.len() <= QUOTE_MAX_BYTES {
        return format!("{key:?}");
    }
    let mut end = QUOTE_MAX_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let shown = format!("{:?}", &key[..end]);
    // `shown` ends with the closing quote; the ellipsis goes inside it.
    let open = &shown[..shown.len() - 1];
    format!("{open}…\" ({} bytes)", key.len())
}

/// Checks that `key` is usable; the error is of kind [`ErrorKind::InvalidKey`].
#[inline]
pub fn validate(key: &str) -> Result<()> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
        return Err(length_error(bytes.len()));
    }
    // Fast path: printable ASCII only (0x20..=0x7e). Folding without an
    // early exit lets the compiler vectorise the scan.
    if bytes
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
    {
        return Ok(());
    }
    validate_slow(key)
}

#[cold]
fn length_error(len: usize) -> Error {
    if len == 0 {
        Error::new(ErrorKind::InvalidKey, "key is empty")
    } else {
        Error::new(
            ErrorKind::InvalidKey,
            format!("key is {len} bytes long; at most {MAX_KEY_LEN} are allowed"),
        )
    }
}

#[cold]
fn validate_slow(key: &str) -> Result<()> {
    match key.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(Error::new(
            ErrorKind::InvalidKey,
            format!(
                "key holds control character U+{:04X} at byte {at}",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// A `*` glob: `*` matches any run of characters (including none); every
/// other character matches itself, case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<String>,
    pattern: String,
}

impl Glob {
    /// Parses `pattern`. It may be empty (matches only the empty string, so
    /// nothing) and must not hold control characters.
    pub fn new(pattern: &str) -> Result<Self> {
        if pattern.len() > 4 * MAX_KEY_LEN {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "glob pattern is too long",
            ));
        }
        if pattern.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "glob pattern holds a control character",
            ));
        }
        Ok(Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let (first, rest) = self
            .parts
            .split_first()
            .expect("split yields at least one part");
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }

    /// The same pattern in SQLite's `GLOB` syntax, where `?` and `[` are
    /// special and so are bracketed to match themselves.
    pub(crate) fn to_sqlite_glob(&self) -> String {
        let mut out = String::with_capacity(self.pattern.len() + 8);
        for c in self.pattern.chars() {
            match c {
                '?' => out.push_str("[?]"),
                '[' => out.push_str("[[]"),
                c => out.push(c),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_keys() {
        for key in [
            "a",
            "component:button/v2",
            "ключ",
            "名前",
            &"k".repeat(MAX_KEY_LEN),
        ] {
            validate(key).unwrap();
        }
    }

    #[test]
    fn rejects_bad_keys_with_reason() {
        let cases = [
            ("", "empty"),
            (&*"k".repeat(MAX_KEY_LEN + 1), "256 bytes"),
            ("a\nb", "U+000A at byte 1"),
            ("tab\t", "U+0009"),
            ("del\u{7f}", "U+007F"),
            ("c1\u{85}", "U+0085"),
        ];
        for (key, reason) in cases {
            let err = validate(key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key:?}");
            assert!(err.message().contains(reason), "{key:?}: {}", err.message());
        }
    }

    #[test]
    fn quote_shows_at_most_64_bytes_and_the_length() {
        assert_eq!(quote(""), r#""""#);
        let exact = "k".repeat(QUOTE_MAX_BYTES);
        assert_eq!(quote(&exact), format!("{exact:?}"));
        let long = "k".repeat(1 << 20);
        let quoted = quote(&long);
        assert_eq!(
            quoted,
            format!("\"{}…\" (1048576 bytes)", &long[..QUOTE_MAX_BYTES])
        );
        // Cut on a character boundary: 63 ASCII bytes, then a 2-byte char
        // that would straddle the 64th byte.
        let straddling = format!("{}é{}", "a".repeat(63), "b".repeat(10));
        assert_eq!(
            quote(&straddling),
            format!("\"{}…\" (75 bytes)", "a".repeat(63))
        );
        // Control characters are escaped, never written raw.
        let controls = "\n".repeat(100);
        let quoted = quote(&controls);
        assert!(
            !quoted.contains('\n') && quoted.ends_with("(100 bytes)"),
            "{quoted}"
        );
    }

    #[test]
    fn glob_matches_star_only() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("user:*", "user:1", true),
            ("user:*", "users:1", false),
            ("*:v2", "button:v2", true),
            ("*:v2", "button:v21", false),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("q?[x]", "q?[x]", true),
            ("q?[x]", "qa[x]", false),
            ("Case*", "case1", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).unwrap().matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn sqlite_glob_escapes_its_own_wildcards() {
        assert_eq!(
            Glob::new("a?b[c]*").unwrap().to_sqlite_glob(),
            "a[?]b[[]c]*"
        );
    }
}
