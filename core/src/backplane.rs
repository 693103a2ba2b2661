//! The backplane (Cargo feature `redis`, `redis.backplane`): keeps every
//! machine's L1, and its L2 file, coherent with what other machines change.
//!
//! **Announcing.** Every set, delete, tag invalidation and clear that
//! reaches Redis is added, in the same pipeline, to one Redis Stream per
//! cache (`XADD <prefix>\x1fchanges MAXLEN ~ <redis.backplane_max_len>`),
//! with the announcing process's node id and its L2 file's identity. A
//! load's fill is announced as a set. What could not reach Redis is
//! delivered once it answers again (see `tier::redis`).
//!
//! **Reading.** Each process runs one reader on the shared runtime, on a
//! connection of its own: `XREAD BLOCK` from the last id it read. For each
//! change made by another process it drops the key (or the tag's entries,
//! or everything) from its L1, and, when the change came from another L2
//! file (another machine), from its L2 file as well: that copy came from
//! Redis or from this host's own writes, and Redis now holds the newer
//! value. The next read finds it in Redis. Changes made through the same
//! file need no L2 work: the file already holds them (and the file's own
//! change log keeps L1s coherent on the host; see [`crate::coherence`]).
//!
//! **Replay.** A reader that lost its connection reconnects (after 100 ms,
//! doubling to 5 s) and reads on from its last id: every change made
//! meanwhile is applied (counted as `replayed`). If Redis no longer holds
//! them all — the stream was trimmed past that id (`max-deleted-entry-id`
//! of `XINFO STREAM`), or Redis lost the stream (its epoch key changed, or
//! its last id is below the reader's) — the process cannot tell what
//! changed, so it empties its L1 and its L2 file's entries (a *resync*)
//! and reads on from the stream's end.
//!
//! **A race it closes.** A read that finds a key in Redis and copies it
//! into L2 and L1 could copy a value another machine replaced after the
//! read and whose change was applied before the copy is stored. So a copy
//! is stored only if no change of another process was applied since the
//! read began (else it is answered but not kept); the check and the store
//! are one step under the lock the reader applies changes under.
//!
//! **Bound.** While the reader is connected, a change is applied here as
//! soon as the stream delivers it: `stats.redis.backplane.lag_ms` (by
//! Redis's clock against this host's) is typically a millisecond or two on
//! a LAN. A process that is cut off from Redis serves what it holds until
//! it reconnects, and then replays or resyncs before its next read of
//! Redis. (As with any cache, a value read before the change arrived may
//! already be in a caller's hands.)
//!
//! **At start**, a process reads from where the processes on its L2 file
//! last read to (recorded in the file: the stream's epoch and the last id,
//! after each batch of other machines' changes and at most every second
//! otherwise), or from a second before it opened the cache, whichever is
//! earlier: a file that outlived its processes replays what other machines
//! changed meanwhile. If that is no longer in the stream, or the file read
//! another stream (Redis lost it, or this is another Redis), the process
//! resyncs. A file that never read a stream (new, or used before Redis was
//! configured) is taken as it is.

use std::sync::Weak;
use std::time::Duration;

use ::redis::RedisResult;
use ::redis::aio::MultiplexedConnection;

use crate::cache::Engine;
use crate::runtime;
use crate::tier::redis::{Change, RedisTier};

use self::stream::{Entry, Id, epoch_id, pack, parse_id, stream_info, unpack, xread};

mod stream;

/// How long one `XREAD` waits for news.
const BLOCK: Duration = Duration::from_millis(1000);

/// The first read starts this long before the cache opened (by this
/// host's clock against Redis's), so that no change made while the reader
/// was connecting is missed.
const START_MARGIN: Duration = Duration::from_secs(1);

/// How often the L2 file's record of the stream's place is brought up to
/// date when no change of another machine came.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Changes read per `XREAD`.
const COUNT: usize = 512;

/// The first pause before reconnecting; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Sets the epoch unless one is there; answers the one there.
const EPOCH_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v then return v end redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]";

