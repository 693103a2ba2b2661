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

Errors. Every error the engine reports is a :class:`Error` with a stable
``kind`` and ``code``, raised as the subclass of that kind. An argument of
the wrong Python type (a key that is not a ``str``, a ``ttl`` that is not a
number) raises ``TypeError``.
"""

import asyncio
import inspect
import json
import os
import threading
from collections.abc import Mapping
from typing import Any, List, NamedTuple, TypedDict, Union

from ._native import Cache as _NativeCache
from ._native import _check_ttl
from ._native import __version__

__all__ = [
    "AsyncCache",
    "Cache",
    "ClosedError",
    "Config",
    "CorruptError",
    "Error",
    "FailSafeConfig",
    "IncompatibleError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "IoError",
    "Lookup",
    "MemoryConfig",
    "ReadOnlyError",
    "SqliteConfig",
    "Stats",
    "StorageError",
    "TierStats",
    "__version__",
]


class Error(Exception):
    """Any error tierstack reports.

    ``kind`` is the stable snake_case name of the error kind (``"invalid_key"``)
    and ``code`` its stable number (1-11), the same in every host.
    """

    kind: str
    code: int


class InvalidKeyError(Error, ValueError):
    """A key is empty, longer than 255 bytes, holds a control character, or
    holds lone surrogates (not valid Unicode)."""

    kind = "invalid_key"
    code = 1


class InvalidConfigError(Error, ValueError):
    """A config is malformed: unknown key, wrong type, out-of-range value, no
    tier enabled, or not expressible as JSON."""

    kind = "invalid_config"
    code = 2


class InvalidArgumentError(Error, ValueError):
    """An argument other than a key or config is unusable: a NaN, infinite or
    over-long TTL, a bad tag or glob pattern, a value larger than the L2
    budget."""

    kind = "invalid_argument"
    code = 3


class ClosedError(Error):
    """The cache was closed."""

    kind = "closed"
    code = 4


class StorageError(Error):
    """SQLite failed (busy past the timeout, disk full, ...)."""

    kind = "storage"
    code = 5


class IoError(Error):
    """The file system refused something: the cache file or its directory
    cannot be created or read, or the path is a directory. The message
    carries the operating system's reason."""

    kind = "io"
    code = 6


class CorruptError(Error):
    """The cache file is not a database, is damaged, or belongs to another
    program. It is left untouched."""

    kind = "corrupt"
    code = 7


class IncompatibleError(Error):
    """The cache file was written by a newer tierstack. It is left untouched."""

    kind = "incompatible"
    code = 8


class InternalError(Error):
    """A bug in tierstack."""

    kind = "internal"
    code = 9


class InvalidValueError(Error, ValueError):
    """A value JSON cannot encode was given, or stored bytes that are not
    UTF-8 JSON were read as JSON. What is stored is unchanged."""

    kind = "invalid_value"
    code = 10


class ReadOnlyError(Error):
    """The cache file may be read but not written (a read-only file system,
    directory or file mode): it was opened read-only, reads are served, and
    every write raises this."""

    kind = "read_only"
    code = 11


class Lookup(NamedTuple):
    """A value found by ``lookup``, with where it came from."""

    value: Any
    """The value: decoded JSON from ``lookup``, bytes from ``lookup_bytes``."""
    tier: str
    """The tier that served it: ``"memory"`` or ``"sqlite"``."""
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
    """``fail_safe``: how long expired copies are kept."""

    max_stale: float


class Config(TypedDict, total=False):
    """The config, in the JSON spelling; every key is optional. Durations
    are seconds."""

    namespace: str
    memory: MemoryConfig
    sqlite: SqliteConfig
    fail_safe: FailSafeConfig


class TierStats(TypedDict):
    """The counters of one tier, from :meth:`Cache.stats`."""

    tier: str
    hits: int
    misses: int
    avg_time_us: float
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


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


_MISSING: Any = object()
# Read codes of ``_memory_get``.
_GET, _GET_BYTES, _LOOKUP, _LOOKUP_BYTES = 0, 1, 2, 3


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


class _Flight:
    """One load of a key that concurrent ``get_or_load`` callers share."""

    __slots__ = ("pid", "done", "value", "error")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.done = threading.Event()
        self.value: Any = None
        self.error: Any = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class Cache(_NativeCache):
    """A cache: L1 in this process's memory over an L2 SQLite file.

    ``Cache(config=None, /, **options)``: ``config`` is a dict in the JSON
    config's spelling (``{"memory": {"max_bytes": 8_388_608}, "sqlite":
    {"path": "/tmp/c.db"}}``) and ``options`` are top-level keys of it merged
    over ``config`` (nested dicts merge key by key). ``sqlite.path`` may be a
    ``str`` or an ``os.PathLike``. A bad config raises
    :class:`InvalidConfigError`; a ``config`` that is not a dict,
    ``TypeError``.

    Use it as a context manager to close it on exit.
    """

    __slots__ = ("_flights",)

    def __new__(cls, config: Any = None, /, **options: Any) -> "Cache":
        self = super().__new__(cls, _config_json(config, options))
        self._flights = {}
        return self

    def __init__(self, config: Any = None, /, **options: Any) -> None:
        """The cache is opened by ``__new__``, which takes these arguments."""

    def get_or_load(self, key: str, loader: Any, ttl: Any = None) -> Any:
        """The value of ``key``; on a miss, ``loader()``'s value, stored with
        ``ttl`` (as in :meth:`set`) and returned.

        Threads asking for the same key while it loads share one call of
        ``loader`` and its result (or its exception). For JSON values: the
        value returned on a hit is the stored value decoded. A bad ``ttl``
        raises as in :meth:`set`, hit or miss, before ``loader`` is called.
        """
        _check_ttl(ttl)
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        flight = _Flight()
        current = self._flights.setdefault(key, flight)
        if current is not flight:
            if current.pid == flight.pid:
                return current.wait()
            # Inherited from the parent across a fork mid-load: load here.
            self._flights[key] = flight
        try:
            value = loader()
            self.set(key, value, ttl)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.value = value
            flight.done.set()
        return value

    def breaker_status(self) -> None:
        """``None``: no source is configured, so no breaker guards one."""
        return None


