"""L1 hits of loading reads (plain reads through a source, get_or_load):
counted once, answered with the decoded value kept beside L1, refreshed
ahead through the source or the call's loader, and, in AsyncCache, answered
on the event loop."""

import asyncio
import threading
import time

import pytest

import tierstack
from test_async import run

# Refreshed ahead past half of a 2 s TTL (the test clock moved to 1 s); no
# jitter.
REFRESH = {"refresh_ahead": 0.5, "ttl_jitter": 0, "test_clock": True}


def open_cache(db_path, **options):
    options["sqlite"] = {"path": db_path, **options.get("sqlite", {})}
    return tierstack.Cache(**options)


def counts(cache):
    """(hits, misses, L1 hits, L1 misses, L2 hits, L2 misses, source requests)."""
    stats = cache.stats()
    memory, sqlite = stats["tiers"]
    return (
        stats["hits"],
        stats["misses"],
        memory["hits"],
        memory["misses"],
        sqlite["hits"],
        sqlite["misses"],
        stats["source"]["requests"],
    )


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Versions:
    """A loader or source answering ``{"key": key, "version": n}``, n
    counting its calls (``{"key", "by", "version"}`` if it has a name)."""

    def __init__(self, name=None) -> None:
        self.name = name
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, key):
        with self.lock:
            self.calls += 1
            if self.name is None:
                return {"key": key, "version": self.calls}
            return {"key": key, "by": self.name, "version": self.calls}


def test_reads_through_a_source_count_each_read_once(db_path):
    source = Versions()
    with open_cache(db_path, source=source) as cache:
        assert cache.get("a") == {"key": "a", "version": 1}  # loaded
        assert counts(cache) == (0, 1, 0, 1, 0, 1, 1)
        first = cache.get("a")  # L1 hit: decoded and kept
        assert first == {"key": "a", "version": 1}
        assert counts(cache) == (1, 1, 1, 1, 0, 1, 1)
        assert cache.get("a") is first  # L1 hit: the kept object
        assert cache.get_bytes("a") == b'{"key":"a","version":1}'
        found = cache.lookup("a")
        assert (found.value, found.tier, found.stale) == (first, "memory", False)
        assert found.value is first
        assert counts(cache) == (4, 1, 4, 1, 0, 1, 1)
        assert cache.mget(["a", "b"]) == {"a": first, "b": {"key": "b", "version": 2}}
        assert counts(cache) == (5, 2, 5, 2, 0, 2, 2)
        assert source.calls == 2


def test_an_async_cache_counts_each_read_through_a_source_once(db_path):
    source = Versions()

    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}, source=source) as cache:
            assert await cache.get("a") == {"key": "a", "version": 1}
            assert executor.calls == 1
            first = await cache.get("a")
            assert await cache.get("a") is first
            assert executor.calls == 1
            assert counts(cache._cache) == (2, 1, 2, 1, 0, 1, 1)

    run(scenario)


def test_a_get_or_load_hit_is_counted_once_and_answered_with_the_kept_value(db_path):
    loader = Versions()
    with open_cache(db_path) as cache:
        assert cache.get_or_load("a", loader) == {"key": "a", "version": 1}
        assert counts(cache) == (0, 1, 0, 1, 0, 1, 1)
        first = cache.get_or_load("a", loader)
        assert first == {"key": "a", "version": 1}
        assert cache.get_or_load("a", loader) is first
        assert cache.get("a") is first
        assert cache.get_or_load_bytes("a", loader) == b'{"key":"a","version":1}'
        assert counts(cache) == (4, 1, 4, 1, 0, 1, 1)
        cache.set("s", [1, 2])
        stored = cache.get("s")
        assert cache.get_or_load("s", loader) is stored
        assert loader.calls == 1


def test_a_get_or_load_hit_checks_its_ttl(cache):
    cache.set("k", 1)
    with pytest.raises(tierstack.InvalidArgumentError):
        cache.get_or_load("k", lambda: 2, ttl=-1)
    with pytest.raises(TypeError):
        cache.get_or_load("k", lambda: 2, ttl="60")
    assert cache.get_or_load("k", lambda: 2, ttl=60) == 1


