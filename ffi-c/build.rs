//! Generates `include/tierstack.h` (added by the C ABI work).
fn main() {}
