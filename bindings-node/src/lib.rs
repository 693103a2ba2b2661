//! tierstack for Node.js: the `HybridStorage` class over the shared engine.
//!
//! The modules mirror the core's: `cache` holds the class, `config`
//! turns the camelCase option bag into the core's [`tierstack::Config`],
//! `error` turns every [`tierstack::Error`] into a JS `Error` whose `code`
//! is the kind's name, `entry` and `stats` convert what reads and stats
//! report, `outbox` what the write-behind outbox reports. `value` is the
//! JSON convention, `l1_objects` the decoded values kept per L1 entry, `load` the
//! adapter that makes JS functions a core loader or source, writable with
//! `store` and `remove` (loading and writing to the source are the core's),
//! `drive` the core futures settled as JS promises, `task` the writes that
//! run off the JS thread, `dispatch` the direct dispatch of the read
//! methods, and `js_values` the JS values through napi-rs's typed API with the
//! binding's conventions.
//!
//! # Panics
//!
//! No panic unwinds into Node: every exported method is a panic boundary
//! (`#[napi(catch_unwind)]` around napi-rs's glue, and inside it the
//! binding's own, which also covers the direct dispatch and the work that
//! runs on other threads). A panic becomes an `Error` with `code ===
//! 'internal'`: thrown by a synchronous method, the rejection of a
//! promise-returning one. Debug builds export `panic_probe`'s functions,
//! which panic inside those boundaries, for the tests.
//!
//! # Which thread does the work
//!
//! - Reads (`get`, `getBuffer`, `lookup`, `lookupBuffer`, `has`, `mget`,
//!   `mgetBuffer`, `getMetadata`, `keys`, `size`) run on the JS thread and
//!   return an already settled promise (and the synchronous `getStats` and
//!   `outboxStats` answer there). An L1 hit is a few hundred
//!   nanoseconds and an L2 point read a few microseconds on a WAL reader
//!   connection that never waits for a writer; a hop to libuv's thread pool
//!   and back costs tens of microseconds, more than either. With a `redis`
//!   section, a read that misses both goes on to Redis and waits for its
//!   answer on the JS thread too: a round trip on the network, bounded by
//!   `redis.timeout` (and skipped while Redis's breaker is open).
//! - Writes (`set`, `mset`, `delete`, `clear`, `invalidateTag`, `flush`,
//!   `dispose`, `retryDeadLetters`, `purgeDeadLetters`) and `deadLetters`
//!   run on libuv's thread pool (napi async work), because they may wait for
//!   another process's write lock. With a strategy that writes to the
//!   source, `set`, `mset`, `delete`, `flush` and `dispose` may also wait
//!   for the source's JS functions (write-through calls them first;
//!   write-behind's `flush` and `dispose` wait for the outbox's
//!   deliveries): they run on the core runtime's blocking pool instead, so
//!   that no libuv pool thread waits for JS (see `task`).
//! - Loads (`getOrLoad`, `getOrLoadMany`, and the reads of a storage opened
//!   with a source) are core futures: polled once on the JS thread, so an L1
//!   hit answers there; a miss waits on the core's runtime, whose loader
//!   calls come back to the JS thread (see `load` and `drive`). No libuv
//!   pool thread waits for a JS loader. Values are encoded on the JS thread first, so a value that cannot
//!   be encoded is refused before anything is queued.
//!
//! # Values
//!
//! A JSON-able value is stored as compact UTF-8 JSON (`JSON.stringify`) and
//! decoded with `JSON.parse`; a `Buffer` or `Uint8Array` is stored as its
//! bytes and read back with `getBuffer` (or `lookupBuffer`, `mgetBuffer`).
//! To spare an L1 hit the decode, each storage keeps the decoded value of
//! recently read keys together with the engine's version of the L1 entry it
//! came from, and hands the same object back while that entry is unchanged
//! (see `l1_objects`).

mod cache;
mod config;
// napi-rs registers `module_exports` hooks outside `cfg(test)` only.
#[cfg_attr(test, allow(dead_code))]
mod dispatch;
mod drive;
mod entry;
mod error;
mod js_values;
mod l1_objects;
mod load;
mod outbox;
#[cfg(debug_assertions)]
#[cfg_attr(test, allow(dead_code))]
mod panic_probe;
mod stats;
mod task;
mod testing;
mod turns;
mod value;

pub use cache::HybridStorage;
pub use config::{
    CircuitBreakerOptions, FailSafeOptions, HybridStorageConfig, HybridStorageOptions,
    MemoryOptions, OutboxOptions, RedisOptions, SqliteOptions, StorageSource,
};
pub use entry::{LookupResult, Metadata, SetOptions};
pub use load::Loaded;
pub use outbox::{DeadLetter, OutboxStats};
pub use stats::{
    BackplaneStats, CircuitBreakerStatus, RedisStats, ResponseTimes, SourceStats, StorageStats,
    TierStats,
};
