"""Every error kind reachable from Python, and TypeError for wrong types.

A refused call changes nothing that is stored. ``internal`` (a bug) has no
way to be provoked from outside.
"""

import errno
import math
import os
import re
import sqlite3
import sys
from contextlib import closing
from fractions import Fraction

import pytest

import tierstack

BAD_INPUT = {tierstack.InvalidKeyError, tierstack.InvalidConfigError, tierstack.InvalidArgumentError, tierstack.InvalidValueError}
"""The kinds whose classes are also ``ValueError``."""


def class_name(kind):
    return "".join(word.capitalize() for word in kind.split("_")) + "Error"


def test_error_kinds_are_the_engines_in_code_order():
    kinds = tierstack.ERROR_KINDS
    assert type(kinds) is tuple and len(kinds) == len(set(kinds)) >= 14
    assert kinds[0] == "invalid_key" and kinds.index("timeout") == 13
    assert "ERROR_KINDS" in tierstack.__all__


@pytest.mark.parametrize("kind", tierstack.ERROR_KINDS)
def test_one_class_per_kind(kind):
    name = class_name(kind)
    cls = getattr(tierstack, name)
    assert issubclass(cls, tierstack.Error) and issubclass(cls, Exception)
    assert issubclass(cls, ValueError) is (cls in BAD_INPUT)
    assert (cls.kind, cls.code) == (kind, tierstack.ERROR_KINDS.index(kind) + 1)
    assert name in tierstack.__all__


def test_every_error_class_has_a_kind():
    classes = {cls for cls in vars(tierstack).values() if isinstance(cls, type) and issubclass(cls, tierstack.Error)}
    assert classes - {tierstack.Error} == {getattr(tierstack, class_name(kind)) for kind in tierstack.ERROR_KINDS}


def test_a_kind_without_a_class_or_a_class_without_a_kind_fails_the_import():
    known = tuple((kind, code, class_name(kind)) for code, kind in enumerate(tierstack.ERROR_KINDS, 1))
    added = known + (("out_of_paper", 99, "OutOfPaperError"),)
    with pytest.raises(ImportError, match=r"^tierstack has no class OutOfPaperError for the engine's error kind 'out_of_paper' \(code 99\)$"):
        tierstack._bind_error_kinds(added)
    with pytest.raises(ImportError, match=r"^tierstack's TimeoutError match no error kind of the engine$"):
        tierstack._bind_error_kinds(known[:-1])
    tierstack._bind_error_kinds(known)
    assert (tierstack.TimeoutError.kind, tierstack.TimeoutError.code) == ("timeout", 14)


def raises(cls, call, *args, **kwargs):
    """Runs the call, checks it raised exactly ``cls`` with the class's kind and code."""
    with pytest.raises(cls) as info:
        call(*args, **kwargs)
    err = info.value
    assert type(err) is cls
    assert (err.kind, err.code) == (cls.kind, cls.code)
    return err