def _off_loop(fn: Any, *args: Any) -> Any:
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _retrieve(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled():
        task.exception()


class AsyncCache:
    """A :class:`Cache` for asyncio: the same methods, as coroutines.

    A read answered from L1's kept values completes on the event loop; every
    call that may reach the SQLite file runs in the loop's default executor
    (a thread pool), without the GIL while it waits. Opening (the
    constructor) touches the file once, synchronously.
    """

    __slots__ = ("_cache", "_loads")

    def __init__(self, config: Any = None, /, **options: Any) -> None:
        self._cache = Cache(config, **options)
        self._loads: dict = {}

    def __repr__(self) -> str:
        return f"<AsyncCache {self._cache!r}>"

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` decoded from JSON, or ``default`` on a miss."""
        value = self._cache._memory_get(key, _GET, _MISSING)
        if value is _MISSING:
            return await _off_loop(self._cache.get, key, default)
        return value

    async def get_bytes(self, key: str, default: Any = None) -> Any:
        """The stored bytes of ``key``, or ``default`` on a miss."""
        value = self._cache._memory_get(key, _GET_BYTES, _MISSING)
        if value is _MISSING:
            return await _off_loop(self._cache.get_bytes, key, default)
        return value

    async def lookup(self, key: str) -> Any:
        """A :class:`Lookup` of ``key`` (decoded value), or ``None``."""
        found = self._cache._memory_get(key, _LOOKUP, _MISSING)
        if found is _MISSING:
            return await _off_loop(self._cache.lookup, key)
        return found

    async def lookup_bytes(self, key: str) -> Any:
        """A :class:`Lookup` of ``key`` whose value is the stored bytes, or ``None``."""
        found = self._cache._memory_get(key, _LOOKUP_BYTES, _MISSING)
        if found is _MISSING:
            return await _off_loop(self._cache.lookup_bytes, key)
        return found

    async def get_or_load(self, key: str, loader: Any, ttl: Any = None) -> Any:
        """The value of ``key``; on a miss, the value of ``loader()`` (awaited
        if it is awaitable), stored with ``ttl`` and returned.

        Tasks asking for the same key while it loads share one load; a task
        cancelled while waiting does not cancel the load for the others. A
        plain function loader runs on the event loop. A bad ``ttl`` raises as
        in :meth:`Cache.set`, hit or miss, before ``loader`` is called.
        """
        _check_ttl(ttl)
        value = await self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        loop = asyncio.get_running_loop()
        task = self._loads.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._load(key, loader, ttl))
            task.add_done_callback(_retrieve)
            self._loads[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: str, loader: Any, ttl: Any) -> Any:
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
            await self.set(key, value, ttl)
            return value
        finally:
            if self._loads.get(key) is asyncio.current_task():
                del self._loads[key]

    async def set(self, key: str, value: Any, ttl: Any = None, tags: Any = None) -> None:
        """Stores ``value`` under ``key``; see :meth:`Cache.set`."""
        await _off_loop(self._cache.set, key, value, ttl, tags)

    async def mget(self, keys: Any) -> Any:
        """The decoded values of the found keys among ``keys``, in their order."""
        listed, found, complete = self._cache._mget_memory(keys, False)
        if complete:
            return found
        return await _off_loop(self._cache._mget_tiers, listed, found, False)

    async def mget_bytes(self, keys: Any) -> Any:
        """The stored bytes of the found keys among ``keys``, in their order."""
        listed, found, complete = self._cache._mget_memory(keys, True)
        if complete:
            return found
        return await _off_loop(self._cache._mget_tiers, listed, found, True)

    async def mset(self, mapping: Any, ttl: Any = None, tags: Any = None) -> None:
        """Stores every item of ``mapping``; see :meth:`Cache.mset`."""
        await _off_loop(self._cache.mset, mapping, ttl, tags)

    async def has(self, key: str) -> bool:
        """Whether ``key`` holds a fresh value; not counted as a read."""
        return await _off_loop(self._cache.has, key)

    async def delete(self, key: str) -> bool:
        """Removes ``key``; whether it held a fresh value."""
        return await _off_loop(self._cache.delete, key)

    async def keys(self, pattern: Any = None) -> Any:
        """The fresh keys matching a glob (``*`` only; ``None`` for all), sorted."""
        return await _off_loop(self._cache.keys, pattern)

    async def len(self) -> int:
        """How many fresh keys the cache holds."""
        return await _off_loop(self._cache.len)

    async def clear(self) -> None:
        """Removes every entry from every tier."""
        await _off_loop(self._cache.clear)

    async def invalidate_tag(self, tag: str) -> int:
        """Removes every entry written with ``tag``; how many fresh ones went."""
        return await _off_loop(self._cache.invalidate_tag, tag)

    async def flush(self) -> None:
        """Returns once every acknowledged write is durable in the file."""
        await _off_loop(self._cache.flush)

    async def stats(self) -> Any:
        """The engine's counters (no I/O: completes on the loop)."""
        return self._cache.stats()

    async def breaker_status(self) -> None:
        """``None``: no source is configured, so no breaker guards one."""
        return None

    async def close(self) -> None:
        """Closes the cache; later calls raise :class:`ClosedError`."""
        await _off_loop(self._cache.close)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._cache.closed

    async def __aenter__(self) -> "AsyncCache":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
