//! Sources made of closures: how hosts hand in their loaders.

use std::future::Future;

use super::{FetchFuture, Fetched, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;

/// A [`Source`] calling an async closure; see [`from_fn`].
pub struct SourceFn<F> {
    f: F,
}

/// A source whose fetch is `f(key)`, an async closure.
///
/// ```
/// use tierstack::source::{self, Fetched};
///
/// let source = source::from_fn(|key: String| async move {
///     Ok(Fetched::value(format!("value of {key}")))
/// });
/// # let _ = source;
/// ```
pub fn from_fn<F, Fut>(f: F) -> SourceFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Fetched>> + Send + 'static,
{
    SourceFn { f }
}

impl<F, Fut> Source for SourceFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Fetched>> + Send + 'static,
{
    fn fetch(&self, key: &str, _validator: Option<&str>) -> FetchFuture {
        Box::pin((self.f)(key.to_owned()))
    }
}

/// A [`Source`] calling a blocking closure; see [`from_blocking_fn`].
pub struct BlockingFn<F> {
    f: std::sync::Arc<F>,
}

/// A source whose fetch is `f(key)`, a closure that blocks (a C function,
/// a Python callable). It runs on the shared runtime's blocking pool, never
/// on the caller's thread, so that a caller can stop waiting for it (at the
/// soft or hard timeout) while it finishes.
pub fn from_blocking_fn<F>(f: F) -> BlockingFn<F>
where
    F: Fn(&str) -> Result<Fetched> + Send + Sync + 'static,
{
    BlockingFn {
        f: std::sync::Arc::new(f),
    }
}

impl<F> Source for BlockingFn<F>
where
    F: Fn(&str) -> Result<Fetched> + Send + Sync + 'static,
{
    fn fetch(&self, key: &str, _validator: Option<&str>) -> FetchFuture {
        let (f, key) = (self.f.clone(), key.to_owned());
        run_blocking(move || f(&key))
    }
}

/// Runs a blocking call on the shared runtime's blocking pool; the future
/// resolves to its result (hosts use it to adapt blocking loaders).
pub fn run_blocking<R>(
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> std::pin::Pin<Box<dyn Future<Output = Result<R>> + Send + 'static>>
where
    R: Send + 'static,
{
    let task = runtime::handle().spawn_blocking(f);
    Box::pin(async move {
        task.await
            .map_err(|e| Error::new(ErrorKind::Source, format!("the loader did not finish: {e}")))?
    })
}
