//! Generates `include/tierstack.h` from this crate with cbindgen. The header
//! is checked in; it is rewritten only when its text changes, so a build
//! with no API change leaves the file (and its timestamp) alone.

use std::path::PathBuf;

fn main() {
    // Read at run time: a build script compiled for another checkout of the
    // same crate may be reused from a shared target directory.
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let header = crate_dir.join("../include/tierstack.h");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed={}", header.display());

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi-c/cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header from ffi-c/src");
    let mut text = Vec::new();
    bindings.write(&mut text);
    if std::fs::read(&header).ok().as_deref() != Some(&text[..]) {
        let tmp = header.with_extension("h.tmp");
        std::fs::write(&tmp, &text).expect("include/ is writable");
        std::fs::rename(&tmp, &header).expect("include/ is writable");
    }
}
