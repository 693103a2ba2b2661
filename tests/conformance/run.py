"""The Python conformance runner: runs the operation vectors on tierstack.Cache.

    .venv/bin/python tests/conformance/run.py tests/conformance/vectors/*.json

Prints ``ok <file>: <name>`` or ``FAIL <file>: <name>: step <i>: <what>`` per
vector and ``conformance: <passed> passed, <failed> failed`` last; exits 0
only when every vector passed. A vector whose step this machine does not
allow (``make_read_only`` mounts: root only) prints ``skip <file>: <name>:
<why>`` and counts neither way. Vector values are byte strings, so the runner
uses the raw-bytes calls (``set(key, bytes)``, ``get_bytes``,
``lookup_bytes``, ``mget_bytes``, ``get_or_load_bytes``,
``get_or_load_many_bytes``); ``set_json`` and ``get_json`` use the JSON
calls. ``advance`` moves the process's test clock
(``tierstack.advance_test_clock``), which the caches of a vector whose
config has ``"test_clock": true`` read. A vector's ``script`` is played by
one scripted loader (see :class:`Script`), the cache's ``source`` when
``read_through`` is true; a ``writable`` vector's source is a
:class:`WritableSource` (the script's ``load``, with ``store`` and
``remove`` recording the writes and refusing the first ``store_fail`` of
them).
"""

import copy
import ctypes
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import tierstack

ERRORS = {cls.kind: cls for cls in vars(tierstack).values() if isinstance(cls, type) and issubclass(cls, tierstack.Error) and hasattr(cls, "kind")}


class StepFailed(Exception):
    pass


class Skipped(Exception):
    """The vector needs what this machine does not allow."""


_LIBC = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MNT_DETACH = 1, 32, 4096, 2


