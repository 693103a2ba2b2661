"""Summarizes a bench/compare results directory as a Markdown table.

    python3 bench/compare-summary.py target/compare/results-<time>

Reads every ``{rust,python,node}-{before,now}-N.json`` there (the hosts'
JSON schema, bench/src/report/hosts.rs) and prints, for each ratio, the
median of each side's runs, now/before of the medians, each side's range,
and a verdict: "better" or "worse" only where each side has at least
three runs and the two sides' runs do not overlap, "within spread" where
they overlap, "too few runs" otherwise. A ratio is tierstack over the peer; for
a row whose figures are rates (``lower_is_better`` false) a higher ratio is
the better one. Exits 1 if a side has no runs or a row is missing from one.
"""

import json
import statistics
import sys
from pathlib import Path

SIDES = ("before", "now")
HOSTS = ("rust", "python", "node")
# Fewer runs a side than this give no verdict: one run against one is a coin.
MIN_RUNS = 3


def load(results):
    """{(host, scenario, peer): {"lower": bool, "before": [...], "now": [...]}}, in first-seen order."""
    table = {}
    for side in SIDES:
        files = sorted(results.glob(f"*-{side}-*.json"))
        if not files:
            sys.exit(f"compare-summary: no {side} runs in {results}")
        for path in files:
            report = json.loads(path.read_text())
            for row in report["rows"]:
                key = (report["host"], row["scenario"], row["peer"])
                entry = table.setdefault(key, {"lower": row["lower_is_better"], "before": [], "now": []})
                entry[side].append(row["ratio"])
    return table


def spread(ratios):
    """The range of a side's runs and their number: "0.512–0.556 (3)"."""
    return f"{min(ratios):.3f}–{max(ratios):.3f} ({len(ratios)})"


def verdict(entry):
    before, now = entry["before"], entry["now"]
    if min(len(before), len(now)) < MIN_RUNS:
        return "too few runs"
    if entry["lower"]:
        if max(now) < min(before):
            return "better"
        if min(now) > max(before):
            return "worse"
    else:
        if min(now) > max(before):
            return "better"
        if max(now) < min(before):
            return "worse"
    return "within spread"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 bench/compare-summary.py RESULTS_DIR")
    results = Path(sys.argv[1])
    table = load(results)
    sides = results / "sides.txt"
    if sides.exists():
        for line in sides.read_text().splitlines():
            print(f"- {line}")
        print()
    print("| host | scenario | peer | before | now | now/before | before runs | now runs | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    incomplete = []
    order = sorted(table, key=lambda key: HOSTS.index(key[0]) if key[0] in HOSTS else len(HOSTS))
    for key in order:
        host, scenario, peer = key
        entry = table[key]
        if not entry["before"] or not entry["now"]:
            incomplete.append(f"{host}: {scenario} vs {peer}")
            continue
        b, n = statistics.median(entry["before"]), statistics.median(entry["now"])
        print(
            f"| {host} | {scenario} | {peer} | {b:.3f} | {n:.3f} | {n / b:.3f} "
            f"| {spread(entry['before'])} | {spread(entry['now'])} | {verdict(entry)} |"
        )
    print()
    print("Ratio = tierstack / peer; lower is better except for rates (ops/s rows).")
    if incomplete:
        print("\nMeasured on one side only (the harness differs):")
        for name in incomplete:
            print(f"- {name}")
        sys.exit(1)


if __name__ == "__main__":
    main()
