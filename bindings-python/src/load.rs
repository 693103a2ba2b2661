//! Loading: Python callables adapted into the engine's loaders and sources.
//!
//! Everything around a load (single-flight in the process and across
//! processes, the circuit breaker, timeouts, fail-safe, negative caching) is
//! the engine's. This module only calls the Python side and translates its
//! answer: a value (stored like `set` stores it), `tierstack.NOT_FOUND`, a
//! `tierstack.Loaded` (a value with its own TTL and tags), or an exception,
//! which becomes an engine error of kind `source` carrying the exception
//! ([`PyCause`]) so that the caller's `SourceError` gets it as `__cause__`.
//!
//! Loaders run on the engine's blocking pool, with the GIL taken there; the
//! caller waits without the GIL. The Python helpers `tierstack._run_loader`
//! and `tierstack._Source` choose the loader's arguments and run coroutine
//! loaders on the caller's event loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use tierstack::source::{FetchFuture, from_blocking_fn, run_blocking};
use tierstack::{Error, ErrorKind, Fetched, GetOptions, Loaded, Result, Source};

use crate::value::{encode, ttl_seconds};

static NOT_FOUND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RUN_LOADER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A Python exception carried through the engine inside an [`Error`]'s
/// source, found again with [`Error::find_cause`].
#[derive(Debug)]
pub(crate) struct PyCause {
    err: PyErr,
    message: String,
    /// Raise the exception itself rather than the error of the engine's
    /// kind caused by it (a value the loader returned that JSON cannot
    /// encode raises `InvalidValueError`, as `set` does).
    as_is: bool,
}

impl fmt::Display for PyCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PyCause {}

impl PyCause {
    /// The exception to raise for `err`, which carries this cause: the
    /// exception itself, or `None` for "the kind's class, caused by
    /// [`PyCause::exception`]".
    pub(crate) fn raise_as_is(&self, py: Python<'_>) -> Option<PyErr> {
        self.as_is.then(|| self.err.clone_ref(py))
    }

    /// The carried exception.
    pub(crate) fn exception(&self, py: Python<'_>) -> PyErr {
        self.err.clone_ref(py)
    }
}

/// The engine error for a loader that raised: kind `source`, the
/// exception carried as its cause.
fn raised(py: Python<'_>, err: PyErr) -> Error {
    raised_in(py, "the loader", err)
}

/// The engine error for `what` (`the loader`, `store`, `remove`) having
/// raised: kind `source`, the exception carried as its cause.
fn raised_in(py: Python<'_>, what: &str, err: PyErr) -> Error {
    let name = err
        .get_type(py)
        .qualname()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    let text = err
        .value(py)
        .str()
        .map_or_else(|_| String::new(), |s| s.to_string());
    let message = match text.is_empty() {
        true => format!("{what} raised {name}"),
        false => format!("{what} raised {name}: {text}"),
    };
    Error::new(ErrorKind::Source, message.clone()).with_source(PyCause {
        err,
        message,
        as_is: false,
    })
}

/// The engine error for a loader's answer this module cannot read: a
/// tierstack error (a value JSON cannot encode, a bad TTL in a `Loaded`)
/// keeps its kind and is raised as it is; anything else (a batch answer
/// that is not a mapping) is the loader's failure.
fn unreadable(py: Python<'_>, err: PyErr) -> Error {
    let kind = err
        .value(py)
        .getattr("kind")
        .ok()
        .and_then(|k| k.extract::<PyBackedStr>().ok())
        .and_then(|k| ErrorKind::ALL.into_iter().find(|kind| kind.as_str() == &*k));
    match kind {
        Some(kind) => {
            let message = err
                .value(py)
                .str()
                .map_or_else(|_| kind.to_string(), |s| s.to_string());
            Error::new(kind, message.clone()).with_source(PyCause {
                err,
                message,
                as_is: true,
            })
        }
        None => raised(py, err),
    }
}

fn import(py: Python<'_>, cell: &'static PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<Py<PyAny>> {
    cell.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("tierstack")?.getattr(name)?.unbind())
    })
    .map(|obj| obj.clone_ref(py))
}

/// The engine's reading of what a loader returned for one key.
fn fetched(obj: &Bound<'_, PyAny>) -> PyResult<Fetched> {
    let py = obj.py();
    if obj.is(import(py, &NOT_FOUND, "NOT_FOUND")?.bind(py)) {
        return Ok(Fetched::NotFound);
    }
    if !obj.is_instance(import(py, &LOADED, "Loaded")?.bind(py))? {
        return Ok(Fetched::value(encode(obj)?));
    }
    let value = obj.getattr("value")?;
    if value.is(import(py, &NOT_FOUND, "NOT_FOUND")?.bind(py)) {
        return Ok(Fetched::NotFound);
    }
    let mut loaded = Loaded::new(encode(&value)?);
    let ttl = obj.getattr("ttl")?;
    if !ttl.is_none()
        && let Some(ttl) = ttl_seconds(&ttl)?
    {
        loaded = loaded.ttl(ttl);
    }
    let tags = obj.getattr("tags")?;
    if !tags.is_none() {
        let tags = crate::value::tags(&tags)?;
        loaded = loaded.tags(tags);
    }
    Ok(Fetched::Value(loaded))
}

