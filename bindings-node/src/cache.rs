//! `HybridStorage`: the storage class of the MCP server, over the engine.
//!
//! It keeps the StorageProvider surface of the design it replaces (`get`,
//! `set`, `has`, `delete`, `clear`, `mget`, `mset`, `getMetadata`, `keys`,
//! `size`, `dispose`, `isDisposed`), so a server swaps its storage class
//! without changing call sites, and adds `getOrLoad`, `lookup`, the raw
//! byte reads `getBuffer`, `lookupBuffer` and `mgetBuffer`, `invalidateTag`,
//! `flush`, `getStats` and `getCircuitBreakerStatus`, and the write-behind
//! outbox's `outboxStats`, `deadLetters`, `retryDeadLetters` and
//! `purgeDeadLetters`.
//!
//! Every promise-returning method reports a failure by rejecting (never by
//! throwing), with a JS `Error` whose `code` is the error kind.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use napi::Env;
use napi::bindgen_prelude::{Either, Null, ObjectFinalize, Unknown};
use napi_derive::napi;
use tierstack::{Error, Lookup, blocking::Cache};

use crate::config;
use crate::drive::{self, Reply};
use crate::entry::{self, lookup_to_js, metadata_to_js};
use crate::error::{self, argument, disposed};
use crate::js_values::{self, Held, Value};
use crate::l1_objects::L1Objects;
use crate::load::{self, CallLoader};
use crate::outbox::{OutboxStats, dead_letters_to_js};
use crate::stats::{CircuitBreakerStatus, StorageStats};
use crate::task;
use crate::turns::Turns;
use crate::value::Builtins;

/// A hybrid cache: this process's memory (L1) over a SQLite file shared by
/// every process on the host (L2).
///
/// Values are JSON-able values (stored as compact UTF-8 JSON) or
/// `Buffer`/`Uint8Array` bytes (stored as given; read them with
/// `getBuffer`). Reads run on the JS thread (an L1 hit resolves without
/// leaving it); so does a `set` that need not wait, and other writes run
/// on a thread, in the order they were made. A value read from memory
/// is the same object on every hit while its entry is unchanged: do not
/// mutate what `get` returns.
#[napi(custom_finalize)]
pub struct HybridStorage {
    /// Every method takes `&self` (so napi-rs never holds `&mut` to a
    /// storage, which [`crate::dispatch`] relies on); `dispose` empties this.
    /// A borrow of it is never held while JS code runs.
    inner: RefCell<Option<Cache>>,
    builtins: Builtins,
    l1_objects: RefCell<L1Objects>,
    /// Whether a source was given or configured (`github`) at open: plain
    /// reads then load through it.
    source: bool,
    /// Whether stale object values get `_stale: true` (option `markStale`).
    mark_stale: bool,
    /// Whether the strategy writes to the source (write-through,
    /// write-behind): writes that may wait for its JS functions then run on
    /// the core's runtime (see [`task::spawn_waiting_for_js`]).
    writes_source: bool,
    /// The order of the writes handed to a thread (see [`crate::turns`]).
    turns: Arc<Turns>,
}

/// What `mget` found.
pub(crate) enum Found<'e> {
    /// The value of each key asked, in order (`None`: not found).
    Values(Vec<Option<Value<'e>>>),
    /// The promise of the `Map`, when keys had to be loaded.
    Promise(Value<'e>),
}

/// What a read that may load answers with.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// The decoded value (`get`).
    Value,
    /// The bytes as a `Buffer` (`getBuffer`).
    Buffer,
    /// `{ value, tier, stale, age }` with the decoded value (`lookup`).
    Lookup,
    /// `{ value, tier, stale, age }` with a `Buffer` (`lookupBuffer`).
    LookupBuffer,
}

impl Shape {
    /// The JS answer for what the core found, on the JS thread.
    fn answer<'e>(
        self,
        env: &'e Env,
        found: Option<Lookup>,
        mark_stale: bool,
    ) -> Result<Value<'e>, Error> {
        let Some(lookup) = found else {
            return js_values::undefined(env);
        };
        let decoded = || {
            let value = decode(env, &lookup.value)?;
            if mark_stale && lookup.stale {
                mark(env, value)?;
            }
            Ok::<_, Error>(value)
        };
        match self {
            Shape::Value => decoded(),
            Shape::Buffer => js_values::buffer(env, &lookup.value),
            Shape::Lookup => lookup_to_js(env, &lookup, decoded()?),
            Shape::LookupBuffer => {
                lookup_to_js(env, &lookup, js_values::buffer(env, &lookup.value)?)
            }
        }
    }
}

/// Decodes stored bytes with the built-ins of the moment (for answers
/// settled after a load, away from the storage's own).
fn decode<'e>(env: &'e Env, bytes: &[u8]) -> Result<Value<'e>, Error> {
    let builtins = Builtins::capture(env)?;
    let value = builtins.decode(env, bytes);
    builtins.release(env);
    value
}

/// Adds `_stale: true` to a stale object value (option `markStale`); the
/// value is a fresh decode, so nothing stored or kept changes.
fn mark(env: &Env, value: Value) -> Result<(), Error> {
    if js_values::type_of(value) == napi::ValueType::Object && !js_values::is_array(value) {
        js_values::set_named(env, value, c"_stale", js_values::boolean(env, true)?)?;
    }
    Ok(())
}

