"""tierstack's Python cache against its peers, side by side in one run.

The working set is 10,000 UI component records of ~1.7 KB of JSON each
(name, source text, demo text, metadata: the same records as the Node
bench), far more than a hot set, read in a fixed random order that visits
every key once per pass. Scenarios:

- memory hit: ``Cache.get`` against cachetools' ``TTLCache`` and
  ``LRUCache`` (``c[key]``, their fastest read), all in process memory;
- file hit: ``Cache.get`` with the memory tier off (every read is a SQLite
  read and a JSON decode) against ``diskcache.Cache.get`` (SQLite and
  pickle);
- set: ``Cache.set`` into both tiers (memory and the file, committed
  before it returns) against ``diskcache.Cache.set``.

Each round times every contender once, in an order that alternates between
rounds, after one warm-up round; a figure is the median of the rounds'
means. Every value a read returns is compared with the stored record (out
of the timed stretch), and every key a set wrote is read back from a fresh
handle on its file at the end: a miss or a wrong value fails the run.

Run against a release build of the wheel::

    maturin build --release -m bindings-python/Cargo.toml --out dist
    pip install --force-reinstall --no-deps dist/tierstack-*.whl
    python bindings-python/bench/bench.py [--json PATH]
    python bindings-python/bench/bench.py --quick --json out.json   # seconds; a smoke run

``--json PATH`` writes the rows as ``{"host", "quick", "peers", "rows"}``
(the schema the report generator reads; see ``report``).
"""

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import cachetools
import diskcache

import tierstack

CHUNK = 1000  # operations timed at a stretch; their results are checked between stretches


def component(i: int) -> Dict[str, Any]:
    """A UI component as an MCP server caches it: ~1.7 KB of JSON."""
    name = f"button-{i}"
    source = (
        'import * as React from "react"\nimport { Slot } from "@radix-ui/react-slot"\n'
        'import { cva } from "class-variance-authority"\nimport { cn } from "@/lib/utils"\n\n'
        'const buttonVariants = cva("inline-flex items-center justify-center gap-2 rounded-md text-sm font-medium", {\n'
        '  variants: {\n    variant: { default: "bg-primary text-primary-foreground", outline: "border bg-background" },\n'
        '    size: { default: "h-9 px-4 py-2", sm: "h-8 px-3", lg: "h-10 px-6" },\n  },\n'
        '  defaultVariants: { variant: "default", size: "default" },\n})\n\n'
        f"function Button{i}({{ className, variant, size, asChild = false, ...props }}) {{\n"
        '  const Comp = asChild ? Slot : "button"\n'
        '  return <Comp data-slot="button" className={cn(buttonVariants({ variant, size, className }))} {...props} />\n}\n\n'
        f"export {{ Button{i}, buttonVariants }}\n"
    )
    demo = (
        f'import {{ Button{i} }} from "@/components/ui/{name}"\n\n'
        f"export function ButtonDemo{i}() {{\n  return (\n"
        '    <div className="flex flex-wrap items-center gap-2 md:flex-row">\n'
        f"      <Button{i}>Button</Button{i}>\n      <Button{i} variant=\"outline\">Outline</Button{i}>\n"
        f"      <Button{i} size=\"sm\">Small</Button{i}>\n    </div>\n  )\n}}\n"
    )
    return {
        "framework": "react",
        "name": name,
        "type": "registry:ui",
        "description": "Displays a button or a component that looks like a button.",
        "sourceCode": source,
        "demoCode": demo,
        "dependencies": ["@radix-ui/react-slot", "class-variance-authority"],
        "registryDependencies": ["utils"],
        "docs": "https://ui.shadcn.com/docs/components/button",
        "githubSha": f"5f3c1a9e{i:08d}b2d47e6a0c19f8",
        "fileSize": len(source),
        "lastModified": "2025-05-01T12:00:00.000Z",
        "meta": {"version": 4, "stars": 1536, "tags": ["button", "form", "ui"]},
    }


