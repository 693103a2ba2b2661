//! The small encodings the origin speaks: a stable 64-bit hash for ETags and
//! content ids, base64 (flat, and wrapped as the contents API sends it), and
//! percent-decoding.

/// FNV-1a over several byte strings, each followed by a 0xff separator so
/// that `("ab", "c")` and `("a", "bc")` differ. Stable across platforms and
/// Rust versions, unlike `DefaultHasher`.
pub(crate) fn fnv1a(parts: &[&[u8]], seed: u64) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// The quoted strong ETag of a file or listing: 16 hex digits of a hash of
/// its path and bytes.
pub(crate) fn etag(path: &str, content: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(&[path.as_bytes(), content], 0))
}

/// A stable 40-hex id for content, in the place where GitHub puts a git
/// object id. It is not a SHA-1: clients only compare it.
pub(crate) fn content_id(kind: &str, content: &[u8]) -> String {
    let header = format!("{kind} {}", content.len());
    let part = |seed| fnv1a(&[header.as_bytes(), content], seed);
    let hex = format!("{:016x}{:016x}{:016x}", part(1), part(2), part(3));
    hex[..40].to_owned()
}

/// Standard base64 with padding, on one line.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding, in lines of 60 characters each ending in
/// `\n`, as GitHub's contents API sends file content.
pub(crate) fn base64_lines(bytes: &[u8]) -> String {
    const LINE: usize = 60;
    let flat = base64(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / LINE + 1);
    for line in flat.as_bytes().chunks(LINE) {
        // The alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Decodes `%XX` escapes to bytes; a `%` not followed by two hex digits
/// stays as is.
pub(crate) fn percent_decode_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            // Two hex digits make at most 255.
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Decodes `%XX` escapes, replacing bytes that are not UTF-8 with U+FFFD.
pub(crate) fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(text)).into_owned()
}

/// The value of `name` in a query string such as `ref=main&x=1`, decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(&value.replace('+', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg==\n"),
            ("fo", "Zm8=\n"),
            ("foo", "Zm9v\n"),
            ("foob", "Zm9vYg==\n"),
            ("fooba", "Zm9vYmE=\n"),
            ("foobar", "Zm9vYmFy\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64_lines(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn base64_wraps_at_60_characters() {
        let encoded = base64_lines(&[0u8; 90]);
        let lines: Vec<&str> = encoded.lines().collect();
        assert_eq!(lines, ["A".repeat(60), "A".repeat(60)]);
    }

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%3a%3A"), "::");
        assert_eq!(percent_decode_bytes("a%FFb%00"), b"a\xffb\0");
    }

    #[test]
    fn base64_is_one_line() {
        assert_eq!(base64(&[0xff; 48]), "/".repeat(64));
        assert_eq!(base64(b"\0\xfe"), "AP4=");
    }

    #[test]
    fn query_param_finds_and_decodes() {
        assert_eq!(
            query_param(Some("a=1&ref=feat%2Fx"), "ref").as_deref(),
            Some("feat/x")
        );
        assert_eq!(query_param(Some("a=1"), "ref"), None);
        assert_eq!(query_param(None, "ref"), None);
    }

    #[test]
    fn etag_depends_on_path_and_content() {
        let tag = etag("a.tsx", b"x");
        assert_eq!(tag.len(), 18);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(tag, etag("b.tsx", b"x"));
        assert_ne!(tag, etag("a.tsx", b"y"));
        assert_eq!(tag, etag("a.tsx", b"x"));
    }
}
