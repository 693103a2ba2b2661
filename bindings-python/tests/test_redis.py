"""Many machines on one Redis. Each "machine" is a separate process with its
own L1 and its own L2 file: this test process (machine A) and children
running redis_machine.py, driven over their stdin. They share a real
redis-server that each test starts on a free loopback port (and kills at
the end). The backplane keeps their L1s and files coherent; the Redis lease
makes a missing key one origin request for all of them.

A read of Redis that races a change's arrival answers without keeping the
value (see the backplane's docs in core/src/backplane.rs), so a test that
expects a memory hit first waits until the machine has received the change,
reads once, then reads again (``settle``)."""

import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import tierstack
from origin import Origin

HERE = Path(__file__).resolve().parent
MACHINE = HERE / "redis_machine.py"
BASE = "apps/v4/registry/new-york-v4"

#: The bound on a change reaching another machine's reads, which the
#: backplane documents for a connected reader on a quiet network.
BOUND = 0.25

#: Trials of the bound test (a few seconds in all).
TRIALS = 500

#: How long the origin takes to answer: long enough that every caller of
#: both machines asks while the first load is under way.
ORIGIN_DELAY_MS = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own on a free loopback port, without
    persistence: a restart starts empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: Optional["subprocess.Popen[str]"] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts the server and returns once it accepts connections (its
        log says so)."""
        process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise AssertionError(f"redis-server on port {self.port} exited with {process.wait()} before it was ready")
        # Keep draining its log so that it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        self.process = process

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (tests/run-python installs it)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    yield server
    server.kill()


class Proxy:
    """A loopback TCP proxy to ``port``: ``cut`` drops every connection
    through it and refuses new ones until ``restore`` (a machine's network
    going away and coming back)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.lock = threading.Lock()
        self.sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.open:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        _shut_down(source, sink)

    def cut(self) -> None:
        """Drops every connection through the proxy and refuses new ones."""
        self.open = False
        with self.lock:
            held, self.sockets = self.sockets, []
        _shut_down(*held)

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _shut_down(*sockets: socket.socket) -> None:
    """Shuts each socket down both ways (one already closed is left)."""
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Machine:
    """A machine in a child process (redis_machine.py)."""

    def __init__(self, config: Dict[str, Any], raw: Optional[str] = None) -> None:
        args = [sys.executable, str(MACHINE), json.dumps(config)] + ([raw] if raw else [])
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.answer() == "ready"

    def send(self, *command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self) -> Any:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("@"):
                answer = json.loads(line[1:])
                if "error" in answer:
                    raise AssertionError(f"the machine failed:\n{answer['error']}")
                return answer["ok"]
        raise AssertionError(f"the machine exited with {self.process.wait()}")

    def ask(self, *command: Any) -> Any:
        self.send(*command)
        return self.answer()

    def get(self, key: str) -> Optional[Tuple[Any, str]]:
        """``(value, tier)`` of a read, or ``None`` on a miss."""
        found = self.ask("get", key)
        return None if found is None else (found[0], found[1])

    def set(self, key: str, value: Any) -> None:
        self.ask("set", key, value)

    def poll(self, key: str, value: Any) -> Tuple[float, str]:
        """Reads ``key`` until it is ``value``: how long that took (seconds),
        and the tier."""
        took, tier = self.ask("poll", key, value)
        return took, tier

    def read(self, prefix: str, n: int) -> List[Any]:
        return self.ask("read", prefix, n)  # type: ignore[no-any-return]

    def stats(self) -> Any:
        return self.ask("stats")

    def backplane(self) -> Any:
        return self.stats()["redis"]["backplane"]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@pytest.fixture
def machines() -> Iterator[Callable[..., Machine]]:
    """``machines(config, raw=None)`` starts a machine; each is stopped at
    the end."""
    started: List[Machine] = []

    def start(config: Dict[str, Any], raw: Optional[str] = None) -> Machine:
        machine = Machine(config, raw)
        started.append(machine)
        return machine

    yield start
    for machine in started:
        machine.close()


def config(db: Path, url: str, max_len: int = 100_000) -> Dict[str, Any]:
    """A machine's config. ``redis.timeout`` is raised from 0.25 s to 2 s:
    on a busy test host a slow answer would count as a failure, and a write
    that failed to reach Redis is announced again later as a delete, which
    changes the exact counts and values these tests assert. (A killed or
    cut-off Redis fails at once, whatever the timeout.)"""
    return {
        "namespace": "machines",
        "sqlite": {"path": str(db)},
        "ttl_jitter": 0.0,
        "redis": {"url": url, "backplane_max_len": max_len, "timeout": 2.0},
    }