BAD_KEYS = ["", "k" * 256, "tab\there", "new\nline", "nul\x00byte", "\x7f", "\x85next-line", "lone\ud800surrogate"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused_by_every_operation(cache, key):
    cache.set("good", "kept")
    raises(tierstack.InvalidKeyError, cache.set, key, "x")
    raises(tierstack.InvalidKeyError, cache.get, key)
    raises(tierstack.InvalidKeyError, cache.get_bytes, key)
    raises(tierstack.InvalidKeyError, cache.lookup, key)
    raises(tierstack.InvalidKeyError, cache.lookup_bytes, key)
    raises(tierstack.InvalidKeyError, cache.has, key)
    raises(tierstack.InvalidKeyError, cache.delete, key)
    raises(tierstack.InvalidKeyError, cache.get_or_load, key, lambda: 1)
    raises(tierstack.InvalidKeyError, cache.mget, ["good", key])
    raises(tierstack.InvalidKeyError, cache.mget_bytes, [key])
    raises(tierstack.InvalidKeyError, cache.mset, {"fine": 1, key: 2})
    assert cache.keys() == ["good"]
    assert cache.get("good") == "kept"


def test_a_key_of_255_bytes_is_accepted(cache):
    cache.set("k" * 255, 1)
    assert cache.get("k" * 255) == 1
    cache.set("é" * 127, 2)  # 254 bytes of UTF-8
    assert cache.get("é" * 127) == 2
    raises(tierstack.InvalidKeyError, cache.set, "é" * 128, 3)


def test_lone_surrogates_say_why(cache):
    err = raises(tierstack.InvalidKeyError, cache.get, "\udc80")
    assert "lone surrogates" in str(err)
    assert isinstance(err.__cause__, UnicodeEncodeError)


@pytest.mark.parametrize(
    "config",
    [
        {"memroy": {}},
        {"memory": {"max_size": 1}},
        {"memory": {"max_bytes": -1}},
        {"memory": {"max_bytes": "big"}},
        {"memory": {"max_bytes": 0}},
        {"memory": {"ttl": 0}},
        {"memory": {"enabled": False}, "sqlite": {"enabled": False}},
        {"sqlite": {"ttl": -1}},
        {"sqlite": {"path": ""}},
        {"namespace": 7},
        {"namespace": "../etc"},
        {"memory": {"ttl": math.nan}},
        {"memory": {"ttl": object()}},
        {1: {}},
        {"memory": "on"},
    ],
)
def test_bad_configs(config, tmp_path):
    config = {**config, "sqlite": {"path": str(tmp_path / "c.db"), **config.get("sqlite", {})}}
    raises(tierstack.InvalidConfigError, tierstack.Cache, config)
    raises(tierstack.InvalidConfigError, tierstack.AsyncCache, config)


def test_bad_config_keywords(tmp_path):
    err = raises(tierstack.InvalidConfigError, tierstack.Cache, memroy={})
    assert "memroy" in str(err)
    raises(tierstack.InvalidConfigError, tierstack.Cache, {"sqlite": {"path": str(tmp_path / "c.db")}}, fail_safe={"max_stale": -1})


def test_wrong_config_types_are_type_errors(tmp_path):
    with pytest.raises(TypeError):
        tierstack.Cache("memory")
    with pytest.raises(TypeError):
        tierstack.Cache([("memory", {})])
    with pytest.raises(TypeError):
        tierstack.Cache({}, config={})


UNUSABLE_TTLS = [
    -1,
    -1e-9,
    -86400.5,
    -math.inf,
    math.nan,
    math.inf,
    1e12,
    1e20,
    100 * 365 * 24 * 3600 + 1,
    sys.float_info.max,
    10**400,
    -(10**400),
    Fraction(10**400, 3),
]


@pytest.mark.parametrize("ttl", UNUSABLE_TTLS, ids=repr)
def test_unusable_ttls_are_invalid_arguments_and_store_nothing(cache, ttl):
    cache.set("k", "old")
    raises(tierstack.InvalidArgumentError, cache.set, "k", "v", ttl=ttl)
    raises(tierstack.InvalidArgumentError, cache.set, "other", "v", ttl=ttl)
    raises(tierstack.InvalidArgumentError, cache.mset, {"k": "v", "other": "v"}, ttl=ttl)
    raises(tierstack.InvalidArgumentError, cache.get_or_load, "other", lambda: "v", ttl=ttl)
    assert cache.mget(["k", "other"]) == {"k": "old"}


def test_an_int_too_large_for_a_float_says_so():
    with tierstack.Cache(sqlite={"enabled": False}) as cache:
        err = raises(tierstack.InvalidArgumentError, cache.set, "k", "v", ttl=10**400)
    assert "too large for a float" in str(err)
    assert isinstance(err.__cause__, OverflowError)


def test_no_ttl_raises_a_panic():
    """Whatever the number, a TTL is taken or refused with a tierstack error:
    never a pyo3 PanicException (a BaseException that ``except Exception``
    does not catch)."""
    values = [0.0, -0.0, 5e-324, -5e-324, sys.float_info.min, 1.0, 100 * 365 * 24 * 3600]
    values += [sign * 10.0**exponent for sign in (1, -1) for exponent in range(-320, 309)]
    values += [sign * 2.0**exponent for sign in (1, -1) for exponent in range(-1074, 1024)]
    values += [math.nan, math.inf, -math.inf, sys.float_info.max, -sys.float_info.max]
    with tierstack.Cache(sqlite={"enabled": False}) as cache:
        for ttl in values:
            try:
                cache.set("k", 1, ttl=ttl)
                cache.mset({"k": 1}, ttl=ttl)
            except tierstack.InvalidArgumentError:
                assert not 0 <= ttl <= 100 * 365 * 24 * 3600, ttl
            except BaseException as exc:  # a PanicException included
                pytest.fail(f"ttl={ttl!r} raised {type(exc).__name__}: {exc}")
            else:
                assert 0 <= ttl <= 100 * 365 * 24 * 3600, ttl


@pytest.mark.parametrize("tag", ["", "t" * 256, "tab\t", "\ud800"])
def test_bad_tags(cache, tag):
    raises(tierstack.InvalidArgumentError, cache.set, "k", "v", tags=["fine", tag])
    raises(tierstack.InvalidArgumentError, cache.invalidate_tag, tag)
    assert cache.has("k") is False


@pytest.mark.parametrize("pattern", ["nul\x00", "x" * 1021, "\ud800*"])
def test_bad_patterns(cache, pattern):
    raises(tierstack.InvalidArgumentError, cache.keys, pattern)


def test_value_over_the_l2_budget(tmp_path):
    with tierstack.Cache(sqlite={"path": str(tmp_path / "c.db"), "max_bytes": 1000}) as c:
        raises(tierstack.InvalidArgumentError, c.set, "k", b"x" * 2000)
        raises(tierstack.InvalidArgumentError, c.set, "k", "x" * 2000)
        assert c.has("k") is False


def test_a_value_no_enabled_tier_can_hold_is_refused_and_the_old_value_kept():
    with tierstack.Cache(memory={"max_bytes": 65536}, sqlite={"enabled": False}) as c:
        c.set("k", "old")
        err = raises(tierstack.InvalidArgumentError, c.set, "k", b"x" * 100_000)
        assert re.fullmatch(
            r'value for "k" needs 100097 bytes in L1, over the \d+ bytes one L1 entry may take '
            r"\(memory.max_bytes is 65536, split over \d+ shards\); sqlite is disabled, so no tier can hold it",
            str(err),
        ), str(err)
        raises(tierstack.InvalidArgumentError, c.set, "k", "x" * 100_000)
        raises(tierstack.InvalidArgumentError, c.mset, {"small": "s", "k": "x" * 100_000})
        assert (c.get("k"), c.get("small"), c.keys()) == ("old", None, ["k"])
        # Loaded, the value is answered, not stored, and counted.
        loaded = c.get_or_load_bytes("big", lambda: b"x" * 100_000)
        assert loaded == b"x" * 100_000
        assert (c.has("big"), c.stats()["not_stored"], c.stats()["sets"]) == (False, 1, 1)


def test_closed_cache_refuses_everything(cache):
    cache.set("k", "v")
    cache.close()
    for call, args in [
        (cache.get, ("k",)),
        (cache.get_bytes, ("k",)),
        (cache.lookup, ("k",)),
        (cache.lookup_bytes, ("k",)),
        (cache.set, ("k", "w")),
        (cache.mset, ({"k": "w"},)),
        (cache.delete, ("k",)),
        (cache.has, ("k",)),
        (cache.mget, (["k"],)),
        (cache.mget_bytes, (["k"],)),
        (cache.keys, ()),
        (cache.len, ()),
        (len, (cache,)),
        (cache.clear, ()),
        (cache.invalidate_tag, ("t",)),
        (cache.flush, ()),
        (cache.get_or_load, ("k", lambda: 1)),
    ]:
        raises(tierstack.ClosedError, call, *args)
    cache.close()
    assert cache.closed is True
    assert cache.stats()["sets"] == 1


def test_io_error_with_the_reason_when_the_path_is_a_directory(tmp_path):
    err = raises(tierstack.IoError, tierstack.Cache, sqlite={"path": str(tmp_path)})
    assert "Is a directory" in str(err)
    assert type(err.__cause__) is IsADirectoryError
    assert (err.__cause__.errno, err.__cause__.strerror) == (errno.EISDIR, os.strerror(errno.EISDIR))


def test_io_error_when_the_directory_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    err = raises(tierstack.IoError, tierstack.Cache, sqlite={"path": str(tmp_path / "file" / "c.db")})
    assert type(err.__cause__) is NotADirectoryError and err.__cause__.errno == errno.ENOTDIR


def test_corrupt_files_are_refused_and_left_untouched(tmp_path):
    garbage = tmp_path / "garbage.db"
    content = os.urandom(8192)
    garbage.write_bytes(content)
    raises(tierstack.CorruptError, tierstack.Cache, sqlite={"path": str(garbage)})
    assert garbage.read_bytes() == content

    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE notes (body TEXT)")
        con.commit()
    err = raises(tierstack.CorruptError, tierstack.Cache, sqlite={"path": str(other)})
    assert "another program" in str(err)


def test_files_of_a_newer_version_are_incompatible(tmp_path):
    path = tmp_path / "newer.db"
    tierstack.Cache(sqlite={"path": str(path)}).close()
    with closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA user_version = 99")
    err = raises(tierstack.IncompatibleError, tierstack.Cache, sqlite={"path": str(path)})
    assert "schema version 99" in str(err)


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"plain text", b"{'a': 1}", b"NaN", b'"\xed\xa0\x80"', b""])
def test_reading_non_json_bytes_as_json(cache, raw):
    cache.set("raw", raw)
    err = raises(tierstack.InvalidValueError, cache.get, "raw")
    assert "get_bytes" in str(err)
    raises(tierstack.InvalidValueError, cache.lookup, "raw")
    raises(tierstack.InvalidValueError, cache.mget, ["raw"])
    raises(tierstack.InvalidValueError, cache.get, "raw")
    assert cache.get_bytes("raw") == raw


