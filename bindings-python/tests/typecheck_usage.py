"""Typed use of the tierstack API, checked with ``mypy --strict`` by
tests/run-python (and run by test_typecheck_usage.py).

A ``# type: ignore[code]`` marks a call the stub must refuse: with
``--strict`` (``warn_unused_ignores``), mypy fails if the stub accepts it.
"""

import asyncio
from pathlib import Path
from typing import Any, Callable, Optional

import tierstack


def refuses(call: Callable[[], object], error: type[BaseException]) -> None:
    """Checks at run time that a call the stub refuses also fails."""
    try:
        call()
    except error:
        return
    raise AssertionError("the call succeeded")


def use_sync(directory: Path) -> None:
    config: tierstack.Config = {
        "memory": {"max_bytes": 1 << 20},
        "sqlite": {"path": directory / "sync.db", "coherence_interval": 0.02},
    }
    with tierstack.Cache(config, namespace="typed") as cache:
        cache.set("doc", {"name": "button", "files": ["button.tsx"]}, ttl=60, tags=["ui"])
        cache.set("raw", b"\x00\x01")
        cache.mset({"a": 1, "b": [2, 3]}, ttl=1.5)
        doc: Any = cache.get("doc")
        assert doc["name"] == "button"
        raw: Optional[bytes] = cache.get_bytes("raw")
        assert raw == b"\x00\x01"
        with_default: bytes | str = cache.get_bytes("missing", "none")
        assert with_default == "none"
        found = cache.lookup("doc")
        if found is not None:
            tier: str = found.tier
            age: float = found.age
            assert tier == "memory" and age >= 0 and not found.stale
        found_raw = cache.lookup_bytes("raw")
        assert found_raw is not None and found_raw.value.startswith(b"\x00")
        loaded: Optional[dict[str, int]] = cache.get_or_load("loaded", lambda: {"n": 1}, ttl=5)
        assert loaded == {"n": 1}
        values: dict[str, Any] = cache.mget(["a", "b", "missing"])
        raws: dict[str, bytes] = cache.mget_bytes(["raw"])
        assert values == {"a": 1, "b": [2, 3]} and raws == {"raw": b"\x00\x01"}
        existed: bool = cache.delete("a")
        present: bool = cache.has("b") and "b" in cache
        assert existed and present
        names: list[str] = cache.keys("d*") + cache.keys()
        count: int = cache.len() + len(cache)
        assert names and count
        removed: int = cache.invalidate_tag("ui")
        assert removed == 1
        cache.flush()
        stats: tierstack.Stats = cache.stats()
        hits: int = stats["hits"] + stats["tiers"][0]["hits"]
        dropped: int = stats["invalidations"] + stats["resyncs"]
        assert hits >= 0 and dropped == 0
        breaker: tierstack.BreakerStatus = cache.breaker_status()
        assert breaker["state"] == "closed" and breaker["last_failure_at"] is None
        keyed: Optional[str] = cache.get_or_load("keyed", lambda key: key.upper())
        gone: Optional[int] = cache.get_or_load("gone", lambda: tierstack.NOT_FOUND)
        chosen: Optional[str] = cache.get_or_load("chosen", lambda: tierstack.Loaded("v", ttl=5, tags=["t"]))
        many: dict[str, int] = cache.get_or_load_many(["m1", "m2"], lambda keys: {k: len(k) for k in keys})
        assert (keyed, gone, chosen, many) == ("KEYED", None, "v", {"m1": 2, "m2": 2})
        cache.clear()
        refuses(lambda: cache.get(1), TypeError)  # type: ignore[arg-type]
        refuses(lambda: cache.set("k", {1, 2}), tierstack.InvalidValueError)  # type: ignore[arg-type]
        refuses(lambda: cache.set("k", 1, ttl="5"), TypeError)  # type: ignore[arg-type]
        refuses(lambda: cache.lookup("gone").value, AttributeError)  # type: ignore[union-attr]
        refuses(lambda: stats["hit"], KeyError)  # type: ignore[typeddict-item]
    closed: bool = cache.closed
    assert closed
    try:
        cache.get("doc")
    except tierstack.Error as err:
        kind: str = err.kind
        code: int = err.code
        assert (kind, code) == ("closed", 4)
    tierstack.Cache(config={"sqlite": {"enabled": False}}).close()
    refuses(lambda: tierstack.Cache(memroy={}), tierstack.InvalidConfigError)  # type: ignore[call-overload]


