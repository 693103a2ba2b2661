"""tierstack.Cache: every method, JSON and bytes values, tiers, TTLs, tags."""

import json
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest

import tierstack

DOC = {"name": "Button", "files": ["a.tsx", "b.css"], "size": 1536, "draft": False, "nested": {"x": 1.5}}


def test_miss_set_hit(cache):
    assert cache.get("component:button") is None
    assert cache.get("component:button", "fallback") == "fallback"
    assert cache.get_bytes("component:button") is None
    assert cache.get_bytes("component:button", b"-") == b"-"
    assert cache.lookup("component:button") is None
    cache.set("component:button", DOC)
    assert cache.get("component:button") == DOC
    assert cache.get("component:button", "fallback") == DOC


@pytest.mark.parametrize(
    "value, stored",
    [
        (DOC, b'{"name":"Button","files":["a.tsx","b.css"],"size":1536,"draft":false,"nested":{"x":1.5}}'),
        ("värde ✓", '"värde ✓"'.encode()),
        (42, b"42"),
        (-1.25, b"-1.25"),
        (True, b"true"),
        (None, b"null"),
        ([1, [2, {"k": None}]], b'[1,[2,{"k":null}]]'),
        ({}, b"{}"),
        ("", b'""'),
    ],
)
def test_json_values_are_compact_utf8_json(cache, reopen, value, stored):
    cache.set("k", value)
    assert cache.get_bytes("k") == stored
    assert cache.get("k") == value
    assert reopen().get("k") == value


def test_json_has_no_tuples_and_only_string_keys(cache):
    cache.set("t", (1, 2))
    cache.set("d", {1: "a"})
    assert cache.get("t") == [1, 2]
    assert cache.get("d") == {"1": "a"}


def test_json_written_elsewhere_reads_as_objects(cache):
    cache.set("c-wrote", json.dumps(DOC, indent=2).encode())
    assert cache.get("c-wrote") == DOC


@pytest.mark.parametrize("value", [b"\x00\xffraw", bytearray(b"\x01\x02"), memoryview(b"view"), b""])
def test_bytes_like_values_are_stored_as_given(cache, reopen, value):
    cache.set("raw", value)
    assert cache.get_bytes("raw") == bytes(value)
    assert type(cache.get_bytes("raw")) is bytes
    assert reopen().get_bytes("raw") == bytes(value)


def test_decoded_values_are_kept_until_the_value_changes(cache):
    cache.set("k", {"v": 1})
    first = cache.get("k")
    assert cache.get("k") is first
    assert cache.lookup("k").value is first
    cache.set("k", {"v": 2})
    second = cache.get("k")
    assert second == {"v": 2} and second is not first
    assert cache.get("k") is second
    assert cache.get_bytes("k") is cache.get_bytes("k")
    assert cache.delete("k") is True
    assert cache.get("k") is None


def test_decoded_values_are_kept_for_every_value_l1_holds(reopen):
    # ~0.5 MiB of JSON in a 1 MiB L1: every value stays in L1, and every read
    # after the first returns the object the first one decoded.
    cache = reopen(memory={"max_bytes": 1 << 20}, sqlite={"enabled": False})
    values = {f"k{i:03}": {"i": i, "pad": "x" * 600} for i in range(700)}
    cache.mset(values)
    first = {key: cache.get(key) for key in values}
    assert first == values
    for key in values:
        assert cache.lookup(key).tier == "memory", key
        assert cache.get(key) is first[key], key


def test_kept_values_are_bounded_and_stay_right(reopen):
    # A 64 KiB L1 keeps decoded values for as many of the keys as it holds:
    # far fewer than the keys.
    small = reopen(memory={"max_bytes": 65536})
    values = {f"k{i}": {"i": i, "pad": "x" * 500} for i in range(200)}
    small.mset(values)
    for _ in range(3):
        for key, value in values.items():
            assert small.get(key) == value
    hot = small.get("k199")
    assert small.get("k199") is hot