class Unencodable:
    pass


def circular():
    value = []
    value.append(value)
    return value


def deep():
    value = []
    for _ in range(100_000):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [Unencodable(), {1, 2}, math.nan, math.inf, {"n": -math.inf}, "lone \ud800", {"k": "\udfff"}, circular(), deep(), 1j],
)
def test_values_json_cannot_encode(cache, value):
    cache.set("k", "kept")
    raises(tierstack.InvalidValueError, cache.set, "k", value)
    raises(tierstack.InvalidValueError, cache.mset, {"other": 1, "k": value})
    raises(tierstack.InvalidValueError, cache.get_or_load, "new", lambda: value)
    assert cache.get("k") == "kept"
    assert cache.keys() == ["k"]


@pytest.mark.parametrize("key", [1, None, b"bytes", ("tuple",), 1.5])
def test_keys_of_the_wrong_type_are_type_errors(cache, key):
    for call, args in [
        (cache.get, (key,)),
        (cache.get_bytes, (key,)),
        (cache.lookup, (key,)),
        (cache.set, (key, 1)),
        (cache.delete, (key,)),
        (cache.has, (key,)),
        (cache.mget, ([key],)),
        (cache.mset, ({key: 1},)),
        (cache.get_or_load, (key, lambda: 1)),
    ]:
        with pytest.raises(TypeError, match="key must be str"):
            call(*args)


