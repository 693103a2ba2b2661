"""Loading through the engine: read-through sources, get_or_load and
get_or_load_many, single-flight across threads, tasks and processes,
fail-safe, timeouts, negative caching, the breaker, and the errors."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import tierstack

# Stale copies are served from L2: short TTLs, no jitter, no refresh-ahead,
# on the test clock (moved past the TTL with tierstack.advance_test_clock).
STALE = {"sqlite": {"ttl": 0.3}, "refresh_ahead": 0, "ttl_jitter": 0, "test_clock": True}


class Counter:
    """A loader's calls, from any thread."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def hit(self) -> int:
        with self.lock:
            self.calls += 1
            return self.calls


def open_cache(db_path, **options):
    options.setdefault("sqlite", {})
    options["sqlite"] = {"path": db_path, **options["sqlite"]}
    return tierstack.Cache(**options)


def test_a_hundred_threads_missing_one_key_share_one_loader_call(cache):
    counter = Counter()
    start = threading.Barrier(100)

    def loader(key):
        counter.hit()
        time.sleep(0.2)
        return {"key": key}

    results = []

    def worker():
        start.wait()
        results.append(cache.get_or_load("hot", loader))

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.calls == 1
    assert results == [{"key": "hot"}] * 100
    assert cache.stats()["source"]["requests"] == 1


@pytest.mark.parametrize("kind", ["coroutine", "plain"])
def test_a_hundred_tasks_missing_one_key_share_one_loader_call(db_path, kind):
    counter = Counter()

    async def coroutine_loader(key):
        counter.hit()
        await asyncio.sleep(0.2)
        return [key, "async"]

    def plain_loader(key):
        counter.hit()
        time.sleep(0.2)
        return [key, "plain"]

    loader = coroutine_loader if kind == "coroutine" else plain_loader

    async def scenario():
        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            results = await asyncio.gather(*(cache.get_or_load("hot", loader) for _ in range(100)))
            assert results == [["hot", "async" if kind == "coroutine" else "plain"]] * 100
            assert await cache.get("hot") == results[0]

    asyncio.run(scenario())
    assert counter.calls == 1


def test_a_coroutine_loader_runs_on_the_callers_loop(db_path):
    async def scenario():
        caller = asyncio.get_running_loop()
        seen = []

        async def loader():
            seen.append(asyncio.get_running_loop())
            return "v"

        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            assert await cache.get_or_load("k", loader) == "v"
        assert seen == [caller]

    asyncio.run(scenario())


def test_an_async_cache_reads_through_a_coroutine_source(db_path):
    async def scenario():
        counter = Counter()

        async def source(key):
            counter.hit()
            await asyncio.sleep(0.05)
            return tierstack.NOT_FOUND if key == "missing" else {"key": key}

        async with tierstack.AsyncCache(sqlite={"path": db_path}, source=source) as cache:
            assert await cache.get("a") == {"key": "a"}
            assert await cache.get("a") == {"key": "a"}
            assert await cache.get("missing") is None
            assert await cache.mget(["a", "b", "missing"]) == {"a": {"key": "a"}, "b": {"key": "b"}}
            found = await cache.lookup("c")
            assert found is not None and (found.value, found.tier) == ({"key": "c"}, "source")
            many = await cache.get_or_load_many(["a", "d"], lambda keys: {k: k for k in keys})
            assert many == {"a": {"key": "a"}, "d": "d"}
        assert counter.calls == 4  # a, missing, b, c

    asyncio.run(scenario())


def test_an_async_many_loader_may_be_a_coroutine(db_path):
    async def scenario():
        handed = []

        async def loader(keys):
            handed.append(keys)
            await asyncio.sleep(0.01)
            return {key: key.upper() for key in keys if key != "none"}

        async with tierstack.AsyncCache(sqlite={"path": db_path}) as cache:
            await cache.set("b", "stored")
            found = await cache.get_or_load_many(["a", "b", "none"], loader)
            assert found == {"a": "A", "b": "stored"}
        assert handed == [["a", "none"]]

    asyncio.run(scenario())