def test_a_get_or_load_hit_due_for_refresh_reloads_through_its_loader(db_path):
    first = Versions("first")
    second = Versions("second")
    with open_cache(db_path, **REFRESH) as cache:
        loaded = cache.get_or_load("k", first, ttl=2.0)
        assert loaded == {"key": "k", "by": "first", "version": 1}
        assert cache.get_or_load("k", second, ttl=2.0) == loaded
        tierstack.advance_test_clock(0.999)
        assert cache.get_or_load("k", second, ttl=2.0) == loaded
        assert second.calls == 0  # not due yet
        tierstack.advance_test_clock(0.001)
        # Due: the hit answers at once and the refresh runs behind it.
        assert cache.get_or_load("k", second, ttl=2.0) == loaded
        # The source's answer is counted before it is stored: wait for the value.
        wait_for(lambda: cache.get("k")["by"] == "second")
        refreshed = cache.get_or_load("k", first)
        assert refreshed == {"key": "k", "by": "second", "version": 1}
        assert cache.get("k") is refreshed
        assert (first.calls, second.calls) == (1, 1)
        assert cache.stats()["source"]["refreshes"] == 1


def test_a_plain_read_due_for_refresh_reloads_through_the_source(db_path):
    source = Versions()
    with open_cache(db_path, source=source, sqlite={"ttl": 2.0}, **REFRESH) as cache:
        assert cache.get("k") == {"key": "k", "version": 1}
        tierstack.advance_test_clock(0.999)
        assert cache.get("k") == {"key": "k", "version": 1}
        assert source.calls == 1  # not due yet
        tierstack.advance_test_clock(0.001)
        assert cache.get("k") == {"key": "k", "version": 1}
        # The source's answer is counted before it is stored: wait for the
        # value in the file, read by a cache of its own (no source, no L1).
        with open_cache(db_path, memory={"enabled": False}, test_clock=True) as file:
            wait_for(lambda: file.get("k") == {"key": "k", "version": 2})
        refreshed = cache.get("k")
        assert refreshed == {"key": "k", "version": 2}
        assert cache.get("k") is refreshed
        assert source.calls == 2
        assert cache.stats()["source"]["refreshes"] == 1


def test_an_async_get_or_load_hit_completes_on_the_loop(db_path):
    loader = Versions()

    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            assert await cache.get_or_load("a", loader) == {"key": "a", "version": 1}
            assert executor.calls == 1
            first = await cache.get_or_load("a", loader)
            assert await cache.get_or_load("a", loader) is first
            assert await cache.get("a") is first
            assert await cache.get_or_load_bytes("a", loader) == b'{"key":"a","version":1}'
            with pytest.raises(tierstack.InvalidArgumentError):
                await cache.get_or_load("a", loader, ttl=-1)
            assert executor.calls == 1
            assert loader.calls == 1
            assert counts(cache._cache) == (4, 1, 4, 1, 0, 1, 1)

    run(scenario)


def test_an_async_hit_due_for_refresh_runs_a_coroutine_loader_on_the_loop(db_path):
    async def scenario(executor):
        calls = []
        caller = threading.get_ident()

        async def fetch(key):
            calls.append(threading.get_ident())
            return {"key": key, "version": len(calls)}

        async with tierstack.AsyncCache(sqlite={"path": db_path}, **REFRESH) as cache:
            assert await cache.get_or_load("k", fetch, ttl=2.0) == {"key": "k", "version": 1}
            tierstack.advance_test_clock(1)
            before = executor.calls
            assert await cache.get_or_load("k", fetch, ttl=2.0) == {"key": "k", "version": 1}
            assert executor.calls == before
            deadline = time.monotonic() + 5
            while (await cache.stats())["source"]["successes"] < 2:
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.01)
            assert await cache.get_or_load("k", fetch) == {"key": "k", "version": 2}
            assert calls == [caller, caller]

    run(scenario)