def test_other_arguments_of_the_wrong_type_are_type_errors(cache):
    cases = [
        (cache.set, ("k", 1), {"ttl": "5"}),
        (cache.set, ("k", 1), {"ttl": [1]}),
        (cache.set, ("k", 1), {"tags": "ui"}),
        (cache.set, ("k", 1), {"tags": 5}),
        (cache.set, ("k", 1), {"tags": [1]}),
        (cache.mget, ("abc",), {}),
        (cache.mget, (5,), {}),
        (cache.mset, ([("k", 1)],), {}),
        (cache.mset, ({"k": 1},), {"ttl": "1"}),
        (cache.keys, (5,), {}),
        (cache.invalidate_tag, (None,), {}),
    ]
    for call, args, kwargs in cases:
        with pytest.raises(TypeError):
            call(*args, **kwargs)
    assert cache.keys() == []


def test_a_read_is_named_by_its_kind_not_a_number(cache):
    with pytest.raises(TypeError, match="^'int' object is not an instance of 'Read'"):
        cache._memory_get("k", 0, None)
    assert cache._memory_get("k", tierstack._Read.GET, None) is None


def test_a_huge_key_gives_a_short_message(cache):
    key = "k" * (1 << 20)
    errors = [
        raises(tierstack.InvalidKeyError, cache.set, key, 1),
        raises(tierstack.InvalidKeyError, cache.mset, {"fine": 1, key: 2}),
        raises(tierstack.InvalidKeyError, cache.get, key),
        raises(tierstack.InvalidKeyError, cache.delete, key),
    ]
    for err in errors:
        assert len(str(err)) < 400, str(err)[:200]
    assert str(errors[0]).startswith('key "' + "k" * 64 + '…" (1048576 bytes): ')
    assert cache.get("fine") is None


