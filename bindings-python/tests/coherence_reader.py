"""The reader process of test_coherence.py.

``python coherence_reader.py <db path> <coherence interval> <key>``
opens a cache (L1 on) on the file and asks, in a tight loop, what ``get``,
``has``, ``keys`` and ``len`` answer about the key. Each time one of these
answers changes it prints a JSON line ``{"probe", "state", "old", "new"}``:
the new answer, the wall-clock start (``time.time_ns()``, a clock every
process shares) of the last call that gave the previous answer, and that of
the first call that gave the new one. The first answers are printed with
``"old": null``. A line on stdin ends the loop; the reader then prints
``{"stats": ...}`` and exits.
"""

import json
import sys
import threading
import time
from typing import Any, Callable, Dict, Tuple

import tierstack

_UNSEEN: Any = object()


def main(path: str, interval: float, key: str) -> None:
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    with tierstack.Cache(sqlite={"path": path, "coherence_interval": interval}) as cache:
        probes: Dict[str, Callable[[], Any]] = {
            "get": lambda: cache.get(key),
            "has": lambda: cache.has(key),
            "keys": lambda: key in cache.keys(),
            "len": cache.len,
        }
        last: Dict[str, Tuple[Any, Any]] = {name: (_UNSEEN, None) for name in probes}
        print(json.dumps({"ready": True}), flush=True)
        while not stop.is_set():
            for name, probe in probes.items():
                start = time.time_ns()
                state = probe()
                seen, seen_at = last[name]
                if state != seen:
                    print(json.dumps({"probe": name, "state": state, "old": seen_at, "new": start}), flush=True)
                last[name] = (state, start)
        print(json.dumps({"stats": cache.stats()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
