//! tierstack's C ABI.