@pytest.mark.parametrize("path", [":memory:", "file:sub/dir/x.db", "file::memory:?cache=shared"])
def test_sqlite_names_that_are_not_paths_create_nothing(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERSTACK_DB_PATH", raising=False)
    err = raises(tierstack.InvalidConfigError, tierstack.Cache, sqlite={"path": path})
    assert "sqlite.path" in str(err)
    raises(tierstack.InvalidConfigError, tierstack.AsyncCache, sqlite={"path": path})
    monkeypatch.setenv("TIERSTACK_DB_PATH", path)
    err = raises(tierstack.InvalidConfigError, tierstack.Cache)
    assert "TIERSTACK_DB_PATH" in str(err)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_cache_file_is_set_aside_rebuilt_and_counted(tmp_path):
    path = tmp_path / "c.db"
    with tierstack.Cache(sqlite={"path": str(path)}) as cache:
        cache.mset({f"k{i:05}": "v" * 1500 for i in range(2000)})
    # Eight whole pages in the middle of the closed file overwritten.
    damaged = bytearray(path.read_bytes())
    middle = len(damaged) // 2 // 4096 * 4096
    damaged[middle : middle + 8 * 4096] = b"\xa5" * (8 * 4096)
    path.write_bytes(damaged)

    with tierstack.Cache(sqlite={"path": str(path)}) as cache:
        assert cache.keys() == []
        assert cache.stats()["sqlite_rebuilds"] == 1
        assert cache.stats()["sqlite_reopens"] == 0
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
    aside = [p for p in tmp_path.iterdir() if re.fullmatch(r"c\.db\.corrupt-\d+", p.name)]
    assert len(aside) == 1
    assert aside[0].read_bytes() == bytes(damaged)


def test_on_corrupt_takes_rebuild_or_fail(tmp_path):
    for value in ("rebuild", "fail"):
        tierstack.Cache(sqlite={"path": str(tmp_path / f"{value}.db"), "on_corrupt": value}).close()
    err = raises(tierstack.InvalidConfigError, tierstack.Cache, sqlite={"path": str(tmp_path / "x.db"), "on_corrupt": "repair"})
    assert "expected `rebuild` or `fail`" in str(err)


class Refusing:
    """A writable source whose every call raises its own exception."""

    def __init__(self):
        self.raised = []

    def fail(self, what):
        err = OSError(f"{what} refused")
        self.raised.append(err)
        raise err

    def load(self, key):
        self.fail("load")

    def store(self, key, value):
        self.fail("store")

    def remove(self, key):
        self.fail("remove")


def test_the_exception_a_host_callable_raised_is_the_cause(db_path):
    original = KeyError("no such thing")

    def loader():
        raise original

    with tierstack.Cache(sqlite={"path": db_path}) as cache:
        with pytest.raises(tierstack.SourceError) as raised:
            cache.get_or_load("k", loader)
        assert raised.value.__cause__ is original
        with pytest.raises(tierstack.SourceError) as raised:
            cache.get_or_load_many(["a", "b"], lambda keys: loader())
        assert raised.value.__cause__ is original
    source = Refusing()
    with tierstack.Cache(sqlite={"path": db_path}, source=source, strategy="write-through") as cache:
        with pytest.raises(tierstack.SourceError) as raised:
            cache.get("k")
        assert raised.value.__cause__ is source.raised[-1]
        with pytest.raises(tierstack.SourceError) as raised:
            cache.set("k", 1)
        assert raised.value.__cause__ is source.raised[-1]
        with pytest.raises(tierstack.SourceError) as raised:
            cache.delete("k")
        assert raised.value.__cause__ is source.raised[-1]
        assert [str(err) for err in source.raised] == ["load refused", "store refused", "remove refused"]
