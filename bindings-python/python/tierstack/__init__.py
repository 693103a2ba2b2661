"""tierstack: a hybrid multi-tier cache.

L1 is this process's memory; L2 is a SQLite file shared by every process on
the host, which survives restarts. A read walks L1 then L2 and copies an L2
hit into L1. The engine is written in Rust and shared with the Rust, C and
Node hosts::

    import tierstack

    with tierstack.Cache(sqlite={"path": "/tmp/components.db"}) as cache:
        cache.set("component:button", {"name": "button", "files": ["button.tsx"]})
        cache.get("component:button")      # {'name': 'button', 'files': ['button.tsx']}
        cache.get("component:missing")     # None

Values. ``bytes``, ``bytearray`` and ``memoryview`` values are stored as
they are and read back with :meth:`Cache.get_bytes`. Any other value is
stored as compact UTF-8 JSON (what the other hosts read and write as JSON)
and read back, decoded, with :meth:`Cache.get`. A value JSON cannot encode,
or stored bytes that are not UTF-8 JSON read with ``get``, raise
:class:`InvalidValueError`. JSON has no tuples and only string keys, so a
tuple reads back as a list and ``{1: "a"}`` as ``{"1": "a"}``; integers
beyond 64 bits read back as floats.

Shared values. Decoding JSON costs more than an L1 hit, so the decoded
object of a value L1 holds is kept and returned again by later reads for as
long as L1 holds that same stored value (any write, expiry or eviction ends
it). Like the values of any in-memory cache, such objects are shared between
callers: treat them as read-only (copy before changing). The kept objects
are bounded: their encoded sizes add up to at most a quarter of
``memory.max_bytes``, and the least useful are dropped first.

Threads and processes. A cache may be used by many threads at once. The GIL
is released whenever the engine may block: reads that go below L1, writes,
``len``/``keys``, maintenance, ``flush`` and ``close``. An L1 hit served
from kept values keeps the GIL, as releasing it would cost more than the hit.
A cache opened before ``os.fork()`` keeps working in the parent and the
child (the child reopens its own connections to the file). Other processes
may read and write the same file; within one process, leave the file to
tierstack (Python's ``sqlite3`` module is a second SQLite library, whose
locks tierstack's SQLite does not see).

TTLs. A ``ttl`` is a number of seconds (fractions allowed), the same rule
in every host: ``None`` or ``0`` takes the tier defaults (``sqlite.ttl``,
and at most ``memory.ttl`` in L1); a negative, NaN or infinite ``ttl``, or
one over 100 years, raises :class:`InvalidArgumentError` and stores nothing.

Loading. ``Cache(source=load)`` reads through ``load``: a ``get``,
``get_bytes``, ``lookup`` or ``mget`` that misses every tier calls
``load(key)`` and stores its answer (``source`` may also be an object with a
``load(key)`` method). ``get_or_load(key, loader, ttl=None)`` loads with a
per-call loader instead, and ``get_or_load_many(keys, loader, ttl=None)``
hands one loader call the list of keys missing everywhere. A loader answers
with the value (stored like ``set`` stores it), :data:`NOT_FOUND` (nothing is
stored; the answer is remembered for ``negative_ttl`` seconds), a
:class:`Loaded` (a value with its own TTL and tags), or raises: the caller
then gets :class:`SourceError`, whose ``__cause__`` is the loader's
exception. Everything around the call is the engine's, the same in every
host: one loader call per key however many threads, tasks and processes
miss it at once; the circuit breaker (:meth:`Cache.breaker_status`); a stale
copy (within ``fail_safe.max_stale``) served, with ``Lookup.stale`` true,
when the loader fails, the breaker is open, or the load passes
``fail_safe.soft_timeout`` (the load finishes in the background);
:class:`TimeoutError` past ``fail_safe.hard_timeout``. Loaders run on the
engine's worker threads, with the GIL; the calling thread waits without it.

GitHub. A ``github`` section in the config (:class:`GitHubConfig`) makes
GitHub the source: ``get``, ``get_bytes``, ``lookup`` and ``mget`` of a key
its routes serve (the ``"shadcn-v4"`` preset: ``component:react:{name}``,
``components:react``, ...) read through memory, the file, then GitHub,
with conditional requests, the breaker (a rate limit opens it until the
reset, for every process on the file) and the stale copies as above; a key
no route serves is a plain miss. ``stats()["source"]["rate_limit"]`` holds
the API's latest ``X-RateLimit-*`` figures. It cannot be combined with
``source=``.

Writes. The config's ``strategy`` says how writes reach the source:
``"read-through"`` (the default: writes go to the tiers only; a miss loads
from ``source``), ``"cache-aside"`` (the same, but a miss never calls
``source``), ``"write-through"`` (``set``, ``mset`` and ``delete`` call the
source first; if it raises, the caller gets :class:`SourceError` with its
exception as ``__cause__`` and the tiers are unchanged) and
``"write-behind"`` (a write is committed to the tiers and to a durable
outbox in the file before it returns; a background worker delivers the
outbox to the source, retrying failures after ``outbox.retry_base`` seconds,
doubled per attempt up to ``outbox.retry_max``; after
``outbox.max_attempts`` a write becomes a dead letter). The two writing
strategies need a writable ``source``: an object with ``load(key)``,
``store(key, value)`` and ``remove(key)``; a plain callable, or an object
without ``store``/``remove``, raises :class:`InvalidConfigError` at open, and
one with only one of them ``TypeError``. ``store`` gets the stored bytes (the
JSON text for values set as Python objects). Each write carries an
idempotency key, the same on every retry of that write (also by another
process after a crash): ``store`` and ``remove`` get it as the keyword
argument ``idempotency_key`` when they have a parameter of that name (or
``**kwargs``), and are called without it otherwise. Their return value is
ignored; raising fails the attempt, recorded as ``"source: <what> raised
<Exception>: <message>"``. They run on the engine's worker threads, with the
GIL; coroutine functions run on the caller's loop in :class:`AsyncCache`.
:meth:`Cache.flush` waits for the outbox to empty (dead letters do not
count; :class:`TimeoutError` past ``outbox.flush_timeout``, default 30 s);
:meth:`Cache.outbox_stats` gives its figures (``None`` unless
write-behind; also ``stats()["outbox"]``), :meth:`Cache.dead_letters` lists
the writes that gave up, :meth:`Cache.retry_dead_letters` queues them again
and :meth:`Cache.purge_dead_letters` deletes them. ``close()`` delivers for
up to ``outbox.close_timeout`` (default 5 s) and leaves the rest in the file
for the next process to deliver; a cache with a writable source that is
still open at the interpreter's exit is closed then (and one dropped open
is closed as it goes), while ``store`` and ``remove`` can still be called.

Many machines. A ``redis`` section in the config (:class:`RedisConfig`)
adds a Redis shared by many machines as a tier between the file and the
source: a read walks memory, the file, Redis, then the source; a Redis hit
is copied into the file and memory and reported with ``Lookup.tier``
``"redis"``. Writes, deletes, ``clear`` and ``invalidate_tag`` reach Redis
as well; ``has``, ``keys`` and ``len`` answer for this host's tiers only.
Redis failing never reaches the caller: a call that fails or takes longer
than ``redis.timeout`` is counted (``stats()["redis"]["errors"]``), the
read goes on below it, and after a few failures the tier's own circuit
breaker (``stats()["redis"]["breaker"]``) skips Redis until a probe finds
it answering again. With ``redis.backplane`` (the default) every set,
delete, tag invalidation and clear is also added to a Redis Stream that
every process reads: another machine's change drops the key from this
process's memory and from its file, so the next read gets the new value
from Redis (``stats()["redis"]["backplane"]``: ``lag_ms`` is the time from
a change being added to its being applied here). A process cut off from
Redis serves what it holds; when it reconnects it applies the changes it
missed (``replayed``), or, if the stream no longer holds them all (more
than ``redis.backplane_max_len`` changes were made meanwhile, or Redis
restarted empty), empties its memory and its file's entries
(``resyncs``). A key missing everywhere is loaded once for all machines:
while one machine loads it (holding a lease on the key in Redis), the
others wait and read its value from Redis
(``stats()["source"]["coalesced_machines"]``). The password of a
``redis.url`` never shows in errors, logs, stats or ``repr``.

Errors. Every error the engine reports is a :class:`Error` with a stable
``kind`` and ``code``, raised as the subclass of that kind; the kinds are
the engine's (:data:`ERROR_KINDS`, in code order), and a Python exception
behind an error (a loader's, a source's ``store``) is its ``__cause__``. An
argument of the wrong Python type (a key that is not a ``str``, a ``ttl``
that is not a number) raises ``TypeError``.

Testing. A cache opened with ``test_clock=True`` reads its time from this
process's test clock, which stands still until
:func:`advance_test_clock` ``(seconds)`` moves it: a test passes a TTL, a
negative TTL, a stale window or a breaker timeout without sleeping. Every
cache of the process opened with it shares that one clock. Test only: time
stops for expiry.
"""

