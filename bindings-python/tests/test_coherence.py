"""L1 coherence between caches that share the file: the config key that
bounds it and the stats that count it."""

import pytest

import tierstack

TAG = "ui"


def test_coherence_interval_is_a_config_key(db_path):
    for interval in (0, 0.5, 3600):
        with tierstack.Cache(sqlite={"path": db_path, "coherence_interval": interval}) as cache:
            cache.set("k", interval)
            assert cache.get("k") == interval
    for interval, message in [
        (-0.01, "not a number of seconds"),
        (3600.5, "coherence_interval is longer than 1 hour"),
        ("0.05", "invalid type"),
    ]:
        with pytest.raises(tierstack.InvalidConfigError, match=message):
            tierstack.Cache(sqlite={"path": db_path, "coherence_interval": interval})


def test_stats_count_what_another_cache_changed(cache, reopen, db_path):
    """Two caches on one file, each with its own L1 as two processes have;
    the reader checks the file on every access."""
    cache.set("k", "v1")
    cache.set("tagged", 1, tags=[TAG])
    reader = reopen(sqlite={"path": db_path, "coherence_interval": 0})
    assert [reader.get("k"), reader.get("tagged")] == ["v1", 1]  # from the file, into L1
    assert reader.lookup("k").tier == "memory"
    assert (reader.stats()["invalidations"], reader.stats()["resyncs"]) == (0, 0)

    cache.set("k", "v2")  # the reader's L1 entry is dropped: one invalidation
    assert reader.lookup("k")[:2] == ("v2", "sqlite")
    assert (reader.stats()["invalidations"], reader.stats()["resyncs"]) == (1, 0)

    assert cache.invalidate_tag(TAG) == 1
    assert reader.get("tagged") is None and not reader.has("tagged")

    cache.clear()  # the reader's L1 is emptied: one resync
    assert reader.get("k") is None and reader.keys() == [] and reader.len() == 0
    assert reader.stats()["resyncs"] == 1
