"""tierstack's Python reads against their peers, in one run.

Scenarios (a ~1.5 KB dict per key, every key read in turn):

- L1 hit: ``tierstack.Cache.get`` against ``cachetools.TTLCache`` (``c[k]``
  and ``c.get(k)``), both in process memory; and ``Cache.get_or_load``
  against ``Cache.get`` on the same cache, both called through a lambda
  (``get_or_load`` needs its loader, which a hit never calls).
- L2 hit: ``tierstack.Cache.get`` with the memory tier disabled (every read
  goes to the SQLite file and decodes the JSON) against
  ``diskcache.Cache.get`` (SQLite and pickle).

Each round times every contender once, in an order that alternates between
rounds; the figure is the median over rounds, in nanoseconds per read. Every
contender's reads are checked against the stored dict before and after the
timed rounds, so no scenario times misses.

Run against a release build of the wheel::

    maturin build --release -m bindings-python/Cargo.toml --out dist
    pip install --force-reinstall --no-deps dist/tierstack-*.whl
    python bindings-python/bench/bench.py
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import cachetools
import diskcache
import orjson

import tierstack

SOURCE = (
    'import * as React from "react"\nimport { Slot } from "@radix-ui/react-slot"\n\n'
    'const buttonVariants = cva("inline-flex items-center justify-center gap-2 rounded-md")\n'
) * 6


def component(i: int) -> Dict[str, Any]:
    """A UI component record of about 1.5 KB as JSON."""
    return {
        "name": f"button-{i}",
        "type": "registry:ui",
        "version": "2.4.1",
        "description": "Displays a button or a component that looks like a button.",
        "dependencies": ["@radix-ui/react-slot", "class-variance-authority"],
        "files": [{"path": f"ui/button-{i}.tsx", "target": "components/ui/button.tsx", "content": SOURCE}],
        "meta": {"stars": 1536 + i, "score": 0.97, "draft": False, "license": None},
    }


def timed(read: Callable[[str], Any], keys: List[str], reads: int) -> float:
    """Nanoseconds per read over ``reads`` reads cycling through ``keys``."""
    batches, rest = divmod(reads, len(keys))
    order = keys * batches + keys[:rest]
    start = time.perf_counter_ns()
    for key in order:
        read(key)
    return (time.perf_counter_ns() - start) / len(order)


def check(name: str, read: Callable[[str], Any], keys: List[str]) -> None:
    for i, key in enumerate(keys):
        if read(key) != component(i):
            sys.exit(f"bench: {name} did not return the stored value of {key!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000, help="keys per contender")
    parser.add_argument("--reads", type=int, default=50_000, help="reads per contender per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    keys = [f"component:{i}" for i in range(args.keys)]
    size = len(json.dumps(component(0), separators=(",", ":")))
    work = Path(tempfile.mkdtemp(prefix="tierstack-bench-"))

    l1 = tierstack.Cache(sqlite={"path": str(work / "l1.db")})
    l2 = tierstack.Cache(sqlite={"path": str(work / "l2.db")}, memory={"enabled": False})
    ttl = cachetools.TTLCache(maxsize=args.keys * 2, ttl=3600)
    disk = diskcache.Cache(str(work / "diskcache"))
    for i, key in enumerate(keys):
        value = component(i)
        l1.set(key, value)
        l2.set(key, value)
        ttl[key] = value
        disk.set(key, value)

    def never(key: str) -> Any:
        sys.exit(f"bench: get_or_load called its loader for {key!r}: it timed a miss")

    contenders: Dict[str, Callable[[str], Any]] = {
        "tierstack L1 get": l1.get,
        "tierstack L1 get_or_load (lambda)": lambda key: l1.get_or_load(key, never),
        "tierstack L1 get (lambda)": lambda key: l1.get(key),
        "cachetools TTLCache[k]": ttl.__getitem__,
        "cachetools TTLCache.get": ttl.get,
        "tierstack L2 get (memory off)": l2.get,
        "diskcache get": disk.get,
    }
    raw = json.dumps(component(0), separators=(",", ":"), ensure_ascii=False).encode()
    references: Dict[str, Callable[[str], Any]] = {
        "json.loads (reference)": lambda _key: json.loads(raw),
        "orjson.loads (reference)": lambda _key: orjson.loads(raw),
    }
    everything = {**contenders, **references}
    for name, read in contenders.items():
        check(name, read, keys)

    figures: Dict[str, List[float]] = {name: [] for name in everything}
    names = list(everything)
    for round_no in range(args.rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            figures[name].append(timed(everything[name], keys, args.reads))
    for name, read in contenders.items():
        check(name, read, keys)

    median = {name: statistics.median(values) for name, values in figures.items()}
    rows: List[Tuple[str, str, str, str]] = [
        ("L1 hit", "tierstack L1 get", "cachetools TTLCache[k]", "<= 1x"),
        ("L1 hit", "tierstack L1 get", "cachetools TTLCache.get", "<= 1x"),
        ("L1 hit", "tierstack L1 get_or_load (lambda)", "tierstack L1 get (lambda)", "<= 1.1x"),
        ("L2 hit", "tierstack L2 get (memory off)", "diskcache get", "<= 0.5x"),
    ]
    print(
        f"tierstack {tierstack.__version__}, Python {sys.version.split()[0]}: "
        f"{args.keys} keys, {size}-byte JSON dict, {args.reads} reads x {args.rounds} rounds, median"
    )
    print()
    print(f"| scenario | tierstack | peer | ratio | target |")
    print(f"|---|---|---|---|---|")
    for scenario, ours, peer, target in rows:
        ratio = median[ours] / median[peer]
        print(
            f"| {scenario} | {median[ours] / 1000:.3f} us | {peer} {median[peer] / 1000:.3f} us "
            f"| {ratio:.2f}x | {target} |"
        )
    print()
    for name in references:
        print(f"{name}: {median[name] / 1000:.3f} us per decode of the same dict")
    l1.close()
    l2.close()
    disk.close()


if __name__ == "__main__":
    main()
