//! The header drift check: the committed `include/tierstack.h` is exactly
//! what cbindgen (`cbindgen.toml`) generates from this crate's sources.
//! With `TIERSTACK_WRITE_HEADER=1` (what `ffi-c/generate-header` sets) it
//! writes the generated header instead of comparing.

use std::path::Path;

fn generated() -> Vec<u8> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi-c/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header from ffi-c/src");
    let mut text = Vec::new();
    bindings.write(&mut text);
    text
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/tierstack.h");
    let text = generated();
    if std::env::var_os("TIERSTACK_WRITE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&header, &text).expect("include/ is writable");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    if committed != text {
        let want = String::from_utf8_lossy(&text);
        let got = String::from_utf8_lossy(&committed);
        let (want, got): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let first_difference = (0..want.len().max(got.len()))
            .find(|&i| want.get(i) != got.get(i))
            .map_or_else(
                || "its line endings".to_owned(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "include/tierstack.h differs from what cbindgen generates from ffi-c/src (first at \
             {first_difference}): run ffi-c/generate-header and commit include/tierstack.h"
        );
    }
}
