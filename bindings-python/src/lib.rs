//! tierstack for Python: the native module `tierstack._native`.
//!
//! The public API is the Python package `tierstack` (`python/tierstack/`),
//! which builds on this module. Conversions between the engine's types and
//! Python's live here only: keys, TTLs, tags and values in [`value`], errors
//! in [`error`], the cache in [`cache`], Python loaders and sources in
//! [`load`], the outbox's figures and dead letters in [`outbox`], the
//! decoded values kept beside L1 in [`l1_objects`], and the test clock in
//! [`clock`].

use pyo3::prelude::*;

mod cache;
mod clock;
mod error;
mod l1_objects;
mod load;
mod outbox;
mod value;

/// The native module: `Cache`, the read kinds it answers (`Read`), the
/// engine's error kinds (`ERROR_CLASSES`, see [`error::error_classes`]),
/// `advance_test_clock` and the package version.
#[pymodule(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::Cache>()?;
    m.add_class::<cache::Read>()?;
    m.add("ERROR_CLASSES", error::error_classes(m.py())?)?;
    m.add_function(wrap_pyfunction!(clock::advance_test_clock, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
