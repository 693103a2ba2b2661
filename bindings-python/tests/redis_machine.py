"""A "machine" of test_redis.py: a process with its own cache (its own L1
and its own L2 file) on a Redis shared with the other machines.

``python redis_machine.py <config JSON> [<raw URL>]`` opens
``tierstack.Cache(config, source=...)``. With a raw URL (tierstack-origin's
raw host), the source is a loader that fetches ``component:<name>`` from
``<raw>/shadcn-ui/ui/main/<BASE>/ui/<name>.tsx`` with urllib; without one,
it answers ``"origin of <key>"`` at once (its calls are counted in
``stats()["source"]["requests"]``); a config with a ``github`` section has
no source handed in.

Commands are JSON arrays, one a line on stdin; each answer is one line on
stdout, ``@`` followed by ``{"ok": result}`` or ``{"error": message}``:

- ``["get", key]``: ``[value, tier]`` of ``lookup(key)``, or ``null``.
- ``["set", key, value]``: ``null``.
- ``["poll", key, value]``: reads ``key`` until it is ``value`` (10 s at
  most); ``[seconds it took, tier of the read that saw it]``.
- ``["read", prefix, n]``: the values of ``<prefix>0`` ... ``<prefix>n-1``
  (``null`` for a miss).
- ``["arm", key, n]``: starts ``n`` threads that will each ``get(key)``
  once fired; ``null`` once they all wait.
- ``["fire"]``: releases the armed threads at once; their answers, in
  thread order.
- ``["stats"]``: ``stats()``.
- ``["quit"]``: closes the cache and exits.

The line ``@{"ok": "ready"}`` says the cache is open.
"""

import json
import sys
import threading
import time
import traceback
import urllib.request
from typing import Any, Callable, List, Optional

import tierstack

BASE = "apps/v4/registry/new-york-v4"
POLL_LIMIT = 10.0


def http_loader(raw: str) -> Callable[[str], Any]:
    def load(key: str) -> Any:
        name = key.split(":", 1)[1]
        url = f"{raw}/shadcn-ui/ui/main/{BASE}/ui/{name}.tsx"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    return load


def answer(result: Any = None, error: Optional[str] = None) -> None:
    line = {"error": error} if error is not None else {"ok": result}
    sys.stdout.write("@" + json.dumps(line) + "\n")
    sys.stdout.flush()


def poll(cache: tierstack.Cache, key: str, want: Any) -> List[Any]:
    start = time.perf_counter()
    while True:
        found = cache.lookup(key)
        if found is not None and found.value == want:
            return [time.perf_counter() - start, found.tier]
        if time.perf_counter() - start > POLL_LIMIT:
            raise AssertionError(f"{key} never became {want!r}: {found!r}")


class Burst:
    """``n`` threads, each to ``get(key)`` once fired."""

    def __init__(self, cache: tierstack.Cache, key: str, n: int) -> None:
        self.go = threading.Event()
        self.results: List[Any] = [None] * n
        waiting = threading.Barrier(n + 1)

        def read(i: int) -> None:
            waiting.wait()
            self.go.wait()
            try:
                self.results[i] = cache.get(key)
            except BaseException as exc:  # handed back in the answer
                self.results[i] = f"raised {exc!r}"

        self.threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
        for t in self.threads:
            t.start()
        waiting.wait()

    def fire(self) -> List[Any]:
        self.go.set()
        for t in self.threads:
            t.join()
        return self.results


def run(cache: tierstack.Cache, command: List[Any], armed: List[Burst]) -> Any:
    name, args = command[0], command[1:]
    if name == "get":
        found = cache.lookup(args[0])
        return None if found is None else [found.value, found.tier]
    if name == "set":
        cache.set(args[0], args[1])
        return None
    if name == "poll":
        return poll(cache, args[0], args[1])
    if name == "read":
        prefix, n = args
        return [cache.get(f"{prefix}{i}") for i in range(n)]
    if name == "arm":
        armed.append(Burst(cache, args[0], args[1]))
        return None
    if name == "fire":
        return armed.pop().fire()
    if name == "stats":
        return cache.stats()
    raise ValueError(f"unknown command {command!r}")


def main(config: Any, raw: Optional[str]) -> None:
    source: Any = None
    if raw is not None:
        source = http_loader(raw)
    elif "github" not in config:
        source = lambda key: f"origin of {key}"  # noqa: E731
    with tierstack.Cache(config, source=source) as cache:
        answer("ready")
        armed: List[Burst] = []
        for line in sys.stdin:
            command = json.loads(line)
            if command == ["quit"]:
                break
            try:
                result = run(cache, command, armed)
            except BaseException:  # handed back: the test fails with it
                answer(error=traceback.format_exc())
            else:
                answer(result)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
