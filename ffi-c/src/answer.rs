//! The handles a loader answers through (`tierstack_load`,
//! `tierstack_load_batch`) and the functions it answers with: a value and
//! its tags, "not found", or its own failure message. The handles are
//! tokens of a [`Scoped`] registry, live only while their loader call runs;
//! [`crate::load`] runs the calls and reads the answers.

use std::collections::{HashMap, HashSet};
use std::ffi::c_char;

use tierstack::config::ttl_from_seconds;
use tierstack::{Error, ErrorKind, Fetched, Loaded};

use crate::error::tierstack_result;
use crate::handle::{self, Scoped};
use crate::panic::guard;

/// The answer slot of one loader call, handed to the loader as its last
/// argument. It is valid only while that loader call runs: answering
/// through it afterwards fails with `TIERSTACK_RESULT_INVALID_ARGUMENT`.
/// It may be answered from any thread during the call, once: with a value
/// (`tierstack_load_value`, then any `tierstack_load_tag`), "not found"
/// (`tierstack_load_not_found`) or an error (`tierstack_load_error`).
#[allow(non_camel_case_types)]
pub struct tierstack_load {
    _opaque: [u8; 0],
}

/// The answer slots of one batch loader call; see `tierstack_load`.
#[allow(non_camel_case_types)]
pub struct tierstack_load_batch {
    _opaque: [u8; 0],
}

/// The live `tierstack_load` handles: what each was answered.
static LOADS: Scoped<Answer> = Scoped::new("load", "loader call");

/// The live `tierstack_load_batch` handles.
static BATCHES: Scoped<Batch> = Scoped::new("batch", "loader call");

/// What a loader call has answered through its `tierstack_load`.
pub(crate) enum Answer {
    /// Nothing yet.
    Nothing,
    /// A value (whose tags may still grow) or "not found".
    Fetched(Fetched),
    /// The loader's own failure message (`tierstack_load_error`).
    Failed(String),
}

/// What a batch loader was asked and has answered so far.
pub(crate) struct Batch {
    asked: HashSet<String>,
    pub(crate) answers: HashMap<String, Fetched>,
    /// The loader's own failure message (`tierstack_load_batch_error`):
    /// the whole batch failed.
    pub(crate) failed: Option<String>,
}

/// Runs `call` (a loader call) with a new `tierstack_load` handle, live
/// only during the call; gives back what `call` returned and what was
/// answered through the handle.
pub(crate) fn run_load<R>(call: impl FnOnce(*mut tierstack_load) -> R) -> (R, Answer) {
    LOADS.run(Answer::Nothing, call)
}

/// Runs `call` (a batch loader call asked for the keys `asked`) with a new
/// `tierstack_load_batch` handle, live only during the call; gives back
/// what `call` returned and what was answered.
pub(crate) fn run_batch<R>(
    asked: HashSet<String>,
    call: impl FnOnce(*mut tierstack_load_batch) -> R,
) -> (R, Batch) {
    let batch = Batch {
        asked,
        answers: HashMap::new(),
        failed: None,
    };
    BATCHES.run(batch, call)
}

/// A value answer: `len` bytes at `data`, with the loader's TTL in seconds
/// (0: the call's TTL, else the tier default).
///
/// # Safety
/// `data` is NULL with `len == 0` or valid for `len` bytes.
unsafe fn value_answer(data: *const u8, len: usize, ttl_seconds: f64) -> Result<Fetched, Error> {
    let ttl = ttl_from_seconds(ttl_seconds)?;
    // SAFETY: per the caller.
    let data = unsafe { handle::slice(data, len, "data") }?;
    let loaded = Loaded::new(tierstack::value::copy(data));
    Ok(Fetched::Value(match ttl {
        Some(ttl) => loaded.ttl(ttl),
        None => loaded,
    }))
}

/// Records `answer` for the live load `load`, unless it has one.
fn answer(load: *const tierstack_load, answer: Answer) -> Result<(), Error> {
    LOADS.with(load, |slot| match slot {
        Answer::Nothing => {
            *slot = answer;
            Ok(())
        }
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            "the load was already answered: a loader answers once",
        )),
    })
}

/// Runs `f` on the live batch `batch` and `key`, one of the keys it asked
/// for, unless the batch has failed (`tierstack_load_batch_error`).
///
/// # Safety
/// `key` as in [`handle::key`].
unsafe fn with_batch_key<R>(
    batch: *const tierstack_load_batch,
    key: *const c_char,
    key_len: usize,
    f: impl FnOnce(&mut Batch, &str) -> Result<R, Error>,
) -> Result<R, Error> {
    // SAFETY: per the caller.
    let key = unsafe { handle::key(key, key_len, "key") }?;
    BATCHES.with(batch, |batch| {
        if batch.failed.is_some() {
            return Err(batch_failed());
        }
        if !batch.asked.contains(key) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} is not a key this batch asked for",
                    tierstack::key::quote(key)
                ),
            ));
        }
        f(batch, key)
    })
}

