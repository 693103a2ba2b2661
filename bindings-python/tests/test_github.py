"""GitHub as the source of truth, against tierstack-origin: a GitHub-shaped
HTTP origin on loopback that counts its requests and injects faults. Every
test asserts the origin's request count exactly.

The origin runs once for the session (``origin_process`` in conftest.py);
each test resets it."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import tierstack
from origin import Origin

BASE = "apps/v4/registry/new-york-v4"
BUTTON = "component:react:button"
COMPONENTS = sorted(
    """accordion alert alert-dialog aspect-ratio avatar badge breadcrumb button
    calendar card carousel chart checkbox collapsible command context-menu dialog
    drawer dropdown-menu form hover-card input input-otp label menubar
    navigation-menu pagination popover progress radio-group resizable scroll-area
    select separator sheet sidebar skeleton slider sonner switch table tabs
    textarea toggle toggle-group tooltip""".split()
)
BLOCKS = ["dashboard-01", "login-01", "login-02", "sidebar-01", "signup-01"]
RATE_LIMITED = {"status": 403, "body": '{"message":"API rate limit exceeded"}', "times": 1}
TOKEN_ENV = ("GITHUB_PERSONAL_ACCESS_TOKEN", "GITHUB_TOKEN")


@pytest.fixture
def origin(origin_process: Origin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Origin]:
    """The origin, reset: seeded files, no faults, no rate limit, empty log;
    and no token in the environment. At the end, every request it logged
    has been answered (an answer after the next reset would land in the
    next test's log)."""
    origin_process.post("reset")
    for name in TOKEN_ENV:
        monkeypatch.delenv(name, raising=False)
    yield origin_process
    wait_for(lambda: all(r["status"] != 0 for r in origin_process.requests()))


def merge(into: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(into)
    for name, value in over.items():
        below = merged.get(name)
        merged[name] = merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def github_config(origin: Origin, path: str, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    config = {
        "sqlite": {"path": path},
        "ttl_jitter": 0.0,
        "github": {"api_url": origin.api, "raw_url": origin.raw, "timeout": 5},
    }
    return merge(config, extra or {})


@pytest.fixture
def open_github(origin: Origin, db_path: str) -> Iterator[Any]:
    """``open_github(**extra)``: a cache loading from the origin, on the
    test's file, with ``extra`` merged over the config; closed at the end."""
    opened: List[tierstack.Cache] = []

    def open_cache(**extra: Any) -> tierstack.Cache:
        cache = tierstack.Cache(github_config(origin, db_path, extra))
        opened.append(cache)
        return cache

    yield open_cache
    for cache in opened:
        cache.close()


def first_line(value: str) -> str:
    return value.split("\n", 1)[0]


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def rate_limit_fault(origin: Origin, reset: int) -> None:
    origin.fault(headers=[["X-RateLimit-Remaining", "0"], ["X-RateLimit-Reset", str(reset)]], **RATE_LIMITED)


def test_a_component_is_fetched_once_then_served_from_memory_and_the_file(origin, open_github):
    cache = open_github()
    first = cache.lookup(BUTTON)
    assert first is not None and (first.tier, first.stale) == ("source", False)
    assert first_line(first.value) == f"// {BASE}/ui/button.tsx"
    (request,) = origin.requests()
    assert (request["host"], request["method"], request["path"]) == ("raw", "GET", f"/shadcn-ui/ui/main/{BASE}/ui/button.tsx")
    assert request["authorization"] is None

    for _ in range(3):
        again = cache.lookup(BUTTON)
        assert again is not None and (again.tier, again.value) == ("memory", first.value)
    assert cache.get(BUTTON) == first.value
    # A file is stored as the JSON string of its text.
    assert cache.get_bytes(BUTTON) == json.dumps(first.value, ensure_ascii=False, separators=(",", ":")).encode()
    assert origin.count() == 1
    cache.close()

    restarted = open_github().lookup(BUTTON)
    assert restarted is not None and (restarted.tier, restarted.value) == ("sqlite", first.value)
    assert origin.count() == 1


def test_demos_blocks_and_listings_follow_the_preset_routes(origin, open_github):
    cache = open_github()
    assert first_line(cache.get("component-demo:react:dialog")) == f"// {BASE}/examples/dialog-demo.tsx"
    assert first_line(cache.get("block:react:login-01")) == f"// {BASE}/blocks/login-01.tsx"
    listing = cache.lookup("components:react")
    assert listing is not None and (listing.value, listing.tier) == (COMPONENTS, "source")
    assert len(listing.value) == 46
    assert cache.get("blocks:react") == BLOCKS
    assert origin.count() == 4
    api = [r for r in origin.requests() if r["host"] == "api"]
    assert [(r["path"], r["query"]) for r in api] == [
        (f"/repos/shadcn-ui/ui/contents/{BASE}/ui", "ref=main"),
        (f"/repos/shadcn-ui/ui/contents/{BASE}/blocks", "ref=main"),
    ]
    assert cache.get("components:react") == COMPONENTS
    assert origin.count() == 4


def test_unrouted_keys_are_plain_misses_without_a_request(origin, open_github):
    cache = open_github()
    for key in ["session:1", "component:vue:button"]:
        assert cache.get(key) is None
        assert cache.get(key) is None
        assert cache.lookup(key) is None
    assert cache.mget(["session:1", "component:vue:button"]) == {}
    assert origin.count() == 0
    assert cache.stats()["source"]["requests"] == 0


def test_unchanged_content_is_revalidated_with_a_304_and_no_body(origin, open_github):
    cache = open_github(sqlite={"ttl": 1}, memory={"ttl": 1}, test_clock=True)
    first = cache.get(BUTTON)
    assert first is not None
    tierstack.advance_test_clock(1)  # past the TTL

    renewed = cache.lookup(BUTTON)
    assert renewed is not None and (renewed.value, renewed.stale) == (first, False)
    fetched, revalidated = origin.requests()
    assert (fetched["status"], fetched["if_none_match"]) == (200, None)
    assert revalidated["status"] == 304
    assert revalidated["if_none_match"] is not None
    again = cache.lookup(BUTTON)
    assert again is not None and (again.tier, again.value, again.stale) == ("memory", first, False)
    assert origin.count() == 2

    origin.post(
        "file",
        {"owner": "shadcn-ui", "repo": "ui", "ref": "main", "path": f"{BASE}/ui/button.tsx", "content": "// changed"},
    )
    tierstack.advance_test_clock(0.999)
    assert cache.get(BUTTON) == first
    tierstack.advance_test_clock(0.001)
    assert cache.get(BUTTON) == "// changed"
    assert [r["status"] for r in origin.requests()] == [200, 304, 200]


def test_a_missing_component_is_not_found_and_remembered(origin, open_github):
    cache = open_github()
    assert cache.get("component:react:no-such-thing") is None
    assert cache.lookup("component:react:no-such-thing") is None
    assert [r["status"] for r in origin.requests()] == [404]
    source = cache.stats()["source"]
    assert (source["not_found"], source["negative_hits"]) == (1, 1)


def test_a_hundred_threads_reading_a_missing_component_make_one_request(origin, open_github):
    origin.fault(delay_ms=200, times=1)
    cache = open_github()
    start = threading.Barrier(100)
    results: List[Any] = [None] * 100

    def read(i: int) -> None:
        start.wait()
        try:
            results[i] = cache.get("component:react:card")
        except BaseException as exc:  # checked below
            results[i] = exc

    threads = [threading.Thread(target=read, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [first_line(r) if isinstance(r, str) else r for r in results] == [f"// {BASE}/ui/card.tsx"] * 100
    assert origin.count() == 1


def test_a_hundred_tasks_reading_a_missing_component_make_one_request(origin, db_path):
    origin.fault(delay_ms=200, times=1)

    async def main() -> List[Any]:
        async with tierstack.AsyncCache(github_config(origin, db_path)) as cache:
            return await asyncio.gather(*(cache.get("component:react:dialog") for _ in range(100)))

    results = asyncio.run(main())
    assert [first_line(r) for r in results] == [f"// {BASE}/ui/dialog.tsx"] * 100
    assert origin.count() == 1


def test_server_errors_serve_the_stale_copy_then_open_the_breaker(origin, open_github):
    cache = open_github(
        sqlite={"ttl": 1}, memory={"ttl": 1}, circuit_breaker={"threshold": 3, "timeout": 60}, test_clock=True
    )
    original = cache.get(BUTTON)
    tierstack.advance_test_clock(1)  # past the TTL: a stale copy
    for status in [500, 502, 503]:
        origin.fault(status=status, times=1)
        served = cache.lookup(BUTTON)
        assert served is not None and (served.stale, served.value) == (True, original), status
    assert [r["status"] for r in origin.requests()] == [200, 500, 502, 503]
    assert cache.breaker_status()["state"] == "open"

    # Open: no request; the stale copy still, and without one the error.
    served = cache.lookup(BUTTON)
    assert served is not None and (served.stale, served.value) == (True, original)
    with pytest.raises(tierstack.SourceUnavailableError):
        cache.get("component:react:card")
    assert origin.count() == 4
    source = cache.stats()["source"]
    assert (source["failures"], source["rejected"], source["stale_served"]) == (3, 2, 4)


def test_without_a_stale_copy_a_server_error_is_a_source_error(origin, open_github):
    origin.fault(status=503, times=1)
    cache = open_github()
    with pytest.raises(tierstack.SourceError, match="503"):
        cache.get(BUTTON)
    assert cache.get(BUTTON) is not None  # nothing was stored: asked again
    assert [r["status"] for r in origin.requests()] == [503, 200]


def test_a_slow_origin_serves_stale_at_the_soft_timeout_then_fills_in_the_background(origin, open_github):
    cache = open_github(
        sqlite={"ttl": 1}, memory={"ttl": 1}, fail_safe={"soft_timeout": 0.2, "hard_timeout": 0.6}, test_clock=True
    )
    original = cache.get(BUTTON)
    tierstack.advance_test_clock(1)  # past the TTL: a stale copy
    origin.fault(delay_ms=400, times=1)
    started = time.monotonic()
    served = cache.lookup(BUTTON)
    took = time.monotonic() - started
    assert served is not None and (served.stale, served.value) == (True, original)
    assert 0.2 <= took < 0.25, took

    # The fetch goes on in the background and renews the copy.
    wait_for(lambda: cache.has(BUTTON))
    filled = cache.lookup(BUTTON)
    assert filled is not None and (filled.tier, filled.stale, filled.value) == ("memory", False, original)
    assert origin.count() == 2


def test_a_slow_origin_without_a_stale_copy_times_out_at_the_hard_timeout(origin, open_github):
    cache = open_github(fail_safe={"soft_timeout": 0.2, "hard_timeout": 0.6})
    origin.fault(delay_ms=1500, times=1)
    started = time.monotonic()
    with pytest.raises(tierstack.TimeoutError) as raised:
        cache.get("component:react:card")
    took = time.monotonic() - started
    assert 0.6 <= took < 1.5, took  # abandoned at the hard timeout, before the answer at 1.5 s
    assert raised.value.kind == "timeout"
    assert cache.stats()["source"]["timeouts"] == 1
    assert origin.count() == 1
    # The abandoned fetch stored nothing: the next read asks again.
    wait_for(lambda: origin.requests()[0]["status"] == 200)
    assert cache.get("component:react:card") is not None
    assert origin.count() == 2


def test_a_refused_connection_is_a_source_error(origin, open_github):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        closed = listener.getsockname()[1]
    cache = open_github(github={"raw_url": f"http://127.0.0.1:{closed}"})
    with pytest.raises(tierstack.SourceError, match="could not connect"):
        cache.get(BUTTON)
    assert cache.stats()["source"]["failures"] == 1
    assert origin.count() == 0


def test_truncated_and_oversized_bodies_are_source_errors_and_nothing_is_stored(origin, open_github, db_path):
    cache = open_github(github={"max_body_bytes": 100_000})
    origin.fault(truncate=True, times=1)
    with pytest.raises(tierstack.SourceError, match="broke off"):
        cache.get(BUTTON)
    origin.fault(oversize=200_000, times=1)
    with pytest.raises(tierstack.SourceError, match="max_body_bytes"):
        cache.get(BUTTON)
    assert cache.stats()["source"]["failures"] == 2
    assert cache.has(BUTTON) is False
    assert origin.count() == 2
    # Nor in the file: a cache without a source finds nothing.
    with tierstack.Cache(sqlite={"path": db_path}) as plain:
        assert plain.get(BUTTON) is None
    assert origin.count() == 2


TRAVERSALS = [
    "component:react:../../../etc/passwd",
    "component:react:..",
    "component:react:a/b",
    "component:react:a\\b",
    "component:react:%2e%2e",
    "component:react:%2fetc",
    "component-demo:react:%41",
    "block:react:.git",
]


def test_traversal_keys_are_invalid_keys_and_make_no_request(origin, open_github):
    cache = open_github()
    for key in TRAVERSALS:
        with pytest.raises(tierstack.InvalidKeyError):
            cache.get(key)
        with pytest.raises(tierstack.InvalidKeyError):
            cache.lookup(key)
        with pytest.raises(tierstack.InvalidKeyError):
            cache.mget([BUTTON, key])
    assert origin.count() == 0
    assert cache.stats()["source"]["requests"] == 0


def test_traversal_keys_are_invalid_in_async_reads(origin, db_path):
    async def main() -> None:
        async with tierstack.AsyncCache(github_config(origin, db_path)) as cache:
            for key in TRAVERSALS:
                with pytest.raises(tierstack.InvalidKeyError):
                    await cache.get(key)
                with pytest.raises(tierstack.InvalidKeyError):
                    await cache.mget([key])

    asyncio.run(main())
    assert origin.count() == 0


def test_a_rate_limit_opens_the_breaker_until_the_reset_then_probes(origin, open_github):
    cache = open_github(test_clock=True)
    # An hour ahead: the test clock (the wall-clock time of its first use,
    # moved on by seconds in the earlier tests) is still before it until
    # this test moves it there.
    reset = int(time.time()) + 3600
    rate_limit_fault(origin, reset)
    with pytest.raises(tierstack.SourceError, match="rate limit"):
        cache.get(BUTTON)
    status = cache.breaker_status()
    assert status["state"] == "open" and status["allows_request"] is False
    assert status["next_attempt_at"] == reset  # seconds since the epoch: reset * 1000 ms
    # The failure's time on the test clock, in ms: the reset is this far ahead.
    failed_at = status["last_failure_at"]
    assert failed_at is not None and failed_at < reset
    to_reset_ms = reset * 1000 - round(failed_at * 1000)

    for key in [BUTTON, "component:react:card", "components:react"]:
        with pytest.raises(tierstack.SourceUnavailableError):
            cache.get(key)
    assert origin.count() == 1

    # A millisecond before the reset: still no request.
    tierstack.advance_test_clock((to_reset_ms - 1) / 1000)
    with pytest.raises(tierstack.SourceUnavailableError):
        cache.get(BUTTON)
    assert origin.count() == 1

    # At it: one probe; success_threshold (2) successes close it.
    tierstack.advance_test_clock(0.001)
    assert first_line(cache.get(BUTTON)) == f"// {BASE}/ui/button.tsx"
    assert origin.count() == 2
    assert cache.breaker_status()["state"] == "half-open"
    assert cache.get("component:react:card") is not None
    assert cache.breaker_status()["state"] == "closed"
    assert [r["status"] for r in origin.requests()] == [403, 200, 200]


def test_a_429_with_retry_after_opens_the_breaker_for_that_long(origin, open_github):
    cache = open_github(test_clock=True)
    # A minute on: the test clock is then well away from the system clock, so
    # a Retry-After counted from the system clock would give another time.
    tierstack.advance_test_clock(60)
    origin.fault(status=429, headers=[["Retry-After", "30"]], times=1)
    with pytest.raises(tierstack.SourceError, match="rate limit"):
        cache.get(BUTTON)
    # 30 s from the failure's time on the test clock, to the millisecond.
    status = cache.breaker_status()
    failed_at, until = status["last_failure_at"], status["next_attempt_at"]
    assert status["state"] == "open"
    assert failed_at is not None and until is not None
    assert round(until * 1000) == round(failed_at * 1000) + 30_000, (failed_at, until)

    # Until then, to its last millisecond: no request.
    with pytest.raises(tierstack.SourceUnavailableError):
        cache.get(BUTTON)
    tierstack.advance_test_clock(29.999)
    with pytest.raises(tierstack.SourceUnavailableError):
        cache.get(BUTTON)
    assert origin.count() == 1

    # At it: one probe.
    tierstack.advance_test_clock(0.001)
    assert first_line(cache.get(BUTTON)) == f"// {BASE}/ui/button.tsx"
    assert cache.breaker_status()["state"] == "half-open"
    assert [r["status"] for r in origin.requests()] == [429, 200]


def test_the_rate_limit_figures_are_in_the_stats_and_shared_through_the_file(origin, open_github):
    reset = int(time.time()) + 3600
    origin.post("rate_limit", {"limit": 60, "remaining": 42, "reset": reset})
    cache = open_github()
    assert cache.stats()["source"]["rate_limit"] is None
    assert cache.get(BUTTON) is not None  # the raw host sends no figures
    assert cache.stats()["source"]["rate_limit"] is None
    assert cache.get("components:react") == COMPONENTS
    expected = {"limit": 60, "remaining": 41, "reset_at_ms": reset * 1000}
    assert cache.stats()["source"]["rate_limit"] == expected
    assert open_github().stats()["source"]["rate_limit"] == expected
    assert origin.count() == 2


def test_a_redirect_to_another_host_is_followed_without_the_token(origin, open_github, db_path):
    token = "ghp_redirect_test_token_0123456789"
    cache = open_github(github={"token": token})
    origin.fault(host="api", redirect=origin.other, times=1)
    # The listing goes to the api with the token and is sent on to the other
    # host (which serves the raw layout only: not found there).
    assert cache.get("components:react") is None
    assert first_line(cache.get(BUTTON)) == f"// {BASE}/ui/button.tsx"
    requests = origin.requests()
    assert [(r["host"], r["status"]) for r in requests] == [("api", 302), ("other", 404), ("raw", 200)]
    assert requests[0]["authorization"] == f"Bearer {token}"
    assert [r["authorization"] for r in requests[1:]] == [None, None]
    # Never shown: not in the repr, the stats, or the file.
    assert token not in repr(cache) and token not in json.dumps(cache.stats())
    cache.close()
    files = [p for p in Path(db_path).parent.iterdir() if p.is_file()]
    assert files and all(token.encode() not in p.read_bytes() for p in files)


def test_the_token_comes_from_the_environment_and_goes_to_the_api_only(origin, open_github, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "env-token-for-tests")
    cache = open_github()
    assert cache.get("blocks:react") == BLOCKS
    assert cache.get(BUTTON) is not None
    assert [(r["host"], r["authorization"]) for r in origin.requests()] == [
        ("api", "Bearer env-token-for-tests"),
        ("raw", None),
    ]


CHILD = """
import json, sys, tierstack
config = json.loads(sys.argv[1])
with tierstack.Cache(config) as cache:
    try:
        cache.get("component:react:card")
        kind = "ok"
    except tierstack.Error as err:
        kind = err.kind
    status = cache.breaker_status()
    print(json.dumps({"kind": kind, "state": status["state"], "next_attempt_at": status["next_attempt_at"]}))
"""


def run_child(config: Dict[str, Any]) -> Dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if name not in TOKEN_ENV}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_second_process_honours_the_first_ones_rate_limit(origin, open_github, db_path):
    cache = open_github()
    reset = int(time.time()) + 60
    rate_limit_fault(origin, reset)
    with pytest.raises(tierstack.SourceError, match="rate limit"):
        cache.get(BUTTON)
    assert origin.count() == 1

    config = github_config(origin, db_path)
    assert run_child(config) == {"kind": "source_unavailable", "state": "open", "next_attempt_at": reset}
    assert origin.count() == 1

    # A close by hand lifts the bar for every process.
    cache.breaker_close()
    assert run_child(config) == {"kind": "ok", "state": "closed", "next_attempt_at": None}
    assert [(r["path"], r["status"]) for r in origin.requests()] == [
        (f"/shadcn-ui/ui/main/{BASE}/ui/button.tsx", 403),
        (f"/shadcn-ui/ui/main/{BASE}/ui/card.tsx", 200),
    ]


def test_github_with_a_source_handed_in_is_a_config_error(origin, db_path):
    with pytest.raises(tierstack.InvalidConfigError):
        tierstack.Cache(github_config(origin, db_path), source=lambda key: tierstack.NOT_FOUND)
    assert origin.count() == 0


@pytest.mark.parametrize(
    "github, needle",
    [
        ({"api_url": "ftp://x"}, "github.api_url"),
        ({"raw_url": "not a url"}, "github.raw_url"),
        ({"timeout": 0}, "github.timeout"),
        ({"max_body_bytes": 0}, "github.max_body_bytes"),
        ({"routes": "nope"}, "preset"),
        ({"routes": []}, "github.routes is empty"),
        ({"routes": [{"key": "doc:{name}", "owner": "me", "repo": "docs"}]}, "github.routes[0]"),
        (
            {
                "routes": [
                    {"key": "doc:{name}", "owner": "me", "repo": "docs", "path": "{name}.md"},
                    {"key": "page:{nme}", "owner": "me", "repo": "docs", "path": "{name}.md"},
                ]
            },
            "github.routes[1]",
        ),
        ({"token": ""}, "github.token"),
        ({"tokn": "x"}, "tokn"),
    ],
)
def test_a_bad_github_config_is_refused_naming_the_key(db_path, github, needle):
    with pytest.raises(tierstack.InvalidConfigError) as raised:
        tierstack.Cache(sqlite={"path": db_path}, github=github)
    assert needle in str(raised.value)
    assert (raised.value.kind, raised.value.code) == ("invalid_config", 2)


def test_a_route_of_ones_own_loads_its_files(origin, open_github):
    origin.post("file", {"owner": "me", "repo": "docs", "ref": "main", "path": "pages/intro.md", "content": "# Intro"})
    routes = [
        {"key": "doc:{name}", "owner": "me", "repo": "docs", "ref": "main", "path": "pages/{name}.md"},
        {"key": "docs", "owner": "me", "repo": "docs", "ref": "main", "listing": "pages", "suffix": ".md"},
    ]
    cache = open_github(github={"routes": routes})
    assert cache.get("doc:intro") == "# Intro"
    assert cache.get_bytes("doc:intro") == b'"# Intro"'
    assert cache.get("docs") == ["intro"]
    assert cache.get(BUTTON) is None  # not routed here: no request
    assert [(r["host"], r["path"]) for r in origin.requests()] == [
        ("raw", "/me/docs/main/pages/intro.md"),
        ("api", "/repos/me/docs/contents/pages"),
    ]
