//! The Redis tier (Cargo feature `redis`): a store shared by many
//! machines, between the L2 file and the source.
//!
//! A read that misses L1 and L2 asks Redis before the source; a Redis hit
//! is written into L2 and L1 (promotion) and reported as [`crate::Tier::Redis`].
//! Every value stored (a set, an mset, a value loaded from the source) is
//! written to Redis after L2; a delete removes the key; a clear unlinks
//! this cache's keys. Configured by [`RedisConfig`].
//!
//! - **Keys** are the cache's key behind `redis.prefix` (default
//!   `tierstack:<namespace>:`).
//! - **Values** are the entry with its metadata (created, expires,
//!   stale-until, ETag, tags) as one blob: see `tier::envelope`.
//! - **TTL**: a key lives in Redis until its entry's stale-until time (so
//!   a stale copy can be served from Redis too), or for `redis.ttl` if
//!   that is shorter. A value past its stale-until time is not written.
//! - **Batches**: `mget` asks for the keys L2 missed with one `MGET`; an
//!   `mset` writes its keys in one pipeline of `SET … PX`.
//! - **Clear** walks this prefix's keys with `SCAN MATCH <prefix>*` and
//!   `UNLINK`s them, for at most [`CLEAR_LIMIT`]; what is left past that
//!   is logged and goes at its own expiry.
//! - **Not consulted** by `has`, `keys`, `len` and `entry`: they report
//!   this host's tiers.
//! - **Tag invalidation** removes from Redis the keys it removed from this
//!   host's tiers, and the backplane carries the tag to the other machines,
//!   which remove the keys they hold (from Redis too).
//! - **The backplane** (`redis.backplane`, on by default): every set,
//!   delete, tag invalidation and clear is also added, in the same
//!   pipeline, to a Redis Stream that every node reads (see
//!   [`crate::backplane`]).
//! - **This cache's own keys** in Redis (the stream, its epoch, load
//!   leases) are the prefix followed by `\x1f` (a byte no cache key holds)
//!   and a name; a clear leaves them.
//! - **Changes Redis missed.** A write, delete, tag invalidation or clear
//!   that could not reach Redis (failing, or its breaker open) is
//!   remembered; once Redis answers again, each such key is deleted from
//!   Redis and announced as deleted (a clear, if more than
//!   [`MISSED_MAX`] keys were missed), so that no machine goes on serving
//!   what this one replaced meanwhile. Remembered in this process only.
//!
//! **Failures never reach the caller.** Each call is bounded by
//! `redis.timeout`; an error, a refusal or a slower answer counts as a
//! failure of the tier's own [`Breaker`] ([`breaker_config`]), is counted
//! in [`crate::Stats::redis`] and logged (the URL's password never is), and
//! the read goes on to the source (a write still lands in L1 and L2).
//! While the breaker is open, calls are skipped (counted as `skipped`);
//! after its open period one probe goes through and, if Redis answers,
//! closes it again; so does the backplane's reader reaching Redis again. A
//! failed call drops the connection, and the next one allowed connects
//! afresh.
//! - **A copy read from Redis** is kept in L2 and L1 only if no change of
//!   its key began in this process since the read (a write, a delete, a
//!   clear, a tag invalidation, or another process's change the backplane
//!   applied: [`RedisTier::ticket`] and [`RedisTier::keep_if`]), and only
//!   over an older row of the file; otherwise it is answered and not kept
//!   (the read first asks again, twice at most).
//!
//! The engine is synchronous: a read (`GET`, `MGET`) runs on a plain
//! connection of the calling thread's, taken from a small pool; a write
//! made on a thread of no tokio runtime is polled on that thread (the
//! connection's own task runs on the shared runtime, see
//! [`crate::runtime`]); one made on a runtime's thread is run on the shared
//! runtime while the calling thread waits for it. Either way it waits at
//! most `redis.timeout`. The async [`crate::Cache`]'s plain reads therefore wait
//! for Redis on the calling task's thread, as they do for L2.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::breaker::{Breaker, BreakerStatus, CallOutcome, CircuitBreakerConfig};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;
use crate::stats::Counters;
use crate::tier::envelope::{self, Stored};
use crate::tier::sqlite::Row;

/// How long a clear may walk and unlink this prefix's keys.
pub const CLEAR_LIMIT: Duration = Duration::from_secs(10);