class Here:
    """This process as machine A: its own file, the same Redis, a source
    answering ``"origin of <key>"`` that counts its calls."""

    def __init__(self, directory: Path, url: str, max_len: int = 100_000) -> None:
        self.loads = 0

        def load(key: str) -> str:
            self.loads += 1
            return f"origin of {key}"

        self.cache = tierstack.Cache(config(directory / "here.db", url, max_len), source=load)

    def backplane(self) -> Any:
        return self.cache.stats()["redis"]["backplane"]


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Callable[..., Here]]:
    opened: List[Here] = []

    def open_here(url: str, max_len: int = 100_000) -> Here:
        machine = Here(tmp_path, url, max_len)
        opened.append(machine)
        return machine

    yield open_here
    for machine in opened:
        machine.cache.close()


def wait_until(what: str, done: Callable[[], bool], seconds: float = 20, state: Callable[[], Any] = lambda: None) -> None:
    """Waits (up to ``seconds``) for ``done()``; else fails, showing ``state()``."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"never: {what} ({state()})"
        time.sleep(0.005)


def settle(machine: Machine, key: str, value: Any, received: int) -> None:
    """Waits until ``machine`` has heard of ``received`` changes, then checks
    that it serves ``key`` as ``value``, from memory after one read."""
    wait_until("the machine hears of every change", lambda: machine.backplane()["received"] == received)
    first = machine.get(key)
    assert first is not None and first[0] == value
    assert machine.get(key) == (value, "memory")


def test_the_redis_section_and_its_stats(redis_server, tmp_path):
    section: Dict[str, Any] = {
        "url": redis_server.url,
        "prefix": "typed:",
        "timeout": 0.5,
        "ttl": 60,
        "backplane": True,
        "backplane_max_len": 1000,
        "enabled": True,
    }
    assert set(section) == set(tierstack.RedisConfig.__annotations__)
    with tierstack.Cache(sqlite={"path": str(tmp_path / "a.db")}, redis=section) as cache:
        assert repr(cache) == f'<Cache memory=True sqlite="{tmp_path / "a.db"}" redis="{redis_server.url}" closed=False>'
        cache.set("k", {"v": 1})
        wait_until("the reader connects", lambda: cache.stats()["redis"]["backplane"]["connected"])
        with tierstack.Cache(sqlite={"path": str(tmp_path / "b.db")}, redis=section) as other:
            # Its reader starts a second before it opened: it hears of the set.
            wait_until("the other hears of the set", lambda: other.stats()["redis"]["backplane"]["received"] == 1)
            found = other.lookup("k")
            assert (found.value, found.tier, found.stale) == ({"v": 1}, "redis", False)
            assert other.lookup("k").tier == "memory"
        stats = cache.stats()
        # The stub's TypedDicts name every key the engine reports.
        assert set(stats) == set(tierstack.Stats.__annotations__)
        assert set(stats["source"]) == set(tierstack.SourceStats.__annotations__)
        assert set(stats["redis"]) == set(tierstack.RedisStats.__annotations__)
        assert set(stats["redis"]["backplane"]) == set(tierstack.BackplaneStats.__annotations__)
        assert stats["redis"]["breaker"] == cache.breaker_status()  # both closed, never failed
        assert [t["tier"] for t in stats["tiers"]] == ["memory", "sqlite", "redis"]
        assert (stats["redis"]["errors"], stats["redis"]["backplane"]["sent"]) == (0, 1)
    without = tierstack.Cache(sqlite={"enabled": False}, redis={"url": redis_server.url, "backplane": False})
    with without:
        assert without.stats()["redis"]["backplane"] is None
    with tierstack.Cache(sqlite={"enabled": False}, redis={"url": redis_server.url, "enabled": False}) as off:
        assert off.stats()["redis"] is None and "redis=" not in repr(off)


def test_a_password_in_the_url_never_shows(tmp_path):
    url = "redis://:hunter2@127.0.0.1:9/0"  # nothing listens: every call fails
    with tierstack.Cache(sqlite={"path": str(tmp_path / "a.db")}, redis={"url": url, "timeout": 0.05}) as cache:
        cache.set("k", 1)
        assert cache.get("k") == 1 and cache.get("missing") is None
        stats = cache.stats()
        assert stats["redis"]["errors"] >= 1
        assert "hunter2" not in repr(cache) and "hunter2" not in json.dumps(stats)
        assert 'redis="redis://:***@127.0.0.1:9/0"' in repr(cache)
        failed = stats["redis"]["breaker"]["last_failure_at"]
        assert isinstance(failed, float) and abs(failed - time.time()) < 60  # seconds, as breaker_status()
    for bad, needle in [
        ({"url": "http://:hunter2@h"}, 'redis.url "http://:***@h" must start with redis://'),
        ({"url": "redis://:hunter2@h", "tiemout": 1}, "unknown field `tiemout`"),
        ({"url": "redis://:hunter2@h", "backplane_max_len": 99}, "redis.backplane_max_len must be between 100"),
        ({"prefix": "p:"}, "missing field `url`"),
    ]:
        with pytest.raises(tierstack.InvalidConfigError) as raised:
            tierstack.Cache(sqlite={"enabled": False}, redis=bad)
        assert needle in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_set_on_one_machine_reaches_the_others_reads_within_the_bound(redis_server, here, machines, tmp_path, capsys):
    a = here(redis_server.url)
    b = machines(config(tmp_path / "b.db", redis_server.url))
    key = "component:card"
    a.cache.set(key, "v0")
    b.poll(key, "v0")
    settle(b, key, "v0", 1)

    lags = []
    for i in range(1, TRIALS + 1):
        a.cache.set(key, f"v{i}")
        took, tier = b.poll(key, f"v{i}")
        # Dropped from B's L1 and file by the backplane: read from Redis.
        assert tier == "redis", f"trial {i}"
        lags.append(took)
    lags.sort()
    worst = lags[-1]
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    with capsys.disabled():
        print(
            f"\na set on one machine, seen by the other's reads: median {ms(statistics.median(lags))}, "
            f"p99 {ms(lags[int(len(lags) * 0.99)])}, worst {ms(worst)} over {TRIALS} trials"
        )
    assert worst < BOUND, f"worst {ms(worst)} over the bound"
    # Once every change is in, B serves it from memory; no origin request.
    settle(b, key, f"v{TRIALS}", TRIALS + 1)
    stats = b.stats()
    assert (stats["redis"]["backplane"]["received"], stats["redis"]["backplane"]["resyncs"]) == (TRIALS + 1, 0)
    assert stats["source"]["requests"] == 0 and a.loads == 0
    assert a.backplane()["sent"] == TRIALS + 1


def test_redis_killed_mid_run_both_keep_serving_and_recover_when_it_returns(redis_server, here, machines, tmp_path):
    a = here(redis_server.url)
    b = machines(config(tmp_path / "b.db", redis_server.url))
    a.cache.set("before", "1")
    b.poll("before", "1")
    settle(b, "before", "1", 1)

    redis_server.kill()
    # Every call still answers, from L1, L2 or the origin; none raises.
    for i in range(50):
        a.cache.set(f"during{i}", "2")
        assert a.cache.lookup(f"during{i}").tier == "memory"
        assert b.get("before") == ("1", "memory")
        if i % 10 == 0:
            assert b.get(f"new{i}") == (f"origin of new{i}", "source")
    found = a.cache.lookup("from-a")
    assert (found.value, found.tier) == ("origin of from-a", "source")
    assert a.loads == 1
    assert b.stats()["source"]["requests"] == 5
    assert a.backplane()["connected"] is False
    assert b.backplane()["connected"] is False

    redis_server.restart()
    # Both readers reconnect; Redis lost the stream, so each empties its
    # tiers once; A delivers what Redis missed of its writes.
    wait_until("both reconnect", lambda: a.backplane()["connected"] and b.backplane()["connected"])
    wait_until("A delivers what Redis missed", lambda: a.backplane()["deferred"] > 0)
    assert a.backplane()["resyncs"] == 1
    assert b.backplane()["resyncs"] == 1
    assert a.cache.stats()["redis"]["breaker"]["state"] == "closed"
    assert b.stats()["redis"]["breaker"]["state"] == "closed"
    # B's tiers were emptied and the new Redis never held "before".
    assert b.get("before") == ("origin of before", "source")
    # And Redis carries changes again, both ways.
    a.cache.set("after", "3")
    took, tier = b.poll("after", "3")
    assert tier == "redis"
    assert took < BOUND
    b.set("from-b", "4")
    found = a.cache.lookup("from-b")
    assert (found.value, found.tier) == ("4", "redis")


def cut_off_machine(server: RedisServer, start: Callable[..., Machine], directory: Path, max_len: int) -> Tuple[Proxy, Machine]:
    """B behind a proxy the test cuts: B's network goes away while A writes."""
    proxy = Proxy(server.port)
    return proxy, start(config(directory / "b.db", proxy.url, max_len))