def test_lookup_reports_tier_staleness_and_age(reopen):
    cache = reopen(test_clock=True)
    cache.set("k", DOC)
    found = cache.lookup("k")
    assert found == (DOC, "memory", False, 0.0)
    assert isinstance(found, tierstack.Lookup)
    assert tierstack.Lookup[bytes] is tierstack.Lookup  # generic in annotations
    tierstack.advance_test_clock(0.25)
    assert cache.lookup("k") == (DOC, "memory", False, 0.25)
    other = reopen(test_clock=True)
    assert other.lookup("k") == (DOC, "sqlite", False, 0.25)
    assert other.lookup("k") == (DOC, "memory", False, 0.25)
    raw = other.lookup_bytes("k")
    assert (raw.value, raw.tier, raw.stale) == (json.dumps(DOC, separators=(",", ":")).encode(), "memory", False)


def test_tiers_memory_then_sqlite_after_reopening(cache, reopen):
    cache.set("k", "v")
    assert cache.lookup("k").tier == "memory"
    cache.close()
    other = reopen()
    assert other.lookup("k").tier == "sqlite"
    assert other.lookup("k").tier == "memory"
    assert other.get("k") == "v"


def test_memory_only_and_sqlite_only(reopen, tmp_path):
    memory_only = reopen(sqlite={"enabled": False})
    memory_only.set("k", "v")
    assert memory_only.lookup("k").tier == "memory"
    memory_only.close()
    assert reopen(sqlite={"enabled": False}).get("k") is None

    sqlite_only = reopen(memory={"enabled": False})
    sqlite_only.set("k", {"a": 1})
    for _ in range(2):
        found = sqlite_only.lookup("k")
        assert (found.value, found.tier) == ({"a": 1}, "sqlite")
    assert sqlite_only.get("k") == {"a": 1}


def test_has_delete_contains(cache):
    assert cache.has("k") is False and "k" not in cache
    cache.set("k", 1)
    assert cache.has("k") is True and "k" in cache
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.has("k") is False


def test_mget_returns_the_found_keys_in_order(cache):
    cache.mset({"a": 1, "b": {"two": 2}, "c": "3"})
    cache.get("c")  # "c" is now kept, "a" and "b" are not
    assert list(cache.mget(["c", "missing", "b", "a"]).items()) == [("c", "3"), ("b", {"two": 2}), ("a", 1)]
    assert cache.mget([]) == {}
    assert cache.mget(iter(["a", "a"])) == {"a": 1}
    assert cache.mget(("missing",)) == {}
    assert cache.mget_bytes(["b", "x"]) == {"b": b'{"two":2}'}


def test_mget_after_reopening_reads_the_file_in_one_round(cache, reopen):
    cache.mset({"a": [1], "b": [2]})
    other = reopen()
    assert other.mget(["a", "b", "c"]) == {"a": [1], "b": [2]}
    assert other.lookup("a").tier == "memory"
    assert other.stats()["tiers"][1]["hits"] == 2


def test_mset_accepts_any_mapping_and_a_ttl_and_tags(cache):
    class Items:
        def items(self):
            return [("x", 1), ("y", b"raw")]

    cache.mset(Items())
    assert cache.get("x") == 1 and cache.get_bytes("y") == b"raw"
    cache.mset({"a": 1, "b": 2}, ttl=0.3, tags=["batch"])
    assert cache.mget(["a", "b"]) == {"a": 1, "b": 2}
    assert cache.invalidate_tag("batch") == 2
    assert cache.mget(["a", "b"]) == {}


def test_keys_len_clear(cache, reopen):
    cache.mset({"component:button": 1, "component:card": 2, "docs:intro": 3, "comp?x": 4})
    assert cache.keys("component:*") == ["component:button", "component:card"]
    assert cache.keys() == ["comp?x", "component:button", "component:card", "docs:intro"]
    assert cache.keys(None) == cache.keys("*")
    assert cache.keys("nothing*") == []
    assert cache.len() == 4 and len(cache) == 4
    cache.clear()
    assert cache.len() == 0 and len(cache) == 0 and bool(cache) is True
    assert cache.get("docs:intro") is None
    assert reopen().keys() == []


