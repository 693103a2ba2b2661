"""Write strategies and the outbox against a real store: tierstack-origin's
``<api>/store``, written by a source that does HTTP ``PUT`` and ``DELETE``
with urllib and the write's ``Idempotency-Key`` (origin.OriginStore). Every
test checks the origin's own counts (``GET /_origin/deliveries``): writes
applied, attempts, duplicates."""

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import tierstack
from origin import Origin, OriginStore

QUICK = {"retry_base": 0.01, "retry_max": 0.05, "max_attempts": 3}


@pytest.fixture
def origin(origin_process: Origin) -> Origin:
    """The origin, reset: an empty store, no deliveries, no write faults."""
    origin_process.post("reset")
    return origin_process


@pytest.fixture
def open_cache(db_path: str) -> Iterator[Callable[..., tierstack.Cache]]:
    """``open_cache(strategy, source, **config)``: a cache on the test's
    file with quick retries; closed at the end."""
    opened: List[tierstack.Cache] = []

    def open_one(strategy: str, source: Any, **config: Any) -> tierstack.Cache:
        config.setdefault("sqlite", {"path": db_path})
        config["outbox"] = {**QUICK, **config.get("outbox", {})}
        cache = tierstack.Cache(config, strategy=strategy, source=source)
        opened.append(cache)
        return cache

    yield open_one
    for cache in opened:
        cache.close()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def applied(origin: Origin) -> List[Tuple[str, Optional[str]]]:
    """The writes the origin applied, as ``(key, value)``, sorted (writes of
    different keys are delivered concurrently, in no order)."""
    return sorted((d["key"], d["value"]) for d in origin.deliveries()["deliveries"])


def counts(origin: Origin) -> Tuple[int, int, int]:
    """The origin's ``(count, attempts, duplicates)``."""
    found = origin.deliveries()
    return found["count"], found["attempts"], found["duplicates"]


def test_write_behind_delivers_every_write_once_on_flush(origin: Origin, open_cache: Any, tmp_path: Path) -> None:
    cache = open_cache("write-behind", OriginStore(origin.store))
    for i in range(5):
        cache.set(f"k{i}", {"n": i})
    cache.set("raw", b"\x00\xff")
    assert cache.delete("gone") is False
    # Acknowledged at once, from memory.
    found = cache.lookup("k0")
    assert found is not None and (found.value, found.tier, found.stale) == ({"n": 0}, "memory", False)
    cache.flush()
    assert counts(origin) == (7, 7, 0)
    assert applied(origin) == [("gone", None)] + [(f"k{i}", json.dumps({"n": i}, separators=(",", ":"))) for i in range(5)] + [("raw", None)]
    raw = [d for d in origin.deliveries()["deliveries"] if d["key"] == "raw"]
    assert raw[0]["value_base64"] == "AP8="
    ids = {d["idempotency_key"] for d in origin.deliveries()["deliveries"]}
    assert len(ids) == 7 and "" not in ids
    expected = {"durable": True, "pending": 0, "oldest_age": None, "retrying": 0, "retries": 0, "delivered": 7, "dead": 0}
    assert cache.outbox_stats() == expected
    assert cache.stats()["outbox"] == expected
    assert cache.dead_letters() == []
    # The store is the source of truth: another cache reads it back.
    with tierstack.Cache(sqlite={"path": str(tmp_path / "other.db")}, source=OriginStore(origin.store)) as other:
        assert other.get("k3") == {"n": 3}
        assert other.get_bytes("raw") == b"\x00\xff"
        assert other.get("gone") is None