import asyncio
import atexit
import builtins
import concurrent.futures
import inspect
import json
import os
import weakref
from collections.abc import Mapping
from typing import Any, List, NamedTuple, Optional, TypedDict, Union

from ._native import ERROR_CLASSES as _ERROR_CLASSES
from ._native import Cache as _NativeCache
from ._native import Read as _Read
from ._native import advance_test_clock
from ._native import __version__

__all__ = [
    "AsyncCache",
    "BackplaneStats",
    "BreakerStatus",
    "Cache",
    "CircuitBreakerConfig",
    "ClosedError",
    "Config",
    "CorruptError",
    "DeadLetter",
    "ERROR_KINDS",
    "Error",
    "FailSafeConfig",
    "GitHubConfig",
    "GitHubRoute",
    "IncompatibleError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "IoError",
    "Loaded",
    "Lookup",
    "MemoryConfig",
    "NOT_FOUND",
    "OutboxConfig",
    "OutboxStats",
    "RateLimit",
    "ReadOnlyError",
    "RedisConfig",
    "RedisStats",
    "SourceError",
    "SourceStats",
    "SourceUnavailableError",
    "SqliteConfig",
    "Stats",
    "StorageError",
    "TierStats",
    "TimeoutError",
    "__version__",
    "advance_test_clock",
]