def test_ttl_expires_in_every_tier(reopen):
    cache = reopen(test_clock=True)
    cache.set("short", {"s": 1}, ttl=0.3)
    cache.set("long", "l", ttl=60)
    tierstack.advance_test_clock(0.299)
    assert cache.get("short") == {"s": 1}
    assert reopen(test_clock=True).get("short") == {"s": 1}
    tierstack.advance_test_clock(0.001)
    assert cache.get("short") is None
    assert cache.has("short") is False
    assert cache.lookup("short") is None
    assert cache.keys() == ["long"]
    assert cache.delete("short") is False
    assert reopen(test_clock=True).get("short") is None
    assert reopen(test_clock=True).get("long") == "l"


def test_ttl_of_zero_or_none_takes_the_tier_default(reopen, db_path):
    short = reopen(memory={"ttl": 0.3}, sqlite={"path": db_path, "ttl": 0.3}, test_clock=True)
    short.set("zero", 1, ttl=0)
    short.set("float-zero", 2, ttl=-0.0)
    short.set("none", 3, ttl=None)
    short.mset({"batch": 4}, ttl=0)
    short.set("long", 5, ttl=60)
    names = ["zero", "float-zero", "none", "batch"]
    tierstack.advance_test_clock(0.299)
    assert short.mget(names) == {"zero": 1, "float-zero": 2, "none": 3, "batch": 4}
    tierstack.advance_test_clock(0.001)
    assert short.mget(names) == {}
    assert short.get("long") == 5


def test_memory_ttl_bounds_l1_while_sqlite_keeps_the_entry(reopen):
    short = reopen(memory={"ttl": 0.3}, test_clock=True)
    short.set("k", {"v": 1})
    first = short.get("k")
    tierstack.advance_test_clock(0.299)
    assert short.lookup("k").tier == "memory"
    tierstack.advance_test_clock(0.001)
    found = short.lookup("k")
    assert (found.value, found.tier) == ({"v": 1}, "sqlite")
    assert short.get("k") == first


def test_tags_are_invalidated_in_every_tier(cache, reopen):
    cache.set("a", 1, tags=["ui", "button"])
    cache.set("b", 2, tags=("ui",))
    cache.set("c", 3)
    assert cache.get("a") == 1
    assert cache.invalidate_tag("ui") == 2
    assert cache.mget(["a", "b", "c"]) == {"c": 3}
    assert cache.invalidate_tag("ui") == 0
    assert cache.invalidate_tag("never-used") == 0
    assert reopen().mget(["a", "b", "c"]) == {"c": 3}


def test_tags_in_a_memory_only_cache(reopen):
    memory_only = reopen(sqlite={"enabled": False})
    memory_only.set("a", 1, tags=["t"])
    memory_only.set("b", 2)
    assert memory_only.invalidate_tag("t") == 1
    assert memory_only.keys() == ["b"]


def test_flush_makes_the_file_complete_without_its_wal(cache, db_path, tmp_path):
    cache.set("k", DOC)
    cache.flush()
    copy = tmp_path / "copy.db"
    shutil.copyfile(db_path, copy)
    other = tierstack.Cache(sqlite={"path": copy})
    assert other.get("k") == DOC
    other.close()


def test_the_file_is_shared_with_other_sqlite_readers(cache, db_path):
    cache.set("k", "v")
    cache.flush()
    # In another process: two SQLite libraries in one process do not see
    # each other's file locks.
    count = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM entries').fetchone())"
    reader = subprocess.run([sys.executable, "-c", count, db_path], capture_output=True, text=True, check=True)
    assert reader.stdout == "(1,)\n"


