//! Conversions between Python objects and what the engine takes: keys, TTLs,
//! tags, and values (raw bytes, or JSON).
//!
//! The JSON convention shared with the other hosts: a value that is not
//! `bytes`, `bytearray` or `memoryview` is stored as compact UTF-8 JSON (no
//! spaces, non-ASCII kept as UTF-8), written by the standard library's
//! encoder with `allow_nan=False`, and read back with `orjson.loads`, which
//! decodes several times faster than `json.loads` and is strict RFC 8259.

use bytes::Bytes;
use pyo3::exceptions::{PyOverflowError, PyRecursionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyIterator, PyMemoryView, PyString};
use tierstack::{ErrorKind, SetOptions};

use crate::error::{new_err, to_py};

static ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DECODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// A key as UTF-8. `TypeError` if it is not a `str`; `InvalidKeyError` if
/// it holds lone surrogates (UTF-8 cannot encode them).
#[inline]
pub(crate) fn key(obj: &Bound<'_, PyAny>) -> PyResult<PyBackedStr> {
    utf8(obj, "a key", ErrorKind::InvalidKey)
}

/// A `str` argument other than a key (a tag, a glob pattern): `TypeError`
/// if it is not a `str`, `InvalidArgumentError` if UTF-8 cannot encode it.
pub(crate) fn text(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<PyBackedStr> {
    utf8(obj, what, ErrorKind::InvalidArgument)
}

#[inline]
fn utf8(obj: &Bound<'_, PyAny>, what: &str, kind: ErrorKind) -> PyResult<PyBackedStr> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be str, not {}", type_name(obj))))?;
    PyBackedStr::try_from(s.clone()).map_err(|cause| {
        new_err(
            obj.py(),
            kind,
            format!("{what} is not valid Unicode (it holds lone surrogates)"),
            Some(cause),
        )
    })
}

/// An iterator over `obj`, which must be an iterable of `str` (`what`
/// names it in the `TypeError`). A lone `str` or `bytes` is refused: it
/// would be read as its characters.
fn strings<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyIterator>> {
    let refuse = || {
        PyTypeError::new_err(format!(
            "{what} must be an iterable of str, not {}",
            type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(refuse());
    }
    obj.try_iter().map_err(|_| refuse())
}

/// The keys of an iterable of `str` (a lone `str` is refused: it would be
/// read as its characters), as the given objects and as UTF-8.
pub(crate) fn keys<'py>(
    obj: &Bound<'py, PyAny>,
) -> PyResult<Vec<(Bound<'py, PyAny>, PyBackedStr)>> {
    strings(obj, "keys")?
        .map(|item| {
            let item = item?;
            let utf8 = key(&item)?;
            Ok((item, utf8))
        })
        .collect()
}

/// The write options of `ttl` and `tags` (an iterable of `str`, or `None`).
///
/// `ttl` is `None` or a number of seconds, read as a float and judged by the
/// rule every host shares ([`tierstack::config::ttl_from_seconds`]): `0` is
/// the tier default; negative, NaN, infinite or over 100 years is an
/// `InvalidArgumentError`. A number too large for a float (`10**400`) is
/// judged as the infinity of its sign. Something that is not a number is a
/// `TypeError`.
pub(crate) fn set_options(
    ttl: Option<&Bound<'_, PyAny>>,
    tags: Option<&Bound<'_, PyAny>>,
) -> PyResult<SetOptions> {
    let mut options = SetOptions::new();
    if let Some(ttl) = ttl.filter(|t| !t.is_none())
        && let Some(ttl) = ttl_seconds(ttl)?
    {
        options = options.ttl(ttl);
    }
    if let Some(tags) = tags.filter(|t| !t.is_none()) {
        options = options.tags(self::tags(tags)?);
    }
    Ok(options)
}

/// The tags of an iterable of `str` (a lone `str` is refused).
pub(crate) fn tags(tags: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    strings(tags, "tags")?
        .map(|tag| Ok(text(&tag?, "a tag")?.to_string()))
        .collect()
}

/// A `ttl` argument that is not `None`, as [`set_options`] describes.
pub(crate) fn ttl_seconds(ttl: &Bound<'_, PyAny>) -> PyResult<Option<std::time::Duration>> {
    let py = ttl.py();
    let not_a_number = || {
        PyTypeError::new_err(format!(
            "ttl must be a number of seconds or None, not {}",
            type_name(ttl)
        ))
    };
    if ttl.is_instance_of::<PyString>() {
        return Err(not_a_number());
    }
    let (seconds, overflow) = match ttl.extract::<f64>() {
        Ok(seconds) => (seconds, None),
        Err(err) if err.is_instance_of::<PyOverflowError>(py) => {
            let negative = ttl.lt(0).unwrap_or(false);
            let infinity = if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            (infinity, Some(err))
        }
        Err(_) => return Err(not_a_number()),
    };
    tierstack::config::ttl_from_seconds(seconds).map_err(|e| match overflow {
        None => to_py(py, e),
        Some(cause) => new_err(
            py,
            e.kind(),
            format!("{} (the number is too large for a float)", e.message()),
            Some(cause),
        ),
    })
}

/// The bytes to store for `value`: `bytes`, `bytearray` and `memoryview`
/// as they are, anything else as JSON (`InvalidValueError` if JSON cannot
/// encode it).
pub(crate) fn encode(value: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let py = value.py();
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(tierstack::value::copy(bytes.as_bytes()));
    }
    if let Ok(array) = value.cast::<PyByteArray>() {
        return Ok(Bytes::from(array.to_vec()));
    }
    if value.is_instance_of::<PyMemoryView>() {
        let bytes = py.get_type::<PyBytes>().call1((value,))?;
        return Ok(tierstack::value::copy(bytes.cast::<PyBytes>()?.as_bytes()));
    }
    let encoder = ENCODE.get_or_try_init(py, || -> PyResult<_> {
        let options = PyDict::new(py);
        options.set_item("separators", (",", ":"))?;
        options.set_item("ensure_ascii", false)?;
        options.set_item("allow_nan", false)?;
        let encoder = py
            .import("json")?
            .getattr("JSONEncoder")?
            .call((), Some(&options))?;
        Ok(encoder.getattr("encode")?.unbind())
    })?;
    let text = encoder
        .bind(py)
        .call1((value,))
        .and_then(|text| PyBackedStr::try_from(text.cast_into::<PyString>()?))
        .map_err(|cause| {
            let unencodable = cause.is_instance_of::<PyTypeError>(py)
                || cause.is_instance_of::<PyValueError>(py)
                || cause.is_instance_of::<PyRecursionError>(py);
            match unencodable {
                true => new_err(
                    py,
                    ErrorKind::InvalidValue,
                    format!("JSON cannot encode the value: {cause}"),
                    Some(cause),
                ),
                false => cause,
            }
        })?;
    Ok(tierstack::value::copy(text.as_bytes()))
}

/// The Python object of the JSON in `raw`; `InvalidValueError` if it is not
/// UTF-8 JSON.
pub(crate) fn decode<'py>(raw: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>> {
    let py = raw.py();
    let loads = DECODE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("orjson")?.getattr("loads")?.unbind())
    })?;
    loads.bind(py).call1((raw,)).map_err(|cause| {
        match cause.is_instance_of::<PyValueError>(py)
            || cause.is_instance_of::<PyRecursionError>(py)
        {
            true => new_err(
                py,
                ErrorKind::InvalidValue,
                format!("the stored value is not UTF-8 JSON ({cause}); read it with get_bytes"),
                Some(cause),
            ),
            false => cause,
        }
    })
}