CHILD = """
import os, sys, threading, time
import tierstack

path, counter_path, go_path = sys.argv[1], sys.argv[2], sys.argv[3]

def loader(key):
    fd = os.open(counter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"call\\n")
    os.close(fd)
    time.sleep(0.5)
    return {"key": key, "by": os.getpid()}

cache = tierstack.Cache(sqlite={"path": path})
while not os.path.exists(go_path):
    time.sleep(0.005)
results = []
def worker():
    results.append(cache.get_or_load("shared", loader))
threads = [threading.Thread(target=worker) for _ in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(results) == 10 and all(r == results[0] for r in results), results
print(results[0]["by"], flush=True)
"""


def test_four_processes_of_ten_threads_share_one_loader_call(tmp_path, db_path):
    counter_path, go_path = tmp_path / "calls", tmp_path / "go"
    tierstack.Cache(sqlite={"path": db_path}).close()  # the file exists
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, db_path, str(counter_path), str(go_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.5)
    go_path.write_text("go")
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in outputs]
    assert counter_path.read_text() == "call\n"
    loaders = {out.strip() for out, _ in outputs}
    assert len(loaders) == 1  # every process got the one loader's value
    assert int(loaders.pop()) in {child.pid for child in children}


HOLDER = """
import os, sys, time
import tierstack

path, started_path = sys.argv[1], sys.argv[2]

def loader(key):
    open(started_path, "w").write(str(os.getpid()))
    time.sleep(120)
    return "never"

cache = tierstack.Cache(sqlite={"path": path}, fail_safe={"hard_timeout": 1})
cache.get_or_load("k", loader)
"""

WAITER = """
import os, sys, threading
import tierstack

path, counter_path = sys.argv[1], sys.argv[2]

def loader(key):
    fd = os.open(counter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"call\\n")
    os.close(fd)
    return "taken over"

cache = tierstack.Cache(sqlite={"path": path}, fail_safe={"hard_timeout": 10})
results = []
threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", loader))) for _ in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(",".join(results), flush=True)
"""