def test_stats_count_each_read_once(cache, reopen):
    cache.set("a", {"v": 1})
    for _ in range(3):
        assert cache.get("a") == {"v": 1}
    assert cache.get_bytes("a") is not None
    assert cache.lookup("a").tier == "memory"
    assert cache.get("missing") is None
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["sets"], stats["deletes"]) == (5, 1, 1, 0)
    assert stats["hit_rate"] == pytest.approx(5 / 6)
    memory, sqlite = stats["tiers"]
    assert (memory["tier"], memory["hits"], memory["misses"]) == ("memory", 5, 1)
    assert (sqlite["tier"], sqlite["hits"], sqlite["misses"]) == ("sqlite", 0, 1)
    assert sqlite["entries"] == 1 and memory["max_bytes"] == 52428800

    other = reopen()
    assert other.get("a") == {"v": 1}
    assert other.get("a") == {"v": 1}
    memory, sqlite = other.stats()["tiers"]
    assert (memory["hits"], memory["misses"], sqlite["hits"], sqlite["misses"]) == (1, 1, 1, 0)


def test_get_or_load_loads_once_and_stores(cache, reopen):
    calls = []

    def loader():
        calls.append(1)
        return {"loaded": len(calls)}

    assert cache.get_or_load("k", loader, ttl=60) == {"loaded": 1}
    assert cache.get_or_load("k", loader) == {"loaded": 1}
    assert calls == [1]
    assert reopen().get("k") == {"loaded": 1}


def test_get_or_load_honours_the_ttl(reopen):
    cache = reopen(test_clock=True, ttl_jitter=0, refresh_ahead=0)
    assert cache.get_or_load("k", lambda: "first", ttl=0.3) == "first"
    tierstack.advance_test_clock(0.299)
    assert cache.get_or_load("k", lambda: "second") == "first"
    tierstack.advance_test_clock(0.001)
    assert cache.get_or_load("k", lambda: "second") == "second"


@pytest.mark.parametrize(
    "ttl, error",
    [
        (-1, tierstack.InvalidArgumentError),
        (float("nan"), tierstack.InvalidArgumentError),
        (float("inf"), tierstack.InvalidArgumentError),
        (10**400, tierstack.InvalidArgumentError),
        ("60", TypeError),
    ],
    ids=["negative", "nan", "infinite", "too-large-for-a-float", "a-string"],
)
def test_get_or_load_refuses_a_bad_ttl_before_calling_the_loader(cache, ttl, error):
    calls = []

    def loader():
        calls.append(1)
        return "loaded"

    with pytest.raises(error):
        cache.get_or_load("k", loader, ttl=ttl)
    assert calls == []
    assert cache.get("k") is None
    # The same on a hit: a bad argument is refused whatever the cache holds.
    cache.set("k", "stored")
    with pytest.raises(error):
        cache.get_or_load("k", loader, ttl=ttl)
    assert calls == []
    # 0 and None take the tier defaults.
    assert cache.get_or_load("zero", loader, ttl=0) == "loaded"
    assert cache.get_or_load("none", loader) == "loaded"
    assert calls == [1, 1]


def test_get_or_load_stores_nothing_when_the_loader_fails(cache):
    def failing():
        raise LookupError("source down")

    with pytest.raises(tierstack.SourceError, match="LookupError: source down") as raised:
        cache.get_or_load("k", failing)
    assert type(raised.value.__cause__) is LookupError
    assert cache.has("k") is False
    assert cache.get_or_load("k", lambda: 5) == 5


def test_get_or_load_shares_one_load_between_threads(cache):
    calls = []
    started = threading.Barrier(8)

    def loader():
        calls.append(1)
        time.sleep(0.3)
        return {"from": "source"}

    results = []

    def worker():
        started.wait()
        results.append(cache.get_or_load("shared", loader))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [{"from": "source"}] * 8


def test_get_or_load_shares_the_failure_too(cache):
    started = threading.Barrier(4)

    def loader():
        time.sleep(0.3)
        raise TimeoutError("slow source")

    errors = []

    def worker():
        started.wait()
        try:
            cache.get_or_load("k", loader)
        except tierstack.SourceError as exc:
            errors.append(exc.__cause__)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and len({id(e) for e in errors}) == 1
    assert cache.has("k") is False


def test_the_breaker_is_closed_before_any_load(cache):
    assert cache.breaker_status() == {
        "state": "closed",
        "failure_count": 0,
        "allows_request": True,
        "last_failure_at": None,
        "next_attempt_at": None,
        "trips": 0,
    }


