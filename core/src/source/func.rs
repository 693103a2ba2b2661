//! Sources made of closures: how hosts hand in their loaders.

use std::future::Future;

use std::sync::Arc;

use bytes::Bytes;

use super::{FetchFuture, Fetched, Source, WriteFuture};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;

/// A source's writes as closures: store `(key, value, idempotency key)`
/// and remove `(key, idempotency key)`, each returning the write's future.
type AsyncWrites = (
    Arc<dyn Fn(String, Bytes, String) -> WriteFuture + Send + Sync>,
    Arc<dyn Fn(String, String) -> WriteFuture + Send + Sync>,
);

/// A source's writes as blocking closures (see [`BlockingFn::with_writes`]).
type BlockingWrites = (
    Arc<dyn Fn(&str, &[u8], &str) -> Result<()> + Send + Sync>,
    Arc<dyn Fn(&str, &str) -> Result<()> + Send + Sync>,
);

/// A [`Source`] calling an async closure; see [`from_fn`].
pub struct SourceFn<F> {
    f: F,
    writes: Option<AsyncWrites>,
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
    SourceFn { f, writes: None }
}

impl<F> SourceFn<F> {
    /// The source, writable: `store(key, value, idempotency_key)` and
    /// `remove(key, idempotency_key)` are async closures (see
    /// [`Source::store`]).
    #[must_use]
    pub fn with_writes<S, SFut, R, RFut>(mut self, store: S, remove: R) -> Self
    where
        S: Fn(String, Bytes, String) -> SFut + Send + Sync + 'static,
        SFut: Future<Output = Result<()>> + Send + 'static,
        R: Fn(String, String) -> RFut + Send + Sync + 'static,
        RFut: Future<Output = Result<()>> + Send + 'static,
    {
        self.writes = Some((
            Arc::new(move |k, v, i| Box::pin(store(k, v, i)) as WriteFuture),
            Arc::new(move |k, i| Box::pin(remove(k, i)) as WriteFuture),
        ));
        self
    }
}

impl<F, Fut> Source for SourceFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Fetched>> + Send + 'static,
{
    fn fetch(&self, key: &str, _validator: Option<&str>) -> FetchFuture {
        Box::pin((self.f)(key.to_owned()))
    }

    fn writable(&self) -> bool {
        self.writes.is_some()
    }

    fn store(&self, key: &str, value: Bytes, idempotency_key: &str) -> WriteFuture {
        match &self.writes {
            Some((store, _)) => store(key.to_owned(), value, idempotency_key.to_owned()),
            None => super::refuse_write(self.name(), key),
        }
    }

    fn remove(&self, key: &str, idempotency_key: &str) -> WriteFuture {
        match &self.writes {
            Some((_, remove)) => remove(key.to_owned(), idempotency_key.to_owned()),
            None => super::refuse_write(self.name(), key),
        }
    }
}

/// A [`Source`] calling a blocking closure; see [`from_blocking_fn`].
pub struct BlockingFn<F> {
    f: Arc<F>,
    writes: Option<BlockingWrites>,
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
        f: Arc::new(f),
        writes: None,
    }
}

impl<F> BlockingFn<F> {
    /// The source, writable: `store(key, value, idempotency_key)` and
    /// `remove(key, idempotency_key)` are closures that block (see
    /// [`Source::store`]), run on the runtime's blocking pool.
    #[must_use]
    pub fn with_writes<S, R>(mut self, store: S, remove: R) -> Self
    where
        S: Fn(&str, &[u8], &str) -> Result<()> + Send + Sync + 'static,
        R: Fn(&str, &str) -> Result<()> + Send + Sync + 'static,
    {
        self.writes = Some((Arc::new(store), Arc::new(remove)));
        self
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

    fn writable(&self) -> bool {
        self.writes.is_some()
    }

    fn store(&self, key: &str, value: Bytes, idempotency_key: &str) -> WriteFuture {
        let Some((store, _)) = &self.writes else {
            return super::refuse_write(self.name(), key);
        };
        let (store, key, id) = (store.clone(), key.to_owned(), idempotency_key.to_owned());
        run_blocking(move || store(&key, &value, &id))
    }

    fn remove(&self, key: &str, idempotency_key: &str) -> WriteFuture {
        let Some((_, remove)) = &self.writes else {
            return super::refuse_write(self.name(), key);
        };
        let (remove, key, id) = (remove.clone(), key.to_owned(), idempotency_key.to_owned());
        run_blocking(move || remove(&key, &id))
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