/// Keys asked for per `SCAN` round of a clear.
const SCAN_COUNT: u32 = 1000;

/// The most keys remembered as missed by Redis; past this, a clear is
/// announced instead once Redis answers.
pub const MISSED_MAX: usize = 10_000;

/// The byte between the prefix and the name of this cache's own keys.
const OWN: char = '\x1f';

/// One change, as announced on the backplane's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A value stored (a set, an mset, a load).
    Set(String),
    /// A key deleted.
    Delete(String),
    /// Every entry with this tag removed.
    Tag(String),
    /// Everything removed.
    Clear,
}

impl Change {
    fn op(&self) -> (&'static str, &str) {
        match self {
            Change::Set(key) => ("s", key),
            Change::Delete(key) => ("d", key),
            Change::Tag(tag) => ("t", tag),
            Change::Clear => ("c", ""),
        }
    }

    /// The change of a stream entry's `o` and `k` fields.
    pub(crate) fn parse(op: &[u8], arg: Vec<u8>) -> Option<Self> {
        let arg = String::from_utf8(arg).ok();
        match op {
            b"s" => arg.map(Change::Set),
            b"d" => arg.map(Change::Delete),
            b"t" => arg.map(Change::Tag),
            b"c" => Some(Change::Clear),
            _ => None,
        }
    }
}

/// What Redis missed of this process's changes (see the module docs).
#[derive(Default)]
struct Missed {
    keys: HashSet<String>,
    tags: HashSet<String>,
    all: bool,
}

impl Missed {
    fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty() && self.tags.is_empty()
    }
}

/// Who announces: this process (redrawn in a forked child) and its L2 file.
#[derive(Clone)]
pub(crate) struct Node {
    /// This process's id on the stream.
    pub(crate) id: Arc<str>,
    /// The L2 file's [`crate::tier::sqlite::SqliteTier::identity`], as
    /// text; empty without a file.
    pub(crate) file: Arc<str>,
}

/// How a lease on a key's load went (see [`RedisTier::lease`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// This caller holds it now.
    Taken,
    /// Another machine holds it.
    Held,
    /// Another machine found the key missing at the source.
    NotFound,
}

/// Stripes of keys for [`RedisTier::ticket`].
const STRIPES: usize = 64;

/// Changes of one stripe's keys: begun and ended.
#[derive(Default)]
struct Stripe {
    progress: crate::tier::Progress,
    /// Held while a copy is kept, and while a change begins.
    lock: Mutex<()>,
}

/// A read of Redis's ticket: its key's stripe, and the changes begun there
/// when it was taken (`None`: one was under way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    stripe: usize,
    started: Option<u64>,
}

/// A change under way (see [`RedisTier::changing`]): ended when dropped.
pub(crate) struct Changing<'a> {
    tier: &'a RedisTier,
    stripes: Vec<usize>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        for &i in &self.stripes {
            self.tier.stripes[i].progress.end();
        }
    }
}

/// The lease value a holder leaves behind when the source had no value.
const NOT_FOUND_MARK: &str = "-";

/// Takes a lease unless one is there: the one there, or nil.
const LEASE_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v then return v end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false";

/// Ends a lease this caller holds: deleted, or (`ARGV[2]` > 0) left as the
/// not-found mark for that many milliseconds.
const END_LEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
    if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) \
    else redis.call('DEL', KEYS[1]) end return 1";

/// The Redis tier's breaker: 3 failures in a row (or half of at least 20
/// calls in 10 s) open it for 1 s, doubling per trip up to 30 s (plus up
/// to 10% jitter); one successful probe closes it. A call slower than
/// `redis.timeout` is a failure.
pub fn breaker_config(timeout: Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        threshold: 3,
        failure_rate: 0.5,
        minimum_calls: 20,
        window: Duration::from_secs(10),
        slow_call: timeout,
        timeout: Duration::from_secs(1),
        max_timeout: Duration::from_secs(30),
        half_open_probes: 1,
        success_threshold: 1,
    }
}

