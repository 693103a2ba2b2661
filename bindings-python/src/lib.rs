//! tierstack for Python: the native module `tierstack._native`.
//!
//! The public API is the Python package `tierstack` (`python/tierstack/`),
//! which builds on this module. Conversions between the engine's types and
//! Python's live here only: keys, TTLs, tags and values in [`value`], errors
//! in [`error`], the cache in [`cache`], and the decoded values kept beside
//! L1 in [`kept`].

use pyo3::prelude::*;

mod cache;
mod error;
mod kept;
mod value;

/// The native module: `Cache`, the package version, and `_check_ttl`.
#[pymodule(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::Cache>()?;
    m.add_function(wrap_pyfunction!(check_ttl, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// `_check_ttl(ttl)`: raises what `Cache.set` raises for this `ttl`
/// (`InvalidArgumentError`, `TypeError`), storing nothing; `None` and
/// numbers in range pass.
#[pyfunction]
#[pyo3(name = "_check_ttl", signature = (ttl=None))]
fn check_ttl(ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    value::check_ttl(ttl)
}