def test_write_through_failure_raises_source_error_and_keeps_the_old_value(origin: Origin, open_cache: Any) -> None:
    cache = open_cache("write-through", OriginStore(origin.store))
    cache.set("k", "old")
    origin.post("fail_writes", {"count": 1, "status": 500})
    with pytest.raises(tierstack.SourceError) as raised:
        cache.set("k", "new")
    assert str(raised.value) == "store raised HTTPError: HTTP Error 500: Internal Server Error"
    assert raised.value.__cause__ is not None and getattr(raised.value.__cause__, "code", None) == 500
    assert cache.get("k") == "old"
    assert counts(origin) == (1, 2, 0)
    cache.set("k", "new")
    assert cache.get("k") == "new"
    assert [(d["key"], d["value"]) for d in origin.deliveries()["deliveries"]] == [("k", '"old"'), ("k", '"new"')]
    assert counts(origin) == (2, 3, 0)
    # No outbox for write-through.
    assert cache.outbox_stats() is None
    assert cache.stats()["outbox"] is None


def test_a_source_failing_then_recovering_gets_each_write_once(origin: Origin, open_cache: Any) -> None:
    origin.post("fail_writes", {"count": 2, "status": 503})
    cache = open_cache("write-behind", OriginStore(origin.store))
    cache.set("a", "1")
    cache.set("b", "2")
    cache.delete("c")
    cache.flush()
    assert applied(origin) == [("a", '"1"'), ("b", '"2"'), ("c", None)]
    assert counts(origin) == (3, 3 + 2, 0)
    stats = cache.outbox_stats()
    assert stats is not None
    assert (stats["pending"], stats["retries"], stats["delivered"], stats["dead"]) == (0, 2, 3, 0)


def test_a_source_always_failing_ends_in_dead_letters_which_are_retried(origin: Origin, open_cache: Any) -> None:
    origin.post("fail_writes", {"status": 503})
    cache = open_cache("write-behind", OriginStore(origin.store))
    before = time.time()
    cache.set("a", "1")
    cache.delete("b")
    wait_for(lambda: cache.outbox_stats()["dead"] == 2)
    dead = sorted(cache.dead_letters(), key=lambda d: d["key"])
    error = "source: {} raised HTTPError: HTTP Error 503: Service Unavailable"
    assert [{**d, "failed_at": 0} for d in dead] == [
        {"key": "a", "op": "store", "attempts": 3, "last_error": error.format("store"), "failed_at": 0},
        {"key": "b", "op": "remove", "attempts": 3, "last_error": error.format("remove"), "failed_at": 0},
    ]
    assert all(before <= d["failed_at"] <= time.time() for d in dead)
    assert cache.outbox_stats() == {"durable": True, "pending": 0, "oldest_age": None, "retrying": 0, "retries": 6, "delivered": 0, "dead": 2}
    assert counts(origin) == (0, 6, 0)
    cache.flush()  # dead letters are not waited for

    origin.post("clear_write_faults")
    assert cache.retry_dead_letters() == 2
    cache.flush()
    assert applied(origin) == [("a", '"1"'), ("b", None)]
    assert counts(origin) == (2, 8, 0)
    assert cache.dead_letters() == []
    stats = cache.outbox_stats()
    assert stats is not None and (stats["dead"], stats["delivered"]) == (0, 2)
    assert cache.retry_dead_letters() == 0

    origin.post("fail_writes", {"status": 500})
    cache.set("c", "3")
    wait_for(lambda: cache.outbox_stats()["dead"] == 1)
    assert cache.purge_dead_letters() == 1
    assert cache.dead_letters() == []
    assert cache.purge_dead_letters() == 0
    assert counts(origin) == (2, 11, 0)


def test_flush_times_out_while_a_write_is_pending(origin: Origin, open_cache: Any) -> None:
    origin.post("fail_writes", {"status": 500})
    cache = open_cache(
        "write-behind",
        OriginStore(origin.store),
        outbox={"max_attempts": 1000, "flush_timeout": 0.2},
        test_clock=True,
    )
    cache.set("k", "v")
    wait_for(lambda: cache.outbox_stats()["retrying"] == 1)
    stats = cache.outbox_stats()
    assert stats is not None and (stats["pending"], stats["dead"], stats["oldest_age"]) == (1, 0, 0.0)
    tierstack.advance_test_clock(2.5)
    assert cache.outbox_stats()["oldest_age"] == 2.5
    with pytest.raises(tierstack.TimeoutError):
        cache.flush()
    origin.post("clear_write_faults")
    tierstack.advance_test_clock(0.05)  # retry_max: the next attempt is due
    cache.flush()
    assert applied(origin) == [("k", '"v"')]
    assert counts(origin)[2] == 0


