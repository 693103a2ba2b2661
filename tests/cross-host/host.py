"""The Python participant of the cross-host test (see run.py).

    host.py FILE write KEY HEX       stores the bytes HEX under KEY
    host.py FILE read KEY            prints the value as hex, or MISS
    host.py FILE write-json KEY JSON stores the parsed JSON as a Python value
    host.py FILE read-json KEY       prints the value read with get(), as JSON
"""
import json
import sys

import tierstack


def main() -> int:
    path, op, key, *rest = sys.argv[1:]
    with tierstack.Cache({"sqlite": {"path": path}}) as cache:
        if op == "write":
            cache.set(key, bytes.fromhex(rest[0]))
        elif op == "read":
            value = cache.get_bytes(key)
            print("MISS" if value is None else value.hex())
        elif op == "write-json":
            cache.set(key, json.loads(rest[0]))
        elif op == "read-json":
            print(json.dumps(cache.get(key)))
        else:
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
