"""Types of the tierstack package; see the package docstring for the behaviour.

Arguments of the wrong Python type (a key that is not ``str``, a ``ttl`` that
is not a number, ``tags`` or ``keys`` given as one ``str``) raise
``TypeError``; everything the engine refuses raises a subclass of
:class:`Error`.
"""

import builtins
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Generic, Literal, NamedTuple, Protocol, TypedDict, TypeVar, final, overload

from typing_extensions import Self, TypeAlias, Unpack

__version__: str

_Value: TypeAlias = (
    Mapping[str, Any]
    | list[Any]
    | tuple[Any, ...]
    | str
    | int
    | float
    | bool
    | bytes
    | bytearray
    | memoryview
    | None
)
"""What ``set`` takes: bytes-like values are stored as they are, the rest as
JSON (dicts, lists, tuples, str, int, float, bool, None, nested)."""

_T = TypeVar("_T")
_V = TypeVar("_V", bound=_Value)
_L_co = TypeVar("_L_co", covariant=True)

_Tier: TypeAlias = Literal["memory", "sqlite", "redis", "source"]

ERROR_KINDS: Final[tuple[str, ...]]
"""The engine's error kinds, in code order; each has its :class:`Error`
subclass here (``"invalid_key"``: :class:`InvalidKeyError`)."""

class Error(Exception):
    """Any error tierstack reports."""

    kind: str
    """The stable snake_case name of the kind, one of :data:`ERROR_KINDS`."""
    code: int
    """The stable number of the kind (its place in :data:`ERROR_KINDS`,
    from 1), the same in every host."""

class InvalidKeyError(Error, ValueError):
    """Code 1: a key is empty, over 255 bytes, holds a control character or
    lone surrogates."""

class InvalidConfigError(Error, ValueError):
    """Code 2: a config is malformed."""

class InvalidArgumentError(Error, ValueError):
    """Code 3: a bad TTL (negative, NaN, infinite or over 100 years), tag or
    pattern, or a value over the L2 budget."""

class ClosedError(Error):
    """Code 4: the cache was closed."""

class StorageError(Error):
    """Code 5: SQLite failed."""

class IoError(Error):
    """Code 6: the file system refused something (the OS reason is in the
    message; ``__cause__`` is its ``OSError``)."""

class CorruptError(Error):
    """Code 7: the file is not a tierstack cache, or is damaged."""

class IncompatibleError(Error):
    """Code 8: the file was written by a newer tierstack."""

class InternalError(Error):
    """Code 9: a bug in tierstack."""

class InvalidValueError(Error, ValueError):
    """Code 10: a value JSON cannot encode, or stored bytes that are not JSON
    read as JSON."""

class ReadOnlyError(Error):
    """Code 11: the cache file is read-only: reads are served, writes are
    refused."""

class SourceError(Error):
    """Code 12: a loader or source failed and no stale copy could stand in,
    or (write-through) the source's ``store``/``remove`` raised;
    ``__cause__`` is that exception."""

class SourceUnavailableError(Error):
    """Code 13: the circuit breaker is open and no stale copy could stand in."""

class TimeoutError(Error, builtins.TimeoutError):
    """Code 14: a load passed ``fail_safe.hard_timeout`` and no stale copy
    could stand in, or (write-behind) ``flush`` passed
    ``outbox.flush_timeout`` with writes still pending."""

@final
class _NotFound:
    """The type of :data:`NOT_FOUND`."""

NOT_FOUND: Final[_NotFound]
"""A loader's answer for a key its source does not have."""

class Loaded(Generic[_L_co]):
    """A loader's answer with its own TTL (seconds) and tags."""

    value: _L_co
    ttl: float | None
    tags: Iterable[str] | None
    def __init__(self, value: _L_co, ttl: float | None = None, tags: Iterable[str] | None = None) -> None: ...

_Answer: TypeAlias = _V | Loaded[_V] | _NotFound
"""What a loader returns: the value, a :class:`Loaded`, or :data:`NOT_FOUND`."""

_Loader: TypeAlias = Callable[[str], _Answer[_V]] | Callable[[], _Answer[_V]]
"""A ``get_or_load`` loader: called with the key if it takes an argument."""

_ManyLoader: TypeAlias = Callable[[list[str]], Mapping[str, _Answer[_V]]]
"""A ``get_or_load_many`` loader: the missing keys in, a dict out."""

_AsyncLoader: TypeAlias = Callable[[str], Awaitable[_Answer[_V]]] | Callable[[], Awaitable[_Answer[_V]]]
_AsyncManyLoader: TypeAlias = Callable[[list[str]], Awaitable[Mapping[str, _Answer[_V]]]]

class _SourceObject(Protocol):
    def load(self, key: str, /) -> Any: ...