class Bench:
    """The records, their keys, and the timing and checking of one contender."""

    def __init__(self, count: int) -> None:
        self.keys = [f"component:react:button-{i}" for i in range(count)]
        self.values = [component(i) for i in range(count)]
        self.index = {key: i for i, key in enumerate(self.keys)}

    def random_order(self, reads: int, seed: int) -> List[str]:
        """``reads`` keys: shuffled passes over every key, then part of one more."""
        rng = random.Random(seed)
        order: List[str] = []
        while len(order) < reads:
            one_pass = list(self.keys)
            rng.shuffle(one_pass)
            order.extend(one_pass)
        return order[:reads]

    def check(self, name: str, key: str, value: Any) -> None:
        if value != self.values[self.index[key]]:
            shown = "a miss" if value is None else repr(value)[:80]
            sys.exit(f"bench: {name} read {key!r} and got {shown}, not the stored record")

    def time_reads(self, name: str, read: Callable[[str], Any], order: Sequence[str]) -> float:
        """µs per ``read(key)`` over ``order``; every value read is checked."""
        elapsed = 0
        for at in range(0, len(order), CHUNK):
            chunk = order[at : at + CHUNK]
            start = time.perf_counter_ns()
            values = list(map(read, chunk))
            elapsed += time.perf_counter_ns() - start
            for key, value in zip(chunk, values):
                self.check(name, key, value)
        return elapsed / 1000 / len(order)

    def time_writes(self, write: Callable[[str, Any], Any], items: Sequence[Tuple[str, Any]]) -> float:
        """µs per ``write(key, value)`` over ``items`` (checked at the end by reading back)."""
        elapsed = 0
        for at in range(0, len(items), CHUNK):
            chunk = items[at : at + CHUNK]
            start = time.perf_counter_ns()
            list(itertools.starmap(write, chunk))
            elapsed += time.perf_counter_ns() - start
        return elapsed / 1000 / len(items)


def rounds(contenders: Dict[str, Callable[[int], float]], count: int) -> Dict[str, float]:
    """The median over ``count`` rounds (after one warm-up round) of each
    contender's ``measure(round)``; the order alternates between rounds."""
    samples: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_no in range(count + 1):
        for name in names if round_no % 2 == 0 else names[::-1]:
            figure = contenders[name](round_no)
            if round_no > 0:
                samples[name].append(figure)
    return {name: statistics.median(xs) for name, xs in samples.items()}