def use_github(directory: Path) -> None:
    """A GitHub-sourced cache; only keys no route serves are read, so no
    request is made."""
    route: tierstack.GitHubRoute = {"key": "doc:{name}", "owner": "me", "repo": "docs", "path": "pages/{name}.md"}
    github: tierstack.GitHubConfig = {
        "api_url": "http://127.0.0.1:9",
        "raw_url": "http://127.0.0.1:9",
        "token": None,
        "timeout": 2.5,
        "routes": [route, {"key": "docs", "owner": "me", "repo": "docs", "listing": "pages", "suffix": ".md"}],
    }
    with tierstack.Cache({"sqlite": {"path": directory / "github.db"}, "github": github}) as cache:
        assert cache.get("session:1") is None
        limit: Optional[tierstack.RateLimit] = cache.stats()["source"]["rate_limit"]
        assert limit is None
        if limit is not None:
            remaining: int = limit["remaining"]
            reset_at_ms: Optional[int] = limit["reset_at_ms"]
            assert remaining >= 0 and reset_at_ms != 0
    refuses(
        lambda: tierstack.Cache(github={"routes": 5}),  # type: ignore[call-overload]
        tierstack.InvalidConfigError,
    )


def use_redis(directory: Path) -> None:
    """A cache with a Redis tier that is not there: every call still
    answers (from memory and the file), and the stats say why."""
    redis: tierstack.RedisConfig = {
        "url": "redis://:secret@127.0.0.1:9/0",
        "prefix": "typed:",
        "timeout": 0.05,
        "ttl": None,
        "backplane": True,
        "backplane_max_len": 1000,
    }
    with tierstack.Cache({"sqlite": {"path": directory / "redis.db"}, "redis": redis}) as cache:
        cache.set("k", [1])
        found = cache.lookup("k")
        assert found is not None and found.tier == "memory"
        assert "secret" not in repr(cache)
        stats: Optional[tierstack.RedisStats] = cache.stats()["redis"]
        assert stats is not None and stats["errors"] >= 1
        breaker: tierstack.BreakerStatus = stats["breaker"]
        backplane: Optional[tierstack.BackplaneStats] = stats["backplane"]
        assert backplane is not None and breaker["trips"] >= 0
        connected: bool = backplane["connected"]
        figures: int = backplane["sent"] + backplane["received"] + backplane["replayed"] + backplane["resyncs"]
        lag: int = backplane["lag_ms"] + backplane["max_lag_ms"] + backplane["deferred"]
        coalesced: int = cache.stats()["source"]["coalesced_machines"]
        assert not connected and figures >= 0 and lag >= 0 and coalesced == 0
        tiers: list[str] = [t["tier"] for t in cache.stats()["tiers"]]
        assert tiers == ["memory", "sqlite", "redis"]
        refuses(lambda: stats["backplan"], KeyError)  # type: ignore[typeddict-item]
    refuses(
        lambda: tierstack.Cache(redis={"url": "redis://h", "tiemout": 1}),  # type: ignore[call-overload]
        tierstack.InvalidConfigError,
    )
    with tierstack.Cache(sqlite={"enabled": False}) as plain:
        assert plain.stats()["redis"] is None


