//! Scenario: a Redis-tier hit.
//!
//! A real `redis-server` on a free loopback port ([`RedisServer`]) and a
//! tierstack cache with SQLite off, an L1 too small to keep any value
//! ([`L1_BYTES`]; a cache must have memory or SQLite) and a `redis`
//! section, so that every read asks Redis. Its reads, blocking ([`crate::measure`]'s
//! single caller) and async (awaited in a task on a tokio multi-thread
//! runtime), against a bare redis-rs `GET` of the same Redis key, which
//! holds the same bytes (the value in tierstack's envelope): through a sync
//! [`redis::Connection`], and through an [`redis::aio::ConnectionManager`]
//! awaited on the same kind of runtime. Every read is checked.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use tierstack::{RedisConfig, Tier};

use crate::measure::{self, Contender, Round, Samples};
use crate::{BenchResult, data};

/// The namespace of the scenario's cache; its Redis keys are
/// `tierstack:bench:<key>`.
pub const NAMESPACE: &str = "bench";

/// The L1 budget of the measured cache: too small for any value.
pub const L1_BYTES: u64 = 1024;

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisHitReport {
    /// tierstack's blocking `Cache::get`, answered by Redis.
    pub blocking: Samples,
    /// A sync `redis::Connection` `GET` of the same Redis key.
    pub redis_sync: Samples,
    /// tierstack's async `Cache::get`, awaited in a task on a tokio
    /// multi-thread runtime.
    pub tierstack_async: Samples,
    /// An `aio::ConnectionManager` `GET` of the same Redis key, awaited in a
    /// task on the same runtime.
    pub redis_async: Samples,
    /// Bytes each `GET` returns: the value in tierstack's envelope.
    pub wire_bytes: usize,
}

