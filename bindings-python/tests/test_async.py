"""tierstack.AsyncCache: every method as a coroutine; L1 hits stay on the loop."""

import asyncio
import concurrent.futures
import time

import pytest

import tierstack


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting the calls sent to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


def slow_source(calls, value, seconds):
    """An async loader that records its calls and answers after ``seconds``."""

    async def fetch():
        calls.append(1)
        await asyncio.sleep(seconds)
        return value

    return fetch


def run(scenario):
    """Runs ``scenario(executor)`` on a new loop whose default executor counts."""

    async def main():
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        return await scenario(executor)

    return asyncio.run(main())


def test_every_method(db_path):
    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            assert await cache.get("doc") is None
            assert await cache.get("doc", "fallback") == "fallback"
            assert await cache.get_bytes("doc") is None
            assert await cache.lookup("doc") is None
            assert await cache.lookup_bytes("doc") is None
            await cache.set("doc", {"name": "card"}, ttl=60, tags=["ui"])
            await cache.set("raw", b"\x00\x01")
            assert await cache.get("doc") == {"name": "card"}
            assert await cache.get_bytes("raw") == b"\x00\x01"
            found = await cache.lookup("doc")
            assert (found.value, found.tier, found.stale) == ({"name": "card"}, "memory", False)
            found = await cache.lookup_bytes("raw")
            assert (found.value, found.tier) == (b"\x00\x01", "memory")
            await cache.mset({"a": 1, "b": [2]}, ttl=60)
            assert await cache.mget(["b", "missing", "a"]) == {"b": [2], "a": 1}
            assert await cache.mget_bytes(["raw", "a"]) == {"raw": b"\x00\x01", "a": b"1"}
            assert await cache.has("a") is True
            assert await cache.delete("a") is True
            assert await cache.delete("a") is False
            assert await cache.has("a") is False
            assert await cache.keys() == ["b", "doc", "raw"]
            assert await cache.keys("d*") == ["doc"]
            assert await cache.len() == 3
            assert await cache.invalidate_tag("ui") == 1
            assert await cache.get("doc") is None
            await cache.flush()
            stats = await cache.stats()
            assert stats["sets"] == 4 and stats["deletes"] == 2
            assert (await cache.breaker_status())["state"] == "closed"
            await cache.clear()
            assert await cache.len() == 0
            assert cache.closed is False
        assert cache.closed is True
        with pytest.raises(tierstack.ClosedError):
            await cache.get("doc")
        await cache.close()

    run(scenario)


def test_l1_hits_complete_on_the_loop_and_the_rest_off_it(db_path):
    async def scenario(executor):
        cache = tierstack.AsyncCache(sqlite={"path": db_path})
        await cache.set("k", {"v": 1})
        assert executor.calls == 1
        await cache.get("k")  # the first read keeps the decoded value
        await cache.get_bytes("k")
        assert executor.calls == 2
        before = executor.calls
        for _ in range(10):
            assert await cache.get("k") == {"v": 1}
            assert await cache.get_bytes("k") == b'{"v":1}'
            assert (await cache.lookup("k")).tier == "memory"
            assert (await cache.lookup_bytes("k")).tier == "memory"
            assert await cache.mget(["k"]) == {"k": {"v": 1}}
            assert await cache.mget_bytes(["k"]) == {"k": b'{"v":1}'}
            await cache.stats()
        assert executor.calls == before
        assert await cache.get("missing") is None
        assert await cache.mget(["k", "missing"]) == {"k": {"v": 1}}
        assert await cache.has("k") is True
        assert executor.calls == before + 3
        await cache.close()

    run(scenario)


def test_values_cross_between_sync_and_async_caches(db_path):
    with tierstack.Cache(sqlite={"path": db_path}) as sync:
        sync.set("from-sync", {"x": 1})

    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            found = await cache.lookup("from-sync")
            assert (found.value, found.tier) == ({"x": 1}, "sqlite")
            assert (await cache.lookup("from-sync")).tier == "memory"
            await cache.set("from-async", [1, 2])

    run(scenario)
    with tierstack.Cache(sqlite={"path": db_path}) as sync:
        assert sync.get("from-async") == [1, 2]


def test_ttl(db_path):
    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}, test_clock=True) as cache:
            await cache.set("short", 1, ttl=0.3)
            await cache.mset({"m": 2}, ttl=0.3)
            tierstack.advance_test_clock(0.299)
            assert await cache.mget(["short", "m"]) == {"short": 1, "m": 2}
            tierstack.advance_test_clock(0.001)
            assert await cache.get("short") is None
            assert await cache.mget(["short", "m"]) == {}

    run(scenario)