class MemoryStore:
    """A writable source over a dict; ``remove`` takes the idempotency key."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ids: list[str] = []

    def load(self, key: str) -> Any:
        return self.data.get(key, tierstack.NOT_FOUND)

    def store(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def remove(self, key: str, idempotency_key: str) -> None:
        self.ids.append(idempotency_key)
        self.data.pop(key, None)


def use_writes(directory: Path) -> None:
    outbox: tierstack.OutboxConfig = {"max_attempts": 3, "retry_base": 0.01, "retry_max": 0.05}
    config: tierstack.Config = {"sqlite": {"path": directory / "writes.db"}, "strategy": "write-behind", "outbox": outbox}
    store = MemoryStore()
    with tierstack.Cache(config, source=store) as cache:
        cache.set("k", {"v": 1})
        cache.delete("gone")
        cache.flush()
        figures: Optional[tierstack.OutboxStats] = cache.outbox_stats()
        assert figures is not None and figures["delivered"] == 2 and figures["oldest_age"] is None
        in_stats: Optional[tierstack.OutboxStats] = cache.stats()["outbox"]
        assert in_stats == figures
        dead: list[tierstack.DeadLetter] = cache.dead_letters()
        assert dead == [] and store.data == {"k": b'{"v":1}'} and len(store.ids) == 1
        queued: int = cache.retry_dead_letters() + cache.purge_dead_letters()
        assert queued == 0
        got: tierstack.OutboxStats = figures
        refuses(lambda: got["pendng"], KeyError)  # type: ignore[typeddict-item]
    refuses(lambda: tierstack.Cache(strategy="write-around"), tierstack.InvalidConfigError)  # type: ignore[call-overload]
    with tierstack.Cache(sqlite={"enabled": False}) as plain:
        assert plain.outbox_stats() is None and plain.stats()["outbox"] is None


def use_test_clock(directory: Path) -> None:
    with tierstack.Cache(test_clock=True, sqlite={"path": directory / "clocked.db"}) as cache:
        cache.set("k", 1, ttl=2)
        tierstack.advance_test_clock(1.5)
        tierstack.advance_test_clock(1)
        assert cache.get("k") is None
    refuses(lambda: tierstack.advance_test_clock("1"), TypeError)  # type: ignore[arg-type]
    kinds: tuple[str, ...] = tierstack.ERROR_KINDS
    assert kinds[tierstack.SourceError.code - 1] == tierstack.SourceError.kind


async def use_async(directory: Path) -> None:
    async with tierstack.AsyncCache(sqlite={"path": str(directory / "async.db")}) as cache:
        await cache.set("doc", {"name": "card"})
        doc: Any = await cache.get("doc")
        raw: Optional[bytes] = await cache.get_bytes("doc")
        assert doc == {"name": "card"} and raw == b'{"name":"card"}'

        async def load() -> list[str]:
            return ["loaded"]

        loaded: Optional[list[str]] = await cache.get_or_load("loaded", load, ttl=5)
        plain: Optional[int] = await cache.get_or_load("plain", lambda: 7)
        assert loaded == ["loaded"] and plain == 7
        found = await cache.lookup("doc")
        assert found is not None and found.tier == "memory"
        values: dict[str, Any] = await cache.mget(["doc", "missing"])
        assert list(values) == ["doc"]
        await cache.mset({"x": 1}, ttl=10)
        count: int = await cache.len()
        names: list[str] = await cache.keys()
        assert count == len(names) == 4
        assert await cache.has("x") and await cache.delete("x")
        assert await cache.invalidate_tag("none") == 0
        await cache.flush()
        stats: tierstack.Stats = await cache.stats()
        assert stats["sets"] == 4
        figures: Optional[tierstack.OutboxStats] = await cache.outbox_stats()
        dead: list[tierstack.DeadLetter] = await cache.dead_letters()
        assert figures is None and dead == []
        assert await cache.retry_dead_letters() == await cache.purge_dead_letters() == 0
        await cache.clear()
    assert cache.closed


def main(directory: Path) -> None:
    use_sync(directory)
    use_github(directory)
    use_redis(directory)
    use_writes(directory)
    use_test_clock(directory)
    asyncio.run(use_async(directory))