class _WritableSource(Protocol):
    """A source that also writes (write-through, write-behind):
    ``store(key, value)`` gets the stored bytes (JSON text for values set
    as Python objects), ``remove(key)`` the key; each is also handed the
    write's ``idempotency_key=`` (a ``str``, the same on every retry of
    one write) when it has a parameter of that name or ``**kwargs``. Their
    return value is ignored; raising fails the attempt. Coroutine functions
    work too."""

    def load(self, key: str, /) -> Any: ...
    @property
    def store(self) -> Callable[..., Any]: ...
    @property
    def remove(self) -> Callable[..., Any]: ...

_Source: TypeAlias = Callable[[str], Any] | _SourceObject | _WritableSource
"""A configured source: ``source(key)`` or an object with ``load(key)``
(read-only), or an object with ``load``, ``store`` and ``remove``
(writable); ``load`` answers like a loader (coroutines allowed)."""

class Lookup(NamedTuple, Generic[_L_co]):
    """A value found by ``lookup``, with where it came from."""

    value: _L_co
    tier: _Tier
    stale: bool
    age: float
    """Seconds since the value was written."""

class MemoryConfig(TypedDict, total=False):
    enabled: bool
    max_bytes: int
    ttl: float

class SqliteConfig(TypedDict, total=False):
    enabled: bool
    path: str | os.PathLike[str] | None
    max_bytes: int
    ttl: float
    coherence_interval: float
    on_corrupt: Literal["rebuild", "fail"]
    """A damaged cache file: ``"rebuild"`` (default) sets it aside as
    ``<name>.corrupt-<unix time>`` and starts a fresh one; ``"fail"`` raises
    :class:`CorruptError` and touches nothing."""

class FailSafeConfig(TypedDict, total=False):
    max_stale: float
    soft_timeout: float
    hard_timeout: float

class CircuitBreakerConfig(TypedDict, total=False):
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
    """One route: ``key`` with ``{name}`` placeholders, and either ``path``
    (a file) or ``listing`` (a directory's names as a JSON array)."""

    key: str
    owner: str
    repo: str
    ref: str
    path: str
    listing: str
    suffix: str
    items: str
    only: Mapping[str, list[str]]

class GitHubConfig(TypedDict, total=False):
    enabled: bool
    token: str | None
    """Sent to ``api_url`` only; never logged, shown or stored."""
    api_url: str
    raw_url: str
    timeout: float
    max_body_bytes: int
    routes: str | list[GitHubRoute]
    """A preset's name (``"shadcn-v4"``) or a list of routes."""

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
    source. ``url`` is required."""

    url: str
    """``redis://[user][:password@]host[:port][/db]`` (or ``rediss://``,
    ``redis+unix://``, ``unix://``); the password never shows."""
    prefix: str
    """Put before every key in Redis (default ``"tierstack:<namespace>:"``)."""
    timeout: float
    """A Redis call slower than this counts as a failure (default 0.25)."""
    ttl: float | None
    """The longest time a key lives in Redis (default: the entry's own)."""
    backplane: bool
    """Carry every change to the other machines through a Redis Stream
    (default ``True``)."""
    backplane_max_len: int
    """About how many changes the stream keeps (default 100000; 100 to
    100,000,000)."""
    enabled: bool

_Strategy: TypeAlias = Literal["read-through", "cache-aside", "write-through", "write-behind"]

class Config(TypedDict, total=False):
    namespace: str
    memory: MemoryConfig
    sqlite: SqliteConfig
    fail_safe: FailSafeConfig
    circuit_breaker: CircuitBreakerConfig
    negative_ttl: float
    refresh_ahead: float
    ttl_jitter: float
    github: GitHubConfig
    strategy: _Strategy
    """How writes reach the source (default ``"read-through"``)."""
    outbox: OutboxConfig
    redis: RedisConfig
    test_clock: bool
    """Test only: read time from this process's test clock, which stands
    still until :func:`advance_test_clock` moves it (default ``False``)."""

class TierStats(TypedDict):
    tier: _Tier
    hits: int
    misses: int
    avg_time_us: float
    evictions: int
    entries: int
    bytes: int
    max_bytes: int

class RateLimit(TypedDict):
    limit: int | None
    remaining: int
    reset_at_ms: int | None
    """Milliseconds since the epoch."""

class SourceStats(TypedDict):
    requests: int
    successes: int
    failures: int
    timeouts: int
    not_found: int
    rejected: int
    coalesced: int
    coalesced_processes: int
    coalesced_machines: int
    """Loads left to another machine sharing Redis, read from Redis."""
    stale_served: int
    negative_hits: int
    refreshes: int
    rate_limit: RateLimit | None
    """GitHub's ``X-RateLimit-*`` figures, shared through the file."""

