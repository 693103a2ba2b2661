//! Errors: each [`ErrorKind`] raises its own Python class.
//!
//! The classes are defined in Python (`tierstack/__init__.py`) so that the
//! bad-input ones can also subclass `ValueError` and carry their docs; they
//! are named after the kind (`invalid_key` → `InvalidKeyError`). Which kinds
//! there are, their codes and their class names come from core's
//! [`ErrorKind::ALL`] through [`error_classes`]: the package gives each
//! class its `kind` and `code` from it when it is imported, and refuses to
//! import if a kind has no class or a class no kind.

use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyTuple, PyType};
use tierstack::{Error, ErrorKind};

use crate::load::PyCause;

static PACKAGE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python class name of `kind`: `invalid_key` → `InvalidKeyError`.
fn class_name(kind: ErrorKind) -> String {
    let mut name = String::with_capacity(24);
    for word in kind.as_str().split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name.push_str("Error");
    name
}

/// The exception for `kind` with `message`, caused by `cause` if given.
pub(crate) fn new_err(
    py: Python<'_>,
    kind: ErrorKind,
    message: impl Into<String>,
    cause: Option<PyErr>,
) -> PyErr {
    let message = message.into();
    let err = match build(py, kind, &message) {
        Ok(err) => err,
        Err(failed) => PyRuntimeError::new_err(format!(
            "{kind}: {message} (the tierstack error classes are unavailable: {failed})"
        )),
    };
    err.set_cause(py, cause);
    err
}

/// Every error kind, in code order, as `(kind, code, class name)`:
/// `("invalid_key", 1, "InvalidKeyError")`, ….
pub(crate) fn error_classes(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    let kinds = ErrorKind::ALL
        .iter()
        .map(|kind| (kind.as_str(), kind.code(), class_name(*kind)).into_pyobject(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, kinds)
}

fn build(py: Python<'_>, kind: ErrorKind, message: &str) -> PyResult<PyErr> {
    let package = PACKAGE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("tierstack")?.unbind())
    })?;
    let class = package.bind(py).getattr(class_name(kind).as_str())?;
    let exception = class.cast_into::<PyType>()?.call1((message,))?;
    Ok(PyErr::from_value(exception))
}

/// The exception for an engine error. An error that carries a Python
/// exception (a loader's, see [`crate::load`]) raises the kind's class with
/// that exception as `__cause__`, or the exception itself when it already
/// is the error to raise. One caused by the operating system (a file the
/// SQLite tier cannot create) has the `OSError` of that reason as
/// `__cause__` (`IsADirectoryError`, `PermissionError`, …, with `errno`).
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    if let Some(cause) = err.find_cause::<PyCause>() {
        return match cause.raise_as_is(py) {
            Some(exception) => exception,
            None => new_err(py, err.kind(), err.message(), Some(cause.exception(py))),
        };
    }
    let cause = err.find_cause::<io::Error>().map(os_error);
    new_err(py, err.kind(), err.message(), cause)
}

/// The `OSError` of `err`: `OSError(errno, strerror)`, which Python makes
/// the subclass of that number, or `OSError(message)` without a number.
fn os_error(err: &io::Error) -> PyErr {
    let message = err.to_string();
    match err.raw_os_error() {
        Some(errno) => {
            let suffix = format!(" (os error {errno})");
            let strerror = message.strip_suffix(&suffix).unwrap_or(&message);
            PyOSError::new_err((errno, strerror.to_owned()))
        }
        None => PyOSError::new_err(message),
    }
}