/// The error of an answer to a batch that already failed.
fn batch_failed() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "the batch already failed (tierstack_load_batch_error): it takes no more answers",
    )
}

/// Records `answer` for `key` in the live batch `batch`.
///
/// # Safety
/// `key` as in [`handle::key`].
unsafe fn answer_batch(
    batch: *const tierstack_load_batch,
    key: *const c_char,
    key_len: usize,
    fetched: Fetched,
) -> Result<(), Error> {
    // SAFETY: per the caller.
    unsafe {
        with_batch_key(batch, key, key_len, |batch, key| {
            if batch.answers.contains_key(key) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{} was already answered: a batch answers each key once",
                        tierstack::key::quote(key)
                    ),
                ));
            }
            batch.answers.insert(key.to_owned(), fetched);
            Ok(())
        })
    }
}

/// Adds `tag` to the value answered in `fetched` (`None`: nothing
/// answered yet); `what` names the answer in errors.
fn add_tag(fetched: Option<&mut Fetched>, tag: &str, what: &str) -> Result<(), Error> {
    match fetched {
        Some(Fetched::Value(loaded)) => {
            loaded.tags.push(tag.to_owned());
            Ok(())
        }
        Some(_) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} was answered \"not found\": there is no value to tag"),
        )),
        None => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} has no value to tag yet: answer the value first, then its tags"),
        )),
    }
}

/// The loader's failure message: UTF-8, not empty, without a NUL (which
/// would cut it short for a C reader of the last error message).
///
/// # Safety
/// As [`handle::slice`].
pub(crate) unsafe fn failure_message(message: *const c_char, len: usize) -> Result<String, Error> {
    // SAFETY: per the caller.
    let message = unsafe { handle::utf8(message, len, "message", ErrorKind::InvalidArgument) }?;
    if message.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "message is empty: say what failed",
        ));
    }
    if message.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "message holds a NUL byte",
        ));
    }
    Ok(message.to_owned())
}

/// Answers a load with a value: `len` bytes at `data` (copied; NULL when
/// `len` is 0) and the TTL the loader chooses, in seconds by the rule of
/// every TTL: 0 takes the TTL of the `tierstack_cache_get_or_load` call
/// (else the tier default); negative, NaN, infinite or over 100 years is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT` and answers nothing.
///
/// `load` must be the handle of a loader call still running (any thread may
/// answer it during the call); a load answers once: a second answer, or one
/// after the call returned, is `TIERSTACK_RESULT_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_value(
    load: *mut tierstack_load,
    data: *const u8,
    len: usize,
    ttl_seconds: f64,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes `len` readable bytes.
        let fetched = unsafe { value_answer(data, len, ttl_seconds) }?;
        answer(load, Answer::Fetched(fetched))
    })
}

/// Answers a load with "not found": the caller gets no value (`*out` NULL),
/// nothing is stored, and the key is not loaded again for `negative_ttl`
/// seconds (in every process sharing the file). `load` as in
/// `tierstack_load_value`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_not_found(load: *mut tierstack_load) -> tierstack_result {
    guard(|| answer(load, Answer::Fetched(Fetched::NotFound)))
}

/// Adds tag `tag` (`tag_len` bytes of UTF-8) to the value answered through
/// `load`: call it after `tierstack_load_value`, once per tag, before the
/// loader returns. The tags are stored with the value in every tier, so
/// `tierstack_cache_invalidate_tag` of any of them removes it (in every
/// process sharing the file). The tag is copied.
///
/// A load not answered yet, answered "not found" or failed is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`, as is a tag that is not UTF-8 and
/// a `load` whose call returned. A tag that is empty, over 255 bytes or
/// holds a control character is refused by the engine when it stores the
/// value: nothing is stored and the caller of
/// `tierstack_cache_get_or_load` gets `TIERSTACK_RESULT_INVALID_ARGUMENT`
/// (or its stale copy, if it holds one). Any thread may call this during
/// the loader call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_tag(
    load: *mut tierstack_load,
    tag: *const c_char,
    tag_len: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes `tag_len` readable bytes.
        let tag = unsafe { handle::utf8(tag, tag_len, "tag", ErrorKind::InvalidArgument) }?;
        LOADS.with(load, |slot| match slot {
            Answer::Fetched(fetched) => add_tag(Some(fetched), tag, "the load"),
            Answer::Nothing => add_tag(None, tag, "the load"),
            Answer::Failed(_) => Err(Error::new(
                ErrorKind::InvalidArgument,
                "the load failed (tierstack_load_error): there is no value to tag",
            )),
        })
    })
}