class Error(Exception):
    """Any error tierstack reports, raised as the subclass of its kind.

    ``kind`` is the stable snake_case name of the error kind (``"invalid_key"``,
    one of :data:`ERROR_KINDS`) and ``code`` its stable number (its place in
    :data:`ERROR_KINDS`, from 1), the same in every host.
    """

    kind: str
    code: int


class InvalidKeyError(Error, ValueError):
    """A key is empty, longer than 255 bytes, holds a control character, or
    holds lone surrogates (not valid Unicode); or, with a ``github`` source,
    a routed key whose name part is not 1-128 characters of
    ``[A-Za-z0-9._-]`` (or starts with ``.``, or holds ``..``), refused
    before any request."""


class InvalidConfigError(Error, ValueError):
    """A config is malformed: unknown key, wrong type, out-of-range value, no
    tier enabled, or not expressible as JSON."""


class InvalidArgumentError(Error, ValueError):
    """An argument other than a key or config is unusable: a NaN, infinite or
    over-long TTL, a bad tag or glob pattern, a value larger than the L2
    budget."""


class ClosedError(Error):
    """The cache was closed."""


class StorageError(Error):
    """SQLite failed (busy past the timeout, disk full, ...)."""


class IoError(Error):
    """The file system refused something: the cache file or its directory
    cannot be created or read, or the path is a directory. The message
    carries the operating system's reason, and ``__cause__`` is its
    ``OSError`` (``IsADirectoryError``, ``PermissionError``, ..., with
    ``errno``)."""


class CorruptError(Error):
    """The cache file is not a database, is damaged, or belongs to another
    program. It is left untouched."""


class IncompatibleError(Error):
    """The cache file was written by a newer tierstack. It is left untouched."""


class InternalError(Error):
    """A bug in tierstack."""


class InvalidValueError(Error, ValueError):
    """A value JSON cannot encode was given, or stored bytes that are not
    UTF-8 JSON were read as JSON. What is stored is unchanged."""


class ReadOnlyError(Error):
    """The cache file may be read but not written (a read-only file system,
    directory or file mode): it was opened read-only, reads are served, and
    every write raises this."""


class SourceError(Error):
    """A loader or source failed (raised, or answered something that cannot
    be stored) and no stale copy could stand in, or (write-through) the
    source's ``store`` or ``remove`` raised. ``__cause__`` is that
    exception."""


class SourceUnavailableError(Error):
    """The source was not called because its circuit breaker is open, and no
    stale copy could stand in."""


class TimeoutError(Error, builtins.TimeoutError):
    """A load ran past ``fail_safe.hard_timeout`` and was abandoned, and no
    stale copy could stand in; or (write-behind) ``flush`` waited
    ``outbox.flush_timeout`` with writes still pending. Also a builtin
    ``TimeoutError``, so either name catches it."""


ERROR_KINDS: "tuple[str, ...]" = tuple(kind for kind, _, _ in _ERROR_CLASSES)
"""The engine's error kinds, in code order (``code`` 1 first): each has its
subclass of :class:`Error` here, named after it (``"invalid_key"``:
:class:`InvalidKeyError`)."""


def _bind_error_kinds(kinds: Any) -> None:
    """Gives each :class:`Error` subclass its ``kind`` and ``code`` from
    ``kinds`` (``(kind, code, class name)`` triples, the engine's list);
    ``ImportError`` if a kind has no class here or a class no kind."""
    classes = {cls.__name__: cls for cls in Error.__subclasses__()}
    for kind, code, name in kinds:
        cls = classes.pop(name, None)
        if cls is None:
            raise ImportError(f"tierstack has no class {name} for the engine's error kind {kind!r} (code {code})")
        cls.kind = kind
        cls.code = code
    if classes:
        raise ImportError(f"tierstack's {', '.join(sorted(classes))} match no error kind of the engine")


_bind_error_kinds(_ERROR_CLASSES)


class Lookup(NamedTuple):
    """A value found by ``lookup``, with where it came from."""

    value: Any
    """The value: decoded JSON from ``lookup``, bytes from ``lookup_bytes``."""
    tier: str
    """The tier that served it: ``"memory"``, ``"sqlite"``, ``"redis"``, or
    ``"source"`` (loaded for this read)."""
    stale: bool
    """Whether it had expired and was served as a stale copy."""
    age: float
    """Seconds since it was written."""

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any:
        # ``Lookup[bytes]`` in annotations: the stub declares it generic.
        return cls


class MemoryConfig(TypedDict, total=False):
    """``memory``: the L1 in this process."""

    enabled: bool
    max_bytes: int
    ttl: float


class SqliteConfig(TypedDict, total=False):
    """``sqlite``: the L2 file shared by every process on the host."""

    enabled: bool
    path: Union[str, "os.PathLike[str]", None]
    max_bytes: int
    ttl: float
    coherence_interval: float
    """Seconds, at most, between two checks of the file for other processes'
    changes (default 0.05; 0: on every access): no value another process
    replaced longer ago than this is served from L1."""
    on_corrupt: str