/// Where the reader is in the stream.
#[derive(Default)]
struct Cursor {
    /// The stream's epoch when last read.
    epoch: Option<String>,
    /// The epoch as a number, for the L2 file.
    epoch_id: i64,
    /// Where the first read starts, at the latest.
    first: Option<Id>,
    /// When the cursor was last recorded in the L2 file.
    recorded: Option<std::time::Instant>,
    /// Whether changes added before this connection are replays: it is a
    /// reconnection, or the first read starts where the L2 file's
    /// processes read to (not merely a second before the cache opened).
    replays: bool,
    /// The last id read.
    last: Option<Id>,
}

/// Other processes' changes, gathered from one read of the stream.
#[derive(Default)]
pub(crate) struct Remote {
    /// Keys to drop from L1.
    pub(crate) keys: Vec<String>,
    /// Of `keys`, those changed through another L2 file: dropped from
    /// this one too.
    pub(crate) file_keys: Vec<String>,
    /// Tags whose entries to drop from L1.
    pub(crate) tags: Vec<String>,
    /// Of `tags`, those invalidated through another L2 file.
    pub(crate) file_tags: Vec<String>,
    /// Everything is to go from L1 (and, with `clear_file`, from L2).
    pub(crate) clear: bool,
    pub(crate) clear_file: bool,
}

impl Remote {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tags.is_empty() && !self.clear
    }
}

/// Starts the reader of this fork generation, unless it runs already.
pub(crate) fn start(engine: &Engine, weak: Weak<Engine>) {
    let Some(redis) = engine.redis() else {
        return;
    };
    let generation = crate::fork::fork_generation();
    if redis
        .reader_generation
        .swap(generation, std::sync::atomic::Ordering::AcqRel)
        == generation
    {
        return;
    }
    let started = wall_ms().saturating_sub(START_MARGIN.as_millis() as u64);
    runtime::handle().spawn(run(weak, generation, started));
}

async fn run(weak: Weak<Engine>, generation: u64, started: u64) {
    let mut cursor = Cursor {
        epoch: None,
        epoch_id: 0,
        first: Some((started, 0)),
        last: None,
        recorded: None,
        replays: false,
    };
    let mut pause = RECONNECT_MIN;
    loop {
        let Some(stop) = with_redis(&weak, generation, RedisTier::stopping) else {
            return;
        };
        let backplane = with_redis(&weak, generation, RedisTier::announces).unwrap_or(false);
        if !backplane {
            // Only delivering what Redis missed.
            deliver_missed(&weak, generation).await;
            tokio::select! {
                () = stop.notified() => return,
                () = tokio::time::sleep(BLOCK) => continue,
            }
        }
        let connection = connect(&weak, generation).await;
        if with_redis(&weak, generation, |_| ()).is_none() {
            return;
        }
        let Some(mut connection) = connection else {
            set_connected(&weak, false);
            tokio::select! {
                () = stop.notified() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RECONNECT_MAX);
            continue;
        };
        let connected_at = wall_ms();
        match catch_up(&weak, generation, &mut connection, &mut cursor).await {
            Some(Ok(())) => pause = RECONNECT_MIN,
            Some(Err(err)) => {
                // Connected, but Redis would not say where the stream
                // stands: try again after the pause, as for a connection.
                log_lost(&weak, &err);
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RECONNECT_MAX);
                continue;
            }
            None => return,
        }
        set_connected(&weak, true);
        if with_redis(&weak, generation, RedisTier::answered_again).is_none() {
            return;
        }
        loop {
            deliver_missed(&weak, generation).await;
            let Some((stream, last)) = with_redis(&weak, generation, |r| {
                (r.stream_key(), cursor.last.unwrap_or((0, 0)))
            }) else {
                return;
            };
            let read = tokio::select! {
                () = stop.notified() => return,
                read = xread(&mut connection, &stream, last) => read,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    set_connected(&weak, false);
                    log_lost(&weak, &err);
                    break;
                }
            };
            let full = entries.len() >= COUNT;
            if !entries.is_empty()
                && !apply(&weak, generation, entries, &mut cursor, connected_at).await
            {
                return;
            }
            if full {
                // Far behind: the stream may have been trimmed past here.
                match catch_up(&weak, generation, &mut connection, &mut cursor).await {
                    Some(Ok(())) => {}
                    Some(Err(err)) => {
                        set_connected(&weak, false);
                        log_lost(&weak, &err);
                        break;
                    }
                    None => return,
                }
            }
        }
    }
}