/// The answers of a batch loader's mapping; keys it left out are not found.
fn fetched_many(obj: &Bound<'_, PyAny>) -> PyResult<HashMap<String, Fetched>> {
    let items = match obj.cast::<PyDict>() {
        Ok(dict) => dict.items().into_any(),
        Err(_) => obj.call_method0("items").map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "a get_or_load_many loader must return a dict of key to value, not {}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string())
            ))
        })?,
    };
    let mut answers = HashMap::new();
    for item in items.try_iter()? {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let key = crate::value::key(&key)?;
        answers.insert(key.to_string(), fetched(&value)?);
    }
    Ok(answers)
}

/// A Python loader as the engine calls it: `tierstack._run_loader(loader,
/// argument, loop, single)`, which calls `loader(key)` or `loader()` (one
/// key) or `loader(keys)` (a batch) and resolves a coroutine on `loop`.
pub(crate) struct PyLoader {
    loader: Py<PyAny>,
    event_loop: Option<Py<PyAny>>,
}

impl PyLoader {
    pub(crate) fn new(loader: &Bound<'_, PyAny>, event_loop: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            loader: loader.clone().unbind(),
            event_loop: event_loop.map(|l| l.clone().unbind()),
        }
    }

    fn run<'py>(
        &self,
        py: Python<'py>,
        argument: Bound<'py, PyAny>,
        single: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = import(py, &RUN_LOADER, "_run_loader")?;
        let event_loop = match &self.event_loop {
            Some(l) => l.bind(py).clone(),
            None => py.None().into_bound(py),
        };
        run.bind(py)
            .call1((self.loader.bind(py), argument, event_loop, single))
    }

    /// The loader of one key: `FnOnce(&str) -> Result<Fetched>`.
    pub(crate) fn one(self) -> impl FnOnce(&str) -> Result<Fetched> + Send + 'static {
        move |key: &str| {
            Python::attach(|py| {
                let key = PyString::new(py, key).into_any();
                let answer = self.run(py, key, true).map_err(|e| raised(py, e))?;
                fetched(&answer).map_err(|e| unreadable(py, e))
            })
        }
    }

    /// [`PyLoader::one`] as an async loader (`FnOnce(String) -> future`),
    /// run on the engine's blocking pool: what a refresh ahead started from
    /// an L1 hit calls.
    pub(crate) fn one_async(self) -> impl FnOnce(String) -> FetchFuture + Send + 'static {
        let one = self.one();
        move |key: String| run_blocking(move || one(&key))
    }

    /// The loader of a batch: `FnOnce(Vec<String>) -> Result<HashMap<..>>`.
    pub(crate) fn many(
        self,
    ) -> impl FnOnce(Vec<String>) -> Result<HashMap<String, Fetched>> + Send + 'static {
        move |keys: Vec<String>| {
            Python::attach(|py| {
                let answer = PyList::new(py, &keys)
                    .and_then(|keys| self.run(py, keys.into_any(), false))
                    .map_err(|e| raised(py, e))?;
                fetched_many(&answer).map_err(|e| unreadable(py, e))
            })
        }
    }
}

/// The configured source of a cache: `source(key)` (a `tierstack._Source`,
/// which calls the user's callable or `load` method and resolves
/// coroutines). With `writable`, also `source.store(key, value,
/// idempotency_key)` and `source.remove(key, idempotency_key)`, which the
/// engine calls for write-through and write-behind; their return value is
/// ignored, and an exception is an error of kind `source`.
pub(crate) fn source(source: Py<PyAny>, writable: bool) -> Arc<dyn Source> {
    let source = Arc::new(source);
    let load = {
        let source = source.clone();
        move |key: &str| {
            Python::attach(|py| {
                let answer = source.bind(py).call1((key,)).map_err(|e| raised(py, e))?;
                fetched(&answer).map_err(|e| unreadable(py, e))
            })
        }
    };
    let loader = from_blocking_fn(load);
    if !writable {
        return Arc::new(loader);
    }
    let remover = source.clone();
    Arc::new(loader.with_writes(
        move |key: &str, value: &[u8], idempotency_key: &str| {
            attached("store", |py| {
                let value = PyBytes::new(py, value);
                let args = (key, value, idempotency_key);
                source.bind(py).call_method1(intern!(py, "store"), args)
            })
        },
        move |key: &str, idempotency_key: &str| {
            attached("remove", |py| {
                let args = (key, idempotency_key);
                remover.bind(py).call_method1(intern!(py, "remove"), args)
            })
        },
    ))
}

/// Runs a source write `write` (named `what`) with the GIL; its exception
/// is an error of kind `source`. Past the interpreter's shutdown the write
/// fails without being called (write-behind keeps it for the next process).
fn attached<F>(what: &str, write: F) -> Result<()>
where
    F: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>>,
{
    let written = Python::try_attach(|py| write(py).map(drop).map_err(|e| raised_in(py, what, e)));
    written.unwrap_or_else(|| {
        let message = format!("{what} was not called: the Python interpreter is shutting down");
        Err(Error::new(ErrorKind::Source, message))
    })
}

/// The event loop running on this thread, if any: where an async
/// caller's coroutine loaders run.
pub(crate) fn running_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    let get = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")
        .ok()?;
    get.call0().ok()
}

/// The options of a load: `ttl` as `set` reads it (`None`: the defaults).
pub(crate) fn options(ttl: Option<&Bound<'_, PyAny>>) -> PyResult<GetOptions> {
    let mut options = GetOptions::new();
    if let Some(ttl) = ttl.filter(|t| !t.is_none())
        && let Some(ttl) = ttl_seconds(ttl)?
    {
        options = options.ttl(ttl);
    }
    Ok(options)
}