class BreakerStatus(TypedDict):
    state: Literal["closed", "open", "half-open"]
    failure_count: int
    allows_request: bool
    last_failure_at: float | None
    """Seconds since the epoch."""
    next_attempt_at: float | None
    """Seconds since the epoch; ``None`` unless open (and not by hand)."""
    trips: int

class OutboxStats(TypedDict):
    """The write-behind outbox, from :meth:`Cache.outbox_stats` and in
    ``stats()["outbox"]``."""

    durable: bool
    """Whether it is in the L2 file (survives a crash); ``False`` without one."""
    pending: int
    """Writes waiting for the source (of every process on the file)."""
    oldest_age: float | None
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
    op: Literal["store", "remove"]
    attempts: int
    last_error: str
    """The last attempt's error, ``"source: <what the source raised>"``."""
    failed_at: float
    """When it gave up, in seconds since the epoch."""

class BackplaneStats(TypedDict):
    """``stats()["redis"]["backplane"]``."""

    connected: bool
    sent: int
    received: int
    replayed: int
    """Of ``received``, those read on reconnecting."""
    resyncs: int
    """Times memory and the file were emptied: the stream no longer held
    every change missed."""
    deferred: int
    lag_ms: int
    max_lag_ms: int

class RedisStats(TypedDict):
    """``stats()["redis"]``."""

    errors: int
    skipped: int
    breaker: BreakerStatus
    backplane: BackplaneStats | None
    """``None`` when ``redis.backplane`` is off."""

class Stats(TypedDict):
    hits: int
    misses: int
    hit_rate: float
    sets: int
    deletes: int
    invalidations: int
    resyncs: int
    tiers: list[TierStats]
    sqlite_rebuilds: int
    """Times the SQLite file was found damaged, set aside as
    ``<name>.corrupt-<unix time>`` and replaced by a fresh one."""
    sqlite_reopens: int
    """Times the SQLite file was found deleted or replaced on disk and the
    file now at its path was opened."""
    not_stored: int
    """Loaded values answered but too large for any tier to store."""
    source: SourceStats
    breaker: BreakerStatus
    outbox: OutboxStats | None
    """``None`` unless the strategy is write-behind."""
    redis: RedisStats | None
    """``None`` without a ``redis`` section."""