def figure(x: float) -> float:
    return float(f"{x:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, one round")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    args = parser.parse_args()

    count = 1_000 if args.quick else 10_000
    measured_rounds = 1 if args.quick else 11
    memory_reads = 2_000 if args.quick else 200_000
    file_reads = 1_000 if args.quick else 20_000
    writes = 100 if args.quick else 800  # per round: every set writes a key not written before

    bench = Bench(count)
    size_kb = statistics.mean(len(json.dumps(v, separators=(",", ":")).encode()) for v in bench.values) / 1000
    workload = f"{count:,} × {size_kb:.1f} KB objects"
    work = Path(tempfile.mkdtemp(prefix="tierstack-bench-"))
    opened: List[Any] = []

    def keep(thing: Any) -> Any:
        opened.append(thing)
        return thing

    try:
        records = dict(zip(bench.keys, bench.values))
        path = str(work / "tierstack.db")
        memory = keep(tierstack.Cache(sqlite={"path": path}))
        memory.mset(records)
        memory.flush()
        file = keep(tierstack.Cache(sqlite={"path": path}, memory={"enabled": False}))
        for cache, tier in ((memory, "memory"), (file, "sqlite")):
            for key in bench.keys:
                found = cache.lookup(key)
                if found is None or found.tier != tier:
                    sys.exit(f"bench: {key!r} was served by {found and found.tier}, not {tier}")
        ttl_cache: "cachetools.TTLCache[str, Any]" = cachetools.TTLCache(maxsize=2 * count, ttl=3600)
        lru_cache: "cachetools.LRUCache[str, Any]" = cachetools.LRUCache(maxsize=2 * count)
        ttl_cache.update(records)
        lru_cache.update(records)
        disk = keep(diskcache.Cache(str(work / "diskcache")))
        with disk.transact():
            for key, value in records.items():
                disk.set(key, value)

        rows: List[Dict[str, Any]] = []

        def row(scenario: str, ours: float, peer: str, theirs: float) -> None:
            rows.append(
                {
                    "scenario": f"{scenario}, {workload}",
                    "unit": "µs",
                    "tierstack": figure(ours),
                    "peer": peer,
                    "peer_value": figure(theirs),
                    "ratio": figure(ours / theirs),
                    "lower_is_better": True,
                }
            )

        def reads(read: Callable[[str], Any], name: str, n: int) -> Callable[[int], float]:
            return lambda r: bench.time_reads(name, read, bench.random_order(n, seed=r))

        hit = rounds(
            {
                "tierstack": reads(memory.get, "tierstack get (memory)", memory_reads),
                "ttl": reads(ttl_cache.__getitem__, "cachetools TTLCache", memory_reads),
                "lru": reads(lru_cache.__getitem__, "cachetools LRUCache", memory_reads),
            },
            measured_rounds,
        )
        row("get, memory hit", hit["tierstack"], "cachetools TTLCache", hit["ttl"])
        row("get, memory hit", hit["tierstack"], "cachetools LRUCache", hit["lru"])
        if memory.stats()["tiers"][0]["misses"] != 0:
            sys.exit("bench: the memory tier missed during the memory-hit rounds")

        disk_hit = rounds(
            {
                "tierstack": reads(file.get, "tierstack get (memory tier off)", file_reads),
                "diskcache": reads(disk.get, "diskcache get", file_reads),
            },
            measured_rounds,
        )
        row("get, file hit (memory tier off)", disk_hit["tierstack"], "diskcache Cache", disk_hit["diskcache"])

        set_path = str(work / "tierstack-set.db")
        ours_set = keep(tierstack.Cache(sqlite={"path": set_path}))
        disk_set = keep(diskcache.Cache(str(work / "diskcache-set")))
        if count < (measured_rounds + 1) * writes:
            sys.exit("bench: too few keys for every set to write a new key")

        def round_items(r: int) -> List[Tuple[str, Any]]:
            return [(bench.keys[i], bench.values[i]) for i in range(r * writes, (r + 1) * writes)]

        set_figures = rounds(
            {
                "tierstack": lambda r: bench.time_writes(ours_set.set, round_items(r)),
                "diskcache": lambda r: bench.time_writes(disk_set.set, round_items(r)),
            },
            measured_rounds,
        )
        written = bench.keys[: (measured_rounds + 1) * writes]
        ours_set.close()
        disk_set.close()
        with tierstack.Cache(sqlite={"path": set_path}, memory={"enabled": False}) as reread:
            for key in written:
                bench.check("tierstack set (read back from the file)", key, reread.get(key))
        with diskcache.Cache(str(work / "diskcache-set")) as reread_disk:
            for key in written:
                bench.check("diskcache set (read back)", key, reread_disk.get(key))
        row("set, both tiers", set_figures["tierstack"], "diskcache Cache", set_figures["diskcache"])

        report = {
            "host": "python",
            "quick": args.quick,
            "peers": {"cachetools": cachetools.__version__, "diskcache": diskcache.__version__},
            "rows": rows,
        }
        print(
            f"tierstack {tierstack.__version__}, Python {sys.version.split()[0]}, "
            f"cachetools {cachetools.__version__}, diskcache {diskcache.__version__}: {workload}, "
            f"median of {measured_rounds} rounds"
        )
        print()
        print("| scenario | tierstack | peer | ratio |")
        print("|---|---|---|---|")
        for each in rows:
            print(
                f"| {each['scenario']} | {each['tierstack']:.3f} µs | {each['peer']} "
                f"{each['peer_value']:.3f} µs | {each['ratio']:.2f}× |"
            )
        if args.quick:
            print("\n(--quick: a smoke run that checks every value; its figures are not a measurement)")
        if args.json:
            Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    finally:
        for thing in opened:
            thing.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