def test_close_and_context_manager(db_path):
    c = tierstack.Cache(sqlite={"path": db_path})
    assert c.closed is False
    c.set("k", 1)
    c.close()
    c.close()
    assert c.closed is True
    with tierstack.Cache(sqlite={"path": db_path}) as d:
        assert d.get("k") == 1
    assert d.closed is True
    with pytest.raises(KeyError):
        with tierstack.Cache(sqlite={"path": db_path}) as e:
            raise KeyError("inside")
    assert e.closed is True


def test_config_dict_and_keywords_merge(tmp_path):
    base = {"memory": {"max_bytes": 1 << 20, "ttl": 0.3}, "sqlite": {"path": str(tmp_path / "a.db")}}
    c = tierstack.Cache(base, memory={"ttl": 60}, namespace="merged", test_clock=True)
    assert base == {"memory": {"max_bytes": 1 << 20, "ttl": 0.3}, "sqlite": {"path": str(tmp_path / "a.db")}}
    assert c.stats()["tiers"][0]["max_bytes"] == 1 << 20
    c.set("k", 1)
    tierstack.advance_test_clock(0.3)
    assert c.lookup("k").tier == "memory"
    c.close()
    d = tierstack.Cache(config={"sqlite": {"path": pathlib.Path(tmp_path) / "b.db"}})
    d.set("k", 2)
    d.close()
    assert (tmp_path / "b.db").exists()
    e = tierstack.Cache(sqlite={"path": str(tmp_path / "b.db")}, memory={"enabled": False})
    assert e.get("k") == 2
    assert len(e.stats()["tiers"]) == 1
    e.close()


def test_default_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERSTACK_DB_PATH", str(tmp_path / "env.db"))
    with tierstack.Cache() as c:
        c.set("k", 1)
    assert (tmp_path / "env.db").exists()


def test_repr_names_the_file(cache, db_path):
    assert repr(cache) == f'<Cache memory=True sqlite="{db_path}" closed=False>'
    cache.close()
    assert repr(cache).endswith("closed=True>")
    assert repr(tierstack.AsyncCache(sqlite={"enabled": False})) == "<AsyncCache <Cache memory=True sqlite=None closed=False>>"


def test_cache_is_a_subclassable_type(db_path):
    class Named(tierstack.Cache):
        pass

    with Named(sqlite={"path": db_path}) as c:
        c.set("k", 1)
        assert c.get("k") == 1
        assert repr(c).startswith("<test_cache_is_a_subclassable_type.<locals>.Named ")


def test_the_test_clock_moves_only_when_advanced(reopen):
    clocked = reopen(test_clock=True)
    clocked.set("k", {"v": 1}, ttl=5)
    assert clocked.lookup("k") == ({"v": 1}, "memory", False, 0.0)
    time.sleep(0.05)  # real time passing does not move it
    tierstack.advance_test_clock(2.5)
    assert clocked.lookup("k") == ({"v": 1}, "memory", False, 2.5)  # the kept value's age
    assert reopen(test_clock=True).lookup("k") == ({"v": 1}, "sqlite", False, 2.5)
    tierstack.advance_test_clock(2.499)
    assert clocked.get("k") == {"v": 1}
    tierstack.advance_test_clock(0.001)
    assert clocked.get("k") is None
    assert reopen(test_clock=True).get("k") is None


@pytest.mark.parametrize("seconds", [-0.001, float("nan"), float("inf"), float("-inf"), 100 * 365 * 24 * 3600 + 1])
def test_advance_test_clock_refuses_what_is_no_step_forward(reopen, seconds):
    clocked = reopen(test_clock=True)
    clocked.set("k", 1, ttl=1)
    with pytest.raises(tierstack.InvalidArgumentError):
        tierstack.advance_test_clock(seconds)
    tierstack.advance_test_clock(0)
    assert clocked.get("k") == 1
    with pytest.raises(TypeError):
        tierstack.advance_test_clock("1")