@pytest.fixture
def proxies() -> Iterator[List[Proxy]]:
    held: List[Proxy] = []
    yield held
    for proxy in held:
        proxy.close()


def test_a_machine_cut_off_replays_the_changes_it_missed(redis_server, here, machines, proxies, tmp_path):
    a = here(redis_server.url)
    proxy, b = cut_off_machine(redis_server, machines, tmp_path, 100_000)
    proxies.append(proxy)
    for i in range(1000):
        a.cache.set(f"k{i}", "old")
    # B holds every old value in its L1 and its file.
    wait_until("B's reader has read the writes", lambda: b.backplane()["received"] == 1000, state=lambda: (b.stats()["redis"], a.cache.stats()["redis"]))
    assert b.read("k", 1000) == ["old"] * 1000
    assert b.get("k7") == ("old", "memory")

    proxy.cut()
    for i in range(1000):
        a.cache.set(f"k{i}", f"new{i}")
    # Cut off, B serves what it holds.
    assert b.get("k7") == ("old", "memory")
    proxy.restore()
    wait_until("B replays", lambda: b.backplane()["replayed"] == 1000, state=lambda: (b.stats()["redis"], a.cache.stats()["redis"]))
    backplane = b.backplane()
    assert (backplane["received"], backplane["replayed"], backplane["resyncs"]) == (2000, 1000, 0)
    assert b.read("k", 1000) == [f"new{i}" for i in range(1000)], "B served an old value"
    assert b.stats()["source"]["requests"] == 0