def _mount(source: str, target: str, flags: int) -> None:
    if _LIBC.mount(source.encode(), target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        errno = ctypes.get_errno()
        raise Skipped(f"make_read_only: mounting {target} read-only is not permitted here: {os.strerror(errno)}")


def same(got: Any, expected: Any) -> bool:
    """JSON equality: like ``==``, except that booleans equal only booleans."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in got)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(same(g, e) for g, e in zip(got, expected))
    return type(got) in (int, float, str, type(None)) and got == expected


TTL_NAMES = {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf}


def ttl_of(step: Dict[str, Any]) -> Optional[float]:
    """The step's ``ttl``: absent, a number, or one of the strings ``"NaN"``,
    ``"inf"``, ``"-inf"`` for the values JSON cannot hold."""
    ttl = step.get("ttl")
    if isinstance(ttl, str):
        if ttl not in TTL_NAMES:
            raise StepFailed(f"ttl {ttl!r} is neither a number nor one of {sorted(TTL_NAMES)}")
        return TTL_NAMES[ttl]
    return ttl


def text(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else value.decode("utf-8")


class Script:
    """The scripted loader of a vector: each call (from any thread) takes
    the next answer; past the end it raises ``script exhausted``."""

    def __init__(self, answers: List[Dict[str, Any]], store_fail: int = 0) -> None:
        self.answers = answers
        self.calls = 0
        self.store_fail = store_fail
        """Source writes still to refuse."""
        self.writes: List[List[Optional[str]]] = []
        """The source's writes, in order."""
        self.lock = threading.Lock()
        self.handed: Optional[List[str]] = None
        """The keys the last batch call was handed."""

    def next(self) -> Dict[str, Any]:
        with self.lock:
            self.calls += 1
            if self.calls > len(self.answers):
                raise RuntimeError("script exhausted")
            answer = self.answers[self.calls - 1]
        if "delay" in answer:
            time.sleep(answer["delay"])
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def load(self, key: str) -> Any:
        answer = self.next()
        if answer.get("not_found"):
            return tierstack.NOT_FOUND
        value = answer["value"].encode("utf-8")
        if "ttl" in answer or "tags" in answer:
            return tierstack.Loaded(value, ttl=answer.get("ttl"), tags=answer.get("tags"))
        return value

    def write(self, key: str, value: Optional[bytes]) -> None:
        """A source write: refused while ``store_fail`` lasts, else
        recorded as ``[key, value]`` (``value`` ``None`` for a remove)."""
        with self.lock:
            if self.store_fail > 0:
                self.store_fail -= 1
                raise RuntimeError("store refused")
            self.writes.append([key, text(value)])

    def load_many(self, keys: List[str]) -> Dict[str, Any]:
        self.handed = sorted(keys)
        answer = self.next()
        return {key: value.encode("utf-8") for key, value in answer["values"].items()}


def failure(step: Dict[str, Any], run: Any) -> Optional[str]:
    """What is wrong with ``run()``'s outcome for ``step`` (its ``expect``
    or ``error``), or ``None``."""
    expected_error = step.get("error")
    try:
        result = run()
    except tierstack.Error as err:
        wanted = ERRORS.get(expected_error) if expected_error else None
        if wanted is None or type(err) is not wanted or err.kind != expected_error:
            return f"{step['op']} raised {type(err).__name__} ({err.kind}: {err})"
        return None
    if expected_error:
        return f"{step['op']} succeeded, expected {expected_error}"
    if "expect" in step and not same(result, step["expect"]):
        return f"{step['op']} gave {result!r}, expected {step['expect']!r}"
    return None


def fields(got: Dict[str, Any], expected: Any) -> Dict[str, Any]:
    """``got`` cut to the fields ``expected`` names (all if it is no dict)."""
    if not isinstance(expected, dict):
        return got
    return {name: value for name, value in got.items() if name in expected}


class WritableSource:
    """A vector's source that stores and removes (``writable``): its loads
    are the script's, its writes :meth:`Script.write`'s."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def load(self, key: str) -> Any:
        return self.script.load(key)

    def store(self, key: str, value: bytes) -> None:
        self.script.write(key, value)

    def remove(self, key: str) -> None:
        self.script.write(key, None)


OUTBOX_FIELDS = ("durable", "pending", "retrying", "retries", "delivered", "dead")


class Runner:
    """One vector's state: its directory, config, script and open cache."""

    def __init__(self, directory: Path, vector: Dict[str, Any]) -> None:
        self.directory = directory
        self.vector_config = vector.get("config", {})
        self.config = self.vector_config
        self.script = Script(vector.get("script", []), vector.get("store_fail", 0))
        self.read_through = bool(vector.get("read_through"))
        self.writable = bool(vector.get("writable"))
        self.cache: Optional[tierstack.Cache] = None
        self.mounted = False

    def with_path(self, config: Dict[str, Any]) -> Dict[str, Any]:
        config = copy.deepcopy(config)
        sqlite = config.setdefault("sqlite", {})
        if isinstance(sqlite, dict) and sqlite.get("enabled", True) is not False:
            sqlite.setdefault("path", str(self.directory / "cache.db"))
        return config

    def open(self, config: Dict[str, Any]) -> None:
        source: Any = None
        if self.writable:
            source = WritableSource(self.script)
        elif self.read_through:
            source = self.script.load
        self.cache = tierstack.Cache(self.with_path(config), source=source)
        self.config = config

    def step(self, step: Dict[str, Any]) -> Any:
        op = step["op"]
        if op == "open":
            return self.open(step.get("config", self.vector_config))
        if op == "sleep":
            return time.sleep(step["seconds"])
        if op == "advance":
            return tierstack.advance_test_clock(step["seconds"])
        if op == "make_read_only":
            # A read-only bind mount of the directory onto itself.
            _mount(str(self.directory), str(self.directory), _MS_BIND)
            self.mounted = True
            return _mount("none", str(self.directory), _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        cache = self.cache
        if cache is None:
            raise StepFailed("no cache is open")
        if op == "reopen":
            cache.close()
            return self.open(self.config)
        if op == "close":
            return cache.close()
        if op == "set":
            return cache.set(step["key"], step["value"].encode("utf-8"), ttl=ttl_of(step), tags=step.get("tags"))
        if op == "get":
            return text(cache.get_bytes(step["key"]))
        if op == "lookup":
            found = cache.lookup_bytes(step["key"])
            if found is None:
                return None
            got = {"value": text(found.value), "tier": found.tier, "stale": found.stale}
            expected = step.get("expect")
            return fields(got, {"value": 0, "tier": 0, **(expected if isinstance(expected, dict) else {})})
        if op == "has":
            return cache.has(step["key"])
        if op == "delete":
            return cache.delete(step["key"])
        if op == "mget":
            return {key: text(value) for key, value in cache.mget_bytes(step["keys"]).items()}
        if op == "mset":
            entries = {key: value.encode("utf-8") for key, value in step["entries"].items()}
            return cache.mset(entries, ttl=ttl_of(step))
        if op == "keys":
            return cache.keys(step["pattern"])
        if op == "len":
            return cache.len()
        if op == "clear":
            return cache.clear()
        if op == "set_json":
            return cache.set(step["key"], step["json"])
        if op == "get_json":
            return cache.get(step["key"])
        if op == "get_or_load":
            return text(cache.get_or_load_bytes(step["key"], self.script.load, ttl=ttl_of(step)))
        if op == "get_or_load_many":
            self.script.handed = None
            found = cache.get_or_load_many_bytes(step["keys"], self.script.load_many, ttl=ttl_of(step))
            if "loader_keys" in step and self.script.handed != step["loader_keys"]:
                raise StepFailed(f"the loader was handed {self.script.handed!r}, expected {step['loader_keys']!r}")
            return {key: text(value) for key, value in found.items()}
        if op == "loader_calls":
            return self.script.calls
        if op == "concurrent":
            return self.concurrent(step["step"], step["times"])
        if op == "breaker":
            return fields(dict(cache.breaker_status()), step.get("expect"))
        if op == "invalidate_tag":
            return cache.invalidate_tag(step["tag"])
        if op == "flush":
            return cache.flush()
        if op == "source_writes":
            return self.script.writes
        if op == "outbox":
            stats = cache.outbox_stats()
            got = {name: None if stats is None else stats[name] for name in OUTBOX_FIELDS}
            return fields(got, step.get("expect"))
        if op == "dead_letters":
            return [{"key": d["key"], "op": d["op"], "attempts": d["attempts"]} for d in cache.dead_letters()]
        if op == "retry_dead_letters":
            return cache.retry_dead_letters()
        if op == "purge_dead_letters":
            return cache.purge_dead_letters()
        if op == "breaker_open":
            return cache.breaker_open()
        if op == "breaker_close":
            return cache.breaker_close()
        raise StepFailed(f"unknown op {op!r}")

    def concurrent(self, step: Dict[str, Any], times: int) -> None:
        """Runs ``step`` on ``times`` threads at once; every outcome must be
        the step's."""
        start = threading.Barrier(times)
        problems: List[str] = []

        def one() -> None:
            start.wait()
            try:
                problem = failure(step, lambda: self.step(step))
            except Exception as err:
                problem = f"{step['op']} raised {type(err).__name__}: {err}"
            if problem is not None:
                problems.append(problem)

        threads = [threading.Thread(target=one) for _ in range(times)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if problems:
            raise StepFailed(f"{len(problems)} of {times} concurrent calls: {problems[0]}")

    def close(self) -> None:
        try:
            if self.cache is not None:
                self.cache.close()
        finally:
            if self.mounted:
                _LIBC.umount2(str(self.directory).encode(), _MNT_DETACH)


def run_vector(vector: Dict[str, Any]) -> Optional[str]:
    """``None`` if the vector passed, else what went wrong; raises
    :class:`Skipped` if it cannot run here."""
    with tempfile.TemporaryDirectory(prefix="tierstack-conformance-") as directory:
        runner = Runner(Path(directory), vector)
        try:
            runner.open(runner.config)
            for i, step in enumerate(vector["steps"]):
                try:
                    problem = failure(step, lambda: runner.step(step))
                except Skipped:
                    raise
                except StepFailed as failed:
                    return f"step {i}: {failed}"
                except Exception as err:
                    return f"step {i}: {step['op']} raised {type(err).__name__}: {err}"
                if problem is not None:
                    return f"step {i}: {problem}"
        except Skipped:
            raise
        except Exception as err:
            return f"setup: {type(err).__name__}: {err}"
        finally:
            runner.close()
    return None


def main(paths: List[str]) -> int:
    passed = failed = 0
    for path in paths:
        name = Path(path).name
        for vector in json.loads(Path(path).read_text(encoding="utf-8"))["vectors"]:
            try:
                problem = run_vector(vector)
            except Skipped as why:
                print(f"skip {name}: {vector['name']}: {why}")
                continue
            if problem is None:
                passed += 1
                print(f"ok {name}: {vector['name']}")
            else:
                failed += 1
                print(f"FAIL {name}: {vector['name']}: {problem}")
    print(f"conformance: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