class FailSafeConfig(TypedDict, total=False):
    """``fail_safe``: stale copies and how long a load may take."""

    max_stale: float
    """How long an expired copy is kept to stand in for a failing source."""
    soft_timeout: float
    """A caller holding a stale copy gets it after this long (default 1.0);
    the load goes on in the background."""
    hard_timeout: float
    """A load is abandoned after this long (default 30): a failure."""


class CircuitBreakerConfig(TypedDict, total=False):
    """``circuit_breaker``: when the source stops being called."""

    threshold: int
    failure_rate: float
    minimum_calls: int
    window: float
    slow_call: float
    timeout: float
    max_timeout: float
    half_open_probes: int
    success_threshold: int


class GitHubRoute(TypedDict, total=False):
    """One route of ``github.routes``: keys matching ``key`` (``{name}``
    style placeholders) load the file at ``path``, or, with ``listing``, the
    sorted names of the files in that directory (``suffix`` stripped), as a
    JSON array."""

    key: str
    owner: str
    repo: str
    ref: str
    path: str
    listing: str
    suffix: str
    items: str
    only: Mapping[str, List[str]]


class GitHubConfig(TypedDict, total=False):
    """``github``: GitHub as the source of truth; present, plain reads load
    through it."""

    enabled: bool
    token: Optional[str]
    """Sent to ``api_url`` only (default: ``$GITHUB_PERSONAL_ACCESS_TOKEN``,
    else ``$GITHUB_TOKEN``)."""
    api_url: str
    raw_url: str
    timeout: float
    max_body_bytes: int
    routes: Union[str, List[GitHubRoute]]
    """A preset's name (``"shadcn-v4"``, the default) or a list of routes."""


class OutboxConfig(TypedDict, total=False):
    """``outbox``: how write-behind delivers to the source."""

    max_attempts: int
    """Attempts of a write before it is a dead letter (default 8; 1-1000)."""
    retry_base: float
    """Seconds before the first retry, doubled per attempt (default 0.5)."""
    retry_max: float
    """The longest pause between attempts (default 60)."""
    batch: int
    """Writes delivered at once, never two of one key (default 32)."""
    flush_timeout: float
    """How long ``flush()`` waits for the outbox to empty (default 30)."""
    close_timeout: float
    """How long ``close()`` keeps delivering (default 5); what is left stays
    in the file for the next process."""


class RedisConfig(TypedDict, total=False):
    """``redis``: a Redis shared by many machines, between the file and the
    source (see "Many machines" in the package docs). ``url`` is required."""

    url: str
    """``redis://[user][:password@]host[:port][/db]`` (or ``rediss://``,
    ``redis+unix://``, ``unix://``); the password never shows."""
    prefix: str
    """Put before every key in Redis (default ``"tierstack:<namespace>:"``;
    1-255 bytes without control characters)."""
    timeout: float
    """A Redis call slower than this counts as a failure and the read goes
    on below (default 0.25; more than 0, at most 60)."""
    ttl: Optional[float]
    """The longest time a key lives in Redis (default ``None``: the
    entry's own, up to its stale-until time)."""
    backplane: bool
    """Carry every change to the other machines' memory and file through a
    Redis Stream (default ``True``)."""
    backplane_max_len: int
    """About how many changes the stream keeps (default 100000; 100 to
    100,000,000): a process away for longer than that many changes empties
    its memory and its file on return."""
    enabled: bool
    """Use the section (default ``True``; ``False``: as if absent)."""


class Config(TypedDict, total=False):
    """The config, in the JSON spelling; every key is optional. Durations
    are seconds."""

    namespace: str
    memory: MemoryConfig
    sqlite: SqliteConfig
    fail_safe: FailSafeConfig
    circuit_breaker: CircuitBreakerConfig
    negative_ttl: float
    """How long a "not found" answer is remembered (default 60)."""
    refresh_ahead: float
    """A hit past this share of its TTL reloads in the background (default
    0.8; 0: never)."""
    ttl_jitter: float
    """Loaded values' TTLs are shortened by up to this share (default 0.1)."""
    github: GitHubConfig
    strategy: str
    """How writes reach the source: ``"read-through"`` (default),
    ``"cache-aside"``, ``"write-through"`` or ``"write-behind"``."""
    outbox: OutboxConfig
    redis: RedisConfig
    test_clock: bool
    """Test only: read time from this process's test clock, which stands
    still until :func:`advance_test_clock` moves it (default ``False``)."""


class TierStats(TypedDict):
    """The counters of one tier, from :meth:`Cache.stats`."""

    tier: str
    """``"memory"``, ``"sqlite"`` or ``"redis"``."""
    hits: int
    misses: int
    avg_time_us: float
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


class RateLimit(TypedDict):
    """The source's latest rate-limit figures (GitHub's ``X-RateLimit-*``
    headers), in :meth:`Cache.stats` ``["source"]["rate_limit"]``."""

    limit: Optional[int]
    remaining: int
    reset_at_ms: Optional[int]
    """When the period ends, in milliseconds since the epoch."""