/// Runs `f` on the engine's Redis tier while the engine is open and this
/// reader's generation is current; `None` otherwise (the reader ends).
fn with_redis<R>(
    weak: &Weak<Engine>,
    generation: u64,
    f: impl FnOnce(&RedisTier) -> R,
) -> Option<R> {
    let engine = weak.upgrade()?;
    if engine.is_closed() || crate::fork::fork_generation() != generation {
        return None;
    }
    engine.redis().map(f)
}

fn set_connected(weak: &Weak<Engine>, connected: bool) {
    if let Some(engine) = weak.upgrade() {
        engine
            .counters
            .backplane
            .connected
            .store(connected, std::sync::atomic::Ordering::Relaxed);
    }
}

fn log_lost(weak: &Weak<Engine>, err: &::redis::RedisError) {
    if let Some(engine) = weak.upgrade()
        && let Some(redis) = engine.redis()
    {
        tracing::warn!(error = %redis.scrub(&err.to_string()), "the backplane lost Redis; reconnecting");
    }
}

async fn deliver_missed(weak: &Weak<Engine>, generation: u64) {
    if let Some(engine) = weak.upgrade()
        && !engine.is_closed()
        && crate::fork::fork_generation() == generation
        && let Some(redis) = engine.redis()
    {
        redis.deliver_missed().await;
    }
}

async fn connect(weak: &Weak<Engine>, generation: u64) -> Option<MultiplexedConnection> {
    let engine = weak.upgrade()?;
    if engine.is_closed() || crate::fork::fork_generation() != generation {
        return None;
    }
    engine.redis()?.reader_connection(BLOCK).await
}

/// Checks, on (re)connecting or after a full read, that the stream still
/// holds every change after the cursor; if not, resyncs and moves the
/// cursor to the stream's end. `None` if the engine is gone.
async fn catch_up(
    weak: &Weak<Engine>,
    generation: u64,
    connection: &mut MultiplexedConnection,
    cursor: &mut Cursor,
) -> Option<RedisResult<()>> {
    let (stream, epoch_key) = with_redis(weak, generation, |r| (r.stream_key(), r.epoch_key()))?;
    let drawn = format!("{:x}", crate::coherence::new_origin() as u64);
    let epoch: RedisResult<String> = ::redis::cmd("EVAL")
        .arg(EPOCH_SCRIPT)
        .arg(1)
        .arg(&epoch_key)
        .arg(drawn)
        .query_async(connection)
        .await;
    let epoch = match epoch {
        Ok(epoch) => epoch,
        Err(err) => return Some(Err(err)),
    };
    let info = match stream_info(connection, &stream).await {
        Ok(info) => info,
        Err(err) => return Some(Err(err)),
    };
    let lost_epoch = cursor.epoch.as_ref().is_some_and(|e| *e != epoch);
    let epoch_id = epoch_id(&epoch);
    cursor.epoch = Some(epoch);
    let resync = match cursor.last {
        // First connection: from where the processes on the L2 file read
        // to, or about when the cache opened, whichever is earlier.
        None => {
            let opened = cursor.first.take().unwrap_or(info.last_generated);
            let engine = weak.upgrade()?;
            let recorded = tokio::task::spawn_blocking(move || engine.backplane_cursor())
                .await
                .ok()?;
            match recorded {
                Some((e, last)) if e == epoch_id => {
                    let start = unpack(last).min(opened);
                    cursor.replays = start < opened;
                    cursor.last = Some(start);
                    info.missing_after(start)
                }
                // The file read another stream (Redis lost it, or the file
                // moved to another Redis): its copies may be stale.
                Some(_) => true,
                None => {
                    cursor.last = Some(opened);
                    false
                }
            }
        }
        Some(last) => {
            cursor.replays = true;
            lost_epoch || info.missing_after(last)
        }
    };
    cursor.epoch_id = epoch_id;
    if resync {
        cursor.last = Some(info.last_generated);
    }
    let engine = weak.upgrade()?;
    let last = pack(cursor.last.unwrap_or((0, 0)));
    cursor.recorded = Some(std::time::Instant::now());
    let done = tokio::task::spawn_blocking(move || {
        if resync {
            engine.resync_remote();
        }
        engine.record_backplane_cursor(epoch_id, last);
    })
    .await;
    done.ok().map(Ok)
}