/// The Redis tier of one cache.
pub(crate) struct RedisTier {
    link: Arc<Link>,
    prefix: String,
    timeout: Duration,
    ttl: Option<Duration>,
    breaker: Breaker,
    counters: Arc<Counters>,
    /// The URL's password as written and as decoded, scrubbed from every
    /// message.
    secrets: Arc<Vec<String>>,
    /// Whether changes are announced on the stream.
    backplane: bool,
    /// `redis.backplane_max_len`.
    max_len: u64,
    /// This process and its file, by fork generation.
    node: Mutex<Option<(u64, Node)>>,
    /// The L2 file's identity (set once the engine has opened its file).
    file: Mutex<Arc<str>>,
    /// Changes Redis missed; `has_missed` is set while it holds any.
    missed: Mutex<Missed>,
    has_missed: AtomicBool,
    /// Changes under way and made, by stripe of keys: a copy read from
    /// Redis is kept only if no change of its key's stripe began since the
    /// read (see [`RedisTier::keep_if`]).
    stripes: Box<[Stripe]>,
    hasher: std::hash::RandomState,
    /// Callers waiting for news of a key on the stream.
    watchers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes the stream's reader to stop (the cache closed).
    stop: Arc<Notify>,
    /// The fork generation whose reader runs.
    pub(crate) reader_generation: AtomicU64,
}

/// The client and its connection, shared with the calls in flight.
struct Link {
    client: Client,
    /// The connection of the current fork generation (see
    /// [`crate::runtime`]); `None` until the first call, and after a
    /// failed one.
    connection: Mutex<Option<(u64, ConnectionManager)>>,
    /// Held while a connection is made, so that one is made at a time.
    connecting: tokio::sync::Mutex<()>,
    /// Plain connections for reads made on threads of no runtime (see
    /// [`RedisTier::read`]), of one fork generation; at most
    /// [`SYNC_POOL`] kept.
    pool: Mutex<(u64, Vec<::redis::Connection>)>,
    timeout: Duration,
}

/// The most plain connections a tier keeps for reads.
const SYNC_POOL: usize = 16;

impl Link {
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let generation = runtime::fork_generation();
        let current = || {
            self.connection
                .lock()
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, c)| c.clone())
        };
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = self
            .client
            .get_connection_manager_with_config(config)
            .await?;
        *self.connection.lock() = Some((generation, connection.clone()));
        Ok(connection)
    }

    fn drop_connection(&self) {
        self.connection.lock().take();
    }

    /// A plain connection of this fork generation: a kept one, or a new one
    /// whose connecting, reads and writes each give up after the timeout.
    fn plain(&self) -> RedisResult<::redis::Connection> {
        let generation = runtime::fork_generation();
        {
            let _gate = runtime::fork_gate();
            let mut pool = self.pool.lock();
            if pool.0 != generation {
                // A parent's sockets are not this process's to use.
                *pool = (generation, Vec::new());
            }
            if let Some(connection) = pool.1.pop() {
                return Ok(connection);
            }
        }
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Keeps a plain connection that answered, for the next read.
    fn keep_plain(&self, connection: ::redis::Connection) {
        let _gate = runtime::fork_gate();
        let mut pool = self.pool.lock();
        if pool.0 == runtime::fork_generation() && pool.1.len() < SYNC_POOL {
            pool.1.push(connection);
        }
    }
}

/// Why a call gave no answer.
enum Failed {
    Redis(RedisError),
    TimedOut,
}