def test_get_or_load_with_async_and_plain_loaders(db_path):
    async def scenario(executor):
        calls = []

        async def fetch():
            calls.append("async")
            await asyncio.sleep(0.01)
            return {"fetched": True}

        def compute():
            calls.append("plain")
            return [1, 2, 3]

        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            assert await cache.get_or_load("a", fetch, ttl=60) == {"fetched": True}
            assert await cache.get_or_load("a", fetch) == {"fetched": True}
            assert await cache.get_or_load("p", compute) == [1, 2, 3]
            assert await cache.get_or_load("p", compute) == [1, 2, 3]
            assert calls == ["async", "plain"]
            assert await cache.get_bytes("a") == b'{"fetched":true}'

    run(scenario)


def test_get_or_load_refuses_a_bad_ttl_before_calling_the_loader(db_path):
    async def scenario(executor):
        calls = []

        async def fetch():
            calls.append(1)
            return "loaded"

        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            bad = [
                (-1, tierstack.InvalidArgumentError),
                (float("nan"), tierstack.InvalidArgumentError),
                ("60", TypeError),
            ]
            for ttl, error in bad:
                with pytest.raises(error):
                    await cache.get_or_load("k", fetch, ttl=ttl)
            assert calls == []
            assert await cache.get("k") is None
            assert await cache.get_or_load("k", fetch, ttl=0) == "loaded"
            assert calls == [1]

    run(scenario)


def test_get_or_load_shares_one_load_between_tasks(db_path):
    async def scenario(executor):
        calls = []
        fetch = slow_source(calls, {"from": "source"}, 0.2)
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            results = await asyncio.gather(*(cache.get_or_load("k", fetch) for _ in range(10)))
            assert calls == [1]
            assert results == [{"from": "source"}] * 10

    run(scenario)


def test_get_or_load_failures_reach_every_waiter_and_store_nothing(db_path):
    async def scenario(executor):
        async def failing():
            await asyncio.sleep(0.1)
            raise ConnectionError("source down")

        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            results = await asyncio.gather(*(cache.get_or_load("k", failing) for _ in range(3)), return_exceptions=True)
            assert [type(r) for r in results] == [tierstack.SourceError] * 3
            assert [type(r.__cause__) for r in results] == [ConnectionError] * 3
            assert len({id(r.__cause__) for r in results}) == 1
            assert await cache.has("k") is False
            assert await cache.get_or_load("k", lambda: "recovered") == "recovered"

    run(scenario)


def test_a_cancelled_waiter_does_not_cancel_the_load(db_path):
    async def scenario(executor):
        calls = []
        fetch = slow_source(calls, "value", 0.2)
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            first = asyncio.ensure_future(cache.get_or_load("k", fetch))
            second = asyncio.ensure_future(cache.get_or_load("k", fetch))
            await asyncio.sleep(0.05)
            first.cancel()
            assert await second == "value"
            with pytest.raises(asyncio.CancelledError):
                await first
            assert calls == [1]
            assert await cache.get("k") == "value"

    run(scenario)


def test_errors_are_raised_from_the_coroutines(db_path):
    async def scenario(executor):
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            with pytest.raises(tierstack.InvalidKeyError):
                await cache.get("")
            with pytest.raises(tierstack.InvalidKeyError):
                await cache.set("bad\n", 1)
            with pytest.raises(TypeError):
                await cache.get(1)
            with pytest.raises(tierstack.InvalidValueError):
                await cache.set("k", {1, 2})
            await cache.set("raw", b"\xff")
            with pytest.raises(tierstack.InvalidValueError):
                await cache.get("raw")
            with pytest.raises(tierstack.InvalidArgumentError):
                await cache.set("k", 1, ttl=float("nan"))

    run(scenario)


def test_slow_storage_does_not_block_the_loop(db_path, write_lock):
    """While a write waits for another process's write lock, the loop runs.
    (A delete commits to the file; a set is journaled, and does not wait.)"""

    async def scenario(executor):
        cache = tierstack.AsyncCache(sqlite={"path": db_path})
        await cache.set("k", "v")
        release = write_lock()
        write = asyncio.ensure_future(cache.delete("k"))
        started = time.monotonic()
        ticks = 0
        while time.monotonic() < started + 0.3:
            await asyncio.sleep(0.01)
            ticks += 1
        assert time.monotonic() - started < 2
        assert not write.done()
        assert ticks >= 10
        release()
        assert await write is True
        assert await cache.get("k") is None
        await cache.close()

    run(scenario)