def test_a_lease_holder_killed_mid_load_leaves_the_load_to_another_process(tmp_path, db_path):
    started_path, counter_path = tmp_path / "started", tmp_path / "calls"
    tierstack.Cache(sqlite={"path": db_path}).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_path, str(started_path)])
    try:
        deadline = time.monotonic() + 30
        while not started_path.exists():
            assert time.monotonic() < deadline, "the holder never started loading"
            time.sleep(0.01)
        waiters = [
            subprocess.Popen(
                [sys.executable, "-c", WAITER, db_path, str(counter_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(0.3)  # the waiters find the lease taken
        assert not counter_path.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    outputs = [waiter.communicate(timeout=30) for waiter in waiters]
    assert [w.returncode for w in waiters] == [0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [",".join(["taken over"] * 5)] * 2
    assert counter_path.read_text() == "call\n"
    with tierstack.Cache(sqlite={"path": db_path}) as cache:
        assert cache.get("k") == "taken over"


class Scripted:
    """A source answering from a list, one answer per call; an exception
    in the list is raised; a ``(seconds, answer)`` pair sleeps first."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def load(self, key):
        answer = self.answers[self.calls]
        self.calls += 1
        if isinstance(answer, tuple):
            time.sleep(answer[0])
            answer = answer[1]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    # Not called by this version; a source object may have them.
    def store(self, key, value):
        raise AssertionError("store is not called")

    def remove(self, key):
        raise AssertionError("remove is not called")


def test_a_failing_source_serves_the_stale_copy(db_path):
    source = Scripted("old", ConnectionError("down"))

    def failing():
        raise ConnectionError("per call")

    with open_cache(db_path, source=source, **STALE) as cache:
        assert cache.get("k") == "old"
        assert cache.lookup("k")[:3] == ("old", "memory", False)
        tierstack.advance_test_clock(0.3)
        assert cache.lookup("k") == ("old", "sqlite", True, 0.3)
        assert cache.get_or_load("k", failing) == "old"
        assert source.calls == 2
        assert cache.stats()["source"]["stale_served"] == 2


def test_an_open_breaker_serves_the_stale_copy_without_calling(db_path):
    source = Scripted("old")
    with open_cache(db_path, source=source, **STALE) as cache:
        assert cache.get("k") == "old"
        cache.breaker_open()
        tierstack.advance_test_clock(0.3)
        found = cache.lookup("k")
        assert (found.value, found.stale) == ("old", True)
        with pytest.raises(tierstack.SourceUnavailableError) as raised:
            cache.get("other")
        assert raised.value.kind == "source_unavailable" and raised.value.code == 13
        assert source.calls == 1
        assert cache.stats()["source"]["rejected"] == 2
        cache.breaker_close()
        assert cache.breaker_status()["state"] == "closed"


def test_past_the_soft_timeout_the_stale_copy_is_served_and_the_load_fills_the_tiers(db_path):
    source = Scripted("old", (1.0, tierstack.Loaded("new", ttl=60)))
    options = dict(STALE, fail_safe={"soft_timeout": 0.2, "hard_timeout": 5})
    with open_cache(db_path, source=source, **options) as cache:
        assert cache.get("k") == "old"
        tierstack.advance_test_clock(0.3)
        began = time.monotonic()
        found = cache.lookup("k")
        waited = time.monotonic() - began
        assert (found.value, found.tier, found.stale) == ("old", "sqlite", True)
        assert waited < 0.2 + 0.05, waited
        time.sleep(1.2)
        assert source.calls == 2
        assert cache.lookup_bytes("k")[:3] == (b'"new"', "memory", False)
    with open_cache(db_path, test_clock=True) as other:
        assert other.get("k") == "new"


def test_without_a_stale_copy_the_errors_are_raised(cache, reopen):
    cause = LookupError("gone wrong")

    def failing(key):
        raise cause

    with pytest.raises(tierstack.SourceError) as raised:
        cache.get_or_load("k", failing)
    assert raised.value.__cause__ is cause
    assert (raised.value.kind, raised.value.code) == ("source", 12)
    assert "LookupError: gone wrong" in str(raised.value)
    assert isinstance(raised.value, tierstack.Error)

    cache.breaker_open()
    with pytest.raises(tierstack.SourceUnavailableError):
        cache.get_or_load("k", lambda: "unused")
    cache.breaker_close()

    slow = reopen(fail_safe={"soft_timeout": 0.1, "hard_timeout": 0.2})
    with pytest.raises(tierstack.TimeoutError) as raised:
        slow.get_or_load("slow", lambda: time.sleep(0.6) or "late")
    assert (raised.value.kind, raised.value.code) == ("timeout", 14)
    assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, tierstack.Error)
    assert slow.has("slow") is False


def test_not_found_is_remembered_for_negative_ttl_and_never_stored(db_path):
    counter = Counter()

    def loader():
        return tierstack.NOT_FOUND if counter.hit() == 1 else "arrived"

    with open_cache(db_path, negative_ttl=0.3, test_clock=True) as cache:
        assert cache.get_or_load("gone", loader) is None
        assert cache.get_or_load("gone", loader) is None
        assert counter.calls == 1
        assert cache.has("gone") is False and cache.keys() == [] and cache.len() == 0 and len(cache) == 0
        assert cache.get("gone") is None
        assert cache.stats()["source"]["negative_hits"] == 1
        tierstack.advance_test_clock(0.299)
        assert cache.get_or_load("gone", loader) is None
        assert counter.calls == 1
        tierstack.advance_test_clock(0.001)
        assert cache.get_or_load("gone", loader) == "arrived"
        assert counter.calls == 2


def test_get_or_load_many_hands_the_loader_exactly_the_missing_keys(cache):
    handed = []

    def loader(keys):
        handed.append(keys)
        return {"b": {"n": 2}, "c": tierstack.NOT_FOUND, "d": b'"stored raw"', "unasked": 0}

    cache.set("a", {"n": 1})
    found = cache.get_or_load_many(["a", "b", "c", "d", "e"], loader, ttl=60)
    assert handed == [["b", "c", "d", "e"]]
    assert found == {"a": {"n": 1}, "b": {"n": 2}, "d": "stored raw"}
    assert cache.get_or_load_many_bytes(["d", "a"], loader) == {"d": b'"stored raw"', "a": b'{"n":1}'}
    assert handed == [["b", "c", "d", "e"]]  # nothing missing: no call
    assert cache.has("c") is False and cache.has("e") is False and cache.has("unasked") is False


def test_a_loader_takes_the_key_if_it_accepts_an_argument(cache):
    class WithCall:
        def __call__(self, key):
            return f"called with {key}"

    assert cache.get_or_load("a", lambda key: key * 2) == "aa"
    assert cache.get_or_load("b", lambda: "no argument") == "no argument"
    assert cache.get_or_load("c", lambda *args: list(args)) == ["c"]
    assert cache.get_or_load("d", lambda key="default": key) == "d"
    assert cache.get_or_load("e", WithCall()) == "called with e"
    assert cache.get_or_load("f", str.upper) == "F"


def test_a_loaded_answer_chooses_its_ttl_and_tags(reopen):
    cache = reopen(test_clock=True, refresh_ahead=0)
    assert cache.get_or_load("k", lambda: tierstack.Loaded({"v": 1}, ttl=0.2, tags=["ui"]), ttl=60) == {"v": 1}
    assert cache.get_or_load("t", lambda: tierstack.Loaded("tagged", tags=["ui"])) == "tagged"
    assert cache.invalidate_tag("ui") == 2
    assert cache.get_or_load("k", lambda: tierstack.Loaded("short", ttl=0.2)) == "short"
    tierstack.advance_test_clock(0.2)
    assert cache.get_or_load("k", lambda: "reloaded") == "reloaded"
    assert repr(tierstack.NOT_FOUND) == "tierstack.NOT_FOUND"
    assert tierstack.Loaded(1, ttl=2) == tierstack.Loaded(1, ttl=2)


def test_the_breaker_status_after_failures(db_path):
    def failing():
        raise ConnectionError("down")

    with open_cache(db_path, circuit_breaker={"threshold": 2, "timeout": 60}) as cache:
        before = time.time()
        for key in ("a", "b"):
            with pytest.raises(tierstack.SourceError):
                cache.get_or_load(key, failing)
        after = time.time()
        status = cache.breaker_status()
        assert (status["state"], status["failure_count"], status["allows_request"], status["trips"]) == (
            "open",
            2,
            False,
            1,
        )
        assert before - 0.01 <= status["last_failure_at"] <= after + 0.01
        assert status["next_attempt_at"] > status["last_failure_at"]
        assert cache.stats()["breaker"] == status
        assert cache.stats()["source"]["failures"] == 2
        cache.breaker_close()
        status = cache.breaker_status()
        assert (status["state"], status["failure_count"], status["next_attempt_at"]) == ("closed", 0, None)


@pytest.mark.parametrize("key", ["", "bad\x00key", "x" * 256])
def test_a_bad_key_raises_before_the_loader_runs(cache, key):
    counter = Counter()

    def loader(*_):
        counter.hit()
        return "v"

    with pytest.raises(tierstack.InvalidKeyError):
        cache.get_or_load(key, loader)
    with pytest.raises(tierstack.InvalidKeyError):
        cache.get_or_load_many(["ok", key], loader)
    assert counter.calls == 0


def test_a_source_object_with_load(db_path):
    source = Scripted({"from": "object"})
    with open_cache(db_path, source=source) as cache:
        assert cache.get("k") == {"from": "object"}
        assert cache.get_bytes("k") == b'{"from":"object"}'
        assert source.calls == 1
    with pytest.raises(TypeError):
        tierstack.Cache(sqlite={"path": db_path}, source=42)


def test_a_loader_answer_json_cannot_encode_stores_nothing(cache):
    with pytest.raises(tierstack.InvalidValueError):
        cache.get_or_load("k", lambda: {1, 2})
    assert cache.has("k") is False


def test_stats_count_loads(cache):
    assert cache.get_or_load("a", lambda: 1) == 1
    assert cache.get_or_load("a", lambda: 2) == 1
    source = cache.stats()["source"]
    assert (source["requests"], source["successes"], source["failures"]) == (1, 1, 0)
    assert set(source) == {
        "requests",
        "successes",
        "failures",
        "timeouts",
        "not_found",
        "rejected",
        "coalesced",
        "coalesced_processes",
        "coalesced_machines",
        "stale_served",
        "negative_hits",
        "refreshes",
        "rate_limit",
    }
    assert source["rate_limit"] is None  # a loader sends no rate-limit figures


def test_readme_loading_example_runs():
    import readme_example

    result = readme_example.run(readme_example.loading_example())
    assert result.returncode == 0, result.stderr

