"""bench/bench.py runs to its end in --quick mode (every value it read was the
stored one) and writes its rows in the report's JSON schema. No timing is
checked: a debug wheel's figures mean nothing."""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"

ROW_FIELDS = {"scenario", "unit", "tierstack", "peer", "peer_value", "ratio", "lower_is_better"}


def test_quick_bench_writes_the_report_schema(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))

    assert set(report) == {"host", "quick", "peers", "rows"}
    assert report["host"] == "python"
    assert report["quick"] is True
    assert set(report["peers"]) == {"cachetools", "diskcache"}
    for version in report["peers"].values():
        assert isinstance(version, str) and version[0].isdigit()

    rows = report["rows"]
    assert [(row["scenario"].split(", 1,000 × ")[0], row["peer"]) for row in rows] == [
        ("get, memory hit", "cachetools TTLCache"),
        ("get, memory hit", "cachetools LRUCache"),
        ("get, file hit (memory tier off)", "diskcache Cache"),
        ("set, both tiers", "diskcache Cache"),
    ]
    for row in rows:
        assert set(row) == ROW_FIELDS
        assert row["scenario"].endswith("KB objects")
        assert row["unit"] in ("µs", "ops/s")
        assert row["lower_is_better"] is (row["unit"] == "µs")
        for field in ("tierstack", "peer_value", "ratio"):
            value = row[field]
            assert type(value) in (int, float) and math.isfinite(value) and value > 0, (field, row)
        assert math.isclose(row["ratio"], row["tierstack"] / row["peer_value"], rel_tol=1e-3)