def test_a_read_only_source_is_refused_at_open_by_the_writing_strategies(origin: Origin, db_path: str) -> None:
    store = OriginStore(origin.store)

    class LoadOnly:
        def load(self, key: str) -> Any:
            return store.load(key)

    for strategy in ("write-through", "write-behind"):
        for source in (store.load, LoadOnly(), None):
            with pytest.raises(tierstack.InvalidConfigError):
                tierstack.Cache(sqlite={"path": db_path}, strategy=strategy, source=source)
    # A source with store but no remove is not a source at all.
    class StoreOnly(LoadOnly):
        def store(self, key: str, value: bytes) -> None:
            pass

    with pytest.raises(TypeError, match="StoreOnly has store only"):
        tierstack.Cache(sqlite={"path": db_path}, strategy="write-behind", source=StoreOnly())
    assert counts(origin) == (0, 0, 0)


class Recording:
    """A writable source in memory that records its writes as ``(op, key,
    value, idempotency key or None)`` and raises ``ValueError`` for its
    first ``fail`` writes (every write while ``fail`` is negative)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: List[Tuple[str, str, Optional[bytes], Optional[str]]] = []

    def _write(self, op: str, key: str, value: Optional[bytes], idempotency_key: Optional[str]) -> None:
        self.calls.append((op, key, value, idempotency_key))
        if self.fail != 0:
            self.fail -= 1
            raise ValueError(f"disk on fire at {key}")

    def load(self, key: str) -> Any:
        return tierstack.NOT_FOUND


class WithKeys(Recording):
    def store(self, key: str, value: bytes, idempotency_key: str) -> None:
        self._write("store", key, value, idempotency_key)

    def remove(self, key: str, **options: Any) -> None:
        self._write("remove", key, None, options["idempotency_key"])


class WithoutKeys(Recording):
    def store(self, key: str, value: bytes) -> None:
        self._write("store", key, value, None)

    def remove(self, key: str) -> None:
        self._write("remove", key, None, None)


def test_store_and_remove_get_the_idempotency_key_when_they_take_it(open_cache: Any) -> None:
    source = WithKeys(fail=2)
    cache = open_cache("write-behind", source, outbox={"max_attempts": 5})
    cache.set("k", [1, 2])
    cache.flush()
    # One write, three attempts, one idempotency key.
    assert [call[:3] for call in source.calls] == [("store", "k", b"[1,2]")] * 3
    assert len({call[3] for call in source.calls}) == 1 and source.calls[0][3]
    cache.delete("k")
    cache.flush()
    assert source.calls[3][:3] == ("remove", "k", None)
    assert source.calls[3][3] not in (None, source.calls[0][3])

    plain = WithoutKeys()
    other = open_cache("write-through", plain, sqlite={"enabled": False})
    other.set("k", b"v")
    other.delete("k")
    assert plain.calls == [("store", "k", b"v", None), ("remove", "k", None, None)]


def test_a_raising_store_is_retried_then_a_dead_letter_with_its_message(open_cache: Any) -> None:
    source = WithKeys(fail=-1)
    cache = open_cache("write-behind", source)
    cache.set("k", "v")
    cache.delete("j")
    wait_for(lambda: cache.outbox_stats()["dead"] == 2)
    dead = sorted(cache.dead_letters(), key=lambda d: d["key"])
    assert [(d["key"], d["op"], d["attempts"], d["last_error"]) for d in dead] == [
        ("j", "remove", 3, "source: remove raised ValueError: disk on fire at j"),
        ("k", "store", 3, "source: store raised ValueError: disk on fire at k"),
    ]
    assert sorted(call[:2] for call in source.calls) == [("remove", "j")] * 3 + [("store", "k")] * 3
    # Write-through: the caller gets it, caused by the source's exception.
    through = open_cache("write-through", WithKeys(fail=1), sqlite={"enabled": False})
    with pytest.raises(tierstack.SourceError) as raised:
        through.set("k", "v")
    assert str(raised.value) == "store raised ValueError: disk on fire at k"
    assert isinstance(raised.value.__cause__, ValueError)
    assert through.get("k") is None


def test_async_cache_with_coroutine_store_and_remove(origin: Origin, db_path: str) -> None:
    store = OriginStore(origin.store)

    class AsyncStore:
        def __init__(self) -> None:
            self.loops: List[Any] = []

        async def load(self, key: str) -> Any:
            return await asyncio.to_thread(store.load, key)

        async def store(self, key: str, value: bytes, idempotency_key: str) -> None:
            self.loops.append(asyncio.get_running_loop())
            await asyncio.to_thread(store.store, key, value, idempotency_key)

        async def remove(self, key: str, idempotency_key: str) -> None:
            self.loops.append(asyncio.get_running_loop())
            await asyncio.to_thread(store.remove, key, idempotency_key)

    source = AsyncStore()

    async def main() -> None:
        async with tierstack.AsyncCache(sqlite={"path": db_path}, strategy="write-behind", outbox=QUICK, source=source) as cache:
            await cache.set("a", {"x": 1})
            await cache.delete("b")
            await cache.flush()
            assert applied(origin) == [("a", '{"x":1}'), ("b", None)]
            assert await cache.outbox_stats() == {"durable": True, "pending": 0, "oldest_age": None, "retrying": 0, "retries": 0, "delivered": 2, "dead": 0}
            assert (await cache.stats())["outbox"]["delivered"] == 2
            origin.post("fail_writes", {"status": 500})
            await cache.set("c", "3")
            deadline = time.monotonic() + 10
            while (await cache.outbox_stats())["dead"] != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            (dead,) = await cache.dead_letters()
            assert (dead["key"], dead["op"], dead["attempts"]) == ("c", "store", 3)
            origin.post("clear_write_faults")
            assert await cache.retry_dead_letters() == 1
            await cache.flush()
            assert await cache.purge_dead_letters() == 0
            # The coroutines ran on this loop.
            assert set(source.loops) == {asyncio.get_running_loop()}

    asyncio.run(main())
    assert applied(origin) == [("a", '{"x":1}'), ("b", None), ("c", '"3"')]
    assert counts(origin) == (3, 6, 0)


EXIT_WITHOUT_CLOSE = """
import sys, tierstack
sys.path.insert(0, sys.argv[3])
from origin import OriginStore
cache = tierstack.Cache(sqlite={"path": sys.argv[1]}, strategy="write-behind", source=OriginStore(sys.argv[2]))
cache.set("left", "at exit")
print(cache.outbox_stats()["pending"] + cache.outbox_stats()["delivered"])
"""


def test_a_write_behind_cache_left_open_delivers_at_exit(origin: Origin, db_path: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITHOUT_CLOSE, db_path, origin.store, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")
    assert applied(origin) == [("left", '"at exit"')]
    assert counts(origin) == (1, 1, 0)


def test_a_write_behind_cache_dropped_open_delivers_as_close_does(origin: Origin, db_path: str) -> None:
    cache = tierstack.Cache(sqlite={"path": db_path}, strategy="write-behind", source=OriginStore(origin.store))
    cache.set("dropped", "open")
    del cache
    gc.collect()
    assert applied(origin) == [("dropped", '"open"')]
    assert counts(origin) == (1, 1, 0)