/// Fails the load with the loader's own message (`message_len` bytes of
/// UTF-8, not empty, without a NUL; copied): the caller gets
/// `TIERSTACK_RESULT_SOURCE` (or a stale copy) and its last error message
/// reads `source: the loader returned <result name>: <message>`, where the
/// result is the one the loader then returns (e.g. `source: the loader
/// returned io: the origin answered 503`). A loader that calls this and
/// returns `TIERSTACK_RESULT_OK` has still failed, with `source: the loader
/// failed: <message>`.
///
/// An error is the load's answer: a load already answered (a value, "not
/// found" or an error) is `TIERSTACK_RESULT_INVALID_ARGUMENT`, and so is a
/// value answered after it; so are a bad message and a `load` whose call
/// returned. Any thread may call this during the loader call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_error(
    load: *mut tierstack_load,
    message: *const c_char,
    message_len: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes `message_len` readable bytes.
        let message = unsafe { failure_message(message, message_len) }?;
        answer(load, Answer::Failed(message))
    })
}

/// Answers key `key` (`key_len` bytes, one of the keys the batch loader was
/// handed) of a batch with a value, as `tierstack_load_value` does. A key
/// the batch did not ask for, or one already answered, is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`; so are a batch failed with
/// `tierstack_load_batch_error` and a `batch` whose loader call returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_batch_value(
    batch: *mut tierstack_load_batch,
    key: *const c_char,
    key_len: usize,
    data: *const u8,
    len: usize,
    ttl_seconds: f64,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes readable key and data bytes.
        unsafe {
            let fetched = value_answer(data, len, ttl_seconds)?;
            answer_batch(batch, key, key_len, fetched)
        }
    })
}

/// Answers key `key` of a batch with "not found", as
/// `tierstack_load_not_found` does; leaving a key unanswered means the
/// same. Errors as in `tierstack_load_batch_value`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_batch_not_found(
    batch: *mut tierstack_load_batch,
    key: *const c_char,
    key_len: usize,
) -> tierstack_result {
    // SAFETY: the caller passes readable key bytes.
    guard(|| unsafe { answer_batch(batch, key, key_len, Fetched::NotFound) })
}

/// Adds tag `tag` to the value answered for key `key` of a batch, as
/// `tierstack_load_tag` does for a single load: after
/// `tierstack_load_batch_value` for that key, once per tag. A key the batch
/// did not ask for, not answered yet or answered "not found" is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`, as are the other errors of
/// `tierstack_load_batch_value`. A bad tag is refused by the engine when it
/// stores the batch: that key is not stored (the batch's other values are)
/// and the caller's `tierstack_cache_get_or_load_many` gets
/// `TIERSTACK_RESULT_INVALID_ARGUMENT` (unless the key has a stale copy).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_batch_tag(
    batch: *mut tierstack_load_batch,
    key: *const c_char,
    key_len: usize,
    tag: *const c_char,
    tag_len: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes readable key and tag bytes.
        unsafe {
            let tag = handle::utf8(tag, tag_len, "tag", ErrorKind::InvalidArgument)?;
            with_batch_key(batch, key, key_len, |batch, key| {
                add_tag(batch.answers.get_mut(key), tag, &tierstack::key::quote(key))
            })
        }
    })
}

/// Fails the whole batch with the loader's own message, as
/// `tierstack_load_error` does for a single load: every key of the batch
/// fails (those with a stale copy get it), whatever was answered, and the
/// caller's last error message reads `source: the loader returned <result
/// name>: <message>` (`source: the loader failed: <message>` when the
/// loader returns OK). The batch then takes no more answers: a second
/// error, a value, "not found" or a tag is
/// `TIERSTACK_RESULT_INVALID_ARGUMENT`, as are a bad message and a `batch`
/// whose call returned. Any thread may call this during the loader call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tierstack_load_batch_error(
    batch: *mut tierstack_load_batch,
    message: *const c_char,
    message_len: usize,
) -> tierstack_result {
    guard(|| {
        // SAFETY: the caller passes `message_len` readable bytes.
        let message = unsafe { failure_message(message, message_len) }?;
        BATCHES.with(batch, |batch| match batch.failed {
            Some(_) => Err(batch_failed()),
            None => {
                batch.failed = Some(message);
                Ok(())
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_are_utf8_not_empty_and_without_nul() {
        let ok = unsafe { failure_message(c"origin down".as_ptr(), 11) }.unwrap();
        assert_eq!(ok, "origin down");
        for (bytes, want) in [
            (
                &b""[..],
                "invalid_argument: message is empty: say what failed",
            ),
            (b"a\0b", "invalid_argument: message holds a NUL byte"),
            (
                b"caf\xc3",
                "invalid_argument: message is not UTF-8 (bad byte at 3)",
            ),
        ] {
            let err = unsafe { failure_message(bytes.as_ptr().cast(), bytes.len()) }.unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn tags_go_on_a_value_only() {
        let mut value = Fetched::value("v");
        add_tag(Some(&mut value), "t", "the load").unwrap();
        assert!(matches!(&value, Fetched::Value(l) if l.tags == ["t"]));
        let err = add_tag(Some(&mut Fetched::NotFound), "t", "the load").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid_argument: the load was answered \"not found\": there is no value to tag"
        );
        assert_eq!(
            add_tag(None, "t", "\"k\"").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