class SourceStats(TypedDict):
    """Loading counters, in :meth:`Cache.stats` ``["source"]``."""

    requests: int
    successes: int
    failures: int
    timeouts: int
    not_found: int
    rejected: int
    coalesced: int
    """Callers that waited for a load another caller of this process started."""
    coalesced_processes: int
    """Loads left to another process on the file, read from the file."""
    coalesced_machines: int
    """Loads left to another machine sharing Redis, read from Redis."""
    stale_served: int
    negative_hits: int
    refreshes: int
    rate_limit: Optional[RateLimit]
    """Shared by the processes on the file; ``None`` until the source sends
    any."""


class BreakerStatus(TypedDict):
    """The circuit breaker, from :meth:`Cache.breaker_status`. Times are
    float seconds since the epoch, or ``None``."""

    state: str
    """``"closed"``, ``"open"`` or ``"half-open"``."""
    failure_count: int
    allows_request: bool
    last_failure_at: Optional[float]
    next_attempt_at: Optional[float]
    """While open, when it turns half-open; ``None`` when not open or
    opened by hand."""
    trips: int


class OutboxStats(TypedDict):
    """The write-behind outbox, from :meth:`Cache.outbox_stats` and in
    :meth:`Cache.stats` ``["outbox"]``."""

    durable: bool
    """Whether it is in the L2 file (survives a crash); ``False`` without one."""
    pending: int
    """Writes waiting for the source (of every process on the file)."""
    oldest_age: Optional[float]
    """Seconds since the oldest pending write was made; ``None`` if none."""
    retrying: int
    """Pending writes that failed at least once."""
    retries: int
    """Failed attempts made by this process."""
    delivered: int
    """Writes delivered by this process."""
    dead: int
    """Writes in the dead letters."""


class DeadLetter(TypedDict):
    """A write that gave up, from :meth:`Cache.dead_letters`."""

    key: str
    op: str
    """``"store"`` or ``"remove"``."""
    attempts: int
    last_error: str
    """The last attempt's error, ``"source: <what the source raised>"``."""
    failed_at: float
    """When it gave up, in seconds since the epoch."""


class BackplaneStats(TypedDict):
    """The backplane, in :meth:`Cache.stats` ``["redis"]["backplane"]``."""

    connected: bool
    """Whether this process is reading the stream now."""
    sent: int
    """Changes this process added to the stream."""
    received: int
    """Other processes' changes read from the stream and applied here."""
    replayed: int
    """Of ``received``, those read on reconnecting: made while this process
    was not reading."""
    resyncs: int
    """Times this process emptied its memory and its file's entries because
    the stream no longer held every change it missed."""
    deferred: int
    """Changes that could not reach Redis and were announced (as deletes)
    once it answered again."""
    lag_ms: int
    """Milliseconds from the latest change applied here being added to the
    stream (by Redis's clock) to its being applied (by this host's)."""
    max_lag_ms: int
    """The most ``lag_ms`` has been."""


class RedisStats(TypedDict):
    """The Redis tier, in :meth:`Cache.stats` ``["redis"]`` (its hits and
    misses are its entry in ``["tiers"]``)."""

    errors: int
    """Calls that failed or took longer than ``redis.timeout``; none reached
    the caller."""
    skipped: int
    """Calls not made because the tier's breaker was open."""
    breaker: BreakerStatus
    """The tier's own circuit breaker (times as in :meth:`Cache.breaker_status`)."""
    backplane: Optional[BackplaneStats]
    """``None`` when ``redis.backplane`` is off."""


class Stats(TypedDict):
    """The counters of a cache, from :meth:`Cache.stats`."""

    hits: int
    misses: int
    hit_rate: float
    sets: int
    deletes: int
    invalidations: int
    resyncs: int
    tiers: List[TierStats]
    sqlite_rebuilds: int
    sqlite_reopens: int
    not_stored: int
    source: SourceStats
    breaker: BreakerStatus
    outbox: Optional[OutboxStats]
    """``None`` unless the strategy is write-behind."""
    redis: Optional[RedisStats]
    """``None`` without a ``redis`` section."""


class _NotFound:
    """The type of :data:`NOT_FOUND` (one instance)."""

    __slots__ = ()
    _instance: Any = None

    def __new__(cls) -> "_NotFound":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "tierstack.NOT_FOUND"

    def __reduce__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Any = _NotFound()
"""What a loader returns for a key that does not exist at its source:
nothing is stored, and the answer is remembered for ``negative_ttl``."""


class Loaded:
    """A loader's answer with a TTL and tags of its own:
    ``Loaded(value, ttl=None, tags=None)``. ``ttl`` (seconds, as in
    :meth:`Cache.set`) replaces the call's; ``tags`` are stored with it."""

    __slots__ = ("value", "ttl", "tags")

    def __init__(self, value: Any, ttl: Any = None, tags: Any = None) -> None:
        self.value = value
        self.ttl = ttl
        self.tags = tags

    def __repr__(self) -> str:
        return f"Loaded({self.value!r}, ttl={self.ttl!r}, tags={self.tags!r})"

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Loaded):
            return NotImplemented
        return (self.value, self.ttl, self.tags) == (other.value, other.ttl, other.tags)

    __hash__ = None  # type: ignore[assignment]


_MISSING: Any = object()


