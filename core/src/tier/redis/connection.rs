//! The connection to Redis, and every call through the tier's breaker:
//! writes on the shared runtime's connection, reads on plain pooled
//! connections of the calling thread, each bounded by `redis.timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use parking_lot::Mutex;

use super::RedisTier;
use crate::breaker::CallOutcome;
use crate::fork;
use crate::runtime;

/// The client and its connection, shared with the calls in flight.
pub(super) struct Link {
    client: Client,
    /// The connection of the current fork generation (see
    /// [`crate::fork`]); `None` until the first call, and after a
    /// failed one.
    connection: Mutex<Option<(u64, ConnectionManager)>>,
    /// Held while a connection is made, so that one is made at a time; one
    /// per fork generation (a parent's task may have held the parent's at
    /// the fork, and would never release it in the child).
    connecting: Mutex<(u64, Arc<tokio::sync::Mutex<()>>)>,
    /// Plain connections for reads made on threads of no runtime (see
    /// [`RedisTier::read`]), of one fork generation; at most
    /// [`SYNC_POOL`] kept.
    pool: Mutex<(u64, Vec<::redis::Connection>)>,
    timeout: Duration,
}

/// The most plain connections a tier keeps for reads.
const SYNC_POOL: usize = 16;

impl Link {
    /// A link through `client`; nothing connects before the first call.
    pub(super) fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            connection: Mutex::new(None),
            connecting: Mutex::new((fork::fork_generation(), Arc::default())),
            pool: Mutex::new((fork::fork_generation(), Vec::new())),
            timeout,
        }
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let generation = fork::fork_generation();
        let current = || {
            let _gate = fork::fork_gate();
            self.connection
                .lock()
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, c)| c.clone())
        };
        if let Some(connection) = current() {
            return Ok(connection);
        }
        let connecting = {
            let _gate = fork::fork_gate();
            let mut connecting = self.connecting.lock();
            if connecting.0 != generation {
                *connecting = (generation, Arc::default());
            }
            Arc::clone(&connecting.1)
        };
        let _connecting = connecting.lock().await;
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
        self.replace_connection(Some((generation, connection.clone())));
        Ok(connection)
    }

    fn drop_connection(&self) {
        self.replace_connection(None);
    }

    /// Puts `new` in place of the kept connection. A parent's connection
    /// is forgotten, not dropped, in a forked child: dropping it wakes its
    /// task on the parent's runtime, whose queue lock a parent's thread may
    /// have held at the fork.
    fn replace_connection(&self, new: Option<(u64, ConnectionManager)>) {
        let old = {
            let _gate = fork::fork_gate();
            std::mem::replace(&mut *self.connection.lock(), new)
        };
        if let Some((generation, old)) = old
            && generation != fork::fork_generation()
        {
            std::mem::forget(old);
        }
    }

    /// A plain connection of this fork generation: a kept one, or a new one
    /// whose connecting, reads and writes each give up after the timeout.
    fn plain(&self) -> RedisResult<::redis::Connection> {
        let generation = fork::fork_generation();
        {
            let _gate = fork::fork_gate();
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
        let _gate = fork::fork_gate();
        let mut pool = self.pool.lock();
        if pool.0 == fork::fork_generation() && pool.1.len() < SYNC_POOL {
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
    /// Runs the read `command` through the breaker, within the timeout, on
    /// a plain connection the calling thread takes from a small pool: the
    /// answer costs no thread switch. The calling thread waits for it, as
    /// it does for L2 (a task of the async [`crate::Cache`] too, on its
    /// thread). On a thread of the shared runtime itself, as
    /// [`RedisTier::call`] (its duties move aside while it waits).
    pub(super) fn read<T>(&self, command: ::redis::Cmd) -> Option<T>
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
    pub(super) fn call<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
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
    pub(super) async fn call_async<T, F, Fut>(&self, limit: Duration, op: F) -> Option<T>
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
