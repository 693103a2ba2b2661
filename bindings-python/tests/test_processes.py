"""Threads, fork, other processes, and the GIL released while the engine waits."""

import os
import signal
import subprocess
import sys
import threading
import time

import tierstack


def test_threads_share_one_cache(cache):
    errors = []
    start = threading.Barrier(8)

    def worker(n):
        try:
            start.wait()
            for i in range(300):
                own = f"t{n}:{i % 20}"
                cache.set(own, {"thread": n, "i": i})
                assert cache.get(own) == {"thread": n, "i": i}
                shared = cache.get("shared")
                assert shared in (None, {"v": 1}, {"v": 2})
                if i % 50 == 0:
                    cache.set("shared", {"v": 1 + n % 2})
                    assert cache.mget([own, "missing"]) == {own: {"thread": n, "i": i}}
                    assert cache.delete(own) is True
                    cache.set(own, {"thread": n, "i": i})
        except BaseException as exc:  # reported below, with the thread's number
            errors.append((n, exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.len() == 8 * 20 + 1
    for n in range(8):
        assert cache.get(f"t{n}:19") == {"thread": n, "i": 299}


def test_threads_on_a_memory_only_and_a_sqlite_only_cache(reopen):
    for c in (reopen(sqlite={"enabled": False}), reopen(memory={"enabled": False})):
        def worker(n):
            for i in range(200):
                c.set(f"{n}:{i}", [n, i])
                assert c.get(f"{n}:{i}") == [n, i]

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert c.len() == 800


def test_the_gil_is_released_while_a_write_waits_for_the_file(cache, write_lock):
    # A delete commits to the file; a set is journaled, and does not wait.
    cache.set("k", "v")
    release = write_lock()
    finished = threading.Event()

    def write():
        cache.delete("k")
        finished.set()

    writer = threading.Thread(target=write)
    started = time.monotonic()
    writer.start()
    time.sleep(0.05)  # the writer is now waiting for the lock (10 s at most)
    # Pure-Python work on this thread proceeds while the writer waits: were
    # the GIL held, this thread would stall until the writer gave up.
    count = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        count += 1
    assert time.monotonic() - started < 2
    assert not finished.is_set()
    assert count > 10_000
    release()
    writer.join()
    assert finished.is_set()
    assert cache.get("k") is None


def test_fork_child_reads_and_writes_through_the_parents_cache(cache, reopen):
    cache.set("from-parent", {"who": "parent"})
    assert cache.get("from-parent") == {"who": "parent"}  # kept in L1
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if everything worked
        status = 1
        try:
            ok = cache.get("from-parent") == {"who": "parent"}
            cache.set("from-child", {"who": "child"})
            ok = ok and cache.get("from-child") == {"who": "child"}
            ok = ok and cache.lookup("from-child").tier == "memory"
            ok = ok and cache.delete("from-parent") is True
            ok = ok and cache.keys() == ["from-child"]
            cache.flush()
            status = 0 if ok else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    # The parent keeps working and sees the child's writes in the file.
    found = cache.lookup("from-child")
    assert (found.value, found.tier) == ({"who": "child"}, "sqlite")
    assert reopen().get("from-parent") is None  # deleted in the file by the child
    cache.set("after-fork", 1)
    assert cache.get("after-fork") == 1
    assert reopen().mget(["after-fork", "from-child"]) == {"after-fork": 1, "from-child": {"who": "child"}}


def test_fork_while_other_threads_use_the_cache(cache):
    stop = threading.Event()

    def busy():
        i = 0
        while not stop.is_set():
            cache.set(f"busy:{i % 10}", i)
            cache.get(f"busy:{i % 10}")
            i += 1

    threads = [threading.Thread(target=busy) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        children = []
        for n in range(3):
            time.sleep(0.02)
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    cache.set(f"child:{n}", n)
                    status = 0 if cache.get(f"child:{n}") == n and cache.len() >= 1 else 2
                finally:
                    os._exit(status)
            children.append(pid)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert cache.mget([f"child:{n}" for n in range(3)]) == {"child:0": 0, "child:1": 1, "child:2": 2}


FORKS = 200
BUSY_KEYS = 64


def _wait_for_child(pid: int, seconds: float) -> "int | None":
    """The child's wait status, or ``None`` if it was still running after
    ``seconds`` (then it is killed)."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.001)


def _fork_child(cache, n):
    """What a forked child does; its exit status says how it went (0: every
    answer was right, 2-5: the first wrong one)."""
    status = 1
    try:
        cache.set(f"child:{n}", n)
        cache.set(f"child:{n}:gone", n)
        if not (cache.get("fixed") == {"from": "parent"} and cache.has("fixed")):
            status = 2
        elif cache.get(f"child:{n}") != n:
            status = 3
        elif not (cache.delete(f"child:{n}:gone") is True and cache.get(f"child:{n}:gone") is None):
            status = 4
        else:
            # The keys the parent's threads keep using (and go on writing
            # while the child runs): the child needs the very L1 shards they
            # lock.
            status = 0
            for i in range(BUSY_KEYS):
                cache.set(f"busy:{i}", f"child {n}")
                if cache.get(f"busy:{i}") not in (f"child {n}", "thread 0", "thread 1", "thread 2", None):
                    status = 5
    finally:
        os._exit(status)


def test_fork_200_times_while_threads_read_and_write(cache):
    """A child forked while other threads are inside the engine (holding its
    locks, without the GIL) gets a working cache: none hangs, each reads and
    writes right, and the parent goes on."""
    cache.set("fixed", {"from": "parent"})
    assert cache.get("fixed") == {"from": "parent"}  # in the parent's L1
    stop = threading.Event()
    errors = []

    def busy(t):
        i = 0
        try:
            while not stop.is_set():
                key = f"busy:{i % BUSY_KEYS}"
                op = (i + t) % 16
                if op == 0:
                    cache.set(key, f"thread {t}")
                elif op == 1:
                    cache.delete(key)
                elif op == 2:
                    assert cache.get("fixed") == {"from": "parent"}
                else:  # reads L1 without the GIL
                    cache.has(key)
                i += 1
        except BaseException as exc:
            errors.append((t, exc))

    threads = [threading.Thread(target=busy, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    hangs, failed = [], []
    try:
        for n in range(FORKS):
            pid = os.fork()
            if pid == 0:
                _fork_child(cache, n)
            status = _wait_for_child(pid, 10)
            if status is None:
                hangs.append(n)
            elif not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                failed.append((n, status))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert (hangs, failed, errors) == ([], [], [])
    # What the children wrote is in the file, and the parent still works.
    assert cache.mget([f"child:{n}" for n in range(FORKS)]) == {f"child:{n}": n for n in range(FORKS)}
    assert cache.mget([f"child:{n}:gone" for n in range(FORKS)]) == {}
    assert cache.get("fixed") == {"from": "parent"}


WRITER = """
import sys, tierstack
n = int(sys.argv[2])
with tierstack.Cache(sqlite={"path": sys.argv[1]}) as cache:
    for i in range(50):
        cache.set(f"p{n}:{i}", {"process": n, "i": i})
    cache.mset({f"p{n}:batch:{i}": i for i in range(10)})
"""


def test_processes_share_the_file(cache, db_path):
    cache.set("before", "parent")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, db_path, str(n)]) for n in range(3)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    assert cache.len() == 1 + 3 * 60
    for n in range(3):
        assert cache.get(f"p{n}:49") == {"process": n, "i": 49}
        assert cache.mget([f"p{n}:batch:{i}" for i in range(10)]) == {f"p{n}:batch:{i}": i for i in range(10)}
    reader = subprocess.run(
        [sys.executable, "-c", "import sys, tierstack; print(tierstack.Cache(sqlite={'path': sys.argv[1]}).get('before'))", db_path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert reader.stdout == "parent\n"