/// The panic boundary of a promise-returning method: the promise `body`
/// returns; a promise rejected with its error, or with an `internal` error
/// if it panicked (`what` names the method).
pub(crate) fn promised<'e>(
    env: &'e Env,
    what: &str,
    body: impl FnOnce() -> Result<Value<'e>, Error>,
) -> napi::Result<Unknown<'e>> {
    let outcome = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|panic| Err(error::panicked(what, &*panic)));
    match outcome {
        Ok(promise) => Ok(promise),
        Err(err) => js_values::settled(env, Err(error::to_js(env, &err)))
            .map_err(|e| error::to_napi(env, &e)),
    }
}

/// The panic boundary of a synchronous method: what `body` returns; its
/// error, or an `internal` error if it panicked, thrown.
pub(crate) fn guarded<T>(
    env: &Env,
    what: &str,
    body: impl FnOnce() -> Result<T, Error>,
) -> napi::Result<T> {
    catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|panic| Err(error::panicked(what, &*panic)))
        .map_err(|e| error::to_napi(env, &e))
}

fn to_undefined(env: &Env, (): ()) -> Result<Value<'_>, Error> {
    js_values::undefined(env)
}

fn to_boolean(env: &Env, b: bool) -> Result<Value<'_>, Error> {
    js_values::boolean(env, b)
}

fn to_number(env: &Env, n: u64) -> Result<Value<'_>, Error> {
    js_values::number(env, n as f64)
}