class Cache:
    """A cache: L1 in this process's memory over an L2 SQLite file."""

    @overload
    def __init__(
        self, config: Config | None = None, /, *, source: _Source | None = None, **options: Unpack[Config]
    ) -> None: ...
    @overload
    def __init__(self, *, config: Config | None, source: _Source | None = None, **options: Unpack[Config]) -> None: ...
    def get(self, key: str, default: Any = None) -> Any:
        """The value decoded from JSON (shared: do not mutate it), or
        ``default`` on a miss."""
    @overload
    def get_bytes(self, key: str) -> bytes | None: ...
    @overload
    def get_bytes(self, key: str, default: _T) -> bytes | _T: ...
    def lookup(self, key: str) -> Lookup[Any] | None: ...
    def lookup_bytes(self, key: str) -> Lookup[bytes] | None: ...
    def get_or_load(self, key: str, loader: _Loader[_V], ttl: float | None = None) -> _V | None:
        """The value of ``key``; on a miss, ``loader(key)``'s (or
        ``loader()``'s) answer, stored with ``ttl`` (as in :meth:`set`);
        ``None`` for :data:`NOT_FOUND`. One call per key for concurrent
        threads and processes. A bad key or ``ttl`` raises before ``loader``
        is called; ``loader`` raising raises :class:`SourceError`."""
    def get_or_load_bytes(self, key: str, loader: _Loader[Any], ttl: float | None = None) -> bytes | None: ...
    def get_or_load_many(
        self, keys: Iterable[str], loader: _ManyLoader[_V], ttl: float | None = None
    ) -> dict[str, _V]:
        """The found keys' values; the keys missing everywhere go to one
        ``loader(missing)`` call, which returns a dict (a key left out is
        not found)."""
    def get_or_load_many_bytes(
        self, keys: Iterable[str], loader: _ManyLoader[Any], ttl: float | None = None
    ) -> dict[str, bytes]: ...
    def set(
        self, key: str, value: _Value, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """``ttl`` in seconds (fractions allowed): ``None`` or ``0`` takes the
        tier defaults; a negative, NaN or infinite ``ttl``, or one over 100
        years, raises :class:`InvalidArgumentError` and stores nothing."""
    def mset(
        self,
        mapping: Mapping[str, _Value],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Stores every item in one transaction; ``ttl`` as in :meth:`set`.
        One bad key, value or ``ttl`` stores nothing."""
    def mget(self, keys: Iterable[str]) -> dict[str, Any]: ...
    def mget_bytes(self, keys: Iterable[str]) -> dict[str, bytes]: ...
    def has(self, key: str) -> bool: ...
    def __contains__(self, key: str) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def keys(self, pattern: str | None = None) -> list[str]:
        """Fresh keys matching a glob (``*`` only; ``None`` for all), sorted."""
    def len(self) -> int: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> Literal[True]: ...
    def clear(self) -> None: ...
    def invalidate_tag(self, tag: str) -> int: ...
    def flush(self) -> None:
        """Returns once every acknowledged write is durable in the file and,
        with write-behind, the outbox is empty (dead letters do not count);
        :class:`TimeoutError` past ``outbox.flush_timeout``."""
    def stats(self) -> Stats: ...
    def outbox_stats(self) -> OutboxStats | None:
        """``None`` unless the strategy is write-behind."""
    def dead_letters(self) -> list[DeadLetter]:
        """The writes that gave up after ``outbox.max_attempts``, oldest first."""
    def retry_dead_letters(self) -> int:
        """Queues every dead letter again (attempts reset; one whose key was
        written since is dropped); how many were queued."""
    def purge_dead_letters(self) -> int:
        """Deletes every dead letter; how many there were."""
    def breaker_status(self) -> BreakerStatus:
        """The circuit breaker guarding the source and every loader."""
    def breaker_open(self) -> None: ...
    def breaker_close(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]: ...

class AsyncCache:
    """A :class:`Cache` for asyncio: the same methods, as coroutines."""

    @overload
    def __init__(
        self, config: Config | None = None, /, *, source: _Source | None = None, **options: Unpack[Config]
    ) -> None: ...
    @overload
    def __init__(self, *, config: Config | None, source: _Source | None = None, **options: Unpack[Config]) -> None: ...
    async def get(self, key: str, default: Any = None) -> Any: ...
    @overload
    async def get_bytes(self, key: str) -> bytes | None: ...
    @overload
    async def get_bytes(self, key: str, default: _T) -> bytes | _T: ...
    async def lookup(self, key: str) -> Lookup[Any] | None: ...
    async def lookup_bytes(self, key: str) -> Lookup[bytes] | None: ...
    @overload
    async def get_or_load(self, key: str, loader: _AsyncLoader[_V], ttl: float | None = None) -> _V | None: ...
    @overload
    async def get_or_load(self, key: str, loader: _Loader[_V], ttl: float | None = None) -> _V | None: ...
    async def get_or_load_bytes(
        self, key: str, loader: _AsyncLoader[Any] | _Loader[Any], ttl: float | None = None
    ) -> bytes | None: ...
    @overload
    async def get_or_load_many(
        self, keys: Iterable[str], loader: _AsyncManyLoader[_V], ttl: float | None = None
    ) -> dict[str, _V]: ...
    @overload
    async def get_or_load_many(
        self, keys: Iterable[str], loader: _ManyLoader[_V], ttl: float | None = None
    ) -> dict[str, _V]: ...
    async def get_or_load_many_bytes(
        self, keys: Iterable[str], loader: _AsyncManyLoader[Any] | _ManyLoader[Any], ttl: float | None = None
    ) -> dict[str, bytes]: ...
    async def set(
        self, key: str, value: _Value, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None: ...
    async def mset(
        self,
        mapping: Mapping[str, _Value],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None: ...
    async def mget(self, keys: Iterable[str]) -> dict[str, Any]: ...
    async def mget_bytes(self, keys: Iterable[str]) -> dict[str, bytes]: ...
    async def has(self, key: str) -> bool: ...
    async def delete(self, key: str) -> bool: ...
    async def keys(self, pattern: str | None = None) -> list[str]: ...
    async def len(self) -> int: ...
    async def clear(self) -> None: ...
    async def invalidate_tag(self, tag: str) -> int: ...
    async def flush(self) -> None: ...
    async def stats(self) -> Stats: ...
    async def outbox_stats(self) -> OutboxStats | None: ...
    async def dead_letters(self) -> list[DeadLetter]: ...
    async def retry_dead_letters(self) -> int: ...
    async def purge_dead_letters(self) -> int: ...
    async def breaker_status(self) -> BreakerStatus: ...
    async def breaker_open(self) -> None: ...
    async def breaker_close(self) -> None: ...
    async def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

def advance_test_clock(seconds: float) -> None:
    """Test only: moves this process's test clock forward by ``seconds``;
    the caches opened with ``test_clock=True`` read their time from it, so
    a test passes a TTL, a negative TTL, a stale window or a breaker timeout
    without sleeping. A negative, NaN or infinite number, or one over 100
    years, raises :class:`InvalidArgumentError`."""