/// Applies other processes' changes among `entries` and moves the cursor
/// past them; `false` if the engine is gone.
async fn apply(
    weak: &Weak<Engine>,
    generation: u64,
    entries: Vec<Entry>,
    cursor: &mut Cursor,
    connected_at: u64,
) -> bool {
    let Some(node) = with_redis(weak, generation, RedisTier::node) else {
        return false;
    };
    let now = wall_ms();
    let mut remote = Remote::default();
    let (mut received, mut replayed, mut woken) = (0u64, 0u64, Vec::new());
    let mut lags = Vec::new();
    for (id, fields) in entries {
        let Some(id) = parse_id(&id) else {
            continue;
        };
        cursor.last = Some(id);
        let field = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|p| p.len() == 2 && p[0] == name)
                .map(|p| p[1].clone())
        };
        let (Some(from), Some(op)) = (field(b"n"), field(b"o")) else {
            continue;
        };
        let Some(change) = Change::parse(&op, field(b"k").unwrap_or_default()) else {
            continue;
        };
        if let Change::Set(key) | Change::Delete(key) = &change {
            woken.push(key.clone());
        }
        if from == node.id.as_bytes() {
            continue;
        }
        let other_file =
            node.file.is_empty() || field(b"f").as_deref() != Some(node.file.as_bytes());
        received += 1;
        if cursor.replays && id.0 < connected_at {
            replayed += 1;
        } else {
            lags.push(now.saturating_sub(id.0));
        }
        match change {
            Change::Set(key) | Change::Delete(key) => {
                if other_file {
                    remote.file_keys.push(key.clone());
                }
                remote.keys.push(key);
            }
            Change::Tag(tag) => {
                if other_file {
                    remote.file_tags.push(tag.clone());
                }
                remote.tags.push(tag);
            }
            Change::Clear => {
                remote.clear = true;
                remote.clear_file |= other_file;
            }
        }
    }
    let Some(engine) = weak.upgrade() else {
        return false;
    };
    let cleared = remote.clear;
    // The file's record of where its processes read to: after changes
    // were applied to it, and otherwise at most once a second.
    let record = cursor.last.filter(|_| {
        !remote.is_empty()
            || cursor
                .recorded
                .is_none_or(|at| at.elapsed() >= RECORD_EVERY)
    });
    if record.is_some() {
        cursor.recorded = Some(std::time::Instant::now());
    }
    let epoch_id = cursor.epoch_id;
    let applying = engine.clone();
    let applied = tokio::task::spawn_blocking(move || {
        if !remote.is_empty() {
            applying.apply_remote(&remote);
        }
        if let Some(last) = record {
            applying.record_backplane_cursor(epoch_id, pack(last));
        }
    });
    if applied.await.is_err() {
        return false;
    }
    let counters = &engine.counters.backplane;
    counters.received.add(received);
    counters.replayed.add(replayed);
    for lag in lags {
        counters.record_lag(lag);
    }
    if let Some(redis) = engine.redis() {
        woken.iter().for_each(|k| redis.wake(k));
        if cleared {
            redis.wake_all();
        }
    }
    true
}

/// Milliseconds since the Unix epoch, by the wall clock (stream ids are
/// Redis's wall clock).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_through_their_fields() {
        for change in [
            Change::Set("k".into()),
            Change::Delete("k".into()),
            Change::Tag("t".into()),
            Change::Clear,
        ] {
            let (op, arg) = match &change {
                Change::Set(k) => ("s", k.as_str()),
                Change::Delete(k) => ("d", k.as_str()),
                Change::Tag(t) => ("t", t.as_str()),
                Change::Clear => ("c", ""),
            };
            assert_eq!(
                Change::parse(op.as_bytes(), arg.as_bytes().to_vec()),
                Some(change)
            );
        }
        assert_eq!(Change::parse(b"x", Vec::new()), None);
    }
}