def _merge(base: Mapping, over: Mapping) -> dict:
    merged = dict(base)
    for name, value in over.items():
        below = merged.get(name)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            value = _merge(below, value)
        merged[name] = value
    return merged


def _fspath(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


def _config_json(config: Any, options: dict) -> str:
    if "config" in options:
        if config is not None:
            raise TypeError("config given twice: positionally and as config=")
        config = options.pop("config")
    if config is None:
        config = {}
    elif not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict or None, not {type(config).__name__}")
    try:
        return json.dumps(_merge(config, options), default=_fspath, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidConfigError(f"the config is not expressible as JSON: {exc}") from exc


def _takes_key(loader: Any) -> bool:
    """Whether ``get_or_load`` calls ``loader(key)`` (it accepts a
    positional argument) rather than ``loader()``."""
    try:
        parameters = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return True  # no signature to read (some builtins): pass the key
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in parameters)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _resolve(awaitable: Any, loop: Any) -> Any:
    """The result of a loader's awaitable, on the engine's worker thread:
    run on ``loop`` (the caller's event loop, which is free: the caller
    awaits the engine in an executor) while it runs, else in a new loop."""
    if loop is None or loop.is_closed() or not loop.is_running():
        return asyncio.run(_awaited(awaitable))
    future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop)
    while True:
        try:
            return future.result(timeout=1.0)
        except concurrent.futures.TimeoutError:
            if loop.is_closed() or not loop.is_running():
                future.cancel()
                raise RuntimeError("the event loop running the loader stopped") from None


def _run_loader(loader: Any, argument: Any, loop: Any, single: bool) -> Any:
    """Calls a ``get_or_load`` loader (``single``: with the key if it takes
    one) or a ``get_or_load_many`` loader (with the list of keys); the
    engine calls this on its worker thread."""
    result = loader(argument) if not single or _takes_key(loader) else loader()
    if inspect.isawaitable(result):
        result = _resolve(result, loop)
    return result