/// A `redis-server` of the scenario's own on a free loopback port, with no
/// persistence, in a temporary directory; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (found on `PATH`) and returns once it accepts
    /// connections.
    pub fn start() -> BenchResult<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it installed?): {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.by_ref().any(|line| {
            line.as_deref()
                .is_ok_and(|l| l.contains("Ready to accept connections"))
        });
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        if !ready {
            server.stop();
            return Err(format!("redis-server on port {port} exited before it was ready").into());
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `GET` answer checked as tierstack's envelope of a component value:
/// dereferences to the value, the blob's tail.
struct Enveloped(Vec<u8>);

impl AsRef<[u8]> for Enveloped {
    fn as_ref(&self) -> &[u8] {
        let blob = &self.0;
        match blob.starts_with(b"TSE\x01") && blob.len() >= data::VALUE_LEN {
            true => &blob[blob.len() - data::VALUE_LEN..],
            false => &[],
        }
    }
}

/// The keys to read, cycling: each round reads the next `reads` of them.
struct Cycle {
    /// The cache keys, in read order.
    keys: Arc<Vec<String>>,
    /// Their Redis keys, in the same order.
    redis_keys: Arc<Vec<String>>,
    /// Where the next round starts.
    next: usize,
    reads: usize,
}

impl Cycle {
    /// The indices the next round reads.
    fn round(&mut self) -> impl Iterator<Item = usize> + Send + 'static {
        let (start, n, len) = (self.next, self.reads, self.keys.len());
        self.next = (start + n) % len;
        (0..n).map(move |i| (start + i) % len)
    }
}

/// Verified reads of `keys[i]` for each `i` of `indices` through `get`
/// (given `i`): how many found the key's value.
async fn read_async<V, F, Fut>(
    keys: Arc<Vec<String>>,
    indices: impl Iterator<Item = usize>,
    mut get: F,
) -> BenchResult<usize>
where
    V: AsRef<[u8]>,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = BenchResult<Option<V>>>,
{
    let mut verified = 0;
    for i in indices {
        if let Some(v) = std::hint::black_box(get(std::hint::black_box(i)).await?) {
            verified += usize::from(data::value_matches(&keys[i], v.as_ref()));
        }
    }
    Ok(verified)
}

/// Loads `keys` components into a cache whose only tier is the Redis of a
/// fresh `redis-server`, then times `reads` reads per round of each
/// contender, cycling through the keys in a fixed random order.
pub fn run(keys: usize, reads: usize, rounds: usize) -> BenchResult<RedisHitReport> {
    let server = RedisServer::start()?;
    let report = run_against(&server.url(), keys, reads, rounds);
    drop(server);
    report
}

/// [`run`] against the Redis at `url`.
fn run_against(url: &str, keys: usize, reads: usize, rounds: usize) -> BenchResult<RedisHitReport> {
    let items = data::components(keys);
    let order = data::read_order(keys);
    let prefix = format!("tierstack:{NAMESPACE}:");
    let cache_keys: Arc<Vec<String>> =
        Arc::new(order.iter().map(|&i| items[i].0.clone()).collect());
    let redis_keys: Arc<Vec<String>> =
        Arc::new(cache_keys.iter().map(|k| format!("{prefix}{k}")).collect());

    // A cache needs a tier of its host (memory or SQLite): the measured one
    // has SQLite off and an L1 too small to keep any value (a Redis hit's
    // copy into it is dropped), so that every read asks Redis. It cannot
    // store the values either; a writer with a usable L1 does.
    let builder = || {
        tierstack::blocking::Cache::builder()
            .namespace(NAMESPACE)
            .sqlite(false)
            .redis(RedisConfig::new(url))
    };
    let writer = builder().build_blocking()?;
    writer.mset(items.iter().map(|(k, v)| (k.as_str(), v.clone())))?;
    writer.close()?;
    let ours = builder().memory_max_bytes(L1_BYTES).build_blocking()?;

    // Every read is a Redis hit, and a bare GET of the Redis key finds the
    // same value in its envelope.
    let client = redis::Client::open(url)?;
    let mut sync = client.get_connection()?;
    let mut wire_bytes = 0;
    for (key, value) in &items {
        let lookup = ours.lookup(key)?;
        if lookup.as_ref().map(|l| (&l.value, l.tier)) != Some((value, Tier::Redis)) {
            return Err(format!("{key} is not a Redis-tier hit of its value").into());
        }
        let blob: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}{key}"))
            .query(&mut sync)?;
        let blob = Enveloped(blob.ok_or_else(|| format!("Redis has no {prefix}{key}"))?);
        if blob.as_ref() != &value[..] {
            return Err(format!("{prefix}{key} is not {key}'s value in an envelope").into());
        }
        wire_bytes = blob.0.len();
    }
    if ours.len()? != 0 {
        return Err("the measured cache's L1 kept a Redis hit".into());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let manager = runtime.block_on(client.get_connection_manager())?;
    let ours_async = ours.as_async().clone();

    let cycle = || Cycle {
        keys: cache_keys.clone(),
        redis_keys: redis_keys.clone(),
        next: 0,
        reads,
    };

    // The blocking side: one caller on this thread.
    let mut c = cycle();
    let ours_ref = &ours;
    let blocking: Contender<'_> = (
        "tierstack get",
        Box::new(move || {
            let indices = c.round();
            let keys = c.keys.clone();
            measure::timed(reads, || {
                let mut verified = 0;
                for i in indices {
                    let key = std::hint::black_box(keys[i].as_str());
                    if let Some(v) = std::hint::black_box(ours_ref.get(key)?) {
                        verified += usize::from(data::value_matches(key, &v));
                    }
                }
                Ok(verified)
            })
        }),
    );
    let mut c = cycle();
    let sync_ref = &mut sync;
    let redis_sync: Contender<'_> = (
        "redis-rs GET",
        Box::new(move || {
            let indices = c.round();
            let (keys, redis_keys) = (c.keys.clone(), c.redis_keys.clone());
            measure::timed(reads, || {
                let mut verified = 0;
                for i in indices {
                    let blob: Option<Vec<u8>> = std::hint::black_box(
                        redis::cmd("GET")
                            .arg(std::hint::black_box(&redis_keys[i]))
                            .query(&mut *sync_ref)?,
                    );
                    if let Some(blob) = blob {
                        verified +=
                            usize::from(data::value_matches(&keys[i], Enveloped(blob).as_ref()));
                    }
                }
                Ok(verified)
            })
        }),
    );

    // The async side: each round is one task on the runtime, awaiting its
    // reads one after another; the time includes spawning it once.
    let rt = &runtime;
    let mut c = cycle();
    let tierstack_async: Contender<'_> = (
        "tierstack async get",
        Box::new(move || {
            let indices = c.round();
            let keys = c.keys.clone();
            let cache = ours_async.clone();
            let task = async move {
                let k = keys.clone();
                read_async(keys, indices, move |i| {
                    let (cache, k) = (cache.clone(), k.clone());
                    async move { Ok::<Option<Bytes>, _>(cache.get(&k[i]).await?) }
                })
                .await
            };
            round_on(rt, reads, task)
        }),
    );
    let mut c = cycle();
    let redis_async: Contender<'_> = (
        "redis-rs async GET",
        Box::new(move || {
            let indices = c.round();
            let (keys, redis_keys) = (c.keys.clone(), c.redis_keys.clone());
            let manager = manager.clone();
            let task = async move {
                read_async(keys, indices, move |i| {
                    let (mut manager, redis_keys) = (manager.clone(), redis_keys.clone());
                    async move {
                        let blob: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(&redis_keys[i])
                            .query_async(&mut manager)
                            .await?;
                        BenchResult::Ok(blob.map(Enveloped))
                    }
                })
                .await
            };
            round_on(rt, reads, task)
        }),
    );

    let contenders = vec![blocking, redis_sync, tierstack_async, redis_async];
    let mut samples = measure::alternate(rounds, contenders)?.into_iter();
    let mut next = || samples.next().expect("one sample set per contender");
    let (blocking, redis_sync, tierstack_async, redis_async) = (next(), next(), next(), next());
    ours.close()?;
    drop(runtime);
    Ok(RedisHitReport {
        blocking,
        redis_sync,
        tierstack_async,
        redis_async,
        wire_bytes,
    })
}

