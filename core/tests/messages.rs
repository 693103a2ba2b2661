//! Error messages stay short whatever the input: a key is quoted by at most
//! 64 of its bytes plus its length, never whole, and so is a tag.

use tierstack::ErrorKind;
use tierstack::blocking::Cache;

/// Longer than any message about one key needs; far shorter than the key.
const SHORT: usize = 400;

#[test]
fn a_one_mebibyte_key_gives_a_short_message_from_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("keys.db"))
        .build_blocking()
        .unwrap();
    cache.set("good", "kept").unwrap();
    let huge = "k".repeat(1 << 20);
    let with_newlines = "line\n".repeat(1 << 18);
    for key in [huge.as_str(), with_newlines.as_str()] {
        let errors = [
            cache.set(key, "v").unwrap_err(),
            cache.mset([("fine", "1"), (key, "2")]).unwrap_err(),
            cache.get(key).unwrap_err(),
            cache.lookup(key).unwrap_err(),
            cache.has(key).unwrap_err(),
            cache.delete(key).unwrap_err(),
            cache.entry(key).unwrap_err(),
            cache.mget(&["good", key]).unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
            let shown = err.to_string();
            assert!(shown.len() < SHORT, "{} bytes: {shown:.200}", shown.len());
            assert!(!shown.contains('\n'), "{shown}");
        }
    }
    // The writes name the key, cut short, with its length.
    let err = cache.set(huge.as_str(), "v").unwrap_err();
    assert_eq!(
        err.message(),
        format!(
            "key \"{}…\" (1048576 bytes): key is 1048576 bytes long; at most 255 are allowed",
            "k".repeat(64)
        )
    );
    assert_eq!(cache.keys("*").unwrap(), ["good"]);
}

#[test]
fn a_value_too_large_names_its_key_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("big.db"))
        .sqlite_max_bytes(1000)
        .build_blocking()
        .unwrap();
    let key = "é".repeat(100);
    let err = cache.set(key.as_str(), vec![0u8; 2000]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().starts_with(&format!(
            "value for \"{}…\" (200 bytes) needs ",
            "é".repeat(32)
        )),
        "{err}"
    );
}

#[test]
fn a_one_mebibyte_tag_gives_a_short_message_quoted_like_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .sqlite_path(dir.path().join("tags.db"))
        .build_blocking()
        .unwrap();
    let huge = "t".repeat(1 << 20);
    let with_newlines = "line\n".repeat(1 << 18);
    for tag in [huge.as_str(), with_newlines.as_str()] {
        let errors = [
            cache.invalidate_tag(tag).unwrap_err(),
            cache
                .set_with("k", "v", tierstack::SetOptions::new().tags([tag]))
                .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            let shown = err.to_string();
            assert!(shown.len() < SHORT, "{} bytes: {shown:.200}", shown.len());
            assert!(!shown.contains('\n'), "{shown}");
        }
    }
    assert_eq!(
        cache.invalidate_tag(&huge).unwrap_err().message(),
        format!(
            "tag \"{}…\" (1048576 bytes) must be 1-255 bytes without control characters",
            "t".repeat(64)
        )
    );
    assert_eq!(cache.get("k").unwrap(), None);
}