def test_a_machine_away_past_the_trimmed_stream_empties_its_tiers(redis_server, here, machines, proxies, tmp_path):
    a = here(redis_server.url, max_len=100)
    proxy, b = cut_off_machine(redis_server, machines, tmp_path, 100)
    proxies.append(proxy)
    for i in range(50):
        a.cache.set(f"k{i}", "old")
    wait_until("B's reader has read the writes", lambda: b.backplane()["received"] == 50, state=lambda: (b.stats()["redis"], a.cache.stats()["redis"]))
    assert b.read("k", 50) == ["old"] * 50
    assert [(t["tier"], t["entries"]) for t in b.stats()["tiers"][:2]] == [("memory", 50), ("sqlite", 50)]

    proxy.cut()
    # Far more changes than the stream keeps: it is trimmed past B's place.
    for round in range(20):
        for i in range(50):
            a.cache.set(f"k{i}", f"new{round}")
    proxy.restore()
    wait_until("B resyncs", lambda: b.backplane()["resyncs"] == 1, state=lambda: (b.stats()["redis"], a.cache.stats()["redis"]))
    stats = b.stats()
    assert [(t["tier"], t["entries"]) for t in stats["tiers"][:2]] == [("memory", 0), ("sqlite", 0)], stats
    assert stats["redis"]["backplane"]["replayed"] == 0
    assert b.read("k", 50) == ["new19"] * 50
    assert b.stats()["source"]["requests"] == 0


@pytest.fixture
def origin(origin_process: Origin) -> Iterator[Origin]:
    """tierstack-origin, reset; at the end every request it logged has been
    answered."""
    origin_process.post("reset")
    yield origin_process
    wait_until("the origin answers", lambda: all(r["status"] != 0 for r in origin_process.requests()))


@pytest.mark.parametrize("loading", ["loader", "github"])
def test_fifty_callers_on_each_of_two_machines_make_one_origin_request(loading, redis_server, machines, origin, tmp_path):
    """Through a Python loader fetching from the origin with urllib, and
    through the ``github`` source."""
    origin.fault(delay_ms=ORIGIN_DELAY_MS)
    if loading == "loader":
        key, raw = "component:card", origin.raw
        extra: Dict[str, Any] = {}
    else:
        key, raw = "component:react:card", None
        extra = {"github": {"api_url": origin.api, "raw_url": origin.raw, "timeout": 5}}
    a, b = (machines({**config(tmp_path / f"{name}.db", redis_server.url), **extra}, raw) for name in "ab")
    a.ask("arm", key, 50)
    b.ask("arm", key, 50)
    a.send("fire")
    b.send("fire")
    answers = a.answer() + b.answer()
    assert len(answers) == 100 and len(set(answers)) == 1
    assert answers[0].startswith(f"// {BASE}/ui/card.tsx\n")
    requests = origin.requests()
    assert len(requests) == 1, requests
    sources = [m.stats()["source"] for m in (a, b)]
    assert sum(s["requests"] for s in sources) == 1
    assert sum(s["coalesced_machines"] for s in sources) == 1
    assert [s["coalesced"] for s in sources] == [49, 49]