/// Times `task` (`ops` reads) run as a task on `runtime`, waited for from
/// this thread.
fn round_on(
    runtime: &tokio::runtime::Runtime,
    ops: usize,
    task: impl Future<Output = BenchResult<usize>> + Send + 'static,
) -> BenchResult<Round> {
    measure::timed(ops, || {
        runtime
            .block_on(runtime.spawn(task))
            .map_err(|e| format!("a bench task failed: {e}"))?
    })
}

/// Whether a `redis-server` can be started here (on `PATH`).
pub fn server_available() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join("redis-server").is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_of_each_contender_is_a_verified_hit() {
        let (keys, reads, rounds) = (100, 150, 2);
        let report = run(keys, reads, rounds).unwrap();
        let total = reads * (rounds + 1);
        for s in [
            &report.blocking,
            &report.redis_sync,
            &report.tierstack_async,
            &report.redis_async,
        ] {
            assert_eq!((s.ops, s.verified), (total, total), "{}", s.name);
            assert_eq!(s.per_op_ns.len(), rounds);
            assert!(s.median_ns() > 0.0, "{}", s.name);
        }
        assert!(report.wire_bytes > data::VALUE_LEN);
    }

    #[test]
    fn an_envelope_derefs_to_its_tail_and_anything_else_to_nothing() {
        let value = data::component_value("component:000001");
        let mut blob = b"TSE\x01\0\0\0\x02{}".to_vec();
        blob.extend_from_slice(&value);
        assert_eq!(Enveloped(blob).as_ref(), &value[..]);
        assert!(Enveloped(value.to_vec()).as_ref().is_empty());
    }
}