#[napi]
impl HybridStorage {
    /// Opens the storage (creating the SQLite file if needed). Throws an
    /// `Error` with `code === 'invalid_config'` for an unknown key or a bad
    /// value, and `code === 'invalid_argument'` for a bad option.
    ///
    /// `options.source` (a function `(key) => value | undefined`, possibly
    /// async, or `{ load }`) makes plain reads (`get`, `getBuffer`,
    /// `lookup`, `lookupBuffer`, `mget`, `mgetBuffer`) load what no tier
    /// holds through it (read-through), with the engine's single-flight,
    /// breaker, timeouts and fail-safe. A `github` section in the config
    /// does the same with GitHub as the source (not together with
    /// `options.source`: `invalid_config`). `{ load, store, remove }` is a
    /// writable source, which config `strategy: 'write-through'` or
    /// `'write-behind'` writes to (with a read-only source or none, those
    /// throw `invalid_config`).
    #[napi(
        catch_unwind,
        constructor,
        ts_args_type = "config?: HybridStorageConfig | null, options?: HybridStorageOptions | null"
    )]
    pub fn new(env: &Env, config: Unknown, options: Unknown) -> napi::Result<Self> {
        catch_unwind(AssertUnwindSafe(|| Self::open(env, config, options))).unwrap_or_else(
            |panic| {
                let err = error::panicked("new HybridStorage", &*panic);
                Err(error::to_napi(env, &err))
            },
        )
    }

    /// The constructor's work.
    fn open(env: &Env, config: Unknown, options: Unknown) -> napi::Result<Self> {
        let builtins = Builtins::capture(env).map_err(|e| error::to_napi(env, &e))?;
        let opened = config::from_js(env, &builtins, Some(config)).and_then(|config| {
            let options = config::options_from_js(env, options)?;
            let max_bytes = match config.memory.enabled {
                true => config.memory.max_bytes,
                false => 0,
            };
            let writes_source = config.strategy.writes_source();
            let mut builder = Cache::builder().config(config);
            if let Some(load) = options.source {
                builder = builder.source_arc(load);
            }
            let cache = builder.build_blocking()?;
            // A source handed in, or one configured (`github`), that reads
            // load through (not with `cache-aside`).
            let source = cache.has_source();
            Ok((cache, max_bytes, source, options.mark_stale, writes_source))
        });
        match opened {
            Ok((cache, max_bytes, source, mark_stale, writes_source)) => Ok(Self {
                inner: RefCell::new(Some(cache)),
                builtins,
                l1_objects: RefCell::new(L1Objects::new(max_bytes)),
                source,
                mark_stale,
                writes_source,
                turns: Arc::default(),
            }),
            Err(err) => {
                builtins.release(env);
                Err(error::to_napi(env, &err))
            }
        }
    }

    /// Runs `f` on the open cache; `f` must not run JS code.
    #[inline]
    fn with_cache<R>(&self, f: impl FnOnce(&Cache) -> tierstack::Result<R>) -> Result<R, Error> {
        match &*self.inner.borrow() {
            Some(cache) => f(cache),
            None => Err(disposed()),
        }
    }

    /// A handle to the open cache, for work that outlives the call.
    fn cache(&self) -> Result<Cache, Error> {
        self.with_cache(|c| Ok(c.clone()))
    }

    /// Queues a write, done after the writes queued before it (see
    /// [`crate::turns`]). With a strategy that writes to the source it may wait for
    /// the source's JS functions, or for a write that does: it then runs on
    /// the core's runtime (see [`task::spawn_waiting_for_js`]), so no libuv
    /// pool thread waits for one.
    fn spawn_write<'e, R: Send + 'static>(
        &self,
        env: &'e Env,
        cache: &Cache,
        work: impl FnOnce(&Cache) -> tierstack::Result<R> + Send + 'static,
        to_js: task::ToJs<R>,
    ) -> Result<Value<'e>, Error> {
        let turn = self.turns.take();
        let work = move |cache: &Cache| {
            turn.wait();
            work(cache)
        };
        match self.writes_source {
            true => task::spawn_waiting_for_js(env, cache, work, to_js),
            false => task::spawn(env, cache, work, to_js),
        }
    }

    /// Reads `key` and decodes its value, reusing the kept value of an
    /// unchanged L1 entry.
    #[inline]
    fn read<'e>(&self, env: &'e Env, key: Value) -> Result<Option<(Value<'e>, Lookup)>, Error> {
        let key = js_values::key(env, key)?;
        let Some((lookup, version)) = self.with_cache(|c| c.lookup_versioned(&key))? else {
            return Ok(None);
        };
        let value = match version {
            Some(version) => self.kept_or_decoded(env, &key, version, &lookup.value)?,
            None => self.builtins.decode(env, &lookup.value)?,
        };
        Ok(Some((value, lookup)))
    }

    /// The value of `bytes`, read from L1 entry `version` of `key`: the kept
    /// one while the entry is unchanged, else decoded now and kept.
    // Inlined into every read: it is on the L1 hit path.
    #[inline(always)]
    fn kept_or_decoded<'e>(
        &self,
        env: &'e Env,
        key: &str,
        version: u64,
        bytes: &[u8],
    ) -> Result<Value<'e>, Error> {
        if let Some(value) = self.l1_objects.borrow().get(env, version) {
            return Ok(value);
        }
        let value = self.builtins.decode(env, bytes)?;
        self.l1_objects
            .borrow_mut()
            .insert(env, key, version, value, bytes.len());
        Ok(value)
    }

    /// A read of `key` through the core's load path (a storage with a
    /// source): settled at once when a tier answers, else when the load lands.
    fn load<'e>(&self, env: &'e Env, key: &str, shape: Shape) -> Result<Reply<'e>, Error> {
        let cache = self.cache()?.as_async().clone();
        let key = key.to_owned();
        let mark_stale = self.mark_stale;
        let promise = drive::promise(
            env,
            async move { cache.lookup(&key).await },
            Box::new(move |env, found| shape.answer(env, found, mark_stale)),
        )?;
        Ok(Reply::Promise(promise))
    }

    /// `get`: the decoded value or `undefined`.
    #[inline]
    pub(crate) fn get_value<'e>(&self, env: &'e Env, key: Value) -> Result<Reply<'e>, Error> {
        if self.source {
            return self.get_through(env, key);
        }
        match self.read(env, key)? {
            Some((value, _)) => Ok(Reply::Value(value)),
            None => js_values::undefined(env).map(Reply::Value),
        }
    }

    /// `get` with a source: an L1 hit answers on the JS thread (with the
    /// kept decoded value while the entry is unchanged); anything else goes
    /// through the core's load path.
    fn get_through<'e>(&self, env: &'e Env, key: Value) -> Result<Reply<'e>, Error> {
        let key = js_values::key(env, key)?;
        match self.memory_hit(env, &key)? {
            Some((value, _)) => Ok(Reply::Value(value)),
            None => self.load(env, &key, Shape::Value),
        }
    }

    /// An L1 hit of `key` (counted, with a refresh ahead through the
    /// configured source if one is due) with its decoded value; `None`, with
    /// nothing counted, when L1 does not hold it.
    #[inline]
    fn memory_hit<'e>(
        &self,
        env: &'e Env,
        key: &str,
    ) -> Result<Option<(Value<'e>, Lookup)>, Error> {
        let Some((lookup, version)) = self.with_cache(|c| Ok(c.memory_hit_configured(key)))? else {
            return Ok(None);
        };
        // An L1 hit is never stale, so `markStale` has nothing to mark.
        debug_assert!(!lookup.stale);
        let value = self.kept_or_decoded(env, key, version, &lookup.value)?;
        Ok(Some((value, lookup)))
    }

    /// `getBuffer`: the stored bytes as a `Buffer`, or `undefined`.
    pub(crate) fn get_buffer_value<'e>(
        &self,
        env: &'e Env,
        key: Value,
    ) -> Result<Reply<'e>, Error> {
        let key = js_values::key(env, key)?;
        if self.source {
            return self.load(env, &key, Shape::Buffer);
        }
        match self.with_cache(|c| c.get(&key))? {
            Some(bytes) => js_values::buffer(env, &bytes).map(Reply::Value),
            None => js_values::undefined(env).map(Reply::Value),
        }
    }

    /// `lookup`: `{ value, tier, stale, age }`, or `undefined`.
    pub(crate) fn lookup_value<'e>(&self, env: &'e Env, key: Value) -> Result<Reply<'e>, Error> {
        if self.source {
            let key = js_values::key(env, key)?;
            return match self.memory_hit(env, &key)? {
                Some((value, lookup)) => lookup_to_js(env, &lookup, value).map(Reply::Value),
                None => self.load(env, &key, Shape::Lookup),
            };
        }
        match self.read(env, key)? {
            Some((value, lookup)) => lookup_to_js(env, &lookup, value).map(Reply::Value),
            None => js_values::undefined(env).map(Reply::Value),
        }
    }

    /// `lookupBuffer`: `{ value, tier, stale, age }` with the bytes, or `undefined`.
    pub(crate) fn lookup_buffer_value<'e>(
        &self,
        env: &'e Env,
        key: Value,
    ) -> Result<Reply<'e>, Error> {
        let key = js_values::key(env, key)?;
        if self.source {
            return self.load(env, &key, Shape::LookupBuffer);
        }
        match self.with_cache(|c| c.lookup(&key))? {
            Some(lookup) => {
                lookup_to_js(env, &lookup, js_values::buffer(env, &lookup.value)?).map(Reply::Value)
            }
            None => js_values::undefined(env).map(Reply::Value),
        }
    }

    /// `has`: whether the key holds a fresh value (never loads).
    pub(crate) fn has_value<'e>(&self, env: &'e Env, key: Value) -> Result<Reply<'e>, Error> {
        let key = js_values::key(env, key)?;
        js_values::boolean(env, self.with_cache(|c| c.has(&key))?).map(Reply::Value)
    }

    /// The value of `key` (decoded JSON), or `undefined` on a miss.
    /// Rejects with `invalid_value` if the stored bytes are not JSON.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "key: string",
        ts_return_type = "Promise<T | undefined>"
    )]
    pub fn get<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "get", || self.get_value(env, key)?.into_promise(env))
    }

    /// The stored bytes of `key` as a `Buffer`, or `undefined` on a miss.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<Buffer | undefined>"
    )]
    pub fn get_buffer<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "getBuffer", || {
            self.get_buffer_value(env, key)?.into_promise(env)
        })
    }

    /// The value of `key` with the tier that served it, whether it is a
    /// stale copy, and its age in seconds; `undefined` on a miss.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<LookupResult | undefined>"
    )]
    pub fn lookup<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "lookup", || {
            self.lookup_value(env, key)?.into_promise(env)
        })
    }

    /// `lookup` with the stored bytes as a `Buffer` for `value`.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<(LookupResult & { value: Buffer }) | undefined>"
    )]
    pub fn lookup_buffer<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "lookupBuffer", || {
            self.lookup_buffer_value(env, key)?.into_promise(env)
        })
    }

    /// Stores `value` under `key` in every tier. A `Buffer` or `Uint8Array`
    /// is stored as its bytes, anything else as its JSON. The third argument
    /// is a TTL in seconds or `{ ttl, tags }`: absent or `0` takes the tier
    /// default; a negative, `NaN` or infinite TTL, one over 100 years, or an
    /// unknown option rejects with `code === 'invalid_argument'` and stores
    /// nothing.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string, value: unknown, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<void>"
    )]
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: Unknown,
        value: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "set", || {
            let key = js_values::key(env, key)?;
            self.cache()?;
            let options = entry::set_options(env, Some(ttl_seconds))?;
            let bytes = self.builtins.encode(env, value)?;
            // Encoding may run user code (`toJSON`), even `dispose()`.
            let cache = self.cache()?;
            self.l1_objects.borrow_mut().remove(env, &key);
            let key = key.to_string();
            // Done here, on the JS thread, when nothing would make it wait
            // (see `Cache::try_set_with`) and no earlier write is still on
            // a thread (see `turns`); else on a thread.
            if self.turns.idle()
                && cache.try_set_with(key.as_str(), bytes.clone(), options.clone())?
            {
                return js_values::settled(env, Ok(js_values::undefined(env)?));
            }
            self.spawn_write(
                env,
                &cache,
                move |c| c.set_with(key, bytes, options),
                to_undefined,
            )
        })
    }

    /// Whether `key` holds a fresh value (not counted as a read).
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn has<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "has", || self.has_value(env, key)?.into_promise(env))
    }

    /// Removes `key` from every tier; resolves to whether it held a fresh value.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn delete<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "delete", || {
            js_values::key(env, key).and_then(|key| {
                let cache = self.cache()?;
                self.l1_objects.borrow_mut().remove(env, &key);
                let key = key.to_string();
                self.spawn_write(env, &cache, move |c| c.delete(&key), to_boolean)
            })
        })
    }

    /// Removes every entry from every tier.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn clear<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "clear", || {
            self.cache().and_then(|cache| {
                self.l1_objects.borrow_mut().clear(env);
                self.spawn_write(env, &cache, Cache::clear, to_undefined)
            })
        })
    }

    /// `mget` and `mgetBuffer`: the values of `keys` found, decoded or as
    /// `Buffer`s. An L1 hit answers on the JS thread (with the kept decoded
    /// value while the entry is unchanged); the keys L1 does not hold are
    /// read from L2 in one round, or, with a source, loaded through the
    /// core's load path (then the answer is the promise of the `Map`).
    pub(crate) fn mget_found<'e>(
        &self,
        env: &'e Env,
        keys: Value<'e>,
        decode: bool,
    ) -> Result<Found<'e>, Error> {
        if !js_values::is_array(keys) {
            return Err(argument(format!(
                "keys must be an array of strings, got {}",
                js_values::type_name(keys)
            )));
        }
        // The keys' text, one after the other in one string.
        let handles = js_values::elements(env, keys)?;
        let mut text = String::with_capacity(32 * handles.len());
        let mut ends = Vec::with_capacity(handles.len());
        for &handle in &handles {
            text.push_str(&js_values::key(env, handle)?);
            ends.push(text.len());
        }
        let names: Vec<&str> = (0..ends.len())
            .map(|i| &text[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
            .collect();
        // Every key is checked before any is read (and counted).
        for name in &names {
            tierstack::key::validate(name)?;
        }
        let cache = self.cache()?;
        let answer = |bytes: &[u8]| match decode {
            true => self.builtins.decode(env, bytes),
            false => js_values::buffer(env, bytes),
        };
        let mut values = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for (i, name) in names.iter().enumerate() {
            values.push(match cache.memory_hit_configured(name) {
                Some((hit, version)) if decode => {
                    Some(self.kept_or_decoded(env, name, version, &hit.value)?)
                }
                Some((hit, _)) => Some(answer(&hit.value)?),
                None => {
                    missing.push(i);
                    None
                }
            });
        }
        if !missing.is_empty() && self.source {
            return self
                .mget_load(env, &cache, &names, values, decode)
                .map(Found::Promise);
        }
        if !missing.is_empty() {
            let wanted: Vec<&str> = missing.iter().map(|&i| names[i]).collect();
            for (i, bytes) in missing.into_iter().zip(cache.mget(&wanted)?) {
                if let Some(bytes) = bytes {
                    values[i] = Some(answer(&bytes)?);
                }
            }
        }
        Ok(Found::Values(values))
    }

    /// The promise of `mget`'s `Map` when some keys (those without a value
    /// in `found`, which holds the L1 hits) go through the load path.
    fn mget_load<'e>(
        &self,
        env: &'e Env,
        cache: &Cache,
        names: &[&str],
        found: Vec<Option<Value<'e>>>,
        decode: bool,
    ) -> Result<Value<'e>, Error> {
        // The hits stay alive until the load lands.
        let mut hits = Vec::new();
        let mut wanted = Vec::new();
        for (name, value) in names.iter().zip(found) {
            match value {
                Some(value) => hits.push(Some(Held::new(env, value)?)),
                None => {
                    hits.push(None);
                    wanted.push(name.to_string());
                }
            }
        }
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let cache = cache.as_async().clone();
        drive::promise(
            env,
            async move { cache.mget(&wanted).await },
            Box::new(move |env, loaded| {
                let builtins = Builtins::capture(env)?;
                let map = (|| {
                    let mut loaded = loaded.into_iter();
                    let mut entries = Vec::with_capacity(names.len());
                    for (name, hit) in names.iter().zip(&hits) {
                        let value = match hit {
                            Some(held) => Some(held.get(env)?),
                            None => match loaded.next().flatten() {
                                Some(bytes) if decode => Some(builtins.decode(env, &bytes)?),
                                Some(bytes) => Some(js_values::buffer(env, &bytes)?),
                                None => None,
                            },
                        };
                        if let Some(value) = value {
                            entries.push((js_values::string(env, name)?, value));
                        }
                    }
                    builtins.new_map(env, &entries)
                })();
                builtins.release(env);
                for held in hits.into_iter().flatten() {
                    held.release(env);
                }
                map
            }),
        )
    }

    /// `mget` as a `Map` (or the promise of one).
    fn mget_map<'e>(
        &self,
        env: &'e Env,
        keys: Value<'e>,
        decode: bool,
    ) -> Result<Reply<'e>, Error> {
        match self.mget_found(env, keys, decode)? {
            Found::Values(values) => {
                let handles = js_values::elements(env, keys)?;
                let pairs: Vec<_> = handles
                    .into_iter()
                    .zip(values)
                    .filter_map(|(key, value)| Some((key, value?)))
                    .collect();
                self.builtins.new_map(env, &pairs).map(Reply::Value)
            }
            Found::Promise(promise) => Ok(Reply::Promise(promise)),
        }
    }

    /// The values of the `keys` found, as a `Map` in the order asked (a
    /// missing key is absent).
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "keys: string[]",
        ts_return_type = "Promise<Map<string, T>>"
    )]
    pub fn mget<'env>(&self, env: &'env Env, keys: Unknown<'env>) -> napi::Result<Unknown<'env>> {
        promised(env, "mget", || {
            self.mget_map(env, keys, true)?.into_promise(env)
        })
    }

    /// `mget` with the stored bytes as `Buffer`s.
    #[napi(
        catch_unwind,
        ts_args_type = "keys: string[]",
        ts_return_type = "Promise<Map<string, Buffer>>"
    )]
    pub fn mget_buffer<'env>(
        &self,
        env: &'env Env,
        keys: Unknown<'env>,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "mgetBuffer", || {
            self.mget_map(env, keys, false)?.into_promise(env)
        })
    }

    /// Stores every entry of a `Map` or plain object in one transaction;
    /// one bad key or value stores none, and what a getter of the object
    /// throws rejects the promise unchanged. The second argument is as
    /// `set`'s third.
    #[napi(
        catch_unwind,
        ts_args_type = "entries: Map<string, unknown> | Record<string, unknown>, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<void>"
    )]
    pub fn mset<'env>(
        &self,
        env: &'env Env,
        entries: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "mset", || {
            self.cache()?;
            let builtins = &self.builtins;
            let options = entry::set_options(env, Some(ttl_seconds))?;
            let mut items = Vec::new();
            for (key, value) in builtins.entries(env, entries)? {
                let key = js_values::key(env, key)?.to_string();
                items.push((key, builtins.encode(env, value)?));
            }
            // Encoding may run user code (`toJSON`), even `dispose()`.
            let cache = self.cache()?;
            let mut kept = self.l1_objects.borrow_mut();
            for (key, _) in &items {
                kept.remove(env, key);
            }
            drop(kept);
            self.spawn_write(
                env,
                &cache,
                move |c| c.mset_with(items, options),
                to_undefined,
            )
        })
    }

    /// What the storage keeps about `key`'s fresh value: size, TTL in
    /// seconds, first and latest write, latest read and read count (memory
    /// hits included), expiry, stale window and tags; `null` if no tier
    /// holds a fresh value (a missing key, or an expired one, even while it
    /// may be served stale). Not a read: it counts nothing and never loads.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string",
        ts_return_type = "Promise<Metadata | null>"
    )]
    pub fn get_metadata<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "getMetadata", || {
            let key = js_values::key(env, key)?;
            let value = match self.with_cache(|c| c.fresh_entry(&key))? {
                Some(entry) => metadata_to_js(env, entry)?,
                None => js_values::to_js(env, napi::bindgen_prelude::Null)?,
            };
            js_values::settled(env, Ok(value))
        })
    }

    /// The fresh keys matching a glob where `*` is the only wildcard
    /// (default `*`: every key), sorted.
    #[napi(
        catch_unwind,
        ts_args_type = "pattern?: string | null",
        ts_return_type = "Promise<string[]>"
    )]
    pub fn keys<'env>(&self, env: &'env Env, pattern: Unknown) -> napi::Result<Unknown<'env>> {
        promised(env, "keys", || {
            let value = (|| {
                let pattern = match js_values::is_nullish(Some(pattern)) {
                    true => "*".to_owned(),
                    false => js_values::string_arg(env, pattern, "pattern")?,
                };
                let keys = self.with_cache(|c| c.keys(&pattern))?;
                let keys = keys
                    .iter()
                    .map(|k| js_values::string(env, k))
                    .collect::<Result<Vec<_>, _>>()?;
                js_values::array(env, &keys)
            })()?;
            js_values::settled(env, Ok(value))
        })
    }

    /// How many fresh keys the storage holds (in any tier).
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn size<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "size", || {
            let value = self
                .with_cache(|c| c.len())
                .and_then(|n| js_values::number(env, n as f64))?;
            js_values::settled(env, Ok(value))
        })
    }

    /// `getOrLoad` and `getOrLoadBuffer`. An L1 hit answers on the JS
    /// thread (a decoded value from the kept ones, as `get` does), and wraps
    /// the loader only if the hit is due for a refresh ahead; anything else
    /// goes through the core's load path.
    pub(crate) fn get_or_load_reply<'e>(
        &self,
        env: &'e Env,
        key: Value,
        loader: Value,
        ttl_seconds: Value,
        shape: Shape,
    ) -> Result<Reply<'e>, Error> {
        let key = js_values::key(env, key)?;
        load::check_function(loader, "loader")?;
        let options = entry::get_options(env, Some(ttl_seconds))?;
        let hit = self.with_cache(|c| {
            let load_fn = || CallLoader::load_fn(loader);
            Ok(c.memory_hit_or_refresh(&key, load_fn, &options))
        })?;
        if let Some((lookup, version)) = hit {
            // An L1 hit is never stale, so `markStale` has nothing to mark.
            debug_assert!(!lookup.stale);
            let value = match shape {
                Shape::Value => self.kept_or_decoded(env, &key, version, &lookup.value)?,
                _ => shape.answer(env, Some(lookup), self.mark_stale)?,
            };
            return Ok(Reply::Value(value));
        }
        let key = key.to_string();
        let loader = CallLoader::new(loader, "loader")?;
        let cache = self.cache()?.as_async().clone();
        let mark_stale = self.mark_stale;
        drive::promise(
            env,
            async move {
                let load = move |key| loader.fetch(key);
                cache.lookup_or_load(&key, load, options).await
            },
            Box::new(move |env, found| shape.answer(env, found, mark_stale)),
        )
        .map(Reply::Promise)
    }

    /// The value of `key`; when no tier holds it, `loader(key)`'s (awaited
    /// if a promise), stored with the TTL (seconds, or `{ ttl, tags }` as
    /// for `set`) and returned. `undefined` from the loader means "not
    /// found": the promise resolves to `undefined`, nothing is stored, and
    /// the answer is remembered for `negativeTtl` seconds.
    ///
    /// However many callers miss the key at once, in this process and in
    /// every process sharing the SQLite file, one loader runs. A loader that
    /// throws or rejects makes the promise reject with
    /// `code === 'source'`, the loader's message, and `cause` the loader's
    /// own error, unless a stale copy can be served instead (also when the
    /// breaker is open, code `'source_unavailable'` otherwise, or past
    /// `failSafe.softTimeout`; past `failSafe.hardTimeout` with no stale
    /// copy: `'timeout'`). An L1 hit answers without calling the loader
    /// (unless it is due for a refresh ahead, which runs in the background)
    /// and, as `get`, with the same object while the entry is unchanged.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "key: string, loader: (key: string) => T | undefined | Promise<T | undefined>, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<T | undefined>"
    )]
    pub fn get_or_load<'env>(
        &self,
        env: &'env Env,
        key: Unknown,
        loader: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "getOrLoad", || {
            self.get_or_load_reply(env, key, loader, ttl_seconds, Shape::Value)?
                .into_promise(env)
        })
    }

    /// `getOrLoad` resolving to the stored bytes as a `Buffer`.
    #[napi(
        catch_unwind,
        ts_args_type = "key: string, loader: (key: string) => unknown, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<Buffer | undefined>"
    )]
    pub fn get_or_load_buffer<'env>(
        &self,
        env: &'env Env,
        key: Unknown,
        loader: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "getOrLoadBuffer", || {
            self.get_or_load_reply(env, key, loader, ttl_seconds, Shape::Buffer)?
                .into_promise(env)
        })
    }

    /// `getOrLoadMany` and `getOrLoadManyBuffer`.
    fn get_or_load_many_reply<'e>(
        &self,
        env: &'e Env,
        keys: Value,
        loader: Value,
        ttl_seconds: Value,
        decode: bool,
    ) -> Result<Value<'e>, Error> {
        let names = key_names(env, keys)?;
        let loader = CallLoader::new(loader, "loader")?;
        let options = entry::get_options(env, Some(ttl_seconds))?;
        let cache = self.cache()?.as_async().clone();
        drive::promise(
            env,
            async move {
                let load = move |keys| loader.fetch_many(keys);
                let values = cache.get_or_load_many(&names, load, options).await;
                values.map(|v| (names, v))
            },
            Box::new(move |env, found| {
                let (names, values) = found;
                found_map(env, &names, values, decode)
            }),
        )
    }

    /// The values of `keys` found, as a `Map` in the order asked. The keys
    /// that no tier holds (and no other caller is loading) go to one call of
    /// `loader(missingKeys)`, which returns (or resolves to) a `Map` or
    /// plain object of the keys it found; a key it leaves out or maps to
    /// `undefined` is not found (absent from the result, remembered for
    /// `negativeTtl`). Errors as for `getOrLoad`.
    #[napi(
        catch_unwind,
        ts_generic_types = "T = unknown",
        ts_args_type = "keys: string[], loader: (missingKeys: string[]) => Map<string, T | undefined> | Record<string, T | undefined> | undefined | Promise<Map<string, T | undefined> | Record<string, T | undefined> | undefined>, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<Map<string, T>>"
    )]
    pub fn get_or_load_many<'env>(
        &self,
        env: &'env Env,
        keys: Unknown,
        loader: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "getOrLoadMany", || {
            self.get_or_load_many_reply(env, keys, loader, ttl_seconds, true)
        })
    }

    /// `getOrLoadMany` with the stored bytes as `Buffer`s.
    #[napi(
        catch_unwind,
        ts_args_type = "keys: string[], loader: (missingKeys: string[]) => unknown, ttlSeconds?: number | SetOptions | null",
        ts_return_type = "Promise<Map<string, Buffer>>"
    )]
    pub fn get_or_load_many_buffer<'env>(
        &self,
        env: &'env Env,
        keys: Unknown,
        loader: Unknown,
        ttl_seconds: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "getOrLoadManyBuffer", || {
            self.get_or_load_many_reply(env, keys, loader, ttl_seconds, false)
        })
    }

    /// Removes every entry stored with `tag`; resolves to how many.
    #[napi(
        catch_unwind,
        ts_args_type = "tag: string",
        ts_return_type = "Promise<number>"
    )]
    pub fn invalidate_tag<'env>(
        &self,
        env: &'env Env,
        tag: Unknown,
    ) -> napi::Result<Unknown<'env>> {
        promised(env, "invalidateTag", || {
            js_values::string_arg(env, tag, "tag").and_then(|tag| {
                let cache = self.cache()?;
                self.spawn_write(env, &cache, move |c| c.invalidate_tag(&tag), to_number)
            })
        })
    }

    /// Resolves when every write acknowledged so far is durable in the
    /// file (and the file up to date for another program to read). With
    /// `strategy: 'write-behind'` it first waits for the outbox to empty
    /// (every write delivered to the source; dead letters do not count) and
    /// rejects with `code === 'timeout'` past `outbox.flushTimeout` seconds,
    /// the writes left staying queued.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "flush", || {
            self.cache()
                .and_then(|cache| self.spawn_write(env, &cache, Cache::flush, to_undefined))
        })
    }

    /// Closes the storage: buffered state is written and the file closed.
    /// With `strategy: 'write-behind'` the outbox first delivers for up to
    /// `outbox.closeTimeout` seconds; what is left stays in the file, and
    /// the next storage opened on it delivers it. Every later call rejects
    /// (or throws) with `code === 'closed'`; disposing twice is harmless.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn dispose<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let taken = self.inner.borrow_mut().take();
        promised(env, "dispose", || match taken {
            Some(cache) => {
                self.l1_objects.borrow_mut().clear(env);
                self.spawn_write(env, &cache, Cache::close, to_undefined)
            }
            None => js_values::undefined(env).and_then(|u| js_values::settled(env, Ok(u))),
        })
    }

    /// Whether `dispose()` was called.
    #[napi(catch_unwind)]
    pub fn is_disposed(&self, env: &Env) -> napi::Result<bool> {
        guarded(env, "isDisposed", || Ok(self.inner.borrow().is_none()))
    }

    /// A snapshot of the counters. Throws with `code === 'closed'` after `dispose()`.
    #[napi(catch_unwind)]
    pub fn get_stats(&self, env: &Env) -> napi::Result<StorageStats> {
        guarded(env, "getStats", || {
            self.with_cache(|c| Ok(StorageStats::new(c.stats(), c.has_source())))
        })
    }

    /// The write-behind outbox's figures; `null` for the other strategies.
    /// Throws with `code === 'closed'` after `dispose()`.
    #[napi(catch_unwind)]
    pub fn outbox_stats(&self, env: &Env) -> napi::Result<Either<OutboxStats, Null>> {
        guarded(env, "outboxStats", || {
            self.with_cache(|c| {
                Ok(match c.outbox_stats() {
                    Some(stats) => Either::A(stats.into()),
                    None => Either::B(Null),
                })
            })
        })
    }

    /// The writes the outbox gave up on after `outbox.maxAttempts`
    /// attempts, oldest first: this storage's, or, for a storage that does
    /// not deliver (another strategy), those in its SQLite file. They stay
    /// until `retryDeadLetters()` or `purgeDeadLetters()`.
    #[napi(catch_unwind, ts_return_type = "Promise<DeadLetter[]>")]
    pub fn dead_letters<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "deadLetters", || {
            self.cache()
                .and_then(|cache| task::spawn(env, &cache, Cache::dead_letters, dead_letters_to_js))
        })
    }

    /// Queues every dead letter again with its attempts reset; resolves to
    /// how many were queued. (A key written since its write died has no
    /// dead letter any more: retried, it would put an older value back.)
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn retry_dead_letters<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "retryDeadLetters", || {
            self.cache()
                .and_then(|cache| task::spawn(env, &cache, Cache::retry_dead_letters, to_number))
        })
    }

    /// Deletes every dead letter; resolves to how many there were.
    #[napi(catch_unwind, ts_return_type = "Promise<number>")]
    pub fn purge_dead_letters<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        promised(env, "purgeDeadLetters", || {
            self.cache()
                .and_then(|cache| task::spawn(env, &cache, Cache::purge_dead_letters, to_number))
        })
    }

    /// Sets every counter of `getStats()` back to zero (the breaker's
    /// state, the tiers' contents and the source's rate limit are not
    /// counters: they stay). Throws with `code === 'closed'` after `dispose()`.
    #[napi(catch_unwind)]
    pub fn reset_stats(&self, env: &Env) -> napi::Result<()> {
        guarded(env, "resetStats", || {
            self.with_cache(|c| {
                c.reset_stats();
                Ok(())
            })
        })
    }

    /// The status of the circuit breaker guarding the loaders (the source
    /// and every `getOrLoad` loader); reading it changes nothing. Throws
    /// with `code === 'closed'` after `dispose()`.
    #[napi(catch_unwind)]
    pub fn get_circuit_breaker_status(&self, env: &Env) -> napi::Result<CircuitBreakerStatus> {
        guarded(env, "getCircuitBreakerStatus", || {
            self.with_cache(|c| Ok(c.breaker_status().into()))
        })
    }

    /// Opens the breaker by hand: no loader is called (stale copies are
    /// served, else reads reject with `code === 'source_unavailable'`)
    /// until `closeCircuitBreaker()`.
    #[napi(catch_unwind)]
    pub fn open_circuit_breaker(&self, env: &Env) -> napi::Result<()> {
        guarded(env, "openCircuitBreaker", || {
            self.with_cache(|c| {
                c.breaker_open();
                Ok(())
            })
        })
    }

    /// Closes the breaker by hand, forgetting the failures counted.
    #[napi(catch_unwind)]
    pub fn close_circuit_breaker(&self, env: &Env) -> napi::Result<()> {
        guarded(env, "closeCircuitBreaker", || {
            self.with_cache(|c| {
                c.breaker_close();
                Ok(())
            })
        })
    }
}

