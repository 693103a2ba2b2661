//! The write-behind outbox's figures and dead letters as Python dicts.
//!
//! Durations and times are float seconds, as everywhere in the Python API:
//! `oldest_age` is an age, `failed_at` seconds since the epoch.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tierstack::{DeadLetter, OutboxStats};

/// `outbox_stats()`: `{durable, pending, oldest_age, retrying, retries,
/// delivered, dead}`.
pub(crate) fn stats_dict<'py>(
    py: Python<'py>,
    stats: &OutboxStats,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "durable"), stats.durable)?;
    dict.set_item(intern!(py, "pending"), stats.pending)?;
    dict.set_item(
        intern!(py, "oldest_age"),
        stats.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
    )?;
    dict.set_item(intern!(py, "retrying"), stats.retrying)?;
    dict.set_item(intern!(py, "retries"), stats.retries)?;
    dict.set_item(intern!(py, "delivered"), stats.delivered)?;
    dict.set_item(intern!(py, "dead"), stats.dead)?;
    Ok(dict)
}

/// `dead_letters()`: a list of `{key, op, attempts, last_error,
/// failed_at}`, oldest first (the engine's order).
pub(crate) fn dead_letters_list<'py>(
    py: Python<'py>,
    dead: &[DeadLetter],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for letter in dead {
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "key"), &letter.key)?;
        dict.set_item(intern!(py, "op"), letter.op)?;
        dict.set_item(intern!(py, "attempts"), letter.attempts)?;
        dict.set_item(intern!(py, "last_error"), &letter.last_error)?;
        dict.set_item(intern!(py, "failed_at"), letter.failed_ms as f64 / 1000.0)?;
        list.append(dict)?;
    }
    Ok(list)
}
