//! napi's linker setup.
fn main() {
    napi_build::setup();
}