def _takes_idempotency_key(method: Any) -> bool:
    """Whether a source's ``store``/``remove`` is handed the write's
    idempotency key: it has a parameter ``idempotency_key`` (positional or
    keyword) or takes ``**kwargs``."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False  # no signature to read: call it without the key
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == "idempotency_key" and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            return True
    return False


class _Source:
    """A configured source as the engine calls it: ``source(key)``, and for
    a writable source ``store(key, value, idempotency_key)`` and
    ``remove(key, idempotency_key)``, which hand the key on as the keyword
    ``idempotency_key`` to a method that accepts it."""

    __slots__ = ("load", "loop", "writable", "_store", "_remove", "_store_key", "_remove_key")

    def __init__(self, source: Any) -> None:
        load = getattr(source, "load", None)
        if callable(load):
            self.load = load
        elif callable(source):
            self.load = source
        else:
            raise TypeError(f"source must be a callable or have a load(key) method, not {type(source).__name__}")
        self.loop: Any = None
        store = getattr(source, "store", None)
        remove = getattr(source, "remove", None)
        self.writable = store is not None or remove is not None
        if self.writable and not (callable(store) and callable(remove)):
            raise TypeError(
                f"a writable source has both store(key, value) and remove(key) methods; "
                f"{type(source).__name__} has {'store' if callable(store) else 'remove'} only"
            )
        self._store: Any = store
        self._remove: Any = remove
        self._store_key = self.writable and _takes_idempotency_key(store)
        self._remove_key = self.writable and _takes_idempotency_key(remove)

    def __call__(self, key: str) -> Any:
        return self._done(self.load(key))

    def store(self, key: str, value: bytes, idempotency_key: str) -> None:
        if self._store_key:
            self._done(self._store(key, value, idempotency_key=idempotency_key))
        else:
            self._done(self._store(key, value))

    def remove(self, key: str, idempotency_key: str) -> None:
        if self._remove_key:
            self._done(self._remove(key, idempotency_key=idempotency_key))
        else:
            self._done(self._remove(key))

    def _done(self, result: Any) -> Any:
        """``result``, awaited first if it is an awaitable (on the caller's
        loop while it runs, see :func:`_resolve`)."""
        if inspect.isawaitable(result):
            result = _resolve(result, self.loop)
        return result


class Cache(_NativeCache):
    """A cache: L1 in this process's memory over an L2 SQLite file.

    ``Cache(config=None, /, *, source=None, **options)``: ``config`` is a dict
    in the JSON config's spelling (``{"memory": {"max_bytes": 8_388_608},
    "sqlite": {"path": "/tmp/c.db"}}``) and ``options`` are top-level keys of
    it merged over ``config`` (nested dicts merge key by key).
    ``sqlite.path`` may be a ``str`` or an ``os.PathLike``. A bad config
    raises :class:`InvalidConfigError`; a ``config`` that is not a dict,
    ``TypeError``.

    ``source``: reads that miss every tier load through it (see the package
    docs): a callable ``source(key)``, or an object with a ``load(key)``
    method; an object that also has ``store(key, value)`` and
    ``remove(key)`` is writable, and the ``write-through`` and
    ``write-behind`` strategies write to it (see "Writes" in the package
    docs). A coroutine function works too: it runs in a new event loop on
    the loading thread (in :class:`AsyncCache`, on the caller's loop).

    Use it as a context manager to close it on exit.
    """

    __slots__ = ("_source", "__weakref__")

    def __new__(cls, config: Any = None, /, *, source: Any = None, **options: Any) -> "Cache":
        adapter = None if source is None else _Source(source)
        writable = adapter is not None and adapter.writable
        self = super().__new__(cls, _config_json(config, options), adapter, writable)
        self._source = adapter
        if writable:
            _WRITERS.add(self)
        return self

    def __init__(self, config: Any = None, /, *, source: Any = None, **options: Any) -> None:
        """The cache is opened by ``__new__``, which takes these arguments."""

    def get_or_load_many(self, keys: Any, loader: Any, ttl: Any = None) -> Any:
        """The values (decoded JSON) of the found keys among ``keys``, in
        their order. The keys missing in every tier go to one call
        ``loader(missing_keys)`` (a list, in order; no call if none is
        missing), which returns a dict: a key it leaves out, or maps to
        :data:`NOT_FOUND`, is not found. Values, ``ttl`` and errors as in
        :meth:`get_or_load`."""
        return self._load_many(keys, loader, ttl, None, False)

    def get_or_load_many_bytes(self, keys: Any, loader: Any, ttl: Any = None) -> Any:
        """:meth:`get_or_load_many` returning the stored bytes."""
        return self._load_many(keys, loader, ttl, None, True)


_WRITERS: "weakref.WeakSet[Cache]" = weakref.WeakSet()
"""The open caches with a writable source."""


@atexit.register
def _close_writers() -> None:
    """Closes the caches with a writable source still open at the
    interpreter's exit, while their ``store`` and ``remove`` can still be
    called: write-behind delivers its outbox for up to
    ``outbox.close_timeout`` (what is left stays in the file)."""
    failed: Optional[BaseException] = None
    for cache in list(_WRITERS):
        try:
            cache.close()
        except Error as err:  # close the others first
            failed = failed or err
    if failed is not None:
        raise failed


class AsyncCache:
    """A :class:`Cache` for asyncio: the same methods, as coroutines.

    A read or ``get_or_load`` that L1 answers completes on the event loop
    (a refresh ahead it starts runs in the background); every call that may
    reach the SQLite file or load runs in the loop's default executor (a
    thread pool), without the GIL while it waits. Opening (the constructor)
    touches the file once, synchronously.

    Loaders and ``source`` (its ``load``, ``store`` and ``remove``) may be
    plain or coroutine functions. A coroutine runs on the caller's event
    loop (the engine's worker thread hands it over and waits; the loop
    stays free); a write-behind delivery's, on the loop of the cache's
    latest call while that loop runs, else in a new loop on the worker
    thread. A plain function runs on the engine's worker thread. Cancelling a waiting task does not cancel the
    load: the other waiters still get it.
    """

    __slots__ = ("_cache",)

    def __init__(self, config: Any = None, /, *, source: Any = None, **options: Any) -> None:
        self._cache = Cache(config, source=source, **options)

    def __repr__(self) -> str:
        return f"<AsyncCache {self._cache!r}>"

    def _off_loop(self, fn: Any, *args: Any) -> Any:
        """Runs ``fn(*args)`` in the executor; a configured source's
        coroutines run on this loop."""
        loop = asyncio.get_running_loop()
        source = self._cache._source
        if source is not None:
            source.loop = loop
        return loop.run_in_executor(None, fn, *args)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` decoded from JSON, or ``default`` on a miss."""
        value = self._cache._memory_get(key, _Read.GET, _MISSING)
        if value is _MISSING:
            return await self._off_loop(self._cache.get, key, default)
        return value

    async def get_bytes(self, key: str, default: Any = None) -> Any:
        """The stored bytes of ``key``, or ``default`` on a miss."""
        value = self._cache._memory_get(key, _Read.GET_BYTES, _MISSING)
        if value is _MISSING:
            return await self._off_loop(self._cache.get_bytes, key, default)
        return value

    async def lookup(self, key: str) -> Any:
        """A :class:`Lookup` of ``key`` (decoded value), or ``None``."""
        found = self._cache._memory_get(key, _Read.LOOKUP, _MISSING)
        if found is _MISSING:
            return await self._off_loop(self._cache.lookup, key)
        return found

    async def lookup_bytes(self, key: str) -> Any:
        """A :class:`Lookup` of ``key`` whose value is the stored bytes, or ``None``."""
        found = self._cache._memory_get(key, _Read.LOOKUP_BYTES, _MISSING)
        if found is _MISSING:
            return await self._off_loop(self._cache.lookup_bytes, key)
        return found

    async def get_or_load(self, key: str, loader: Any, ttl: Any = None) -> Any:
        """:meth:`Cache.get_or_load`; ``loader`` may be a coroutine function."""
        value = self._cache._load_hit(key, loader, ttl, _Read.GET, _MISSING)
        if value is _MISSING:
            loop = asyncio.get_running_loop()
            return await self._off_loop(self._cache._load, key, loader, ttl, loop, _Read.GET)
        return value

    async def get_or_load_bytes(self, key: str, loader: Any, ttl: Any = None) -> Any:
        """:meth:`Cache.get_or_load_bytes`; ``loader`` may be a coroutine function."""
        value = self._cache._load_hit(key, loader, ttl, _Read.GET_BYTES, _MISSING)
        if value is _MISSING:
            loop = asyncio.get_running_loop()
            return await self._off_loop(self._cache._load, key, loader, ttl, loop, _Read.GET_BYTES)
        return value

    async def get_or_load_many(self, keys: Any, loader: Any, ttl: Any = None) -> Any:
        """:meth:`Cache.get_or_load_many`; ``loader`` may be a coroutine function."""
        loop = asyncio.get_running_loop()
        return await self._off_loop(self._cache._load_many, keys, loader, ttl, loop, False)

    async def get_or_load_many_bytes(self, keys: Any, loader: Any, ttl: Any = None) -> Any:
        """:meth:`Cache.get_or_load_many_bytes`; ``loader`` may be a coroutine function."""
        loop = asyncio.get_running_loop()
        return await self._off_loop(self._cache._load_many, keys, loader, ttl, loop, True)

    async def set(self, key: str, value: Any, ttl: Any = None, tags: Any = None) -> None:
        """Stores ``value`` under ``key``; see :meth:`Cache.set`."""
        await self._off_loop(self._cache.set, key, value, ttl, tags)

    async def mget(self, keys: Any) -> Any:
        """The decoded values of the found keys among ``keys``, in their order."""
        listed, found, complete = self._cache._mget_memory(keys, False)
        if complete:
            return found
        return await self._off_loop(self._cache._mget_tiers, listed, found, False)

    async def mget_bytes(self, keys: Any) -> Any:
        """The stored bytes of the found keys among ``keys``, in their order."""
        listed, found, complete = self._cache._mget_memory(keys, True)
        if complete:
            return found
        return await self._off_loop(self._cache._mget_tiers, listed, found, True)

    async def mset(self, mapping: Any, ttl: Any = None, tags: Any = None) -> None:
        """Stores every item of ``mapping``; see :meth:`Cache.mset`."""
        await self._off_loop(self._cache.mset, mapping, ttl, tags)

    async def has(self, key: str) -> bool:
        """Whether ``key`` holds a fresh value; not counted as a read."""
        return await self._off_loop(self._cache.has, key)

    async def delete(self, key: str) -> bool:
        """Removes ``key``; whether it held a fresh value."""
        return await self._off_loop(self._cache.delete, key)

    async def keys(self, pattern: Any = None) -> Any:
        """The fresh keys matching a glob (``*`` only; ``None`` for all), sorted."""
        return await self._off_loop(self._cache.keys, pattern)

    async def len(self) -> int:
        """How many fresh keys the cache holds."""
        return await self._off_loop(self._cache.len)

    async def clear(self) -> None:
        """Removes every entry from every tier."""
        await self._off_loop(self._cache.clear)

    async def invalidate_tag(self, tag: str) -> int:
        """Removes every entry written with ``tag``; how many fresh ones went."""
        return await self._off_loop(self._cache.invalidate_tag, tag)

    async def flush(self) -> None:
        """Returns once every acknowledged write is durable in the file and,
        with write-behind, the outbox is empty; see :meth:`Cache.flush`."""
        await self._off_loop(self._cache.flush)

    async def stats(self) -> Any:
        """The engine's counters; see :meth:`Cache.stats`. No I/O, so it
        completes on the loop, except with write-behind (the outbox's
        figures are read from the file), where it runs in the executor."""
        if self._cache._write_behind:
            return await self._off_loop(self._cache.stats)
        return self._cache.stats()

    async def outbox_stats(self) -> Any:
        """The write-behind outbox's figures, or ``None``; see
        :meth:`Cache.outbox_stats`."""
        return await self._off_loop(self._cache.outbox_stats)

    async def dead_letters(self) -> Any:
        """The writes that gave up; see :meth:`Cache.dead_letters`."""
        return await self._off_loop(self._cache.dead_letters)

    async def retry_dead_letters(self) -> int:
        """Queues the dead letters again; see :meth:`Cache.retry_dead_letters`."""
        return await self._off_loop(self._cache.retry_dead_letters)

    async def purge_dead_letters(self) -> int:
        """Deletes the dead letters; see :meth:`Cache.purge_dead_letters`."""
        return await self._off_loop(self._cache.purge_dead_letters)

    async def breaker_status(self) -> Any:
        """The circuit breaker's status; see :meth:`Cache.breaker_status`
        (no I/O: completes on the loop)."""
        return self._cache.breaker_status()

    async def breaker_open(self) -> None:
        """Opens the breaker by hand; see :meth:`Cache.breaker_open`."""
        self._cache.breaker_open()

    async def breaker_close(self) -> None:
        """Closes the breaker by hand; see :meth:`Cache.breaker_close`."""
        self._cache.breaker_close()

    async def close(self) -> None:
        """Closes the cache; later calls raise :class:`ClosedError`."""
        await self._off_loop(self._cache.close)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._cache.closed

    async def __aenter__(self) -> "AsyncCache":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