impl RedisTier {
    /// The tier for `config.redis`; `None` without an enabled section.
    /// Nothing connects before the first call.
    pub(crate) fn open(
        config: &Config,
        clock: Clock,
        counters: Arc<Counters>,
    ) -> Result<Option<Self>> {
        let Some(redis) = config.redis.as_ref().filter(|r| r.enabled) else {
            return Ok(None);
        };
        let mut secrets: Vec<String> = redis
            .url
            .password()
            .map(str::to_owned)
            .into_iter()
            .collect();
        let client = Client::open(redis.url.expose()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "redis.url {:?} is not a Redis URL: {}",
                    redis.url.redacted(),
                    scrub(&secrets, &e.to_string())
                ),
            )
        })?;
        if let Some(password) = client.get_connection_info().redis_settings().password() {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| !s.is_empty());
        let secrets = Arc::new(secrets);
        Ok(Some(Self {
            link: Arc::new(Link {
                client,
                connection: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                pool: Mutex::new((runtime::fork_generation(), Vec::new())),
                timeout: redis.timeout,
            }),
            prefix: redis.prefix_for(&config.namespace),
            timeout: redis.timeout,
            ttl: redis.ttl,
            breaker: Breaker::new(breaker_config(redis.timeout), clock),
            counters,
            secrets,
            backplane: redis.backplane,
            max_len: redis.backplane_max_len,
            node: Mutex::new(None),
            file: Mutex::new(Arc::from("")),
            missed: Mutex::new(Missed::default()),
            has_missed: AtomicBool::new(false),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            hasher: std::hash::RandomState::new(),
            watchers: Mutex::new(HashMap::new()),
            stop: Arc::new(Notify::new()),
            reader_generation: AtomicU64::new(u64::MAX),
        }))
    }

    /// Records the L2 file's identity ([`crate::tier::sqlite::SqliteTier::identity`]).
    pub(crate) fn set_file(&self, id: i64) {
        *self.file.lock() = Arc::from(format!("{:x}", id as u64));
        self.node.lock().take();
    }

    /// Whether changes are announced on the backplane.
    pub(crate) fn announces(&self) -> bool {
        self.backplane
    }

    /// Closes the tier's breaker if it is open: the backplane's reader
    /// reached Redis again, so calls need not wait out the open period.
    pub(crate) fn answered_again(&self) {
        if self.breaker.status().state == crate::breaker::BreakerState::Open {
            self.breaker.close();
        }
    }

    /// What the backplane's reader waits on to stop.
    pub(crate) fn stopping(&self) -> Arc<Notify> {
        self.stop.clone()
    }

    /// Stops the backplane's reader (the cache closes).
    pub(crate) fn halt(&self) {
        self.stop.notify_one();
    }

    /// This process (redrawn after a fork) and its file.
    pub(crate) fn node(&self) -> Node {
        let generation = runtime::fork_generation();
        let _gate = runtime::fork_gate();
        let mut node = self.node.lock();
        match &*node {
            Some((g, n)) if *g == generation => n.clone(),
            _ => {
                let n = Node {
                    id: Arc::from(format!("{:x}", crate::coherence::new_origin() as u64)),
                    file: self.file.lock().clone(),
                };
                *node = Some((generation, n.clone()));
                n
            }
        }
    }

    /// The stream's key.
    pub(crate) fn stream_key(&self) -> String {
        format!("{}{OWN}changes", self.prefix)
    }

    /// The key of the stream's epoch: a random number set by the first
    /// node; a new one means Redis lost the stream.
    pub(crate) fn epoch_key(&self) -> String {
        format!("{}{OWN}epoch", self.prefix)
    }

    fn lease_key(&self, key: &str) -> String {
        format!("{}{OWN}lease:{key}", self.prefix)
    }

    /// A connection of its own for the stream's reader, whose reads block:
    /// `block` is how long one may wait.
    pub(crate) async fn reader_connection(&self, block: Duration) -> Option<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(block + self.timeout));
        let connected = tokio::time::timeout(
            self.timeout,
            self.link
                .client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match connected {
            Ok(Ok(connection)) => Some(connection),
            Ok(Err(err)) => {
                tracing::debug!(error = %self.scrub(&err.to_string()), "the backplane could not connect");
                None
            }
            Err(_) => None,
        }
    }

    /// `message` with the URL's password as `***`.
    pub(crate) fn scrub(&self, message: &str) -> String {
        scrub(&self.secrets, message)
    }

    /// A ticket for keeping a copy of `key` read from Redis (see
    /// [`RedisTier::keep_if`]), taken before the read.
    pub(crate) fn ticket(&self, key: &str) -> ReadTicket {
        let i = self.stripe_of(key);
        ReadTicket {
            stripe: i,
            started: self.stripes[i].progress.idle_at(),
        }
    }

    /// Whether no change of the ticket's stripe began since it was taken
    /// (nor was under way then).
    pub(crate) fn still_valid(&self, ticket: ReadTicket) -> bool {
        self.stripes[ticket.stripe]
            .progress
            .unchanged_since(ticket.started)
    }

    /// Runs `keep` (storing a copy read from Redis with `ticket`) unless a
    /// change of its stripe began since the ticket was taken; no change
    /// begins while it runs.
    pub(crate) fn keep_if<R>(&self, ticket: ReadTicket, keep: impl FnOnce() -> R) -> Option<R> {
        let _gate = runtime::fork_gate();
        let _stripe = self.stripes[ticket.stripe].lock.lock();
        self.still_valid(ticket).then(keep)
    }

    /// Announces a change of `keys` (this process's write, or another
    /// process's applied here), before it reaches L2; it ends when the
    /// returned guard drops, after it reached Redis.
    pub(crate) fn changing<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Changing<'_> {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| self.stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        self.begin(stripes)
    }

    /// Announces a change that may touch any key (a clear, a tag).
    pub(crate) fn changing_all(&self) -> Changing<'_> {
        self.begin((0..STRIPES).collect())
    }

    fn begin(&self, stripes: Vec<usize>) -> Changing<'_> {
        let _gate = runtime::fork_gate();
        for &i in &stripes {
            let stripe = &self.stripes[i];
            let _stripe = stripe.lock.lock();
            stripe.progress.begin();
        }
        Changing {
            tier: self,
            stripes,
        }
    }

    fn stripe_of(&self, key: &str) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key) as usize % STRIPES
    }

    /// A handle to wait on for news of `key` on the stream; call
    /// [`RedisTier::unwatch`] when done.
    pub(crate) fn watch(&self, key: &str) -> Arc<Notify> {
        let _gate = runtime::fork_gate();
        self.watchers
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Ends a [`RedisTier::watch`].
    pub(crate) fn unwatch(&self, key: &str, notify: Arc<Notify>) {
        let _gate = runtime::fork_gate();
        let mut watchers = self.watchers.lock();
        drop(notify);
        if watchers.get(key).is_some_and(|n| Arc::strong_count(n) == 1) {
            watchers.remove(key);
        }
    }

    /// Wakes whoever waits for news of `key`.
    pub(crate) fn wake(&self, key: &str) {
        let _gate = runtime::fork_gate();
        if let Some(notify) = self.watchers.lock().get(key) {
            notify.notify_waiters();
        }
    }

    /// Wakes everyone waiting for news of any key.
    pub(crate) fn wake_all(&self) {
        let _gate = runtime::fork_gate();
        for notify in self.watchers.lock().values() {
            notify.notify_waiters();
        }
    }

    /// Adds `changes`' entries to `pipe`.
    fn announce(&self, pipe: &mut ::redis::Pipeline, changes: &[Change]) {
        if !self.backplane || changes.is_empty() {
            return;
        }
        let node = self.node();
        let stream = self.stream_key();
        for change in changes {
            let (op, arg) = change.op();
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("n")
                .arg(&*node.id)
                .arg("f")
                .arg(&*node.file)
                .arg("o")
                .arg(op)
                .arg("k")
                .arg(arg)
                .ignore();
        }
    }

    /// Sends `pipe`, which announces `changes`: whether it went through.
    /// If not, the changes are remembered as missed.
    fn send(&self, pipe: ::redis::Pipeline, changes: Vec<Change>) -> bool {
        let sent = self
            .call(self.timeout, move |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .is_some();
        if !sent {
            self.remember_missed(changes);
        } else if self.backplane {
            self.counters.backplane.sent.add(changes.len() as u64);
        }
        sent
    }

    fn remember_missed(&self, changes: Vec<Change>) {
        let _gate = runtime::fork_gate();
        let mut missed = self.missed.lock();
        for change in changes {
            match change {
                Change::Set(key) | Change::Delete(key) => {
                    missed.keys.insert(key);
                }
                Change::Tag(tag) => {
                    missed.tags.insert(tag);
                }
                Change::Clear => missed.all = true,
            }
        }
        if missed.keys.len() + missed.tags.len() > MISSED_MAX {
            missed.all = true;
        }
        if missed.all {
            missed.keys.clear();
            missed.tags.clear();
        }
        self.has_missed.store(true, Ordering::Release);
    }

    /// Delivers what Redis missed, if anything, now that it answers: each
    /// missed key deleted and announced deleted, each missed tag
    /// announced, or, past [`MISSED_MAX`], this prefix's keys unlinked and
    /// a clear announced. What fails stays remembered. Run by the
    /// backplane's task.
    pub(crate) async fn deliver_missed(&self) {
        // Not while the breaker is open: Redis is not known to be back.
        if !self.has_missed.load(Ordering::Acquire) || !self.breaker.status().allows_request {
            return;
        }
        let missed = {
            let _gate = runtime::fork_gate();
            let mut missed = self.missed.lock();
            self.has_missed.store(false, Ordering::Release);
            std::mem::take(&mut *missed)
        };
        if missed.is_empty() {
            return;
        }
        let mut changes: Vec<Change> = Vec::new();
        let delivered = if missed.all {
            changes.push(Change::Clear);
            let unlinked = self.unlink_all_async().await.is_some();
            unlinked && {
                let mut pipe = ::redis::pipe();
                self.announce(&mut pipe, &changes);
                self.pipeline_async(pipe).await
            }
        } else {
            let mut pipe = ::redis::pipe();
            let keys: Vec<String> = missed.keys.iter().map(|k| self.key(k)).collect();
            if !keys.is_empty() {
                pipe.cmd("DEL").arg(keys).ignore();
            }
            changes.extend(missed.keys.iter().cloned().map(Change::Delete));
            changes.extend(missed.tags.iter().cloned().map(Change::Tag));
            self.announce(&mut pipe, &changes);
            self.pipeline_async(pipe).await
        };
        if delivered {
            self.counters.backplane.deferred.add(changes.len() as u64);
            if self.backplane {
                self.counters.backplane.sent.add(changes.len() as u64);
            }
            tracing::info!(
                changes = changes.len(),
                "Redis answers again: the changes it missed were delivered"
            );
        } else {
            self.remember_missed(changes);
        }
    }

    async fn pipeline_async(&self, pipe: ::redis::Pipeline) -> bool {
        self.call_async(self.timeout, move |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
        .is_some()
    }

    /// Takes the lease on loading `key` for `token`, for `lease`; `None`
    /// if Redis failed.
    pub(crate) async fn lease(
        &self,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Option<LeaseState> {
        let (key, token) = (self.lease_key(key), token.to_owned());
        let px = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let there: Option<String> = self
            .call_async(self.timeout, move |mut c| async move {
                ::redis::cmd("EVAL")
                    .arg(LEASE_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(token)
                    .arg(px)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Some(match there.as_deref() {
            None => LeaseState::Taken,
            Some(NOT_FOUND_MARK) => LeaseState::NotFound,
            Some(_) => LeaseState::Held,
        })
    }

    /// Ends `token`'s lease on `key`; `not_found`: the source had no value,
    /// remembered by the lease for that long. A failure is logged; the
    /// lease then ends at its expiry.
    pub(crate) async fn end_lease(&self, key: &str, token: &str, not_found: Option<Duration>) {
        let (key, token) = (self.lease_key(key), token.to_owned());
        let px = not_found.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.call_async(self.timeout, move |mut c| async move {
            ::redis::cmd("EVAL")
                .arg(END_LEASE_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(token)
                .arg(px)
                .arg(NOT_FOUND_MARK)
                .query_async::<i64>(&mut c)
                .await
        })
        .await;
    }

    /// [`RedisTier::get`], from async code.
    pub(crate) async fn get_async(&self, key: &str) -> Option<Option<Stored>> {
        let key = self.key(key);
        let blob: Option<Vec<u8>> = self
            .call_async(self.timeout, move |mut c| async move {
                ::redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await?;
        Some(blob.as_deref().and_then(envelope::decode))
    }

    /// The status of the tier's breaker.
    pub(crate) fn breaker_status(&self) -> BreakerStatus {
        self.breaker.status()
    }

    /// The Redis key of `key`.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The entry of `key`: `None` if the call was skipped or failed,
    /// `Some(None)` if Redis holds no entry.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Stored>> {
        let mut get = ::redis::cmd("GET");
        get.arg(self.key(key));
        let blob: Option<Vec<u8>> = self.read(get)?;
        Some(blob.as_deref().and_then(envelope::decode))
    }

    /// The entries of `keys`, in order, with one `MGET`; `None` if the call
    /// was skipped or failed.
    pub(crate) fn get_many(&self, keys: &[&str]) -> Option<Vec<Option<Stored>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut mget = ::redis::cmd("MGET");
        mget.arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>());
        let blobs: Vec<Option<Vec<u8>>> = self.read(mget)?;
        Some(
            blobs
                .iter()
                .map(|b| b.as_deref().and_then(envelope::decode))
                .collect(),
        )
    }

    /// Writes `rows` in one pipeline of `SET … PX`; a row past its
    /// stale-until time at `now` is left out. Whether the write went
    /// through (`false`: skipped or failed, counted and logged).
    pub(crate) fn put(&self, rows: &[Row], now: u64) -> bool {
        let mut pipe = ::redis::pipe();
        let mut any = false;
        let changes: Vec<Change> = rows.iter().map(|r| Change::Set(r.key.clone())).collect();
        for row in rows {
            let mut px = row.stale_until_ms.saturating_sub(now);
            if let Some(ttl) = self.ttl {
                px = px.min(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            }
            if px == 0 {
                // Nothing to store, but an older copy must not outlive it.
                pipe.cmd("DEL").arg(self.key(&row.key)).ignore();
                any = true;
                continue;
            }
            pipe.cmd("SET")
                .arg(self.key(&row.key))
                .arg(envelope::encode(row))
                .arg("PX")
                .arg(px)
                .ignore();
            any = true;
        }
        if !any {
            return true;
        }
        self.announce(&mut pipe, &changes);
        self.send(pipe, changes)
    }

    /// Removes `keys` (announced as deleted unless `quietly`: removals the
    /// other machines already heard of); whether the call went through.
    pub(crate) fn delete(&self, keys: &[&str], quietly: bool) -> bool {
        if keys.is_empty() {
            return true;
        }
        let mut pipe = ::redis::pipe();
        pipe.cmd("DEL")
            .arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>())
            .ignore();
        let changes: Vec<Change> = match quietly {
            true => Vec::new(),
            false => keys
                .iter()
                .map(|k| Change::Delete((*k).to_owned()))
                .collect(),
        };
        self.announce(&mut pipe, &changes);
        self.send(pipe, changes)
    }

    /// Removes the keys a tag invalidation removed here and announces the
    /// tag, so that the other machines remove theirs.
    pub(crate) fn invalidate_tag(&self, tag: &str, keys: &[&str]) -> bool {
        let mut pipe = ::redis::pipe();
        if !keys.is_empty() {
            pipe.cmd("DEL")
                .arg(keys.iter().map(|k| self.key(k)).collect::<Vec<_>>())
                .ignore();
        }
        let changes = vec![Change::Tag(tag.to_owned())];
        self.announce(&mut pipe, &changes);
        if !self.backplane && keys.is_empty() {
            return true;
        }
        self.send(pipe, changes)
    }

    /// Unlinks every key of this cache (not its own keys: see the module
    /// docs), for at most [`CLEAR_LIMIT`], and announces the clear; how
    /// many, or `None` if the call was skipped or failed (keys already
    /// unlinked stay unlinked, and the clear is remembered as missed).
    pub(crate) fn clear(&self) -> Option<u64> {
        let (pattern, own) = self.scan_pattern();
        let removed = self.call(CLEAR_LIMIT, move |mut c| async move {
            unlink_matching(&mut c, &pattern, &own).await
        });
        let changes = vec![Change::Clear];
        match removed {
            Some(_) if self.backplane => {
                let mut pipe = ::redis::pipe();
                self.announce(&mut pipe, &changes);
                self.send(pipe, changes);
            }
            Some(_) => {}
            None => self.remember_missed(changes),
        }
        removed
    }

    /// [`RedisTier::clear`]'s unlinking, from async code.
    async fn unlink_all_async(&self) -> Option<u64> {
        let (pattern, own) = self.scan_pattern();
        self.call_async(CLEAR_LIMIT, move |mut c| async move {
            unlink_matching(&mut c, &pattern, &own).await
        })
        .await
    }

    /// The `SCAN MATCH` pattern of this cache's keys, and the start of its
    /// own keys, which it leaves.
    fn scan_pattern(&self) -> (String, Vec<u8>) {
        (
            format!("{}*", glob_escape(&self.prefix)),
            format!("{}{OWN}", self.prefix).into_bytes(),
        )
    }

    /// Runs the read `command` through the breaker, within the timeout, on
    /// a plain connection the calling thread takes from a small pool: the
    /// answer costs no thread switch. The calling thread waits for it, as
    /// it does for L2 (a task of the async [`crate::Cache`] too, on its
    /// thread). On a thread of the shared runtime itself, as
    /// [`RedisTier::call`] (its duties move aside while it waits).
    fn read<T>(&self, command: ::redis::Cmd) -> Option<T>
    where
        T: ::redis::FromRedisValue + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == runtime::handle().id()) {
            return self.call(self.timeout, move |mut c| async move {
                command.query_async(&mut c).await
            });
        }
        let Some(permit) = self.breaker.try_acquire() else {
            self.counters.redis_skipped.incr();
            return None;
        };
        let started = Instant::now();
        let answer = self.link.plain().and_then(|mut connection| {
            let answer = command.query(&mut connection)?;
            self.link.keep_plain(connection);
            Ok(answer)
        });
        let outcome = match answer {
            Ok(answer) if started.elapsed() <= self.timeout => Ok(answer),
            Ok(_) => Err(Failed::TimedOut),
            Err(err) if err.is_timeout() => Err(Failed::TimedOut),
            Err(err) => Err(Failed::Redis(err)),
        };
        self.settle(permit, started, self.timeout, outcome)
    }

    /// Runs `op` on the connection through the breaker, within `limit`,
    /// counting and logging a failure; `None` if it was skipped or failed.
    /// The calling thread waits (see the module docs).
    fn call<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            self.counters.redis_skipped.incr();
            return None;
        };
        let started = Instant::now();
        let call = attempt(self.link.clone(), limit, op);
        let outcome = match tokio::runtime::Handle::try_current() {
            // A thread of no runtime polls the call itself (the
            // connection's own task runs on the shared runtime): two thread
            // switches fewer than handing the call over and waiting.
            Err(_) => runtime::handle().block_on(call),
            Ok(_) => {
                let grace = limit + Duration::from_millis(100);
                runtime::wait_for(call, Some(grace)).unwrap_or(Err(Failed::TimedOut))
            }
        };
        self.settle(permit, started, limit, outcome)
    }

    /// [`RedisTier::call`], from async code.
    async fn call_async<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            self.counters.redis_skipped.incr();
            return None;
        };
        let started = Instant::now();
        let outcome = attempt(self.link.clone(), limit, op).await;
        self.settle(permit, started, limit, outcome)
    }

    /// Records a call's outcome with the breaker; counts and logs a failure.
    fn settle<T>(
        &self,
        permit: crate::breaker::Permit,
        started: Instant,
        limit: Duration,
        outcome: std::result::Result<T, Failed>,
    ) -> Option<T> {
        match outcome {
            Ok(answer) => {
                self.breaker.record(permit, CallOutcome::Success);
                Some(answer)
            }
            Err(failed) => {
                self.breaker.record(permit, CallOutcome::Failure);
                self.counters.redis_errors.incr();
                self.link.drop_connection();
                let why = match failed {
                    Failed::Redis(err) => self.scrub(&err.to_string()),
                    Failed::TimedOut => format!("no answer within {limit:?}"),
                };
                tracing::warn!(
                    error = %why,
                    took = ?started.elapsed(),
                    "a Redis call failed; the tier is skipped for this call"
                );
                None
            }
        }
    }
}