impl ObjectFinalize for HybridStorage {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        self.l1_objects.get_mut().clear(&env);
        self.builtins.release(&env);
        // A storage collected without `dispose()` closes when its last
        // handle goes; under write-behind that delivers the outbox first,
        // which needs this thread for the source's functions: it must not
        // happen here.
        if let Some(cache) = self.inner.get_mut().take()
            && self.writes_source
        {
            tierstack::runtime::handle().spawn_blocking(move || drop(cache));
        }
        Ok(())
    }
}

/// The keys of an array argument, as strings.
fn key_names(env: &Env, keys: Value) -> Result<Vec<String>, Error> {
    if !js_values::is_array(keys) {
        return Err(argument(format!(
            "keys must be an array of strings, got {}",
            js_values::type_name(keys)
        )));
    }
    js_values::elements(env, keys)?
        .into_iter()
        .map(|k| js_values::key(env, k).map(|k| k.to_string()))
        .collect()
}

/// A `Map` of the keys found, in the order asked, after a load.
fn found_map<'e>(
    env: &'e Env,
    names: &[String],
    values: Vec<Option<bytes::Bytes>>,
    decode: bool,
) -> Result<Value<'e>, Error> {
    let builtins = Builtins::capture(env)?;
    let map = (|| {
        let mut found = Vec::with_capacity(values.len());
        for (key, value) in names.iter().zip(values) {
            if let Some(bytes) = value {
                let value = match decode {
                    true => builtins.decode(env, &bytes)?,
                    false => js_values::buffer(env, &bytes)?,
                };
                found.push((js_values::string(env, key)?, value));
            }
        }
        builtins.new_map(env, &found)
    })();
    builtins.release(env);
    map
}
