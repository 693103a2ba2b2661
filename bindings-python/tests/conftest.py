"""Fixtures: a fresh SQLite file per test, a cache on it, a way to open
more caches on the same file (a new process's view: an empty L1), and
tierstack-origin (started once; tests reset it)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

import origin
import tierstack


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "cache.db")


@pytest.fixture
def cache(db_path: str) -> Iterator[tierstack.Cache]:
    with tierstack.Cache(sqlite={"path": db_path}) as opened:
        yield opened


@pytest.fixture
def reopen(db_path: str) -> Iterator[Callable[..., tierstack.Cache]]:
    opened: List[tierstack.Cache] = []

    def open_cache(**options: Any) -> tierstack.Cache:
        options.setdefault("sqlite", {"path": db_path})
        new = tierstack.Cache(**options)
        opened.append(new)
        return new

    yield open_cache
    for each in opened:
        each.close()


BLOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
"""


@pytest.fixture
def write_lock(db_path: str) -> Iterator[Callable[[], Callable[[], None]]]:
    """``write_lock()`` takes the file's write lock in another process (the
    locks of SQLite do not separate connections of two SQLite libraries in
    one process) and returns the function that releases it."""
    blockers: List["subprocess.Popen[str]"] = []

    def release(blocker: "subprocess.Popen[str]") -> None:
        if blocker.poll() is None:
            assert blocker.stdin is not None
            blocker.stdin.write("\n")
            blocker.stdin.flush()
            blocker.wait(timeout=10)

    def take() -> Callable[[], None]:
        blocker = subprocess.Popen(
            [sys.executable, "-c", BLOCKER, db_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        blockers.append(blocker)
        assert blocker.stdout is not None and blocker.stdout.readline() == "locked\n"
        return lambda: release(blocker)

    yield take
    for blocker in blockers:
        release(blocker)


@pytest.fixture(scope="session")
def origin_process() -> Iterator[origin.Origin]:
    """tierstack-origin, running for the whole session (see origin.py)."""
    if not os.environ.get("TIERSTACK_ORIGIN_BIN"):
        pytest.fail("TIERSTACK_ORIGIN_BIN is not set: run tests/run-python, which builds tierstack-origin")
    yield from origin.from_env()