/// One call: a connection, then `op`, within `limit`.
async fn attempt<T, F, Fut>(
    link: Arc<Link>,
    limit: Duration,
    op: F,
) -> std::result::Result<T, Failed>
where
    F: FnOnce(ConnectionManager) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    match tokio::time::timeout(limit, async {
        let connection = link.connection().await?;
        op(connection).await
    })
    .await
    {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(Failed::Redis(err)),
        Err(_) => Err(Failed::TimedOut),
    }
}

/// Unlinks the keys matching `pattern`, except those starting with `own`;
/// how many.
async fn unlink_matching(c: &mut ConnectionManager, pattern: &str, own: &[u8]) -> RedisResult<u64> {
    let mut cursor = 0u64;
    let mut removed = 0u64;
    loop {
        let (next, mut keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(c)
            .await?;
        keys.retain(|k| !k.starts_with(own));
        if !keys.is_empty() {
            removed += ::redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<u64>(c)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// `message` with every secret in it as `***`.
fn scrub(secrets: &[String], message: &str) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

/// `text` with the characters `SCAN MATCH` treats specially escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(glob_escape("tierstack:ns-1.a_b:"), "tierstack:ns-1.a_b:");
        assert_eq!(glob_escape(r"a*b?c[d]e\f^"), r"a\*b\?c\[d\]e\\f\^");
    }

    #[test]
    fn the_breaker_config_is_valid() {
        breaker_config(Duration::from_millis(250))
            .validate()
            .unwrap();
    }
}
